#!/usr/bin/env python3
"""AnswerQuestion (VQA): a short answer about one image, optionally after few-shot examples.

    clients/python/examples/ask.py --server 127.0.0.1:50051 --image cat.png \
        --question "What animal is this?" --example leaf.png "What color is it?" "green"
"""

import _common
from _common import flamingo_client


def main():
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--image", default=str(_common.DEFAULT_IMAGE), help="default %(default)s")
    p.add_argument("--question", default="What is in the picture?", help="default %(default)r")
    p.add_argument("--example", nargs=3, action="append", default=[],
                   metavar=("IMAGE", "QUESTION", "ANSWER"), help="a few-shot demo, repeatable")
    _common.add_sampling(p, max_new_tokens=8)
    args = p.parse_args()
    with flamingo_client.FlamingoClient(args.server, timeout=args.timeout) as client:
        r = client.ask(args.image, args.question, [tuple(e) for e in args.example],
                       **_common.sampling_kwargs(args))
    _common.print_generate_response(r, args.json)
    return 0


if __name__ == "__main__":
    _common.run(main)
