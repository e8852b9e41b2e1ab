#!/usr/bin/env python3
"""Load generator for a running flamingo-server (a benchmark tool, not a test).

Sends GenerateStream requests whose prompts carry 0 to 4 images, at fixed concurrency levels
(closed loop: N workers, each sends its next request when the previous one ends) or at
Poisson arrival rates (open loop), and reports per load level:
  - TTFT: time to first token (request sent -> first chunk carrying a token),
  - TPOT: time per output token after the first, (total - ttft) / (tokens - 1),
  - ITL: inter-token latency, the gaps between consecutive token-carrying chunks (a chunk with
    k tokens contributes k gaps of gap/k),
  - end-to-end latency,
as p50/p90/p99 (linear interpolation, as numpy.percentile) and mean, in milliseconds; request
throughput (successful requests / level wall time) and output token throughput; errors counted
by gRPC status code. Writes --json and --plot (2 panels: throughput, latency vs load).

    /usr/bin/python3 bench/loadgen.py --server 127.0.0.1:50051 --concurrency 1,2,4,8 \
        --requests 32 --max-new-tokens 32 --json out.json --plot out.png
    /usr/bin/python3 bench/loadgen.py --rates 0.5,1,2 --duration 60 --images-mix 1,1,1,1,1
    /usr/bin/python3 bench/loadgen.py --http http://127.0.0.1:8000 --concurrency 1,4,16

With --http it drives the OpenAI-compatible API instead (streaming /v1/chat/completions, the
images as data: URLs, the chat template around the text: a few more prompt tokens than gRPC).
"""

import argparse
import collections
import concurrent.futures
import dataclasses
import json
import math
import os
import pathlib
import platform
import random
import sys
import threading
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_IMAGES_DIR = REPO_ROOT / "tests" / "golden" / "idefics-tiny" / "images"
MAX_IMAGES = 4
PROMPT_TEXTS = (
    "Describe the picture in detail.",
    "What can you see here?",
    "A short story about this:",
    "List the objects shown.",
)


# ---------------------------------------------------------------------------------------------
# Statistics (pure Python; no numpy needed to run)
# ---------------------------------------------------------------------------------------------

def _auth_headers():
    """{"Authorization": "Bearer KEY"} when FLAMINGO_API_KEY is set (servers with API keys)."""
    key = os.environ.get("FLAMINGO_API_KEY", "")
    return {"Authorization": "Bearer " + key} if key else {}

