// Tokenizer: the HF slow LlamaTokenizer of transformers v4.44.2 (tokenization_llama.py on top of
// tokenization_utils.py) over a sentencepiece model, reimplemented without Python.
//   - Loading follows PreTrainedTokenizerBase._from_pretrained: tokenizer_config.json's
//     "added_tokens_decoder" wins; without it, special_tokens_map.json and added_tokens.json are
//     read (the legacy path). Special tokens missing from the vocabulary are added at the end.
//   - A missing "legacy" key means legacy=true: every text segment gets sentencepiece's dummy
//     prefix. legacy=false follows HF: no dummy prefix, a "▁" prepended to the whole text and
//     the "<unk>" trick for segments that start with a space.
//   - encode_with_special_tokens() first splits on added-token strings with HF's Trie (earliest
//     start, longest match, lstrip/rstrip/single_word honoured); encode() never does.
//   - decode() is HF's _decode + LlamaTokenizer.convert_tokens_to_string.
// sentencepiece_processor.h is included by tokenizer.cpp only (it clashes with abseil): pimpl.
// Thread-safety: immutable after load(); every const method may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace flamingo {

// One piece of an already split input: literal text, or an added token given by id.
struct TokenSegment {
  enum class Kind { kText, kAddedToken };
  Kind kind = Kind::kText;
  std::string text;  // kText: literal UTF-8 text (never split on special strings)
  int32_t id = -1;   // kAddedToken: id of an added token (e.g. "<s>", "<image>")

  static TokenSegment literal(std::string text) { return {Kind::kText, std::move(text), -1}; }
  static TokenSegment added(int32_t id) { return {Kind::kAddedToken, {}, id}; }
};

class Tokenizer {
 public:
  // Reads <model_dir>/tokenizer.model (required) and, where present, tokenizer_config.json,
  // special_tokens_map.json and added_tokens.json. Throws flamingo::Error naming file and key.
  static std::unique_ptr<Tokenizer> load(const std::string& model_dir);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // One literal text segment (HF tokenize(text, split_special_tokens=True) + ids): a "<image>"
  // typed by a user is text. No bos/eos is added.
  std::vector<int32_t> encode(std::string_view text) const;
  // HF tokenizer(text, add_special_tokens=False)["input_ids"]: splits on added tokens first.
  std::vector<int32_t> encode_with_special_tokens(std::string_view text) const;
  // HF tokenize() of the concatenation of the segments, as if the trie had split it exactly
  // there: text segments are literal, consecutive text segments are NOT merged (merge them
  // yourself if HF would see one run), empty text segments are dropped. Throws if an
  // kAddedToken id is not an added token.
  std::vector<int32_t> encode_segments(std::span<const TokenSegment> segments) const;

  // HF tokenizer.decode(ids, skip_special_tokens=...) with the slow LlamaTokenizer
  // (spaces_between_special_tokens=True, clean_up_tokenization_spaces from the config).
  // Throws flamingo::Error for an id outside [0, size()).
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  // Added-token content or sentencepiece piece; throws for an id without one (!has_token).
  std::string id_to_piece(int32_t id) const;
  // Added/special token or sentencepiece piece; nullopt if neither.
  std::optional<int32_t> token_to_id(std::string_view token) const;

  int32_t bos_id() const;  // -1 if the tokenizer has none
  int32_t eos_id() const;
  int32_t unk_id() const;
  int32_t pad_id() const;
  int32_t size() const;     // max(sentencepiece pieces, largest added id + 1)
  int32_t sp_size() const;  // sentencepiece pieces only (HF vocab_size)
  // A sentencepiece piece or an added token has this id (ids between them may have none).
  bool has_token(int32_t id) const;
  bool is_special(int32_t id) const;  // HF all_special_ids
  bool add_bos() const;               // add_bos_token
  bool legacy() const;
  bool clean_up_tokenization_spaces() const;  // decode() rewrites " ." to "." etc.
  // The id of "<end_of_utterance>" iff it is among the additional special tokens.
  std::optional<int32_t> end_of_utterance_id() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flamingo
