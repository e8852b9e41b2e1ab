#!/usr/bin/python3
"""Test oracle for model/tokenizer.cpp and model/prompt.cpp.

An independent Python rendition of what transformers v4.44.2 does with a slow LlamaTokenizer
(tokenization_utils_base._from_pretrained loading, PreTrainedTokenizer._add_tokens, Trie.split,
PreTrainedTokenizer.tokenize / _decode, LlamaTokenizer.tokenize / _tokenize /
convert_tokens_to_string) and with IdeficsProcessor.__call__'s prompt string, on top of
python3-sentencepiece (the same sentencepiece 0.1.97 release, a different build). For
legacy=False the model proto is edited with sentencepiece_model_pb2, as HF does.

Usage: spm_oracle.py request.json response.json
request:  {"model_dir": str, "encode": [str], "encode_special": [str],
           "decode": [{"ids": [int], "skip": bool}], "prompts": [[{"text": str} | {"image": 1}]]}
response: {"info": {...}, "encode": [[int]], "encode_special": [[int]], "decode": [str],
           "prompts": [[int]]}
"""

import json
import os
import sys

import sentencepiece as spm

SPIECE_UNDERLINE = "\u2581"
ATTRS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
         "mask_token"]


class Tok:
    """An AddedToken: content plus the flags that slow tokenization looks at."""

    def __init__(self, content, lstrip=False, rstrip=False, single_word=False, obj=False):
        self.content = content
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.single_word = single_word
        self.obj = obj  # True for an AddedToken object (dict in the files), False for a str


def parse_tok(value):
    if value is None:
        return None
    if isinstance(value, str):
        return Tok(value)
    return Tok(value["content"], bool(value.get("lstrip", False)),
               bool(value.get("rstrip", False)), bool(value.get("single_word", False)), True)


def read_json(path):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class TrieSplitter:
    """Trie.split from tokenization_utils, rewritten: dict-of-dicts, "" marks a word end."""

    def __init__(self, words):
        self.root = {}
        for w in words:
            node = self.root
            for ch in w:
                node = node.setdefault(ch, {})
            node[""] = 1

    def split(self, text):
        states = {}  # start -> node; insertion order == start order
        cuts = [0]
        skip = 0
        n = len(text)
        for cur, ch in enumerate(text):
            if skip and cur < skip:
                continue
            dead = set()
            matched = False
            for start, node in states.items():
                if "" in node:
                    end = cur
                    for ls, lnode in states.items():
                        if ls > start:
                            break
                        if ls < start:
                            idx = cur + 1
                            end = cur + 1
                        else:
                            idx = cur
                            end = cur
                        if "" in lnode:
                            start, end, skip = ls, idx, idx
                        while idx < n and text[idx] in lnode:
                            lnode = lnode[text[idx]]
                            idx += 1
                            if "" in lnode:
                                start, end, skip = ls, idx, idx
                    cuts += [start, end]
                    matched = True
                    break
                if ch in node:
                    states[start] = node[ch]
                else:
                    dead.add(start)
            if matched:
                states = {}
            else:
                for s in dead:
                    del states[s]
            if cur >= skip and ch in self.root:
                states[cur] = self.root[ch]
        for start, node in states.items():
            if "" in node:
                cuts += [start, n]
                break
        cuts.append(n)
        out = []
        prev = 0
        for c in cuts:
            if prev >= c:
                continue
            out.append(text[prev:c])
            prev = c
        return out


