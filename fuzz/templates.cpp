// Fuzz target: the two template files (--templates, --chat-template) and rendering with them.
// The first byte picks which; the rest is the file. Errors are flamingo::Error (InvalidRequest
// is one) .
#include <cstddef>
#include <cstdint>
#include <string>

#include "model/error.h"
#include "server/chat_template.h"
#include "server/prompt_templates.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] & 1) {
      const flamingo::PromptTemplates t = flamingo::PromptTemplates::parse(text, "fuzz");
      (void)t.render_caption({"a {b}", "}{"});
      (void)t.render_question({{"q", "a"}}, "who?");
    } else {
      const flamingo::ChatTemplate t = flamingo::ChatTemplate::parse(text, "fuzz");
      std::vector<flamingo::ChatMessage> messages = {
          {"system", {flamingo::ChatContentPart::of_text("s")}},
          {"user",
           {flamingo::ChatContentPart::of_text("<eou>"), flamingo::ChatContentPart::of_image(0)}},
          {"assistant", {}}};
      (void)t.render(messages, [](std::string_view s) -> std::optional<int32_t> {
        return s.size() % 2 ? std::optional<int32_t>(7) : std::nullopt;
      });
    }
  } catch (const flamingo::Error&) {
  }
  return 0;
}
