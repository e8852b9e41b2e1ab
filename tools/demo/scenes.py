#!/usr/bin/python3
"""A deterministic world of synthetic scenes and their texts, for the demo Flamingo (issue 12).

A scene is a muted background and 1-4 flat-coloured, non-overlapping objects, each in its own
cell of a 3x3 grid on a 64x64 canvas. Texts (captions, VQA, few-shot episodes) are pure
functions of the scene (plus an rng that picks what to ask). Everything is derived from
integer seeds through random.Random and SHA-256, so the same seed gives the same scene, the
same texts and the same pixels in every process. See tools/demo/README.md.

Run with Debian's /usr/bin/python3 (Pillow):
  tools/demo/scenes.py --out DIR --split train|heldout --count N [--seed S] [--start I] [--show]
  tools/demo/scenes.py --corpus FILE --count N [--split S] [--seed S]
"""

import argparse
import dataclasses
import hashlib
import json
import os
import random
import re
import sys

CANVAS = 64
SHAPES = ("circle", "square", "triangle", "star", "cross", "heart")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles",
           "star": "stars", "cross": "crosses", "heart": "hearts"}
COLOURS = {"red": (220, 20, 20), "green": (20, 160, 40), "blue": (30, 60, 230),
           "yellow": (255, 230, 0), "purple": (130, 40, 190), "orange": (255, 128, 0),
           "white": (255, 255, 255), "black": (0, 0, 0)}
BACKGROUNDS = {"grey": (128, 128, 128), "slate": (96, 112, 128), "sand": (168, 152, 120),
               "sage": (120, 140, 110), "mauve": (150, 125, 135)}
SIZES = {"small": 7, "large": 12}            # radius in pixels of the 64x64 canvas
NUMBERS = ("zero", "one", "two", "three", "four")
ROWS, COLS = ("top", "", "bottom"), ("left", "", "right")
POSITIONS = ("top left", "top", "top right", "left", "center", "right",
             "bottom left", "bottom", "bottom right")
QUESTION_TYPES = ("colour", "shape", "count", "position", "size", "yesno")
FEW_SHOT_TASKS = ("count", "colour", "shape", "position")
TASK_LABELS = {"count": "Count", "colour": "Colour", "shape": "Shape", "position": "Position"}
SPLITS = ("train", "heldout")
MAX_OBJECTS = 4
CELL_MARGIN = 2     # an object's centre is at least this far inside its grid cell
GAP = 2             # bounding boxes of two objects are at least this far apart

# Polygons in hundredths of the radius (y down), all within [-100, 100]; circles are ellipses.
POLYGONS = {
    "square": ((-88, -88), (88, -88), (88, 88), (-88, 88)),
    "triangle": ((0, -100), (100, 87), (-100, 87)),
    "star": ((0, -91), (25, -25), (95, -22), (40, 22), (59, 90), (0, 51), (-59, 90),
             (-40, 22), (-95, -22), (-25, -25)),
    "cross": ((-34, -100), (34, -100), (34, -34), (100, -34), (100, 34), (34, 34), (34, 100),
              (-34, 100), (-34, 34), (-100, 34), (-100, -34), (-34, -34)),
}
_HEART_RIGHT = ((0, -47), (2, -55), (12, -73), (35, -88), (65, -88), (90, -69), (100, -41),
                (90, -10), (65, 19), (35, 44), (12, 67), (2, 84), (0, 91))
POLYGONS["heart"] = _HEART_RIGHT + tuple((-x, y) for x, y in reversed(_HEART_RIGHT[1:-1]))


@dataclasses.dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    x: int          # centre, pixels of the 64x64 canvas
    y: int

    @property
    def radius(self):
        return SIZES[self.size]

    @property
    def position(self):
        return position_of(self.x, self.y)


@dataclasses.dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple  # of Obj, sorted by (y, x): reading order, so equal scenes compare equal

    def to_dict(self):
        return {"background": self.background,
                "objects": [dict(dataclasses.asdict(o), position=o.position)
                            for o in self.objects]}

    @staticmethod
    def from_dict(d):
        return Scene(d["background"], tuple(sorted(
            (Obj(o["shape"], o["colour"], o["size"], o["x"], o["y"]) for o in d["objects"]),
            key=lambda o: (o.y, o.x))))


def _cell(v):
    """Grid row/column (0, 1, 2) of a pixel coordinate 0..63: 0..21, 22..42, 43..63."""
    return v * 3 // CANVAS


def position_of(x, y):
    """Position word of a centre: its 3x3 cell, named by row (top/-/bottom) + column."""
    words = [w for w in (ROWS[_cell(y)], COLS[_cell(x)]) if w]
    return " ".join(words) if words else "center"


