// IDEFICS prompt layout: IdeficsProcessor.__call__ of transformers v4.44.2 (defaults:
// add_end_of_utterance_token=None, add_eos_token=False) turned into token ids, plus the
// image-attention rule as one image index per token instead of a one-hot mask.
// Torch-free. Free functions without shared state: thread-safe (the Tokenizer is immutable).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer.h"

namespace flamingo {

// kToken: one added token by id (a chat template's "<end_of_utterance>"), written as if its
// string stood inside the text around it: it and the kText items directly before and after it
// form ONE processor text item (no <end_of_utterance> inserted between them, spaces stripped
// only at the ends of the whole), split at the token as HF's trie would split that string.
struct PromptItem {
  enum class Kind { kText, kImage, kToken };
  Kind kind = Kind::kText;
  std::string text;  // kText only
  int32_t id = -1;   // kToken only: an added token's id

  static PromptItem make_text(std::string text) { return {Kind::kText, std::move(text), -1}; }
  static PromptItem make_image() { return {Kind::kImage, {}, -1}; }
  static PromptItem make_token(int32_t id) { return {Kind::kToken, {}, id}; }
};

struct TokenizedPrompt {
  std::vector<int32_t> token_ids;
  // image_of_token[i]: index (0-based, prompt order) of the image token i attends to, -1 for
  // none. See assign_images().
  std::vector<int32_t> image_of_token;
  int32_t num_images = 0;  // image items in the prompt
};

// The processor's layout: "<s>" first; each text item stripped of spaces (only ' ') and
// appended; each image becomes <fake><image><fake>, or <image><fake> right after an image
// item (an empty text item in between breaks that sharing); "<end_of_utterance>" between two
// consecutive text items iff the tokenizer lists it among its additional special tokens.
// Consecutive text items form ONE sentencepiece segment, as in HF's concatenated string.
// Text is literal: "<image>" inside a text item stays text. kToken items: see PromptItem; an id
// that is not an added token throws. Text items that look like URLs
// are text here (HF would fetch them as images). Throws flamingo::Error if the tokenizer has
// no bos token or lacks "<fake_token_around_image>" / "<image>" as added tokens.
TokenizedPrompt build_idefics_prompt(const Tokenizer& tok, const std::vector<PromptItem>& items);

// image_attention_mask_for_packed_input_ids as an index: a counter increments at each
// image_token_id; a token sees the most recent image at or before it; none before the first
// image; after an eos_id token, none until the next image (the eos token itself still sees
// its image). eos_id < 0 disables the eos rule.
std::vector<int32_t> assign_images(std::span<const int32_t> ids, int32_t image_token_id,
                                   int32_t eos_id);

// CLI helper: each literal "<image>" marks an image; the text between markers becomes text
// items; empty pieces are dropped ("<image><image>" is two consecutive images), whitespace-only
// pieces are kept (the processor strips them).
std::vector<PromptItem> split_image_markers(std::string_view text);

}  // namespace flamingo
