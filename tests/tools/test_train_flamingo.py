#!/usr/bin/python3
"""Tests of tools/demo/train_flamingo.py and tools/demo/prompts.py (stages 2 and 3 of the demo
model, issue 12). Training proper is not run in CI.

* smoke: a bounded run (--smoke: tiny pools, 2 LM steps, 2 cross-attention steps) writes a
  complete IDEFICS folder that tools/reference_idefics.py loads (every tensor consumed, shapes
  checked) and whose logits the script itself checked against its trained modules;
* the tokenizer is deterministic: trained twice with the same seed it is the same bytes, and
  it is the bundled model's tokenizer.model (so models/flamingo-demo is what the script makes);
* prompts.py's token ids are the server's: flamingo-cli (the C++ prompt builder and tokenizer)
  gives the same prompt ids for caption, question and few-shot prompts;
* --vision-tower trains a tower of the given sizes from scratch and --perceiver-steps runs
  stage 1c (exported, reloaded); a malformed --vision-tower stops the script before it writes
  anything;
* --resume continues from an export, and --data-stream draws other training sequences;
* --qtype-weights skews stage 3's question types; a malformed one is an error;
* --retune-vision N (with --resume) runs N more stage 1b steps on the resumed tower, and
  --vision-counts adds the class token's per-shape and per-colour count heads.

Run: /usr/bin/python3 -m unittest -v tests/tools/test_train_flamingo.py   (from the repo root).
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "demo", "train_flamingo.py")
MODEL = os.path.join(ROOT, "models", "flamingo-demo")
CLI = os.path.join(os.environ.get("FLAMINGO_BUILD_DIR", os.path.join(ROOT, "build")), "bin",
                   "flamingo-cli")
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tools", "demo"))

FILES = ("config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json",
         "special_tokens_map.json", "added_tokens.json", "preprocessor_config.json",
         "generation_config.json")


def smoke_folder():
    if not hasattr(smoke_folder, "out"):
        smoke_folder.tmp = tempfile.TemporaryDirectory()
        out = smoke_folder.tmp.name
        r = subprocess.run([sys.executable, SCRIPT, "--out", out, "--smoke", "--threads", "1"],
                           capture_output=True, text=True, timeout=240)
        smoke_folder.log = r.stdout + r.stderr
        smoke_folder.rc = r.returncode
        smoke_folder.out = out
    return smoke_folder.out


def refused(test, *args):
    """Runs the script (--smoke) with args into an empty folder; asserts that it fails
    before writing anything there and returns its stderr."""
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([sys.executable, SCRIPT, "--out", out, "--smoke", *args],
                           capture_output=True, text=True, timeout=60)
        test.assertNotEqual(r.returncode, 0)
        test.assertEqual(os.listdir(out), [])
        return r.stderr


class TrainFlamingoSmoke(unittest.TestCase):
    def test_smoke_run_exports_a_folder_the_reference_loads(self):
        import numpy as np
        import reference_idefics as RI
        out = smoke_folder()
        self.assertEqual(smoke_folder.rc, 0, smoke_folder.log)
        for stage in ("lm step 2/2 loss", "xattn step 2/2 loss",
                      "verify: reference_idefics vs trained model"):
            self.assertIn(stage, smoke_folder.log)
        for f in FILES:
            self.assertTrue(os.path.isfile(os.path.join(out, f)), f)
        with open(os.path.join(out, "config.json")) as f:
            cfg = json.load(f)
        self.assertEqual(cfg["model_type"], "idefics")
        self.assertEqual(cfg["perceiver_config"].get("resampler_n_latents", 64), 64)
        self.assertEqual(cfg["vision_config"]["hidden_act"], "quick_gelu")
        self.assertEqual(cfg["additional_vocab_size"], 2)
        with open(os.path.join(out, "added_tokens.json")) as f:
            added = json.load(f)
        v = cfg["vocab_size"]
        self.assertEqual(added["<fake_token_around_image>"], v)
        self.assertEqual(added["<image>"], v + 1)
        self.assertLess(added["<end_of_utterance>"], v)  # a piece: it has a row
        model = RI.Idefics(out)
        ids = np.array([[1, v, v + 1, v]])
        px = np.zeros((1, 1, 3, 64, 64), np.float32)
        logits = model.forward(ids, np.ones((1, 4, 1)), px)["logits"]
        self.assertEqual(tuple(logits.shape), (1, 4, v + 2))
        self.assertTrue(bool(np.isfinite(logits.numpy()).all()))

    def test_vision_tower_and_perceiver_stage(self):
        """--vision-tower: a tower of those sizes from scratch; --perceiver-steps: stage 1c."""
        import numpy as np
        import reference_idefics as RI
        with tempfile.TemporaryDirectory() as out:
            r = subprocess.run([sys.executable, SCRIPT, "--out", out, "--smoke", "--threads", "1",
                                "--vision-tower", "32,2,2,48", "--perceiver-steps", "2"],
                               capture_output=True, text=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("vision: dense heads on", r.stdout)
            self.assertIn("perceiver step 2/2 loss", r.stdout)     # stage 1c
            self.assertIn("perceiver: latent heads on", r.stdout)
            with open(os.path.join(out, "config.json")) as f:
                v = json.load(f)["vision_config"]
            self.assertEqual((v["embed_dim"], v["num_hidden_layers"], v["num_attention_heads"],
                              v["intermediate_size"]), (32, 2, 2, 48))
            self.assertEqual(v["vision_model_name"], "flamingo-serve/demo-dense-vit")
            model = RI.Idefics(out)
            vocab = json.load(open(os.path.join(out, "config.json")))["vocab_size"]
            logits = model.forward(np.array([[1, vocab, vocab + 1, vocab]]), np.ones((1, 4, 1)),
                                   np.zeros((1, 1, 3, 64, 64), np.float32))["logits"]
            self.assertTrue(bool(np.isfinite(logits.numpy()).all()))
        unused = os.path.join(tempfile.gettempdir(), "unused-train-flamingo")
        r = subprocess.run([sys.executable, SCRIPT, "--out", unused, "--smoke",
                            "--vision-tower", "32,2"], capture_output=True, text=True, timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--vision-tower wants WIDTH,LAYERS,HEADS,MLP", r.stderr)


class Resume(unittest.TestCase):
    def test_resume_with_another_data_stream_sees_other_sequences(self):
        """--resume DIR runs more stage 3 steps from an export; --data-stream N draws another
        stream of sequences than the first run's (the same stream gives the same losses)."""
        import re
        src = smoke_folder()
        self.assertEqual(smoke_folder.rc, 0, smoke_folder.log)
        losses = {}
        for name, stream in (("a", "0"), ("b", "0"), ("c", "1")):
            with tempfile.TemporaryDirectory() as out:
                r = subprocess.run([sys.executable, SCRIPT, "--out", out, "--smoke", "--threads",
                                    "1", "--resume", src, "--data-stream", stream],
                                   capture_output=True, text=True, timeout=240)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("resume: every weight read from", r.stdout)
                losses[name] = re.findall(r"xattn step \d+/2 loss (\S+)", r.stdout)
                self.assertEqual(len(losses[name]), 2, r.stdout)
        self.assertEqual(losses["a"], losses["b"])
        self.assertNotEqual(losses["a"][0], losses["c"][0])