class SlowLlama:
    def __init__(self, model_dir):
        cfg = read_json(os.path.join(model_dir, "tokenizer_config.json")) or {}
        self.legacy = cfg.get("legacy")
        if self.legacy is None:
            self.legacy = True
        self.add_prefix_space = cfg.get("add_prefix_space", True)
        if self.add_prefix_space is None:
            self.add_prefix_space = True
        self.clean_up = bool(cfg.get("clean_up_tokenization_spaces", False))
        self.split_special = bool(cfg.get("split_special_tokens", False))

        special = {"bos_token": Tok("<s>"), "eos_token": Tok("</s>"), "unk_token": Tok("<unk>")}
        for a in ATTRS:
            if a in cfg:
                special[a] = parse_tok(cfg[a])
        additional = [parse_tok(t) for t in (cfg.get("additional_special_tokens") or [])]

        decoder = {}  # id -> Tok
        if "added_tokens_decoder" in cfg:
            for k, v in cfg["added_tokens_decoder"].items():
                decoder[int(k)] = parse_tok(v)
        else:
            smap = read_json(os.path.join(model_dir, "special_tokens_map.json"))
            if smap:
                for key, value in smap.items():
                    if key == "additional_special_tokens" and isinstance(value, list):
                        for t in value:
                            t = parse_tok(t)
                            if t.content not in [a.content for a in additional]:
                                additional.append(t)
                    elif key in ATTRS:
                        special[key] = parse_tok(value)
            added = read_json(os.path.join(model_dir, "added_tokens.json"))
            if added:
                for content, idx in added.items():
                    decoder[idx] = Tok(content)

        path = os.path.join(model_dir, "tokenizer.model")
        self.sp = spm.SentencePieceProcessor()
        if self.legacy:
            self.sp.Load(path)
        else:
            from sentencepiece import sentencepiece_model_pb2 as pb2
            with open(path, "rb") as f:
                proto = pb2.ModelProto.FromString(f.read())
            spec = pb2.NormalizerSpec()
            spec.add_dummy_prefix = False
            proto.normalizer_spec.MergeFrom(spec)
            self.sp.LoadFromSerializedProto(proto.SerializeToString())
        self.vocab_size = self.sp.get_piece_size()

        self.decoder = dict(decoder)
        self.encoder = {t.content: i for i, t in self.decoder.items()}

        # _add_tokens(all_special_tokens_extended, special_tokens=True)
        extended = []
        seen = set()
        for a in ATTRS:
            t = special.get(a)
            if t is not None and t.content not in seen:
                seen.add(t.content)
                extended.append(t)
        for t in additional:
            if t.content not in seen:
                seen.add(t.content)
                extended.append(t)
        vocab = {}
        for i in range(self.vocab_size):
            vocab[self.decoder[i].content if i in self.decoder else self.sp.IdToPiece(i)] = i
        vocab.update(self.encoder)
        new_idx = len(vocab)
        count = 0
        for t in extended:
            if t.content == "":
                continue
            if not t.obj and t.content in self.encoder:
                continue
            if t.content in vocab:
                idx = vocab[t.content]
            else:
                idx = new_idx + count
                count += 1
                vocab[t.content] = idx
            self.decoder[idx] = t
            self.encoder[t.content] = idx
        self.trie = TrieSplitter([t.content for t in self.decoder.values()])

        self.special = {a: (t.content if t is not None else None) for a, t in special.items()}
        self.additional = [t.content for t in additional]
        self.all_special_tokens = []
        for a in ATTRS:
            if self.special.get(a) is not None and self.special[a] not in self.all_special_tokens:
                self.all_special_tokens.append(self.special[a])
        for t in self.additional:
            if t not in self.all_special_tokens:
                self.all_special_tokens.append(t)
        self.all_special_ids = [self.to_id(t) for t in self.all_special_tokens]
        self.unk = self.special.get("unk_token")
        if not self.legacy:
            self.unk_len = len(self.sp.encode(self.unk, out_type=str))

    def to_id(self, token):
        if token in self.encoder:
            return self.encoder[token]
        return self.sp.piece_to_id(token)

    def sp_tokenize(self, text):  # LlamaTokenizer._tokenize
        if self.legacy or not text.startswith((SPIECE_UNDERLINE, " ")):
            return self.sp.encode(text, out_type=str)
        pieces = self.sp.encode(self.unk + text, out_type=str)
        return pieces[self.unk_len:] if len(pieces) >= self.unk_len else pieces

    def base_tokenize(self, text, split_special):  # PreTrainedTokenizer.tokenize
        if split_special:
            keep = {}
            pieces = [text]
        else:
            keep = self.encoder
            pieces = self.trie.split(text)
        for i in range(len(pieces)):
            tok = pieces[i]
            if tok not in keep:
                continue
            ext = self.decoder[self.encoder[tok]]
            left = pieces[i - 1] if i > 0 else None
            right = pieces[i + 1] if i + 1 < len(pieces) else None
            if ext.rstrip and right:
                pieces[i + 1] = right.lstrip()
            if ext.lstrip and left:
                pieces[i - 1] = left.rstrip()
            if ext.single_word and left and left[-1] != " ":
                pieces[i - 1] += tok
                pieces[i] = ""
            elif ext.single_word and right and right[0] != " ":
                pieces[i + 1] = tok + pieces[i + 1]
                pieces[i] = ""
        out = []
        for p in pieces:
            if not p:
                continue
            if p in keep:
                out.append(p)
            else:
                out.extend(self.sp_tokenize(p))
        return out

    def tokenize(self, text, split_special=None):  # LlamaTokenizer.tokenize
        if split_special is None:
            split_special = self.split_special
        if self.legacy or len(text) == 0:
            return self.base_tokenize(text, split_special)
        text = text.replace(SPIECE_UNDERLINE, " ")
        if self.add_prefix_space:
            text = SPIECE_UNDERLINE + text
        tokens = self.base_tokenize(text, split_special)
        if len(tokens) > 1 and tokens[0] == SPIECE_UNDERLINE and tokens[1] in self.all_special_tokens:
            tokens = tokens[1:]
        return tokens

    def encode(self, text, split_special=None):
        return [self.to_id(t) for t in self.tokenize(text, split_special)]

    def tokens_to_string(self, tokens):  # LlamaTokenizer.convert_tokens_to_string
        if tokens[0].startswith(SPIECE_UNDERLINE) and self.add_prefix_space:
            tokens[0] = tokens[0][1:]
        cur = []
        out = ""
        prev_special = False
        for i, t in enumerate(tokens):
            if t in self.all_special_tokens:
                if not prev_special and i != 0 and self.legacy:
                    out += " "
                out += self.sp.decode(cur) + t
                prev_special = True
                cur = []
            else:
                if prev_special and i == 1 and self.add_prefix_space and not t.startswith(SPIECE_UNDERLINE):
                    out += " "
                cur.append(t)
                prev_special = False
        out += self.sp.decode(cur)
        return out

    def decode(self, ids, skip):  # PreTrainedTokenizer._decode, default arguments
        tokens = []
        for i in ids:
            if skip and i in self.all_special_ids:
                continue
            tokens.append(self.decoder[i].content if i in self.decoder else self.sp.IdToPiece(i))
        legacy_added = (set(self.encoder) - set(self.all_special_tokens)) | {
            t for t in self.additional if self.to_id(t) >= self.vocab_size}
        subs = []
        cur = []
        for t in tokens:
            if t in legacy_added:
                if cur:
                    s = self.tokens_to_string(cur)
                    if s:
                        subs.append(s)
                    cur = []
                subs.append(t)
            else:
                cur.append(t)
        if cur:
            subs.append(self.tokens_to_string(cur))
        text = " ".join(subs)
        if self.clean_up:
            for a, b in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                         (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"),
                         (" 're", "'re")]:
                text = text.replace(a, b)
        return text

    def idefics_prompt(self, items):
        """IdeficsProcessor.__call__ (defaults) for one prompt: the full string, tokenized."""
        use_eou = "<end_of_utterance>" in self.additional
        full = self.special["bos_token"]
        last_was_image = False
        last_was_text = False
        for i, item in enumerate(items):
            if i > 0:
                last_was_text = not last_was_image
            if "text" in item:
                text = item["text"].strip(" ")
                if use_eou and last_was_text:
                    full += "<end_of_utterance>"
                full += text
                last_was_image = False
            else:
                if last_was_image:
                    full += "<image><fake_token_around_image>"
                else:
                    full += "<fake_token_around_image><image><fake_token_around_image>"
                last_was_image = True
        return self.encode(full, split_special=False)


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        req = json.load(f)
    tok = SlowLlama(req["model_dir"])
    resp = {
        "info": {
            "legacy": tok.legacy,
            "bos_id": tok.to_id(tok.special["bos_token"]) if tok.special.get("bos_token") else -1,
            "eos_id": tok.to_id(tok.special["eos_token"]) if tok.special.get("eos_token") else -1,
            "unk_id": tok.to_id(tok.special["unk_token"]) if tok.special.get("unk_token") else -1,
            "pad_id": tok.to_id(tok.special["pad_token"]) if tok.special.get("pad_token") else -1,
            "all_special_ids": sorted(set(tok.all_special_ids)),
            "max_id_plus_1": max([tok.vocab_size] + [i + 1 for i in tok.decoder]),
            "eou_id": tok.to_id("<end_of_utterance>") if "<end_of_utterance>" in tok.additional else -1,
        },
        "encode": [tok.encode(t, split_special=True) for t in req.get("encode", [])],
        "encode_special": [tok.encode(t) for t in req.get("encode_special", [])],
        "decode": [tok.decode(d["ids"], d["skip"]) for d in req.get("decode", [])],
        "prompts": [tok.idefics_prompt(p) for p in req.get("prompts", [])],
    }
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(resp, f)


if __name__ == "__main__":
    main()
