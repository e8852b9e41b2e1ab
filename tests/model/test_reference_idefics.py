#!/usr/bin/python3
"""Checks the Python oracles tools/reference_idefics.py and tools/make_checkpoint.py.

1. reference_idefics.py against the golden set (transformers v4.44.2 outputs): for the 8
   cases and the batch, with model/ (sharded float32 + stray buffer) and model_bf16/
   (upcast), logits, hidden states, gated-layer outputs, vision and perceiver outputs within
   1e-5 abs, and full-recompute greedy ids identical (logprobs within 1e-5).
2. make_checkpoint.py: `--preset golden --seed 7778` reproduces the golden weights bit for bit
   (float32 shards and the bf16 file) and its config/tokenizer json files byte for byte; tiny
   checkpoints in all flag settings load in the reference with every tensor consumed at the
   expected shape, have well-formed safetensors/index files, real logit spread, working
   image dependence, and are byte-identical across two runs (spm_train included).

Run: /usr/bin/python3 -m unittest tests/model/test_reference_idefics.py   (or as a script).
The golden dir is $FLAMINGO_GOLDEN_DIR, else <repo>/tests/golden/idefics-tiny.
FLAMINGO_TEST_SMALL=1 also builds the ~444M-parameter `small` preset (~1 min, 1.8 GB disk).
"""

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))
import reference_idefics as ref  # noqa: E402

GOLDEN = os.environ.get("FLAMINGO_GOLDEN_DIR",
                        os.path.join(REPO, "tests", "golden", "idefics-tiny"))
MAKE = os.path.join(REPO, "tools", "make_checkpoint.py")
REFERENCE = os.path.join(REPO, "tools", "reference_idefics.py")
TOL = 1e-5  # abs, float32; the reference matched HF exactly (0.0) when this was written
BATCH_TOL = 1e-4  # batched vs unbatched float32; HF itself differs by up to 8.6e-6 there
CASES = sorted(os.listdir(os.path.join(GOLDEN, "cases")))


def load_case(case):
    d = os.path.join(GOLDEN, "cases", case)
    am = os.path.join(d, "attention_mask.npy")
    return (d, np.load(os.path.join(d, "input_ids.npy")),
            np.load(os.path.join(d, "image_attention_mask.npy")),
            np.load(os.path.join(d, "pixel_values.npy")),
            np.load(am) if os.path.exists(am) else None)


def make(out, *flags, preset="tiny"):
    """Runs make_checkpoint.py; no tokenizer cache, so spm_train runs every time."""
    subprocess.run([sys.executable, MAKE, "--preset", preset, "--out", out,
                    "--tokenizer-cache", "", *flags], check=True, stdout=subprocess.DEVNULL)


def file_hashes(d):
    out = {}
    for f in sorted(os.listdir(d)):
        with open(os.path.join(d, f), "rb") as fh:
            out[f] = hashlib.sha256(fh.read()).hexdigest()
    return out


