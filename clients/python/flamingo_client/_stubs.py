"""Finds (or generates) the protoc-generated Python stubs and imports them.

Lookup order (the first that applies wins):
  1. $FLAMINGO_STUBS: a folder made by clients/python/gen_stubs.sh (must exist and be complete).
  2. <repo>/build/python: what the CMake build generates, when it is complete and not older
     than the .proto files.
  3. A cache folder ($XDG_CACHE_HOME or ~/.cache)/flamingo-serve/stubs-<hash of the protos>,
     generated on first use by gen_stubs.sh when protoc and grpc_python_plugin are on PATH.

The stubs are plain modules `flamingo.v1.flamingo_pb2[_grpc]` and `grpc.health.v1.health_pb2[_grpc]`;
the chosen folder goes to the front of sys.path, and, because `grpc` is grpcio's own (regular)
package, the folder's grpc/ is appended to `grpc.__path__` unless a grpc.health.v1 is installed.
"""

import hashlib
import importlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

CLIENT_DIR = pathlib.Path(__file__).resolve().parents[1]  # clients/python
REPO_ROOT = CLIENT_DIR.parents[1]
GEN_STUBS = CLIENT_DIR / "gen_stubs.sh"
PROTO_FILES = (
    REPO_ROOT / "proto" / "flamingo" / "v1" / "flamingo.proto",
    CLIENT_DIR / "proto" / "grpc" / "health" / "v1" / "health.proto",
)
_STUB_FILES = (
    pathlib.Path("flamingo/v1/flamingo_pb2.py"),
    pathlib.Path("flamingo/v1/flamingo_pb2_grpc.py"),
    pathlib.Path("grpc/health/v1/health_pb2.py"),
    pathlib.Path("grpc/health/v1/health_pb2_grpc.py"),
)


class StubsNotFound(ImportError):
    pass


def _complete(folder):
    return all((folder / f).is_file() for f in _STUB_FILES)


def _fresh(folder):
    """True when no stub is older than the proto it comes from."""
    try:
        newest_proto = max(p.stat().st_mtime for p in PROTO_FILES if p.exists())
        oldest_stub = min((folder / f).stat().st_mtime for f in _STUB_FILES)
    except (OSError, ValueError):
        return False
    return oldest_stub >= newest_proto


def _proto_hash():
    h = hashlib.sha256()
    for p in PROTO_FILES:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def generate(out_dir):
    """Runs gen_stubs.sh into out_dir; raises StubsNotFound with the tool's message on failure."""
    proc = subprocess.run(
        ["bash", str(GEN_STUBS), str(out_dir)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise StubsNotFound(
            f"gen_stubs.sh failed (exit {proc.returncode}): {proc.stderr.strip()}"
        )


def _cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    root = pathlib.Path(base) / "flamingo-serve"
    final = root / f"stubs-{_proto_hash()}"
    if _complete(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".stubs-", dir=root))
    try:
        generate(tmp)
        try:
            os.rename(tmp, final)  # atomic; fails when another process won the race
        except OSError:
            if not _complete(final):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def find_stubs_dir():
    env = os.environ.get("FLAMINGO_STUBS")
    if env:
        folder = pathlib.Path(env)
        if not _complete(folder):
            raise StubsNotFound(
                f"FLAMINGO_STUBS={env}: expected {', '.join(map(str, _STUB_FILES))} "
                f"(run clients/python/gen_stubs.sh {env})"
            )
        return folder
    build = REPO_ROOT / "build" / "python"
    if _complete(build) and _fresh(build):
        return build
    if all(p.exists() for p in PROTO_FILES):
        return _cache_dir()
    raise StubsNotFound(
        "no flamingo stubs: set FLAMINGO_STUBS to a folder made by clients/python/gen_stubs.sh"
    )


def load():
    """Returns (stubs_dir, flamingo_pb2, flamingo_pb2_grpc, health_pb2, health_pb2_grpc)."""
    folder = find_stubs_dir().resolve()
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    import grpc  # noqa: F401  (grpcio's package; extended below when needed)

    try:
        importlib.import_module("grpc.health.v1.health_pb2")
    except ImportError:
        grpc_dir = str(folder / "grpc")
        if grpc_dir not in grpc.__path__:
            grpc.__path__.append(grpc_dir)
        for name in ("grpc.health.v1", "grpc.health"):  # forget failed namespace lookups
            sys.modules.pop(name, None)
    pb2 = importlib.import_module("flamingo.v1.flamingo_pb2")
    pb2_grpc = importlib.import_module("flamingo.v1.flamingo_pb2_grpc")
    health_pb2 = importlib.import_module("grpc.health.v1.health_pb2")
    health_pb2_grpc = importlib.import_module("grpc.health.v1.health_pb2_grpc")
    return folder, pb2, pb2_grpc, health_pb2, health_pb2_grpc
