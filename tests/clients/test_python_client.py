"""Tests of the Python client (clients/python), its examples and bench/loadgen.py against an
in-process fake Flamingo server (grpcio server API, port 0). No flamingo-server binary needed.

    /usr/bin/python3 -m unittest -v tests/clients/test_python_client.py
"""

import contextlib
import io
import json
import math
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "clients" / "python"
EXAMPLES = CLIENT_DIR / "examples"
IMAGES = REPO / "tests" / "golden" / "idefics-tiny" / "images"
CAT = IMAGES / "cat_face_28x28.png"
CHAIR = IMAGES / "chair_baseline_100x80.jpg"

# Filled by setUpModule (imports need the stubs, generated first).
fc = pb2 = pb2_grpc = health_pb2 = health_pb2_grpc = loadgen = fakesrv = None
STUBS = None


def setUpModule():
    global fc, pb2, pb2_grpc, health_pb2, health_pb2_grpc, loadgen, fakesrv, STUBS
    STUBS = tempfile.mkdtemp(prefix="flamingo-stubs-")
    subprocess.run(["bash", str(CLIENT_DIR / "gen_stubs.sh"), STUBS], check=True)
    os.environ["FLAMINGO_STUBS"] = STUBS
    sys.path.insert(0, str(CLIENT_DIR))
    sys.path.insert(0, str(REPO / "bench"))
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    import fake_flamingo_server
    import flamingo_client
    import loadgen as lg

    fakesrv = fake_flamingo_server

    fc = flamingo_client
    pb2, pb2_grpc = fc.pb2, fc.pb2_grpc
    health_pb2, health_pb2_grpc = fc.health_pb2, fc.health_pb2_grpc
    loadgen = lg


def tearDownModule():
    if STUBS:
        shutil.rmtree(STUBS, ignore_errors=True)


class FakeServerCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server, cls.addr, cls.fake, cls.health = fakesrv.make_fake_server()
        cls.client = fc.FlamingoClient(cls.addr, timeout=10)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.server.stop(None)

    def setUp(self):
        with self.fake.lock:
            self.fake.requests.clear()
            self.fake.fail_every = 0
        S = health_pb2.HealthCheckResponse
        self.health.status = {"": S.SERVING, "flamingo.v1.Flamingo": S.SERVING}

    def last(self, name):
        with self.fake.lock:
            found = [r for n, r in self.fake.requests if n == name]
        self.assertTrue(found, f"the fake server got no {name}")
        return found[-1]


# ---------------------------------------------------------------------------------------------
# Stubs
# ---------------------------------------------------------------------------------------------
class StubsTest(unittest.TestCase):
    def test_generated_files_and_service_names(self):
        for rel in ("flamingo/v1/flamingo_pb2.py", "flamingo/v1/flamingo_pb2_grpc.py",
                    "grpc/health/v1/health_pb2.py", "grpc/health/v1/health_pb2_grpc.py"):
            self.assertTrue((pathlib.Path(STUBS) / rel).is_file(), rel)
        self.assertEqual(pathlib.Path(fc.STUBS_DIR), pathlib.Path(STUBS).resolve())
        service = pb2.DESCRIPTOR.services_by_name["Flamingo"]
        self.assertEqual(service.full_name, "flamingo.v1.Flamingo")
        self.assertEqual(
            sorted(m.name for m in service.methods),
            sorted(["Generate", "GenerateStream", "Caption", "AnswerQuestion", "Score",
                    "GetModelInfo", "Embed", "Classify"]))
        self.assertTrue(service.methods_by_name["GenerateStream"].server_streaming)

    def test_health_proto_is_the_standard_one(self):
        health = health_pb2.DESCRIPTOR.services_by_name["Health"]
        self.assertEqual(health.full_name, "grpc.health.v1.Health")
        self.assertTrue(health.methods_by_name["Watch"].server_streaming)
        self.assertFalse(health.methods_by_name["Check"].server_streaming)
        S = health_pb2.HealthCheckResponse
        self.assertEqual((S.UNKNOWN, S.SERVING, S.NOT_SERVING, S.SERVICE_UNKNOWN), (0, 1, 2, 3))
        self.assertEqual(health_pb2.HealthCheckRequest.DESCRIPTOR.fields_by_name["service"].number, 1)
        self.assertEqual(S.DESCRIPTOR.fields_by_name["status"].number, 1)

    def test_gen_stubs_usage_error(self):
        proc = subprocess.run(["bash", str(CLIENT_DIR / "gen_stubs.sh")], capture_output=True,
                              text=True)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("usage", proc.stderr)

    def test_env_pointing_to_empty_dir_is_a_clear_error(self):
        with tempfile.TemporaryDirectory() as empty:
            code = ("import sys; sys.path.insert(0, %r)\n"
                    "try:\n import flamingo_client\nexcept ImportError as e:\n print('IE', e)\n"
                    % str(CLIENT_DIR))
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  env={**os.environ, "FLAMINGO_STUBS": empty})
        self.assertIn("IE FLAMINGO_STUBS=", proc.stdout, proc.stderr)
        self.assertIn("gen_stubs.sh", proc.stdout)

    def test_generates_into_cache_without_env(self):
        with tempfile.TemporaryDirectory() as cache:
            env = {k: v for k, v in os.environ.items() if k != "FLAMINGO_STUBS"}
            env["XDG_CACHE_HOME"] = cache
            # build/python may exist and be fresh; the client then uses it instead of the cache.
            code = ("import sys; sys.path.insert(0, %r)\nimport flamingo_client as f\n"
                    "print(f.STUBS_DIR); print(f.pb2.GenerateRequest.DESCRIPTOR.full_name)"
                    % str(CLIENT_DIR))
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  env=env)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            stubs_dir, name = proc.stdout.split()
            self.assertEqual(name, "flamingo.v1.GenerateRequest")
            in_cache = stubs_dir.startswith(str(pathlib.Path(cache).resolve()))
            self.assertTrue(in_cache or stubs_dir == str((REPO / "build" / "python").resolve()),
                            stubs_dir)
            if in_cache:
                self.assertTrue((pathlib.Path(stubs_dir) / "grpc/health/v1/health_pb2.py").is_file())


