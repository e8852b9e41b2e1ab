#!/usr/bin/python3
"""Independent reference forward of IDEFICS (transformers v4.44.2 semantics) in torch 1.13.

Written from transformers' models/idefics/{modeling_idefics,vision,perceiver}.py; it does not
import transformers or safetensors. It reads an HF checkpoint folder (config.json with the
class defaults applied to missing keys; model.safetensors or sharded files via
model.safetensors.index.json; F32 or BF16 tensors, BF16 upcast exactly; the stray I64
`...embeddings.position_ids` buffer is checked and ignored) and runs, in float32 (default)
or float64:

  vision tower (CLIP ViT, last_hidden_state without post_layernorm) -> perceiver resampler
  -> per decoder layer i: gated cross-attention layer i // interval when
  i % cross_layer_interval == 0, then the LLaMA decoder layer -> final RMSNorm -> lm_head
  (+ additional_fc), with its own attention math (torch 1.13 has no
  scaled_dot_product_attention): softmax(Q Kᵀ * scale + mask) V.

Every tensor of the checkpoint must be consumed with the expected shape, else it raises.
Validated against the golden set (tests/model/test_reference_idefics.py): |Δlogits| <= 1e-5.

Python API: `Idefics(model_dir, dtype=torch.float32)`; `.forward(input_ids, image_attention_mask,
pixel_values, attention_mask=None)` -> dict(logits, hidden_states, gated_outputs, vision,
perceiver); `.greedy(..., steps)` -> per-row dicts (full recompute each step; the new token
gets attention 1 and a copy of the last prompt row of image_attention_mask; logprob =
log_softmax(float64 logits)[id]).

CLI (one prompt row, or a batch through .npy files):
  reference_idefics.py --model DIR --input-ids 1,2,3|ids.npy
      [--image-of-token -1,0,0 | --image-of-token auto | --image-attention-mask m.npy]
      [--attention-mask am.npy] [--pixels pix.npy] [--out logits.npy]
      [--intermediates-out inter.npz] [--greedy N [--out-json gen.json]] [--float64]
  --image-of-token: per token, the image slot it attends to (-1: none); `auto` applies the
    processor rule (most recent <image> token, none after </s> until the next <image>).
  --pixels: float32 [N,3,S,S] or [B,N,3,S,S] (IdeficsImageProcessor output); default one
    all-zero slot. --out writes float32 logits [L,V+2] (or [B,L,V+2] for batch input).
  --intermediates-out: .npz with hidden_states [layers+1,B,L,H] ([i] = input of block i,
    last = after the final norm), gated_outputs [n_gated,B,L,H], vision [B*N,P,E] and
    perceiver [B*N,latents,E]. --greedy prints (or writes) new_token_ids, logprobs and
    top1_top2_logit_margin (a list of such objects for batch input).
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

VISION_DEFAULTS = dict(embed_dim=768, image_size=224, intermediate_size=5120, patch_size=14,
                       num_hidden_layers=32, num_attention_heads=16, num_channels=3,
                       hidden_act="gelu", layer_norm_eps=1e-5)
PERCEIVER_DEFAULTS = dict(use_resampler=False, resampler_n_latents=64, resampler_depth=6,
                          resampler_n_heads=16, resampler_head_dim=96,
                          qk_layer_norms_perceiver=False)
TEXT_DEFAULTS = dict(vocab_size=32000, additional_vocab_size=0, hidden_size=4096,
                     intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                     hidden_act="silu", alpha_type="float", rms_norm_eps=1e-6,
                     cross_layer_interval=1, qk_layer_norms=False, use_resampler=False,
                     tie_word_embeddings=False, eos_token_id=2)
STRAY = "model.vision_model.embeddings.position_ids"
# transformers' ACT2FN entries a CLIP-style encoder may name (the demo model's is quick_gelu)
ACTIVATIONS = ("gelu", "quick_gelu", "gelu_new", "gelu_pytorch_tanh")


def activation(name):
    """The ACT2FN function of an encoder's hidden_act (also tools/reference_clip.py's)."""
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name == "gelu":
        return F.gelu
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    raise ValueError(f"config.json: unsupported hidden_act {name!r}")


def read_safetensors(path):
    """{name: np.ndarray} of one .safetensors file (F32, BF16 -> float32, I64, F64, F16)."""
    data = bytearray(os.path.getsize(path))  # writable: float32 tensors are used in place
    with open(path, "rb") as f:
        f.readinto(data)
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base, out = 8 + n, {}
    types = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4", "BF16": "<u2"}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        b, e = meta["data_offsets"]
        if meta["dtype"] not in types:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {meta['dtype']}")
        arr = np.frombuffer(data, dtype=types[meta["dtype"]], count=(e - b) //
                            np.dtype(types[meta["dtype"]]).itemsize, offset=base + b)
        if meta["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        if arr.size != int(np.prod(meta["shape"])):
            raise ValueError(f"{path}: tensor {name} has {arr.size} elements, shape "
                             f"{meta['shape']}")
        out[name] = arr.reshape(meta["shape"])
    return out


def read_checkpoint(model_dir):
    """All tensors of a checkpoint folder (sharded through the index, or one file)."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            for name, arr in read_safetensors(os.path.join(model_dir, shard)).items():
                if weight_map.get(name) != shard:
                    raise ValueError(f"{shard}: tensor {name} is not mapped to this shard")
                tensors[name] = arr
        missing = set(weight_map) - set(tensors)
        if missing:
            raise ValueError(f"{index}: {len(missing)} mapped tensors missing, e.g. {min(missing)}")
        return tensors
    return read_safetensors(os.path.join(model_dir, "model.safetensors"))


