#!/usr/bin/python3
"""Stage 1 of the demo Flamingo (issue 12): train a tiny CLIP on the synthetic scene world and
export it as an HF CLIPModel folder (the demo's frozen vision encoder; a CLIP for issue 14).

Model: nn.Modules with exactly transformers' CLIPModel parameter names and semantics (pre-LN
encoders, quick_gelu, causal text mask, q scaled before q kᵀ, conv patch embedding without
bias, class token, pre_layrnorm, post_layernorm of the class token, projections without bias,
0-dim logit_scale). Text pooling: the ARGMAX rule (text_config eos_token_id 2 as in OpenAI's
configs; <|endoftext|> is the largest id). Preprocessing is CLIPImageProcessor's: scenes are
64x64 and image_size is 64, so resize and crop are the identity; rescale, CLIP mean/std.
Tokenizer: tools/make_clip_checkpoint.py's BPE trainer over scenes.py texts (captions, VQA and
few-shot lines of 1000 train scenes, plus the label texts): 156 merges, all that corpus
yields, make every word one token (checked: none may take more than two).

Data: fresh TRAIN-split scenes, item i = sample_scene(split_rng("train", i, seed, stream
"clip")), half of them with one object. Loss per step (B images, U distinct captions):
  * symmetric InfoNCE with the learnable logit_scale (clamped at ln 100): image -> its caption
    among U; caption -> its images (uniform soft target when images share a caption);
  * label cross-entropies at the same scale, with eval_clip.py's exact templates: "a photo of
    a {colour} object." (8), "a photo of a {shape}." (6), soft targets = each colour's /
    shape's share of the objects (one-hot on one-object scenes), and "a photo of {one
    object|two objects|...}." (4). This is the softmax Classify computes.
AdamW, warmup then cosine decay, torch.manual_seed(seed), 2 threads: deterministic.

Export through make_clip_checkpoint's writers (config.json, model.safetensors F32, vocab.json,
merges.txt, tokenizer and preprocessor configs); then the folder is reloaded with
tools/reference_clip.py and compared with the trained modules (max abs diff > 1e-4 fails).

Usage: /usr/bin/python3 tools/demo/train_clip.py --out models/demo-clip [--steps 2400]
           [--batch 64] [--lr 2e-3] [--seed 0] [--threads 2]
"""

import argparse
import math
import os
import sys
import tempfile
import time

# Before OpenBLAS/OpenMP load: Debian 12's OpenBLAS 0.3.21 runs its slow Prescott kernels on
# recent Xeons unless told the core type (see tests/CMakeLists.txt), and spinning OpenMP
# threads crawl on a shared 2-core VM.
with open("/proc/cpuinfo") if os.path.exists("/proc/cpuinfo") else open(os.devnull) as _f:
    if " avx2 " in _f.read(8192):
        os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(HERE)
for p in (HERE, TOOLS):
    if p not in sys.path:
        sys.path.insert(0, p)
import scenes as S  # noqa: E402
import make_clip_checkpoint as MCC  # noqa: E402
import reference_clip as RC  # noqa: E402

ARCH = dict(text_hidden=64, text_layers=3, text_heads=4, text_mlp=128, text_positions=77,
            vision_hidden=64, vision_layers=4, vision_heads=4, vision_mlp=128, image_size=64,
            patch_size=8, projection_dim=64, merges=156)
CORPUS_SCENES = 1000
# Zero-shot templates and labels: the ones eval_clip.py sends to Classify.
from eval_clip import (COLOUR_TEMPLATE, SHAPE_TEMPLATE, COUNT_TEMPLATE,  # noqa: E402
                       COLOURS, SHAPES, COUNTS)
MEAN = np.array(MCC.CLIP_MEAN, dtype=np.float32)
STD = np.array(MCC.CLIP_STD, dtype=np.float32)


def label_texts():
    return ([COLOUR_TEMPLATE.format(c) for c in COLOURS]
            + [SHAPE_TEMPLATE.format(s) for s in SHAPES]
            + [COUNT_TEMPLATE.format(n) for n in COUNTS])


# ----------------------------------------------------------------------------- model (HF names)


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    def __init__(self, E, heads):
        super().__init__()
        self.heads, self.hd = heads, E // heads
        self.k_proj, self.v_proj = nn.Linear(E, E), nn.Linear(E, E)
        self.q_proj, self.out_proj = nn.Linear(E, E), nn.Linear(E, E)

    def forward(self, x, mask):
        """CLIPAttention; q, k, v in one GEMM (weights concatenated, same arithmetic)."""
        B, L, E = x.shape
        w = torch.cat([self.q_proj.weight * self.hd ** -0.5, self.k_proj.weight,
                       self.v_proj.weight])
        b = torch.cat([self.q_proj.bias * self.hd ** -0.5, self.k_proj.bias, self.v_proj.bias])
        # (q scaled through its weights: 16-wide heads make hd^-0.5 = 0.25 exact in fp32)
        q, k, v = F.linear(x, w, b).view(B, L, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        s = q @ k.transpose(-1, -2)
        if mask is not None:
            s = s + mask
        a = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, L, E)
        return self.out_proj(a)


