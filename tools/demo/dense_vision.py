#!/usr/bin/python3
"""Stage 1b of the demo Flamingo (tools/demo/train_flamingo.py): the demo CLIP's vision tower
fine-tuned on a dense objective on the tokens IDEFICS reads (its last_hidden_state), so that
they say where things are. Linear heads, dropped after."""

import torch
import torch.nn.functional as F

import scenes as S
from train_loop import run_stage

def dense_targets(scene, grid, patch):
    """Per patch token: its own 3x3 cell; colour, shape, size and centre cell of the object
    whose box holds the patch's centre pixel (0: none, else 1 + index; boxes never overlap);
    and the object count - 1."""
    cell, colour, shape, size, where = [], [], [], [], []
    for r in range(grid):
        for c in range(grid):
            x, y = c * patch + patch // 2, r * patch + patch // 2
            cell.append((y * 3 // S.CANVAS) * 3 + x * 3 // S.CANVAS)
            hit = [o for o in scene.objects
                   if abs(x - o.x) <= S.SIZES[o.size] and abs(y - o.y) <= S.SIZES[o.size]]
            o = hit[0] if hit else None
            colour.append(1 + list(S.COLOURS).index(o.colour) if o else 0)
            shape.append(1 + S.SHAPES.index(o.shape) if o else 0)
            size.append(1 + list(S.SIZES).index(o.size) if o else 0)
            where.append(1 + S.POSITIONS.index(o.position) if o else 0)
    return cell, colour, shape, size, where, len(scene.objects) - 1


def kind_counts(scene):
    """How many objects of each shape (SHAPES order), then of each colour (COLOURS order):
    14 counts of 0..4 (--vision-counts' class-token targets)."""
    return ([sum(o.shape == s for o in scene.objects) for s in S.SHAPES]
            + [sum(o.colour == c for o in scene.objects) for c in S.COLOURS])


KINDS = len(S.SHAPES) + len(S.COLOURS)
MAX_COUNT = 4


class SceneHeads(torch.nn.Module):
    def __init__(self, e, kinds=False):
        super().__init__()
        self.splits = (9, 9, 7, 3, 10)
        self.patch = torch.nn.Linear(e, sum(self.splits))
        self.count = torch.nn.Linear(e, 4)
        self.kinds = torch.nn.Linear(e, KINDS * (MAX_COUNT + 1)) if kinds else None

    def forward(self, h):
        """h [B, 1 + P, E] -> (cell, colour, shape, size, position logits per patch, count
        logits[, per-shape and per-colour count logits [B, KINDS, 5]])."""
        out = (*self.patch(h[:, 1:]).split(self.splits, dim=-1), self.count(h[:, 0]))
        if self.kinds is None:
            return out
        return (*out, self.kinds(h[:, 0]).unflatten(-1, (KINDS, MAX_COUNT + 1)))


def dense_data(world, c, n_targets, seed):
    """The dense targets of every pool scene (the first n_targets of dense_targets' lists),
    how many leading scenes are held out, and a batch sampler over the rest."""
    grid = c.image_size // c.patch_size
    t = [dense_targets(s, grid, c.patch_size) for s in world.scenes]
    tg = [torch.tensor([x[k] for x in t]) for k in range(n_targets)]
    n_test = min(1000, len(world.scenes) // 8)
    train_idx = torch.arange(n_test, len(world.scenes))
    g = torch.Generator().manual_seed(seed)

    def batch(size):
        return (train_idx[torch.randint(len(train_idx), (size,), generator=g)],)
    return tg, n_test, batch


def patch_accuracy(pred, tg, idx):
    """Per-patch accuracy of predictions pred (argmaxes in dense_targets' order) on scenes idx:
    the patch's cell over all patches, the object's attributes over covered patches."""
    covered = tg[1][idx] > 0
    acc = {"cell": float((pred[0] == tg[0][idx]).float().mean())}
    attrs = {name: float((pred[k] == tg[k][idx])[covered].float().mean())
             for k, name in ((1, "colour"), (2, "shape"), (3, "size"), (4, "position"))}
    return acc, covered, attrs


def train_vision(vision, world, c, a, steps=None):
    """Stage 1b: the dense objective above (and with a.vision_counts, the class token also
    predicts how many objects of each shape and of each colour the scene holds) for `steps`
    (default a.vision_steps) from the tower's current weights; returns seconds."""
    tg, n_test, batch = dense_data(world, c, 6, a.seed)
    counts = a.vision_counts
    if counts:
        tg.append(torch.tensor([kind_counts(s) for s in world.scenes]))
    heads = SceneHeads(c.vision_embed_dim, kinds=counts)
    params = list(vision.parameters()) + list(heads.parameters())

    def losses(idx):
        out = heads(vision(world.pixels(idx)))
        return [F.cross_entropy(o.flatten(0, -2), y[idx].flatten()) for o, y in zip(out, tg)]

    secs = run_stage("vision", params=params, steps=a.vision_steps if steps is None else steps,
                     lr=a.vision_lr,
                     make_batch=lambda step: batch(a.vision_batch),
                     loss_fn=lambda idx: sum(losses(idx)), log_every=a.log_every)
    with torch.no_grad():
        idx = torch.arange(n_test)
        pred = [o.argmax(-1) for o in heads(vision(world.pixels(idx)))]
        acc, covered, attrs = patch_accuracy(pred, tg, idx)
        acc.update({"covered patches": float(covered.sum()),
                    "covered-or-not": float(((pred[1] > 0) == covered).float().mean())})
        acc.update(attrs)
        acc["count"] = float((pred[5] == tg[5][idx]).float().mean())
        if counts:
            ok = pred[6] == tg[6][idx]
            acc["shape counts"] = float(ok[:, :len(S.SHAPES)].float().mean())
            acc["colour counts"] = float(ok[:, len(S.SHAPES):].float().mean())
    print(f"vision: dense heads on {n_test} pool scenes left out of training: "
          + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()), flush=True)
    return secs


def train_perceiver(model, world, c, a):
    """Stage 1c (--perceiver-steps > 0): the Perceiver Resampler pretrained on the frozen
    tower's features with the dense objective moved onto its latents: latent i (of the first
    64 patch-count latents) predicts what patch token i predicts in stage 1b (its own cell;
    colour, shape, size and position of the object covering it, or none). Latents that each
    keep one place of the image keep which colour goes with which shape; latents that average
    over the image do not (see docs/DEMO.md). Linear heads, dropped after; the perceiver
    trains on in stage 3. Returns seconds."""
    patches = (c.image_size // c.patch_size) ** 2
    if c.perceiver_latents < patches:
        raise SystemExit(f"train_flamingo: --perceiver-steps needs >= {patches} latents")
    tg, n_test, batch = dense_data(world, c, 5, a.seed + 1)
    heads = SceneHeads(c.vision_embed_dim)
    perceiver = model.model.perceiver_resampler
    params = list(perceiver.parameters()) + list(heads.patch.parameters())

    def out(idx):
        lat = perceiver(world.features[idx])[:, :patches]
        return heads.patch(lat).split(heads.splits, dim=-1)

    def loss(idx):
        return sum(F.cross_entropy(o.flatten(0, -2), y[idx].flatten())
                   for o, y in zip(out(idx), tg))

    secs = run_stage("perceiver", params=params, steps=a.perceiver_steps, lr=a.perceiver_lr,
                     make_batch=lambda step: batch(a.vision_batch), loss_fn=loss,
                     log_every=a.log_every)
    with torch.no_grad():
        idx = torch.arange(n_test)
        acc, _, attrs = patch_accuracy([o.argmax(-1) for o in out(idx)], tg, idx)
        acc.update(attrs)
    print(f"perceiver: latent heads on {n_test} pool scenes left out of training: "
          + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()), flush=True)
    return secs