def percentile(values, q):
    """The q-th percentile (0..100) with linear interpolation between closest ranks, the same
    as numpy.percentile's default method. NaN for an empty input."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile: q must be in [0, 100], got {q}")
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    frac = pos - lo
    return xs[lo] + (xs[hi] - xs[lo]) * frac


def summarize(values, scale=1000.0):
    """{"n", "mean", "p50", "p90", "p99"} of `values` (seconds) times `scale` (ms by default);
    None entries for an empty input (JSON null)."""
    vals = [v * scale for v in values]
    if not vals:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    return {
        "n": len(vals),
        "mean": sum(vals) / len(vals),
        "p50": percentile(vals, 50),
        "p90": percentile(vals, 90),
        "p99": percentile(vals, 99),
    }


@dataclasses.dataclass
class RequestRecord:
    """What one request did. Times are time.monotonic() seconds."""

    start: float
    end: float = math.nan
    status: str = "OK"  # "OK" or a grpc.StatusCode name, or "CLIENT_ERROR"
    error: str = ""
    images: int = 0
    chunk_times: list = dataclasses.field(default_factory=list)  # time of each token chunk
    chunk_tokens: list = dataclasses.field(default_factory=list)  # tokens in that chunk
    prompt_tokens: int = 0
    finish_reason: str = ""

    @property
    def ok(self):
        return self.status == "OK"

    @property
    def tokens(self):
        return sum(self.chunk_tokens)


def request_metrics(rec):
    """(ttft, tpot, itls, e2e) in seconds of one successful request; ttft/tpot None when the
    request produced no token / fewer than 2 tokens."""
    e2e = rec.end - rec.start
    if not rec.chunk_times:
        return None, None, [], e2e
    ttft = rec.chunk_times[0] - rec.start
    n = rec.tokens
    tpot = (e2e - ttft) / (n - 1) if n > 1 else None
    itls = []
    for i in range(1, len(rec.chunk_times)):
        gap = rec.chunk_times[i] - rec.chunk_times[i - 1]
        k = rec.chunk_tokens[i]
        itls.extend([gap / k] * k)
    return ttft, tpot, itls, e2e


def aggregate(records, wall_s, mode, level):
    """The report of one load level from its request records."""
    ok = [r for r in records if r.ok]
    errors = collections.Counter(r.status for r in records if not r.ok)
    ttfts, tpots, itls, e2es = [], [], [], []
    for r in ok:
        ttft, tpot, itl, e2e = request_metrics(r)
        if ttft is not None:
            ttfts.append(ttft)
        if tpot is not None:
            tpots.append(tpot)
        itls.extend(itl)
        e2es.append(e2e)
    out_tokens = sum(r.tokens for r in ok)
    first_errors = {}
    for r in records:
        if not r.ok and r.status not in first_errors:
            first_errors[r.status] = r.error
    return {
        "mode": mode,
        "level": level,
        "requests": len(records),
        "completed": len(ok),
        "errors": dict(sorted(errors.items())),
        "error_examples": first_errors,
        "wall_s": wall_s,
        "request_throughput": len(ok) / wall_s if wall_s > 0 else math.nan,
        "output_token_throughput": out_tokens / wall_s if wall_s > 0 else math.nan,
        "output_tokens": out_tokens,
        "prompt_tokens": sum(r.prompt_tokens for r in ok),
        "images": sum(r.images for r in ok),
        "mean_output_tokens": out_tokens / len(ok) if ok else None,
        "finish_reasons": dict(collections.Counter(r.finish_reason for r in ok)),
        "ttft_ms": summarize(ttfts),
        "tpot_ms": summarize(tpots),
        "itl_ms": summarize(itls),
        "e2e_ms": summarize(e2es),
    }


# ---------------------------------------------------------------------------------------------
# Workload
# ---------------------------------------------------------------------------------------------
def parse_list(text, kind, name="numbers"):
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {name}, got {text!r}")
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive {name}, got {text!r}")
    return values


def parse_mix(text):
    """--images-mix: weights for 0, 1, 2, 3, 4 images, e.g. "1,1,1,1,1" or "0:2,1:1,4:1"."""
    weights = [0.0] * (MAX_IMAGES + 1)
    items = [x.strip() for x in text.split(",") if x.strip()]
    try:
        if items and all(":" in x for x in items):
            for x in items:
                k, w = x.split(":", 1)
                if not 0 <= int(k) <= MAX_IMAGES:
                    raise ValueError
                weights[int(k)] = float(w)
        elif len(items) <= MAX_IMAGES + 1 and not any(":" in x for x in items):
            for i, x in enumerate(items):
                weights[i] = float(x)
        else:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected up to 5 weights for 0..4 images (\"1,1,1,1,1\") "
            f"or K:W pairs (\"0:1,4:1\"), got {text!r}"
        )
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise argparse.ArgumentTypeError(f"weights must be >= 0 and not all 0, got {text!r}")
    return weights


def load_images(folder):
    paths = sorted(p for p in pathlib.Path(folder).iterdir()
                   if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not paths:
        raise SystemExit(f"error: --images-dir {folder}: no .png/.jpg files")
    return [(p.name, p.read_bytes()) for p in paths]


class Workload:
    """Draws request specs: (number of images, image bytes list, text). Thread-safe."""

    def __init__(self, images, mix, seed=0, texts=PROMPT_TEXTS):
        self.images = images
        self.mix = mix
        self.texts = texts
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self):
        with self._lock:
            k = self._rng.choices(range(len(self.mix)), weights=self.mix)[0]
            imgs = [self._rng.choice(self.images)[1] for _ in range(k)]
            text = self._rng.choice(self.texts)
        return imgs, text


# ---------------------------------------------------------------------------------------------
# Sending (one request) and the two load modes
# ---------------------------------------------------------------------------------------------
def make_sender(client, max_new_tokens, ignore_eos=True, temperature=0.0, timeout=None):
    """A function spec -> RequestRecord that runs one GenerateStream through `client`."""
    import grpc

    from flamingo_client import finish_reason_name, image_part, text_part

    def send(spec):
        imgs, text = spec
        prompt = [image_part(b) for b in imgs] + [text_part(text)]
        rec = RequestRecord(start=time.monotonic(), images=len(imgs))
        try:
            call = client.generate_stream(prompt, max_new_tokens=max_new_tokens,
                                          ignore_eos=ignore_eos, temperature=temperature,
                                          timeout=timeout)
            for chunk in call:
                now = time.monotonic()
                if chunk.token_ids:
                    rec.chunk_times.append(now)
                    rec.chunk_tokens.append(len(chunk.token_ids))
                if chunk.finish_reason:
                    rec.finish_reason = finish_reason_name(chunk.finish_reason)
                if chunk.HasField("usage"):
                    rec.prompt_tokens = chunk.usage.prompt_tokens
        except grpc.RpcError as e:
            rec.status = e.code().name if e.code() else "UNKNOWN"
            rec.error = e.details() or ""
        except Exception as e:  # noqa: BLE001 (a benchmark must not die on one bad request)
            rec.status = "CLIENT_ERROR"
            rec.error = f"{type(e).__name__}: {e}"
        rec.end = time.monotonic()
        return rec

    return send


def make_http_sender(base_url, model, max_new_tokens, ignore_eos=True, temperature=0.0,
                     timeout=None):
    """A function spec -> RequestRecord that runs one streaming /v1/chat/completions (the
    OpenAI-compatible API) with the images as data: URLs. Tokens per chunk come from the
    chunk's logprobs (one entry per token), so the latency columns match the gRPC sender's."""
    import base64
    import http.client
    import urllib.parse

    url = urllib.parse.urlsplit(base_url)

    def send(spec):
        imgs, text = spec
        content = [{"type": "image_url", "image_url": {
            "url": ("data:image/png;base64," if b[:4] == b"\x89PNG" else "data:image/jpeg;base64,")
            + base64.b64encode(b).decode()}} for b in imgs]
        content.append({"type": "text", "text": text})
        body = {"model": model, "messages": [{"role": "user", "content": content}],
                "max_tokens": max_new_tokens, "temperature": temperature,
                "ignore_eos": ignore_eos, "stream": True, "logprobs": True,
                "stream_options": {"include_usage": True}}
        rec = RequestRecord(start=time.monotonic(), images=len(imgs))
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
        try:
            conn.request("POST", "/v1/chat/completions", json.dumps(body),
                         {"Content-Type": "application/json", **_auth_headers()})
            resp = conn.getresponse()
            if resp.status != 200:
                rec.status = f"HTTP_{resp.status}"
                rec.error = resp.read(500).decode(errors="replace")
            else:
                for line in resp:
                    line = line.strip()
                    if not line.startswith(b"data: ") or line == b"data: [DONE]":
                        continue
                    now = time.monotonic()
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        rec.status, rec.error = "STREAM_ERROR", chunk["error"].get("message", "")
                        break
                    if chunk.get("usage"):
                        rec.prompt_tokens = chunk["usage"]["prompt_tokens"]
                    for choice in chunk.get("choices", []):
                        lp = choice.get("logprobs") or {}
                        n = len(lp.get("content") or [])
                        if n:
                            rec.chunk_times.append(now)
                            rec.chunk_tokens.append(n)
                        if choice.get("finish_reason"):
                            rec.finish_reason = choice["finish_reason"]
        except Exception as e:  # noqa: BLE001 (a benchmark must not die on one bad request)
            rec.status = "CLIENT_ERROR"
            rec.error = f"{type(e).__name__}: {e}"
        finally:
            conn.close()
        rec.end = time.monotonic()
        return rec

    return send


def http_model_info(base_url, wait_s):
    """Waits until GET /health answers 200 (at most wait_s), then returns /v1/models' first
    entry."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(base_url + "/health", timeout=5) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"error: {base_url}/health not ready after {wait_s} s")
        time.sleep(0.2)
    req = urllib.request.Request(base_url + "/v1/models", headers=_auth_headers())
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["data"][0]


