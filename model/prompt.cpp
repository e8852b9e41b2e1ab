// IDEFICS prompt layout (IdeficsProcessor.__call__, transformers v4.44.2). See prompt.h.
#include "model/prompt.h"

#include <optional>

#include "model/error.h"

namespace flamingo {
namespace {

constexpr std::string_view kFakeToken = "<fake_token_around_image>";
constexpr std::string_view kImageToken = "<image>";

// Python's str.lstrip(" ") / rstrip(" "): spaces only, not newlines or tabs.
std::string strip_spaces_left(const std::string& s) {
  const size_t begin = s.find_first_not_of(' ');
  return begin == std::string::npos ? std::string() : s.substr(begin);
}
std::string strip_spaces_right(const std::string& s) {
  const size_t end = s.find_last_not_of(' ');
  return end == std::string::npos ? std::string() : s.substr(0, end + 1);
}

int32_t require_added_token(const Tokenizer& tok, std::string_view token) {
  const std::optional<int32_t> id = tok.token_to_id(token);
  if (!id) {
    throw Error("prompt: the tokenizer has no token \"" + std::string(token) +
                "\" (IDEFICS needs it for images)");
  }
  return *id;
}

}  // namespace

TokenizedPrompt build_idefics_prompt(const Tokenizer& tok, const std::vector<PromptItem>& items) {
  const int32_t fake_id = require_added_token(tok, kFakeToken);
  const int32_t image_id = require_added_token(tok, kImageToken);
  if (tok.bos_id() < 0)
    throw Error("prompt: the tokenizer has no bos_token (IDEFICS starts with it)");
  const std::optional<int32_t> end_of_utterance = tok.end_of_utterance_id();

  TokenizedPrompt out;
  std::vector<TokenSegment> segments;
  segments.push_back(TokenSegment::added(tok.bos_id()));
  std::string run;  // text appended since the last special token: one HF text segment
  auto flush = [&] {
    if (!run.empty()) segments.push_back(TokenSegment::literal(std::move(run)));
    run.clear();
  };

  bool last_was_image = false;
  bool last_was_text = false;
  for (size_t i = 0; i < items.size();) {
    if (i > 0) last_was_text = !last_was_image;
    if (items[i].kind == PromptItem::Kind::kImage) {
      flush();
      if (!last_was_image) segments.push_back(TokenSegment::added(fake_id));
      segments.push_back(TokenSegment::added(image_id));
      segments.push_back(TokenSegment::added(fake_id));
      ++out.num_images;
      last_was_image = true;
      ++i;
      continue;
    }
    // One processor text item: a kText item, or kText/kToken items joined by their tokens.
    size_t end = i + 1;
    while (end < items.size() && items[end].kind != PromptItem::Kind::kImage &&
           (items[end].kind == PromptItem::Kind::kToken ||
            items[end - 1].kind == PromptItem::Kind::kToken)) {
      ++end;
    }
    if (end_of_utterance && last_was_text) {
      flush();
      segments.push_back(TokenSegment::added(*end_of_utterance));
    }
    for (size_t j = i; j < end; ++j) {
      const PromptItem& item = items[j];
      if (item.kind == PromptItem::Kind::kToken) {
        flush();
        segments.push_back(TokenSegment::added(item.id));
        continue;
      }
      // Python's item.strip(" ") applies to the ends of the whole item only.
      std::string text = item.text;
      if (j + 1 == end) text = strip_spaces_right(text);
      if (j == i) text = strip_spaces_left(text);
      run += text;
    }
    last_was_image = false;
    i = end;
  }
  flush();

  out.token_ids = tok.encode_segments(segments);
  out.image_of_token = assign_images(out.token_ids, image_id, tok.eos_id());
  return out;
}

std::vector<int32_t> assign_images(std::span<const int32_t> ids, int32_t image_token_id,
                                   int32_t eos_id) {
  std::vector<int32_t> out(ids.size(), -1);
  int32_t count = -1;
  bool seen_eos = false;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == image_token_id) {
      ++count;
      seen_eos = false;
    }
    out[i] = seen_eos ? -1 : count;
    if (eos_id >= 0 && ids[i] == eos_id) seen_eos = true;
  }
  return out;
}

std::vector<PromptItem> split_image_markers(std::string_view text) {
  std::vector<PromptItem> items;
  size_t pos = 0;
  while (true) {
    const size_t at = text.find(kImageToken, pos);
    const std::string_view piece =
        text.substr(pos, at == std::string_view::npos ? text.npos : at - pos);
    if (!piece.empty()) items.push_back(PromptItem::make_text(std::string(piece)));
    if (at == std::string_view::npos) break;
    items.push_back(PromptItem::make_image());
    pos = at + kImageToken.size();
  }
  return items;
}

}  // namespace flamingo