class RetuneVision(unittest.TestCase):
    def test_retune_vision_trains_the_resumed_tower_with_count_heads(self):
        """--resume DIR --retune-vision N --vision-counts: N stage 1b steps on the resumed
        tower, its class token also predicting per-shape and per-colour counts; the export's
        tower differs from DIR's, the rest of stage 3 runs as with a plain --resume."""
        import numpy as np
        import reference_idefics as RI
        src = smoke_folder()
        self.assertEqual(smoke_folder.rc, 0, smoke_folder.log)
        with tempfile.TemporaryDirectory() as out:
            r = subprocess.run([sys.executable, SCRIPT, "--out", out, "--smoke", "--threads",
                                "1", "--resume", src, "--retune-vision", "2",
                                "--vision-counts"], capture_output=True, text=True, timeout=240)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("stage 1b 2 more steps", r.stdout)
            self.assertIn("vision step 2/2 loss", r.stdout)
            self.assertRegex(r.stdout, r"shape counts \d\.\d{3}, colour counts \d\.\d{3}")
            self.assertIn("xattn step 2/2 loss", r.stdout)
            before, after = RI.read_checkpoint(src), RI.read_checkpoint(out)
            tower = [k for k in before if "vision_model" in k and k.endswith("weight")]
            self.assertTrue(tower)
            self.assertTrue(any(not np.array_equal(before[k], after[k]) for k in tower))

    def test_retune_vision_without_resume_stops_the_script(self):
        self.assertIn("--retune-vision needs --resume", refused(self, "--retune-vision", "2"))

    def test_kind_counts_are_per_shape_then_per_colour(self):
        import dense_vision as D
        import scenes as S
        objs = (S.Obj("circle", "red", "small", 10, 10), S.Obj("circle", "blue", "small", 40, 10),
                S.Obj("star", "red", "large", 30, 45))
        got = D.kind_counts(S.Scene("slate", objs))
        self.assertEqual(len(got), D.KINDS)
        self.assertEqual(got[:len(S.SHAPES)], [2, 0, 0, 1, 0, 0])
        colours = list(S.COLOURS)
        self.assertEqual(got[len(S.SHAPES) + colours.index("red")], 2)
        self.assertEqual(got[len(S.SHAPES) + colours.index("blue")], 1)
        self.assertEqual(sum(got[len(S.SHAPES):]), 3)


