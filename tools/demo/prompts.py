#!/usr/bin/python3
"""The demo Flamingo's prompt formats and their token ids, shared by training
(train_flamingo.py), evaluation (eval_flamingo.py) and the tests.

A prompt is a list of items: ("image", Scene), ("text", str) or ("eou",) (the
<end_of_utterance> token). The formats are the server's own:

* templates/idefics.json (the Caption and AnswerQuestion RPCs):
    caption   [image, "Caption:"]                          -> " two red circles\\n"
    question  [image, "Question: {q} Answer:"]             -> " red\\n"
    few-shot  demos [image, "{label}: {answer}\\n"] ... then [image, "{label}:"] -> " {answer}\\n"
              (the label is "Answer" in the anonymous style, "Count"/"Colour"/... when named;
              demos sent through the raw Generate RPC may leave the "\\n" out: both are trained)
  the answer is followed by "\\n" and </s>, so the templates' stop "\\n" and the raw Generate
  RPC (which stops at </s>) both end after the answer.
* templates/idefics-chat.json (HTTP chat completions), a question with its image after or
  before the text:
    [text "User: {q}", image, eou, text "\\nAssistant:"]   -> " red" <end_of_utterance>
    [text "User:", image, text "{q}", eou, text "\\nAssistant:"]

Token ids follow model/prompt.cpp (IdeficsProcessor with a legacy LlamaTokenizer): <s>, then per
image <fake_token_around_image><image><fake_token_around_image> (two images in a row share the
middle fake token); a text item (texts and tokens joined) loses the spaces at its two ends and
each text run between tokens is encoded on its own by sentencepiece (with its dummy prefix).
Which image a token sees: the most recent <image> (the <image> token itself included); tokens
before the first image see none (no </s> occurs inside these prompts).
"""

import dataclasses

import scenes as S

IMAGE, TEXT, EOU = "image", "text", "eou"
FAKE_TOKEN, IMAGE_TOKEN, EOU_TOKEN = "<fake_token_around_image>", "<image>", "<end_of_utterance>"


def caption_prompt(scene):
    return [(IMAGE, scene), (TEXT, "Caption:")]


def question_prompt(scene, question):
    return [(IMAGE, scene), (TEXT, f"Question: {question} Answer:")]


def few_shot_prompt(episode, newline=True):
    items = []
    for scene, text in episode.demos:
        items += [(IMAGE, scene), (TEXT, text + "\n" if newline else text)]
    return items + [(IMAGE, episode.query), (TEXT, episode.prompt)]


def chat_prompt(scene, question, image_first=False):
    if image_first:
        return [(TEXT, "User:"), (IMAGE, scene), (TEXT, question), (EOU,), (TEXT, "\nAssistant:")]
    return [(TEXT, f"User: {question}"), (IMAGE, scene), (EOU,), (TEXT, "\nAssistant:")]


# Score ranking: the shape question of a scene, every shape name as a candidate.
SCORE_CANDIDATES = [" " + s for s in S.SHAPES]


def images_of(items):
    return [it[1] for it in items if it[0] == IMAGE]


@dataclasses.dataclass
class Ids:
    ids: list        # token ids
    image: list      # per token: index of the image it sees, -1 for none


class Encoder:
    """Token ids of prompts and answers with the demo tokenizer (python3-sentencepiece, the
    library the server links)."""

    def __init__(self, sp, vocab_size):
        self.sp = sp
        self.bos, self.eos = sp.bos_id(), sp.eos_id()
        self.fake, self.image = vocab_size, vocab_size + 1
        self.eou = sp.piece_to_id(EOU_TOKEN)
        self.newline = sp.piece_to_id("<0x0A>")
        if self.eou == sp.unk_id() or self.newline == sp.unk_id():
            raise ValueError("tokenizer: <end_of_utterance> and <0x0A> must be pieces")
        self._cache = {}

    def text(self, s):
        if s not in self._cache:
            self._cache[s] = self.sp.encode(s) if s else []
        return self._cache[s]

    def prompt(self, items):
        """Ids of a prompt and the image each token sees (model/prompt.cpp's rules)."""
        out = Ids([self.bos], [-1])
        n_img, prev = -1, None
        i = 0
        while i < len(items):
            kind = items[i][0]
            if kind == IMAGE:
                n_img += 1
                if prev != IMAGE:
                    out.ids.append(self.fake)
                    out.image.append(n_img - 1)
                out.ids += [self.image, self.fake]
                out.image += [n_img, n_img]
                prev, i = IMAGE, i + 1
                continue
            if prev is not None and prev != IMAGE:
                raise ValueError("prompts: two text items in a row (the processor would put "
                                 "<end_of_utterance> between them)")
            end = i + 1
            while end < len(items) and items[end][0] != IMAGE:
                end += 1
            runs = []  # text runs and token ids of this one processor text item
            for k in range(i, end):
                if items[k][0] == EOU:
                    runs.append(self.eou)
                else:
                    text = items[k][1]
                    if k == i:
                        text = text.lstrip(" ")
                    if k == end - 1:
                        text = text.rstrip(" ")
                    if runs and isinstance(runs[-1], str):
                        runs[-1] += text
                    else:
                        runs.append(text)
            for r in runs:
                ids = self.text(r) if isinstance(r, str) else [r]
                out.ids += ids
                out.image += [n_img] * len(ids)
            prev, i = TEXT, end
        return out

    def answer(self, last_text, answer, chat=False):
        """Ids the model should generate after a prompt whose last text run is `last_text`:
        encode(last_text + " " + answer + "\\n") beyond encode(last_text), then </s>; in the
        chat format the answer ends with <end_of_utterance> instead."""
        head = self.text(last_text)
        full = self.text(last_text + " " + answer + ("" if chat else "\n"))
        if full[:len(head)] != head:
            raise ValueError(f"tokenizer: {last_text!r} + answer does not extend its ids")
        return full[len(head):] + [self.eou if chat else self.eos]