# ---------------------------------------------------------------------------------------------
# Request building
# ---------------------------------------------------------------------------------------------
class RequestBuildingTest(unittest.TestCase):
    def test_parts_from_items(self):
        cat = CAT.read_bytes()
        ps = fc.parts(["hello", CAT, b"\x89PNGxx", pb2.Image(data=b"j"), fc.text_part("t")])
        self.assertEqual([p.WhichOneof("kind") for p in ps],
                         ["text", "image", "image", "image", "text"])
        self.assertEqual(ps[0].text, "hello")
        self.assertEqual(ps[1].image.data, cat)
        self.assertEqual(ps[2].image.data, b"\x89PNGxx")
        self.assertEqual(ps[3].image.data, b"j")
        self.assertEqual(ps[4].text, "t")
        # One item alone is a one-part prompt; a str is text, never a file name.
        self.assertEqual(fc.parts(str(CAT))[0].text, str(CAT))
        self.assertEqual(fc.parts(CAT)[0].image.data, cat)
        self.assertEqual(fc.image_part(str(CAT)).image.data, cat)
        with self.assertRaises(TypeError):
            fc.parts([3])

    def test_parts_from_template(self):
        cat, chair = CAT.read_bytes(), CHAIR.read_bytes()
        ps = fc.parts_from_template("<image>A photo of<image> and <image>", [CAT, CHAIR, b"x"])
        self.assertEqual([p.WhichOneof("kind") for p in ps],
                         ["image", "text", "image", "text", "image"])
        self.assertEqual(ps[0].image.data, cat)
        self.assertEqual(ps[1].text, "A photo of")
        self.assertEqual(ps[2].image.data, chair)
        self.assertEqual(ps[3].text, " and ")
        self.assertEqual(ps[4].image.data, b"x")
        self.assertEqual(len(fc.parts_from_template("no images")), 1)
        with self.assertRaisesRegex(ValueError, "2 <image> markers but 1 images"):
            fc.parts_from_template("<image><image>", [CAT])

    def test_generate_request_fields(self):
        r = fc.generate_request(["Hi", b"img"], max_new_tokens=7, temperature=0.7, top_p=0.9,
                                top_k=5, repetition_penalty=1.1, seed=42, stop=["\n", "."],
                                ignore_eos=True, top_logprobs=3, request_id="r1")
        self.assertEqual(r.max_new_tokens, 7)
        self.assertAlmostEqual(r.sampling.temperature, 0.7, places=6)
        self.assertAlmostEqual(r.sampling.top_p, 0.9, places=6)
        self.assertEqual(r.sampling.top_k, 5)
        self.assertAlmostEqual(r.sampling.repetition_penalty, 1.1, places=6)
        self.assertEqual(r.sampling.seed, 42)
        self.assertEqual(list(r.stop), ["\n", "."])
        self.assertTrue(r.ignore_eos)
        self.assertEqual(r.top_logprobs, 3)
        self.assertEqual(r.request_id, "r1")
        # Defaults are the proto's zero values ("unset").
        d = fc.generate_request("x")
        self.assertEqual((d.max_new_tokens, d.sampling.temperature, d.sampling.seed, len(d.stop),
                          d.ignore_eos, d.top_logprobs, d.request_id), (0, 0.0, 0, 0, False, 0, ""))
        # A sampling dict or message, keyword arguments win.
        s = fc.sampling_params({"seed": 3, "top_k": 2}, top_k=9)
        self.assertEqual((s.seed, s.top_k), (3, 9))
        self.assertEqual(fc.sampling_params(pb2.SamplingParams(seed=5)).seed, 5)
        with self.assertRaisesRegex(TypeError, "unknown option 'tempreature'"):
            fc.generate_request("x", tempreature=1.0)

    def test_caption_question_score_requests(self):
        c = fc.caption_request(CAT, [(CHAIR, "A chair."), pb2.Example(image=pb2.Image(data=b"z"),
                                                                        text="Z")], max_new_tokens=4)
        self.assertEqual(c.image.data, CAT.read_bytes())
        self.assertEqual([(e.image.data, e.text) for e in c.examples],
                         [(CHAIR.read_bytes(), "A chair."), (b"z", "Z")])
        self.assertEqual(c.max_new_tokens, 4)
        q = fc.question_request(b"i", "What?", [(b"d", "Q1", "A1")], seed=9)
        self.assertEqual((q.image.data, q.question, q.sampling.seed), (b"i", "What?", 9))
        self.assertEqual([(e.image.data, e.question, e.answer) for e in q.examples],
                         [(b"d", "Q1", "A1")])
        s = fc.score_request(["<image>", "Weather:"], " sunny")
        self.assertEqual(list(s.candidates), [" sunny"])
        self.assertEqual(s.prompt[0].text, "<image>")  # literal text, not an image marker