class QuestionWeights(unittest.TestCase):
    def test_weights_skew_the_question_types_and_bad_ones_stop_the_script(self):
        """--qtype-weights draws stage 3's question types by weight (uniform without it); a
        malformed entry stops the script before it writes anything."""
        import random
        import collections
        import scenes as S
        import train_flamingo as T
        scene = S.Scene("grey", (S.Obj("circle", "red", "small", 10, 10),
                                 S.Obj("square", "blue", "large", 50, 50)))
        rng = random.Random(1)
        plain = collections.Counter(T.question(rng, scene)["type"] for _ in range(3000))
        skewed = collections.Counter(T.question(rng, scene, weights={"position": 5.0})["type"]
                                     for _ in range(3000))
        self.assertLess(plain["position"], 700)     # about 1/6 of 3000
        self.assertGreater(skewed["position"], 1300)  # about 5/10 of 3000
        self.assertIn("--qtype-weights: 'where=2'", refused(self, "--qtype-weights", "where=2"))


class Tokenizer(unittest.TestCase):
    def test_same_seed_same_bytes_and_the_bundled_model_is_what_the_script_makes(self):
        import train_flamingo as T
        blobs = []
        for _ in range(2):
            with tempfile.TemporaryDirectory() as d:
                T.train_tokenizer(d, 0)
                with open(os.path.join(d, "tokenizer.model"), "rb") as f:
                    blobs.append(f.read())
        self.assertEqual(blobs[0], blobs[1])
        bundled = os.path.join(MODEL, "tokenizer.model")
        if not os.path.exists(bundled):
            self.skipTest(f"{bundled} is missing")
        with open(bundled, "rb") as f:
            self.assertEqual(f.read(), blobs[0])


class PromptIds(unittest.TestCase):
    """prompts.Encoder's ids against the C++ prompt builder (flamingo-cli --json)."""

    def cli_prompt_ids(self, model, items, tmp):
        cmd, text = [CLI, "generate", "--model", model, "--max-new-tokens", "1", "--json",
                     "--threads", "1"], ""
        import scenes as S
        for k, it in enumerate(items):
            if it[0] == "image":
                path = os.path.join(tmp, f"{k}.png")
                S.render(it[1]).save(path)
                cmd += ["--image", path]
                text += "<image>"
            else:
                text += it[1]
        r = subprocess.run(cmd + ["--prompt", text], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)["prompt_token_ids"]

    def test_caption_question_and_few_shot_ids_match_the_server(self):
        if not os.access(CLI, os.X_OK):
            self.skipTest(f"{CLI} is not built")
        import sentencepiece
        import prompts as P
        import scenes as S
        model = MODEL if os.path.exists(os.path.join(MODEL, "config.json")) else smoke_folder()
        with open(os.path.join(model, "config.json")) as f:
            vocab = json.load(f)["vocab_size"]
        enc = P.Encoder(sentencepiece.SentencePieceProcessor(
            model_file=os.path.join(model, "tokenizer.model")), vocab)
        scene = S.sample_scene(S.split_rng("heldout", 3, stream="prompt-test"), "heldout")
        ep = S.eval_episodes(2, seed=5)[1]
        cases = [P.caption_prompt(scene), P.question_prompt(scene, "How many objects are there?"),
                 P.few_shot_prompt(ep), P.few_shot_prompt(ep, newline=False)]
        with tempfile.TemporaryDirectory() as tmp:
            for items in cases:
                want = enc.prompt(items)
                self.assertEqual(self.cli_prompt_ids(model, items, tmp), want.ids, items)
                self.assertEqual(len(want.image), len(want.ids))
        # the answer extends the prompt's last text run; captions end with "\n" and </s>
        ans = enc.answer("Caption:", S.caption(scene))
        self.assertEqual(ans[-2:], [enc.newline, enc.eos])
        self.assertEqual(enc.answer("\nAssistant:", "red", chat=True)[-1], enc.eou)


if __name__ == "__main__":
    unittest.main()
