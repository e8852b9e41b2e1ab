#!/usr/bin/python3
"""Write a random-weight CLIP checkpoint folder laid out like the HF hub ones (CLIPModel).

Called by `tools/make_checkpoint.py --preset clip-tiny --out DIR` (or run directly). The folder
is meant to load as is in transformers v4.44.2's CLIPModel / CLIPTokenizer /
CLIPImageProcessor and in tools/reference_clip.py. It holds:

* config.json: what CLIPModel.save_pretrained writes (the diff against the class defaults:
  text_config / vision_config list only the values that differ from CLIPTextConfig /
  CLIPVisionConfig, plus model_type), with architectures ["CLIPModel"] and torch_dtype.
  clip-tiny: text 32 wide, 2 layers, 4 heads, MLP 64, 77 positions; vision 32 wide, 2 layers,
  4 heads, MLP 64, image 32, patch 8 (17 positions); projection 16; layer-norm eps 1e-5.
  --clip-eos-rule argmax (default): text_config bos_token_id 0, eos_token_id 2, pad 1 as in
  OpenAI's hub configs, so transformers pools the text at the argmax of the ids (the end token
  has the largest id). --clip-eos-rule first: bos/eos/pad = the ids of <|startoftext|> /
  <|endoftext|> / <|endoftext|>, so it pools at the first end token. --clip-hidden-act
  (default quick_gelu, the class default, then left out of config.json) sets both towers.
* model.safetensors (F32, one file; header entries and data sorted by name, padded with
  spaces to a multiple of 8): text_model.*, vision_model.* (pre_layrnorm, post_layernorm),
  visual_projection.weight, text_projection.weight and the 0-dim logit_scale, whose value
  ln(20) differs from logit_scale_init_value (2.6592) so a reader must use the tensor.
  Weights are drawn from numpy RandomState(seed) (float64 normals cast to float32) per
  parameter in CLIPModel.named_parameters() order: linear/conv N(0, 1/fan_in); token and
  class embeddings N(0, 1); position embeddings N(0, 0.25); norm weights 1 + N(0, 0.04);
  biases N(0, 0.01).
* vocab.json + merges.txt in OpenAI CLIP's format: the 256 byte symbols of GPT-2's
  bytes_to_unicode (in that map's order), the same 256 with "</w>", one symbol per merge,
  then <|startoftext|> and <|endoftext|> (the largest id). The merges (--clip-merges, default
  200) are learnt by a small deterministic BPE trainer over tools/data/tokenizer_corpus.txt,
  lower-cased and pre-tokenized like CLIP (letter runs, single digits, runs of other
  characters, 's 't 're 've 'm 'll 'd): each step merges the most frequent adjacent pair
  (ties: the smallest pair in string order) whose joined symbol is not in the vocabulary yet.
  merges.txt starts with "#version: 0.2".
* tokenizer_config.json, special_tokens_map.json (as CLIPTokenizer.save_pretrained writes
  them), preprocessor_config.json (CLIPImageProcessor: shortest_edge = crop = image size,
  bicubic, rescale 1/255, CLIP mean/std, convert to RGB).

Same arguments -> byte-identical files.

Usage: make_clip_checkpoint.py --preset clip-tiny --out DIR [--seed N]
           [--clip-eos-rule argmax|first] [--clip-hidden-act ACT] [--clip-merges N]
"""

import argparse
import json
import math
import os
import unicodedata

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "data", "tokenizer_corpus.txt")
TRANSFORMERS_VERSION = "4.44.2"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")

PRESETS = {
    "clip-tiny": dict(text_hidden=32, text_layers=2, text_heads=4, text_mlp=64, text_positions=77,
                      vision_hidden=32, vision_layers=2, vision_heads=4, vision_mlp=64,
                      image_size=32, patch_size=8, projection_dim=16, merges=200),
    # openai/clip-vit-base-patch32's shapes (151M parameters with its 49408-token vocabulary;
    # here the vocabulary is the small trained one), for flamingo-clip-bench.
    "clip-b32": dict(text_hidden=512, text_layers=12, text_heads=8, text_mlp=2048,
                     text_positions=77, vision_hidden=768, vision_layers=12, vision_heads=12,
                     vision_mlp=3072, image_size=224, patch_size=32, projection_dim=512,
                     merges=200),
}

