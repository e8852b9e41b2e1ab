"""End to end: every Python example script and bench/loadgen.py against a real flamingo-server.

Runs only when FLAMINGO_SERVER_BIN names the server binary (skipped otherwise):

    FLAMINGO_SERVER_BIN=build/bin/flamingo-server /usr/bin/python3 -m unittest -v \
        tests/clients/test_examples_e2e.py

The server starts with `--port 0 --metrics-port 0 --http-port 0` plus $FLAMINGO_SERVER_ARGS (e.g.
"--model DIR"); its bound port comes from the "listening on HOST:PORT" stderr line. Stubs:
$FLAMINGO_STUBS, else generated into a temporary folder. The last test SIGTERMs the server
and expects exit code 0.
"""

import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

REPO = pathlib.Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "clients" / "python"
EXAMPLES = CLIENT_DIR / "examples"
IMAGES = REPO / "tests" / "golden" / "idefics-tiny" / "images"
SERVER_BIN = os.environ.get("FLAMINGO_SERVER_BIN", "")
LISTENING = re.compile(r"listening on (\S+):(\d+)")
START_TIMEOUT_S = float(os.environ.get("FLAMINGO_E2E_START_TIMEOUT", "300"))


class ServerProcess:
    """The server under test; collects its stderr lines in a thread."""

    def __init__(self, argv):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pattern, timeout):
        """The first match of `pattern` in stderr; None on timeout or exit."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    return None
                self.cond.wait(min(left, 0.5))

    def log_tail(self, n=40):
        with self.cond:
            return "\n".join(self.lines[-n:])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@unittest.skipUnless(SERVER_BIN, "set FLAMINGO_SERVER_BIN to the flamingo-server binary")
class ExamplesE2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="flamingo-e2e-")
        stubs = os.environ.get("FLAMINGO_STUBS")
        if not stubs:
            stubs = os.path.join(cls.tmp, "stubs")
            subprocess.run(["bash", str(CLIENT_DIR / "gen_stubs.sh"), stubs], check=True)
        cls.env = {**os.environ, "FLAMINGO_STUBS": stubs}
        os.environ["FLAMINGO_STUBS"] = stubs
        sys.path.insert(0, str(CLIENT_DIR))
        import flamingo_client

        cls.fc = flamingo_client
        argv = [SERVER_BIN, "--port", "0", "--metrics-port", "0", "--http-port", "0"]
        argv += shlex.split(os.environ.get("FLAMINGO_SERVER_ARGS", ""))
        cls.server = ServerProcess(argv)
        m = cls.server.wait_for(LISTENING.pattern, 60)
        if m is None:
            cls.server.kill()
            raise RuntimeError(f"{shlex.join(argv)}: no 'listening on HOST:PORT' line; "
                               f"exit {cls.server.proc.poll()}; stderr:\n{cls.server.log_tail()}")
        cls.addr = f"{m.group(1)}:{m.group(2)}"
        cls.client = flamingo_client.FlamingoClient(cls.addr, timeout=120)
        try:
            cls.client.wait_until_serving(START_TIMEOUT_S)
        except TimeoutError:
            cls.server.kill()
            raise RuntimeError(f"server not SERVING; stderr:\n{cls.server.log_tail()}")

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.server.kill()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_script(self, script, *args, timeout=300):
        argv = [sys.executable, str(script), "--server", self.addr, *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env)
        self.assertEqual(proc.returncode, 0,
                         f"{shlex.join(argv)}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def example(self, name, *args):
        return self.run_script(EXAMPLES / name, *args)

    # -- start-up contract -------------------------------------------------------------------
    def test_a_startup_lines_and_health(self):
        self.assertTrue(self.server.wait_for(r"\bready\b", 10),
                        f"no 'ready' line:\n{self.server.log_tail()}")
        with self.server.cond:
            lines = list(self.server.lines)
        listen_at = next(i for i, l in enumerate(lines) if LISTENING.search(l))
        ready_at = next(i for i, l in enumerate(lines) if re.search(r"\bready\b", l))
        self.assertLess(listen_at, ready_at)
        self.assertEqual(self.example("health.py").stdout.strip(), "SERVING")
        p = self.example("health.py", "--service", "flamingo.v1.Flamingo", "--json")
        self.assertEqual(json.loads(p.stdout), {"service": "flamingo.v1.Flamingo",
                                                "status": "SERVING"})

    # -- one test per example ----------------------------------------------------------------
    def test_generate(self):
        args = ("--json", "--max-new-tokens", "6", "--ignore-eos", "--top-logprobs", "2")
        a = json.loads(self.example("generate.py", *args).stdout)
        self.assertEqual(len(a["token_ids"]), 6)
        self.assertEqual(len(a["logprobs"]), 6)
        self.assertTrue(all(lp <= 1e-6 for lp in a["logprobs"]))
        self.assertEqual(len(a["top_logprobs"]), 6)
        self.assertEqual(a["finish_reason"], "LENGTH")
        self.assertEqual(a["usage"]["completion_tokens"], 6)
        self.assertEqual(a["usage"]["images"], 1)
        self.assertGreater(a["usage"]["prompt_tokens"], 0)
        b = json.loads(self.example("generate.py", *args).stdout)
        self.assertEqual(a["token_ids"], b["token_ids"])  # greedy: deterministic
        p = self.example("generate.py", "--max-new-tokens", "4")
        self.assertIn("finish_reason=", p.stderr)

    def test_generate_stream_matches_generate(self):
        common = ("--prompt", "<image>Look:<image>", "--image", str(IMAGES / "leaf_42x42.png"),
                  "--image", str(IMAGES / "chair_baseline_100x80.jpg"), "--max-new-tokens", "5",
                  "--ignore-eos")
        full = json.loads(self.example("generate.py", "--json", *common).stdout)
        p = self.example("generate_stream.py", "--json", *common)
        chunks = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
        ids = [t for c in chunks for t in c.get("token_ids", [])]
        self.assertEqual(ids, full["token_ids"])
        self.assertEqual("".join(c.get("text", "") for c in chunks), full.get("text", ""))
        self.assertEqual(chunks[-1].get("finish_reason"), "LENGTH")
        self.assertTrue(all("finish_reason" not in c for c in chunks[:-1]))
        self.assertIn("tokens=5", p.stderr)
        self.example("generate_stream.py", "--max-new-tokens", "3")

    def test_caption(self):
        p = self.example("caption.py", "--json", "--max-new-tokens", "5", "--example",
                         str(IMAGES / "leaf_42x42.png"), "A green leaf.")
        r = json.loads(p.stdout)
        self.assertIn(r["finish_reason"], ("LENGTH", "STOP"))
        self.assertLessEqual(r.get("usage", {}).get("completion_tokens", 0), 5)
        self.assertNotIn("\n", r.get("text", ""))  # stops at the newline
        self.assertEqual(r["usage"]["images"], 2)

    def test_ask(self):
        p = self.example("ask.py", "--json", "--question", "What animal is this?",
                         "--example", str(IMAGES / "leaf_42x42.png"), "What color is it?", "green")
        r = json.loads(p.stdout)
        self.assertIn(r["finish_reason"], ("LENGTH", "STOP"))
        self.assertNotIn("\n", r.get("text", ""))
        self.assertEqual(r["usage"]["images"], 2)

    def test_score(self):
        p = self.example("score.py", "--json", "--candidate", " cat", "--candidate", " dog",
                         "--candidate", " a chair")
        r = json.loads(p.stdout)
        self.assertEqual(r["candidates"], [" cat", " dog", " a chair"])
        self.assertEqual(len(r["logprobs"]), 3)
        self.assertTrue(all(lp < 0 for lp in r["logprobs"]), r)
        text = self.example("score.py").stdout
        self.assertEqual(text.count("<- best"), 1)

    def test_model_info(self):
        info = json.loads(self.example("model_info.py", "--json").stdout)
        self.assertEqual(info["family"], "idefics")
        for key in ("hidden_size", "num_layers", "vocab_size", "image_size", "context_length",
                    "dtype", "kv_blocks_total", "limits"):
            self.assertIn(key, info)
        self.assertEqual(info["limits"]["max_images_per_request"], 32)
        self.assertIn("family: idefics", self.example("model_info.py").stdout)

    def test_loadgen(self):
        out = pathlib.Path(self.tmp)
        self.run_script(REPO / "bench" / "loadgen.py", "--concurrency", "1,2", "--requests", "4",
                        "--max-new-tokens", "4", "--warmup", "1", "--json", str(out / "lg.json"),
                        "--plot", str(out / "lg.png"), "--quiet")
        report = json.loads((out / "lg.json").read_text())
        self.assertEqual(report["model_info"]["family"], "idefics")
        self.assertEqual([lv["level"] for lv in report["levels"]], [1, 2])
        for lv in report["levels"]:
            self.assertEqual((lv["completed"], lv["errors"]), (4, {}), lv)
            self.assertEqual(lv["mean_output_tokens"], 4)  # --ignore-eos is the default
            self.assertGreater(lv["ttft_ms"]["p50"], 0)
            self.assertGreater(lv["tpot_ms"]["p50"], 0)
            self.assertLessEqual(lv["ttft_ms"]["p50"], lv["e2e_ms"]["p50"])
            self.assertGreater(lv["output_token_throughput"], 0)
        self.assertEqual((out / "lg.png").read_bytes()[:4], b"\x89PNG")

    # -- last: shutdown ----------------------------------------------------------------------
    def test_zz_sigterm_exits_0(self):
        self.server.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.server.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.fail(f"server still running 90 s after SIGTERM:\n{self.server.log_tail()}")
        self.assertEqual(rc, 0, self.server.log_tail())


if __name__ == "__main__":
    unittest.main()
