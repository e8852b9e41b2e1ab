#!/usr/bin/python3
"""Checks the CLIP Python oracles tools/reference_clip.py and make_checkpoint.py --preset clip-tiny.

1. reference_clip.py against the golden set tests/golden/clip-tiny (transformers v4.44.2's
   CLIPTokenizer, CLIPImageProcessor and CLIPModel outputs): input ids and tokens of the 11
   texts exact, pixel values of the 8 image files within 1e-6, pooled outputs and embeddings
   within 1e-5, logits within 1e-4 (the reference matched to ~1.5e-6 / 3.4e-6 when this was
   written; the C++ bars of the README are 10x looser), through the API and the CLI; both
   text-pooling rules (argmax of the ids when eos_token_id == 2, else the first eos).
2. make_checkpoint.py --preset clip-tiny: byte-identical across runs, OpenAI CLIP vocab/merges
   layout (byte symbols, </w> symbols, one symbol per merge, specials last), config.json and
   tokenizer files as save_pretrained writes them, for both --clip-eos-rule values; every
   tensor loads in the reference at the expected shape, logit_scale is 0-dim, and the
   outputs have spread.

Run: /usr/bin/python3 -m unittest tests/model/test_reference_clip.py   (or as a script).
"""

import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))
import make_clip_checkpoint as mcc  # noqa: E402
import reference_clip as ref  # noqa: E402

GOLDEN = os.path.join(REPO, "tests", "golden", "clip-tiny")
MAKE = os.path.join(REPO, "tools", "make_checkpoint.py")
REFERENCE = os.path.join(REPO, "tools", "reference_clip.py")
TOL = 1e-5  # pooled outputs and embeddings, fp32
LOGIT_TOL = 1e-4
PIXEL_TOL = 1e-6


def golden_cases():
    with open(os.path.join(GOLDEN, "cases.json"), encoding="utf-8") as f:
        return json.load(f)


def golden_pixels(cases):
    return np.concatenate([np.load(os.path.join(GOLDEN, "images", im["file"].rsplit(".", 1)[0]
                                                + ".pixel_values.npy")) for im in cases["images"]])