class GoldenReference(unittest.TestCase):
    """reference_idefics.py reproduces the transformers v4.44.2 golden outputs."""

    @classmethod
    def setUpClass(cls):
        cls.models = {"": ref.Idefics(os.path.join(GOLDEN, "model")),
                      "bf16": ref.Idefics(os.path.join(GOLDEN, "model_bf16"))}

    def test_forward_matches_golden(self):
        names = [("hidden_states", "hidden_states"),
                 ("gated_outputs", "gated_cross_attn_block_outputs"),
                 ("vision", "vision_last_hidden_state"), ("perceiver", "perceiver_output")]
        for sub, model in self.models.items():
            for case in CASES:
                d, ids, im, pix, am = load_case(case)
                with torch.no_grad():
                    out = model.forward(ids, im, pix, am)
                real = np.ones(ids.shape, bool) if am is None else am == 1
                want = np.load(os.path.join(d, sub, "logits.npy")).reshape(out["logits"].shape)
                diff = np.abs(out["logits"].numpy() - want)[real].max()
                self.assertLessEqual(diff, TOL, f"{sub or 'model'}/{case} logits")
                for key, fname in names:
                    path = os.path.join(d, sub, fname + ".npy")
                    if am is not None or not os.path.exists(path):
                        continue
                    got = out[key].numpy()
                    got = got[:, 0] if key in ("hidden_states", "gated_outputs") else got
                    want = np.load(path)
                    self.assertEqual(got.shape, want.shape, f"{sub}/{case} {key}")
                    self.assertLessEqual(np.abs(got - want).max(), TOL, f"{sub}/{case} {key}")

    def test_greedy_matches_golden(self):
        for sub, model in self.models.items():
            for case in CASES:
                d, ids, im, pix, am = load_case(case)
                with open(os.path.join(d, sub, "generation.json")) as f:
                    gen = json.load(f)
                want = gen.get("manual_full_recompute_loop", gen["use_cache_false"])
                want = want if isinstance(want, list) else [want]
                with torch.no_grad():
                    rows = model.greedy(ids, im, pix, gen["max_new_tokens"], am)
                for r, (w, g) in enumerate(zip(want, rows)):
                    self.assertEqual(g["new_token_ids"], w["new_token_ids"],
                                     f"{sub}/{case} row {r}")
                    self.assertLessEqual(np.abs(np.subtract(g["logprobs"], w["logprobs"])).max(),
                                         TOL, f"{sub}/{case} row {r} logprobs")

    def test_cli_matches_golden(self):
        d, ids, im, pix, _ = load_case("case1_single_image_question")
        with tempfile.TemporaryDirectory() as tmp:
            np.save(os.path.join(tmp, "pix.npy"), pix[0])
            cmd = [sys.executable, REFERENCE, "--model", os.path.join(GOLDEN, "model"),
                   "--input-ids", ",".join(map(str, ids[0])), "--image-of-token", "auto",
                   "--pixels", os.path.join(tmp, "pix.npy"), "--out", os.path.join(tmp, "l.npy"),
                   "--greedy", "3", "--out-json", os.path.join(tmp, "g.json")]
            subprocess.run(cmd, check=True)
            logits = np.load(os.path.join(tmp, "l.npy"))
            with open(os.path.join(tmp, "g.json")) as f:
                gen = json.load(f)
        want = np.load(os.path.join(d, "logits.npy"))
        self.assertEqual(logits.shape, want.shape)
        self.assertLessEqual(np.abs(logits - want).max(), TOL)
        with open(os.path.join(d, "generation.json")) as f:
            self.assertEqual(gen["new_token_ids"],
                             json.load(f)["manual_full_recompute_loop"]["new_token_ids"][:3])

    def test_image_of_token_auto_rule(self):
        for case in CASES:
            _, ids, im, _, _ = load_case(case)
            for b in range(ids.shape[0]):
                rows = ref.image_of_token_auto(list(ids[b]), 401, 2)
                want = [int(np.argmax(r)) if r.any() else -1 for r in im[b]]
                self.assertEqual(rows, want, case)
        # The </s> itself keeps its image (IdeficsProcessor sets seen_eod after assigning).
        self.assertEqual(ref.image_of_token_auto([5, 401, 7, 2, 7, 401, 7], 401, 2),
                         [-1, 0, 0, 0, -1, 1, 1])


