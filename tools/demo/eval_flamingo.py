#!/usr/bin/python3
"""Evaluate the demo Flamingo (models/flamingo-demo, trained by tools/demo/train_flamingo.py)
through a RUNNING flamingo-server, over gRPC with clients/python's FlamingoClient, on held-out
scenes.

The data are tools/demo/scenes.py's eval_set(n, seed) and eval_episodes(n, seed, n_demos=4,
style): the HELD-OUT split (seeds with the low bit 1, scenes whose hash bit says heldout), a
stream training never draws from. The prompts are tools/demo/prompts.py's, which are the
server's own (templates/idefics.json). Decoding is always greedy (temperature 0). Tasks
(--tasks, default all but swap):

  caption   the Caption RPC on every scene; exact match of the stripped text with
            scenes.caption(scene).                                            (chance ~0)
  vqa       the AnswerQuestion RPC on every question of every scene (one per askable type,
            yes/no twice); exact match of the stripped answer, per question type.
            Chance: 1/8 colour, 1/6 shape, 1/5 count, 1/9 position, 1/2 size, 1/2 yes/no.
  fewshot   Generate on few-shot prompts (4 demos "<image>Answer: X\\n", then
            "<image>Answer:"); the text up to its first newline, stripped, must equal the
            episode's answer. Per task (count, colour, shape, position) and overall, for the
            anonymous style (the headline: only the demos say what to do) and the named style
            ("Count: X", ...): "fewshot-anonymous" / "fewshot-named" pick one. "task
            followed" rows count answers in the demos' task's answer set (number words,
            colours, shapes or positions; the sets are disjoint), chance 1/4 (a random task).
            Exact chance: 1/4 count, 1/8 colour, 1/6 shape, 1/9 position.
  score     Score ranking: for every scene with a shape question, the Score RPC of the
            question prompt with the 6 candidates " circle" ... " heart"; right when the
            best is " " + answer.                                             (chance 1/6)
  swap      (--swap, or --tasks swap) the vqa questions with the image of ANOTHER scene (item i
            gets the image of item (i + 1) % n): accuracy against the ORIGINAL answer per
            type (a model that looks at the image drops to about chance), and how many
            answers differ from the unswapped ones.
  latency   (--tasks latency; not in all) one request at a time: GenerateStream of a question
            about a scene the server has not seen (20 of eval_set(20, seed + 1)), 16 tokens with
            ignore_eos; median time to the first token (TTFT: image encode, prefill, first
            token) and median decode time per token.

It starts nothing: run the server first, e.g.
  build/bin/flamingo-server --model models/flamingo-demo --port 50051
  /usr/bin/python3 tools/demo/eval_flamingo.py --server 127.0.0.1:50051 [--n 200]
      [--episodes 200] [--swap] [--json F]
Prints the server, the wall time and requests/s, and a Markdown table (task, items,
accuracy, chance); with --swap a second table (type, items, accuracy vs the original answer,
chance, answers changed).

Gates zeroed (the model with its cross-attention switched off must fall to chance):
  /usr/bin/python3 tools/demo/eval_flamingo.py --write-zero-gates models/flamingo-demo \\
      /tmp/flamingo-demo-nogates
  build/bin/flamingo-server --model /tmp/flamingo-demo-nogates --port 50052
  /usr/bin/python3 tools/demo/eval_flamingo.py --server 127.0.0.1:50052
--write-zero-gates SRC DST (or DST alone: SRC is $FLAMINGO_DEMO_MODEL, else
models/flamingo-demo) copies every file of SRC to DST (which must not exist) and sets
every model.gated_cross_attn_layers.*.alpha_cross_attn and *.alpha_dense tensor of its
*.safetensors files to 0 in place (same header, same offsets; F32, BF16, F16 or F64). The
text then never sees an image (tanh(0) = 0 gates both the cross-attention and its MLP).
"""

import argparse
import concurrent.futures
import io
import json
import os
import re
import shutil
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import prompts as P  # noqa: E402
import scenes as S  # noqa: E402