class MLP(nn.Module):
    def __init__(self, E, I):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(E, I), nn.Linear(I, E)

    def forward(self, x):
        return self.fc2(quick_gelu(self.fc1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, E, heads, I):
        super().__init__()
        self.self_attn, self.layer_norm1 = Attention(E, heads), nn.LayerNorm(E, eps=1e-5)
        self.mlp, self.layer_norm2 = MLP(E, I), nn.LayerNorm(E, eps=1e-5)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, E, heads, I, n):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(E, heads, I) for _ in range(n))

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return x


class TextEmbeddings(nn.Module):
    def __init__(self, vocab, E, positions):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, E)
        self.position_embedding = nn.Embedding(positions, E)


class TextTransformer(nn.Module):
    def __init__(self, c, vocab):
        super().__init__()
        self.embeddings = TextEmbeddings(vocab, c.text_hidden, c.text_positions)
        self.encoder = Encoder(c.text_hidden, c.text_heads, c.text_mlp, c.text_layers)
        self.final_layer_norm = nn.LayerNorm(c.text_hidden, eps=1e-5)

    def forward(self, ids):
        """ids [N, L] (padded with <|endoftext|>) -> pooled [N, E] at argmax(ids)."""
        L = ids.shape[1]
        e = self.embeddings
        x = e.token_embedding(ids) + e.position_embedding.weight[:L]
        mask = torch.full((L, L), torch.finfo(x.dtype).min).triu(1)
        x = self.final_layer_norm(self.encoder(x, mask))
        return x[torch.arange(ids.shape[0]), ids.argmax(dim=-1)]


class VisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        E, n_pos = c.vision_hidden, (c.image_size // c.patch_size) ** 2 + 1
        self.class_embedding = nn.Parameter(torch.randn(E) * E ** -0.5)
        self.patch_embedding = nn.Conv2d(3, E, c.patch_size, stride=c.patch_size, bias=False)
        self.position_embedding = nn.Embedding(n_pos, E)

    def forward(self, px):
        x = self.patch_embedding(px).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + self.position_embedding.weight


class VisionTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        E = c.vision_hidden
        self.embeddings = VisionEmbeddings(c)
        self.pre_layrnorm = nn.LayerNorm(E, eps=1e-5)
        self.encoder = Encoder(E, c.vision_heads, c.vision_mlp, c.vision_layers)
        self.post_layernorm = nn.LayerNorm(E, eps=1e-5)

    def forward(self, px):
        x = self.encoder(self.pre_layrnorm(self.embeddings(px)))
        return self.post_layernorm(x[:, 0])


class CLIP(nn.Module):
    def __init__(self, c, vocab):
        super().__init__()
        self.text_model, self.vision_model = TextTransformer(c, vocab), VisionTransformer(c)
        self.visual_projection = nn.Linear(c.vision_hidden, c.projection_dim, bias=False)
        self.text_projection = nn.Linear(c.text_hidden, c.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))  # ln(1/0.07), CLIP's init
        for name, p in self.named_parameters():
            if name.endswith("token_embedding.weight"):
                nn.init.normal_(p, std=0.02)
            elif name.endswith("position_embedding.weight"):
                nn.init.normal_(p, std=0.01)

    def text(self, ids):
        return F.normalize(self.text_projection(self.text_model(ids)), dim=-1)

    def image(self, px):
        return F.normalize(self.visual_projection(self.vision_model(px)), dim=-1)

    def scale(self):
        return self.logit_scale.clamp(max=math.log(100.0)).exp()


# ----------------------------------------------------------------------------- data