def check_safetensors_layout(test, d):
    """Header length multiple of 8, tensors contiguous and aligned, index consistent."""
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    index_path = os.path.join(d, "model.safetensors.index.json")
    total, mapped = 0, {}
    for f in files:
        with open(os.path.join(d, f), "rb") as fh:
            data = fh.read()
        (n,) = struct.unpack("<Q", data[:8])
        test.assertEqual(n % 8, 0, f)
        header = json.loads(data[8:8 + n])
        test.assertEqual(header.pop("__metadata__"), {"format": "pt"})
        spans = sorted((m["data_offsets"][0], m["data_offsets"][1], m["dtype"])
                       for m in header.values())
        pos = 0
        for b, e, dt in spans:
            test.assertEqual(b, pos, f)
            test.assertEqual(b % {"F32": 4, "BF16": 2, "I64": 8}[dt], 0, f)
            pos = e
        test.assertEqual(8 + n + pos, len(data), f)
        total += pos
        mapped.update({k: f for k in header})
    if len(files) > 1:
        with open(index_path) as fh:
            index = json.load(fh)
        test.assertEqual(index["metadata"]["total_size"], total)
        test.assertEqual(index["weight_map"], mapped)
    else:
        test.assertEqual(files, ["model.safetensors"])
        test.assertFalse(os.path.exists(index_path))


