// Fuzz target: an HTTP request body for /v1/chat/completions through everything the server does
// with it before the engine: JSON shape checks, data: URL decoding, the bundled IDEFICS chat
// template, and RequestBuilder (limits, UTF-8, image probing and decoding, tokenizing with the
// golden tokenizer). Errors are HttpError or flamingo::Error (InvalidRequest); anything else
// is a finding. No file or network access: file:// and http(s) URLs are refused by policy.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fuzz/request_world.h"
#include "model/error.h"
#include "model/tokenizer.h"
#include "server/chat_template.h"
#include "server/http/openai_request.h"
#include "server/request_builder.h"

namespace {

struct World : fuzz::RequestWorld {
  flamingo::ChatTemplate chat = flamingo::ChatTemplate::load_file(std::string(FLAMINGO_SOURCE_DIR) +
                                                                  "/templates/idefics-chat.json");
};

const World& world() {
  static const World w;
  return w;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const World& w = world();
  flamingo::MediaPolicy policy;
  policy.max_image_bytes = w.limits.max_image_bytes;
  try {
    const flamingo::ChatRequest r = flamingo::parse_chat_request(
        std::string_view(reinterpret_cast<const char*>(data), size), policy);
    const auto parts =
        w.chat.render(r.messages, [&w](std::string_view s) { return w.builder.template_token(s); });
    flamingo::GenerateInput in;
    for (const flamingo::ChatPromptPart& p : parts) {
      if (p.kind == flamingo::ChatPromptPart::Kind::kText) {
        in.prompt.push_back(flamingo::PromptPart::of_text(p.text));
      } else if (p.kind == flamingo::ChatPromptPart::Kind::kImage) {
        in.prompt.push_back(flamingo::PromptPart::of_image(r.images.at(p.image)));
      } else {
        in.prompt.push_back(flamingo::PromptPart::of_token(p.token));
      }
    }
    in.max_new_tokens = r.params.max_tokens;
    in.sampling = r.params.sampling;
    for (const std::string& s : r.params.stop) in.stop.push_back(s);
    in.top_logprobs = r.params.top_logprobs;
    (void)w.builder.build_generate(in);
  } catch (const flamingo::HttpError&) {
  } catch (const flamingo::Error&) {
  }
  return 0;
}
