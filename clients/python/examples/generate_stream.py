#!/usr/bin/env python3
"""GenerateStream: prints the completion as it streams, then the finish reason and timings.

    clients/python/examples/generate_stream.py --server 127.0.0.1:50051 --prompt "<image>A photo of"
"""

import sys
import time

import _common
from _common import flamingo_client


def main():
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--prompt", default="<image>A photo of",
                   help='text; each "<image>" marks where the next --image goes (default %(default)r)')
    p.add_argument("--image", action="append", default=None,
                   help=f"PNG/JPEG file, repeatable (default {_common.DEFAULT_IMAGE} per marker)")
    p.add_argument("--stop", action="append", default=[], help="stop string, repeatable")
    p.add_argument("--ignore-eos", action="store_true")
    _common.add_sampling(p)
    args = p.parse_args()
    images = args.image
    if images is None:
        images = [_common.DEFAULT_IMAGE] * args.prompt.count(flamingo_client.client.IMAGE_MARKER)
    prompt = flamingo_client.parts_from_template(args.prompt, images)
    with flamingo_client.FlamingoClient(args.server, timeout=args.timeout) as client:
        start = time.monotonic()
        first = None
        tokens = 0
        last = None
        for chunk in client.generate_stream(prompt, stop=args.stop, ignore_eos=args.ignore_eos,
                                            **_common.sampling_kwargs(args)):
            if first is None and chunk.token_ids:
                first = time.monotonic() - start
            tokens += len(chunk.token_ids)
            if args.json:
                print(_common.to_json(chunk).replace("\n", ""), flush=True)
            else:
                print(chunk.text, end="", flush=True)
            last = chunk
        total = time.monotonic() - start
    if not args.json:
        print()
    reason = flamingo_client.finish_reason_name(last.finish_reason) if last else "none"
    ttft = f"{first * 1e3:.1f}" if first is not None else "n/a"
    print(f"finish_reason={reason} tokens={tokens} ttft_ms={ttft} total_ms={total * 1e3:.1f}"
          + (f" seed={last.seed}" if last else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    _common.run(main)
