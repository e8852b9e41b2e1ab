// Fuzz target: the tokenizer on arbitrary bytes: encode (literal), encode with special-token
// splitting, the IDEFICS prompt layout, and decode of ids drawn from the input. Uses the golden
// checkpoint's tokenizer (FLAMINGO_GOLDEN_DIR). Invalid UTF-8 and ids without a token are
// flamingo::Error; anything else is a finding.
#include "model/tokenizer.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/error.h"
#include "model/prompt.h"
#include "model/utf8.h"

namespace {
const flamingo::Tokenizer& tok() {
  static const std::unique_ptr<flamingo::Tokenizer> t =
      flamingo::Tokenizer::load(std::string(FLAMINGO_GOLDEN_DIR) + "/model");
  return *t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const flamingo::Tokenizer& t = tok();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (flamingo::invalid_utf8_at(text) == std::string_view::npos) {
    try {
      const std::vector<int32_t> ids = t.encode(text);
      (void)t.decode(ids, false);
      (void)t.encode_with_special_tokens(text);
      (void)flamingo::build_idefics_prompt(
          t,
          {flamingo::PromptItem::make_text(std::string(text)), flamingo::PromptItem::make_image(),
           flamingo::PromptItem::make_text(std::string(text.substr(0, size / 2)))});
    } catch (const flamingo::Error&) {
    }
  }
  // Ids from the bytes (pairs), some outside the vocabulary on purpose.
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < size; i += 2) ids.push_back((data[i] << 8 | data[i + 1]) % 520 - 4);
  try {
    (void)t.decode(ids, size % 2 == 0);
  } catch (const flamingo::Error&) {
  }
  return 0;
}