def run_concurrency(send, workload, concurrency, requests=None, duration=None):
    """Closed loop: `concurrency` workers; stops issuing after `requests` in all or `duration`
    seconds (whichever first), then waits for the in-flight ones. Returns (records, wall_s)."""
    if requests is None and duration is None:
        raise ValueError("run_concurrency: give requests or duration")
    lock = threading.Lock()
    records = []
    issued = [0]
    start = time.monotonic()

    def worker():
        while True:
            with lock:
                if requests is not None and issued[0] >= requests:
                    return
                if duration is not None and time.monotonic() - start >= duration:
                    return
                issued[0] += 1
            rec = send(workload.draw())
            with lock:
                records.append(rec)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return records, time.monotonic() - start


def run_poisson(send, workload, rate, requests=None, duration=None, seed=0, max_inflight=256):
    """Open loop: arrivals with exponential gaps of mean 1/rate seconds until `requests` were
    sent or `duration` passed; waits for all. Returns (records, wall_s)."""
    if requests is None and duration is None:
        raise ValueError("run_poisson: give requests or duration")
    rng = random.Random(seed)
    futures = []
    start = time.monotonic()
    next_at = 0.0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_inflight) as pool:
        while requests is None or len(futures) < requests:
            next_at += rng.expovariate(rate)
            if duration is not None and next_at >= duration:
                break
            delay = start + next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(send, workload.draw()))
        records = [f.result() for f in futures]
    return records, time.monotonic() - start


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
def _fmt(x, width=7, digits=1):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-".rjust(width)
    return f"{x:{width}.{digits}f}"


