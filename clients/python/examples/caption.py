#!/usr/bin/env python3
"""Caption: a caption for one image, optionally after few-shot (image, caption) examples.

    clients/python/examples/caption.py --server 127.0.0.1:50051 --image cat.png \
        --example chair.jpg "A wooden chair." --example leaf.png "A green leaf."
"""

import _common
from _common import flamingo_client


def main():
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--image", default=str(_common.DEFAULT_IMAGE), help="default %(default)s")
    p.add_argument("--example", nargs=2, action="append", default=[], metavar=("IMAGE", "CAPTION"),
                   help="a few-shot demo, repeatable")
    _common.add_sampling(p)
    args = p.parse_args()
    with flamingo_client.FlamingoClient(args.server, timeout=args.timeout) as client:
        r = client.caption(args.image, [tuple(e) for e in args.example],
                           **_common.sampling_kwargs(args))
    _common.print_generate_response(r, args.json)
    return 0


if __name__ == "__main__":
    _common.run(main)