def read_config(model_dir):
    """config.json with the v4.44.2 class defaults for missing keys, flattened."""
    with open(os.path.join(model_dir, "config.json")) as f:
        raw = json.load(f)
    c = dict(TEXT_DEFAULTS, **{k: v for k, v in raw.items() if k in TEXT_DEFAULTS})
    c["vision"] = dict(VISION_DEFAULTS, **{k: v for k, v in raw.get("vision_config", {}).items()
                                           if k in VISION_DEFAULTS})
    c["perceiver"] = dict(PERCEIVER_DEFAULTS, **{k: v for k, v in
                                                 raw.get("perceiver_config", {}).items()
                                                 if k in PERCEIVER_DEFAULTS})
    if raw.get("vision_config", {}).get("hidden_size") is not None:
        c["vision"]["embed_dim"] = raw["vision_config"]["hidden_size"]
    for key, want in [("hidden_act", "silu"), ("tie_word_embeddings", False)]:
        if c[key] != want:
            raise ValueError(f"config.json: {key} must be {want!r}, found {c[key]!r}")
    if c["vision"]["hidden_act"] not in ACTIVATIONS:
        raise ValueError(f"config.json: vision_config.hidden_act must be one of "
                         f"{sorted(ACTIVATIONS)}, found {c['vision']['hidden_act']!r}")
    return c


