// BlockManager: block counts, block tables and slot math against the FlatBatch formula
// (slot = table[p / block_size] * block_size + p % block_size), failure without state change,
// prefix reuse with the "last prompt token is always computed" cap (expected cached counts
// hand-computed in tables below), image hashes separating identical text, ref counts, hits
// after free, LRU eviction order, collision guards with injected hash functions, decode
// appends across block boundaries, and prefix caching switched off.
#include "server/engine/block_manager.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "model/error.h"

namespace flamingo {
namespace {

struct Prompt {
  std::vector<int32_t> tokens;
  std::vector<uint64_t> images;
};

// n text tokens base, base+1, ... with no image.
Prompt text(int32_t n, int32_t base) {
  Prompt p;
  for (int32_t i = 0; i < n; ++i) {
    p.tokens.push_back(base + i);
    p.images.push_back(0);
  }
  return p;
}

Prompt concat(const Prompt& a, const Prompt& b) {
  Prompt p = a;
  p.tokens.insert(p.tokens.end(), b.tokens.begin(), b.tokens.end());
  p.images.insert(p.images.end(), b.images.begin(), b.images.end());
  return p;
}

std::optional<int32_t> alloc(BlockManager& bm, BlockManager::SeqId seq, const Prompt& p) {
  return bm.allocate(seq, p.tokens, p.images);
}

void commit(BlockManager& bm, BlockManager::SeqId seq, const Prompt& p) {
  bm.commit_full_blocks(seq, p.tokens, p.images);
}

int32_t cached(const BlockManager& bm, const Prompt& p) {
  return bm.cached_prefix_tokens(p.tokens, p.images);
}

template <typename F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected flamingo::Error containing '" << needle << "'";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

TEST(BlockManager, AllocateAndFreeCounts) {
  BlockManager bm(10, 4);
  EXPECT_EQ(bm.num_free_blocks(), 10);
  EXPECT_EQ(bm.num_used_blocks(), 0);
  EXPECT_TRUE(bm.can_allocate(40));
  EXPECT_FALSE(bm.can_allocate(41));
  ASSERT_EQ(alloc(bm, 1, text(9, 100)), 0);  // 9 tokens -> 3 blocks
  EXPECT_EQ(bm.num_used_blocks(), 3);
  EXPECT_EQ(bm.num_free_blocks(), 7);
  EXPECT_EQ(bm.block_table(1).size(), 3u);
  EXPECT_EQ(bm.num_tokens(1), 9);
  ASSERT_EQ(alloc(bm, 2, text(4, 200)), 0);  // exactly 1 block
  EXPECT_EQ(bm.num_used_blocks(), 4);
  EXPECT_TRUE(bm.can_allocate(24));
  EXPECT_FALSE(bm.can_allocate(25));
  bm.free(1);
  EXPECT_FALSE(bm.contains(1));
  EXPECT_EQ(bm.num_used_blocks(), 1);
  EXPECT_EQ(bm.num_free_blocks(), 9);
  bm.free(2);
  EXPECT_EQ(bm.num_used_blocks(), 0);
  EXPECT_EQ(bm.num_free_blocks(), 10);
}

TEST(BlockManager, BlockTableAndSlotMath) {
  BlockManager bm(8, 4);
  ASSERT_TRUE(alloc(bm, 1, text(6, 0)));
  ASSERT_TRUE(alloc(bm, 2, text(5, 50)));
  bm.free(1);
  ASSERT_TRUE(alloc(bm, 3, text(9, 90)));  // reuses seq 1's blocks plus one more
  std::set<int64_t> slots;
  for (BlockManager::SeqId seq : {2, 3}) {
    const std::vector<int32_t>& table = bm.block_table(seq);
    const int32_t n = bm.num_tokens(seq);
    ASSERT_EQ(static_cast<int32_t>(table.size()), (n + 3) / 4);
    for (int32_t p = 0; p < n; ++p) {
      const int64_t slot = bm.slot_of(seq, p);
      EXPECT_EQ(slot, int64_t{table[p / 4]} * 4 + p % 4) << "seq " << seq << " pos " << p;
      EXPECT_GE(slot, 0);
      EXPECT_LT(slot, 8 * 4);
      EXPECT_TRUE(slots.insert(slot).second) << "slot " << slot << " used twice";
    }
    expect_error([&] { bm.slot_of(seq, n); }, "position");
    expect_error([&] { bm.slot_of(seq, -1); }, "position");
  }
  EXPECT_EQ(slots.size(), 14u);
  expect_error([&] { bm.block_table(1); }, "unknown seq 1");
}

TEST(BlockManager, OutOfBlocksLeavesStateUnchanged) {
  BlockManager bm(4, 4);
  ASSERT_EQ(alloc(bm, 1, text(9, 0)), 0);    // 3 blocks
  EXPECT_FALSE(alloc(bm, 2, text(5, 100)));  // needs 2, 1 free
  EXPECT_FALSE(bm.contains(2));
  EXPECT_EQ(bm.num_used_blocks(), 3);
  EXPECT_EQ(bm.num_free_blocks(), 1);
  ASSERT_EQ(alloc(bm, 2, text(4, 100)), 0);  // exactly the last block
  EXPECT_EQ(bm.num_free_blocks(), 0);
  EXPECT_FALSE(bm.append_slot(2));  // block full, nothing free
  EXPECT_EQ(bm.num_tokens(2), 4);
  EXPECT_EQ(bm.block_table(2).size(), 1u);
  EXPECT_TRUE(bm.append_slot(1));  // seq 1's third block has room (9 -> 10)
  EXPECT_EQ(bm.num_tokens(1), 10);
  EXPECT_EQ(bm.num_used_blocks(), 4);
}

TEST(BlockManager, OutOfBlocksCountsIdleCachedHitsAsConsumed) {
  BlockManager bm(3, 4);
  const Prompt a = text(9, 0);
  ASSERT_EQ(alloc(bm, 1, a), 0);
  commit(bm, 1, a);
  bm.free(1);
  ASSERT_EQ(bm.num_free_blocks(), 3);
  ASSERT_EQ(bm.num_cached_blocks(), 2);
  // 13 tokens = 4 blocks: 2 idle cached hits (taken from the free list) + 2 fresh > 3 free.
  const Prompt d = concat(text(8, 0), text(5, 500));
  ASSERT_EQ(cached(bm, d), 8);
  EXPECT_FALSE(alloc(bm, 2, d));
  EXPECT_EQ(bm.num_free_blocks(), 3);
  EXPECT_EQ(bm.num_cached_blocks(), 2);
  for (int32_t b = 0; b < 3; ++b) EXPECT_EQ(bm.ref_count(b), 0);
  EXPECT_EQ(cached(bm, a), 8);
  // 12 tokens = 3 blocks: 2 hits + 1 fresh fits exactly.
  EXPECT_EQ(alloc(bm, 3, concat(text(8, 0), text(4, 500))), 8);
  EXPECT_EQ(bm.num_free_blocks(), 0);
}

TEST(BlockManager, PrefixReuseOfIdenticalPrompts) {
  // block_size 4: cached = whole blocks within the first len - 1 tokens (hand-computed).
  const std::vector<std::pair<int32_t, int32_t>> cases = {
      {1, 0}, {3, 0}, {4, 0}, {5, 4}, {7, 4}, {8, 4}, {9, 8}, {12, 8}, {13, 12}, {17, 16}};
  for (const auto& [len, expected] : cases) {
    SCOPED_TRACE("len " + std::to_string(len));
    BlockManager bm(64, 4);
    const Prompt p = text(len, 1000);
    ASSERT_EQ(alloc(bm, 1, p), 0);
    commit(bm, 1, p);
    EXPECT_EQ(bm.num_cached_blocks(), len / 4);
    ASSERT_EQ(alloc(bm, 2, p), expected);
    const auto& ta = bm.block_table(1);
    const auto& tb = bm.block_table(2);
    const int32_t blocks = (len + 3) / 4, shared = expected / 4;
    ASSERT_EQ(static_cast<int32_t>(tb.size()), blocks);
    for (int32_t i = 0; i < blocks; ++i) {
      if (i < shared) {
        EXPECT_EQ(tb[i], ta[i]) << "block " << i;
        EXPECT_EQ(bm.ref_count(tb[i]), 2);
      } else {
        EXPECT_NE(tb[i], ta[i]) << "block " << i;
        EXPECT_EQ(bm.ref_count(tb[i]), 1);
      }
    }
    EXPECT_EQ(bm.num_used_blocks(), 2 * blocks - shared);
  }
}

TEST(BlockManager, DifferentImageHashInFirstBlockPreventsReuse) {
  BlockManager bm(32, 4);
  Prompt a = text(9, 10);
  a.images[2] = 111;
  Prompt b = a;
  b.images[2] = 222;  // same token ids, another image at token 2
  ASSERT_EQ(alloc(bm, 1, a), 0);
  commit(bm, 1, a);
  EXPECT_EQ(alloc(bm, 2, b), 0);
  EXPECT_EQ(alloc(bm, 3, a), 8);
}

TEST(BlockManager, SameTextAfterDifferentImageNeverShares) {
  BlockManager bm(32, 4);
  constexpr int32_t kImageToken = 7;
  // Only the image token carries the image hash: the text blocks after it are identical.
  Prompt a = concat(text(4, 0), text(5, 40));
  a.tokens[0] = kImageToken;
  a.images[0] = 0xAAAA;
  Prompt b = a;
  b.images[0] = 0xBBBB;
  ASSERT_EQ(alloc(bm, 1, a), 0);
  commit(bm, 1, a);
  EXPECT_EQ(alloc(bm, 2, b), 0);
  // Image in the second block, every later token attending to it: only block 0 is shared.
  Prompt c = text(13, 300);
  Prompt d = c;
  for (int32_t i = 4; i < 13; ++i) {
    c.images[i] = 0xCCCC;
    d.images[i] = 0xDDDD;
  }
  ASSERT_EQ(alloc(bm, 3, c), 0);
  commit(bm, 3, c);
  EXPECT_EQ(alloc(bm, 4, d), 4);
  EXPECT_EQ(bm.block_table(4)[0], bm.block_table(3)[0]);
  EXPECT_NE(bm.block_table(4)[1], bm.block_table(3)[1]);
  EXPECT_NE(bm.block_table(4)[2], bm.block_table(3)[2]);
  EXPECT_EQ(alloc(bm, 5, c), 12);
}

TEST(BlockManager, SharedBlocksStayUsedUntilLastOwnerFrees) {
  BlockManager bm(16, 4);
  const Prompt p = text(9, 0);
  ASSERT_EQ(alloc(bm, 1, p), 0);
  commit(bm, 1, p);
  ASSERT_EQ(alloc(bm, 2, p), 8);
  const std::vector<int32_t> ta = bm.block_table(1), tb = bm.block_table(2);
  EXPECT_EQ(bm.num_used_blocks(), 4);  // 2 shared + 1 tail each
  bm.free(1);
  EXPECT_EQ(bm.num_used_blocks(), 3);
  EXPECT_EQ(bm.ref_count(tb[0]), 1);
  EXPECT_EQ(bm.ref_count(tb[1]), 1);
  EXPECT_EQ(bm.ref_count(ta[2]), 0);
  EXPECT_EQ(bm.block_table(2), tb);
  bm.free(2);
  EXPECT_EQ(bm.num_used_blocks(), 0);
  EXPECT_EQ(bm.num_cached_blocks(), 2);  // freed but still cached
  expect_error([&] { bm.free(2); }, "unknown seq 2");
}

TEST(BlockManager, HitAfterFree) {
  BlockManager bm(8, 4);
  const Prompt p = text(9, 0);
  ASSERT_EQ(alloc(bm, 1, p), 0);
  commit(bm, 1, p);
  const std::vector<int32_t> ta = bm.block_table(1);
  bm.free(1);
  EXPECT_EQ(bm.num_used_blocks(), 0);
  ASSERT_EQ(alloc(bm, 2, p), 8);
  EXPECT_EQ(bm.block_table(2)[0], ta[0]);
  EXPECT_EQ(bm.block_table(2)[1], ta[1]);
  EXPECT_EQ(bm.num_used_blocks(), 3);
  EXPECT_EQ(bm.num_free_blocks(), 5);
}

TEST(BlockManager, LruEvictsOldestFreedFirst) {
  BlockManager bm(4, 4);
  const Prompt a = text(5, 100), b = text(5, 200);
  ASSERT_EQ(alloc(bm, 1, a), 0);
  commit(bm, 1, a);  // 1 full block cached
  bm.free(1);        // freed first: oldest
  ASSERT_EQ(alloc(bm, 2, b), 0);
  commit(bm, 2, b);
  const int32_t b_block = bm.block_table(2)[0];
  bm.free(2);
  ASSERT_EQ(bm.num_cached_blocks(), 2);
  // 4 blocks: 2 uncached free ones are handed out before any cached one.
  ASSERT_TRUE(alloc(bm, 10, text(4, 1000)));
  ASSERT_TRUE(alloc(bm, 11, text(4, 1100)));
  EXPECT_EQ(bm.num_cached_blocks(), 2);
  EXPECT_EQ(cached(bm, a), 4);
  EXPECT_EQ(cached(bm, b), 4);
  ASSERT_TRUE(alloc(bm, 12, text(4, 1200)));  // evicts a's block, the least recently freed
  EXPECT_EQ(bm.num_cached_blocks(), 1);
  EXPECT_EQ(cached(bm, a), 0);
  EXPECT_EQ(cached(bm, b), 4);
  bm.free(10);
  bm.free(11);
  bm.free(12);
  ASSERT_EQ(alloc(bm, 3, b), 4);
  EXPECT_EQ(bm.block_table(3)[0], b_block);
  EXPECT_EQ(alloc(bm, 4, a), 0);
}

TEST(BlockManager, FreedSequenceLosesItsTailBeforeItsHead) {
  BlockManager bm(3, 4);
  const Prompt a = text(9, 0);
  ASSERT_EQ(alloc(bm, 1, a), 0);
  commit(bm, 1, a);
  bm.free(1);
  ASSERT_TRUE(alloc(bm, 2, text(4, 100)));  // takes the uncached third block
  EXPECT_EQ(cached(bm, a), 8);
  ASSERT_TRUE(alloc(bm, 3, text(4, 200)));  // evicts a's second block
  EXPECT_EQ(cached(bm, a), 4);
  ASSERT_TRUE(alloc(bm, 4, text(4, 300)));  // evicts a's first block
  EXPECT_EQ(cached(bm, a), 0);
  EXPECT_EQ(bm.num_cached_blocks(), 0);
}

TEST(BlockManager, CollisionGuardComparesContent) {
  // Every block hashes to 42: only the stored token ids / image hashes tell them apart.
  BlockManager bm(32, 4, true, [](uint64_t, std::span<const int32_t>, std::span<const uint64_t>) {
    return uint64_t{42};
  });
  const Prompt a = text(5, 0), b = text(5, 50);
  ASSERT_EQ(alloc(bm, 1, a), 0);
  commit(bm, 1, a);
  EXPECT_EQ(alloc(bm, 2, b), 0);
  commit(bm, 2, b);  // collides with a's block: not cached
  EXPECT_EQ(bm.num_cached_blocks(), 1);
  Prompt a_other_image = a;
  a_other_image.images[1] = 5;
  EXPECT_EQ(alloc(bm, 3, a_other_image), 0);
  EXPECT_EQ(alloc(bm, 4, a), 4);
  EXPECT_EQ(alloc(bm, 5, b), 0);
}

// A hash that ignores the parent: identical blocks after different prefixes collide.
uint64_t parentless_hash(uint64_t, std::span<const int32_t> t, std::span<const uint64_t> m) {
  return BlockManager::default_block_hash(0, t, m);
}

TEST(BlockManager, CollisionGuardComparesParent) {
  BlockManager bm(32, 4, true, parentless_hash);
  const Prompt q = text(4, 500), z = text(1, 900);
  const Prompt a = concat(concat(text(4, 0), q), z), b = concat(concat(text(4, 100), q), z);
  ASSERT_EQ(alloc(bm, 1, a), 0);
  commit(bm, 1, a);
  ASSERT_EQ(alloc(bm, 2, b), 0);
  commit(bm, 2, b);  // block 0 cached; block 1 collides with a's block 1 (other parent)
  EXPECT_EQ(bm.num_cached_blocks(), 3);
  EXPECT_EQ(alloc(bm, 3, b), 4);  // not 8: a's q block was computed after another prefix
  EXPECT_EQ(alloc(bm, 4, a), 8);
}

TEST(BlockManager, CollisionGuardRejectsReregisteredParent) {
  BlockManager bm(6, 4, true, parentless_hash);
  const Prompt p = text(4, 0), q = text(4, 500), r = text(4, 700), z = text(1, 900);
  const Prompt a = concat(p, z), b = concat(concat(p, q), z);
  ASSERT_EQ(alloc(bm, 1, a), 0);  // blocks 0, 1
  ASSERT_EQ(alloc(bm, 2, b), 0);  // blocks 2, 3, 4 (nothing cached yet)
  commit(bm, 1, a);               // p cached in block 0
  commit(bm, 2, b);               // p: identical to block 0, stays private; q cached, parent 0
  EXPECT_EQ(bm.num_cached_blocks(), 2);
  EXPECT_EQ(cached(bm, b), 8);
  const int32_t p_block = bm.block_table(1)[0];
  bm.free(1);  // free list: a's tail (uncached), the never used block, then p
  ASSERT_TRUE(alloc(bm, 10, text(4, 1000)));
  ASSERT_TRUE(alloc(bm, 11, text(4, 1100)));
  ASSERT_EQ(alloc(bm, 12, r), 0);  // p evicted, r written into its block
  ASSERT_EQ(bm.block_table(12)[0], p_block);
  commit(bm, 12, r);  // r cached in block 0 (same block id, new registration)
  EXPECT_EQ(cached(bm, b), 0);
  // r then q: q's cache entry names block 0 as parent, but from p's registration.
  EXPECT_EQ(cached(bm, concat(concat(r, q), z)), 4);
}

TEST(BlockManager, DecodeAppendCrossesBlockBoundaryAndCommits) {
  BlockManager bm(8, 4);
  Prompt p = text(3, 0);
  ASSERT_EQ(alloc(bm, 1, p), 0);
  EXPECT_EQ(bm.block_table(1).size(), 1u);
  ASSERT_TRUE(bm.append_slot(1));  // position 3: fills block 0
  EXPECT_EQ(bm.block_table(1).size(), 1u);
  EXPECT_EQ(bm.num_used_blocks(), 1);
  ASSERT_TRUE(bm.append_slot(1));  // position 4: new block
  ASSERT_EQ(bm.block_table(1).size(), 2u);
  EXPECT_EQ(bm.num_used_blocks(), 2);
  EXPECT_EQ(bm.num_tokens(1), 5);
  EXPECT_EQ(bm.slot_of(1, 4), int64_t{bm.block_table(1)[1]} * 4);
  EXPECT_EQ(bm.slot_of(1, 3), int64_t{bm.block_table(1)[0]} * 4 + 3);
  // Generated tokens 3..7; commit as they are written.
  p = text(5, 0);
  commit(bm, 1, p);
  EXPECT_EQ(bm.num_cached_blocks(), 1);
  ASSERT_TRUE(bm.append_slot(1));
  ASSERT_TRUE(bm.append_slot(1));
  ASSERT_TRUE(bm.append_slot(1));
  EXPECT_EQ(bm.block_table(1).size(), 2u);
  p = text(8, 0);
  commit(bm, 1, p);
  EXPECT_EQ(bm.num_cached_blocks(), 2);
  EXPECT_EQ(alloc(bm, 2, concat(p, text(1, 77))), 8);
  expect_error([&] { commit(bm, 1, text(9, 0)); }, "has 8 tokens, got 9");
}

TEST(BlockManager, PrefixCachingDisabledNeverReuses) {
  BlockManager bm(16, 4, false);
  const Prompt p = text(9, 0);
  ASSERT_EQ(alloc(bm, 1, p), 0);
  commit(bm, 1, p);
  EXPECT_EQ(bm.num_cached_blocks(), 0);
  ASSERT_EQ(alloc(bm, 2, p), 0);
  EXPECT_EQ(bm.num_used_blocks(), 6);
  for (int32_t x : bm.block_table(1)) {
    for (int32_t y : bm.block_table(2)) EXPECT_NE(x, y);
  }
  bm.free(1);
  EXPECT_EQ(cached(bm, p), 0);
  EXPECT_EQ(alloc(bm, 3, p), 0);
}

TEST(BlockManager, Errors) {
  expect_error([] { BlockManager(0, 4); }, "num_blocks must be >= 1, got 0");
  expect_error([] { BlockManager(4, 0); }, "block_size must be >= 1, got 0");
  BlockManager bm(4, 4);
  ASSERT_TRUE(alloc(bm, 1, text(2, 0)));
  expect_error([&] { alloc(bm, 1, text(2, 0)); }, "seq 1 already allocated");
  expect_error([&] { alloc(bm, 2, text(0, 0)); }, "0 prompt tokens");
  Prompt bad = text(3, 0);
  bad.images.pop_back();
  expect_error([&] { alloc(bm, 2, bad); }, "image_hashes size 2 != tokens size 3");
  EXPECT_FALSE(bm.contains(2));
  expect_error([&] { bm.append_slot(9); }, "unknown seq 9");
  expect_error([&] { bm.ref_count(4); }, "block 4 outside [0, 4)");
}

}  // namespace
}  // namespace flamingo
