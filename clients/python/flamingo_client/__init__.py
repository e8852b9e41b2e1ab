"""Python client for flamingo-serve (package flamingo.v1, service Flamingo).

    import sys; sys.path.insert(0, "clients/python")
    from flamingo_client import FlamingoClient, parts_from_template
    with FlamingoClient("127.0.0.1:50051") as c:
        r = c.generate(parts_from_template("<image>A photo of", ["cat.png"]), max_new_tokens=8)
        print(r.text)

Importing this package finds the generated stubs ($FLAMINGO_STUBS, else <repo>/build/python,
else generated once into ~/.cache/flamingo-serve with protoc + grpc_python_plugin); see
_stubs.py and README.md. The raw stub modules are exported as pb2, pb2_grpc, health_pb2 and
health_pb2_grpc.
"""

from .client import (
    FLAMINGO_SERVICE,
    STUBS_DIR,
    FlamingoClient,
    caption_request,
    finish_reason_name,
    generate_request,
    health_pb2,
    health_pb2_grpc,
    health_status_name,
    image,
    image_part,
    part,
    parts,
    parts_from_template,
    pb2,
    pb2_grpc,
    question_request,
    sampling_params,
    score_request,
    text_part,
)

__all__ = [
    "FLAMINGO_SERVICE",
    "STUBS_DIR",
    "FlamingoClient",
    "caption_request",
    "finish_reason_name",
    "generate_request",
    "health_pb2",
    "health_pb2_grpc",
    "health_status_name",
    "image",
    "image_part",
    "part",
    "parts",
    "parts_from_template",
    "pb2",
    "pb2_grpc",
    "question_request",
    "sampling_params",
    "score_request",
    "text_part",
]