class Idefics:
    """The model: weights as torch tensors of `dtype`, forward and greedy generation."""

    def __init__(self, model_dir, dtype=torch.float32):
        self.dir, self.dtype = model_dir, dtype
        self.cfg = read_config(model_dir)
        self._raw = read_checkpoint(model_dir)  # _w() pops what it consumes
        self._load()
        if STRAY in self._raw:
            n = self.n_positions
            got = self._raw.pop(STRAY)
            if got.dtype != np.int64 or got.shape != (1, n) or (got[0] != np.arange(n)).any():
                raise ValueError(f"{model_dir}: {STRAY} must be int64 [1,{n}] = 0..{n - 1}")
        if self._raw:
            raise ValueError(f"{model_dir}: {len(self._raw)} unexpected tensors, e.g. "
                             f"{min(self._raw)}")
        del self._raw

    # ------------------------------------------------------------------ loading
    def _w(self, name, shape):
        if name not in self._raw:
            raise ValueError(f"{self.dir}: missing tensor {name} (expected shape {list(shape)})")
        arr = self._raw[name]
        if tuple(arr.shape) != tuple(shape):
            raise ValueError(f"{self.dir}: tensor {name} has shape {list(arr.shape)}, expected "
                             f"{list(shape)}")
        if arr.dtype.kind != "f":
            raise ValueError(f"{self.dir}: tensor {name} has dtype {arr.dtype}, expected float")
        del self._raw[name]
        return torch.from_numpy(arr.astype(np.float32, copy=False)).to(self.dtype)

    def _load(self):
        c, v, p = self.cfg, self.cfg["vision"], self.cfg["perceiver"]
        H, I, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
        A, E = c["additional_vocab_size"], v["embed_dim"]
        self.head_dim = H // c["num_attention_heads"]
        w = self._w
        self.embed = w("model.embed_tokens.weight", (V, H))
        self.embed_add = w("model.embed_tokens.additional_embedding.weight", (A, H)) if A else None
        self.lm_head = w("lm_head.weight", (V, H))
        self.lm_head_add = w("lm_head.additional_fc.weight", (A, H)) if A else None
        self.norm = w("model.norm.weight", (H,))
        ps = v["patch_size"]
        self.n_positions = (v["image_size"] // ps) ** 2 + 1
        vp = "model.vision_model."

        def ln(prefix, n):
            return (w(prefix + ".weight", (n,)), w(prefix + ".bias", (n,)))

        self.v_class = w(vp + "embeddings.class_embedding", (E,))
        self.v_patch = w(vp + "embeddings.patch_embedding.weight", (E, v["num_channels"], ps, ps))
        self.v_pos = w(vp + "embeddings.position_embedding.weight", (self.n_positions, E))
        self.v_pre = ln(vp + "pre_layrnorm", E)
        ln(vp + "post_layernorm", E)  # exists, never used for the sequence output
        self.v_layers = []
        for i in range(v["num_hidden_layers"]):
            q = f"{vp}encoder.layers.{i}."
            lin = {n: (w(f"{q}self_attn.{n}.weight", (E, E)), w(f"{q}self_attn.{n}.bias", (E,)))
                   for n in ("q_proj", "k_proj", "v_proj", "out_proj")}
            lin["ln1"], lin["ln2"] = ln(q + "layer_norm1", E), ln(q + "layer_norm2", E)
            vi = v["intermediate_size"]
            lin["fc1"] = (w(q + "mlp.fc1.weight", (vi, E)), w(q + "mlp.fc1.bias", (vi,)))
            lin["fc2"] = (w(q + "mlp.fc2.weight", (E, vi)), w(q + "mlp.fc2.bias", (E,)))
            self.v_layers.append(lin)
        if not p["use_resampler"]:
            raise ValueError(f"{self.dir}: config.json: perceiver_config.use_resampler must be "
                             "true (every IDEFICS checkpoint uses the resampler)")
        rp, nh, hd = "model.perceiver_resampler.", p["resampler_n_heads"], p["resampler_head_dim"]
        self.p_latents = w(rp + "latents", (p["resampler_n_latents"], E))
        self.p_blocks = []
        for i in range(p["resampler_depth"]):
            q = f"{rp}blocks.{i}."
            b = {"ctx_ln": ln(q + "0.context_layer_norm", E),
                 "lat_ln": ln(q + "0.latents_layer_norm", E),
                 "q": w(q + "0.q_proj.weight", (nh * hd, E)),
                 "k": w(q + "0.k_proj.weight", (nh * hd, E)),
                 "v": w(q + "0.v_proj.weight", (nh * hd, E)),
                 "o": w(q + "0.output_proj.weight", (E, nh * hd)),
                 "mlp_ln": ln(q + "1.ln", E), "fc": w(q + "1.fc.weight", (4 * E, E)),
                 "c_proj": w(q + "1.c_proj.weight", (E, 4 * E))}
            if p["qk_layer_norms_perceiver"]:
                b["q_ln"], b["k_ln"] = ln(q + "0.q_layer_norm", hd), ln(q + "0.k_layer_norm", hd)
            self.p_blocks.append(b)
        self.p_norm = ln(rp + "layer_norm", E)

        def mlp(q):
            return {"gate": w(q + "mlp.gate_proj.weight", (I, H)),
                    "up": w(q + "mlp.up_proj.weight", (I, H)),
                    "down": w(q + "mlp.down_proj.weight", (H, I)),
                    "ln_in": w(q + "input_layernorm.weight", (H,)),
                    "ln_post": w(q + "post_attention_layernorm.weight", (H,))}

        self.layers = []
        for i in range(c["num_hidden_layers"]):
            q = f"model.layers.{i}."
            d = mlp(q)
            d.update({n: w(f"{q}self_attn.{n}.weight", (H, H)) for n in ("q_proj", "k_proj",
                                                                        "v_proj", "o_proj")})
            self.layers.append(d)
        alpha_shape = (1,) if c["alpha_type"] == "float" else (1, 1, H)
        self.gated = []
        for i in range(c["num_hidden_layers"] // c["cross_layer_interval"]):
            q = f"model.gated_cross_attn_layers.{i}."
            d = mlp(q)
            d.update({"alpha_attn": w(q + "alpha_cross_attn", alpha_shape),
                      "alpha_dense": w(q + "alpha_dense", alpha_shape),
                      "q_proj": w(q + "cross_attn.q_proj.weight", (H, H)),
                      "k_proj": w(q + "cross_attn.k_proj.weight", (H, E)),
                      "v_proj": w(q + "cross_attn.v_proj.weight", (H, E)),
                      "o_proj": w(q + "cross_attn.o_proj.weight", (H, H))})
            if c["qk_layer_norms"]:
                d["q_ln"] = w(q + "cross_attn.q_layer_norm.weight", (self.head_dim,))
                d["k_ln"] = w(q + "cross_attn.k_layer_norm.weight", (self.head_dim,))
            self.gated.append(d)
        # rotary cache as IdeficsEmbedding builds it (float32, base 10000, rotate_half layout)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        t = torch.arange(2048, dtype=torch.float32)
        emb = torch.cat([torch.outer(t, inv_freq)] * 2, dim=-1)
        self.cos, self.sin = emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    # ------------------------------------------------------------------ building blocks
    def rms(self, x, w, eps=None):
        eps = self.cfg["rms_norm_eps"] if eps is None else eps
        var = x.pow(2).mean(-1, keepdim=True)
        return w * (x * torch.rsqrt(var + eps))

    @staticmethod
    def layer_norm(x, wb, eps=1e-5):
        return F.layer_norm(x, (x.shape[-1],), wb[0], wb[1], eps)

    @staticmethod
    def attend(q, k, v, scale, mask):
        """softmax(q kᵀ * scale + mask) v over [b, h, t, d]; mask additive or None."""
        s = torch.matmul(q, k.transpose(-1, -2)) * scale
        if mask is not None:
            s = s + mask
        return torch.matmul(torch.softmax(s, dim=-1), v)

    def swiglu(self, x, d):
        return F.linear(F.silu(F.linear(x, d["gate"])) * F.linear(x, d["up"]), d["down"])

    def heads(self, x, n):
        b, t, _ = x.shape
        return x.view(b, t, n, -1).transpose(1, 2)

    def vision(self, pixels):
        """pixels [n,3,S,S] -> last_hidden_state [n, positions, E] (no post_layernorm)."""
        v = self.cfg["vision"]
        n, nh = pixels.shape[0], v["num_attention_heads"]
        x = F.conv2d(pixels.to(self.dtype), self.v_patch, stride=v["patch_size"])
        x = torch.cat([self.v_class.expand(n, 1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = self.layer_norm(x + self.v_pos, self.v_pre, v["layer_norm_eps"])
        scale = (x.shape[-1] // nh) ** -0.5
        for d in self.v_layers:
            h = self.layer_norm(x, d["ln1"], v["layer_norm_eps"])
            q = self.heads(F.linear(h, *d["q_proj"]) * scale, nh)
            k = self.heads(F.linear(h, *d["k_proj"]), nh)
            vv = self.heads(F.linear(h, *d["v_proj"]), nh)
            a = self.attend(q, k, vv, 1.0, None).transpose(1, 2).reshape(x.shape)
            x = x + F.linear(a, *d["out_proj"])
            h = self.layer_norm(x, d["ln2"], v["layer_norm_eps"])
            act = activation(v["hidden_act"])
            x = x + F.linear(act(F.linear(h, *d["fc1"])), *d["fc2"])
        return x

    def perceiver(self, ctx):
        """ctx [n, positions, E] -> [n, latents, E]; each image on its own."""
        p = self.cfg["perceiver"]
        nh, hd = p["resampler_n_heads"], p["resampler_head_dim"]
        lat = self.p_latents.repeat(ctx.shape[0], 1, 1)
        for b in self.p_blocks:
            c, l = self.layer_norm(ctx, b["ctx_ln"]), self.layer_norm(lat, b["lat_ln"])
            cl = torch.cat([c, l], dim=-2)
            q, k, v = (self.heads(F.linear(x, b[n]), nh)
                       for x, n in ((l, "q"), (cl, "k"), (cl, "v")))
            if "q_ln" in b:
                q, k = self.layer_norm(q, b["q_ln"]), self.layer_norm(k, b["k_ln"])
            s = torch.matmul(q * hd ** -0.5, k.transpose(-1, -2))
            s = s - s.amax(dim=-1, keepdim=True)
            a = torch.matmul(s.softmax(dim=-1), v).transpose(1, 2).flatten(-2)
            lat = F.linear(a, b["o"]) + lat
            h = self.layer_norm(lat, b["mlp_ln"])
            lat = F.linear(F.relu(F.linear(h, b["fc"])), b["c_proj"]) + lat
        return self.layer_norm(lat, self.p_norm)

    def embed_ids(self, ids):
        V = self.cfg["vocab_size"]
        x = self.embed[ids.clamp(max=V - 1)]
        extra = ids >= V
        if extra.any():
            x[extra] = self.embed_add[ids[extra] - V]
        return x

    # ------------------------------------------------------------------ model
    def encode_images(self, pixel_values):
        """pixel_values [B,N,3,S,S] -> (vision [B*N,P,E], perceiver [B*N,lat,E])."""
        b, n = pixel_values.shape[:2]
        vis = self.vision(torch.as_tensor(pixel_values).reshape(b * n, *pixel_values.shape[2:]))
        return vis, self.perceiver(vis)

    def forward(self, input_ids, image_attention_mask, pixel_values, attention_mask=None,
                images=None):
        """input_ids [B,L] int, image_attention_mask [B,L,N] (0/1 or bool), pixel_values
        [B,N,3,S,S], attention_mask [B,L] (1 = real token; None = all ones).
        Returns dict of torch tensors: logits [B,L,V+A], hidden_states [layers+1,B,L,H]
        ([i] = input of block i, last = after final norm), gated_outputs [n_gated,B,L,H],
        vision [B*N,P,E], perceiver [B*N,lat,E]."""
        c = self.cfg
        ids = torch.as_tensor(np.asarray(input_ids), dtype=torch.long)
        B, L = ids.shape
        am = (torch.ones(B, L, dtype=torch.long) if attention_mask is None
              else torch.as_tensor(np.asarray(attention_mask)).long())
        pix = torch.as_tensor(np.asarray(pixel_values))
        N = pix.shape[1]
        vis, lat = self.encode_images(pix) if images is None else images
        nl = lat.shape[1]
        img = lat.reshape(B, N * nl, lat.shape[-1])
        im = torch.as_tensor(np.asarray(image_attention_mask)).to(self.dtype)
        if tuple(im.shape) != (B, L, N):
            raise ValueError(f"image_attention_mask has shape {list(im.shape)}, expected "
                             f"{[B, L, N]}")
        im = im[:, :, :, None].repeat(1, 1, 1, nl).reshape(B, 1, L, N * nl)
        fmin = torch.finfo(self.dtype).min
        img_mask = (1.0 - im) * fmin
        gate = (img_mask == 0.0).any(dim=-1).squeeze(1)  # [B, L]
        # causal + padding mask, additive like HF (finfo.min)
        pos = (am.cumsum(-1) - 1).masked_fill(am == 0, 1)
        allowed = torch.ones(L, L, dtype=torch.bool).tril()[None] & (am[:, None, :] == 1)
        self_mask = torch.zeros(B, 1, L, L, dtype=self.dtype).masked_fill(~allowed[:, None], fmin)
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]

        def rope(x):
            h = x.shape[-1] // 2
            return x * cos + torch.cat([-x[..., h:], x[..., :h]], dim=-1) * sin

        nh, scale = c["num_attention_heads"], self.head_dim ** -0.5
        x = self.embed_ids(ids).to(self.dtype)
        hidden, gated_out = [], []
        for i, d in enumerate(self.layers):
            hidden.append(x)
            if i % c["cross_layer_interval"] == 0:
                g = self.gated[i // c["cross_layer_interval"]]
                h = self.rms(x, g["ln_in"])
                q = self.heads(F.linear(h, g["q_proj"]), nh)
                k = self.heads(F.linear(img, g["k_proj"]), nh)
                v = self.heads(F.linear(img, g["v_proj"]), nh)
                if "q_ln" in g:
                    q, k = self.rms(q, g["q_ln"]), self.rms(k, g["k_ln"])
                a = self.attend(q, k, v, scale, img_mask).transpose(1, 2).reshape(B, L, -1)
                a = F.linear(a, g["o_proj"]).masked_fill(~gate[:, :, None], 0.0)
                x = x + torch.tanh(g["alpha_attn"]) * a
                x = x + torch.tanh(g["alpha_dense"]) * self.swiglu(self.rms(x, g["ln_post"]), g)
                gated_out.append(x)
            h = self.rms(x, d["ln_in"])
            q, k, v = (self.heads(F.linear(h, d[n]), nh) for n in ("q_proj", "k_proj", "v_proj"))
            a = self.attend(rope(q), rope(k), v, scale, self_mask)
            x = x + F.linear(a.transpose(1, 2).reshape(B, L, -1), d["o_proj"])
            x = x + self.swiglu(self.rms(x, d["ln_post"]), d)
        x = self.rms(x, self.norm)
        hidden.append(x)
        logits = F.linear(x, self.lm_head)
        if self.lm_head_add is not None:
            logits = torch.cat([logits, F.linear(x, self.lm_head_add)], dim=-1)
        return {"logits": logits, "hidden_states": torch.stack(hidden),
                "gated_outputs": torch.stack(gated_out), "vision": vis, "perceiver": lat}

    def greedy(self, input_ids, image_attention_mask, pixel_values, steps, attention_mask=None):
        """Greedy decoding, full recompute per step; returns one dict per row with
        new_token_ids, logprobs (float64 log_softmax), top1_top2_logit_margin."""
        ids = np.asarray(input_ids, dtype=np.int64)
        im = np.asarray(image_attention_mask).astype(np.int64)
        am = (np.ones(ids.shape, np.int64) if attention_mask is None
              else np.asarray(attention_mask, dtype=np.int64))
        images = self.encode_images(torch.as_tensor(np.asarray(pixel_values)))
        rows = [{"new_token_ids": [], "logprobs": [], "top1_top2_logit_margin": []}
                for _ in range(ids.shape[0])]
        last_row = im[:, -1:, :]
        for _ in range(steps):
            logits = self.forward(ids, im, pixel_values, am, images=images)["logits"][:, -1]
            nxt = torch.argmax(logits, dim=-1)
            lp = torch.log_softmax(logits.double(), dim=-1)
            top2 = torch.topk(logits, 2, dim=-1).values
            for r, row in enumerate(rows):
                t = int(nxt[r])
                row["new_token_ids"].append(t)
                row["logprobs"].append(float(lp[r, t]))
                row["top1_top2_logit_margin"].append(float(top2[r, 0] - top2[r, 1]))
            ids = np.concatenate([ids, nxt.numpy()[:, None]], axis=1)
            am = np.concatenate([am, np.ones((ids.shape[0], 1), np.int64)], axis=1)
            im = np.concatenate([im, last_row], axis=1)
        return rows


# ---------------------------------------------------------------------- CLI helpers


def image_of_token_auto(ids, image_id, eos_id):
    """Processor rule (IdeficsProcessor's image_attention_mask_for_packed_input_ids): most
    recent <image> (counted from 0); the </s> itself still sees it, the tokens after it see
    none until the next <image>."""
    out, cur, count = [], -1, 0
    for t in ids:
        if t == image_id:
            cur, count = count, count + 1
        out.append(cur)
        if t == eos_id:
            cur = -1
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--input-ids", required=True, help="comma list, or .npy [L] / [B,L]")
    ap.add_argument("--image-of-token", help="comma list of image slots (-1 none), or 'auto'")
    ap.add_argument("--image-attention-mask", help=".npy [B,L,N]")
    ap.add_argument("--attention-mask", help=".npy [B,L]")
    ap.add_argument("--pixels", help=".npy [N,3,S,S] or [B,N,3,S,S]")
    ap.add_argument("--out", help="logits .npy (float32)")
    ap.add_argument("--intermediates-out", help=".npz with hidden_states, gated_outputs, "
                    "vision, perceiver")
    ap.add_argument("--greedy", type=int, default=0, help="greedy steps (full recompute)")
    ap.add_argument("--out-json", help="greedy result JSON")
    ap.add_argument("--float64", action="store_true")
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(argv[:-1]):  # "--image-of-token -1,0" would parse -1,0 as a flag
        if arg == "--image-of-token":
            argv[i:i + 2] = [f"{arg}={argv[i + 1]}"]
            break
    a = ap.parse_args(argv)
    model = Idefics(a.model, torch.float64 if a.float64 else torch.float32)
    if a.input_ids.endswith(".npy"):
        ids = np.load(a.input_ids).astype(np.int64)
    else:
        ids = np.array([int(t) for t in a.input_ids.split(",")], dtype=np.int64)
    single = ids.ndim == 1
    ids = ids.reshape(1, -1) if single else ids
    B, L = ids.shape
    size = model.cfg["vision"]["image_size"]
    if a.pixels:
        pix = np.load(a.pixels).astype(np.float32)
        pix = pix[None] if pix.ndim == 4 else pix
    else:
        pix = np.zeros((B, 1, 3, size, size), np.float32)
    if pix.shape[0] != B:
        sys.exit(f"--pixels has batch {pix.shape[0]}, input ids have {B} rows")
    N = pix.shape[1]
    if a.image_attention_mask:
        im = np.load(a.image_attention_mask).astype(np.int64)
    else:
        if a.image_of_token == "auto":
            with open(os.path.join(a.model, "added_tokens.json")) as f:
                image_id = json.load(f)["<image>"]
            rows = [image_of_token_auto(list(r), image_id, model.cfg["eos_token_id"]) for r in ids]
        elif a.image_of_token:
            rows = [[int(t) for t in a.image_of_token.split(",")]] * B
        else:
            rows = [[-1] * L] * B
        im = np.zeros((B, L, N), np.int64)
        for b, r in enumerate(rows):
            if len(r) != L:
                sys.exit(f"--image-of-token has {len(r)} entries, input ids have {L}")
            for t, s in enumerate(r):
                if s >= N:
                    sys.exit(f"--image-of-token: token {t} names image {s}, only {N} slots")
                if s >= 0:
                    im[b, t, s] = 1
    am = np.load(a.attention_mask) if a.attention_mask else None
    with torch.no_grad():
        out = model.forward(ids, im, pix, am)
        if a.out:
            logits = out["logits"].float().numpy()
            np.save(a.out, logits[0] if single else logits)
        if a.intermediates_out:
            np.savez(a.intermediates_out, **{k: out[k].float().numpy() for k in
                                              ("hidden_states", "gated_outputs", "vision",
                                               "perceiver")})
        if a.greedy:
            rows = model.greedy(ids, im, pix, a.greedy, am)
            text = json.dumps(rows[0] if single else rows, indent=1)
            if a.out_json:
                with open(a.out_json, "w") as f:
                    f.write(text + "\n")
            else:
                print(text)


if __name__ == "__main__":
    main()
