#!/usr/bin/env python3
"""Score: the log-probability of each candidate continuation (zero/few-shot classification).

    clients/python/examples/score.py --server 127.0.0.1:50051 --prompt "<image>This is a photo of a" \
        --candidate " cat" --candidate " dog"
"""

import json

import _common
from _common import flamingo_client


def main():
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--prompt", default="<image>This is a photo of a",
                   help='text; each "<image>" marks where the next --image goes (default %(default)r)')
    p.add_argument("--image", action="append", default=None,
                   help=f"PNG/JPEG file, repeatable (default {_common.DEFAULT_IMAGE} per marker)")
    p.add_argument("--candidate", action="append", default=None,
                   help='candidate continuation, repeatable (default " cat", " dog", " chair")')
    args = p.parse_args()
    candidates = args.candidate or [" cat", " dog", " chair"]
    images = args.image
    if images is None:
        images = [_common.DEFAULT_IMAGE] * args.prompt.count(flamingo_client.client.IMAGE_MARKER)
    prompt = flamingo_client.parts_from_template(args.prompt, images)
    with flamingo_client.FlamingoClient(args.server, timeout=args.timeout) as client:
        logprobs = client.score(prompt, candidates)
    if args.json:
        print(json.dumps({"candidates": candidates, "logprobs": logprobs}, indent=1))
        return 0
    best = max(range(len(candidates)), key=lambda i: logprobs[i])
    for i, (c, lp) in enumerate(zip(candidates, logprobs)):
        print(f"{lp:12.4f}  {c!r}" + ("  <- best" if i == best else ""))
    return 0


if __name__ == "__main__":
    _common.run(main)
