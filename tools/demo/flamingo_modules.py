#!/usr/bin/python3
"""Trainable torch modules of the demo Flamingo with exactly the parameter names and the
semantics of transformers' IdeficsForVisionText2Text (v4.44.2), as tools/reference_idefics.py
computes them: a CLIP vision tower (quick_gelu, last_hidden_state without post_layernorm), the
Perceiver Resampler, gated cross-attention layers (tanh gates, cross-attention output zeroed
on tokens that see no image, dense branch always applied), LLaMA decoder layers (RoPE base
10000 rotate-half, SwiGLU, RMSNorm), decoupled embeddings and lm_head (2 additional rows for
<fake_token_around_image> and <image>). `state_dict()` keys are the checkpoint's tensor names.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(n)), eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def heads(x, n):
    b, t, _ = x.shape
    return x.view(b, t, n, -1).transpose(1, 2)


def merge(x):
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


# ----------------------------------------------------------------------------- vision
class VisionAttention(nn.Module):
    def __init__(self, e, nh):
        super().__init__()
        self.nh = nh
        self.k_proj, self.v_proj = nn.Linear(e, e), nn.Linear(e, e)
        self.q_proj, self.out_proj = nn.Linear(e, e), nn.Linear(e, e)

    def forward(self, x):
        q = heads(self.q_proj(x) * (x.shape[-1] // self.nh) ** -0.5, self.nh)
        k, v = heads(self.k_proj(x), self.nh), heads(self.v_proj(x), self.nh)
        return self.out_proj(merge(torch.softmax(q @ k.transpose(-1, -2), -1) @ v))


class VisionMLP(nn.Module):
    def __init__(self, e, i):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(e, i), nn.Linear(i, e)

    def forward(self, x):
        return self.fc2(quick_gelu(self.fc1(x)))


class VisionLayer(nn.Module):
    def __init__(self, e, nh, i):
        super().__init__()
        self.self_attn = VisionAttention(e, nh)
        self.layer_norm1 = nn.LayerNorm(e)
        self.mlp = VisionMLP(e, i)
        self.layer_norm2 = nn.LayerNorm(e)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class VisionEmbeddings(nn.Module):
    def __init__(self, e, image, patch):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.zeros(e))
        self.patch_embedding = nn.Conv2d(3, e, patch, patch, bias=False)
        self.position_embedding = nn.Embedding((image // patch) ** 2 + 1, e)

    def forward(self, px):
        x = self.patch_embedding(px).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1)
        return x + self.position_embedding.weight


class VisionEncoder(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)


class VisionModel(nn.Module):
    """CLIP vision tower; forward = last_hidden_state (IDEFICS's image features)."""

    def __init__(self, c):
        super().__init__()
        e = c.vision_embed_dim
        self.embeddings = VisionEmbeddings(e, c.image_size, c.patch_size)
        self.pre_layrnorm = nn.LayerNorm(e)
        self.encoder = VisionEncoder([VisionLayer(e, c.vision_heads, c.vision_intermediate_size)
                                      for _ in range(c.vision_layers)])
        self.post_layernorm = nn.LayerNorm(e)  # in the checkpoint, unused by IDEFICS

    def forward(self, px):
        x = self.pre_layrnorm(self.embeddings(px))
        for layer in self.encoder.layers:
            x = layer(x)
        return x


# ----------------------------------------------------------------------------- perceiver
class PerceiverAttention(nn.Module):
    def __init__(self, e, nh, hd):
        super().__init__()
        self.nh, self.hd = nh, hd
        self.context_layer_norm, self.latents_layer_norm = nn.LayerNorm(e), nn.LayerNorm(e)
        self.q_proj = nn.Linear(e, nh * hd, bias=False)
        self.k_proj = nn.Linear(e, nh * hd, bias=False)
        self.v_proj = nn.Linear(e, nh * hd, bias=False)
        self.output_proj = nn.Linear(nh * hd, e, bias=False)

    def forward(self, ctx, lat):
        c, l = self.context_layer_norm(ctx), self.latents_layer_norm(lat)
        cl = torch.cat([c, l], dim=-2)
        q = heads(self.q_proj(l), self.nh)
        k, v = heads(self.k_proj(cl), self.nh), heads(self.v_proj(cl), self.nh)
        s = (q * self.hd ** -0.5) @ k.transpose(-1, -2)
        s = s - s.amax(dim=-1, keepdim=True).detach()
        return self.output_proj(merge(torch.softmax(s, -1) @ v))


class PerceiverMLP(nn.Module):
    def __init__(self, e):
        super().__init__()
        self.ln = nn.LayerNorm(e)
        self.fc = nn.Linear(e, 4 * e, bias=False)
        self.c_proj = nn.Linear(4 * e, e, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.fc(self.ln(x))))


class PerceiverResampler(nn.Module):
    def __init__(self, c):
        super().__init__()
        e = c.vision_embed_dim
        self.latents = nn.Parameter(torch.randn(c.perceiver_latents, e))
        self.blocks = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(e, c.perceiver_heads, c.perceiver_head_dim),
                           PerceiverMLP(e)]) for _ in range(c.perceiver_depth))
        self.layer_norm = nn.LayerNorm(e)

    def forward(self, ctx):
        lat = self.latents.expand(ctx.shape[0], -1, -1)
        for attn, mlp in self.blocks:
            lat = attn(ctx, lat) + lat
            lat = mlp(lat) + lat
        return self.layer_norm(lat)


