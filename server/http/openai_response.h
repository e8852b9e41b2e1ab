// The OpenAI-style response bodies of the HTTP front end: chat.completion and text_completion
// objects, their streaming chunks (Server-Sent Events), logprobs in OpenAI's layout, usage,
// /v1/models and errors in OpenAI's shape. JSON only: no HTTP, no engine. Torch-free.
// Thread-safety: free functions; a TokenText is immutable.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "server/engine/job.h"

namespace flamingo {

class Tokenizer;
class HttpError;

// A token as OpenAI shows it: the piece with sentencepiece's "▁" as a space, a byte piece
// "<0x0A>" as its byte; bytes: the token's bytes (valid UTF-8 or not). Empty for an id
// without a token (a padded vocabulary's row, seen only among top_logprobs).
struct TokenText {
  std::string text;
  std::vector<int> bytes;
};
TokenText token_text(const Tokenizer& tok, int32_t id);

// What one choice produced (the concatenated deltas and the outcome).
struct ChoiceResult {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<float> logprobs;
  std::vector<std::vector<std::pair<int32_t, double>>> top_logprobs;
  JobStatus status = JobStatus::kLength;
  int32_t prompt_tokens = 0, completion_tokens = 0, cached_prompt_tokens = 0;
};

enum class ApiKind { kChat, kCompletion };

// "stop" | "length" for kStop / kLength; nullopt for the others (not a normal end).
std::optional<std::string> openai_finish_reason(JobStatus s);

// Logprobs of `n` tokens from index `from` of the delta fields, in the chat layout
// ({"content":[{"token","logprob","bytes","top_logprobs"}]}) or the legacy completion one
// ({"tokens","token_logprobs","top_logprobs"}). top: how many alternatives to show.
nlohmann::json logprobs_json(ApiKind api, const Tokenizer& tok, const std::vector<int32_t>& ids,
                             const std::vector<float>& logprobs,
                             const std::vector<std::vector<std::pair<int32_t, double>>>& top,
                             bool with_top);

struct ResponseHeader {
  std::string id;  // "chatcmpl-..." / "cmpl-..."
  int64_t created = 0;
  std::string model;
};

nlohmann::json usage_json(int32_t prompt_tokens, int32_t completion_tokens,
                          int32_t cached_prompt_tokens);

// The whole non-streaming response; usage sums the choices' completion tokens.
nlohmann::json completion_json(ApiKind api, const ResponseHeader& h,
                               const std::vector<ChoiceResult>& choices, const Tokenizer& tok,
                               bool logprobs, bool with_top);

// One streaming chunk for choice `index`: a text delta (with the role when first), or the
// choice's finish_reason (finish set). logprobs: null or logprobs_json's value.
nlohmann::json chunk_json(ApiKind api, const ResponseHeader& h, int32_t index,
                          const std::string& text, bool first, const std::string* finish,
                          nlohmann::json logprobs, bool include_usage);
// The final usage chunk (choices: []).
nlohmann::json usage_chunk_json(ApiKind api, const ResponseHeader& h, const nlohmann::json& usage);

nlohmann::json error_json(const HttpError& e);
// JSON text; invalid UTF-8 (a byte token's text) is replaced by U+FFFD.
std::string dump(const nlohmann::json& j);

}  // namespace flamingo
