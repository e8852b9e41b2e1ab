// Request validation and job building. See request_builder.h.
#include "server/request_builder.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <random>
#include <span>
#include <unordered_map>
#include <utility>

#include "model/image_decode.h"
#include "model/prompt.h"
#include "model/utf8.h"
#include "server/engine/media_cache.h"

namespace flamingo {
namespace {

std::string num(int64_t v) { return std::to_string(v); }
std::string num(int32_t v) { return std::to_string(v); }

// Shortest round-trip form of a float ("0.1", "nan", "inf", "-inf").
std::string num(float v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

void check_utf8(std::string_view s, const std::string& field) {
  const size_t at = invalid_utf8_at(s);
  if (at != std::string_view::npos) {
    throw InvalidRequest(field, "invalid UTF-8 at byte " + num(static_cast<int64_t>(at)));
  }
}

// A user string for an error message: at most ~40 bytes (cut at a character boundary), with
// control characters escaped so the message stays on one line.
std::string quote(const std::string& s) {
  constexpr size_t kMax = 40;
  size_t end = s.size();
  bool cut = false;
  if (end > kMax) {
    end = kMax;
    while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
    cut = true;
  }
  std::string out = "'";
  for (size_t i = 0; i < end; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else if (c == '\'' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else {
      out += static_cast<char>(c);
    }
  }
  out += cut ? "'..." : "'";
  return out;
}

// decode_image/probe_image prefix their messages with "image '<source>': "; the field path
// already says which image.
std::string image_error(const Error& e, const std::string& source) {
  std::string msg = e.what();
  const std::string prefix = "image '" + source + "': ";
  if (msg.rfind(prefix, 0) == 0) msg.erase(0, prefix.size());
  return msg;
}

uint64_t random_seed() {
  std::random_device rd;
  uint64_t seed = 0;
  while (seed == 0) seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return seed;
}

std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

void check_image_count(int64_t n, int32_t limit, const std::string& field,
                       const std::string& detail) {
  if (n > limit) {
    throw InvalidRequest(
        field, num(n) + " images" + detail + " exceed the limit " + num(limit) + " (--max-images)");
  }
}

}  // namespace

RequestBuilder::RequestBuilder(const Tokenizer& tokenizer, ImagePreprocessConfig image_config,
                               ServerLimits limits, int64_t context_length, int64_t vocab_rows,
                               PromptTemplates templates)
    : tokenizer_(tokenizer),
      image_config_(image_config),
      limits_(limits),
      context_length_(context_length),
      vocab_rows_(vocab_rows),
      templates_(std::move(templates)) {
  if (context_length_ < 1) {
    throw Error("RequestBuilder: context length must be >= 1, got " + num(context_length_));
  }
  if (vocab_rows_ < 1)
    throw Error("RequestBuilder: vocab rows must be >= 1, got " + num(vocab_rows_));
  if (limits_.default_max_new_tokens < 1) {
    throw Error("--default-max-new-tokens must be >= 1, got " +
                num(int64_t{limits_.default_max_new_tokens}));
  }
}

std::optional<int32_t> RequestBuilder::template_token(std::string_view token) const {
  const std::optional<int32_t> id = tokenizer_.token_to_id(token);
  if (!id || !tokenizer_.is_special(*id) || *id < 0 || *id >= vocab_rows_) return std::nullopt;
  return id;
}

int64_t RequestBuilder::max_prompt_tokens() const {
  if (limits_.max_prompt_tokens > 0)
    return std::min<int64_t>(limits_.max_prompt_tokens, context_length_);
  return context_length_;
}

void RequestBuilder::check_text_bytes(int64_t bytes, const std::string& field) const {
  if (bytes > limits_.max_text_bytes) {
    throw InvalidRequest(field, num(bytes) + " bytes of text exceed the limit " +
                                    num(limits_.max_text_bytes) + " (--max-text-bytes)");
  }
}

void check_image_refs(const std::vector<ImageRef>& images, const ServerLimits& limits) {
  for (const ImageRef& img : images) {
    const std::string_view b = img.bytes;
    const std::string field = img.field + ".data";
    if (b.empty()) throw InvalidRequest(field, "empty image (PNG or JPEG bytes expected)");
    if (static_cast<int64_t>(b.size()) > limits.max_image_bytes) {
      throw InvalidRequest(field, num(static_cast<int64_t>(b.size())) + " bytes exceed the limit " +
                                      num(limits.max_image_bytes) + " (--max-image-bytes)");
    }
    ImageHeader header;
    try {
      header = probe_image(as_bytes(b).data(), b.size(), field);
    } catch (const Error& e) {
      throw InvalidRequest(field, image_error(e, field));
    }
    const int64_t pixels = int64_t{header.width} * header.height;
    if (pixels > limits.max_image_pixels) {
      throw InvalidRequest(img.field, num(int64_t{header.width}) + "x" +
                                          num(int64_t{header.height}) + " = " + num(pixels) +
                                          " pixels exceed the limit " +
                                          num(limits.max_image_pixels) + " (--max-image-pixels)");
    }
  }
}

std::vector<ImageInput> decode_image_refs(const std::vector<ImageRef>& images,
                                          const ServerLimits& limits,
                                          const ImagePreprocessConfig& config) {
  ImageLimits image_limits;
  image_limits.max_bytes = static_cast<size_t>(limits.max_image_bytes);
  image_limits.max_pixels = limits.max_image_pixels;
  std::vector<ImageInput> out;
  out.reserve(images.size());
  std::unordered_map<uint64_t, size_t> seen;  // key -> index in out (same bytes: decode once)
  for (const ImageRef& img : images) {
    const std::string_view b = img.bytes;
    const uint64_t key = media_key(as_bytes(b), config.image_size, config.mean, config.std);
    if (auto it = seen.find(key); it != seen.end()) {
      out.push_back(out[it->second]);
      continue;
    }
    const std::string field = img.field + ".data";
    RgbImage rgb;
    try {
      rgb = decode_image(as_bytes(b).data(), b.size(), image_limits, field, config.alpha);
    } catch (const Error& e) {
      throw InvalidRequest(field, image_error(e, field));
    }
    seen.emplace(key, out.size());
    out.push_back({key, preprocess_image(rgb, config)});
  }
  return out;
}

TokenizedPrompt RequestBuilder::tokenize(const std::vector<PromptItem>& items,
                                         const std::string& field) const {
  TokenizedPrompt t = build_idefics_prompt(tokenizer_, items);
  for (int32_t id : t.token_ids) {
    if (id < 0 || id >= vocab_rows_) {
      throw InvalidRequest(field, "token " + quote(tokenizer_.id_to_piece(id)) + " (id " +
                                      num(int64_t{id}) + ") has no row in the model's embedding (" +
                                      num(vocab_rows_) + " rows)");
    }
  }
  const int64_t n = static_cast<int64_t>(t.token_ids.size());
  if (n > max_prompt_tokens()) {
    const bool flag = limits_.max_prompt_tokens > 0 && limits_.max_prompt_tokens <= context_length_;
    throw InvalidRequest(
        field,
        num(n) + " prompt tokens exceed the limit " + num(max_prompt_tokens()) +
            (flag ? " (--max-prompt-tokens)" : " (the context length; --max-prompt-tokens 0)"));
  }
  return t;
}

int32_t RequestBuilder::resolve_max_new_tokens(int32_t requested, int64_t prompt_tokens,
                                               const std::string& prompt_field) const {
  if (requested < 0) {
    throw InvalidRequest("max_new_tokens", "must be >= 0 (0: the default " +
                                               num(int64_t{limits_.default_max_new_tokens}) +
                                               "), got " + num(int64_t{requested}));
  }
  if (requested > limits_.max_new_tokens) {
    throw InvalidRequest("max_new_tokens", num(int64_t{requested}) + " exceeds the limit " +
                                               num(int64_t{limits_.max_new_tokens}) +
                                               " (--max-new-tokens)");
  }
  const int32_t n = requested > 0 ? requested : limits_.default_max_new_tokens;
  if (prompt_tokens + n > context_length_) {
    const std::string what = requested > 0 ? "max_new_tokens " + num(int64_t{n})
                                           : "the default max_new_tokens " + num(int64_t{n}) +
                                                 " (--default-max-new-tokens)";
    throw InvalidRequest("max_new_tokens",
                         prompt_field + " " + num(prompt_tokens) + " tokens + " + what + " = " +
                             num(prompt_tokens + n) + " exceed the context length " +
                             num(context_length_) +
                             (requested > 0 ? "" : "; send a smaller max_new_tokens"));
  }
  return n;
}

SamplingParams RequestBuilder::resolve_sampling(const SamplingInput& in) const {
  SamplingParams s;
  const float temperature = in.temperature;
  if (!(temperature >= 0.f && temperature <= 100.f)) {  // also rejects NaN
    throw InvalidRequest("sampling.temperature",
                         "must be in [0, 100] (0: greedy), got " + num(temperature));
  }
  s.temperature = temperature;
  const float top_p = in.top_p == 0.f ? 1.f : in.top_p;
  if (!(top_p > 0.f && top_p <= 1.f)) {
    throw InvalidRequest("sampling.top_p", "must be in (0, 1] (0: 1, off), got " + num(in.top_p));
  }
  s.top_p = top_p;
  if (in.top_k < 0) {
    throw InvalidRequest("sampling.top_k", "must be >= 0 (0: off), got " + num(int64_t{in.top_k}));
  }
  s.top_k = in.top_k;
  const float penalty = in.repetition_penalty == 0.f ? 1.f : in.repetition_penalty;
  if (!(penalty > 0.f && penalty <= 100.f)) {
    throw InvalidRequest("sampling.repetition_penalty",
                         "must be in (0, 100] (0: 1, off), got " + num(in.repetition_penalty));
  }
  s.repetition_penalty = penalty;
  s.seed = in.seed != 0 ? in.seed : random_seed();
  try {
    s.validate();  // the sampler's own rules, should they ever be stricter than the above
  } catch (const Error& e) {
    throw InvalidRequest("sampling", e.what());
  }
  return s;
}

namespace {

// Collects a prompt's parts: items, image references and the text byte count.
struct CollectedPrompt {
  std::vector<PromptItem> items;
  int64_t text_bytes = 0;
  std::vector<RequestBuilder::ImageRef> images;
};

CollectedPrompt collect_prompt(const std::vector<PromptPart>& prompt) {
  CollectedPrompt c;
  if (prompt.empty()) {
    throw InvalidRequest("prompt", "empty (send at least one text or image part)");
  }
  for (size_t i = 0; i < prompt.size(); ++i) {
    const PromptPart& part = prompt[i];
    const std::string field = "prompt[" + std::to_string(i) + "]";
    switch (part.kind) {
      case PromptPart::Kind::kText:
        check_utf8(part.text, field + ".text");
        c.text_bytes += static_cast<int64_t>(part.text.size());
        c.items.push_back(PromptItem::make_text(std::string(part.text)));
        break;
      case PromptPart::Kind::kImage:
        c.images.push_back({part.image, field + ".image"});
        c.items.push_back(PromptItem::make_image());
        break;
      case PromptPart::Kind::kToken:  // a template's token: tokenize() checks its row
        c.items.push_back(PromptItem::make_token(part.token));
        break;
      case PromptPart::Kind::kNone:
        throw InvalidRequest(field, "has neither text nor image");
    }
  }
  return c;
}

}  // namespace

void RequestBuilder::resolve_generation_fields(const GenerateInput& r, GenerateJob& job) const {
  if (r.request_id.size() > kMaxRequestIdBytes) {
    throw InvalidRequest("request_id", num(static_cast<int64_t>(r.request_id.size())) +
                                           " bytes exceed the limit " +
                                           num(static_cast<int64_t>(kMaxRequestIdBytes)));
  }
  check_utf8(r.request_id, "request_id");
  for (size_t i = 0; i < r.request_id.size(); ++i) {
    const auto ch = static_cast<unsigned char>(r.request_id[i]);
    if (ch < 0x20 || ch == 0x7F) {
      throw InvalidRequest("request_id", "control character " + quote(std::string(1, ch)) +
                                             " at byte " + num(static_cast<int64_t>(i)));
    }
  }
  job.request_id = std::string(r.request_id);
  job.sampling = resolve_sampling(r.sampling);
  if (static_cast<int64_t>(r.stop.size()) > limits_.max_stop_strings) {
    throw InvalidRequest(
        "stop", num(static_cast<int64_t>(r.stop.size())) + " stop strings exceed the limit " +
                    num(int64_t{limits_.max_stop_strings}) + " (--max-stop-strings)");
  }
  for (size_t i = 0; i < r.stop.size(); ++i) {
    const std::string field = "stop[" + std::to_string(i) + "]";
    const std::string_view s = r.stop[i];
    if (s.empty()) throw InvalidRequest(field, "empty stop string");
    if (static_cast<int64_t>(s.size()) > limits_.max_stop_string_bytes) {
      throw InvalidRequest(field, num(static_cast<int64_t>(s.size())) + " bytes exceed the limit " +
                                      num(int64_t{limits_.max_stop_string_bytes}) +
                                      " (--max-stop-string-bytes)");
    }
    check_utf8(s, field);
    job.stop.emplace_back(s);
  }
  if (r.top_logprobs < 0) {
    throw InvalidRequest("top_logprobs", "must be >= 0, got " + num(int64_t{r.top_logprobs}));
  }
  if (r.top_logprobs > limits_.max_top_logprobs) {
    throw InvalidRequest("top_logprobs", num(int64_t{r.top_logprobs}) + " exceeds the limit " +
                                             num(int64_t{limits_.max_top_logprobs}) +
                                             " (--max-top-logprobs)");
  }
  job.top_logprobs = r.top_logprobs;
  job.ignore_eos = r.ignore_eos;
}

void RequestBuilder::finish_job(const std::vector<PromptItem>& items, const std::string& field,
                                int32_t max_new_tokens, const std::string& prompt_name,
                                const std::vector<ImageRef>& images, GenerateJob& job) const {
  TokenizedPrompt t = tokenize(items, field);
  job.max_new_tokens =
      resolve_max_new_tokens(max_new_tokens, static_cast<int64_t>(t.token_ids.size()), prompt_name);
  job.prompt = std::move(t.token_ids);
  job.image_of_token = std::move(t.image_of_token);
  job.images = decode_image_refs(images, limits_, image_config_);
}

GenerateJob RequestBuilder::build_generate(const GenerateInput& r) const {
  const CollectedPrompt c = collect_prompt(r.prompt);
  check_image_count(static_cast<int64_t>(c.images.size()), limits_.max_images_per_request, "prompt",
                    "");
  check_text_bytes(c.text_bytes, "prompt");
  check_image_refs(c.images, limits_);
  GenerateJob job;
  resolve_generation_fields(r, job);
  finish_job(c.items, "prompt", r.max_new_tokens, "the prompt's", c.images, job);
  return job;
}

GenerateJob RequestBuilder::build_caption(const CaptionInput& r) const {
  std::vector<ImageRef> images;
  std::vector<std::string> texts;
  int64_t text_bytes = 0;
  check_image_count(static_cast<int64_t>(r.examples.size()) + 1, limits_.max_images_per_request,
                    "examples",
                    " (" + std::to_string(r.examples.size()) + " examples + the query image)");
  for (size_t i = 0; i < r.examples.size(); ++i) {
    const CaptionExample& ex = r.examples[i];
    const std::string field = "examples[" + std::to_string(i) + "]";
    if (!ex.image) throw InvalidRequest(field + ".image", "missing (each example needs one)");
    if (ex.text.empty()) throw InvalidRequest(field + ".text", "empty caption");
    check_utf8(ex.text, field + ".text");
    text_bytes += static_cast<int64_t>(ex.text.size());
    images.push_back({*ex.image, field + ".image"});
    texts.emplace_back(ex.text);
  }
  if (!r.image) throw InvalidRequest("image", "missing (the image to caption)");
  images.push_back({*r.image, "image"});
  check_text_bytes(text_bytes, "examples");
  check_image_refs(images, limits_);

  GenerateJob job;
  job.sampling = resolve_sampling(r.sampling);
  job.stop = templates_.caption_stop();
  finish_job(to_prompt_items(templates_.render_caption(texts)), "examples", r.max_new_tokens,
             "the caption prompt's", images, job);
  return job;
}

GenerateJob RequestBuilder::build_question(const QuestionInput& r) const {
  std::vector<ImageRef> images;
  std::vector<QAPair> pairs;
  int64_t text_bytes = 0;
  check_image_count(static_cast<int64_t>(r.examples.size()) + 1, limits_.max_images_per_request,
                    "examples",
                    " (" + std::to_string(r.examples.size()) + " examples + the query image)");
  for (size_t i = 0; i < r.examples.size(); ++i) {
    const QuestionExample& ex = r.examples[i];
    const std::string field = "examples[" + std::to_string(i) + "]";
    if (!ex.image) throw InvalidRequest(field + ".image", "missing (each example needs one)");
    if (ex.question.empty()) throw InvalidRequest(field + ".question", "empty question");
    if (ex.answer.empty()) throw InvalidRequest(field + ".answer", "empty answer");
    check_utf8(ex.question, field + ".question");
    check_utf8(ex.answer, field + ".answer");
    text_bytes += static_cast<int64_t>(ex.question.size() + ex.answer.size());
    images.push_back({*ex.image, field + ".image"});
    pairs.push_back({std::string(ex.question), std::string(ex.answer)});
  }
  if (!r.image) throw InvalidRequest("image", "missing (the image the question is about)");
  if (r.question.empty()) throw InvalidRequest("question", "empty question");
  check_utf8(r.question, "question");
  text_bytes += static_cast<int64_t>(r.question.size());
  images.push_back({*r.image, "image"});
  check_text_bytes(text_bytes, "question + examples");
  check_image_refs(images, limits_);

  GenerateJob job;
  job.sampling = resolve_sampling(r.sampling);
  job.stop = templates_.question_stop();
  finish_job(to_prompt_items(templates_.render_question(pairs, std::string(r.question))),
             "question + examples", r.max_new_tokens, "the question prompt's", images, job);
  return job;
}

ScoreJob RequestBuilder::build_score(const ScoreInput& r) const {
  const CollectedPrompt c = collect_prompt(r.prompt);
  check_image_count(static_cast<int64_t>(c.images.size()), limits_.max_images_per_request, "prompt",
                    "");
  if (r.candidates.empty() && r.candidates_required) {
    throw InvalidRequest("candidates", "empty (Score needs at least one candidate)");
  }
  if (static_cast<int64_t>(r.candidates.size()) > limits_.max_candidates) {
    throw InvalidRequest("candidates", num(static_cast<int64_t>(r.candidates.size())) +
                                           " candidates exceed the limit " +
                                           num(int64_t{limits_.max_candidates}) +
                                           " (--max-candidates)");
  }
  int64_t text_bytes = c.text_bytes;
  for (size_t i = 0; i < r.candidates.size(); ++i) {
    const std::string field = "candidates[" + std::to_string(i) + "]";
    if (r.candidates[i].empty()) throw InvalidRequest(field, "empty candidate");
    check_utf8(r.candidates[i], field);
    text_bytes += static_cast<int64_t>(r.candidates[i].size());
  }
  check_text_bytes(text_bytes, "prompt + candidates");
  check_image_refs(c.images, limits_);

  ScoreJob job;
  job.prompt_logprobs = r.prompt_logprobs;
  TokenizedPrompt base = tokenize(c.items, "prompt");
  std::vector<std::vector<int32_t>> sequences = {base.token_ids};
  std::vector<std::vector<int32_t>> image_of_token = {base.image_of_token};
  for (size_t i = 0; i < r.candidates.size(); ++i) {
    const std::string field = "candidates[" + std::to_string(i) + "]";
    const std::string cand(r.candidates[i]);
    std::vector<PromptItem> with = c.items;
    if (!with.empty() && with.back().kind == PromptItem::Kind::kText) {
      with.back().text += cand;
    } else {
      with.push_back(PromptItem::make_text(cand));
    }
    TokenizedPrompt t = tokenize(with, field);
    size_t common = 0;
    while (common < t.token_ids.size() && common < base.token_ids.size() &&
           t.token_ids[common] == base.token_ids[common]) {
      ++common;
    }
    if (common == t.token_ids.size()) {
      throw InvalidRequest(field, quote(cand) + " adds no tokens to the prompt");
    }
    job.first_new.push_back(static_cast<int32_t>(std::max<size_t>(common, 1)));
    sequences.push_back(std::move(t.token_ids));
    image_of_token.push_back(std::move(t.image_of_token));
  }
  job.sequences = std::move(sequences);
  job.image_of_token = std::move(image_of_token);
  job.images = decode_image_refs(c.images, limits_, image_config_);
  return job;
}

}  // namespace flamingo