# ---------------------------------------------------------------------------------------------
# The client against the fake server
# ---------------------------------------------------------------------------------------------
class TlsClientTest(unittest.TestCase):
    """FlamingoClient's tls_ca / tls_cert / tls_key against a fake server with TLS and client
    certificates (made here with the openssl command)."""

    def test_tls_and_client_certificates(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

        def ssl(*args):
            subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

        ssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=test-ca")
        for name in ("server", "client"):
            ssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
                "/CN=localhost")
        pathlib.Path(d, "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
        ssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "client.pem", "-days", "2")
        read = lambda n: pathlib.Path(d, n).read_bytes()  # noqa: E731
        creds = grpc.ssl_server_credentials([(read("server.key"), read("server.pem"))],
                                            root_certificates=read("ca.pem"),
                                            require_client_auth=True)
        server, addr, fake, _ = fakesrv.make_fake_server(server_credentials=creds)
        self.addCleanup(server.stop, None)
        p = lambda n: str(pathlib.Path(d, n))  # noqa: E731
        with fc.FlamingoClient(addr, timeout=10, tls_ca=p("ca.pem"), tls_cert=p("client.pem"),
                               tls_key=p("client.key")) as c:
            self.assertEqual(len(c.generate(["hi"], max_new_tokens=2).token_ids), 2)
        with fc.FlamingoClient(addr, timeout=5, tls_ca=p("ca.pem")) as c:  # no client cert
            with self.assertRaises(grpc.RpcError) as e:
                c.generate(["hi"], max_new_tokens=2)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        with self.assertRaises(ValueError):
            fc.FlamingoClient(addr, tls_cert=p("client.pem"))