# The bundled demo model; FLAMINGO_DEMO_MODEL overrides it (the SRC of a one-argument
# --write-zero-gates DST).
DEFAULT_MODEL = (os.environ.get("FLAMINGO_DEMO_MODEL")
                 or os.path.join(ROOT, "models", "flamingo-demo"))
CAPTION_MAX_NEW_TOKENS = 32   # the longest caption is ~16 tokens with its newline
ANSWER_MAX_NEW_TOKENS = 8     # the longest answer ("bottom right\n") is ~3
N_DEMOS = 4

# Chance of a uniform guess among a question type's possible answers (scenes.py's sets).
VQA_CHANCE = {"colour": 1 / len(S.COLOURS), "shape": 1 / len(S.SHAPES),
              "count": 1 / len(S.NUMBERS), "position": 1 / len(S.POSITIONS),
              "size": 1 / len(S.SIZES), "yesno": 1 / 2}
# Few-shot tasks: the answers a task can have (uniform scenes hold 1-4 objects, so "zero"
# never is one) and the answer sets that say which task an answer follows (disjoint).
FEW_SHOT_ANSWERS = {"count": S.NUMBERS[1:], "colour": tuple(S.COLOURS), "shape": S.SHAPES,
                    "position": S.POSITIONS}
TASK_SETS = {"count": frozenset(S.NUMBERS), "colour": frozenset(S.COLOURS),
             "shape": frozenset(S.SHAPES), "position": frozenset(S.POSITIONS)}
FEW_SHOT_CHANCE = {t: 1 / len(a) for t, a in FEW_SHOT_ANSWERS.items()}
TASK_FOLLOWED_CHANCE = 1 / len(S.FEW_SHOT_TASKS)
SCORE_CHANCE = 1 / len(P.SCORE_CANDIDATES)
TASKS = ("caption", "vqa", "fewshot-anonymous", "fewshot-named", "score", "swap", "latency")
ALIASES = {"fewshot": ("fewshot-anonymous", "fewshot-named"), "all": TASKS[:-2]}
LATENCY_RUNS, LATENCY_TOKENS = 20, 16
ALPHA_RX = re.compile(r"^model\.gated_cross_attn_layers\.\d+\.(alpha_cross_attn|alpha_dense)$")
ZERO_DTYPES = {"F32", "BF16", "F16", "F64"}   # 0.0 is all zero bytes in each


# ----------------------------------------------------------------------------- helpers
def png(img):
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class Pngs:
    """PNG bytes of scenes, encoded once (the server's image cache keys on these bytes)."""

    def __init__(self):
        self._cache = {}

    def __call__(self, scene):
        if scene not in self._cache:
            self._cache[scene] = png(S.render(scene))
        return self._cache[scene]


def client_parts(items, pngs):
    """prompts.py items -> FlamingoClient prompt parts (image -> PNG bytes, text -> str)."""
    out = []
    for it in items:
        if it[0] == P.IMAGE:
            out.append(pngs(it[1]))
        elif it[0] == P.TEXT:
            out.append(it[1])
        else:
            raise ValueError(f"prompt item {it!r} has no gRPC part (only HTTP chat has eou)")
    return out


def answer_text(text):
    """A generation's answer: the text up to its first newline, stripped."""
    return text.split("\n", 1)[0].strip()


def task_of(answer):
    """The few-shot task whose answer set holds `answer`, else None."""
    return next((t for t, s in TASK_SETS.items() if answer in s), None)


def argmax(xs):
    return max(range(len(xs)), key=lambda i: xs[i])


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def shape_question(item):
    return next((q for q in item["qa"] if q["type"] == "shape"), None)


# ----------------------------------------------------------------------------- zero gates
def zero_gates(path):
    """Sets the gate tensors of one safetensors file to 0 in place; returns their names."""
    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        names = []
        for name, t in header.items():
            if name == "__metadata__" or not ALPHA_RX.match(name):
                continue
            if t["dtype"] not in ZERO_DTYPES:
                raise ValueError(f"{path}: {name} has dtype {t['dtype']}, expected one of "
                                 f"{sorted(ZERO_DTYPES)}")
            begin, end = t["data_offsets"]
            f.seek(8 + n + begin)
            f.write(b"\0" * (end - begin))
            names.append(name)
    return names