# ----------------------------------------------------------------------------- decoder
class MLP(nn.Module):
    def __init__(self, h, i):
        super().__init__()
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Attention(nn.Module):
    def __init__(self, h, nh, kv_dim=None):
        super().__init__()
        self.nh = nh
        self.q_proj = nn.Linear(h, h, bias=False)
        self.k_proj = nn.Linear(kv_dim or h, h, bias=False)
        self.v_proj = nn.Linear(kv_dim or h, h, bias=False)
        self.o_proj = nn.Linear(h, h, bias=False)


def rotate(x, cos, sin):
    h = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., h:], x[..., :h]], dim=-1) * sin


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c.hidden_size
        self.self_attn = Attention(h, c.num_attention_heads)
        self.mlp = MLP(h, c.intermediate_size)
        self.input_layernorm = RMSNorm(h, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(h, c.rms_norm_eps)

    def forward(self, x, cos, sin, causal):
        a, nh = self.self_attn, self.self_attn.nh
        h = self.input_layernorm(x)
        q, k, v = (heads(p(h), nh) for p in (a.q_proj, a.k_proj, a.v_proj))
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        s = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5 + causal
        x = x + a.o_proj(merge(torch.softmax(s, -1) @ v))
        return x + self.mlp(self.post_attention_layernorm(x))


class GatedCrossAttentionLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c.hidden_size
        self.alpha_cross_attn = nn.Parameter(torch.zeros(1))  # IDEFICS: gates start at 0
        self.alpha_dense = nn.Parameter(torch.zeros(1))
        self.cross_attn = Attention(h, c.num_attention_heads, c.vision_embed_dim)
        self.mlp = MLP(h, c.intermediate_size)
        self.input_layernorm = RMSNorm(h, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(h, c.rms_norm_eps)

    def forward(self, x, img, img_mask, sees):
        """img [B, N*lat, E]; img_mask additive [B, 1, L, N*lat]; sees [B, L] bool."""
        a, nh = self.cross_attn, self.cross_attn.nh
        h = self.input_layernorm(x)
        q, k, v = heads(a.q_proj(h), nh), heads(a.k_proj(img), nh), heads(a.v_proj(img), nh)
        s = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5 + img_mask
        out = a.o_proj(merge(torch.softmax(s, -1) @ v)) * sees[:, :, None]
        x = x + torch.tanh(self.alpha_cross_attn) * out
        return x + torch.tanh(self.alpha_dense) * self.mlp(self.post_attention_layernorm(x))


class DecoupledEmbedding(nn.Module):
    def __init__(self, v, h):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(v, h))
        self.additional_embedding = nn.Embedding(2, h)

    def forward(self, ids):
        v = self.weight.shape[0]
        base = F.embedding(ids.clamp(max=v - 1), self.weight)
        extra = self.additional_embedding((ids - v).clamp(min=0))
        return torch.where((ids >= v)[..., None], extra, base)


class DecoupledLinear(nn.Module):
    def __init__(self, h, v):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(v, h) * h ** -0.5)
        self.additional_fc = nn.Linear(h, 2, bias=False)

    def forward(self, x):
        return torch.cat([F.linear(x, self.weight), self.additional_fc(x)], dim=-1)


class IdeficsModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = DecoupledEmbedding(c.vocab_size, c.hidden_size)
        self.vision_model = VisionModel(c)
        self.perceiver_resampler = PerceiverResampler(c)
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.num_hidden_layers))
        self.gated_cross_attn_layers = nn.ModuleList(
            GatedCrossAttentionLayer(c)
            for _ in range(c.num_hidden_layers // c.cross_layer_interval))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class Idefics(nn.Module):
    """IdeficsForVisionText2Text. forward(ids [B,L], image_of_token [B,L] (-1: none), latents
    [B, N, lat, E] or None) -> logits [B, L, V+2]. Right padding needs no mask (causal)."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = IdeficsModel(c)
        self.lm_head = DecoupledLinear(c.hidden_size, c.vocab_size)
        hd = c.hidden_size // c.num_attention_heads
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        emb = torch.cat([torch.outer(torch.arange(2048).float(), inv)] * 2, dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def images(self, vision_features):
        """last_hidden_state [n, P, E] -> perceiver latents [n, lat, E]."""
        return self.model.perceiver_resampler(vision_features)

    def forward(self, ids, image_of_token=None, latents=None, gates=True):
        m, c = self.model, self.c
        B, L = ids.shape
        x = m.embed_tokens(ids)
        cos, sin = self.cos[:L][None, None], self.sin[:L][None, None]
        causal = torch.full((L, L), float("-inf")).triu(1)
        use_img = gates and latents is not None
        if use_img:
            N, nl = latents.shape[1], latents.shape[2]
            img = latents.reshape(B, N * nl, -1)
            which = torch.arange(N).repeat_interleave(nl)             # [N*nl]
            allowed = image_of_token[:, :, None] == which[None, None]  # [B, L, N*nl]
            sees = allowed.any(-1)
            img_mask = torch.zeros(B, 1, L, N * nl).masked_fill(~allowed[:, None], -1e9)
        for i, layer in enumerate(m.layers):
            if i % c.cross_layer_interval == 0:
                g = m.gated_cross_attn_layers[i // c.cross_layer_interval]
                if use_img:
                    x = g(x, img, img_mask, sees)
                else:  # no image anywhere: only the gated dense branch
                    x = x + torch.tanh(g.alpha_dense) * g.mlp(g.post_attention_layernorm(x))
            x = layer(x, cos, sin, causal)
        return self.lm_head(m.norm(x))
