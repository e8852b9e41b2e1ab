#include "server/clip/clip_requests.h"

#include "model/utf8.h"

namespace flamingo {
namespace {

std::string num(int64_t v) { return std::to_string(v); }

void check_count(size_t n, int32_t limit, const std::string& field, const char* what,
                 const char* flag) {
  if (static_cast<int64_t>(n) > limit) {
    throw InvalidRequest(field, num(static_cast<int64_t>(n)) + " " + what + " exceed the limit " +
                                    num(limit) + " (" + flag + ")");
  }
}

void check_text(std::string_view text, const std::string& field, const ServerLimits& limits) {
  if (static_cast<int64_t>(text.size()) > limits.max_embed_text_bytes) {
    throw InvalidRequest(field, num(static_cast<int64_t>(text.size())) +
                                    " bytes exceed the limit " + num(limits.max_embed_text_bytes) +
                                    " (--max-embed-text-bytes; a CLIP reads 77 tokens)");
  }
  const size_t at = invalid_utf8_at(text);
  if (at != std::string_view::npos) {
    throw InvalidRequest(field, "invalid UTF-8 at byte " + num(static_cast<int64_t>(at)));
  }
}

void check_total_bytes(int64_t bytes, const ServerLimits& limits, const std::string& field) {
  if (bytes > limits.max_text_bytes) {
    throw InvalidRequest(field, num(bytes) + " bytes of text exceed the limit " +
                                    num(limits.max_text_bytes) + " (--max-text-bytes)");
  }
}

}  // namespace

ClipRequestBuilder::ClipRequestBuilder(const ClipTokenizer& tokenizer,
                                       ImagePreprocessConfig image_config, ServerLimits limits,
                                       int64_t context_length)
    : tokenizer_(tokenizer),
      image_config_(std::move(image_config)),
      limits_(limits),
      context_length_(context_length) {}

void ClipRequestBuilder::add_text(std::string_view text, size_t index, EmbedJob& job) const {
  bool truncated = false;
  job.texts.push_back(tokenizer_.encode(text, static_cast<int32_t>(context_length_), &truncated));
  if (truncated) job.truncated.push_back(static_cast<int32_t>(index));
}

EmbedJob ClipRequestBuilder::build_embed(const EmbedInput& r) const {
  if (r.images.empty() && r.texts.empty()) {
    throw InvalidRequest("images", "an Embed request needs at least one image or text");
  }
  check_count(r.images.size(), limits_.max_embed_images, "images", "images", "--max-embed-images");
  check_count(r.texts.size(), limits_.max_embed_texts, "texts", "texts", "--max-embed-texts");
  int64_t bytes = 0;
  for (size_t i = 0; i < r.texts.size(); ++i) {
    check_text(r.texts[i], "texts[" + num(static_cast<int64_t>(i)) + "]", limits_);
    bytes += static_cast<int64_t>(r.texts[i].size());
  }
  check_total_bytes(bytes, limits_, "texts");
  check_image_refs(r.images, limits_);
  EmbedJob job;
  for (size_t i = 0; i < r.texts.size(); ++i) add_text(r.texts[i], i, job);
  job.images = decode_image_refs(r.images, limits_, image_config_);
  return job;
}

EmbedJob ClipRequestBuilder::build_classify(const ClassifyInput& r) const {
  if (r.labels.empty()) throw InvalidRequest("labels", "at least one label is required");
  check_count(r.labels.size(), limits_.max_labels, "labels", "labels", "--max-labels");
  const std::string_view tpl = r.text_template.empty() ? kDefaultTemplate : r.text_template;
  check_text(tpl, "template", limits_);
  const size_t at = tpl.find("{}");
  if (at == std::string_view::npos || tpl.find("{}", at + 2) != std::string_view::npos) {
    throw InvalidRequest("template", "must contain \"{}\" exactly once (where the label goes)");
  }
  int64_t bytes = 0;
  for (size_t i = 0; i < r.labels.size(); ++i) {
    check_text(r.labels[i], "labels[" + num(static_cast<int64_t>(i)) + "]", limits_);
    bytes += static_cast<int64_t>(r.labels[i].size() + tpl.size() - 2);
  }
  check_total_bytes(bytes, limits_, "labels");
  check_image_refs({r.image}, limits_);
  EmbedJob job;
  for (size_t i = 0; i < r.labels.size(); ++i) {
    std::string text(tpl.substr(0, at));
    text.append(r.labels[i]);
    text.append(tpl.substr(at + 2));
    add_text(text, i, job);
  }
  job.images = decode_image_refs({r.image}, limits_, image_config_);
  return job;
}

}  // namespace flamingo
