// The products' shared prefetch arithmetic (kernels/product_common.h): the shares of the next
// block of weight rows that a tile's register blocks prefetch cover every line of it once, at
// most kMaxPerStep lines per step, and the streaming prefetch wraps into the next block's row;
// a group of x rows splits into the fewest register blocks of sizes differing by at most one.
#include "kernels/product_common.h"

#include <gtest/gtest.h>

#include <vector>

namespace flamingo::kernels::detail {
namespace {

// Every line of the next block, as the tiles' register blocks prefetch it step by step.
std::vector<int> lines_prefetched(const NextBlock& next, const char* base, int64_t kv, int64_t tile,
                                  int64_t steps, int64_t calls) {
  std::vector<int> seen(next.lines, 0);
  for (int64_t k0 = 0; k0 < kv; k0 += tile) {
    const int64_t k1 = std::min(kv, k0 + tile);
    EXPECT_TRUE(next.fits(k0, k1, kv, steps, calls)) << "k0 " << k0;
    NextBlock::Shares shares = next.shares(k0, k1, kv, calls);
    for (int64_t c = 0; c < calls; ++c) {
      const NextBlock::Share share = shares.next();
      const char* at = share.at;
      const int64_t lines = share.lines;
      EXPECT_GE(lines, 0);
      EXPECT_LE(lines, NextBlock::kMaxPerStep * steps);
      EXPECT_EQ((at - base) % 64, 0);
      for (int64_t v = 0; v < steps; ++v) {
        int per_step = 0;
        for_share_lines(lines, steps, v, [&](int64_t l) {
          ++per_step;
          const int64_t line = (at - base) / 64 + l;
          EXPECT_GE(line, 0);
          EXPECT_LT(line, next.lines);
          if (line >= 0 && line < next.lines) ++seen[line];
        });
        EXPECT_LE(per_step, NextBlock::kMaxPerStep);
      }
    }
  }
  return seen;
}

TEST(NextBlock, TheSharesOfATilesRegisterBlocksCoverEveryLineOnce) {
  static char buffer[1 << 20];
  // (bytes of the next block, K per row, K tile, steps per register block, register blocks).
  const struct {
    int64_t bytes, kv, tile, steps, calls;
  } cases[] = {
      {6 * 1024 * 2, 1024, 512, 32, 16},     // AVX2 bf16, 16 rows: 6 rows of K 1024
      {6 * 1024 * 4, 1024, 512, 32, 16},     // float32 weights
      {8 * 4096 * 2, 4096, 512, 16, 6},      // vdpbf16ps, 16 rows of K 4096
      {4 * 16 * 1024, 16, 8, 128, 4},        // int8: 4 blocks of 16 groups, tiles of 8 groups
      {5 * 1000 * 2 + 6, 1000, 512, 31, 3},  // odd sizes: lines that do not divide
      {64, 16, 16, 1, 7},                    // one line, more register blocks than lines
  };
  for (const auto& c : cases) {
    const NextBlock next(buffer, c.bytes);
    EXPECT_EQ(next.lines, (c.bytes + 63) / 64);
    const std::vector<int> seen = lines_prefetched(next, buffer, c.kv, c.tile, c.steps, c.calls);
    for (int64_t l = 0; l < next.lines; ++l) {
      ASSERT_EQ(seen[l], 1) << "line " << l << " of " << next.lines << ", bytes " << c.bytes;
    }
  }
}

TEST(NextBlock, EachRegisterBlockTakesTheLinesBetweenItsRoundedDownBounds) {
  static char buffer[1 << 12];
  // 5 lines of a tile over 3 register blocks: [0, 1), [1, 3), [3, 5); 7 over 7: one each.
  const int64_t expect[][2] = {{0, 1}, {1, 2}, {3, 2}};
  NextBlock::Shares three = NextBlock(buffer, 10 * 64).shares(0, 256, 512, 3);
  for (const auto& e : expect) {
    const NextBlock::Share s = three.next();
    EXPECT_EQ(s.at, buffer + e[0] * 64);
    EXPECT_EQ(s.lines, e[1]);
  }
  NextBlock::Shares seven = NextBlock(buffer, 14 * 64).shares(512, 1024, 1024, 7);
  for (int64_t c = 0; c < 7; ++c) {
    const NextBlock::Share s = seven.next();
    EXPECT_EQ(s.at, buffer + (7 + c) * 64);
    EXPECT_EQ(s.lines, 1);
  }
}

TEST(NextBlock, ATileWithMoreLinesThanItsStepsCanTakeDoesNotShare) {
  static char buffer[64];
  // 2 tiles of 64 lines each; 2 register blocks of 16 steps take at most 2 x 2 x 16 = 64.
  const NextBlock next(buffer, 128 * 64);
  EXPECT_TRUE(next.fits(0, 512, 1024, 16, 2));
  EXPECT_FALSE(next.fits(0, 512, 1024, 15, 2));
  EXPECT_FALSE(next.fits(0, 512, 1024, 16, 1));
}

TEST(NextBlock, NoNextBlockHasNoLinesAndNeverShares) {
  const NextBlock none(nullptr, 4096);
  EXPECT_EQ(none.lines, 0);
  EXPECT_FALSE(none.fits(0, 512, 1024, 32, 16));
}

TEST(PrefetchTarget, AheadInTheRowThenTheSameRowOfTheNextBlock) {
  static char buffer[1 << 16];
  const char* at = buffer + 100;
  // 2048 bytes ahead while the row has more left; past its end, skip (rows - 1) x row bytes.
  EXPECT_EQ(prefetch_target(at, 2048, 4096, 5 * 2048), at + 2048);
  EXPECT_EQ(prefetch_target(at, 2048, 2048, 5 * 2048), at + 2048 + 5 * 2048);
  EXPECT_EQ(prefetch_target(at, 2048, 100, 5 * 2048), at + 2048 + 5 * 2048);
}

TEST(XBlocks, FewestBlocksOfAtMostMostRowsDifferingByAtMostOne) {
  for (int64_t most = 1; most <= 4; ++most) {
    for (int64_t mc = 1; mc <= kMGroup; ++mc) {
      const XBlocks b(mc, most);
      EXPECT_EQ(b.count, (mc + most - 1) / most) << mc << " rows, " << most;
      int64_t sum = 0;
      for (int64_t i = 0; i < b.count; ++i) {
        EXPECT_LE(b.rows[i], most);
        EXPECT_GE(b.rows[i], b.rows[b.count - 1]);  // larger blocks first
        EXPECT_LE(b.rows[0] - b.rows[i], 1);
        sum += b.rows[i];
      }
      EXPECT_EQ(sum, mc) << mc << " rows, " << most;
    }
  }
  const XBlocks sixteen(16, 3);  // the 16-row step: 3 3 3 3 2 2
  EXPECT_EQ(std::vector<int64_t>(sixteen.rows, sixteen.rows + sixteen.count),
            (std::vector<int64_t>{3, 3, 3, 3, 2, 2}));
}

}  // namespace
}  // namespace flamingo::kernels::detail
