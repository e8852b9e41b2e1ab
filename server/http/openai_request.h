// The OpenAI-style request bodies of the HTTP front end: /v1/chat/completions and
// /v1/completions JSON -> plain requests (chat messages with their images fetched, sampling
// fields, stop strings, n, logprobs, streaming). Checks the JSON's shape and types here;
// value ranges and limits stay in RequestBuilder (the same checks and messages as gRPC), whose
// field names HttpError::from_invalid maps back to OpenAI's parameter names.
// Torch-free, proto-free; thread-safe (free functions; file reads only).
//
// Rules beyond the JSON shape:
// - Unknown parameters are ignored and listed (ignored); parameters that would change what
//   the answer means and that we do not implement are refused with 400 naming them: tools,
//   tool_choice, functions, function_call, response_format other than {"type":"text"},
//   logit_bias other than {}, non-zero presence_penalty / frequency_penalty, echo, best_of > 1,
//   suffix, and prompts given as token ids or as several prompts.
// - Image URLs: data:image/...;base64,... always; file:// only under
//   MediaPolicy::allowed_local_media_path (canonical path inside it, a regular file);
//   http(s):// only with MediaPolicy::fetch.allow (server/http/image_fetch.h). Each image at
//   most max_image_bytes, checked before decoding base64, reading the file or the download.
// - OpenAI's defaults where ours differ: temperature 1 and top_p 1 when absent; seed absent or
//   0 means a random seed (as in gRPC); choice i of n > 1 samples with seed + i.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "server/chat_template.h"
#include "server/http/image_fetch.h"
#include "server/requests.h"

namespace flamingo {

class InvalidRequest;

// An error answered in OpenAI's shape {"error":{"message","type","param","code"}}.
class HttpError : public std::runtime_error {
 public:
  HttpError(int status, std::string message, std::string param = {}, std::string type = {},
            std::string code = {});
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& type() const { return type_; }
  const std::string& code() const { return code_; }

  // 400 from a RequestBuilder error: its field path ("prompt[2].image", "sampling.top_p",
  // "max_new_tokens") becomes the OpenAI parameter ("messages[1].content[0].image_url",
  // "top_p", the max-tokens key the client sent), in the message too. part_paths[k] is the
  // OpenAI path of prompt part k ("" for text merged from several places: "messages").
  static HttpError from_invalid(const InvalidRequest& e, const std::vector<std::string>& part_paths,
                                const std::string& prompt_param, const std::string& max_tokens_key);

 private:
  int status_;
  std::string param_, type_, code_;
};

struct MediaPolicy {
  int64_t max_image_bytes = 20 << 20;
  std::string allowed_local_media_path;  // empty: file:// URLs refused
  ImageFetchPolicy fetch;                // http(s):// URLs (fetch.max_bytes: max_image_bytes)
  int32_t max_n = 8;                     // largest n
};

// The fields /v1/chat/completions and /v1/completions share.
struct OpenAIParams {
  std::string model;
  int32_t max_tokens = 0;                     // 0: the server's default
  std::string max_tokens_key = "max_tokens";  // which key the client used (error messages)
  SamplingInput sampling{1.f, 1.f, 0, 0, 0};  // OpenAI's defaults: temperature 1, top_p 1
  std::vector<std::string> stop;
  int32_t n = 1;
  bool logprobs = false;
  int32_t top_logprobs = 0;
  bool stream = false;
  bool include_usage = false;
  bool ignore_eos = false;           // our extension
  std::vector<std::string> ignored;  // unknown keys, in the body's order
};

struct ChatRequest {
  OpenAIParams params;
  std::vector<ChatMessage> messages;
  std::vector<std::string> images;       // encoded bytes, in order of appearance
  std::vector<std::string> image_paths;  // OpenAI path of each image
};

struct CompletionRequest {
  OpenAIParams params;
  std::string prompt;
};

// Throw HttpError (400) naming the parameter.
ChatRequest parse_chat_request(std::string_view body, const MediaPolicy& policy);
CompletionRequest parse_completion_request(std::string_view body, const MediaPolicy& policy);

// An image URL's bytes under `policy`: data: URLs always, file:// inside the allowed folder,
// http(s):// when fetching is allowed. Throws HttpError (400) naming `param`.
std::string fetch_image(std::string_view url, const MediaPolicy& policy, const std::string& param);

// "data:[<mediatype>][;base64],<data>" -> bytes. Throws HttpError naming `param` (bad base64
// with the offset, not base64, larger than max_bytes).
std::string decode_data_url(std::string_view url, int64_t max_bytes, const std::string& param);

}  // namespace flamingo
