// What a tokenizer folder's JSON files say, read as HF PreTrainedTokenizerBase._from_pretrained
// (transformers v4.44.2) reads them for the slow LlamaTokenizer: tokenizer_config.json's flags
// and special-token attributes; its "added_tokens_decoder" when present, else the legacy
// special_tokens_map.json (overrides the special tokens, merges the additional list) and
// added_tokens.json (ids). Only the files: resolving the special tokens against the
// sentencepiece vocabulary is the Tokenizer's (model/tokenizer.cpp).
// Torch-free. Thread-safety: pure functions over the files, no shared state.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace flamingo {

// An AddedToken as HF stores it (normalized/special do not change slow Llama tokenization).
struct AddedToken {
  std::string content;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

// A special-token attribute value: a plain string, or an AddedToken dict (has_flags).
struct TokenSpec {
  AddedToken token;
  bool has_flags = false;
};

// SPECIAL_TOKENS_ATTRIBUTES of PreTrainedTokenizerBase, in order (without the list).
inline constexpr std::array<const char*, 7> kSpecialAttributes = {
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};

struct TokenizerFiles {
  std::string config_file;  // <dir>/tokenizer_config.json (named in messages; may be absent)
  // tokenizer_config.json flags; a missing or null key keeps the default. legacy=None means
  // legacy=True in v4.44.2.
  bool legacy = true;
  bool add_prefix_space = true;
  bool add_bos = true;  // add_bos_token
  bool clean_up_tokenization_spaces = false;
  bool split_special_tokens = false;
  // Special-token attributes in kSpecialAttributes order: LlamaTokenizer's defaults
  // (<s>, </s>, <unk>), then the files' values (nullopt: none).
  std::array<std::optional<TokenSpec>, kSpecialAttributes.size()> specs;
  std::vector<TokenSpec> additional;                    // additional_special_tokens
  std::vector<std::pair<int32_t, AddedToken>> decoder;  // added tokens (id, token), file order
};

// Reads <dir>/tokenizer_config.json, and without its "added_tokens_decoder"
// special_tokens_map.json and added_tokens.json; a missing file counts as empty. Throws
// flamingo::Error naming file and key for unreadable or invalid JSON or a value of the wrong
// type.
TokenizerFiles read_tokenizer_files(const std::filesystem::path& dir);

}  // namespace flamingo
