#include "server/engine/detokenizer.h"

#include <algorithm>
#include <span>
#include <string_view>

#include "model/tokenizer.h"

namespace flamingo {
namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

size_t common_prefix(std::string_view a, std::string_view b) {
  const auto [ia, ib] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  return static_cast<size_t>(ia - a.begin());
}

}  // namespace

int32_t detokenizer_anchor(const Tokenizer& tokenizer) {
  for (int32_t id = 0; id < tokenizer.sp_size(); ++id) {
    if (tokenizer.is_special(id)) continue;
    const std::string piece = tokenizer.id_to_piece(id);
    if (piece.empty() || piece.starts_with("\xE2\x96\x81") || piece.starts_with("<0x")) continue;
    const std::string text = tokenizer.decode(std::span(&id, 1), true);
    if (text.empty() || text.find(' ') != std::string::npos ||
        text.find(kReplacementChar) != std::string::npos) {
      continue;
    }
    return id;
  }
  return -1;
}

Detokenizer::Detokenizer(const Tokenizer& tokenizer, int32_t anchor)
    : tokenizer_(tokenizer), anchor_(anchor) {
  if (anchor_ >= 0) anchor_text_ = tokenizer_.decode(std::span(&anchor_, 1), true);
}

std::string Detokenizer::decode(size_t begin, size_t end) {
  decoded_ += static_cast<int64_t>(end - begin);
  const std::span<const int32_t> ids = std::span(ids_).subspan(begin, end - begin);
  if (begin == 0 || anchor_ < 0) return tokenizer_.decode(ids, /*skip_special=*/true);
  window_.assign(1, anchor_);
  window_.insert(window_.end(), ids.begin(), ids.end());
  std::string text = tokenizer_.decode(window_, /*skip_special=*/true);
  if (!text.starts_with(anchor_text_)) return {};  // cannot happen for a plain anchor
  return text.substr(anchor_text_.size());
}

Detokenizer::Delta Detokenizer::add(int32_t token) {
  if (tokenizer_.is_special(token)) return {text_.size(), {}};
  ids_.push_back(token);
  if (tokenizer_.clean_up_tokenization_spaces()) return redecode_all();
  const std::string prefix_text = decode(prefix_, read_);
  const std::string new_text = decode(prefix_, ids_.size());
  const bool waiting =
      new_text.size() <= prefix_text.size() || new_text.ends_with(kReplacementChar);
  if (waiting && ids_.size() - prefix_ < kMaxWindow) return {text_.size(), {}};
  if (!new_text.starts_with(prefix_text)) return redecode_all();  // a rewrite across the window
  Delta d{text_.size(), new_text.substr(prefix_text.size())};
  text_ += d.append;
  prefix_ = read_;
  read_ = ids_.size();
  return d;
}

Detokenizer::Delta Detokenizer::redecode_all() {
  std::string full = decode(0, ids_.size());
  Delta d;
  d.keep = common_prefix(text_, full);
  d.append = full.substr(d.keep);
  text_ = std::move(full);
  read_ = ids_.size();
  prefix_ = read_ > 0 ? read_ - 1 : 0;
  return d;
}

Detokenizer::Delta Detokenizer::finish() { return redecode_all(); }

}  // namespace flamingo
