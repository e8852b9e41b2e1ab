// Fuzz target: CLIP's text side on arbitrary bytes. The first byte picks the mode: even ->
// ClipTokenizer::encode of the rest with a context length from the second byte (the golden tiny
// CLIP's vocab.json/merges.txt, FLAMINGO_SOURCE_DIR), checking its contract (start and end
// tokens, length within the context, ids in the vocabulary, `truncated` exactly when cut);
// odd -> parse_clip_config of the rest as config.json text. flamingo::Error is an expected
// outcome; any other exception or a broken invariant is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "model/clip_config.h"
#include "model/clip_tokenizer.h"
#include "model/error.h"

namespace {
const flamingo::ClipTokenizer& tok() {
  static const std::unique_ptr<flamingo::ClipTokenizer> t = flamingo::ClipTokenizer::load(
      std::string(FLAMINGO_SOURCE_DIR) + "/tests/golden/clip-tiny/model");
  return *t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
  try {
    if (data[0] % 2 == 0) {
      const int32_t context = 2 + data[1] % 100;
      bool truncated = false;
      const std::vector<int32_t> ids = tok().encode(rest, context, &truncated);
      const std::vector<int32_t> whole = tok().encode(rest, 1 << 20);
      if (ids.size() < 2 || static_cast<int32_t>(ids.size()) > context) std::abort();
      if (ids.front() != tok().bos_id() || ids.back() != tok().eos_id()) std::abort();
      if (truncated != (whole.size() > ids.size())) std::abort();
      for (int32_t id : ids) {
        if (id < 0 || id > tok().eos_id()) std::abort();
      }
    } else {
      flamingo::parse_clip_config(std::string(rest), "fuzz config.json");
    }
  } catch (const flamingo::Error&) {
  }
  return 0;
}
