// The requests the server answers, independent of the front end that received them: the gRPC
// service (server/proto_requests.h converts flamingo.v1 messages) and the CLI fill these, and
// RequestBuilder validates them and builds engine jobs, so every front end shares every check
// and every message. Field names mirror flamingo.v1 (errors name fields by these paths, e.g.
// "prompt[2].image.data", "sampling.top_p"). Plain data, torch-free, proto-free. Text and
// image bytes are views: what they point at must outlive the build_* call.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flamingo {

// One part of a prompt: text, an image's encoded bytes (PNG or JPEG), an added token by id
// (only from a front end's chat template, never from a client's bytes; see model/prompt.h's
// PromptItem::kToken), or neither (a part the client left empty: refused with "has neither
// text nor image").
struct PromptPart {
  enum class Kind { kText, kImage, kToken, kNone };
  Kind kind = Kind::kNone;
  std::string_view text;   // kText
  std::string_view image;  // kImage: encoded bytes
  int32_t token = -1;      // kToken

  static PromptPart of_text(std::string_view t) { return {Kind::kText, t, {}}; }
  static PromptPart of_image(std::string_view bytes) { return {Kind::kImage, {}, bytes}; }
  static PromptPart of_token(int32_t id) { return {Kind::kToken, {}, {}, id}; }
};

// Zeros mean "unset" (the defaults of flamingo.v1.SamplingParams).
struct SamplingInput {
  float temperature = 0;         // 0: greedy
  float top_p = 0;               // 0: 1 (off)
  int32_t top_k = 0;             // 0: off
  float repetition_penalty = 0;  // 0: 1 (off)
  uint64_t seed = 0;             // 0: a random seed
};

struct GenerateInput {
  std::vector<PromptPart> prompt;
  int32_t max_new_tokens = 0;  // 0: --default-max-new-tokens
  SamplingInput sampling;
  std::vector<std::string_view> stop;
  bool ignore_eos = false;
  int32_t top_logprobs = 0;
  std::string_view request_id;
};

struct CaptionExample {
  std::optional<std::string_view> image;  // encoded bytes; nullopt: missing
  std::string_view text;
};

struct CaptionInput {
  std::optional<std::string_view> image;
  std::vector<CaptionExample> examples;
  int32_t max_new_tokens = 0;
  SamplingInput sampling;
};

struct QuestionExample {
  std::optional<std::string_view> image;
  std::string_view question, answer;
};

struct QuestionInput {
  std::optional<std::string_view> image;
  std::string_view question;
  std::vector<QuestionExample> examples;
  int32_t max_new_tokens = 0;
  SamplingInput sampling;
};

struct ScoreInput {
  std::vector<PromptPart> prompt;
  std::vector<std::string_view> candidates;
  bool candidates_required = true;  // the CLI may score the prompt alone
  bool prompt_logprobs = false;     // also every prompt token's logprob (ScoreOutcome)
};

}  // namespace flamingo
