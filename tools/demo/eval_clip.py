#!/usr/bin/python3
"""Evaluate the demo CLIP (models/demo-clip, trained by tools/demo/train_clip.py) through a
RUNNING flamingo-server, over gRPC with clients/python's FlamingoClient, on held-out scenes.

The scenes are tools/demo/scenes.py's eval_set(n, seed): HELD-OUT split (seeds with the low
bit 1, scenes whose hash bit says heldout), a stream training never draws from. Tasks:

  colour    Classify of each one-object scene among the 8 colour names,
            template "a photo of a {} object."               (chance 1/8)
  shape     Classify of each one-object scene among the 6 shape names,
            template "a photo of a {}."                      (chance 1/6)
  count     Classify of every scene among "one object" .. "four objects",
            template "a photo of {}."                        (chance 1/4)
  retrieval Embed of the first --retrieval-n scenes and their captions; text-to-image
            recall@1: the top image of a caption is right when its own caption is the same
            text (one-object scenes can share one). Chance: the mean share of images whose
            caption equals the query's. Image-to-text recall@1 likewise.

It starts nothing: run the server first, e.g.
  build/bin/flamingo-server --model models/demo-clip --port 50051
  /usr/bin/python3 tools/demo/eval_clip.py --server 127.0.0.1:50051 [--n 2000] [--json F]
Prints a Markdown table (task, items, accuracy, chance) and per-size shape accuracy.
"""

import argparse
import io
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import scenes as S  # noqa: E402

# The zero-shot prompts (train_clip.py trains with exactly these).
COLOUR_TEMPLATE, SHAPE_TEMPLATE, COUNT_TEMPLATE = ("a photo of a {} object.", "a photo of a {}.",
                                                   "a photo of {}.")
COLOURS, SHAPES = list(S.COLOURS), list(S.SHAPES)
COUNTS = ["one object", "two objects", "three objects", "four objects"]


def png(img):
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def argmax(xs):
    return max(range(len(xs)), key=lambda i: xs[i])


def classify_task(client, items, labels, template, truth):
    hits = []
    for it in items:
        probs = client.classify(it["png"], labels, template)
        hits.append(labels[argmax(probs)] == truth(it["scene"]))
    return hits


def chunks(xs, n):
    return [xs[i:i + n] for i in range(0, len(xs), n)]


def retrieval(client, items, batch):
    import numpy as np
    caps = [it["caption"] for it in items]
    img, txt = [], []
    for part in chunks(items, batch):
        img += client.embed([it["png"] for it in part], [])[0]
    for part in chunks(caps, batch):
        txt += client.embed([], part)[1]
    sim = np.asarray(txt, dtype=np.float64) @ np.asarray(img, dtype=np.float64).T  # [T, I]
    same = np.array([[a == b for b in caps] for a in caps])
    t2i = float(np.mean([same[i, int(np.argmax(sim[i]))] for i in range(len(caps))]))
    i2t = float(np.mean([same[int(np.argmax(sim[:, j])), j] for j in range(len(caps))]))
    return t2i, i2t, float(same.mean(axis=1).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True, help="HOST:PORT of a running flamingo-server "
                    "serving a CLIP (gRPC)")
    ap.add_argument("--n", type=int, default=2000, help="held-out scenes (eval_set size)")
    ap.add_argument("--seed", type=int, default=0, help="eval_set seed")
    ap.add_argument("--retrieval-n", type=int, default=100,
                    help="images (and their captions) in the retrieval pool")
    ap.add_argument("--embed-batch", type=int, default=32, help="images/texts per Embed")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per RPC")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)

    sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
    from flamingo_client import FlamingoClient

    items = S.eval_set(a.n, a.seed)
    for it in items:
        it["png"] = png(it["image"])
    single = [it for it in items if len(it["scene"].objects) == 1]
    rows, t0 = [], time.time()
    with FlamingoClient(a.server, timeout=a.timeout) as client:
        info = client.model_info()
        col = classify_task(client, single, COLOURS, COLOUR_TEMPLATE,
                            lambda s: s.objects[0].colour)
        shp = classify_task(client, single, SHAPES, SHAPE_TEMPLATE,
                            lambda s: s.objects[0].shape)
        cnt = classify_task(client, items, COUNTS, COUNT_TEMPLATE,
                            lambda s: COUNTS[len(s.objects) - 1])
        pool = items[:a.retrieval_n]
        t2i, i2t, chance = retrieval(client, pool, a.embed_batch)
    secs = time.time() - t0
    rows = [("colour (one-object scenes)", len(col), sum(col) / len(col), 1 / len(COLOURS)),
            ("shape (one-object scenes)", len(shp), sum(shp) / len(shp), 1 / len(SHAPES)),
            ("count (all scenes)", len(cnt), sum(cnt) / len(cnt), 1 / len(COUNTS)),
            (f"text-to-image R@1 among {len(pool)}", len(pool), t2i, chance),
            (f"image-to-text R@1 among {len(pool)}", len(pool), i2t, chance)]
    by_size = {}
    for it, ok in zip(single, shp):
        by_size.setdefault(it["scene"].objects[0].size, []).append(ok)
    print(f"server {a.server}: {info.kind} {info.model_dir}, dtype {info.dtype}, "
          f"logit_scale {info.clip.logit_scale:.3f}")
    print(f"held-out eval_set(n={a.n}, seed={a.seed}): {len(single)} one-object scenes; "
          f"{len(col) + len(shp) + len(cnt)} Classify and "
          f"{2 * -(-len(pool) // a.embed_batch)} Embed calls in {secs:.1f}s\n")
    print("| task | items | accuracy | chance |\n|---|---:|---:|---:|")
    for name, n, acc, ch in rows:
        print(f"| {name} | {n} | {100 * acc:.1f}% | {100 * ch:.1f}% |")
    print("\nshape accuracy by size: " + ", ".join(
        f"{k} {100 * sum(v) / len(v):.1f}% ({len(v)})" for k, v in sorted(by_size.items())))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"server": a.server, "n": a.n, "seed": a.seed,
                       "rows": [dict(task=r[0], items=r[1], accuracy=r[2], chance=r[3])
                                for r in rows],
                       "shape_by_size": {k: sum(v) / len(v) for k, v in by_size.items()}},
                      f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
