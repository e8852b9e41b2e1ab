"""Shared bits of the example scripts: import path, default image, common flags, errors."""

import argparse
import json
import pathlib
import sys

EXAMPLES_DIR = pathlib.Path(__file__).resolve().parent
REPO_ROOT = EXAMPLES_DIR.parents[2]
sys.path.insert(0, str(EXAMPLES_DIR.parent))  # clients/python: the flamingo_client package

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402

import flamingo_client  # noqa: E402

IMAGES_DIR = REPO_ROOT / "tests" / "golden" / "idefics-tiny" / "images"
DEFAULT_IMAGE = IMAGES_DIR / "cat_face_28x28.png"


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT (default %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the response as JSON")
    return p


def add_sampling(p, max_new_tokens=16):
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    p.add_argument("--top-p", type=float, default=0.0, help="0: off")
    p.add_argument("--top-k", type=int, default=0, help="0: off")
    p.add_argument("--repetition-penalty", type=float, default=0.0, help="0: off")
    p.add_argument("--seed", type=int, default=0, help="0: random (returned by the server)")


def sampling_kwargs(args):
    return {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "repetition_penalty": args.repetition_penalty,
        "seed": args.seed,
    }


def to_json(message):
    return json.dumps(
        json_format.MessageToDict(message, preserving_proto_field_name=True), indent=1
    )


def print_generate_response(r, as_json):
    if as_json:
        print(to_json(r))
        return
    print(r.text)
    print(
        f"finish_reason={flamingo_client.finish_reason_name(r.finish_reason)} "
        f"prompt_tokens={r.usage.prompt_tokens} completion_tokens={r.usage.completion_tokens} "
        f"images={r.usage.images} seed={r.seed}",
        file=sys.stderr,
    )


def run(main):
    """Runs main(); a gRPC error becomes one line on stderr and exit code 1."""
    try:
        sys.exit(main())
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(1)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
