// CLIP's text tokenizer: ids identical to transformers v4.44.2's slow CLIPTokenizer without
// ftfy (tests/golden/clip-tiny/README.md pins the semantics):
//  1. the exact strings of the special tokens (and of the added tokens tokenizer_config.json
//     lists) are split out first and map straight to their ids;
//  2. each other piece goes through BERT's BasicTokenizer cleanup (do_lower_case, no accent
//     stripping, no punctuation split): drop U+0000, U+FFFD and category C* code points except
//     \t \n \r; whitespace (\t \n \r, Zs) -> ' '; spaces around CJK ideographs; NFC; split on
//     str.isspace(); str.lower() per word;
//  3. CLIP's pre-tokenizer regex (case-insensitive) cuts each word into pre-tokens
//     (<|startoftext|>, <|endoftext|>, 's 't 're 've 'm 'll 'd, letter runs, single numbers,
//     runs of anything else);
//  4. each pre-token's UTF-8 bytes go through GPT-2's bytes-to-unicode map and BPE (merge
//     ranks from merges.txt, "</w>" on the last symbol); a symbol missing from the vocab is
//     the unknown token.
// encode() wraps the ids in <|startoftext|> ... <|endoftext|> and truncates to the context
// length, keeping the end token. Invalid UTF-8 bytes decode to lone surrogates
// (model/utf8.h), which step 2 drops like any category-C code point: they never produce ids.
// Unicode data: model/unicode_classes.h (Unicode 14.0, Debian 12's Python 3.11).
// Torch-free. Thread-safety: immutable after load(); encode()/tokens() are const and may run
// concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace flamingo {

class ClipTokenizer {
 public:
  // Reads <model_dir>/vocab.json and merges.txt, and the special tokens from
  // special_tokens_map.json / tokenizer_config.json when present (defaults: bos
  // <|startoftext|>, eos, unk and pad <|endoftext|>, like CLIPTokenizer). As transformers does,
  // the first line of merges.txt (the "#version" header) is skipped and at most 48894 merges
  // are used. A special token missing from vocab.json is added after it (ids vocab_size(),
  // vocab_size() + 1, ...), as transformers adds it. Throws flamingo::Error naming the file on a
  // missing or unreadable file, bad JSON, a bad merge line or a merge symbol not in the vocab.
  static std::unique_ptr<ClipTokenizer> load(const std::string& model_dir);

  // <|startoftext|> + ids + <|endoftext|>, at most `context_length` (>= 2, else Error) ids: a
  // longer text keeps its first context_length - 2 token ids and the end token; *truncated
  // (when given) says whether ids were dropped.
  std::vector<int32_t> encode(std::string_view text, int32_t context_length = 77,
                              bool* truncated = nullptr) const;

  // The BPE token strings of `text` (transformers' tokenize()), without start/end tokens and
  // untruncated. A special token in the text is its own string.
  std::vector<std::string> tokens(std::string_view text) const;

  // The id of a token string (transformers' convert_tokens_to_ids): added/special tokens
  // first, then the vocab, else the unknown token's id.
  int32_t token_to_id(const std::string& token) const;

  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  int32_t unk_id() const { return unk_id_; }
  // <|endoftext|> unless special_tokens_map.json / tokenizer_config.json name another pad token
  // (a null pad token also falls back to the end token).
  int32_t pad_id() const { return pad_id_; }
  // Entries in vocab.json (transformers' vocab_size: special tokens added beyond it excluded).
  int32_t vocab_size() const { return static_cast<int32_t>(vocab_.size()); }
  // tokenizer_config.json's model_max_length when it is a sane number, else 77.
  int32_t model_max_length() const { return model_max_length_; }

 private:
  ClipTokenizer() = default;

  // Steps 2-4 for one piece of text without special tokens.
  void tokenize_piece(std::u32string_view piece, std::vector<std::string>* out) const;
  // Step 4 for one pre-token (UTF-8).
  void bpe(const std::string& pretoken, std::vector<std::string>* out) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<std::string, int32_t> merge_ranks_;  // "first second" -> rank
  std::vector<std::pair<std::string, int32_t>> added_;    // special/added tokens, longest first
  std::string byte_symbols_[256];                         // bytes-to-unicode, as UTF-8
  int32_t bos_id_ = 0, eos_id_ = 0, unk_id_ = 0, pad_id_ = 0;
  int32_t model_max_length_ = 77;
};

}  // namespace flamingo
