#!/usr/bin/python3
"""Smoke test of tools/demo/train_clip.py (stage 1 of the demo model, issue 12): two training
steps into a temporary folder, which must be a complete HF CLIPModel folder that
tools/reference_clip.py loads (every tensor consumed, shapes checked) and whose embeddings the
script itself checked against its trained modules. Training proper is not run in CI.

Run: /usr/bin/python3 -m unittest -v tests/tools/test_train_clip.py   (from the repo root).
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "demo", "train_clip.py")
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tools", "demo"))

FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json",
         "special_tokens_map.json", "preprocessor_config.json")


class TrainClipSmoke(unittest.TestCase):
    def test_two_steps_export_loads_in_reference(self):
        import numpy as np
        import reference_clip as RC
        import scenes as S
        from eval_clip import COLOUR_TEMPLATE
        with tempfile.TemporaryDirectory() as out:
            r = subprocess.run([sys.executable, SCRIPT, "--out", out, "--steps", "2",
                                "--batch", "8", "--probe-every", "0", "--threads", "1"],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("step 2/2 loss", r.stdout)
            self.assertIn("verify: reference_clip vs trained model", r.stdout)
            for f in FILES:
                self.assertTrue(os.path.isfile(os.path.join(out, f)), f)
            with open(os.path.join(out, "config.json")) as f:
                cfg = json.load(f)
            self.assertEqual(cfg["model_type"], "clip")
            self.assertEqual(cfg["text_config"]["eos_token_id"], 2)  # argmax pooling rule
            self.assertEqual(cfg["vision_config"]["image_size"], 64)
            self.assertLess(os.path.getsize(os.path.join(out, "model.safetensors")), 5e6)

            tok, model = RC.ClipTokenizerRef(out), RC.Clip(out)
            # Every word of the world is one BPE token; <|endoftext|> is the largest id.
            ids, toks, _ = tok.encode(COLOUR_TEMPLATE.format("purple"))
            self.assertEqual(toks, ["a</w>", "photo</w>", "of</w>", "a</w>", "purple</w>",
                                    "object</w>", ".</w>"])
            self.assertEqual(max(ids), ids[-1])
            self.assertEqual(ids[-1], cfg["text_config"]["vocab_size"] - 1)
            _, t = model.text([ids])
            scene = S.sample_scene(S.split_rng("heldout", 0, stream="smoke"), "heldout")
            path = os.path.join(out, "scene.png")
            S.render(scene).save(path)
            px = RC.preprocess(path, RC.read_preprocessor_config(out))[None]
            _, i = model.image(px)
            self.assertEqual(tuple(t.shape), (1, cfg["projection_dim"]))
            self.assertEqual(tuple(i.shape), (1, cfg["projection_dim"]))
            self.assertTrue(np.isfinite(float((i @ t.T)[0, 0])))


if __name__ == "__main__":
    unittest.main()
