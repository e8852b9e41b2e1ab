#!/usr/bin/python3
"""Independent reference of CLIP (transformers v4.44.2 CLIPModel / slow CLIPTokenizer without
ftfy / CLIPImageProcessor semantics) in torch 1.13, numpy and (for image files) Pillow.

Written from the semantics pinned in tests/golden/clip-tiny/README.md; it imports neither
transformers, safetensors nor the `regex` module. Validated against that golden set by
tests/model/test_reference_clip.py. It covers:

* tokenizer: the exact strings <|startoftext|> / <|endoftext|> are split out first (their ids);
  every other piece gets BERT's BasicTokenizer cleanup (drop U+0000, U+FFFD and category C*
  except \\t \\n \\r; \\t \\n \\r and Zs -> ' '; spaces around CJK ideographs; NFC; str.split();
  str.lower(); accents kept, no punctuation split), then CLIP's pre-tokenizer regex
  `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+`
  (IGNORECASE) re-implemented with unicodedata (alternatives tried in order at each position,
  a position no alternative matches is skipped), GPT-2 bytes-to-unicode and BPE with "</w>" on
  the last symbol (lowest merge rank first, all its occurrences left to right); a symbol not
  in vocab.json is the unknown token. Ids: <|startoftext|> + ids[:ctx - 2] + <|endoftext|>.
* preprocessing (image files, Pillow): convert("RGB") when the mode is not RGB (alpha
  dropped), resize the shortest edge to size.shortest_edge (the other int(s * long / short))
  with Pillow's bicubic on uint8, center crop (top = (h - crop) // 2), rescale in float64 then
  float32, normalize (x - mean) / std in float32, CHW.
* text tower: token + position embeddings, pre-LN encoder layers with a causal mask
  (q scaled by head_dim^-0.5 before q kᵀ, softmax in the working dtype), the config's
  hidden_act, final layer norm; pooled at argmax(ids) when eos_token_id == 2, else at the
  first position holding eos_token_id.
* vision tower: conv patch embedding (no bias), class token, position embeddings,
  pre_layrnorm, encoder (no mask), post_layernorm of the class token.
* text_projection / visual_projection (no bias), L2 normalization,
  logits_per_image = exp(logit_scale) * image_embeds @ text_embedsᵀ.

Every tensor of model.safetensors must be consumed with the expected shape (logit_scale: 0-dim
as CLIPModel saves it, or [1], which torch's load_state_dict also accepts).

Python API: `ClipTokenizerRef(dir).encode(text)` -> (ids, tokens, truncated);
`preprocess(path, preprocessor_config, image_size)` -> float32 [3, S, S];
`Clip(dir, dtype)`: .text(ids_list) -> (pooled, embeds) one text at a time;
.image(pixels [N,3,S,S]) -> (pooled, embeds); .logit_scale_exp.

CLI:
  reference_clip.py --model DIR [--texts-json FILE] [--pixels-npy FILE] [--images F ...]
      [--pixels-out FILE.npy] --out FILE.json [--float64]
  --texts-json: a JSON list of strings. Images are the --pixels-npy rows ([N,3,S,S] float32)
  followed by the --images files (preprocessed; --pixels-out saves their pixel values).
  The output JSON holds text_pooling, logit_scale_exp, texts[] (text, input_ids, tokens,
  truncated, pooled, text_embeds), images[] (source, pooled, image_embeds) and
  logits_per_image [images x texts].
"""

import argparse
import json
import os
import sys
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from reference_idefics import activation, read_safetensors  # noqa: E402  (shared parts)

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# CLIPTextConfig / CLIPVisionConfig / CLIPConfig class defaults (v4.44.2).
TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                     num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77,
                     hidden_act="quick_gelu", layer_norm_eps=1e-5, pad_token_id=1,
                     bos_token_id=49406, eos_token_id=49407)
VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, num_channels=3, image_size=224, patch_size=32,
                       hidden_act="quick_gelu", layer_norm_eps=1e-5)
TOP_DEFAULTS = dict(projection_dim=512, logit_scale_init_value=2.6592)
MAX_MERGES = 49152 - 256 - 2  # transformers reads merges.txt lines [1, MAX_MERGES + 1)


# ----------------------------------------------------------------------------- tokenizer


