#!/usr/bin/env bash
# Generates the Python gRPC stubs of flamingo-serve's API into OUTDIR:
#   OUTDIR/flamingo/v1/flamingo_pb2.py, flamingo_pb2_grpc.py   (proto/flamingo/v1/flamingo.proto)
#   OUTDIR/grpc/health/v1/health_pb2.py, health_pb2_grpc.py    (clients/python/proto/...)
# with Debian's protoc and grpc_python_plugin (package protobuf-compiler-grpc; grpcio-tools is
# not needed). Override the tools with $PROTOC and $GRPC_PYTHON_PLUGIN.
# Usage: clients/python/gen_stubs.sh OUTDIR
set -euo pipefail

if [[ $# -ne 1 || "$1" == -* ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
protoc=${PROTOC:-protoc}
plugin=${GRPC_PYTHON_PLUGIN:-$(command -v grpc_python_plugin || true)}

if ! command -v "$protoc" >/dev/null 2>&1; then
  echo "gen_stubs.sh: protoc not found (install protobuf-compiler or set \$PROTOC)" >&2
  exit 1
fi
if [[ -z "$plugin" || ! -x "$plugin" ]]; then
  echo "gen_stubs.sh: grpc_python_plugin not found (install protobuf-compiler-grpc or set \$GRPC_PYTHON_PLUGIN)" >&2
  exit 1
fi

mkdir -p "$out"
"$protoc" -I "$repo/proto" -I "$here/proto" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python="$plugin" \
  "$repo/proto/flamingo/v1/flamingo.proto" \
  "$here/proto/grpc/health/v1/health.proto"
