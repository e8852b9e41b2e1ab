#include "cli/cli_request.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <utility>

#include "model/error.h"
#include "model/prompt.h"

namespace flamingo::cli {

std::string read_file_bytes(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(flag + ": cannot read '" + path + "': " + std::strerror(errno));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(flag + ": cannot read '" + path + "': read error");
  return data;
}

CliPrompt::CliPrompt(const CliArgs& a) {
  const std::vector<PromptItem> items = split_image_markers(a.prompt);
  size_t markers = 0;
  for (const auto& it : items) markers += it.kind == PromptItem::Kind::kImage;
  if (markers != a.images.size()) {
    throw Error("--prompt has " + std::to_string(markers) + " <image> marker(s) but " +
                std::to_string(a.images.size()) + " --image file(s) were given");
  }
  size_t next = 0;
  for (const auto& it : items) {
    if (it.kind == PromptItem::Kind::kText) {
      texts_.push_back(it.text);
      part_flag_.push_back("--prompt");
    } else {
      images_.push_back(read_file_bytes("--image", a.images[next]));
      part_flag_.push_back("--image " + a.images[next++]);
    }
  }
  size_t t = 0, i = 0;  // the storage is complete: views stay valid
  for (const auto& it : items) {
    parts_.push_back(it.kind == PromptItem::Kind::kText ? PromptPart::of_text(texts_[t++])
                                                        : PromptPart::of_image(images_[i++]));
  }
}

std::string CliPrompt::flag_of(const std::string& field) const {
  static const std::pair<const char*, const char*> kFlags[] = {
      {"max_new_tokens", "--max-new-tokens"},
      {"sampling.temperature", "--temperature"},
      {"sampling.top_p", "--top-p"},
      {"sampling.top_k", "--top-k"},
      {"sampling.repetition_penalty", "--repetition-penalty"},
      {"stop", "--stop"},
      {"top_logprobs", "--top-logprobs"},
      {"candidates", "--candidate"}};
  if (field.starts_with("prompt[")) {
    const size_t k = std::stoul(field.substr(7));
    if (k < part_flag_.size()) return part_flag_[k];
  }
  if (field.starts_with("prompt")) return "--prompt";
  for (const auto& [prefix, flag] : kFlags) {
    if (field.starts_with(prefix)) return flag;
  }
  return {};
}

}  // namespace flamingo::cli