def format_table(levels):
    head = (f"{'mode':<11} {'load':>6} {'ok':>5} {'err':>4} {'req/s':>7} {'tok/s':>8} "
            f"{'TTFT p50':>8} {'p90':>7} {'p99':>7} {'TPOT p50':>8} {'p90':>7} {'p99':>7} "
            f"{'ITL p50':>7} {'p90':>7} {'p99':>7}")
    lines = [head, "-" * len(head)]
    for lv in levels:
        t, p, i = lv["ttft_ms"], lv["tpot_ms"], lv["itl_ms"]
        lines.append(
            f"{lv['mode']:<11} {lv['level']:>6g} {lv['completed']:>5} "
            f"{sum(lv['errors'].values()):>4} {_fmt(lv['request_throughput'], 7, 2)} "
            f"{_fmt(lv['output_token_throughput'], 8)} "
            f"{_fmt(t['p50'], 8)} {_fmt(t['p90'])} {_fmt(t['p99'])} "
            f"{_fmt(p['p50'], 8)} {_fmt(p['p90'])} {_fmt(p['p99'])} "
            f"{_fmt(i['p50'])} {_fmt(i['p90'])} {_fmt(i['p99'])}"
        )
        if lv["errors"]:
            lines.append("            errors: " + ", ".join(
                f"{k} x{v} ({lv['error_examples'].get(k, '')})" for k, v in lv["errors"].items()))
    lines.append("(latencies in ms; tok/s = output tokens per second)")
    return "\n".join(lines)


def _nan(x):
    return math.nan if x is None else x