def write_zero_gates(src, dst):
    if not os.path.isdir(src):
        raise SystemExit(f"--write-zero-gates: {src} is not a folder")
    if os.path.exists(dst):
        raise SystemExit(f"--write-zero-gates: {dst} exists; give a new folder")
    shutil.copytree(src, dst)
    names = []
    for dirpath, _, files in os.walk(dst):
        for fn in sorted(files):
            if fn.endswith(".safetensors"):
                names += zero_gates(os.path.join(dirpath, fn))
    if not names:
        shutil.rmtree(dst)
        raise SystemExit(f"--write-zero-gates: no alpha_cross_attn/alpha_dense tensor in {src}")
    print(f"{dst}: copied {src}, {len(names)} gate tensors set to 0 "
          f"({', '.join(sorted(names))})")
    return 0


# ----------------------------------------------------------------------------- requests
class Runner:
    """Runs request functions on a thread pool, in order of results, counting them."""

    def __init__(self, concurrency):
        self.pool = concurrent.futures.ThreadPoolExecutor(max(1, concurrency))
        self.requests = 0

    def map(self, fn, xs):
        xs = list(xs)
        self.requests += len(xs)
        return list(self.pool.map(fn, xs))

    def close(self):
        self.pool.shutdown()


def run_caption(client, runner, items, pngs):
    def one(it):
        r = client.caption(pngs(it["scene"]), max_new_tokens=CAPTION_MAX_NEW_TOKENS,
                           temperature=0)
        return answer_text(r.text)
    texts = runner.map(one, items)
    return [{"index": it["index"], "caption": it["caption"], "text": t,
             "ok": t == it["caption"]} for it, t in zip(items, texts)]


def vqa_jobs(items, swap=False):
    """(item, question, scene whose image is sent) for every question of every item."""
    n = len(items)
    return [(it, qa, items[(i + 1) % n]["scene"] if swap else it["scene"])
            for i, it in enumerate(items) for qa in it["qa"]]


def run_vqa(client, runner, jobs, pngs):
    def one(job):
        _, qa, scene = job
        r = client.ask(pngs(scene), qa["question"], max_new_tokens=ANSWER_MAX_NEW_TOKENS,
                       temperature=0)
        return answer_text(r.text)
    texts = runner.map(one, jobs)
    return [{"index": it["index"], "type": qa["type"], "question": qa["question"],
             "answer": qa["answer"], "text": t, "ok": t == qa["answer"]}
            for (it, qa, _), t in zip(jobs, texts)]


def run_fewshot(client, runner, episodes, pngs):
    def one(ep):
        r = client.generate(client_parts(P.few_shot_prompt(ep), pngs),
                            max_new_tokens=ANSWER_MAX_NEW_TOKENS, temperature=0, stop=["\n"])
        return answer_text(r.text)
    texts = runner.map(one, episodes)
    return [{"task": ep.task, "style": ep.style, "answer": ep.answer, "text": t,
             "ok": t == ep.answer, "followed": t in TASK_SETS[ep.task]}
            for ep, t in zip(episodes, texts)]


def run_score(client, runner, items, pngs):
    jobs = [(it, q) for it in items for q in [shape_question(it)] if q]

    def one(job):
        it, q = job
        prompt = client_parts(P.question_prompt(it["scene"], q["question"]), pngs)
        return client.score(prompt, P.SCORE_CANDIDATES)
    scores = runner.map(one, jobs)
    out = []
    for (it, q), lp in zip(jobs, scores):
        best = P.SCORE_CANDIDATES[argmax(lp)]
        out.append({"index": it["index"], "answer": q["answer"], "best": best.strip(),
                    "ok": best == " " + q["answer"]})
    return out