def _cell_range(c, r):
    lo = (c * CANVAS + 2) // 3          # first pixel of cell c: 0, 22, 43
    hi = ((c + 1) * CANVAS + 2) // 3 - 1  # last pixel: 21, 42, 63
    return max(lo + CELL_MARGIN, r), min(hi - CELL_MARGIN, CANVAS - 1 - r)


def _apart(a, b):
    d = a.radius + b.radius + GAP
    return abs(a.x - b.x) >= d or abs(a.y - b.y) >= d


def _place(rng, specs):
    """Places (shape, colour, size) specs in distinct cells without overlap, or None."""
    for _ in range(20):                       # bounded restarts of the whole layout
        placed, cells = [], []
        for shape, colour, size in specs:
            r = SIZES[size]
            for _ in range(20):               # bounded tries per object
                cell = rng.choice([c for c in range(9) if c not in cells])
                (x0, x1), (y0, y1) = _cell_range(cell % 3, r), _cell_range(cell // 3, r)
                o = Obj(shape, colour, size, rng.randint(x0, x1), rng.randint(y0, y1))
                if all(_apart(o, p) for p in placed):
                    placed.append(o)
                    cells.append(cell)
                    break
            else:
                break
        else:
            return tuple(sorted(placed, key=lambda o: (o.y, o.x)))
    return None


def scene_digest(scene):
    text = json.dumps(scene.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).digest()


def split_of(scene):
    """The split a scene belongs to: a bit of the SHA-256 of its canonical description."""
    return SPLITS[scene_digest(scene)[0] & 1]


def sample_scene(rng, split=None, n_objects=None, uniform=False):
    """A random Scene. split: resample until split_of(scene) == split, so train and heldout
    never share a scene. n_objects: fixed count (else 1..4 uniform). uniform: every object has
    the same colour and shape (sizes vary) - the few-shot image kind."""
    while True:
        n = n_objects or rng.randint(1, MAX_OBJECTS)
        background = rng.choice(sorted(BACKGROUNDS))
        shape, colour = rng.choice(SHAPES), rng.choice(sorted(COLOURS))
        specs = []
        for _ in range(n):
            if not uniform:
                shape, colour = rng.choice(SHAPES), rng.choice(sorted(COLOURS))
            specs.append((shape, colour, rng.choice(sorted(SIZES))))
        objects = _place(rng, specs)
        if objects is None:
            continue                          # (never seen in practice; still deterministic)
        scene = Scene(background, objects)
        if split is None or split_of(scene) == split:
            return scene


def render(scene, size=CANVAS):
    """RGB PIL image; integer geometry, no anti-aliasing: same scene, same pixels."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (size, size), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        cx, cy, r = o.x * size // CANVAS, o.y * size // CANVAS, o.radius * size // CANVAS
        fill = COLOURS[o.colour]
        if o.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon([(cx + (2 * px * r + 100) // 200, cy + (2 * py * r + 100) // 200)
                          for px, py in POLYGONS[o.shape]], fill=fill)
    return img


# ----------------------------------------------------------------------------- texts
def _article(word):
    return "an" if word[0] in "aeiou" else "a"


def _np(n, colour, shape):
    if n == 1:
        return f"{_article(colour)} {colour} {shape}"
    return f"{NUMBERS[n]} {colour} {PLURALS[shape]}"


def groups(scene):
    """[(count, colour, shape)] in caption order: count descending, then colour in COLOURS
    order, then shape in SHAPES order."""
    counts = {}
    for o in scene.objects:
        counts[(o.colour, o.shape)] = counts.get((o.colour, o.shape), 0) + 1
    order = list(COLOURS)
    return sorted(((n, c, s) for (c, s), n in counts.items()),
                  key=lambda g: (-g[0], order.index(g[1]), SHAPES.index(g[2])))


def caption(scene):
    """'two red circles, a blue square and an orange star' (sizes and places not named)."""
    parts = [_np(*g) for g in groups(scene)]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def parse_caption(text):
    """Inverse of caption(): sorted [(count, colour, shape)], or None if malformed."""
    out = []
    for part in re.split(r", | and ", text):
        m = re.fullmatch(r"(a|an|one|two|three|four) (\w+) (\w+)", part)
        if not m or m.group(2) not in COLOURS:
            return None
        n = 1 if m.group(1) in ("a", "an") else NUMBERS.index(m.group(1))
        shape = m.group(3) if n == 1 else next((s for s, p in PLURALS.items()
                                                if p == m.group(3)), None)
        if shape not in SHAPES:
            return None
        out.append((n, m.group(2), shape))
    return sorted(out)


def _qa(qtype, question, answer):
    return {"type": qtype, "question": question, "answer": answer}


def ask(scene, qtype, rng, polarity=None):
    """One question of a type about the scene, as {type, question, answer}, or None when the
    scene has nothing unambiguous to ask (colour/shape/position/size need a unique referent).
    yesno: polarity True/False forces the answer, None picks yes or no with p=1/2."""
    objs = scene.objects
    by_shape = [s for s in SHAPES if sum(o.shape == s for o in objs) == 1]
    by_colour = [c for c in COLOURS if sum(o.colour == c for o in objs) == 1]
    by_pair = [o for o in objs if sum((p.colour, p.shape) == (o.colour, o.shape)
                                      for p in objs) == 1]
    if qtype == "colour" and by_shape:
        s = rng.choice(by_shape)
        return _qa(qtype, f"What colour is the {s}?",
                   next(o.colour for o in objs if o.shape == s))
    if qtype == "shape" and by_colour:
        c = rng.choice(by_colour)
        return _qa(qtype, f"What shape is the {c} object?",
                   next(o.shape for o in objs if o.colour == c))
    if qtype in ("position", "size") and by_pair:
        o = rng.choice(by_pair)
        if qtype == "position":
            return _qa(qtype, f"Where is the {o.colour} {o.shape}?", o.position)
        return _qa(qtype, f"What size is the {o.colour} {o.shape}?", o.size)
    if qtype == "count":
        kind = rng.randrange(4)               # objects, shape, shape (maybe absent), colour
        if kind == 0:
            return _qa(qtype, "How many objects are there?", NUMBERS[len(objs)])
        if kind == 3:
            c = rng.choice(sorted({o.colour for o in objs}))
            return _qa(qtype, f"How many {c} objects are there?",
                       NUMBERS[sum(o.colour == c for o in objs)])
        s = rng.choice(sorted({o.shape for o in objs}) if kind == 1 else SHAPES)
        return _qa(qtype, f"How many {PLURALS[s]} are there?",
                   NUMBERS[sum(o.shape == s for o in objs)])
    if qtype == "yesno":
        present = sorted({(o.colour, o.shape) for o in objs})
        yes = rng.random() < 0.5 if polarity is None else polarity
        if yes:
            c, s = rng.choice(present)
        else:
            absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
            near = [(c, s) for c, s in absent if any(c == pc or s == ps for pc, ps in present)]
            c, s = rng.choice(near if near and rng.random() < 0.5 else absent)
        return _qa(qtype, f"Is there {_article(c)} {c} {s}?", "yes" if yes else "no")
    return None


def qa_pairs(scene, rng, types=QUESTION_TYPES):
    """One question per askable type, in QUESTION_TYPES order."""
    return [q for q in (ask(scene, t, rng) for t in types) if q]


def caption_text(scene):
    return f"Caption: {caption(scene)}"


def qa_text(qa):
    return f"Question: {qa['question']} Answer: {qa['answer']}"


@dataclasses.dataclass
class Episode:
    task: str
    style: str
    demos: list       # [(Scene, text)], text e.g. "Answer: two" or "Count: two"
    query: Scene
    prompt: str       # text after the query image: "Answer:" or "Count:"
    answer: str       # expected continuation, e.g. "two"


def task_answer(scene, task):
    """Answer of a few-shot task on a uniform scene (all objects share colour and shape)."""
    o = scene.objects[0]
    return {"count": NUMBERS[len(scene.objects)], "colour": o.colour, "shape": o.shape,
            "position": o.position}[task]


def few_shot_episode(rng, task, n_demos, style="anonymous", split=None):
    """n_demos (image, answer) demos of one task, then a query image. Images are uniform
    scenes (1-4 objects of one colour and shape; position task: one object), so every task's
    answer is defined on every image. style 'anonymous': every text is 'Answer: X' and only
    the demos tell the task; 'named': 'Count: X' / 'Colour: X' / 'Shape: X' / 'Position: X'."""
    label = "Answer" if style == "anonymous" else TASK_LABELS[task]
    n = 1 if task == "position" else None
    scenes = [sample_scene(rng, split, n_objects=n, uniform=True) for _ in range(n_demos + 1)]
    demos = [(s, f"{label}: {task_answer(s, task)}") for s in scenes[:-1]]
    return Episode(task, style, demos, scenes[-1], f"{label}:", task_answer(scenes[-1], task))


# ----------------------------------------------------------------------------- splits
def scene_seed(split, index, seed=0, stream="scene"):
    """Integer seed of item `index` of a split: SHA-256 of
    'flamingo-demo/<stream>/<split>/<seed>/<index>', 64 bits, low bit forced to the split's
    (train 0, heldout 1), so train and heldout seeds are disjoint by construction."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    key = f"flamingo-demo/{stream}/{split}/{seed}/{index}".encode()
    h = int.from_bytes(hashlib.sha256(key).digest()[:8], "big")
    return (h & ~1) | SPLITS.index(split)


def split_rng(split, index, seed=0, stream="scene"):
    return random.Random(scene_seed(split, index, seed, stream))


def make_record(split, index, seed=0):
    """The scene of item `index` of a split and its texts (a JSON-ready dict + the Scene)."""
    rng = split_rng(split, index, seed)
    scene = sample_scene(rng, split)
    rec = {"split": split, "index": index, "seed": scene_seed(split, index, seed),
           "caption": caption(scene), "qa": qa_pairs(scene, rng), "scene": scene.to_dict()}
    return scene, rec


def eval_set(n, seed=0, split="heldout"):
    """A fixed evaluation set: n scenes with images, caption and every askable question type
    (yesno twice: one yes, one no)."""
    out = []
    for i in range(n):
        rng = split_rng(split, i, seed, stream="eval")
        scene = sample_scene(rng, split)
        qa = [q for t in QUESTION_TYPES if t != "yesno" for q in [ask(scene, t, rng)] if q]
        qa += [ask(scene, "yesno", rng, polarity=p) for p in (True, False)]
        out.append({"index": i, "scene": scene, "image": render(scene),
                    "caption": caption(scene), "qa": qa})
    return out


def eval_episodes(n, seed=0, n_demos=4, style="anonymous", split="heldout"):
    """n few-shot episodes, tasks cycling through FEW_SHOT_TASKS."""
    return [few_shot_episode(split_rng(split, i, seed, stream="episode"),
                             FEW_SHOT_TASKS[i % len(FEW_SHOT_TASKS)], n_demos, style, split)
            for i in range(n)]


# ----------------------------------------------------------------------------- vocabulary
TEMPLATE_WORDS = ("Caption Question Answer What colour is the shape object Where size How "
                  "many objects are there Is a an and yes no " + " ".join(TASK_LABELS.values()))
VOCABULARY = tuple(sorted(set(
    TEMPLATE_WORDS.split() + list(SHAPES) + list(PLURALS.values()) + list(COLOURS)
    + list(SIZES) + list(NUMBERS) + " ".join(POSITIONS).split() + ["?", ":", ","])))


def words(text):
    """Tokens of a generated text as VOCABULARY counts them: words and ? : , marks."""
    return re.findall(r"[A-Za-z]+|[^\sA-Za-z]", text)


def corpus_lines(count, split="train", seed=0, n_demos=3):
    """Plain text for tokenizer/LM training: per scene its caption line, its QA lines and
    one few-shot episode's demo texts (both styles alternate), one per line."""
    for i in range(count):
        scene, rec = make_record(split, i, seed)
        yield caption_text(scene)
        for qa in rec["qa"]:
            yield qa_text(qa)
        ep = few_shot_episode(split_rng(split, i, seed, stream="corpus"),
                              FEW_SHOT_TASKS[i % len(FEW_SHOT_TASKS)], n_demos,
                              ("anonymous", "named")[i // len(FEW_SHOT_TASKS) % 2], split)
        yield " ".join([t for _, t in ep.demos] + [f"{ep.prompt} {ep.answer}"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="directory for <split>.jsonl and <split>/NNNNNN.png")
    ap.add_argument("--corpus", help="write plain text lines for tokenizer/LM training")
    ap.add_argument("--split", default="train", choices=SPLITS)
    ap.add_argument("--count", type=int, required=True, help="number of scenes")
    ap.add_argument("--start", type=int, default=0, help="first scene index")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", action="store_true", help="print the first 3 records")
    a = ap.parse_args(argv)
    if not (a.out or a.corpus or a.show):
        ap.error("give --out, --corpus or --show")
    if a.corpus:
        with open(a.corpus, "w", encoding="utf-8") as f:
            for line in corpus_lines(a.count, a.split, a.seed):
                f.write(line + "\n")
    if a.out:
        os.makedirs(os.path.join(a.out, a.split), exist_ok=True)
    records = []
    if a.out or a.show:
        for i in range(a.start, a.start + (a.count if a.out else min(a.count, 3))):
            scene, rec = make_record(a.split, i, a.seed)
            rec = dict(image=f"{a.split}/{i:06d}.png", **rec)
            if a.out:
                render(scene).save(os.path.join(a.out, rec["image"]), format="PNG")
            records.append(rec)
    if a.out:
        with open(os.path.join(a.out, f"{a.split}.jsonl"), "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
    if a.show:
        for rec in records[:3]:
            print(json.dumps(rec, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
