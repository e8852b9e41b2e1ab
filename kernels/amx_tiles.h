// Internal to the AMX products (kernels/amx_product.cpp, kernels/amx_int8.cpp): the tile
// configuration that ldtilecfg reads. Torch-free.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace flamingo::kernels::detail {

// ldtilecfg's 64-byte operand (palette 1): tile t has rows[t] rows of colsb[t] bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

__attribute__((target("amx-tile"))) inline void load_tile_config(const TileConfig& c) {
  asm volatile("" ::: "memory");  // GCC 12 does not see ldtilecfg read the stores to c
  _tile_loadconfig(&c);
}

}  // namespace flamingo::kernels::detail
