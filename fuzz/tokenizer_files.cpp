// Fuzz target: a tokenizer folder's JSON files as Tokenizer::load reads them beside the golden
// checkpoint's sentencepiece model (symlinked into a scratch folder): the input split at its
// first two NUL bytes into tokenizer_config.json, special_tokens_map.json and added_tokens.json
// (a part the input does not reach: no such file). What loads must then encode a prompt with
// special tokens and decode it. Errors are flamingo::Error.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/scratch_folder.h"
#include "model/error.h"
#include "model/tokenizer.h"

namespace {

const char* const kFiles[] = {"tokenizer_config.json", "special_tokens_map.json",
                              "added_tokens.json"};

const std::string& folder() {
  return flamingo::fuzz::scratch_folder("fuzz_tokenizer_files", [](const std::string& d) {
    std::filesystem::create_symlink(std::string(FLAMINGO_GOLDEN_DIR) + "/model/tokenizer.model",
                                    d + "/tokenizer.model");
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = folder();
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (int i = 0; i < 3; ++i) {
    const std::string path = dir + "/" + kFiles[i];
    std::filesystem::remove(path);
    if (i > 0 && rest.data() == nullptr) continue;  // the input ended before this part
    const size_t nul = i < 2 ? rest.find('\0') : std::string_view::npos;
    std::ofstream(path, std::ios::binary) << rest.substr(0, nul);
    rest = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  }
  try {
    const std::unique_ptr<flamingo::Tokenizer> t = flamingo::Tokenizer::load(dir);
    const std::vector<int32_t> ids =
        t->encode_with_special_tokens("<s>A cat<image><fake_token_around_image></s> <unk>x");
    (void)t->decode(ids, false);
    (void)t->decode(ids, true);
  } catch (const flamingo::Error&) {
  }
  return 0;
}
