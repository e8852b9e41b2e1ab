#include "server/engine/media_cache.h"

#include <gtest/gtest.h>

#include <vector>

#include "model/error.h"

namespace flamingo {
namespace {

using Bytes = std::vector<uint8_t>;
constexpr std::array<float, 3> kMean = {0.48145466f, 0.4578275f, 0.40821073f};
constexpr std::array<float, 3> kStd = {0.26862954f, 0.26130258f, 0.27577711f};

TEST(MediaKeyTest, SameInputsSameKeyAnyChangeDiffers) {
  const Bytes png = {0x89, 'P', 'N', 'G', 1, 2, 3, 4, 5};
  const uint64_t k = media_key(png, 224, kMean, kStd);
  EXPECT_EQ(media_key(Bytes(png), 224, kMean, kStd), k);  // a copy: content, not address

  Bytes other = png;
  other.back() ^= 1;
  EXPECT_NE(media_key(other, 224, kMean, kStd), k);
  EXPECT_NE(media_key(std::span(png).first(8), 224, kMean, kStd), k);
  // Same bytes, different preprocessing: every config field takes part.
  EXPECT_NE(media_key(png, 30, kMean, kStd), k);
  for (int i = 0; i < 3; ++i) {
    auto mean = kMean, std = kStd;
    mean[i] += 1e-3f;
    EXPECT_NE(media_key(png, 224, mean, kStd), k) << "mean[" << i << "]";
    std[i] += 1e-3f;
    EXPECT_NE(media_key(png, 224, kMean, std), k) << "std[" << i << "]";
  }
  // Swapping mean and std is a different config too.
  EXPECT_NE(media_key(png, 224, kStd, kMean), k);
  EXPECT_NE(media_key(Bytes{}, 224, kMean, kStd), media_key(Bytes{}, 30, kMean, kStd));
}

TEST(MediaCacheTest, MissThenHitCountsRefs) {
  MediaCache c(1000);
  EXPECT_EQ(c.budget_bytes(), 1000);
  auto a = c.acquire(11, 100);
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->hit);
  EXPECT_EQ(a->slot, 0);
  EXPECT_EQ(c.ref_count(0), 1);
  auto a2 = c.acquire(11, 100);
  ASSERT_TRUE(a2);
  EXPECT_TRUE(a2->hit);
  EXPECT_EQ(a2->slot, 0);
  EXPECT_EQ(c.ref_count(0), 2);
  auto b = c.acquire(22, 50);
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->hit);
  EXPECT_EQ(b->slot, 1);
  EXPECT_EQ(c.used_bytes(), 150);  // a counted once although acquired twice
  EXPECT_EQ(c.num_entries(), 2);
  EXPECT_TRUE(c.contains(11));
  EXPECT_TRUE(c.contains(22));
  EXPECT_FALSE(c.contains(33));

  c.release(0);
  c.release(0);
  EXPECT_EQ(c.ref_count(0), 0);
  EXPECT_TRUE(c.contains(11));  // stays cached at ref 0
  EXPECT_EQ(c.used_bytes(), 150);
  EXPECT_EQ(c.evictable_bytes(), 100);
  auto a3 = c.acquire(11, 100);  // hit on an unreferenced entry revives it
  ASSERT_TRUE(a3);
  EXPECT_TRUE(a3->hit);
  EXPECT_EQ(a3->slot, 0);
  EXPECT_EQ(c.ref_count(0), 1);
  EXPECT_EQ(c.evictable_bytes(), 0);
  EXPECT_TRUE(c.take_evicted().empty());
}

TEST(MediaCacheTest, BudgetEnforcedAndNulloptLeavesStateUnchanged) {
  MediaCache c(100);
  ASSERT_TRUE(c.acquire(1, 60));
  EXPECT_FALSE(c.acquire(2, 50));  // 60 + 50 > 100, and entry 1 is referenced
  EXPECT_EQ(c.used_bytes(), 60);
  EXPECT_EQ(c.num_entries(), 1);
  EXPECT_FALSE(c.contains(2));
  auto b = c.acquire(2, 40);  // 60 + 40 == 100 fits exactly
  ASSERT_TRUE(b);
  EXPECT_EQ(c.used_bytes(), 100);
  EXPECT_FALSE(c.acquire(3, 1));                  // everything referenced: nothing may be evicted
  EXPECT_FALSE(c.acquire(3, 0) == std::nullopt);  // a 0-byte entry always fits
  EXPECT_EQ(c.num_entries(), 3);
  EXPECT_TRUE(c.take_evicted().empty());
  EXPECT_EQ(c.ref_count(0), 1);
  EXPECT_EQ(c.ref_count(1), 1);
}

