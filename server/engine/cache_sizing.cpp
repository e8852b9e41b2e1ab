#include "server/engine/cache_sizing.h"

#include <algorithm>

#include "model/error.h"

namespace flamingo {

std::string mib(int64_t bytes) { return std::to_string((bytes + (1 << 19)) >> 20) + " MiB"; }

CacheSizes size_caches(const CacheSizingInput& in) {
  if (in.block_size < 1) {
    throw Error("--block-size must be >= 1, got " + std::to_string(in.block_size));
  }
  CacheSizes out;
  if (in.kv_cache_bytes > 0) {
    out.kv_blocks = in.kv_cache_bytes / in.kv_block_bytes;
  } else {
    const int64_t per_seq = (in.context_length + in.block_size - 1) / in.block_size;
    out.kv_blocks = std::min<int64_t>(per_seq * in.max_running, (4ll << 30) / in.kv_block_bytes);
    out.kv_blocks = std::max(out.kv_blocks, per_seq);
  }
  if (out.kv_blocks < 1) {
    throw Error("--kv-cache-mb: " + mib(in.kv_cache_bytes) + " holds no KV block of " +
                std::to_string(in.kv_block_bytes) + " bytes");
  }
  out.image_cache_bytes = in.image_cache_bytes;
  if (out.image_cache_bytes <= 0) {
    out.image_cache_bytes = std::max<int64_t>(64ll << 20, 4ll * in.max_running * in.image_bytes);
  }
  if (out.image_cache_bytes < in.image_bytes) {
    throw Error("--image-cache-mb: " + mib(out.image_cache_bytes) + " holds no encoded image of " +
                std::to_string(in.image_bytes) + " bytes");
  }
  return out;
}

}  // namespace flamingo