class ClientTest(FakeServerCase):
    def test_api_key_is_sent_as_bearer_metadata(self):
        self.client.generate(["hi"], max_new_tokens=1)
        self.assertIsNone(self.fake.authorization)
        with fc.FlamingoClient(self.addr, timeout=10, api_key="sk-py-1") as c:
            c.generate(["hi"], max_new_tokens=1, metadata=[("x-trace", "7")])
        self.assertEqual(self.fake.authorization, "Bearer sk-py-1")
        old = os.environ.get("FLAMINGO_API_KEY")
        os.environ["FLAMINGO_API_KEY"] = "sk-env-2"
        try:
            with fc.FlamingoClient(self.addr, timeout=10) as c:
                c.generate(["hi"], max_new_tokens=1)
        finally:
            if old is None:
                del os.environ["FLAMINGO_API_KEY"]
            else:
                os.environ["FLAMINGO_API_KEY"] = old
        self.assertEqual(self.fake.authorization, "Bearer sk-env-2")

    def test_generate(self):
        r = self.client.generate(fc.parts_from_template("<image>A photo of", [CAT]),
                                 max_new_tokens=3, seed=77, stop=["."], request_id="abc")
        self.assertEqual(list(r.token_ids), [100, 101, 102])
        self.assertEqual(r.text, "<100><101><102>")
        self.assertEqual(fc.finish_reason_name(r.finish_reason), "LENGTH")
        self.assertEqual((r.usage.images, r.usage.completion_tokens, r.seed, r.request_id),
                         (1, 3, 77, "abc"))
        req = self.last("Generate")
        self.assertEqual(fakesrv._images(req.prompt), [CAT.read_bytes()])
        self.assertEqual(fakesrv._texts(req.prompt), ["A photo of"])
        self.assertEqual((req.max_new_tokens, req.sampling.seed, list(req.stop)), (3, 77, ["."]))

    def test_generate_stream_order_and_last_chunk(self):
        chunks = list(self.client.generate_stream("Hi", max_new_tokens=4))
        self.assertEqual([list(c.token_ids) for c in chunks], [[100], [101], [102], [103]])
        self.assertEqual("".join(c.text for c in chunks), "<100><101><102><103>")
        self.assertEqual([c.finish_reason for c in chunks], [0, 0, 0, pb2.LENGTH])
        self.assertEqual(chunks[-1].usage.completion_tokens, 4)
        self.assertEqual(chunks[-1].seed, 1234)

    def test_generate_stream_cancel(self):
        call = self.client.generate_stream("Hi", max_new_tokens=50)
        first = next(call)
        self.assertEqual(list(first.token_ids), [100])
        call.cancel()
        with self.assertRaises(grpc.RpcError) as cm:
            for _ in call:
                pass
        self.assertEqual(cm.exception.code(), grpc.StatusCode.CANCELLED)

    def test_deadline(self):
        with self.assertRaises(grpc.RpcError) as cm:
            list(self.client.generate_stream("Hi", max_new_tokens=100, timeout=0.1))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)

    def test_error_status_propagates(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.client.generate("please FAIL")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("--max-queued", cm.exception.details())

    def test_caption_ask_score_info(self):
        r = self.client.caption(CAT, [(CHAIR, "A chair.")], max_new_tokens=5)
        self.assertEqual(r.text, f"caption 1 {len(CAT.read_bytes())}")
        req = self.last("Caption")
        self.assertEqual((req.max_new_tokens, req.examples[0].text), (5, "A chair."))
        r = self.client.ask(CAT, "What is it?", [(CHAIR, "And this?", "a chair"), (CAT, "Q", "A")])
        self.assertEqual(r.text, "answer What is it? 2")
        self.assertEqual(self.last("AnswerQuestion").examples[0].answer, "a chair")
        self.assertEqual(self.client.score(["<image>", "x"], [" a", " bbb"]), [-2.0, -4.0])
        info = self.client.model_info()
        self.assertEqual((info.family, info.limits.max_images_per_request), ("idefics", 32))

    def test_embed_and_classify(self):
        images, texts = self.client.embed([CAT, CHAIR], ["a cat", "chair"])
        self.assertEqual(images, [[float(len(CAT.read_bytes())), 0.0],
                                  [float(len(CHAIR.read_bytes())), 0.0]])
        self.assertEqual(texts, [[0.0, 5.0], [0.0, 5.0]])
        self.assertEqual(self.client.embed(texts="one")[1], [[0.0, 3.0]])
        probs = self.client.classify(CAT, ["cat", "dog"], template="{} photo")
        self.assertEqual(probs, [0.5, 0.5])
        self.assertEqual(getattr(self.last("Classify"), "template"), "{} photo")

    def test_health(self):
        S = health_pb2.HealthCheckResponse
        self.assertEqual(self.client.health(), "SERVING")
        self.health.status["flamingo.v1.Flamingo"] = S.NOT_SERVING
        self.assertEqual(self.client.health(fc.FLAMINGO_SERVICE), "NOT_SERVING")
        with self.assertRaises(grpc.RpcError) as cm:
            self.client.health("no.such.Service")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        # wait_until_serving returns once the status flips, and times out otherwise.
        timer = threading.Timer(0.3, lambda: self.health.status.update(
            {"flamingo.v1.Flamingo": S.SERVING}))
        timer.start()
        waited = self.client.wait_until_serving(10, service=fc.FLAMINGO_SERVICE, poll_s=0.05)
        timer.join()
        self.assertGreaterEqual(waited, 0.25)
        self.health.status[""] = S.NOT_SERVING
        with self.assertRaisesRegex(TimeoutError, "NOT_SERVING"):
            self.client.wait_until_serving(0.3, poll_s=0.05)

    def test_unreachable_server(self):
        with fc.FlamingoClient("127.0.0.1:1", timeout=2) as c:
            with self.assertRaises(grpc.RpcError) as cm:
                c.health()
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)


