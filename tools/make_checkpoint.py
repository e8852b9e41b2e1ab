#!/usr/bin/python3
"""Write a random-weight IDEFICS checkpoint folder laid out like the HF hub ones.

The folder loads in transformers v4.44.2 `IdeficsForVisionText2Text.from_pretrained` and in
tools/reference_idefics.py. It holds:

* config.json: what `save_pretrained` writes. Every top-level IdeficsConfig key is present;
  in vision_config / perceiver_config the values equal to the IdeficsVisionConfig /
  IdeficsPerceiverConfig class defaults are LEFT OUT (e.g. patch_size 14, hidden_act "gelu",
  layer_norm_eps 1e-5, num_channels 3; for `small` also embed_dim 768, image_size 224,
  resampler_n_latents 64, resampler_depth 6). --minimal-config also drops the top-level
  values equal to the IdeficsConfig defaults (qk_layer_norms false, cross_layer_interval 1...).
* model-0000k-of-0000N.safetensors + model.safetensors.index.json (or one model.safetensors
  with --shards 1). Tensors are split in HF state_dict order; inside a file the data is laid
  out by (dtype size descending, name), the header lists the tensors in that order, and it is
  padded with spaces to a multiple of 8, so every tensor is aligned. --dtype bfloat16 stores
  round-to-nearest-even bf16. --stray-buffer adds the I64 `model.vision_model.embeddings.
  position_ids` [1, num_positions] (0..n-1) to shard 1, as old hub checkpoints have it.
* tokenizer.model trained by Debian's `spm_train` (1 thread, deterministic) on
  tools/data/tokenizer_corpus.txt; for vocabularies the corpus cannot fill (small: exactly
  32000) a deterministic synthetic-word corpus is appended. spm_train takes ~20 s for 32000
  pieces, so trained models are cached under --tokenizer-cache, keyed by a hash of spm_train's
  version, its flags, the vocab size and the corpus. vocab_size in config.json is the
  tokenizer's piece count V; <fake_token_around_image> = V and <image> = V + 1.
* tokenizer_config.json (no "legacy" key, like old hub files), special_tokens_map.json,
  added_tokens.json, preprocessor_config.json, generation_config.json.

Weights are drawn per parameter in HF `named_parameters()` order, with the scales of the
golden set's README (so logits have real spread): linear/conv N(0, 1/fan_in); embeddings,
latents, class_embedding N(0, 1); vision position_embedding N(0, 0.25); lm_head and
additional_fc N(0, 9/hidden); norm weights 1 + N(0, 0.04); biases N(0, 0.01); alphas
+-U(0.4, 1.5) (never zero). Tensors of at most 2^16 elements come from one
numpy RandomState(seed) stream (legacy standard_normal in float64, cast to float32: with
`--preset golden --seed 7778` this reproduces the golden set's weights bit for bit); larger
tensors use their own numpy PCG64((seed, parameter index)) float32 stream, which is ~5x
faster. Same arguments -> byte-identical files.

Usage:
  make_checkpoint.py --preset tiny|small|golden --out DIR [--seed N] [--dtype float32|bfloat16]
      [--shards N] [--cross-layer-interval N] [--no-qk-layer-norms] [--vocab-rows R]
      [--no-qk-layer-norms-perceiver] [--stray-buffer] [--alpha-type float|vector]
      [--minimal-config] [--tokenizer-model FILE] [--tokenizer-cache DIR]
      [size overrides, see --help]

`--preset clip-tiny` (or `clip-b32`, ViT-B/32's shapes) writes a random CLIP checkpoint instead (CLIPModel, byte-level BPE vocab
trained on the corpus): see tools/make_clip_checkpoint.py for its files and flags (--seed,
--clip-eos-rule argmax|first, --clip-hidden-act, --clip-merges).

Presets: tiny (text 64 x 4 layers x 4 heads, cross_layer_interval 2, vocab 1000; vision 32 x 2
layers, image 28, patch 14; perceiver 8 latents, depth 2, 2 x 16), small (~444M params: text
1024 x 16 x 16, intermediate 2816, vocab 32000, interval 4; vision 768 x 12 x 12,
intermediate 3072, image 224; perceiver 64 latents, depth 6, 8 x 64), golden (the golden
set's shapes, vocab 400).
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "data", "tokenizer_corpus.txt")
LEGACY_MAX_ELEMS = 1 << 16
TRANSFORMERS_VERSION = "4.44.2"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

PRESETS = {
    "tiny": dict(vocab_size=1000, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                 intermediate_size=128, cross_layer_interval=2, rms_norm_eps=1e-6,
                 vision_embed_dim=32, vision_layers=2, vision_heads=2,
                 vision_intermediate_size=64, image_size=28, patch_size=14,
                 perceiver_latents=8, perceiver_depth=2, perceiver_heads=2,
                 perceiver_head_dim=16, shards=3,
                 vision_model_name="flamingo-serve-random-tiny"),
    "small": dict(vocab_size=32000, hidden_size=1024, num_hidden_layers=16,
                  num_attention_heads=16, intermediate_size=2816, cross_layer_interval=4,
                  rms_norm_eps=1e-6, vision_embed_dim=768, vision_layers=12, vision_heads=12,
                  vision_intermediate_size=3072, image_size=224, patch_size=14,
                  perceiver_latents=64, perceiver_depth=6, perceiver_heads=8,
                  perceiver_head_dim=64, shards=4,
                  vision_model_name="flamingo-serve-random-small"),
    # IDEFICS-9b's hub sizes (LLaMA-7B + ViT-H/14, ~8.93e9 parameters, ~17.9 GB in bfloat16):
    # for benchmarks only (minutes to write, streamed tensor by tensor), never for CI.
    "idefics-9b": dict(vocab_size=32000, hidden_size=4096, num_hidden_layers=32,
                       num_attention_heads=32, intermediate_size=11008, cross_layer_interval=4,
                       rms_norm_eps=1e-6, vision_embed_dim=1280, vision_layers=32,
                       vision_heads=16, vision_intermediate_size=5120, image_size=224,
                       patch_size=14, perceiver_latents=64, perceiver_depth=6,
                       perceiver_heads=16, perceiver_head_dim=96, shards=8,
                       vision_model_name="flamingo-serve-random-idefics-9b"),
    "golden": dict(vocab_size=400, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                   intermediate_size=96, cross_layer_interval=1, rms_norm_eps=1e-6,
                   vision_embed_dim=24, vision_layers=2, vision_heads=2,
                   vision_intermediate_size=48, image_size=42, patch_size=14,
                   perceiver_latents=16, perceiver_depth=2, perceiver_heads=2,
                   perceiver_head_dim=12, shards=3,
                   vision_model_name="tiny-random-clip-like-dev"),
}

# Class defaults of transformers v4.44.2 configuration_idefics.py.
VISION_DEFAULTS = dict(embed_dim=768, image_size=224, intermediate_size=5120, patch_size=14,
                       num_hidden_layers=32, num_attention_heads=16, num_channels=3,
                       hidden_act="gelu", layer_norm_eps=1e-5, attention_dropout=0.0,
                       initializer_range=0.02, initializer_factor=1.0)
PERCEIVER_DEFAULTS = dict(use_resampler=False, resampler_n_latents=64, resampler_depth=6,
                          resampler_n_heads=16, resampler_head_dim=96,
                          qk_layer_norms_perceiver=False)
TEXT_DEFAULTS = dict(vocab_size=32000, additional_vocab_size=0, hidden_size=4096,
                     intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                     dropout=0.0, hidden_act="silu", initializer_range=0.02,
                     alpha_initializer="zeros", alphas_initializer_range=0.0,
                     alpha_type="float", rms_norm_eps=1e-6, use_cache=True, pad_token_id=0,
                     bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
                     cross_layer_interval=1, qk_layer_norms=False, freeze_text_layers=True,
                     freeze_text_module_exceptions=[], freeze_lm_head=False,
                     freeze_vision_layers=True, freeze_vision_module_exceptions=[],
                     use_resampler=False)

SPM_FLAGS = ["--model_type=bpe", "--byte_fallback=true", "--split_digits=true",
             "--normalization_rule_name=identity", "--remove_extra_whitespaces=false",
             "--add_dummy_prefix=true", "--allow_whitespace_only_pieces=true",
             "--character_coverage=1.0", "--unk_id=0", "--bos_id=1", "--eos_id=2",
             "--pad_id=-1", "--num_threads=1", "--random_seed=1", "--minloglevel=2"]


def json_text(obj):
    """JSON as transformers writes it: indent 2, sorted keys, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------- parameters


