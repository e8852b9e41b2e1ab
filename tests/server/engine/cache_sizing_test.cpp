// size_caches: the defaults and limits worked out by hand from cache_sizing.h's rules.
#include "server/engine/cache_sizing.h"

#include <gtest/gtest.h>

#include <string>

#include "model/error.h"

namespace flamingo {
namespace {

CacheSizingInput input() {
  CacheSizingInput in;
  in.block_size = 16;
  in.max_running = 4;
  in.context_length = 100;      // 7 blocks per sequence
  in.kv_block_bytes = 1 << 20;  // 1 MiB
  in.image_bytes = 10ll << 20;  // 10 MiB
  return in;
}

std::string error_of(const CacheSizingInput& in) {
  try {
    size_caches(in);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CacheSizingTest, DefaultsGiveEveryRunningSequenceAContext) {
  const CacheSizes s = size_caches(input());
  EXPECT_EQ(s.kv_blocks, 7 * 4);
  EXPECT_EQ(s.image_cache_bytes, 4 * 4 * (10ll << 20));  // above the 64 MiB floor
}

TEST(CacheSizingTest, DefaultKvIsCappedAt4GiBButHoldsOneContext) {
  CacheSizingInput in = input();
  in.kv_block_bytes = 256ll << 20;  // 4 GiB = 16 blocks < 28
  EXPECT_EQ(size_caches(in).kv_blocks, 16);
  in.kv_block_bytes = 1ll << 30;  // 4 GiB = 4 blocks < one context of 7
  EXPECT_EQ(size_caches(in).kv_blocks, 7);
}

TEST(CacheSizingTest, DefaultImageBudgetHasA64MiBFloor) {
  CacheSizingInput in = input();
  in.image_bytes = 1 << 20;
  EXPECT_EQ(size_caches(in).image_cache_bytes, 64ll << 20);
}

TEST(CacheSizingTest, GivenBudgetsAreUsed) {
  CacheSizingInput in = input();
  in.kv_cache_bytes = (5ll << 20) + 1;
  in.image_cache_bytes = 10ll << 20;
  const CacheSizes s = size_caches(in);
  EXPECT_EQ(s.kv_blocks, 5);
  EXPECT_EQ(s.image_cache_bytes, 10ll << 20);
}

TEST(CacheSizingTest, BudgetsTooSmallNameTheFlagAndTheSizes) {
  CacheSizingInput in = input();
  in.kv_cache_bytes = 1 << 19;
  EXPECT_EQ(error_of(in), "--kv-cache-mb: 1 MiB holds no KV block of 1048576 bytes");
  in = input();
  in.image_cache_bytes = 9ll << 20;
  EXPECT_EQ(error_of(in), "--image-cache-mb: 9 MiB holds no encoded image of 10485760 bytes");
  in = input();
  in.block_size = 0;
  EXPECT_EQ(error_of(in), "--block-size must be >= 1, got 0");
}

}  // namespace
}  // namespace flamingo
