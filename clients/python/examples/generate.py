#!/usr/bin/env python3
"""Generate: one interleaved image-and-text prompt -> one completion.

    clients/python/examples/generate.py --server 127.0.0.1:50051 \
        --prompt "<image>A photo of" --image tests/golden/idefics-tiny/images/cat_face_28x28.png
"""

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
    p.add_argument("--top-logprobs", type=int, default=0)
    _common.add_sampling(p)
    args = p.parse_args()
    images = args.image
    if images is None:
        images = [_common.DEFAULT_IMAGE] * args.prompt.count(flamingo_client.client.IMAGE_MARKER)
    prompt = flamingo_client.parts_from_template(args.prompt, images)
    with flamingo_client.FlamingoClient(args.server, timeout=args.timeout) as client:
        r = client.generate(prompt, stop=args.stop, ignore_eos=args.ignore_eos,
                            top_logprobs=args.top_logprobs, **_common.sampling_kwargs(args))
    _common.print_generate_response(r, args.json)
    return 0


if __name__ == "__main__":
    _common.run(main)