# ----------------------------------------------------------------------------- report
def run_latency(client, items, pngs):
    """One request at a time (nothing else in flight): GenerateStream of a question about a
    scene the server has not seen (its image is encoded inside the request), LATENCY_TOKENS
    tokens with ignore_eos. TTFT = time to the first streamed chunk; decode = the time from
    the first to the last token over the tokens between them."""
    ttft, step = [], []
    for it in items[:LATENCY_RUNS]:
        prompt = client_parts(P.question_prompt(it["scene"], "How many objects are there?"),
                              pngs)
        t0 = time.perf_counter()
        first, last, tokens = None, None, 0
        for chunk in client.generate_stream(prompt, max_new_tokens=LATENCY_TOKENS,
                                            ignore_eos=True, temperature=0.0):
            n = len(chunk.token_ids)
            if n and first is None:
                first, tokens = time.perf_counter(), n
            elif n:
                last, tokens = time.perf_counter(), tokens + n
        ttft.append(first - t0)
        if last is not None and tokens > 1:
            step.append((last - first) / (tokens - 1))
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    return {"runs": len(ttft), "ttft_ms": 1e3 * med(ttft), "decode_ms_per_token": 1e3 * med(step)}


def vqa_rows(results, label="VQA"):
    rows = []
    for t in S.QUESTION_TYPES:
        rs = [r for r in results if r["type"] == t]
        if rs:
            rows.append((f"{label} {t}", len(rs), mean([r["ok"] for r in rs]), VQA_CHANCE[t]))
    if results:
        rows.append((f"{label} overall", len(results), mean([r["ok"] for r in results]),
                     mean([VQA_CHANCE[r["type"]] for r in results])))
    return rows


def fewshot_rows(results, style):
    rows = []
    for t in S.FEW_SHOT_TASKS:
        rs = [r for r in results if r["task"] == t]
        if rs:
            rows.append((f"few-shot {style} {t}", len(rs), mean([r["ok"] for r in rs]),
                         FEW_SHOT_CHANCE[t]))
    rows.append((f"few-shot {style} overall", len(results), mean([r["ok"] for r in results]),
                 mean([FEW_SHOT_CHANCE[r["task"]] for r in results])))
    rows.append((f"few-shot {style} task followed", len(results),
                 mean([r["followed"] for r in results]), TASK_FOLLOWED_CHANCE))
    return rows


def swap_rows(swapped, plain):
    rows = []
    for t in S.QUESTION_TYPES + (None,):
        pairs = [(s, p) for s, p in zip(swapped, plain) if t is None or s["type"] == t]
        if pairs:
            rows.append(("overall" if t is None else t, len(pairs),
                         mean([s["ok"] for s, _ in pairs]),
                         mean([VQA_CHANCE[s["type"]] for s, _ in pairs]),
                         sum(s["text"] != p["text"] for s, p in pairs)))
    return rows