def byte_encoder():
    """GPT-2's bytes_to_unicode as a 256-entry list indexed by byte."""
    printable = (set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1))
                 | set(range(ord("®"), ord("ÿ") + 1)))
    out, n = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + n))
            n += 1
    return out


def is_cjk(cp):
    """BERT's _is_chinese_char."""
    return any(lo <= cp <= hi for lo, hi in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def basic_clean(text):
    """BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize, joined by ' ',
    then lower-cased (CLIPTokenizer._tokenize without ftfy)."""
    out = []
    for ch in text:
        cp = ord(ch)
        if ch in "\t\n\r" or unicodedata.category(ch) == "Zs" or ch == " ":
            out.append(" ")
        elif cp == 0 or cp == 0xFFFD or unicodedata.category(ch).startswith("C"):
            continue
        elif is_cjk(cp):
            out.append(" " + ch + " ")
        else:
            out.append(ch)
    words = unicodedata.normalize("NFC", "".join(out)).split()
    return " ".join(w.lower() for w in words).lower()


def char_class(ch):
    """What one (lower-cased) character is to the pre-tokenizer regex under IGNORECASE:
    'L' ([\\p{L}]), 'N' ([\\p{N}]), 'O' ([^\\s\\p{L}\\p{N}]) or None (matches none: whitespace, and
    U+0345, a mark whose case fold is a Greek letter, so the negated class rejects it too)."""
    if ch == "\u0345":
        return None
    if ch.isspace():
        return None
    cat = unicodedata.category(ch)[0]
    return cat if cat in "LN" else "O"


LITERALS = (BOS, EOS, "'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def literal_at(text, pos, lit):
    """Case-insensitive literal match on already lower-cased text: besides the literal's own
    characters only U+017F (long s, simple case fold 's') matches one of them."""
    if len(text) - pos < len(lit):
        return False
    return all(c == l or (l == "s" and c == "\u017f") for c, l in zip(text[pos:], lit))


def pretokenize(text):
    """re.findall of CLIP's pattern over the cleaned text."""
    out, pos = [], 0
    while pos < len(text):
        lit = next((l for l in LITERALS if literal_at(text, pos, l)), None)
        if lit is not None:
            out.append(text[pos:pos + len(lit)])
            pos += len(lit)
            continue
        cls = char_class(text[pos])
        if cls is None:
            pos += 1
            continue
        end = pos + 1
        if cls != "N":
            while end < len(text) and char_class(text[end]) == cls:
                end += 1
        out.append(text[pos:end])
        pos = end
    return out


class ClipTokenizerRef:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "vocab.json"), encoding="utf-8") as f:
            self.vocab = json.load(f)
        with open(os.path.join(model_dir, "merges.txt"), encoding="utf-8") as f:
            lines = f.read().strip().split("\n")[1:MAX_MERGES + 1]
        self.ranks = {tuple(line.split()): i for i, line in enumerate(lines)}
        self.bytes = byte_encoder()
        specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
        path = os.path.join(model_dir, "tokenizer_config.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                cfg = json.load(f)
            for k in specials:
                v = cfg.get(k, specials[k])
                specials[k] = v["content"] if isinstance(v, dict) else v
        for k, v in specials.items():
            if v not in self.vocab:
                raise ValueError(f"{model_dir}: special token {k} {v!r} is not in vocab.json")
        self.bos, self.eos = self.vocab[specials["bos_token"]], self.vocab[specials["eos_token"]]
        self.unk = self.vocab[specials["unk_token"]]
        self.specials = sorted({specials["bos_token"], specials["eos_token"], BOS, EOS},
                               key=len, reverse=True)

    def bpe(self, token):
        if token in (BOS, EOS):  # CLIPTokenizer's bpe cache
            return [token]
        word = [self.bytes[b] for b in token.encode("utf-8")]
        word[-1] += "</w>"
        while len(word) > 1:
            ranked = [(self.ranks[p], i) for i, p in enumerate(zip(word, word[1:]))
                      if p in self.ranks]
            if not ranked:
                break
            first, second = word[min(ranked)[1]], word[min(ranked)[1] + 1]
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def tokens(self, text):
        """tokenize(): special strings split out (leftmost, longest), the rest through
        basic_clean, the regex and BPE."""
        out, start, pos = [], 0, 0

        def piece(s):
            for p in pretokenize(basic_clean(s)):
                out.extend(self.bpe(p))

        while pos < len(text):
            hit = next((s for s in self.specials if text.startswith(s, pos)), None)
            if hit is None:
                pos += 1
                continue
            piece(text[start:pos])
            out.append(hit)
            pos += len(hit)
            start = pos
        piece(text[start:])
        return out

    def encode(self, text, context_length=77):
        toks = self.tokens(text)
        ids = [self.vocab.get(t, self.unk) for t in toks[:context_length - 2]]
        return [self.bos] + ids + [self.eos], toks, len(toks) > context_length - 2


# ----------------------------------------------------------------------------- images


def read_preprocessor_config(model_dir):
    with open(os.path.join(model_dir, "preprocessor_config.json")) as f:
        return json.load(f)


def preprocess(path, cfg):
    """CLIPImageProcessor.preprocess of one image file -> float32 [3, crop_h, crop_w]."""
    from PIL import Image
    for key, want in (("resample", 3), ("do_resize", True), ("do_center_crop", True),
                      ("do_rescale", True), ("do_normalize", True), ("do_convert_rgb", True)):
        if cfg.get(key, want) != want:
            raise ValueError(f"preprocessor_config.json: {key} must be {want!r}")
    size, crop = cfg["size"], cfg["crop_size"]
    short_target = size["shortest_edge"] if isinstance(size, dict) else size
    ch, cw = (crop["height"], crop["width"]) if isinstance(crop, dict) else (crop, crop)
    img = Image.open(path)
    if img.mode != "RGB":
        img = img.convert("RGB")
    img.load()
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(short_target * long / short)
    nw, nh = (short_target, new_long) if w <= h else (new_long, short_target)
    img = img.resize((nw, nh), resample=Image.BICUBIC, reducing_gap=None)
    a = np.asarray(img, dtype=np.uint8)
    top, left = (nh - ch) // 2, (nw - cw) // 2
    if top < 0 or left < 0:
        raise ValueError(f"{path}: resized image {nw}x{nh} is smaller than the crop")
    a = a[top:top + ch, left:left + cw]
    x = (a.astype(np.float64) * cfg.get("rescale_factor", 1 / 255)).astype(np.float32)
    mean = np.array(cfg["image_mean"], dtype=np.float32)
    std = np.array(cfg["image_std"], dtype=np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


# ----------------------------------------------------------------------------- model


def read_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        raw = json.load(f)
    if raw.get("model_type") != "clip":
        raise ValueError(f"{model_dir}/config.json: model_type must be 'clip'")
    c = {k: raw.get(k, v) for k, v in TOP_DEFAULTS.items()}
    c["text"] = dict(TEXT_DEFAULTS, **{k: v for k, v in (raw.get("text_config") or {}).items()
                                       if k in TEXT_DEFAULTS})
    c["vision"] = dict(VISION_DEFAULTS, **{k: v for k, v in
                                           (raw.get("vision_config") or {}).items()
                                           if k in VISION_DEFAULTS})
    return c


class Clip:
    def __init__(self, model_dir, dtype=torch.float32):
        self.dir, self.dtype = model_dir, dtype
        self.cfg = read_config(model_dir)
        self._raw = read_safetensors(os.path.join(model_dir, "model.safetensors"))
        t, v, P = self.cfg["text"], self.cfg["vision"], self.cfg["projection_dim"]
        T, E = t["hidden_size"], v["hidden_size"]
        w = self._w
        self.logit_scale = w("logit_scale", ())
        self.logit_scale_exp = float(self.logit_scale.exp())  # in the working dtype
        self.tok_emb = w("text_model.embeddings.token_embedding.weight", (t["vocab_size"], T))
        self.text_pos = w("text_model.embeddings.position_embedding.weight",
                          (t["max_position_embeddings"], T))
        self.text_layers = self._encoder("text_model.", T, t)
        self.final_ln = self._ln("text_model.final_layer_norm", T)
        ps, nc = v["patch_size"], v["num_channels"]
        n_pos = (v["image_size"] // ps) ** 2 + 1
        self.cls = w("vision_model.embeddings.class_embedding", (E,))
        self.patch = w("vision_model.embeddings.patch_embedding.weight", (E, nc, ps, ps))
        self.vis_pos = w("vision_model.embeddings.position_embedding.weight", (n_pos, E))
        self.pre_ln = self._ln("vision_model.pre_layrnorm", E)
        self.vis_layers = self._encoder("vision_model.", E, v)
        self.post_ln = self._ln("vision_model.post_layernorm", E)
        self.visual_projection = w("visual_projection.weight", (P, E))
        self.text_projection = w("text_projection.weight", (P, T))
        if self._raw:
            raise ValueError(f"{model_dir}: {len(self._raw)} unexpected tensors, e.g. "
                             f"{min(self._raw)}")
        del self._raw

    def _w(self, name, shape):
        if name not in self._raw:
            raise ValueError(f"{self.dir}: missing tensor {name} (expected shape {list(shape)})")
        arr = self._raw.pop(name)
        if shape == () and arr.shape == (1,):  # torch loads a [1] tensor into a 0-dim one
            arr = arr.reshape(())
        if tuple(arr.shape) != tuple(shape) or arr.dtype != np.float32:
            raise ValueError(f"{self.dir}: tensor {name} is {arr.dtype} {list(arr.shape)}, "
                             f"expected float32 {list(shape)}")
        return torch.from_numpy(np.array(arr)).to(self.dtype)

    def _ln(self, prefix, n):
        return self._w(prefix + ".weight", (n,)), self._w(prefix + ".bias", (n,))

    def _encoder(self, prefix, E, c):
        I = c["intermediate_size"]
        layers = []
        for i in range(c["num_hidden_layers"]):
            p = f"{prefix}encoder.layers.{i}."
            d = {n: (self._w(f"{p}self_attn.{n}.weight", (E, E)),
                     self._w(f"{p}self_attn.{n}.bias", (E,)))
                 for n in ("k_proj", "v_proj", "q_proj", "out_proj")}
            d["ln1"], d["ln2"] = self._ln(p + "layer_norm1", E), self._ln(p + "layer_norm2", E)
            d["fc1"] = (self._w(p + "mlp.fc1.weight", (I, E)), self._w(p + "mlp.fc1.bias", (I,)))
            d["fc2"] = (self._w(p + "mlp.fc2.weight", (E, I)), self._w(p + "mlp.fc2.bias", (E,)))
            layers.append(d)
        return layers

    @staticmethod
    def _encode(x, layers, c, mask):
        """CLIPEncoder over x [B, L, E]; mask additive [L, L] or None."""
        heads, eps, act = c["num_attention_heads"], c["layer_norm_eps"], activation(c["hidden_act"])
        B, L, E = x.shape
        hd = E // heads

        def split(y):
            return y.view(B, L, heads, hd).transpose(1, 2)

        for d in layers:
            h = F.layer_norm(x, (E,), *d["ln1"], eps)
            q = split(F.linear(h, *d["q_proj"]) * hd ** -0.5)
            k, v = split(F.linear(h, *d["k_proj"])), split(F.linear(h, *d["v_proj"]))
            s = q @ k.transpose(-1, -2)
            if mask is not None:
                s = s + mask
            a = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, L, E)
            x = x + F.linear(a, *d["out_proj"])
            h = F.layer_norm(x, (E,), *d["ln2"], eps)
            x = x + F.linear(act(F.linear(h, *d["fc1"])), *d["fc2"])
        return x

    def text(self, ids_list):
        """Each text alone -> (pooled [N, T], normalized embeds [N, P])."""
        t = self.cfg["text"]
        pooled = []
        for ids in ids_list:
            ids = torch.tensor(ids, dtype=torch.long)
            L = ids.numel()
            if L > t["max_position_embeddings"] or int(ids.max()) >= t["vocab_size"]:
                raise ValueError(f"ids out of range for the text tower: {ids.tolist()}")
            x = (self.tok_emb[ids] + self.text_pos[:L]).unsqueeze(0)
            mask = torch.full((L, L), torch.finfo(self.dtype).min, dtype=self.dtype).triu(1)
            x = self._encode(x, self.text_layers, t, mask)
            x = F.layer_norm(x, (x.shape[-1],), *self.final_ln, t["layer_norm_eps"])[0]
            if t["eos_token_id"] == 2:
                at = int(ids.argmax())
            else:
                hits = (ids == t["eos_token_id"]).nonzero()
                if hits.numel() == 0:
                    raise ValueError(f"no eos_token_id {t['eos_token_id']} in {ids.tolist()}")
                at = int(hits[0])
            pooled.append(x[at])
        pooled = torch.stack(pooled)
        e = F.linear(pooled, self.text_projection)
        return pooled, e / e.norm(p=2, dim=-1, keepdim=True)

    def image(self, pixels):
        """pixels [N, C, S, S] -> (pooled [N, E], normalized embeds [N, P])."""
        v = self.cfg["vision"]
        x = torch.as_tensor(pixels).to(self.dtype)
        n = x.shape[0]
        x = F.conv2d(x, self.patch, stride=v["patch_size"]).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(n, 1, -1), x], dim=1) + self.vis_pos
        x = F.layer_norm(x, (x.shape[-1],), *self.pre_ln, v["layer_norm_eps"])
        x = self._encode(x, self.vis_layers, v, None)
        pooled = F.layer_norm(x[:, 0], (x.shape[-1],), *self.post_ln, v["layer_norm_eps"])
        e = F.linear(pooled, self.visual_projection)
        return pooled, e / e.norm(p=2, dim=-1, keepdim=True)