# Class defaults of transformers v4.44.2 configuration_clip.py (what save_pretrained diffs).
TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                     projection_dim=512, num_hidden_layers=12, num_attention_heads=8,
                     max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                     pad_token_id=1, bos_token_id=49406, eos_token_id=49407)
VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, projection_dim=512,
                       num_hidden_layers=12, num_attention_heads=12, num_channels=3,
                       image_size=224, patch_size=32, hidden_act="quick_gelu",
                       layer_norm_eps=1e-5)


def json_text(obj, indent=2, sort_keys=True):
    """JSON as transformers writes it: indent 2, sorted keys, trailing newline."""
    return json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=False) + "\n"


def write_text(path, text):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


# ----------------------------------------------------------------------------- tokenizer


def bytes_to_unicode():
    """GPT-2's map: printable Latin-1 bytes stand for themselves, the others (in byte order)
    for U+0100, U+0101, ...; returned in the map's own order (printable bytes first)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def pretokens(text):
    """CLIP-like pre-tokens of corpus text (good enough for training; the exact rules are in
    tools/reference_clip.py): lower-case words, then contractions, letter runs, single
    digits and runs of other characters."""
    out = []
    for word in text.lower().split():
        i = 0
        while i < len(word):
            lit = next((c for c in CONTRACTIONS if word.startswith(c, i)), None)
            if lit:
                out.append(lit)
                i += len(lit)
                continue
            cat = unicodedata.category(word[i])[0]
            j = i + 1
            if cat != "N":
                while j < len(word) and (unicodedata.category(word[j])[0] == cat
                                         or (cat not in "LN"
                                             and unicodedata.category(word[j])[0] not in "LN")):
                    j += 1
            out.append(word[i:j])
            i = j
    return out


def train_bpe(text, n_merges, byte_map):
    """Deterministic BPE over the pre-tokens of `text`; returns [(first, second)]."""
    counts = {}
    for p in pretokens(text):
        counts[p] = counts.get(p, 0) + 1
    words = []
    for p, n in sorted(counts.items()):
        syms = [byte_map[b] for b in p.encode("utf-8")]
        syms[-1] += "</w>"
        words.append([syms, n])
    known = set(byte_map.values()) | {s + "</w>" for s in byte_map.values()}
    merges = []
    while len(merges) < n_merges:
        pairs = {}
        for syms, n in words:
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + n
        best = None
        for pair, n in pairs.items():
            if pair[0] + pair[1] in known:
                continue
            if best is None or n > best[1] or (n == best[1] and pair < best[0]):
                best = (pair, n)
        if best is None:
            raise SystemExit(f"make_clip_checkpoint: the corpus only yields {len(merges)} "
                             f"merges, {n_merges} asked")
        (a, b), _ = best
        merges.append((a, b))
        known.add(a + b)
        for w in words:
            syms, out, i = w[0], [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            w[0] = out
    return merges


def write_tokenizer(out, n_merges):
    """vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json; returns the
    vocab size and the ids of <|startoftext|> and <|endoftext|>."""
    byte_map = bytes_to_unicode()
    with open(CORPUS, encoding="utf-8") as f:
        merges = train_bpe(f.read(), n_merges, byte_map)
    symbols = list(byte_map.values())
    symbols += [s + "</w>" for s in symbols]
    symbols += [a + b for a, b in merges] + [BOS, EOS]
    vocab = {s: i for i, s in enumerate(symbols)}
    assert len(vocab) == len(symbols)
    bos, eos = vocab[BOS], vocab[EOS]
    # One line in id order, like OpenAI's hub vocab.json.
    write_text(os.path.join(out, "vocab.json"), json.dumps(vocab, ensure_ascii=False))
    write_text(os.path.join(out, "merges.txt"),
               "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))

    def added(content, normalized):
        return {"content": content, "lstrip": False, "normalized": normalized, "rstrip": False,
                "single_word": False}

    config = {"add_prefix_space": False,
              "added_tokens_decoder": {str(bos): dict(added(BOS, True), special=True),
                                       str(eos): dict(added(EOS, False), special=True)},
              "bos_token": BOS, "clean_up_tokenization_spaces": True, "do_lower_case": True,
              "eos_token": EOS, "errors": "replace", "model_max_length": 77, "pad_token": EOS,
              "tokenizer_class": "CLIPTokenizer", "unk_token": EOS}
    special = {"bos_token": added(BOS, True), "eos_token": added(EOS, False), "pad_token": EOS,
               "unk_token": added(EOS, False)}
    write_text(os.path.join(out, "tokenizer_config.json"), json_text(config))
    write_text(os.path.join(out, "special_tokens_map.json"), json_text(special))
    return len(vocab), bos, eos


# ----------------------------------------------------------------------------- weights


def param_specs(c, vocab_size):
    """(name, shape, init kind) of every CLIPModel parameter in named_parameters() order."""
    specs = [("logit_scale", (), "logit_scale")]

    def encoder(prefix, E, I, layers):
        s = []
        for i in range(layers):
            p = f"{prefix}encoder.layers.{i}."
            for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
                s += [(f"{p}self_attn.{proj}.weight", (E, E), "linear"),
                      (f"{p}self_attn.{proj}.bias", (E,), "bias")]
            s += [(p + "layer_norm1.weight", (E,), "norm"), (p + "layer_norm1.bias", (E,), "bias"),
                  (p + "mlp.fc1.weight", (I, E), "linear"), (p + "mlp.fc1.bias", (I,), "bias"),
                  (p + "mlp.fc2.weight", (E, I), "linear"), (p + "mlp.fc2.bias", (E,), "bias"),
                  (p + "layer_norm2.weight", (E,), "norm"), (p + "layer_norm2.bias", (E,), "bias")]
        return s

    T, V = c.text_hidden, c.vision_hidden
    t = "text_model."
    specs += [(t + "embeddings.token_embedding.weight", (vocab_size, T), "unit"),
              (t + "embeddings.position_embedding.weight", (c.text_positions, T), "pos")]
    specs += encoder(t, T, c.text_mlp, c.text_layers)
    specs += [(t + "final_layer_norm.weight", (T,), "norm"),
              (t + "final_layer_norm.bias", (T,), "bias")]
    v = "vision_model."
    n_pos = (c.image_size // c.patch_size) ** 2 + 1
    specs += [(v + "embeddings.class_embedding", (V,), "unit"),
              (v + "embeddings.patch_embedding.weight", (V, 3, c.patch_size, c.patch_size),
               "linear"),
              (v + "embeddings.position_embedding.weight", (n_pos, V), "pos"),
              (v + "pre_layrnorm.weight", (V,), "norm"), (v + "pre_layrnorm.bias", (V,), "bias")]
    specs += encoder(v, V, c.vision_mlp, c.vision_layers)
    specs += [(v + "post_layernorm.weight", (V,), "norm"),
              (v + "post_layernorm.bias", (V,), "bias"),
              ("visual_projection.weight", (c.projection_dim, V), "linear"),
              ("text_projection.weight", (c.projection_dim, T), "linear")]
    return specs


def draw(kind, shape, rs):
    if kind == "logit_scale":
        return np.array(math.log(20.0), dtype=np.float32)
    std = {"unit": 1.0, "pos": 0.5, "norm": 0.2, "bias": 0.1}.get(kind)
    if kind == "linear":
        std = math.sqrt(1.0 / int(np.prod(shape[1:])))
    x = rs.standard_normal(shape) * std
    if kind == "norm":
        x = 1.0 + x
    return np.asarray(x, dtype=np.float32)


def write_weights(out, c, vocab_size, seed):
    """model.safetensors (F32); returns the parameter count."""
    specs = param_specs(c, vocab_size)
    rs = np.random.RandomState(seed)
    arrays = {name: draw(kind, shape, rs) for name, shape, kind in specs}
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name in sorted(arrays):
        size = arrays[name].size * 4
        header[name] = {"dtype": "F32", "shape": list(arrays[name].shape),
                        "data_offsets": [off, off + size]}
        off += size
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(len(hb).to_bytes(8, "little") + hb)
        for name in sorted(arrays):
            f.write(np.ascontiguousarray(arrays[name]).astype("<f4", copy=False).tobytes())
    return sum(a.size for a in arrays.values())


# ----------------------------------------------------------------------------- configs


def model_config(c, vocab_size, bos, eos, rule, act):
    text = dict(vocab_size=vocab_size, hidden_size=c.text_hidden, intermediate_size=c.text_mlp,
                num_hidden_layers=c.text_layers, num_attention_heads=c.text_heads,
                max_position_embeddings=c.text_positions, hidden_act=act, layer_norm_eps=1e-5)
    if rule == "argmax":  # OpenAI's hub configs
        text.update(bos_token_id=0, eos_token_id=2, pad_token_id=1)
    else:
        text.update(bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
    text = {k: v for k, v in text.items() if TEXT_DEFAULTS[k] != v}
    text["model_type"] = "clip_text_model"
    vision = dict(hidden_size=c.vision_hidden, intermediate_size=c.vision_mlp,
                  num_hidden_layers=c.vision_layers, num_attention_heads=c.vision_heads,
                  num_channels=3, image_size=c.image_size, patch_size=c.patch_size,
                  hidden_act=act, layer_norm_eps=1e-5)
    vision = {k: v for k, v in vision.items() if VISION_DEFAULTS[k] != v}
    vision["model_type"] = "clip_vision_model"
    return {"architectures": ["CLIPModel"], "initializer_factor": 1.0,
            "logit_scale_init_value": 2.6592, "model_type": "clip",
            "projection_dim": c.projection_dim, "text_config": text, "torch_dtype": "float32",
            "transformers_version": TRANSFORMERS_VERSION, "vision_config": vision}


def preprocessor_config(c):
    return {"crop_size": {"height": c.image_size, "width": c.image_size},
            "do_center_crop": True, "do_convert_rgb": True, "do_normalize": True,
            "do_rescale": True, "do_resize": True, "image_mean": CLIP_MEAN,
            "image_processor_type": "CLIPImageProcessor", "image_std": CLIP_STD, "resample": 3,
            "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": c.image_size}}


# ----------------------------------------------------------------------------- main


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--out", required=True, help="output folder (created; files overwritten)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--clip-eos-rule", choices=["argmax", "first"], default="argmax",
                    help="text pooling transformers applies: argmax (eos_token_id 2, OpenAI's "
                         "configs) or first (eos_token_id = the id of <|endoftext|>)")
    ap.add_argument("--clip-hidden-act", default="quick_gelu",
                    choices=["quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh"])
    ap.add_argument("--clip-merges", type=int, help="BPE merges to learn (vocab = 514 + N)")
    a = ap.parse_args(argv)
    c = argparse.Namespace(**PRESETS[a.preset])
    if a.clip_merges is not None:
        if a.clip_merges < 1:
            ap.error("--clip-merges must be >= 1")
        c.merges = a.clip_merges
    return a, c


def main(argv=None):
    a, c = parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    vocab_size, bos, eos = write_tokenizer(a.out, c.merges)
    n_params = write_weights(a.out, c, vocab_size, a.seed)
    write_text(os.path.join(a.out, "config.json"),
               json_text(model_config(c, vocab_size, bos, eos, a.clip_eos_rule,
                                      a.clip_hidden_act)))
    write_text(os.path.join(a.out, "preprocessor_config.json"), json_text(preprocessor_config(c)))
    print(f"make_checkpoint: wrote {a.out} (CLIP, {n_params} parameters, vocab {vocab_size}, "
          f"{a.clip_eos_rule} eos rule, {a.clip_hidden_act})")


if __name__ == "__main__":
    main()