def parse_tasks(text, swap):
    chosen = []
    for name in (t.strip() for t in text.split(",") if t.strip()):
        for t in ALIASES.get(name, (name,)):
            if t not in TASKS:
                raise SystemExit(f"--tasks: unknown task {t!r}; expected some of "
                                 f"{', '.join(TASKS + tuple(ALIASES))}")
            if t not in chosen:
                chosen.append(t)
    if swap and "swap" not in chosen:
        chosen.append("swap")
    return chosen


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", help="HOST:PORT of a running flamingo-server serving the demo "
                    "Flamingo (gRPC)")
    ap.add_argument("--n", type=int, default=200, help="held-out scenes (eval_set size)")
    ap.add_argument("--episodes", type=int, default=200,
                    help="few-shot episodes per style (eval_episodes size)")
    ap.add_argument("--seed", type=int, default=0, help="eval_set / eval_episodes seed")
    ap.add_argument("--tasks", default="all",
                    help=f"comma-separated subset of {', '.join(TASKS)} (fewshot = both "
                    "styles; default all but swap)")
    ap.add_argument("--swap", action="store_true",
                    help="also ask the VQA questions with another scene's image")
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per RPC")
    ap.add_argument("--json", help="also write the results (and every answer) here")
    ap.add_argument("--write-zero-gates", nargs="+", metavar="PATH",
                    help="[SRC] DST: copy model folder SRC (default: $FLAMINGO_DEMO_MODEL, else "
                    "models/flamingo-demo) to DST with every cross-attention gate "
                    "(alpha_cross_attn, alpha_dense) set to 0, then exit")
    a = ap.parse_args(argv)
    if a.write_zero_gates:
        if len(a.write_zero_gates) > 2:
            ap.error("--write-zero-gates takes SRC DST, or DST alone")
        return write_zero_gates(*([DEFAULT_MODEL] * (2 - len(a.write_zero_gates))
                                  + a.write_zero_gates))
    if not a.server:
        ap.error("give --server HOST:PORT (or --write-zero-gates SRC DST)")
    tasks = parse_tasks(a.tasks, a.swap)

    sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
    from flamingo_client import FlamingoClient

    items = S.eval_set(a.n, a.seed)
    pngs = Pngs()
    episodes = {style: S.eval_episodes(a.episodes, a.seed, N_DEMOS, style)
                for style in ("anonymous", "named") if f"fewshot-{style}" in tasks}
    rows, res, runner = [], {}, Runner(a.concurrency)
    t0 = time.time()
    try:
        with FlamingoClient(a.server, timeout=a.timeout) as client:
            info = client.model_info()
            if "caption" in tasks:
                res["caption"] = run_caption(client, runner, items, pngs)
                rows.append(("caption exact match", len(items),
                             mean([r["ok"] for r in res["caption"]]), 0.0))
            if "vqa" in tasks or "swap" in tasks:
                res["vqa"] = run_vqa(client, runner, vqa_jobs(items), pngs)
                if "vqa" in tasks:
                    rows += vqa_rows(res["vqa"])
            for style, eps in episodes.items():
                res[f"fewshot-{style}"] = run_fewshot(client, runner, eps, pngs)
                rows += fewshot_rows(res[f"fewshot-{style}"], style)
            if "score" in tasks:
                res["score"] = run_score(client, runner, items, pngs)
                rows.append(("score ranking (shape)", len(res["score"]),
                             mean([r["ok"] for r in res["score"]]), SCORE_CHANCE))
            if "swap" in tasks:
                res["swap"] = run_vqa(client, runner, vqa_jobs(items, swap=True), pngs)
            if "latency" in tasks:
                res["latency"] = run_latency(client, S.eval_set(LATENCY_RUNS, a.seed + 1),
                                             Pngs())
    finally:
        runner.close()
    secs = time.time() - t0
    swap = swap_rows(res["swap"], res["vqa"]) if "swap" in res else []

    print(f"server {a.server}: {info.kind} {info.model_dir}, dtype {info.dtype}")
    print(f"held-out eval_set(n={a.n}, seed={a.seed}), eval_episodes({a.episodes}, "
          f"seed={a.seed}, n_demos={N_DEMOS}) per style; greedy; tasks {', '.join(tasks)}")
    print(f"{runner.requests} requests in {secs:.1f}s ({runner.requests / secs:.1f} requests/s,"
          f" concurrency {a.concurrency})\n")
    if rows:
        print("| task | items | accuracy | chance |\n|---|---:|---:|---:|")
    for name, n, acc, ch in rows:
        print(f"| {name} | {n} | {100 * acc:.1f}% | {100 * ch:.1f}% |")
    if swap:
        print("\nimage swapped (item i asked about the image of item i+1):\n")
        print("| question type | items | accuracy vs original answer | chance | answers changed"
              " |\n|---|---:|---:|---:|---:|")
        for name, n, acc, ch, changed in swap:
            print(f"| {name} | {n} | {100 * acc:.1f}% | {100 * ch:.1f}% | {changed}/{n} |")
    if "latency" in res:
        r = res["latency"]
        print(f"\nlatency, one request at a time ({r['runs']} runs, median): TTFT with one new "
              f"image {r['ttft_ms']:.1f} ms, decode {r['decode_ms_per_token']:.2f} ms/token")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"server": a.server, "model_dir": info.model_dir, "dtype": info.dtype,
                       "n": a.n, "episodes": a.episodes, "seed": a.seed, "tasks": tasks,
                       "requests": runner.requests, "seconds": secs,
                       "rows": [dict(task=r[0], items=r[1], accuracy=r[2], chance=r[3])
                                for r in rows],
                       "swap": [dict(type=r[0], items=r[1], accuracy=r[2], chance=r[3],
                                     changed=r[4]) for r in swap],
                       "results": res}, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