# ---------------------------------------------------------------------------------------------
# Load generator: statistics, modes, output
# ---------------------------------------------------------------------------------------------
class LoadgenStatsTest(unittest.TestCase):
    def test_percentile_matches_numpy(self):
        rng = random.Random(5)
        for n in (1, 2, 3, 10, 57, 1000):
            xs = [rng.expovariate(3.0) for _ in range(n)]
            for q in (0, 1, 10, 25, 50, 90, 99, 99.9, 100):
                self.assertAlmostEqual(loadgen.percentile(xs, q), float(np.percentile(xs, q)),
                                       places=12, msg=f"n={n} q={q}")
        self.assertTrue(math.isnan(loadgen.percentile([], 50)))
        with self.assertRaises(ValueError):
            loadgen.percentile([1.0], 101)

    def test_summarize(self):
        xs = [0.010, 0.020, 0.030, 0.040]
        s = loadgen.summarize(xs)
        self.assertEqual(s["n"], 4)
        self.assertAlmostEqual(s["mean"], 25.0)
        self.assertAlmostEqual(s["p50"], float(np.percentile(np.array(xs) * 1000, 50)))
        self.assertAlmostEqual(s["p90"], float(np.percentile(np.array(xs) * 1000, 90)))
        self.assertAlmostEqual(s["p99"], float(np.percentile(np.array(xs) * 1000, 99)))
        self.assertEqual(loadgen.summarize([])["p50"], None)

    def test_request_metrics(self):
        rec = loadgen.RequestRecord(start=10.0, end=10.5, chunk_times=[10.1, 10.2, 10.4],
                                    chunk_tokens=[1, 1, 2])
        ttft, tpot, itls, e2e = loadgen.request_metrics(rec)
        self.assertAlmostEqual(ttft, 0.1)
        self.assertAlmostEqual(e2e, 0.5)
        self.assertAlmostEqual(tpot, 0.4 / 3)  # (total - ttft) / (tokens - 1), tokens = 4
        self.assertEqual(len(itls), 3)  # the 2-token chunk gives two gaps of 0.1
        for got, want in zip(itls, [0.1, 0.1, 0.1]):
            self.assertAlmostEqual(got, want)
        one = loadgen.RequestRecord(start=0.0, end=0.2, chunk_times=[0.2], chunk_tokens=[1])
        self.assertEqual(loadgen.request_metrics(one)[1], None)  # no TPOT from 1 token
        none = loadgen.RequestRecord(start=0.0, end=0.2)
        self.assertEqual(loadgen.request_metrics(none)[0], None)

    def test_aggregate(self):
        R = loadgen.RequestRecord
        recs = [
            R(start=0.0, end=1.0, chunk_times=[0.2, 0.6, 1.0], chunk_tokens=[1, 1, 1], images=2,
              prompt_tokens=10, finish_reason="LENGTH"),
            R(start=0.5, end=1.5, chunk_times=[0.9, 1.2, 1.5], chunk_tokens=[1, 1, 1],
              finish_reason="LENGTH"),
            R(start=0.1, end=0.2, status="RESOURCE_EXHAUSTED", error="queue full"),
            R(start=0.1, end=0.2, status="RESOURCE_EXHAUSTED", error="queue full"),
            R(start=0.3, end=0.4, status="INVALID_ARGUMENT", error="bad",
              chunk_times=[0.35], chunk_tokens=[1]),
        ]
        lv = loadgen.aggregate(recs, wall_s=2.0, mode="concurrency", level=2)
        self.assertEqual((lv["requests"], lv["completed"]), (5, 2))
        self.assertEqual(lv["errors"], {"INVALID_ARGUMENT": 1, "RESOURCE_EXHAUSTED": 2})
        self.assertEqual(lv["error_examples"]["RESOURCE_EXHAUSTED"], "queue full")
        self.assertAlmostEqual(lv["request_throughput"], 1.0)
        self.assertAlmostEqual(lv["output_token_throughput"], 3.0)  # failed tokens not counted
        self.assertEqual((lv["output_tokens"], lv["images"], lv["prompt_tokens"]), (6, 2, 10))
        self.assertEqual(lv["ttft_ms"]["n"], 2)
        self.assertAlmostEqual(lv["ttft_ms"]["p50"], float(np.percentile([200.0, 400.0], 50)))
        self.assertAlmostEqual(lv["tpot_ms"]["mean"], (400.0 + 300.0) / 2)
        self.assertEqual(lv["itl_ms"]["n"], 4)
        self.assertAlmostEqual(lv["itl_ms"]["p50"], float(np.percentile([400, 400, 300, 300], 50)))
        self.assertEqual(lv["finish_reasons"], {"LENGTH": 2})

    def test_parse_mix_and_lists(self):
        self.assertEqual(loadgen.parse_mix("1,1,1,1,1"), [1.0] * 5)
        self.assertEqual(loadgen.parse_mix("2,1"), [2.0, 1.0, 0.0, 0.0, 0.0])
        self.assertEqual(loadgen.parse_mix("0:3,4:1"), [3.0, 0.0, 0.0, 0.0, 1.0])
        for bad in ("5:1", "1,1,1,1,1,1", "0,0", "a", "-1,2", "1:2,3"):
            with self.assertRaises(Exception, msg=bad):
                loadgen.parse_mix(bad)
        self.assertEqual(loadgen.parse_list("1,2,8", int), [1, 2, 8])
        self.assertEqual(loadgen.parse_list("0.5,2", float), [0.5, 2.0])
        for bad in ("0", "1,-2", "x", ""):
            with self.assertRaises(Exception, msg=bad):
                loadgen.parse_list(bad, float)

    def test_workload_mix(self):
        imgs = loadgen.load_images(IMAGES)
        self.assertGreaterEqual(len(imgs), 5)
        self.assertTrue(all(n.endswith((".png", ".jpg")) for n, _ in imgs))
        only4 = loadgen.Workload(imgs, loadgen.parse_mix("4:1"), seed=1)
        only0 = loadgen.Workload(imgs, loadgen.parse_mix("0:1"), seed=1)
        for _ in range(20):
            self.assertEqual(len(only4.draw()[0]), 4)
            self.assertEqual(len(only0.draw()[0]), 0)
        mixed = loadgen.Workload(imgs, loadgen.parse_mix("1,1,1,1,1"), seed=3)
        counts = {len(mixed.draw()[0]) for _ in range(200)}
        self.assertEqual(counts, {0, 1, 2, 3, 4})
        a = loadgen.Workload(imgs, [1] * 5, seed=9)
        b = loadgen.Workload(imgs, [1] * 5, seed=9)
        self.assertEqual([a.draw() for _ in range(10)], [b.draw() for _ in range(10)])

    def _counting_sender(self, delay):
        state = {"now": 0, "max": 0, "lock": threading.Lock()}

        def send(spec):
            with state["lock"]:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            rec = loadgen.RequestRecord(start=time.monotonic(), images=len(spec[0]))
            time.sleep(delay)
            rec.chunk_times, rec.chunk_tokens = [time.monotonic()], [1]
            rec.end = time.monotonic()
            with state["lock"]:
                state["now"] -= 1
            return rec

        return send, state

    def test_run_concurrency(self):
        wl = loadgen.Workload([("a", b"a")], [1] * 5)
        send, state = self._counting_sender(0.02)
        recs, wall = loadgen.run_concurrency(send, wl, 4, requests=12)
        self.assertEqual(len(recs), 12)
        self.assertEqual(state["max"], 4)
        self.assertGreaterEqual(wall, 3 * 0.02)  # 12 requests over 4 workers: >= 3 rounds
        send, state = self._counting_sender(0.02)
        recs, wall = loadgen.run_concurrency(send, wl, 2, duration=0.2)
        self.assertGreaterEqual(len(recs), 2)
        self.assertLessEqual(len(recs), 2 * (0.2 / 0.02 + 1))
        self.assertLess(wall, 0.2 + 0.5)
        with self.assertRaises(ValueError):
            loadgen.run_concurrency(send, wl, 2)

    def test_run_poisson(self):
        wl = loadgen.Workload([("a", b"a")], [1] * 5)
        send, state = self._counting_sender(0.05)
        start = time.monotonic()
        recs, wall = loadgen.run_poisson(send, wl, 200.0, requests=20, seed=1)
        self.assertEqual(len(recs), 20)
        self.assertGreater(state["max"], 1)  # open loop: arrivals do not wait for completions
        send, _ = self._counting_sender(0.001)
        start = time.monotonic()
        recs, wall = loadgen.run_poisson(send, wl, 50.0, duration=0.4, seed=2)
        self.assertGreater(len(recs), 0)
        self.assertLess(len(recs), 60)
        self.assertTrue(all(r.start - start < 0.4 + 0.1 for r in recs))

    def test_json_and_plot(self):
        levels = []
        for c in (1, 2, 4):
            lv = loadgen.aggregate(
                [loadgen.RequestRecord(start=0.0, end=0.3 * c, chunk_times=[0.1 * c, 0.2 * c],
                                       chunk_tokens=[1, 1])], 1.0, "concurrency", c)
            levels.append(lv)
        empty = loadgen.aggregate([loadgen.RequestRecord(start=0, end=1, status="UNAVAILABLE")],
                                  0.0, "concurrency", 8)
        levels.append(empty)  # all failed: NaN throughput and no latencies must not break output
        with tempfile.TemporaryDirectory() as d:
            jp, pp = pathlib.Path(d, "r.json"), pathlib.Path(d, "r.png")
            loadgen.write_json({"levels": levels}, jp)
            back = json.loads(jp.read_text())
            self.assertEqual([lv["level"] for lv in back["levels"]], [1, 2, 4, 8])
            self.assertIsNone(back["levels"][3]["request_throughput"])
            self.assertAlmostEqual(back["levels"][1]["ttft_ms"]["p50"], 200.0)
            loadgen.plot(levels, pp, title="test")
            self.assertEqual(pp.read_bytes()[:8], b"\x89PNG\r\n\x1a\n")
            from PIL import Image
            with Image.open(pp) as im:
                self.assertEqual(im.size, (1200, 450))
            loadgen.plot([dict(lv, mode="poisson") for lv in levels[:2]], pp)
            self.assertGreater(pp.stat().st_size, 1000)
        table = loadgen.format_table(levels)
        self.assertIn("TTFT p50", table)
        self.assertIn("UNAVAILABLE x1", table)
        self.assertEqual(len([l for l in table.splitlines() if l.startswith("concurrency")]), 4)


