// The server's request limits and defaults: one struct shared by the flags (server_args),
// request validation, the engine's admission control and GetModelInfo. Plain data,
// torch-free; each field's flag name is in server/server_args.cpp.
#pragma once

#include <cstdint>

namespace flamingo {

struct ServerLimits {
  int32_t max_images_per_request = 32;    // --max-images
  int64_t max_image_bytes = 20ll << 20;   // --max-image-bytes (encoded PNG/JPEG bytes)
  int64_t max_image_pixels = 40'000'000;  // --max-image-pixels (declared width*height)
  int32_t max_prompt_tokens = 0;          // --max-prompt-tokens; 0: the context length
  int32_t max_new_tokens = 1024;          // --max-new-tokens (upper bound per request)
  int32_t default_max_new_tokens = 64;    // --default-max-new-tokens (request sends 0)
  int32_t max_stop_strings = 8;           // --max-stop-strings
  int32_t max_stop_string_bytes = 256;    // --max-stop-string-bytes
  int32_t max_top_logprobs = 20;          // --max-top-logprobs
  int32_t max_candidates = 64;            // --max-candidates (Score)
  int64_t max_text_bytes = 1ll << 20;     // --max-text-bytes (all text of a request)
  int32_t max_queued_requests = 256;      // --max-queued
  int32_t max_running_requests = 32;      // --max-running
  int32_t max_embed_images = 64;          // --max-embed-images (CLIP Embed)
  int32_t max_embed_texts = 256;          // --max-embed-texts (CLIP Embed)
  int64_t max_embed_text_bytes = 16384;   // --max-embed-text-bytes (CLIP: one text or label)
  int32_t max_labels = 1000;              // --max-labels (CLIP Classify)
};

}  // namespace flamingo
