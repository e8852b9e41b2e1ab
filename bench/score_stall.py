#!/usr/bin/env python3
"""Score beside a stream, against a running flamingo-server (a benchmark tool, not a test).

Reproduces issue 9's measurement: a GenerateStream decodes (ignore_eos) while a Score with
--candidates candidates after a prompt of about --prompt-tokens tokens runs; then a Generate
(1 new token) with another prompt of the same length (nothing cached: the cost of one
prefill), and the first Score again (its prompt now in the prefix cache). Reports the
latencies, the stream's inter-token gaps while the first Score ran (max, median) and the
tokens the stream got meanwhile. Prints JSON.

    /usr/bin/python3 bench/score_stall.py --server 127.0.0.1:50051 --prompt-tokens 1521 \
        --candidates 8 --json out.json
"""

import argparse
import json
import pathlib
import statistics
import sys
import threading
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
IMAGE = REPO_ROOT / "tests" / "golden" / "idefics-tiny" / "images" / "cat_face_28x28.png"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server", default="127.0.0.1:50051")
    p.add_argument("--prompt-tokens", type=int, default=1521, help="about this many prompt tokens")
    p.add_argument("--candidates", type=int, default=8)
    p.add_argument("--stream-tokens", type=int, default=1000, help="the stream's max_new_tokens")
    p.add_argument("--json", dest="json_out")
    args = p.parse_args(argv)

    sys.path.insert(0, str(REPO_ROOT / "clients" / "python"))
    from flamingo_client import FlamingoClient

    client = FlamingoClient(args.server)
    client.wait_until_serving(120)
    info = client.model_info(timeout=30)
    image = IMAGE.read_bytes()
    # Words the tokenizers of our checkpoints keep as about one token each.
    def text_of(subject):  # about 1.25 tokens per word with our checkpoints' tokenizers
        n = int((args.prompt_tokens - 90) / 1.245)
        words = (f"{subject} sat on the mat and looked at the window " * (n // 10 + 1)).split()
        return " ".join(words[:n]) + f". In the end, the {subject} was"

    prompt = [image, text_of("cat")]
    other = [image, text_of("dog")]
    candidates = [" happy", " asleep", " gone", " a dog", " hungry", " tired", " here", " blue",
                  " warm", " small", " black", " outside"][: args.candidates]

    stamps = []  # arrival times of the stream's token-carrying chunks
    first = threading.Event()
    failed = []

    def stream():
        call = client.generate_stream("Tell me a long story:", max_new_tokens=args.stream_tokens,
                                      ignore_eos=True, timeout=3600)
        try:
            for chunk in call:
                if chunk.token_ids:
                    stamps.extend([time.monotonic()] * len(chunk.token_ids))
                    first.set()
                if stop.is_set():
                    call.cancel()
                    break
        except Exception as e:  # cancelled by us, or refused
            if not stop.is_set():
                failed.append(repr(e))
        first.set()

    stop = threading.Event()
    t = threading.Thread(target=stream, daemon=True)
    t.start()
    first.wait(600)
    if failed or not stamps:
        raise SystemExit(f"error: the stream failed: {failed}")
    time.sleep(1.0)
    s0 = time.monotonic()
    logprobs = client.score(prompt, candidates, timeout=3600)
    s1 = time.monotonic()
    during = [x for x in stamps if s0 <= x <= s1]
    before = [x for x in stamps if x < s0]
    edges = ([before[-1]] if before else [s0]) + during + [s1]
    gaps = [b - a for a, b in zip(edges, edges[1:])]
    g0 = time.monotonic()
    gen = client.generate(other, max_new_tokens=1, timeout=3600)
    g1 = time.monotonic()
    a0 = time.monotonic()
    again = client.score(prompt, candidates, timeout=3600)
    a1 = time.monotonic()
    stop.set()
    t.join(30)
    client.close()

    report = {
        "tool": "bench/score_stall.py",
        "command": " ".join([pathlib.Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else list(argv))),
        "model": {"dtype": info.dtype, "weights": info.weights, "hidden_size": info.hidden_size,
                  "num_layers": info.num_layers},
        "prompt_tokens": gen.usage.prompt_tokens,
        "candidates": len(candidates),
        "score_s": round(s1 - s0, 3),
        "stream_tokens_during_score": len(during),
        "stream_max_gap_during_score_s": round(max(gaps), 3),
        "stream_median_gap_during_score_s": round(statistics.median(gaps), 3),
        "generate_other_prompt_1_token_s": round(g1 - g0, 3),
        "score_again_s": round(a1 - a0, 3),
        "same_logprobs_again": max(abs(x - y) for x, y in zip(logprobs, again)),
    }
    out = json.dumps(report, indent=2)
    print(out)
    if args.json_out:
        pathlib.Path(args.json_out).write_text(out + "\n")


if __name__ == "__main__":
    main()
