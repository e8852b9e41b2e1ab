#include "server/engine/text_stream.h"

#include <algorithm>

#include "model/utf8.h"

namespace flamingo {
namespace {

// The strings that the slow LlamaTokenizer's clean_up_tokenization rewrites (model/tokenizer.cpp):
// a text ending in a proper prefix of one of them may still change when the next token comes.
constexpr std::string_view kCleanUpPatterns[] = {" .",   " ?",  " !",  " ,",   " ' ",
                                                 " n't", " 'm", " 's", " 've", " 're"};
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Longest suffix of `s` that is a proper prefix of `pattern` (or all of it when `whole`).
size_t suffix_prefix_overlap(std::string_view s, std::string_view pattern, bool whole) {
  const size_t max = std::min(s.size(), whole ? pattern.size() : pattern.size() - 1);
  for (size_t n = max; n > 0; --n) {
    if (s.substr(s.size() - n) == pattern.substr(0, n)) return n;
  }
  return 0;
}

}  // namespace

TextStream::TextStream(std::vector<std::string> stop_strings) {
  for (std::string& s : stop_strings) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

size_t TextStream::unstable_tail(std::string_view s) const {
  size_t keep = s.size() - complete_utf8_prefix(s);
  std::string_view head = s.substr(0, s.size() - keep);
  while (head.ends_with(kReplacementChar)) {  // a byte-fallback character still incomplete
    head.remove_suffix(kReplacementChar.size());
  }
  size_t tail = s.size() - head.size();
  for (std::string_view p : kCleanUpPatterns) {
    tail = std::max(tail, (s.size() - head.size()) + suffix_prefix_overlap(head, p, false));
  }
  // A "'" may be " ' " cleaned up, which a following "." / "?" / "!" / "," undoes: the
  // clean-up passes run " ." before " ' ", and " ." takes the space first.
  if (head.ends_with('\'')) tail = std::max(tail, (s.size() - head.size()) + 1);
  for (const std::string& stop : stops_) {
    tail = std::max(tail, (s.size() - head.size()) + suffix_prefix_overlap(head, stop, false));
  }
  return std::min(tail, s.size());
}

TextStream::Update TextStream::update(size_t keep, std::string_view append) {
  Update out;
  if (stopped_) return out;
  if (keep < released_) {
    append.remove_prefix(std::min(append.size(), released_ - keep));
    keep = released_;
  }
  text_.resize(std::min(keep, text_.size()));
  const size_t from = text_.size();
  text_ += append;
  // An occurrence of a stop string ends in the new text (the old text had none).
  size_t cut = std::string::npos;
  for (const std::string& stop : stops_) {
    cut = std::min(cut, text_.find(stop, from - std::min(from, stop.size() - 1)));
  }
  if (cut != std::string::npos) {
    text_.resize(cut);
    stopped_ = out.stopped = true;
    out.delta = finish();
    return out;
  }
  const size_t stable = text_.size() - unstable_tail(text_);
  if (stable > released_) {
    out.delta = text_.substr(released_, stable - released_);
    released_ = stable;
  }
  return out;
}

TextStream::Update TextStream::update(const std::string& full) {
  const auto [it, unused] = std::mismatch(text_.begin(), text_.end(), full.begin(), full.end());
  const auto keep = static_cast<size_t>(it - text_.begin());
  return update(keep, std::string_view(full).substr(keep));
}

std::string TextStream::finish() {
  std::string rest;
  if (text_.size() > released_) rest = text_.substr(released_);
  released_ = std::max(released_, text_.size());
  return rest;
}

}  // namespace flamingo