def max_diff(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def make(out, *flags):
    subprocess.run([sys.executable, MAKE, "--preset", "clip-tiny", "--out", out, *flags],
                   check=True, stdout=subprocess.DEVNULL)


def file_hashes(d):
    out = {}
    for f in sorted(os.listdir(d)):
        with open(os.path.join(d, f), "rb") as fh:
            out[f] = hashlib.sha256(fh.read()).hexdigest()
    return out


def safetensors_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return n, json.loads(f.read(n))


class GoldenReference(unittest.TestCase):
    """reference_clip.py reproduces transformers' outputs on the golden set."""

    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        cls.cases = golden_cases()
        cls.dir = os.path.join(GOLDEN, "model")
        cls.tok = ref.ClipTokenizerRef(cls.dir)
        cls.model = ref.Clip(cls.dir)

    def test_tokenizer_matches_golden(self):
        for t in self.cases["texts"]:
            ids, toks, truncated = self.tok.encode(t["text"])
            self.assertEqual(ids, t["input_ids"], t["name"])
            self.assertEqual([ref.BOS] + toks[:75] + [ref.EOS], t["tokens"], t["name"])
            self.assertEqual(truncated, t["name"] == "long", t["name"])

    def test_pixel_values_match_golden(self):
        cfg = ref.read_preprocessor_config(self.dir)
        for im, want in zip(self.cases["images"], golden_pixels(self.cases)):
            got = ref.preprocess(os.path.join(GOLDEN, "images", im["file"]), cfg)
            self.assertEqual(got.dtype, np.float32)
            self.assertLessEqual(max_diff(got, want), PIXEL_TOL, im["file"])

    def test_embeddings_and_logits_match_golden(self):
        texts = self.cases["texts"]
        t_pooled, t_emb = self.model.text([t["input_ids"] for t in texts])
        for t, p, e in zip(texts, t_pooled, t_emb):
            self.assertLessEqual(max_diff(p, t["pooled"]), TOL, t["name"])
            self.assertLessEqual(max_diff(e, t["text_embeds"]), TOL, t["name"])
        i_pooled, i_emb = self.model.image(golden_pixels(self.cases))
        for im, p, e in zip(self.cases["images"], i_pooled, i_emb):
            self.assertLessEqual(max_diff(p, im["pooled"]), TOL, im["file"])
            self.assertLessEqual(max_diff(e, im["image_embeds"]), TOL, im["file"])
        self.assertAlmostEqual(self.model.logit_scale_exp, self.cases["logit_scale_exp"], 6)
        logits = i_emb @ t_emb.T * self.model.logit_scale.exp()
        self.assertLessEqual(max_diff(logits, self.cases["logits_per_image"]), LOGIT_TOL)

    def test_cli_matches_golden(self):
        with tempfile.TemporaryDirectory(prefix="clip_ref_") as d:
            texts = os.path.join(d, "texts.json")
            with open(texts, "w", encoding="utf-8") as f:
                json.dump([t["text"] for t in self.cases["texts"]], f)
            images = [os.path.join(GOLDEN, "images", im["file"]) for im in self.cases["images"]]
            subprocess.run([sys.executable, REFERENCE, "--model", self.dir, "--texts-json", texts,
                            "--images", *images, "--pixels-out", os.path.join(d, "pix.npy"),
                            "--out", os.path.join(d, "out.json")], check=True)
            with open(os.path.join(d, "out.json"), encoding="utf-8") as f:
                out = json.load(f)
            pix = np.load(os.path.join(d, "pix.npy"))
        self.assertEqual(out["text_pooling"], self.cases["text_pooling"])
        self.assertLessEqual(max_diff(pix, golden_pixels(self.cases)), PIXEL_TOL)
        for got, want in zip(out["texts"], self.cases["texts"]):
            self.assertEqual(got["input_ids"], want["input_ids"])
            self.assertLessEqual(max_diff(got["text_embeds"], want["text_embeds"]), TOL)
        for got, want in zip(out["images"], self.cases["images"]):
            self.assertLessEqual(max_diff(got["image_embeds"], want["image_embeds"]), TOL)
        self.assertLessEqual(max_diff(out["logits_per_image"], self.cases["logits_per_image"]),
                             LOGIT_TOL)

    def test_pooling_rules(self):
        """eos_token_id 2: the argmax of the ids; else the first position of eos_token_id.
        With the causal mask, position p of a text is the last position of its prefix."""
        ids = [5, 600, 7, 600, 3]
        text = self.model.cfg["text"]
        saved = text["eos_token_id"]
        try:
            text["eos_token_id"] = 2
            argmax = self.model.text([ids])[0][0]
            text["eos_token_id"] = 7
            first7 = self.model.text([ids])[0][0]
            prefix3 = self.model.text([ids[:3]])[0][0]
            text["eos_token_id"] = 600
            first600 = self.model.text([ids])[0][0]
            prefix2 = self.model.text([ids[:2]])[0][0]
        finally:
            text["eos_token_id"] = saved
        self.assertTrue(torch.equal(argmax, first600))
        self.assertLessEqual(max_diff(first600, prefix2), TOL)
        self.assertLessEqual(max_diff(first7, prefix3), TOL)
        self.assertGreater(max_diff(argmax, first7), 1e-2)


class Tokenizer(unittest.TestCase):
    """Rules of the reference tokenizer the golden texts do not reach."""

    @classmethod
    def setUpClass(cls):
        cls.tok = ref.ClipTokenizerRef(os.path.join(GOLDEN, "model"))

    def test_cleanup_and_pretokenizer(self):
        self.assertEqual(ref.basic_clean("A\u3000b\x07c\u200bd\te\u00a0F"), "a bcd e f")
        self.assertEqual(ref.basic_clean("cafe\u0301"), "caf\u00e9")  # NFC
        self.assertEqual(ref.basic_clean("\u5c0f\u72d7x"), "\u5c0f \u72d7 x")
        self.assertEqual(ref.basic_clean("\u03a3\u039f\u03a3"), "\u03c3\u03bf\u03c2")
        self.assertEqual(ref.pretokenize("it's,''s 3.14 x\u0345y <|endoftext|>!"),
                         ["it", "'s", ",''", "s", "3", ".", "1", "4", "x", "y",
                          "<|endoftext|>", "!"])
        self.assertEqual(ref.pretokenize("'\u017fx"), ["'\u017f", "x"])

    def test_specials_and_truncation(self):
        ids, toks, _ = self.tok.encode("a<|endoftext|>b <|StartOfText|>")
        self.assertEqual(toks, ["a</w>", ref.EOS, "b</w>", ref.BOS])
        self.assertEqual(ids[0], self.tok.bos)
        self.assertEqual(ids[-1], self.tok.eos)
        self.assertEqual(self.tok.encode(""), ([self.tok.bos, self.tok.eos], [], False))
        ids, toks, truncated = self.tok.encode("x " * 100)
        self.assertEqual((len(ids), len(toks), truncated), (77, 100, True))
        self.assertEqual(ids[-1], self.tok.eos)
        self.assertEqual(self.tok.encode("x " * 75)[2], False)
        self.assertEqual(self.tok.encode("x " * 76)[2], True)


class Generator(unittest.TestCase):
    """make_checkpoint.py --preset clip-tiny."""

    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        cls.tmp = tempfile.TemporaryDirectory(prefix="clip_ckpt_")
        cls.dirs = {}
        for name, flags in [("argmax", []), ("argmax_again", []), ("other_seed", ["--seed", "9"]),
                            ("first", ["--clip-eos-rule", "first", "--clip-hidden-act", "gelu"])]:
            cls.dirs[name] = os.path.join(cls.tmp.name, name)
            make(cls.dirs[name], *flags)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def read_json(self, name, file):
        with open(os.path.join(self.dirs[name], file), encoding="utf-8") as f:
            return json.load(f)

    def test_deterministic(self):
        a = file_hashes(self.dirs["argmax"])
        self.assertEqual(a, file_hashes(self.dirs["argmax_again"]))
        b = file_hashes(self.dirs["other_seed"])
        self.assertEqual({k for k in a if a[k] != b[k]}, {"model.safetensors"})
        self.assertEqual(sorted(a), ["config.json", "merges.txt", "model.safetensors",
                                     "preprocessor_config.json", "special_tokens_map.json",
                                     "tokenizer_config.json", "vocab.json"])

    def test_vocab_and_merges_layout(self):
        vocab = self.read_json("argmax", "vocab.json")
        symbols = [s for s, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
        self.assertEqual(sorted(vocab.values()), list(range(len(vocab))))
        byte_syms = list(mcc.bytes_to_unicode().values())
        self.assertEqual(symbols[:256], byte_syms)
        self.assertEqual(symbols[:256], [ref.byte_encoder()[b] for b in
                                         mcc.bytes_to_unicode().keys()])
        self.assertEqual(symbols[256:512], [s + "</w>" for s in byte_syms])
        self.assertEqual(symbols[-2:], [ref.BOS, ref.EOS])
        with open(os.path.join(self.dirs["argmax"], "merges.txt"), encoding="utf-8") as f:
            lines = f.read().split("\n")
        self.assertEqual(lines[0], "#version: 0.2")
        self.assertEqual(lines[-1], "")
        merges = [tuple(line.split(" ")) for line in lines[1:-1]]
        self.assertEqual(len(merges), 200)
        self.assertEqual(len(vocab), 512 + 200 + 2)
        for k, (a, b) in enumerate(merges):
            self.assertLess(max(vocab[a], vocab[b]), 512 + k, (a, b))  # learnt before
            self.assertEqual(vocab[a + b], 512 + k)
        self.assertEqual(vocab, self.read_json("first", "vocab.json"))
        # The merges do their work: a corpus sentence needs far fewer tokens than bytes.
        tok = ref.ClipTokenizerRef(self.dirs["argmax"])
        text = "The kitchen table holds a blue mug, a plate of toast and a glass of milk."
        toks = tok.tokens(text)
        self.assertLess(len(toks), len(text) // 2)
        self.assertIn("kitchen</w>", toks)

    def test_config_and_tokenizer_files(self):
        vocab = self.read_json("argmax", "vocab.json")
        bos, eos = vocab[ref.BOS], vocab[ref.EOS]
        self.assertEqual(eos, max(vocab.values()))  # the argmax rule needs the largest id
        for name in ("argmax", "first"):
            c = self.read_json(name, "config.json")
            self.assertEqual(c["model_type"], "clip")
            self.assertEqual(c["architectures"], ["CLIPModel"])
            self.assertEqual(c["projection_dim"], 16)
            t, v = c["text_config"], c["vision_config"]
            self.assertEqual((t["hidden_size"], t["num_hidden_layers"], t["num_attention_heads"],
                              t["intermediate_size"], t["vocab_size"], t["model_type"]),
                             (32, 2, 4, 64, len(vocab), "clip_text_model"))
            self.assertNotIn("max_position_embeddings", t)  # 77, the class default
            self.assertEqual((v["hidden_size"], v["num_hidden_layers"], v["num_attention_heads"],
                              v["intermediate_size"], v["image_size"], v["patch_size"],
                              v["model_type"]), (32, 2, 4, 64, 32, 8, "clip_vision_model"))
            cfg = ref.read_config(self.dirs[name])
            if name == "argmax":
                self.assertEqual((t["bos_token_id"], t["eos_token_id"]), (0, 2))
                self.assertNotIn("pad_token_id", t)  # 1, the class default
                self.assertNotIn("hidden_act", t)
                self.assertEqual(cfg["text"]["hidden_act"], "quick_gelu")
            else:
                self.assertEqual((t["bos_token_id"], t["eos_token_id"], t["pad_token_id"]),
                                 (bos, eos, eos))
                self.assertEqual((t["hidden_act"], v["hidden_act"]), ("gelu", "gelu"))
            p = self.read_json(name, "preprocessor_config.json")
            self.assertEqual((p["size"], p["crop_size"], p["resample"], p["do_convert_rgb"]),
                             ({"shortest_edge": 32}, {"height": 32, "width": 32}, 3, True))
            self.assertEqual(p["image_processor_type"], "CLIPImageProcessor")
        tc = self.read_json("argmax", "tokenizer_config.json")
        self.assertEqual(tc["tokenizer_class"], "CLIPTokenizer")
        self.assertEqual(tc["model_max_length"], 77)
        self.assertEqual({k: d["content"] for k, d in tc["added_tokens_decoder"].items()},
                         {str(bos): ref.BOS, str(eos): ref.EOS})
        st = self.read_json("argmax", "special_tokens_map.json")
        self.assertEqual(st["bos_token"]["content"], ref.BOS)
        self.assertEqual(st["pad_token"], ref.EOS)

    def test_weights_load_and_have_spread(self):
        n, header = safetensors_header(os.path.join(self.dirs["argmax"], "model.safetensors"))
        self.assertEqual(n % 8, 0)
        self.assertEqual(header["logit_scale"]["shape"], [])
        names = [k for k in header if k != "__metadata__"]
        self.assertEqual(names, sorted(names))
        self.assertIn("vision_model.pre_layrnorm.weight", names)
        for name in ("argmax", "first"):
            model = ref.Clip(self.dirs[name])  # raises on a missing/extra/misshapen tensor
            self.assertAlmostEqual(model.logit_scale_exp, 20.0, 4)
            tok = ref.ClipTokenizerRef(self.dirs[name])
            texts = ["a red car", "a blue dog on the grass", "two cats", "an empty room 42"]
            _, t_emb = model.text([tok.encode(t)[0] for t in texts])
            rs = np.random.RandomState(0)
            _, i_emb = model.image(rs.standard_normal((3, 3, 32, 32)).astype(np.float32))
            logits = i_emb @ t_emb.T * model.logit_scale.exp()
            self.assertGreater(float(logits.max() - logits.min()), 1.0, name)
            self.assertGreater(float(torch.cdist(t_emb, t_emb).triu(1).max()), 0.1, name)


if __name__ == "__main__":
    unittest.main()
