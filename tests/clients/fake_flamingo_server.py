#!/usr/bin/python3
"""A deterministic fake flamingo-server for testing the Python client, examples and loadgen
without the real binary (grpcio server API).

As a module: make_fake_server() -> (server, "127.0.0.1:PORT", flamingo servicer, health servicer).
As a script it mimics the real server's command line contract closely enough for
tests/clients/test_examples_e2e.py (used to test that harness itself):
    fake_flamingo_server.py --port 0 [--host 127.0.0.1] [--metrics-port N] [other flags ignored]
prints "listening on HOST:PORT", then "ready", on stderr; SIGTERM/SIGINT -> NOT_SERVING, exit 0.

Behaviour: Generate/GenerateStream return max_new_tokens (default 5) tokens 100, 101, ... with
text "<100><101>..."; a prompt containing "FAIL" (or every fail_every-th request) fails
RESOURCE_EXHAUSTED. Caption -> "caption {examples} {image bytes}", AnswerQuestion -> "answer
{question} {examples}", Score -> -len(candidate).
"""

import argparse
import pathlib
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "clients" / "python"))
from flamingo_client import health_pb2, health_pb2_grpc, pb2, pb2_grpc  # noqa: E402

FIRST_TOKEN_DELAY = 0.03
TOKEN_DELAY = 0.01


def _texts(parts):
    return [p.text for p in parts if p.WhichOneof("kind") == "text"]


def _images(parts):
    return [p.image.data for p in parts if p.WhichOneof("kind") == "image"]


def make_fake_server(address="127.0.0.1:0", server_credentials=None):
    """Starts a fake server; returns (server, "HOST:PORT", flamingo servicer, health servicer).
    server.address is the bound address too."""

    class FakeFlamingo(pb2_grpc.FlamingoServicer):
        def __init__(self):
            self.lock = threading.Lock()
            self.requests = []
            self.authorization = None  # the last Generate's "authorization" metadata
            self.fail_every = 0  # every n-th Generate[Stream] fails RESOURCE_EXHAUSTED
            self.count = 0

        def _record(self, name, request):
            with self.lock:
                self.requests.append((name, request))
                self.count += 1
                return self.count

        def _check(self, n, request, context):
            if any("FAIL" in t for t in _texts(request.prompt)) or (
                self.fail_every and n % self.fail_every == 0
            ):
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              "queue full: 257 requests exceed the limit 256 (--max-queued)")

        @staticmethod
        def _usage(request, n):
            return pb2.Usage(prompt_tokens=sum(len(t) for t in _texts(request.prompt)),
                             completion_tokens=n, images=len(_images(request.prompt)))

        def Generate(self, request, context):
            self.authorization = dict(context.invocation_metadata()).get("authorization")
            self._check(self._record("Generate", request), request, context)
            n = request.max_new_tokens or 5
            ids = [100 + i for i in range(n)]
            tops = [pb2.TopLogprobs(token_ids=[i, i + 1][: request.top_logprobs],
                                    logprobs=[-0.5, -1.5][: request.top_logprobs])
                    for i in ids] if request.top_logprobs else []
            return pb2.GenerateResponse(
                text="".join(f"<{i}>" for i in ids), token_ids=ids, logprobs=[-0.5] * n,
                finish_reason=pb2.LENGTH, usage=self._usage(request, n), top_logprobs=tops,
                seed=request.sampling.seed or 1234, request_id=request.request_id or "fake-1")

        def GenerateStream(self, request, context):
            self._check(self._record("GenerateStream", request), request, context)
            n = request.max_new_tokens or 5
            time.sleep(FIRST_TOKEN_DELAY)
            for i in range(n):
                if i:
                    time.sleep(TOKEN_DELAY)
                chunk = pb2.GenerateChunk(text=f"<{100 + i}>", token_ids=[100 + i], logprobs=[-0.5])
                if i == n - 1:
                    chunk.finish_reason = pb2.LENGTH
                    chunk.usage.CopyFrom(self._usage(request, n))
                    chunk.seed = request.sampling.seed or 1234
                yield chunk

        def Caption(self, request, context):
            self._record("Caption", request)
            return pb2.GenerateResponse(
                text=f"caption {len(request.examples)} {len(request.image.data)}",
                finish_reason=pb2.STOP,
                usage=pb2.Usage(prompt_tokens=9, completion_tokens=3,
                                images=1 + len(request.examples)))

        def AnswerQuestion(self, request, context):
            self._record("AnswerQuestion", request)
            return pb2.GenerateResponse(
                text=f"answer {request.question} {len(request.examples)}", finish_reason=pb2.STOP,
                usage=pb2.Usage(prompt_tokens=9, completion_tokens=3,
                                images=1 + len(request.examples)))

        def Score(self, request, context):
            self._record("Score", request)
            return pb2.ScoreResponse(logprobs=[-float(len(c)) for c in request.candidates])

        def Embed(self, request, context):
            self._record("Embed", request)
            return pb2.EmbedResponse(
                image_embeddings=[pb2.Embedding(values=[float(len(i.data)), 0.0]) for i in request.images],
                text_embeddings=[pb2.Embedding(values=[0.0, float(len(t))]) for t in request.texts])

        def Classify(self, request, context):
            self._record("Classify", request)
            n = len(request.labels)
            return pb2.ClassifyResponse(probabilities=[1.0 / n] * n)

        def GetModelInfo(self, request, context):
            return pb2.ModelInfo(family="idefics", model_dir="fake", hidden_size=16, num_layers=2,
                                 num_cross_layers=1, vocab_size=32002, image_size=30,
                                 latents_per_image=4, dtype="float32", context_length=2048,
                                 kv_blocks_total=100, kv_blocks_free=90, kv_block_size=16,
                                 limits=pb2.ServerLimits(max_images_per_request=32))

    class FakeHealth(health_pb2_grpc.HealthServicer):
        def __init__(self):
            S = health_pb2.HealthCheckResponse
            self.status = {"": S.SERVING, "flamingo.v1.Flamingo": S.SERVING}

        def Check(self, request, context):
            if request.service not in self.status:
                context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service}")
            return health_pb2.HealthCheckResponse(status=self.status[request.service])

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    flamingo, health = FakeFlamingo(), FakeHealth()
    pb2_grpc.add_FlamingoServicer_to_server(flamingo, server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    host = address.rsplit(":", 1)[0]
    port = (server.add_secure_port(address, server_credentials) if server_credentials
            else server.add_insecure_port(address))
    if port == 0:
        raise RuntimeError(f"fake server: cannot bind {address}")
    server.start()
    server.address = f"{host}:{port}"
    return server, server.address, flamingo, health


def main(argv=None):
    p = argparse.ArgumentParser(description="fake flamingo-server (tests only)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--metrics-port", type=int, default=9090)
    p.add_argument("--load-seconds", type=float, default=0.3, help="time NOT_SERVING at start")
    args, _ = p.parse_known_args(argv)
    server, _, fake, health = make_fake_server(f"{args.host}:{args.port}")
    S = health_pb2.HealthCheckResponse
    saved = dict(health.status)
    health.status = {k: S.NOT_SERVING for k in saved}
    print(f"[info] listening on {server.address}", file=sys.stderr, flush=True)
    time.sleep(args.load_seconds)
    health.status = saved
    print("[info] ready: model fake serving", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    health.status = {k: S.NOT_SERVING for k in saved}
    server.stop(grace=5).wait()
    print("[info] stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