# ----------------------------------------------------------------------------- CLI


def run(model_dir, texts, pixels, dtype=torch.float32, sources=None):
    """Reference outputs as a JSON-able dict (see the module docstring)."""
    tok, model = ClipTokenizerRef(model_dir), Clip(model_dir, dtype)
    out = {"text_pooling": ("argmax" if model.cfg["text"]["eos_token_id"] == 2 else
                            f"first eos_token_id {model.cfg['text']['eos_token_id']}"),
           "logit_scale_exp": model.logit_scale_exp, "texts": [], "images": []}
    t_emb = i_emb = None
    if texts:
        enc = [tok.encode(t) for t in texts]
        pooled, t_emb = model.text([e[0] for e in enc])
        for t, (ids, toks, trunc), p, e in zip(texts, enc, pooled, t_emb):
            out["texts"].append({"text": t, "input_ids": ids, "tokens": toks, "truncated": trunc,
                                 "pooled": p.double().tolist(), "text_embeds": e.double().tolist()})
    if pixels is not None and len(pixels):
        pooled, i_emb = model.image(pixels)
        for k, (p, e) in enumerate(zip(pooled, i_emb)):
            out["images"].append({"source": sources[k] if sources else f"pixels[{k}]",
                                  "pooled": p.double().tolist(),
                                  "image_embeds": e.double().tolist()})
    if t_emb is not None and i_emb is not None:
        out["logits_per_image"] = (i_emb @ t_emb.T * model.logit_scale.exp()).double().tolist()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts-json", help="a JSON list of strings")
    ap.add_argument("--pixels-npy", help="float32 [N,3,S,S] pixel values")
    ap.add_argument("--images", nargs="*", default=[], help="image files to preprocess")
    ap.add_argument("--pixels-out", help=".npy: the --images files' pixel values")
    ap.add_argument("--out", required=True, help="output JSON")
    ap.add_argument("--float64", action="store_true")
    a = ap.parse_args(argv)
    texts = []
    if a.texts_json:
        with open(a.texts_json, encoding="utf-8") as f:
            texts = json.load(f)
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            sys.exit("reference_clip: --texts-json must hold a list of strings")
    parts, sources = [], []
    if a.pixels_npy:
        arr = np.load(a.pixels_npy).astype(np.float32)
        parts.append(arr)
        sources += [f"{a.pixels_npy}[{k}]" for k in range(arr.shape[0])]
    if a.images:
        cfg = read_preprocessor_config(a.model)
        pre = np.stack([preprocess(p, cfg) for p in a.images])
        if a.pixels_out:
            np.save(a.pixels_out, pre)
        parts.append(pre)
        sources += list(a.images)
    pixels = np.concatenate(parts) if parts else None
    torch.set_num_threads(1)
    out = run(a.model, texts, pixels, torch.float64 if a.float64 else torch.float32, sources)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