def pixels(img):
    """CLIPImageProcessor on a 64x64 RGB image (identity resize/crop) -> float32 [3, 64, 64]."""
    x = (np.asarray(img.convert("RGB"), dtype=np.uint8).astype(np.float64) / 255.0)
    x = (x.astype(np.float32) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def train_scene(index, seed):
    rng = S.split_rng("train", index, seed, stream="clip")
    return S.sample_scene(rng, "train", n_objects=1 if rng.random() < 0.5 else None)


class Texts:
    """Tokenizes with tools/reference_clip.py's CLIPTokenizer (the served ids), cached."""

    def __init__(self, model_dir):
        self.tok, self.cache = RC.ClipTokenizerRef(model_dir), {}

    def ids(self, texts):
        rows = []
        for t in texts:
            if t not in self.cache:
                self.cache[t] = self.tok.encode(t)[0]
            rows.append(self.cache[t])
        L = max(len(r) for r in rows)
        return torch.tensor([r + [self.tok.eos] * (L - len(r)) for r in rows], dtype=torch.long)


def write_tokenizer(out, merges):
    """make_clip_checkpoint's tokenizer writer over a scenes.py corpus (its CORPUS swapped)."""
    lines = list(S.corpus_lines(CORPUS_SCENES)) + label_texts()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    saved = MCC.CORPUS
    try:
        MCC.CORPUS = f.name
        return MCC.write_tokenizer(out, merges)
    finally:
        MCC.CORPUS = saved
        os.unlink(f.name)


def check_vocabulary(texts):
    words = sorted({w.lower() for w in S.VOCABULARY if w.isalpha()}
                   | {w for t in label_texts() for w in S.words(t) if w.isalpha()})
    long = {w: texts.tok.tokens(w) for w in words if len(texts.tok.tokens(w)) > 2}
    if long:
        raise SystemExit(f"train_clip: words split into > 2 tokens: {long}")
    return sum(len(texts.tok.tokens(w)) == 1 for w in words), len(words)


# ----------------------------------------------------------------------------- training


def step_loss(model, texts, label_ids, scenes):
    px = torch.from_numpy(np.stack([pixels(S.render(s)) for s in scenes]))
    caps = [S.caption(s) for s in scenes]
    uniq = sorted(set(caps))
    cap_of = torch.tensor([uniq.index(c) for c in caps])
    img = model.image(px)
    txt = model.text(texts.ids(uniq))
    scale = model.scale()
    logits = scale * img @ txt.T                                     # [B, U]
    i2t = F.cross_entropy(logits, cap_of)
    pos = (cap_of[None, :] == torch.arange(len(uniq))[:, None]).float()  # [U, B]
    t2i = -(pos / pos.sum(1, keepdim=True) * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    lab = scale * img @ model.text(label_ids).T                      # [B, 18]
    nc, ns = len(COLOURS), len(SHAPES)
    col, shp = torch.zeros(len(scenes), nc), torch.zeros(len(scenes), ns)
    for i, s in enumerate(scenes):   # soft targets: the share of objects of each colour/shape
        for o in s.objects:
            col[i, COLOURS.index(o.colour)] += 1 / len(s.objects)
            shp[i, SHAPES.index(o.shape)] += 1 / len(s.objects)
    cnt = torch.tensor([len(s.objects) - 1 for s in scenes])
    l_col = -(col * F.log_softmax(lab[:, :nc], dim=1)).sum(1).mean()
    l_shp = -(shp * F.log_softmax(lab[:, nc:nc + ns], dim=1)).sum(1).mean()
    l_cnt = F.cross_entropy(lab[:, nc + ns:], cnt)
    loss = (i2t + t2i) / 2 + l_col + l_shp + l_cnt
    return loss, dict(clip=float((i2t + t2i) / 2), colour=float(l_col), shape=float(l_shp),
                      count=float(l_cnt), scale=float(scale))


@torch.no_grad()
def probe(model, label_ids, seed, n=192):
    """Zero-shot accuracy on fresh TRAIN-split scenes of another stream (a sanity check during
    training; the held-out numbers come from eval_clip.py through the server)."""
    model.eval()
    scenes = [S.sample_scene(S.split_rng("train", i, seed, stream="clip-probe"), "train",
                             n_objects=1) for i in range(n)]
    img = model.image(torch.from_numpy(np.stack([pixels(S.render(s)) for s in scenes])))
    lab = img @ model.text(label_ids).T
    nc, ns = len(COLOURS), len(SHAPES)
    col = np.mean([COLOURS[int(i)] == s.objects[0].colour
                   for i, s in zip(lab[:, :nc].argmax(1), scenes)])
    shp = np.mean([SHAPES[int(i)] == s.objects[0].shape
                   for i, s in zip(lab[:, nc:nc + ns].argmax(1), scenes)])
    model.train()
    return col, shp


def lr_at(step, steps, lr):
    warm = max(1, steps // 20)
    if step < warm:
        return lr * (step + 1) / warm
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def train(model, texts, a):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.98), eps=1e-6)
    label_ids = texts.ids(label_texts())
    t0, seen = time.time(), 0
    for step in range(a.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a.steps, a.lr)
        scenes = [train_scene(step * a.batch + j, a.seed) for j in range(a.batch)]
        loss, parts = step_loss(model, texts, label_ids, scenes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seen += a.batch
        if step % a.log_every == 0 or step == a.steps - 1:
            now = time.time()
            msg = " ".join(f"{k} {v:.3f}" for k, v in parts.items())
            print(f"step {step + 1}/{a.steps} loss {float(loss):.4f} ({msg}) lr "
                  f"{opt.param_groups[0]['lr']:.2e} {seen / (now - t0):.0f} images/s "
                  f"elapsed {now - t0:.0f}s", flush=True)
        if a.probe_every and (step + 1) % a.probe_every == 0:
            col, shp = probe(model, label_ids, a.seed)
            print(f"  probe (train split, unseen scenes): colour {col:.3f} shape {shp:.3f}",
                  flush=True)
    return time.time() - t0, seen


# ----------------------------------------------------------------------------- export + check


def export(model, c, out, vocab_size, bos, eos, seed):
    """model.safetensors through make_clip_checkpoint.write_weights, whose per-parameter draw
    is swapped for the trained tensors (in its param_specs order, shapes checked)."""
    sd = {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}
    specs = MCC.param_specs(c, vocab_size)
    if sorted(n for n, _, _ in specs) != sorted(sd):
        raise SystemExit(f"train_clip: names differ from CLIPModel's: "
                         f"{sorted(set(sd) ^ {n for n, _, _ in specs})}")
    it = iter(specs)

    def trained(kind, shape, rs):
        name, want, _ = next(it)
        arr = np.asarray(sd[name], dtype=np.float32).reshape(want)
        assert tuple(shape) == tuple(want) == arr.shape, name
        return arr
    saved = MCC.draw
    try:
        MCC.draw = trained
        n_params = MCC.write_weights(out, c, vocab_size, seed)
    finally:
        MCC.draw = saved
    MCC.write_text(os.path.join(out, "config.json"),
                   MCC.json_text(MCC.model_config(c, vocab_size, bos, eos, "argmax",
                                                  "quick_gelu")))
    MCC.write_text(os.path.join(out, "preprocessor_config.json"),
                   MCC.json_text(MCC.preprocessor_config(c)))
    return n_params


@torch.no_grad()
def verify(model, texts, out, seed):
    """The exported folder in tools/reference_clip.py vs the trained modules."""
    model.eval()
    ref, tok = RC.Clip(out), RC.ClipTokenizerRef(out)
    scenes = [S.sample_scene(S.split_rng("train", i, seed, stream="clip-verify"), "train")
              for i in range(4)]
    strs = [S.caption(s) for s in scenes] + label_texts()[:3]
    diffs = []
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for k, s in enumerate(scenes):
            paths.append(os.path.join(d, f"{k}.png"))
            S.render(s).save(paths[-1])
        cfg = RC.read_preprocessor_config(out)
        ref_px = np.stack([RC.preprocess(p, cfg) for p in paths])
    px = np.stack([pixels(S.render(s)) for s in scenes])
    diffs.append(float(np.abs(ref_px - px).max()))
    diffs.append(float((ref.image(ref_px)[1] - model.image(torch.from_numpy(px))).abs().max()))
    assert all(tok.encode(t)[0] == texts.ids([t])[0].tolist() for t in strs)
    diffs.append(float((ref.text([tok.encode(t)[0] for t in strs])[1]
                        - model.text(texts.ids(strs))).abs().max()))
    diffs.append(abs(ref.logit_scale_exp - float(model.logit_scale.exp())))
    print(f"verify: reference_clip vs trained model, max abs diff: pixels {diffs[0]:.2e}, "
          f"image embeds {diffs[1]:.2e}, text embeds {diffs[2]:.2e}, "
          f"exp(logit_scale) {diffs[3]:.2e}")
    if max(diffs[:3]) > 1e-4:
        raise SystemExit("train_clip: the exported folder does not reproduce the model")
    return diffs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (created; files overwritten)")
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--probe-every", type=int, default=400, help="0: never")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    c = argparse.Namespace(**ARCH)
    os.makedirs(a.out, exist_ok=True)
    vocab_size, bos, eos = write_tokenizer(a.out, c.merges)
    texts = Texts(a.out)
    single, n_words = check_vocabulary(texts)
    print(f"tokenizer: vocab {vocab_size}, {c.merges} merges, {single}/{n_words} words one token")
    model = CLIP(c, vocab_size)
    n = sum(p.numel() for p in model.parameters())
    print(f"model: {n} parameters (vision {sum(p.numel() for p in model.vision_model.parameters())}"
          f", text {sum(p.numel() for p in model.text_model.parameters())})", flush=True)
    secs, seen = train(model, texts, a)
    print(f"trained: {a.steps} steps, {seen} images, {secs:.0f}s ({seen / secs:.0f} images/s)")
    n_params = export(model, c, a.out, vocab_size, bos, eos, a.seed)
    size = sum(os.path.getsize(os.path.join(a.out, f)) for f in os.listdir(a.out))
    print(f"exported: {a.out} ({n_params} parameters, {size / 1e6:.2f} MB)")
    verify(model, texts, a.out, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
