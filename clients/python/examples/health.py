#!/usr/bin/env python3
"""grpc.health.v1 Check: prints the serving status; exit 0 when SERVING, 1 otherwise.

    clients/python/examples/health.py --server 127.0.0.1:50051 [--service flamingo.v1.Flamingo] [--wait 60]
"""

import json

import _common
from _common import flamingo_client


def main():
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--service", default="", help='"" (the server) or flamingo.v1.Flamingo')
    p.add_argument("--wait", type=float, default=0.0,
                   help="poll up to this many seconds for SERVING (default: check once)")
    args = p.parse_args()
    with flamingo_client.FlamingoClient(args.server, timeout=args.timeout) as client:
        if args.wait > 0:
            try:
                client.wait_until_serving(args.wait, service=args.service)
            except TimeoutError as e:
                print(f"error: {e}", file=_common.sys.stderr)
        status = client.health(args.service)
    print(json.dumps({"service": args.service, "status": status}) if args.json else status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    _common.run(main)