def plot(levels, path, title=""):
    """Writes a PNG with two panels against load: throughput (output tok/s, req/s on a second
    axis) and latency (TTFT, TPOT and ITL p50 solid, p99 dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mode = levels[0]["mode"] if levels else "concurrency"
    xlabel = "concurrency (requests in flight)" if mode == "concurrency" else "arrival rate (req/s)"
    xs = [lv["level"] for lv in levels]
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax_t.plot(xs, [lv["output_token_throughput"] for lv in levels], "o-", color="tab:blue",
              label="output tokens/s")
    ax_t.set_xlabel(xlabel)
    ax_t.set_ylabel("output tokens/s", color="tab:blue")
    ax_r = ax_t.twinx()
    ax_r.plot(xs, [lv["request_throughput"] for lv in levels], "s--", color="tab:orange",
              label="requests/s")
    ax_r.set_ylabel("requests/s", color="tab:orange")
    ax_t.set_title("throughput")
    ax_t.grid(True, alpha=0.3)
    h1, l1 = ax_t.get_legend_handles_labels()
    h2, l2 = ax_r.get_legend_handles_labels()
    ax_t.legend(h1 + h2, l1 + l2, loc="upper left")
    for key, label, color in (("ttft_ms", "TTFT", "tab:red"), ("tpot_ms", "TPOT", "tab:green"),
                              ("itl_ms", "ITL", "tab:purple")):
        ax_l.plot(xs, [_nan(lv[key]["p50"]) for lv in levels], "o-", color=color,
                  label=f"{label} p50")
        ax_l.plot(xs, [_nan(lv[key]["p99"]) for lv in levels], "x--", color=color,
                  label=f"{label} p99")
    ax_l.set_xlabel(xlabel)
    ax_l.set_ylabel("ms")
    ax_l.set_title("latency")
    ax_l.grid(True, alpha=0.3)
    ax_l.legend(loc="upper left", fontsize="small")
    if mode == "concurrency" and xs and max(xs) / max(min(xs), 1e-9) >= 8:
        for ax in (ax_t, ax_l):
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs)
            ax.set_xticklabels([f"{x:g}" for x in xs])
            ax.minorticks_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _json_safe(obj):
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_json(report, path):
    pathlib.Path(path).write_text(json.dumps(_json_safe(report), indent=1) + "\n")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(
        description="Load generator for flamingo-server (GenerateStream): TTFT, TPOT, ITL, throughput.")
    p.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT (default %(default)s)")
    p.add_argument("--http", metavar="URL",
                   help="drive the OpenAI-compatible HTTP API at URL (e.g. http://127.0.0.1:8000: "
                        "streaming /v1/chat/completions) instead of gRPC GenerateStream")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--concurrency", type=lambda s: parse_list(s, int, "integers"),
                      help="closed-loop levels, e.g. 1,2,4,8 (the default)")
    mode.add_argument("--rates", type=lambda s: parse_list(s, float, "rates"),
                      help="open-loop Poisson arrival rates in req/s, e.g. 0.5,1,2")
    p.add_argument("--requests", type=int, default=None,
                   help="requests per level (default 32 unless --duration is given)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per level to keep issuing requests (with --requests: whichever ends first)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="default %(default)s")
    p.add_argument("--ignore-eos", action=argparse.BooleanOptionalAction, default=True,
                   help="generate exactly --max-new-tokens (default on)")
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    p.add_argument("--images-mix", type=parse_mix, default=parse_mix("1,1,1,1,1"),
                   help='weights for 0,1,2,3,4 images per prompt: "1,1,1,1,1" (default) or "0:3,4:1"')
    p.add_argument("--images-dir", default=str(DEFAULT_IMAGES_DIR), help="PNG/JPEG files to use")
    p.add_argument("--seed", type=int, default=0, help="workload and arrival seed (default 0)")
    p.add_argument("--warmup", type=int, default=2, help="unrecorded requests first (default 2)")
    p.add_argument("--timeout", type=float, default=600.0, help="per-request deadline, s")
    p.add_argument("--max-inflight", type=int, default=256, help="Poisson mode: client threads")
    p.add_argument("--wait-ready", type=float, default=60.0,
                   help="seconds to wait for health SERVING before starting (default 60)")
    p.add_argument("--json", dest="json_out", help="write the report here")
    p.add_argument("--plot", dest="plot_out", help="write a PNG plot here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.requests is None and args.duration is None:
        args.requests = 32
    if args.requests is not None and args.requests <= 0:
        raise SystemExit("error: --requests must be > 0")
    if args.max_new_tokens <= 0:
        raise SystemExit("error: --max-new-tokens must be > 0")
    if args.rates:
        mode, levels = "poisson", args.rates
    else:
        mode, levels = "concurrency", args.concurrency or [1, 2, 4, 8]

    sys.path.insert(0, str(REPO_ROOT / "clients" / "python"))
    import grpc
    from google.protobuf import json_format

    from flamingo_client import FlamingoClient

    images = load_images(args.images_dir)
    workload = Workload(images, args.images_mix, seed=args.seed)
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    client = None
    if args.http:
        base = args.http.rstrip("/")
        info = http_model_info(base, args.wait_ready)
        send = make_http_sender(base, info["id"], args.max_new_tokens, ignore_eos=args.ignore_eos,
                                temperature=args.temperature, timeout=args.timeout)
    else:
        client = FlamingoClient(args.server)
        try:
            client.wait_until_serving(args.wait_ready)
        except TimeoutError as e:
            raise SystemExit(f"error: {e}")
        try:
            info = json_format.MessageToDict(client.model_info(timeout=30),
                                             preserving_proto_field_name=True)
        except grpc.RpcError as e:
            info = {"error": f"{e.code().name}: {e.details()}"}
        send = make_sender(client, args.max_new_tokens, ignore_eos=args.ignore_eos,
                           temperature=args.temperature, timeout=args.timeout)
    for _ in range(args.warmup):
        rec = send(workload.draw())
        if not rec.ok:
            log(f"warm-up request failed: {rec.status}: {rec.error}")

    results = []
    for i, level in enumerate(levels):
        log(f"{mode} {level:g}: running ...")
        if mode == "concurrency":
            records, wall = run_concurrency(send, workload, level, args.requests, args.duration)
        else:
            records, wall = run_poisson(send, workload, level, args.requests, args.duration,
                                        seed=args.seed + i, max_inflight=args.max_inflight)
        lv = aggregate(records, wall, mode, level)
        results.append(lv)
        log(f"{mode} {level:g}: {lv['completed']}/{lv['requests']} ok in {wall:.1f} s, "
            f"{lv['output_token_throughput']:.1f} tok/s, TTFT p50 {_fmt(lv['ttft_ms']['p50'], 0)} ms"
            + (f", errors {lv['errors']}" if lv["errors"] else ""))
    if client is not None:
        client.close()

    print(format_table(results))
    report = {
        "tool": "bench/loadgen.py",
        "command": " ".join([pathlib.Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else list(argv))),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "config": {
            "server": args.http or args.server, "api": "http" if args.http else "grpc", "mode": mode, "levels": levels, "requests": args.requests,
            "duration": args.duration, "max_new_tokens": args.max_new_tokens,
            "ignore_eos": args.ignore_eos, "temperature": args.temperature,
            "images_mix": args.images_mix, "images": [n for n, _ in images], "seed": args.seed,
            "warmup": args.warmup,
        },
        "model_info": info,
        "levels": results,
    }
    if args.json_out:
        write_json(report, args.json_out)
        log(f"wrote {args.json_out}")
    if args.plot_out:
        info_line = f"{info.get('family', '?')} {info.get('dtype', '')}, max_new_tokens {args.max_new_tokens}"
        plot(results, args.plot_out, title=f"flamingo-server load test ({info_line})")
        log(f"wrote {args.plot_out}")
    total = sum(lv["requests"] for lv in results)
    failed = sum(sum(lv["errors"].values()) for lv in results)
    return 1 if total and failed == total else 0


if __name__ == "__main__":
    sys.exit(main())
