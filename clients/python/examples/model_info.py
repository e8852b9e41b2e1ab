#!/usr/bin/env python3
"""GetModelInfo: the served model, its sizes, dtype, context length, limits and KV blocks.

    clients/python/examples/model_info.py --server 127.0.0.1:50051
"""

import _common
from _common import flamingo_client


def main():
    p = _common.parser(__doc__.splitlines()[0])
    args = p.parse_args()
    with flamingo_client.FlamingoClient(args.server, timeout=args.timeout) as client:
        info = client.model_info()
    if args.json:
        print(_common.to_json(info))
        return 0
    for field, value in info.ListFields():
        if field.name == "limits":
            for lf, lv in value.ListFields():
                print(f"limits.{lf.name}: {lv}")
        else:
            print(f"{field.name}: {value}")
    return 0


if __name__ == "__main__":
    _common.run(main)