class LoadgenAgainstFakeTest(FakeServerCase):
    def run_main(self, *argv):
        with tempfile.TemporaryDirectory() as d:
            jp, pp = os.path.join(d, "o.json"), os.path.join(d, "o.png")
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                rc = loadgen.main(["--server", self.addr, "--json", jp, "--plot", pp, "--quiet",
                                   *argv])
            report = json.loads(pathlib.Path(jp).read_text())
            self.assertEqual(pathlib.Path(pp).read_bytes()[:4], b"\x89PNG")
        return rc, report, out.getvalue()

    def test_concurrency_levels(self):
        rc, report, table = self.run_main("--concurrency", "1,2", "--requests", "6",
                                          "--max-new-tokens", "4", "--warmup", "1")
        self.assertEqual(rc, 0)
        self.assertEqual(report["config"]["mode"], "concurrency")
        self.assertEqual(report["model_info"]["family"], "idefics")
        self.assertEqual([lv["level"] for lv in report["levels"]], [1, 2])
        for lv in report["levels"]:
            self.assertEqual((lv["requests"], lv["completed"], lv["errors"]), (6, 6, {}))
            self.assertEqual(lv["mean_output_tokens"], 4)
            self.assertGreaterEqual(lv["ttft_ms"]["p50"], fakesrv.FIRST_TOKEN_DELAY * 1000 * 0.9)
            self.assertGreaterEqual(lv["tpot_ms"]["p50"], fakesrv.TOKEN_DELAY * 1000 * 0.9)
            self.assertGreaterEqual(lv["itl_ms"]["p50"], fakesrv.TOKEN_DELAY * 1000 * 0.9)
            self.assertEqual(lv["itl_ms"]["n"], 6 * 3)
            self.assertGreater(lv["output_token_throughput"], 0)
        self.assertIn("TTFT p50", table)
        with self.fake.lock:
            streams = [r for n, r in self.fake.requests if n == "GenerateStream"]
        self.assertEqual(len(streams), 1 + 12)  # warm-up + 2 levels x 6
        for r in streams:
            self.assertEqual((r.max_new_tokens, r.ignore_eos), (4, True))
            self.assertLessEqual(len(fakesrv._images(r.prompt)), 4)
            self.assertEqual(r.prompt[-1].WhichOneof("kind"), "text")
            for img in fakesrv._images(r.prompt):
                self.assertIn(img[:4], (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1",
                                        b"\xff\xd8\xff\xdb", b"\xff\xd8\xff\xe2"))

    def test_errors_are_counted_by_code(self):
        self.fake.fail_every = 3
        rc, report, table = self.run_main("--concurrency", "2", "--requests", "9",
                                          "--max-new-tokens", "2", "--warmup", "0",
                                          "--images-mix", "0:1")
        self.assertEqual(rc, 0)
        lv = report["levels"][0]
        self.assertEqual(lv["requests"], 9)
        self.assertEqual(lv["errors"], {"RESOURCE_EXHAUSTED": 3})
        self.assertEqual(lv["completed"], 6)
        self.assertIn("RESOURCE_EXHAUSTED x3", table)

    def test_poisson(self):
        rc, report, _ = self.run_main("--rates", "40,80", "--requests", "5",
                                      "--max-new-tokens", "3", "--warmup", "0")
        self.assertEqual(rc, 0)
        self.assertEqual([lv["mode"] for lv in report["levels"]], ["poisson", "poisson"])
        self.assertEqual([lv["completed"] for lv in report["levels"]], [5, 5])

    def test_all_failing_exits_1(self):
        self.fake.fail_every = 1
        rc, report, _ = self.run_main("--concurrency", "1", "--requests", "2", "--warmup", "1")
        self.assertEqual(rc, 1)
        self.assertEqual(report["levels"][0]["errors"], {"RESOURCE_EXHAUSTED": 2})


