// POST /v1/embeddings on a CLIP (--model CLIP_DIR or --clip-model DIR): OpenAI's request shape
// for text ("input": a string or an array of strings; "encoding_format": "float" or "base64";
// "dimensions" only as the model's projection_dim; token-array inputs refused), extended with
// images: an "input" array item may be {"type": "image_url", "image_url": {"url": URL}} (URL a
// data: URL, or file:// / http(s):// as the chat API's policy allows). Embeddings come back in
// input order, L2-normalized; texts past the 77-token context are cut (CLIP's tokenizers do)
// and listed in the response's "truncated" extension. Errors are OpenAI's error bodies naming
// the parameter ("input[3]"). Torch-free. Thread-safety: handle() runs on httplib's threads
// and blocks its thread until the CLIP engine answers.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "server/clip/clip_engine.h"
#include "server/clip/clip_requests.h"
#include "server/http/openai_request.h"

namespace httplib {
struct Response;
}

namespace flamingo {

class ServerMetrics;

struct EmbeddingsRequest {
  std::string model;
  bool base64 = false;
  int64_t dimensions = 0;  // 0: not given
  // In input order: a text, or an image's encoded bytes.
  struct Item {
    bool image = false;
    std::string data;
  };
  std::vector<Item> items;
};

// Throws HttpError (400) naming the parameter.
EmbeddingsRequest parse_embeddings_request(std::string_view body, const MediaPolicy& policy);

// Validates with `builder`, embeds on `engine`, writes the OpenAI response (or error) to `res`
// and records the request in metrics as rpc "embeddings", api "openai".
void handle_embeddings(std::string_view body, const MediaPolicy& policy,
                       const std::string& served_model, ClipEngine& engine,
                       const ClipRequestBuilder& builder, ServerMetrics& metrics,
                       httplib::Response& res);

}  // namespace flamingo
