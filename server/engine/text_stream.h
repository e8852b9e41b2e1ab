// Incremental text of one generation for streaming: given the text's changes after each step
// (Detokenizer::Delta: usually an append), releases only text that later tokens cannot
// change: incomplete UTF-8 characters (raw or decoded as U+FFFD), a tail that could still
// become a stop string, and a tail the tokenizer's clean-up rules could still rewrite
// (" ." -> "." etc.) are held back. Finds stop strings (the earliest occurrence of any) and
// cuts the text before them. A step's work is proportional to its change plus the longest
// stop string, not to the whole text.
// Torch-free. Not thread-safe: one instance per request, used by the engine thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "model/utf8.h"  // complete_utf8_prefix

namespace flamingo {

class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop_strings);

  struct Update {
    std::string delta;     // text released by this step
    bool stopped = false;  // a stop string appeared: the text ends before it
  };
  // The text becomes text().substr(0, keep) + append. Released text never changes: a keep
  // below released() keeps the released bytes and drops as many from the front of `append`.
  Update update(size_t keep, std::string_view append);
  // `full`: the decoded text of every generated token so far (update from the common prefix).
  Update update(const std::string& full);
  // End of generation: releases whatever was held back (up to a stop string).
  std::string finish();

  const std::string& text() const { return text_; }  // complete text (cut at a stop string)
  size_t released() const { return released_; }      // bytes of text() released so far
  bool stopped() const { return stopped_; }

  // Bytes at the end of `s` that later text may still change (see above).
  size_t unstable_tail(std::string_view s) const;

 private:
  std::vector<std::string> stops_;
  std::string text_;
  size_t released_ = 0;
  bool stopped_ = false;
};

}  // namespace flamingo
