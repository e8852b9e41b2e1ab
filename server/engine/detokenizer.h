// Incremental detokenizing of one generation, vLLM's way: the text of each new token is the
// difference between the decodes of a short window of tokens (from prefix_offset) with and
// without the tokens not yet read (from read_offset), so a step costs a few tokens of decoding
// instead of the whole output. The window keeps at least one token before the new ones, and
// a window that does not start the output is decoded after an anchor token (a plain piece
// without a leading space, whose text is then removed), so that no token of the window is
// decoded as the first of a text: decode() drops the first token's leading space. A window
// whose text ends in an incomplete character (U+FFFD) waits for the next token (up to
// kMaxWindow tokens); one whose decode rewrites text before its new tokens makes one whole
// decode. finish() decodes the whole output once and reconciles, so the final text is
// exactly Tokenizer::decode(all tokens, skip_special_tokens=true).
// Limitation: a tokenizer with clean_up_tokenization_spaces (" ." -> "." over the whole
// text, which windows cannot see across) is decoded whole at every token: exact, O(n^2).
// IDEFICS' tokenizers have it off.
// Special tokens are dropped before windowing, as decode() drops them.
// Torch-free. Not thread-safe: one instance per request, used by the engine thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace flamingo {

class Tokenizer;

// A sentencepiece piece that decodes alone to plain text without spaces: the lowest id whose
// piece has no leading "▁", is no byte piece and no special or added token. -1 when the
// vocabulary has none (then every window is decoded as is).
int32_t detokenizer_anchor(const Tokenizer& tokenizer);

class Detokenizer {
 public:
  static constexpr size_t kMaxWindow = 8;  // tokens decoded together at most, unless forced

  // `anchor`: detokenizer_anchor(tokenizer), found once per tokenizer.
  Detokenizer(const Tokenizer& tokenizer, int32_t anchor);

  // The text so far becomes text().substr(0, keep) + append. keep < text().size() only when a
  // later token rewrote the tail (the tokenizer's clean-up rules, or a mismatch repaired by
  // one whole decode).
  struct Delta {
    size_t keep = 0;
    std::string append;
  };
  Delta add(int32_t token);
  // End of the output: text() becomes the decode of every token.
  Delta finish();

  const std::string& text() const { return text_; }
  // Tokens passed to Tokenizer::decode so far: the work this request's text cost.
  int64_t decoded_tokens() const { return decoded_; }

 private:
  std::string decode(size_t begin, size_t end);
  Delta redecode_all();

  const Tokenizer& tokenizer_;
  int32_t anchor_;
  std::string anchor_text_;
  std::vector<int32_t> ids_;  // every token that decode() does not skip
  std::vector<int32_t> window_;
  size_t prefix_ = 0;  // window start: context tokens already in text_
  size_t read_ = 0;    // tokens before this are in text_
  std::string text_;
  int64_t decoded_ = 0;
};

}  // namespace flamingo