class MakeCheckpoint(unittest.TestCase):
    """make_checkpoint.py writes hub-like folders the reference loads completely."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="make_checkpoint_test_")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_golden_preset_reproduces_golden_weights(self):
        tok = os.path.join(GOLDEN, "model", "tokenizer.model")
        out32, out16 = os.path.join(self.tmp, "g32"), os.path.join(self.tmp, "g16")
        make(out32, "--seed", "7778", "--stray-buffer", "--tokenizer-model", tok, preset="golden")
        make(out16, "--seed", "7778", "--dtype", "bfloat16", "--shards", "1", "--tokenizer-model",
             tok, preset="golden")
        for mine, golden in ((out32, "model"), (out16, "model_bf16")):
            a = ref.read_checkpoint(mine)
            b = ref.read_checkpoint(os.path.join(GOLDEN, golden))
            self.assertEqual(sorted(a), sorted(b))
            for k in b:
                self.assertEqual(a[k].dtype, b[k].dtype, k)
                self.assertTrue(np.array_equal(a[k], b[k]), f"{golden}: {k} differs")
            for f in ("config.json", "generation_config.json", "preprocessor_config.json",
                      "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"):
                with open(os.path.join(mine, f), "rb") as x, \
                        open(os.path.join(GOLDEN, golden, f), "rb") as y:
                    self.assertEqual(x.read(), y.read(), f"{golden}/{f}")
            check_safetensors_layout(self, mine)
        with open(os.path.join(out16, "model.safetensors"), "rb") as x, \
                open(os.path.join(GOLDEN, "model_bf16", "model.safetensors"), "rb") as y:
            self.assertEqual(x.read(), y.read(), "bf16 file bytes")

    def test_tiny_variants_load_and_run(self):
        variants = [(), ("--no-qk-layer-norms",), ("--no-qk-layer-norms-perceiver",),
                    ("--no-qk-layer-norms", "--no-qk-layer-norms-perceiver"),
                    ("--dtype", "bfloat16", "--stray-buffer"), ("--shards", "1"),
                    ("--alpha-type", "vector", "--cross-layer-interval", "4"),
                    ("--minimal-config", "--cross-layer-interval", "1", "--shards", "5")]
        base = None
        for flags in variants:
            with self.subTest(flags=flags):
                out = os.path.join(self.tmp, "tiny" + "_".join(flags).replace("-", ""))
                make(out, "--seed", "5", *flags)
                check_safetensors_layout(self, out)
                m = ref.Idefics(out)  # raises on any missing / unexpected / misshaped tensor
                c = m.cfg
                self.assertEqual(c["qk_layer_norms"], "--no-qk-layer-norms" not in flags)
                self.assertEqual(c["perceiver"]["qk_layer_norms_perceiver"],
                                 "--no-qk-layer-norms-perceiver" not in flags)
                self.assertEqual((c["vocab_size"], c["hidden_size"], c["vision"]["image_size"],
                                  c["vision"]["patch_size"]), (1000, 64, 28, 14))
                interval = int(flags[flags.index("--cross-layer-interval") + 1]) \
                    if "--cross-layer-interval" in flags else 2
                self.assertEqual(len(m.gated), 4 // interval)
                with open(os.path.join(out, "config.json")) as f:
                    raw = json.load(f)
                self.assertNotIn("patch_size", raw["vision_config"])  # class default left out
                self.assertEqual("cross_layer_interval" in raw, interval != 1 or
                                 "--minimal-config" not in flags)
                for g in m.gated:
                    for a in (g["alpha_attn"], g["alpha_dense"]):
                        self.assertTrue(((a.abs() >= 0.39) & (a.abs() <= 1.51)).all())
                self.check_tokenizer(out, 1000)
                logits = self.check_forward(m)
                if flags == ():
                    base = (out, logits)
                if flags[:2] == ("--dtype", "bfloat16"):
                    # same draw: bf16 tensors are the RNE rounding of the float32 ones
                    a, b = ref.read_checkpoint(base[0]), ref.read_checkpoint(out)
                    for k, v in a.items():
                        t = torch.from_numpy(v).to(torch.bfloat16).float().numpy()
                        self.assertTrue(np.array_equal(t, b[k]), k)
                    self.assertGreater(np.abs(logits - base[1]).max(), 1e-4)

    def check_tokenizer(self, out, vocab):
        with open(os.path.join(out, "tokenizer_config.json")) as f:
            tc = json.load(f)
        self.assertNotIn("legacy", tc)
        self.assertEqual((tc["add_bos_token"], tc["add_eos_token"], tc["padding_side"],
                          tc["pad_token"], tc["tokenizer_class"]),
                         (True, False, "left", "<unk>", "LlamaTokenizer"))
        with open(os.path.join(out, "added_tokens.json")) as f:
            self.assertEqual(json.load(f),
                             {"<fake_token_around_image>": vocab, "<image>": vocab + 1})
        try:
            import sentencepiece
        except ImportError:
            return
        sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(out, "tokenizer.model"))
        self.assertEqual(sp.get_piece_size(), vocab)
        self.assertEqual([sp.id_to_piece(i) for i in (0, 1, 2, 3, 13)],
                         ["<unk>", "<s>", "</s>", "<0x00>", "<0x0A>"])
        self.assertEqual(sp.encode("21", out_type=str)[-2:], ["2", "1"])

    def check_forward(self, m):
        """Image-dependent logits with real spread; nothing before the first image changes."""
        rng = np.random.RandomState(0)
        L, img_pos = 12, 4
        ids = rng.randint(3, 1000, size=(1, L))
        ids[0, img_pos - 1:img_pos + 2] = [1000, 1001, 1000]
        im = np.zeros((1, L, 1), np.int64)
        im[0, img_pos:, 0] = 1
        pix = rng.standard_normal((1, 1, 3, 28, 28)).astype(np.float32)
        with torch.no_grad():
            a = m.forward(ids, im, pix)["logits"].numpy()
            b = m.forward(ids, im, pix[:, :, :, ::-1].copy())["logits"].numpy()
        self.assertEqual(a.shape, (1, L, 1002))
        self.assertTrue(np.isfinite(a).all())
        self.assertGreater(a.std(), 0.5)
        self.assertEqual(np.abs(a[0, :img_pos] - b[0, :img_pos]).max(), 0.0)
        self.assertGreater(np.abs(a[0, img_pos:] - b[0, img_pos:]).max(), 1e-3)
        return a[0]

    def test_deterministic(self):
        a, b = os.path.join(self.tmp, "det_a"), os.path.join(self.tmp, "det_b")
        for out in (a, b):
            make(out, "--seed", "11", "--stray-buffer", "--no-qk-layer-norms")
        self.assertEqual(file_hashes(a), file_hashes(b))
        c = os.path.join(self.tmp, "det_c")
        make(c, "--seed", "12", "--stray-buffer", "--no-qk-layer-norms")
        self.assertNotEqual(file_hashes(a)["model-00001-of-00003.safetensors"],
                            file_hashes(c)["model-00001-of-00003.safetensors"])

    def test_reference_rejects_inconsistent_checkpoints(self):
        out = os.path.join(self.tmp, "strict")
        make(out, "--seed", "3")
        cfg_path = os.path.join(out, "config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        cfg["qk_layer_norms"] = False  # tensors still hold the q/k norms
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        with self.assertRaisesRegex(ValueError, "unexpected tensors"):
            ref.Idefics(out)
        cfg["qk_layer_norms"], cfg["intermediate_size"] = True, 96
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        with self.assertRaisesRegex(ValueError, "has shape"):
            ref.Idefics(out)

    def test_batch_left_padding_matches_unbatched(self):
        out = os.path.join(self.tmp, "batch")
        make(out, "--seed", "9", "--no-qk-layer-norms")
        m = ref.Idefics(out)
        rng = np.random.RandomState(1)
        rows = [rng.randint(3, 1000, size=n) for n in (9, 14)]
        rows[0][2:5] = [1000, 1001, 1000]
        rows[1][1:5] = [1000, 1001, 1001, 1000]
        pix = rng.standard_normal((2, 2, 3, 28, 28)).astype(np.float32)
        pix[0, 1] = 0.0
        masks = [np.array([[int(s == img) for img in range(2)] for s in
                           ref.image_of_token_auto(list(r), 1001, 2)]) for r in rows]
        L = 14
        ids = np.zeros((2, L), np.int64)
        am = np.zeros((2, L), np.int64)
        im = np.zeros((2, L, 2), np.int64)
        for b, (r, k) in enumerate(zip(rows, masks)):
            ids[b, L - len(r):], am[b, L - len(r):], im[b, L - len(r):] = r, 1, k
        with torch.no_grad():
            batch = m.forward(ids, im, pix, am)["logits"].numpy()
            for b, (r, k) in enumerate(zip(rows, masks)):
                n_img = 1 if b == 0 else 2
                one = m.forward(r[None], k[None, :, :n_img], pix[b:b + 1, :n_img])["logits"].numpy()
                self.assertLessEqual(np.abs(batch[b, L - len(r):] - one[0]).max(), BATCH_TOL)
            g = m.greedy(ids, im, pix, 4, am)
            for b, (r, k) in enumerate(zip(rows, masks)):
                n_img = 1 if b == 0 else 2
                one = m.greedy(r[None], k[None, :, :n_img], pix[b:b + 1, :n_img], 4)
                self.assertEqual(g[b]["new_token_ids"], one[0]["new_token_ids"])

    def test_float64_agrees_with_float32(self):
        out = os.path.join(self.tmp, "f64")
        make(out, "--seed", "4", "--no-qk-layer-norms-perceiver")
        m32, m64 = ref.Idefics(out), ref.Idefics(out, torch.float64)
        with torch.no_grad():
            a = self.check_forward(m32)
            b = self.check_forward(m64)
        self.assertLessEqual(np.abs(a - b).max(), 1e-4)  # float32 rounding only

    @unittest.skipUnless(os.environ.get("FLAMINGO_TEST_SMALL"), "set FLAMINGO_TEST_SMALL=1")
    def test_small_preset(self):
        out = os.path.join(self.tmp, "small")
        t = time.time()
        make(out, "--stray-buffer", preset="small")
        print(f"\nsmall preset: {time.time() - t:.1f} s", file=sys.stderr)
        check_safetensors_layout(self, out)
        self.check_tokenizer(out, 32000)
        m = ref.Idefics(out)
        with open(os.path.join(out, "model.safetensors.index.json")) as f:
            total = json.load(f)["metadata"]["total_size"]
        self.assertEqual((total - 8 * 257) // 4, 443922440)  # float32 params + I64 [1,257]
        self.assertEqual((len(m.layers), len(m.gated), len(m.v_layers), len(m.p_blocks)),
                         (16, 4, 12, 6))


if __name__ == "__main__":
    unittest.main()
