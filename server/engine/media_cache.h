// Media cache bookkeeping for the engine: which images (by content key) have their encoded
// form (perceiver latents and per-layer cross-attention K/V, stored in model/) cached, under
// which slot id, how many running requests reference each, and the byte budget they share.
// Only integers live here; the tensors stay in model/, indexed by slot. Entries nobody
// references stay cached and are evicted least recently released first when a new image
// needs room. Evicted slots are reported once by take_evicted() (the caller drops their
// tensors) and only then handed out again, so a slot is never reused before its old
// tensors are dropped. Two images with the same 64-bit key share an entry (collisions are
// not detected; XXH3 makes them ~2^-64 per pair).
//
// Not thread-safe: owned and called only by the engine thread.
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace flamingo {

// Content key of an image: XXH3-64 of its encoded bytes, seeded with a hash of the
// preprocessing config (image_size and the bit patterns of mean/std), so the same bytes
// preprocessed differently never share an entry.
uint64_t media_key(std::span<const uint8_t> bytes, int image_size, const std::array<float, 3>& mean,
                   const std::array<float, 3>& std);

class MediaCache {
 public:
  struct Lookup {
    int32_t slot;
    bool hit;  // false: the caller must encode the image and store its tensors at `slot`
  };

  // Throws flamingo::Error unless budget_bytes >= 1.
  explicit MediaCache(int64_t budget_bytes);

  // Hit: ref++ and returns the entry's slot (the entry leaves the eviction order). Miss:
  // evicts unreferenced entries, least recently released first, until `bytes` fit, and
  // reserves a slot with ref 1. std::nullopt, state unchanged, when it cannot fit even with
  // every unreferenced entry evicted (the caller answers RESOURCE_EXHAUSTED). Throws
  // flamingo::Error when bytes < 0, bytes > budget, or on a hit whose bytes differ from the
  // cached entry's.
  std::optional<Lookup> acquire(uint64_t key, int64_t bytes);

  // ref--; at 0 the entry stays cached and becomes the most recently used evictable entry.
  // Throws flamingo::Error when the slot holds no entry or its ref count is already 0.
  void release(int32_t slot);

  // Slots evicted since the last call, in eviction order; each is reported once
  // and becomes reusable only after being reported.
  std::vector<int32_t> take_evicted();

  int64_t used_bytes() const { return used_bytes_; }  // all cached entries, referenced or not
  int64_t budget_bytes() const { return budget_bytes_; }
  int64_t evictable_bytes() const { return evictable_bytes_; }  // entries with ref 0
  int32_t num_entries() const { return static_cast<int32_t>(by_key_.size()); }
  bool contains(uint64_t key) const { return by_key_.count(key) != 0; }
  // Ref count of the entry at `slot`, 0 for a slot holding no entry. Throws flamingo::Error
  // when slot < 0 or slot >= the number of slots ever handed out.
  int32_t ref_count(int32_t slot) const;

 private:
  struct Entry {
    bool live = false;
    uint64_t key = 0;
    int64_t bytes = 0;
    int32_t ref = 0;
    std::list<int32_t>::iterator lru;  // valid when live && ref == 0
  };

  Entry& live_or_throw(const char* what, int32_t slot);
  void drop(int32_t slot);  // removes a live entry, queues its slot for take_evicted()
  int32_t take_slot();

  int64_t budget_bytes_;
  int64_t used_bytes_ = 0;
  int64_t evictable_bytes_ = 0;
  std::vector<Entry> slots_;
  std::unordered_map<uint64_t, int32_t> by_key_;
  std::list<int32_t> lru_;           // unreferenced entries, least recently released first
  std::vector<int32_t> free_slots_;  // reported slots, reused smallest first (min-heap)
  std::vector<int32_t> evicted_;     // dropped, not yet reported
};

}  // namespace flamingo
