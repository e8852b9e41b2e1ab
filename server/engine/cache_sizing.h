// How much memory the engine's two caches get: paged self-attention KV blocks
// (--kv-cache-mb, --block-size) and encoded images (--image-cache-mb), from the flags and the
// sizes the model reports (FlamingoModel::kv_block_bytes, image_kv_bytes). Torch-free
// arithmetic, so the defaults and the errors are testable without a model.
#pragma once

#include <cstdint>
#include <string>

namespace flamingo {

struct CacheSizingInput {
  int64_t kv_cache_bytes = 0;     // --kv-cache-mb in bytes; 0: the default below
  int64_t image_cache_bytes = 0;  // --image-cache-mb in bytes; 0: the default below
  int32_t block_size = 16;        // tokens per KV block, >= 1
  int32_t max_running = 32;       // --max-running
  int64_t context_length = 0;     // tokens
  int64_t kv_block_bytes = 0;     // one block of block_size tokens, every layer, K and V
  int64_t image_bytes = 0;        // one image's cross-attention K/V, every gated layer
};

struct CacheSizes {
  int64_t kv_blocks = 0;
  int64_t image_cache_bytes = 0;
};

// KV: kv_cache_bytes / kv_block_bytes blocks when given; else a full context for each of
// max_running sequences, at most 4 GiB, but always at least one full context. Images: the given
// budget; else max(64 MiB, 4 images per running sequence). Throws flamingo::Error naming the
// flag when a budget holds no block or no image, or block_size < 1.
CacheSizes size_caches(const CacheSizingInput& in);

// "N MiB", rounded to the nearest MiB: how the flags' values are named in messages.
std::string mib(int64_t bytes);

}  // namespace flamingo