def param_specs(c):
    """(name, shape, init kind) of every IdeficsForVisionText2Text parameter, in
    named_parameters() order (a module's own parameters before its children's)."""
    H, I, E = c.hidden_size, c.intermediate_size, c.vision_embed_dim
    ph, pd = c.perceiver_heads, c.perceiver_head_dim
    specs = [("model.embed_tokens.weight", (vocab_rows(c), H), "unit"),
             ("model.embed_tokens.additional_embedding.weight", (2, H), "unit")]
    v = "model.vision_model."
    n_pos = (c.image_size // c.patch_size) ** 2 + 1
    specs += [(v + "embeddings.class_embedding", (E,), "unit"),
              (v + "embeddings.patch_embedding.weight", (E, 3, c.patch_size, c.patch_size),
               "linear"),
              (v + "embeddings.position_embedding.weight", (n_pos, E), "pos"),
              (v + "pre_layrnorm.weight", (E,), "norm"), (v + "pre_layrnorm.bias", (E,), "bias")]
    for i in range(c.vision_layers):
        p = f"{v}encoder.layers.{i}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            specs += [(f"{p}self_attn.{proj}.weight", (E, E), "linear"),
                      (f"{p}self_attn.{proj}.bias", (E,), "bias")]
        specs += [(p + "layer_norm1.weight", (E,), "norm"), (p + "layer_norm1.bias", (E,), "bias"),
                  (p + "mlp.fc1.weight", (c.vision_intermediate_size, E), "linear"),
                  (p + "mlp.fc1.bias", (c.vision_intermediate_size,), "bias"),
                  (p + "mlp.fc2.weight", (E, c.vision_intermediate_size), "linear"),
                  (p + "mlp.fc2.bias", (E,), "bias"),
                  (p + "layer_norm2.weight", (E,), "norm"), (p + "layer_norm2.bias", (E,), "bias")]
    specs += [(v + "post_layernorm.weight", (E,), "norm"),
              (v + "post_layernorm.bias", (E,), "bias")]
    r = "model.perceiver_resampler."
    specs.append((r + "latents", (c.perceiver_latents, E), "unit"))
    for i in range(c.perceiver_depth):
        p = f"{r}blocks.{i}."
        for ln in ("context_layer_norm", "latents_layer_norm"):
            specs += [(f"{p}0.{ln}.weight", (E,), "norm"), (f"{p}0.{ln}.bias", (E,), "bias")]
        if c.qk_layer_norms_perceiver:
            for ln in ("q_layer_norm", "k_layer_norm"):
                specs += [(f"{p}0.{ln}.weight", (pd,), "norm"), (f"{p}0.{ln}.bias", (pd,), "bias")]
        for proj in ("q_proj", "k_proj", "v_proj"):
            specs.append((f"{p}0.{proj}.weight", (ph * pd, E), "linear"))
        specs += [(p + "0.output_proj.weight", (E, ph * pd), "linear"),
                  (p + "1.ln.weight", (E,), "norm"), (p + "1.ln.bias", (E,), "bias"),
                  (p + "1.fc.weight", (4 * E, E), "linear"),
                  (p + "1.c_proj.weight", (E, 4 * E), "linear")]
    specs += [(r + "layer_norm.weight", (E,), "norm"), (r + "layer_norm.bias", (E,), "bias")]

    def mlp(p):
        return [(p + "mlp.gate_proj.weight", (I, H), "linear"),
                (p + "mlp.down_proj.weight", (H, I), "linear"),
                (p + "mlp.up_proj.weight", (I, H), "linear"),
                (p + "input_layernorm.weight", (H,), "norm"),
                (p + "post_attention_layernorm.weight", (H,), "norm")]

    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        specs += [(f"{p}self_attn.{x}.weight", (H, H), "linear")
                  for x in ("q_proj", "k_proj", "v_proj", "o_proj")]
        specs += mlp(p)
    hd = H // c.num_attention_heads
    alpha_shape = (1,) if c.alpha_type == "float" else (1, 1, H)
    for i in range(c.num_hidden_layers // c.cross_layer_interval):
        p = f"model.gated_cross_attn_layers.{i}."
        specs += [(p + "alpha_cross_attn", alpha_shape, "alpha"),
                  (p + "alpha_dense", alpha_shape, "alpha"),
                  (p + "cross_attn.q_proj.weight", (H, H), "linear"),
                  (p + "cross_attn.k_proj.weight", (H, E), "linear"),
                  (p + "cross_attn.v_proj.weight", (H, E), "linear"),
                  (p + "cross_attn.o_proj.weight", (H, H), "linear")]
        if c.qk_layer_norms:
            specs += [(p + "cross_attn.q_layer_norm.weight", (hd,), "norm"),
                      (p + "cross_attn.k_layer_norm.weight", (hd,), "norm")]
        specs += mlp(p)
    specs += [("model.norm.weight", (H,), "norm"), ("lm_head.weight", (vocab_rows(c), H), "head"),
              ("lm_head.additional_fc.weight", (2, H), "head")]
    return specs


def draw(kind, shape, c, rs, index, seed):
    """One parameter as float32 (see the module docstring for the distributions)."""
    n = int(np.prod(shape))
    std = {"unit": 1.0, "pos": 0.5, "head": 3.0 / math.sqrt(c.hidden_size), "norm": 0.2,
           "bias": 0.1}.get(kind)
    if kind == "linear":
        std = math.sqrt(1.0 / int(np.prod(shape[1:])))
    if kind == "alpha":
        sign = rs.choice([-1.0, 1.0], size=shape)
        return (sign * rs.uniform(0.4, 1.5, size=shape)).astype(np.float32)
    if n <= LEGACY_MAX_ELEMS:
        x = rs.standard_normal(shape) * std
        if kind == "norm":
            x = 1.0 + x
        return x.astype(np.float32)
    g = np.random.Generator(np.random.PCG64([seed, index]))
    x = g.standard_normal(shape, dtype=np.float32)
    x *= np.float32(std)
    if kind == "norm":
        x += np.float32(1.0)
    return x


def to_bf16(x):
    """float32 -> bf16 bits (uint16), round to nearest even (finite inputs)."""
    b = x.view(np.uint32)
    r = b >> np.uint32(16)
    r &= np.uint32(1)
    r += np.uint32(0x7FFF)
    r += b
    r >>= np.uint32(16)
    return r.astype(np.uint16)


# ----------------------------------------------------------------------------- safetensors


def plan_files(specs, stray, n_shards, dtype_tag):
    """Split tensors into shard files; return [(filename, [(name, dtype, shape, begin, end)],
    header_bytes)] and total_size."""
    item = 2 if dtype_tag == "BF16" else 4
    sizes = [int(np.prod(s)) * item for _, s, _ in specs]
    total = sum(sizes)
    groups = [[] for _ in range(n_shards)]
    start = 0
    for (name, shape, _), size in zip(specs, sizes):
        k = min(n_shards - 1, int((start + size / 2) * n_shards // total))
        groups[k].append((name, dtype_tag, list(shape), size))
        start += size
    if any(not g for g in groups):
        sys.exit(f"make_checkpoint: --shards {n_shards} leaves a shard empty; use fewer shards")
    if stray is not None:
        groups[0].append(("model.vision_model.embeddings.position_ids", "I64", [1, stray],
                          8 * stray))
    files = []
    for k, g in enumerate(groups):
        g.sort(key=lambda t: (-{"I64": 8, "F32": 4, "BF16": 2}[t[1]], t[0]))
        entries, off = [], 0
        header = {"__metadata__": {"format": "pt"}}
        for name, dt, shape, size in g:
            entries.append((name, dt, shape, off, off + size))
            header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + size]}
            off += size
        hb = json.dumps(header, separators=(",", ":")).encode()
        hb += b" " * (-len(hb) % 8)
        fname = ("model.safetensors" if n_shards == 1
                 else f"model-{k + 1:05d}-of-{n_shards:05d}.safetensors")
        files.append((fname, entries, hb))
    total_size = sum(e[4] - e[3] for _, es, _ in files for e in es)
    return files, total_size


def write_weights(out, c, seed, dtype, n_shards, stray_buffer):
    specs = param_specs(c)
    tag = "BF16" if dtype == "bfloat16" else "F32"
    n_pos = (c.image_size // c.patch_size) ** 2 + 1
    files, total_size = plan_files(specs, n_pos if stray_buffer else None, n_shards, tag)
    where = {}
    handles = []
    for fname, entries, hb in files:
        f = open(os.path.join(out, fname), "wb")
        f.write(len(hb).to_bytes(8, "little") + hb)
        f.truncate(8 + len(hb) + (entries[-1][4] if entries else 0))
        handles.append(f)
        for name, _, _, begin, _ in entries:
            where[name] = (f, 8 + len(hb) + begin)
    rs = np.random.RandomState(seed)
    for index, (name, shape, kind) in enumerate(specs):
        x = draw(kind, shape, c, rs, index, seed)
        data = to_bf16(x) if tag == "BF16" else x
        f, pos = where[name]
        f.seek(pos)
        f.write(np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).data)
        del x, data
    if stray_buffer:
        f, pos = where["model.vision_model.embeddings.position_ids"]
        f.seek(pos)
        f.write(np.arange(n_pos, dtype="<i8").tobytes())
    for f in handles:
        f.close()
    if n_shards > 1:
        index = {"metadata": {"total_size": total_size},
                 "weight_map": {e[0]: fname for fname, es, _ in files for e in es}}
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            f.write(json_text(index))
    return sum(int(np.prod(s)) for _, s, _ in specs)


# ----------------------------------------------------------------------------- tokenizer


def synthetic_words(n_words):
    """Deterministic pseudo-English words (3-5 syllables), 10 per line."""
    r = np.random.RandomState(20240601)
    ons = ("b c d f g h j k l m n p r s t v w z bl br ch cl cr dr fl fr gl gr pl pr sc sh sk "
           "sl sm sn sp st sw th tr wh").split()
    nuc = "a e i o u ai ea ee oo ou ie oa".split()
    cod = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck", "rt", "x"]
    ns = r.randint(3, 6, size=n_words)
    o, u, k = (r.randint(0, len(t), size=(n_words, 5)) for t in (ons, nuc, cod))
    words = ["".join(ons[o[i, j]] + nuc[u[i, j]] + cod[k[i, j]] for j in range(ns[i]))
             for i in range(n_words)]
    return "".join(" ".join(words[i:i + 10]) + "\n" for i in range(0, n_words, 10))


def corpus_text(vocab_size):
    with open(CORPUS, encoding="utf-8") as f:
        text = f.read()
    if vocab_size > 1500:  # the hand-written corpus fills ~1500 pieces; pad with real merges
        text += synthetic_words(12000 * vocab_size // 32000 + 2000)
    return text


def tokenizer_cache_path(cache_dir, vocab_size, text):
    """Cache file named by a hash of spm_train's version, flags, vocab size and corpus."""
    version = subprocess.run(["spm_train", "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\n".join([version.strip(), *SPM_FLAGS, str(vocab_size), text])
                         .encode()).hexdigest()[:32]
    return os.path.join(cache_dir, f"spm-bpe-{vocab_size}-{key}.model")


def start_tokenizer(vocab_size, text, workdir):
    """Start spm_train in the background; returns (process, model path)."""
    with open(os.path.join(workdir, "corpus.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    # relative names: the model file records its trainer flags, so paths must not vary
    cmd = ["spm_train", "--input=corpus.txt", "--model_prefix=spm",
           f"--vocab_size={vocab_size}"] + SPM_FLAGS
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, os.path.join(workdir, "spm.model")


def count_pieces(model_path):
    """Number of pieces in a sentencepiece ModelProto (field 1, repeated)."""
    data = open(model_path, "rb").read()
    pos, n = 0, 0

    def varint(p):
        v, s = 0, 0
        while True:
            b = data[p]
            v |= (b & 0x7F) << s
            p, s = p + 1, s + 7
            if b < 0x80:
                return v, p

    while pos < len(data):
        key, pos = varint(pos)
        wire = key & 7
        if wire == 0:
            _, pos = varint(pos)
        elif wire == 2:
            ln, pos = varint(pos)
            pos += ln
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise ValueError(f"{model_path}: unexpected protobuf wire type {wire}")
        n += (key >> 3) == 1
    return n


def write_tokenizer_files(out, vocab):
    fake, img = "<fake_token_around_image>", "<image>"

    def tok(content):
        return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False}

    decoder = {str(i): dict(tok(t), special=True)
               for i, t in [(0, "<unk>"), (1, "<s>"), (2, "</s>"), (vocab, fake), (vocab + 1, img)]}
    config = {"add_bos_token": True, "add_eos_token": False, "add_prefix_space": True,
              "added_tokens_decoder": decoder, "additional_special_tokens": [fake, img],
              "bos_token": "<s>", "clean_up_tokenization_spaces": False, "eos_token": "</s>",
              "model_max_length": 1000000000000000019884624838656, "pad_token": "<unk>",
              "padding_side": "left", "sp_model_kwargs": {}, "spaces_between_special_tokens": False,
              "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>",
              "use_default_system_prompt": False}
    special = {"additional_special_tokens": [fake, img], "bos_token": tok("<s>"),
               "eos_token": tok("</s>"), "pad_token": tok("<unk>"), "unk_token": tok("<unk>")}
    files = {"tokenizer_config.json": config, "special_tokens_map.json": special,
             "added_tokens.json": {fake: vocab, img: vocab + 1}}
    for name, obj in files.items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.write(json_text(obj))


# ----------------------------------------------------------------------------- config


def vocab_rows(c):
    """Rows of the embedding and lm_head (config vocab_size): the tokenizer's piece count unless
    --vocab-rows sets another (a padded vocabulary, or a tokenizer that does not fit)."""
    return c.vocab_rows or c.vocab_size


def model_config(c, dtype, minimal):
    vision = dict(embed_dim=c.vision_embed_dim, image_size=c.image_size,
                  intermediate_size=c.vision_intermediate_size, patch_size=c.patch_size,
                  num_hidden_layers=c.vision_layers, num_attention_heads=c.vision_heads,
                  num_channels=3, hidden_act="gelu", layer_norm_eps=1e-5)
    vision = {k: v for k, v in vision.items() if VISION_DEFAULTS[k] != v}
    vision.update(model_type="idefics", vision_model_name=c.vision_model_name)
    perceiver = dict(use_resampler=True, resampler_n_latents=c.perceiver_latents,
                     resampler_depth=c.perceiver_depth, resampler_n_heads=c.perceiver_heads,
                     resampler_head_dim=c.perceiver_head_dim,
                     qk_layer_norms_perceiver=c.qk_layer_norms_perceiver)
    perceiver = {k: v for k, v in perceiver.items() if PERCEIVER_DEFAULTS[k] != v}
    perceiver["model_type"] = "idefics"
    text = dict(vocab_size=vocab_rows(c), additional_vocab_size=2, hidden_size=c.hidden_size,
                intermediate_size=c.intermediate_size, num_hidden_layers=c.num_hidden_layers,
                num_attention_heads=c.num_attention_heads, dropout=0.0, hidden_act="silu",
                initializer_range=0.02, alpha_initializer="zeros", alphas_initializer_range=0.0,
                alpha_type=c.alpha_type, rms_norm_eps=c.rms_norm_eps, use_cache=True,
                pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
                cross_layer_interval=c.cross_layer_interval, qk_layer_norms=c.qk_layer_norms,
                freeze_text_layers=True, freeze_text_module_exceptions=[], freeze_lm_head=True,
                freeze_vision_layers=True, freeze_vision_module_exceptions=[],
                use_resampler=True)
    if minimal:
        text = {k: v for k, v in text.items() if TEXT_DEFAULTS[k] != v}
    text.update(architectures=["IdeficsForVisionText2Text"],
                cross_layer_activation_function="swiglu", max_position_embeddings=2048,
                model_type="idefics", perceiver_config=perceiver, torch_dtype=dtype,
                transformers_version=TRANSFORMERS_VERSION, vision_config=vision,
                word_embed_proj_dim=c.hidden_size)
    return text


def write_configs(out, c, dtype, minimal):
    files = {
        "config.json": model_config(c, dtype, minimal),
        "generation_config.json": {"_from_model_config": True, "bos_token_id": 1,
                                   "eos_token_id": 2, "pad_token_id": 0,
                                   "transformers_version": TRANSFORMERS_VERSION},
        "preprocessor_config.json": {"image_mean": CLIP_MEAN, "image_num_channels": 3,
                                     "image_processor_type": "IdeficsImageProcessor",
                                     "image_size": c.image_size, "image_std": CLIP_STD},
    }
    for name, obj in files.items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.write(json_text(obj))


# ----------------------------------------------------------------------------- main


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS) + ["clip-tiny", "clip-b32"], required=True,
                    help="clip-tiny, clip-b32 (ViT-B/32 shapes): a CLIP checkpoint "
                    "(tools/make_clip_checkpoint.py)")
    ap.add_argument("--out", required=True, help="output folder (created; files overwritten)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--shards", type=int, help="number of safetensors files (1: model.safetensors)")
    ap.add_argument("--cross-layer-interval", type=int)
    ap.add_argument("--no-qk-layer-norms", dest="qk_layer_norms", action="store_false")
    ap.add_argument("--no-qk-layer-norms-perceiver", dest="qk_layer_norms_perceiver",
                    action="store_false")
    ap.add_argument("--stray-buffer", action="store_true",
                    help="add the I64 vision position_ids buffer to shard 1")
    ap.add_argument("--alpha-type", choices=["float", "vector"], default="float")
    ap.add_argument("--minimal-config", action="store_true",
                    help="also omit top-level config values equal to IdeficsConfig defaults")
    ap.add_argument("--tokenizer-model", help="copy this sentencepiece model instead of training")
    ap.add_argument("--tokenizer-cache", default=os.path.join(
        os.path.expanduser("~"), ".cache", "flamingo-serve", "spm"),
        help="folder caching trained tokenizers by input hash ('' disables); default %(default)s")
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "vision_embed_dim", "vision_layers", "vision_heads",
                "vision_intermediate_size", "image_size", "patch_size", "perceiver_latents",
                "perceiver_depth", "perceiver_heads", "perceiver_head_dim"):
        ap.add_argument("--" + key.replace("_", "-"), type=int)
    ap.add_argument("--rms-norm-eps", type=float)
    ap.add_argument("--vocab-rows", type=int,
                    help="embedding/lm_head rows (config vocab_size) other than the tokenizer's "
                         "piece count: more pads the vocabulary (rows without a token), fewer "
                         "makes a checkpoint whose tokenizer does not fit (tests)")
    a = ap.parse_args(argv)
    c = argparse.Namespace(**PRESETS[a.preset])
    for k in list(vars(c)) + ["cross_layer_interval"]:
        if getattr(a, k, None) is not None:
            setattr(c, k, getattr(a, k))
    c.qk_layer_norms, c.qk_layer_norms_perceiver = a.qk_layer_norms, a.qk_layer_norms_perceiver
    c.alpha_type = a.alpha_type
    c.vocab_rows = a.vocab_rows
    checks = [(c.hidden_size % c.num_attention_heads == 0, "hidden_size % num_attention_heads"),
              (c.vision_embed_dim % c.vision_heads == 0, "vision_embed_dim % vision_heads"),
              (c.num_hidden_layers % c.cross_layer_interval == 0,
               "num_hidden_layers % cross_layer_interval (HF indexes past the last gated layer)"),
              (c.image_size % c.patch_size == 0, "image_size % patch_size"),
              (c.shards >= 1, "shards >= 1")]
    for ok, what in checks:
        if not ok:
            ap.error(f"{what} must be 0 / hold")
    return a, c


def main(argv=None):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset")
    if pre.parse_known_args(argv)[0].preset in ("clip-tiny", "clip-b32"):
        if HERE not in sys.path:
            sys.path.insert(0, HERE)
        import make_clip_checkpoint
        return make_clip_checkpoint.main(argv)
    a, c = parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    for f in os.listdir(a.out):
        if f.endswith(".safetensors") or f == "model.safetensors.index.json":
            os.remove(os.path.join(a.out, f))
    with tempfile.TemporaryDirectory(prefix="spm_") as work:
        proc, cache = None, None
        if a.tokenizer_model:
            model_path = a.tokenizer_model
            c.vocab_size = count_pieces(model_path)
        else:
            text = corpus_text(c.vocab_size)
            if a.tokenizer_cache:
                cache = tokenizer_cache_path(a.tokenizer_cache, c.vocab_size, text)
            if cache and os.path.exists(cache):
                model_path = cache
            else:
                proc, model_path = start_tokenizer(c.vocab_size, text, work)
        n_params = write_weights(a.out, c, a.seed, a.dtype, c.shards, a.stray_buffer)
        if proc is not None:
            log = proc.communicate()[0].decode(errors="replace")
            if proc.returncode != 0:
                sys.exit(f"make_checkpoint: spm_train failed (rc {proc.returncode}):\n{log}")
            if cache:
                os.makedirs(os.path.dirname(cache), exist_ok=True)
                shutil.copyfile(model_path, cache + ".tmp")
                os.replace(cache + ".tmp", cache)
        pieces = count_pieces(model_path)
        if pieces != c.vocab_size:
            sys.exit(f"make_checkpoint: tokenizer has {pieces} pieces, model vocab_size is "
                     f"{c.vocab_size}")
        shutil.copyfile(model_path, os.path.join(a.out, "tokenizer.model"))
    write_tokenizer_files(a.out, c.vocab_size)
    write_configs(a.out, c, a.dtype, a.minimal_config)
    print(f"make_checkpoint: wrote {a.out} ({n_params} parameters, {c.shards} shard(s), "
          f"{a.dtype}, vocab {c.vocab_size} pieces, {vocab_rows(c)}+2 rows)")


if __name__ == "__main__":
    main()