TEST(MediaCacheTest, EvictsUnreferencedLeastRecentlyReleasedFirst) {
  MediaCache c(100);
  // Slots 0..3 hold keys 10, 20, 30, 40 with 25 bytes each; 40 stays referenced.
  for (uint64_t k : {10, 20, 30, 40}) ASSERT_TRUE(c.acquire(k, 25));
  c.release(1);  // 20 first: least recently released
  c.release(0);  // then 10
  c.release(2);  // then 30
  EXPECT_EQ(c.evictable_bytes(), 75);

  // Needs 30: 100 + 30 - 25 (evict 20) = 105 > 100, - 25 (evict 10) = 80 fits.
  auto e = c.acquire(50, 30);
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->hit);
  EXPECT_EQ(e->slot, 4);  // evicted slots are not reused before take_evicted reports them
  EXPECT_FALSE(c.contains(20));
  EXPECT_FALSE(c.contains(10));
  EXPECT_TRUE(c.contains(30));
  EXPECT_TRUE(c.contains(40));
  EXPECT_EQ(c.used_bytes(), 80);
  EXPECT_EQ(c.ref_count(1), 0);
  EXPECT_EQ(c.ref_count(0), 0);

  EXPECT_EQ(c.take_evicted(), (std::vector<int32_t>{1, 0}));
  EXPECT_TRUE(c.take_evicted().empty());  // reported once

  // Needs 45: 80 + 45 - 25 (evict 30, the only unreferenced entry) = 100 fits. Slot 0 is the
  // smallest reported slot.
  auto f = c.acquire(60, 45);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->slot, 0);
  EXPECT_FALSE(c.contains(30));
  EXPECT_TRUE(c.contains(40));  // referenced, never evicted
  EXPECT_EQ(c.used_bytes(), 100);
  EXPECT_EQ(c.take_evicted(), (std::vector<int32_t>{2}));
  auto g = c.acquire(20, 0);  // re-acquiring an evicted key is a miss into a reported slot
  ASSERT_TRUE(g);
  EXPECT_FALSE(g->hit);
  EXPECT_EQ(g->slot, 1);
}

TEST(MediaCacheTest, HitMovesEntryOutOfEvictionOrder) {
  MediaCache c(60);
  ASSERT_TRUE(c.acquire(1, 20));  // slot 0
  ASSERT_TRUE(c.acquire(2, 20));  // slot 1
  c.release(0);
  c.release(1);
  ASSERT_TRUE(c.acquire(1, 20)->hit);  // 1 is referenced again
  c.release(0);                        // and now the most recently released
  ASSERT_TRUE(c.acquire(3, 40));       // 80 > 60: evicts 2 only
  EXPECT_EQ(c.take_evicted(), (std::vector<int32_t>{1}));
  EXPECT_TRUE(c.contains(1));
}

TEST(MediaCacheTest, NulloptWhenEverythingReferenced) {
  MediaCache c(100);
  ASSERT_TRUE(c.acquire(1, 50));
  ASSERT_TRUE(c.acquire(2, 30));
  ASSERT_TRUE(c.acquire(3, 20));
  c.release(2);  // 20 bytes evictable: 100 - 20 + 21 > 100 still does not fit
  EXPECT_FALSE(c.acquire(4, 21));
  EXPECT_TRUE(c.contains(3));  // nothing evicted by the failed attempt
  EXPECT_EQ(c.used_bytes(), 100);
  EXPECT_TRUE(c.take_evicted().empty());
  EXPECT_TRUE(c.acquire(4, 20));  // 20 fits by evicting key 3
  EXPECT_EQ(c.take_evicted(), (std::vector<int32_t>{2}));
}

TEST(MediaCacheTest, Errors) {
  EXPECT_THROW(MediaCache(0), Error);
  MediaCache c(100);
  EXPECT_THROW(c.acquire(1, -1), Error);
  EXPECT_THROW(c.acquire(1, 101), Error);
  EXPECT_EQ(c.num_entries(), 0);
  EXPECT_THROW(c.release(0), Error);  // never handed out
  EXPECT_THROW(c.release(-1), Error);
  ASSERT_TRUE(c.acquire(1, 10));
  EXPECT_THROW(c.acquire(1, 11), Error);  // same key, different size
  EXPECT_EQ(c.ref_count(0), 1);
  c.release(0);
  EXPECT_THROW(c.release(0), Error);  // already at ref 0
  EXPECT_THROW(c.ref_count(1), Error);
  EXPECT_THROW(c.ref_count(-1), Error);
  try {
    c.release(0);
    ADD_FAILURE() << "release at ref 0 did not throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos);
    EXPECT_NE(msg.find("media_cache: release: slot 0"), std::string::npos) << msg;
  }
  ASSERT_TRUE(c.acquire(2, 100));     // evicts key 1 from slot 0; the new entry gets slot 1
  EXPECT_THROW(c.release(0), Error);  // evicted slot holds no entry
}

}  // namespace
}  // namespace flamingo