# ---------------------------------------------------------------------------------------------
# Example scripts (subprocesses) against the fake server
# ---------------------------------------------------------------------------------------------
class ExamplesTest(FakeServerCase):
    def run_example(self, name, *args, expect_rc=0):
        proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--server", self.addr, *args],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "FLAMINGO_STUBS": STUBS})
        self.assertEqual(proc.returncode, expect_rc, f"{name}: {proc.stderr}")
        return proc

    def test_help_of_every_example(self):
        for name in ("generate.py", "generate_stream.py", "caption.py", "ask.py", "score.py",
                     "model_info.py", "health.py"):
            proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--help"],
                                  capture_output=True, text=True, timeout=60,
                                  env={**os.environ, "FLAMINGO_STUBS": STUBS})
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertIn("--server", proc.stdout)

    def test_generate(self):
        p = self.run_example("generate.py", "--max-new-tokens", "3", "--seed", "5")
        self.assertEqual(p.stdout.strip(), "<100><101><102>")
        self.assertIn("finish_reason=LENGTH", p.stderr)
        req = self.last("Generate")
        self.assertEqual(fakesrv._images(req.prompt), [CAT.read_bytes()])  # the default image
        self.assertEqual((req.max_new_tokens, req.sampling.seed), (3, 5))
        p = self.run_example("generate.py", "--json", "--prompt", "<image>x<image>",
                             "--image", str(CHAIR), "--image", str(CAT), "--max-new-tokens", "2")
        self.assertEqual(json.loads(p.stdout)["token_ids"], [100, 101])
        self.assertEqual(fakesrv._images(self.last("Generate").prompt), [CHAIR.read_bytes(), CAT.read_bytes()])

    def test_generate_error_exit_1(self):
        p = self.run_example("generate.py", "--prompt", "FAIL", expect_rc=1)
        self.assertIn("RESOURCE_EXHAUSTED", p.stderr)
        p = self.run_example("generate.py", "--prompt", "<image><image>", "--image", str(CAT),
                             expect_rc=1)
        self.assertIn("2 <image> markers but 1 images", p.stderr)

    def test_generate_stream(self):
        p = self.run_example("generate_stream.py", "--max-new-tokens", "3")
        self.assertEqual(p.stdout.strip(), "<100><101><102>")
        self.assertIn("finish_reason=LENGTH tokens=3", p.stderr)

    def test_caption_and_ask(self):
        p = self.run_example("caption.py", "--example", str(CHAIR), "A chair.")
        self.assertEqual(p.stdout.strip(), f"caption 1 {len(CAT.read_bytes())}")
        p = self.run_example("ask.py", "--question", "Which animal?", "--example", str(CHAIR),
                             "What is it?", "a chair")
        self.assertEqual(p.stdout.strip(), "answer Which animal? 1")
        ex = self.last("AnswerQuestion").examples[0]
        self.assertEqual((ex.image.data, ex.question, ex.answer),
                         (CHAIR.read_bytes(), "What is it?", "a chair"))

    def test_score(self):
        p = self.run_example("score.py", "--candidate", " ab", "--candidate", " a")
        lines = p.stdout.strip().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertIn("<- best", lines[1])  # -2 > -3
        p = self.run_example("score.py", "--json")
        got = json.loads(p.stdout)
        self.assertEqual(got["logprobs"], [-float(len(c)) for c in got["candidates"]])

    def test_model_info_and_health(self):
        p = self.run_example("model_info.py")
        self.assertIn("family: idefics", p.stdout)
        self.assertIn("limits.max_images_per_request: 32", p.stdout)
        self.assertEqual(json.loads(self.run_example("model_info.py", "--json").stdout)["dtype"],
                         "float32")
        self.assertEqual(self.run_example("health.py").stdout.strip(), "SERVING")
        self.health.status["flamingo.v1.Flamingo"] = health_pb2.HealthCheckResponse.NOT_SERVING
        p = self.run_example("health.py", "--service", "flamingo.v1.Flamingo", expect_rc=1)
        self.assertEqual(p.stdout.strip(), "NOT_SERVING")


if __name__ == "__main__":
    unittest.main()
