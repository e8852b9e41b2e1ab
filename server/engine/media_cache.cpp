#include "server/engine/media_cache.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>

#include "model/error.h"

namespace flamingo {
namespace {

[[noreturn]] void fail(const std::string& message) { throw Error("media_cache: " + message); }

}  // namespace

uint64_t media_key(std::span<const uint8_t> bytes, int image_size, const std::array<float, 3>& mean,
                   const std::array<float, 3>& std) {
  // Config blob: image_size then the six floats' bit patterns, hashed into the seed.
  unsigned char config[sizeof(int32_t) + 6 * sizeof(float)];
  const int32_t size32 = image_size;
  std::memcpy(config, &size32, sizeof(size32));
  std::memcpy(config + sizeof(int32_t), mean.data(), 3 * sizeof(float));
  std::memcpy(config + sizeof(int32_t) + 3 * sizeof(float), std.data(), 3 * sizeof(float));
  const XXH64_hash_t seed = XXH3_64bits(config, sizeof(config));
  return XXH3_64bits_withSeed(bytes.data(), bytes.size(), seed);
}

MediaCache::MediaCache(int64_t budget_bytes) : budget_bytes_(budget_bytes) {
  if (budget_bytes < 1) fail("budget_bytes must be >= 1, got " + std::to_string(budget_bytes));
}

std::optional<MediaCache::Lookup> MediaCache::acquire(uint64_t key, int64_t bytes) {
  if (bytes < 0 || bytes > budget_bytes_) {
    fail("acquire: bytes must be in [0, budget " + std::to_string(budget_bytes_) + "], got " +
         std::to_string(bytes));
  }
  if (auto it = by_key_.find(key); it != by_key_.end()) {
    Entry& e = slots_[it->second];
    if (e.bytes != bytes) {
      fail("acquire: key " + std::to_string(key) + " is cached with " + std::to_string(e.bytes) +
           " bytes, asked for " + std::to_string(bytes));
    }
    if (e.ref == 0) {
      lru_.erase(e.lru);
      evictable_bytes_ -= e.bytes;
    }
    ++e.ref;
    return Lookup{it->second, true};
  }
  // Fits only if the referenced entries leave room; check first so failure changes nothing.
  if (used_bytes_ - evictable_bytes_ + bytes > budget_bytes_) return std::nullopt;
  while (used_bytes_ + bytes > budget_bytes_) drop(lru_.front());
  const int32_t slot = take_slot();
  Entry& e = slots_[slot];
  e.live = true;
  e.key = key;
  e.bytes = bytes;
  e.ref = 1;
  used_bytes_ += bytes;
  by_key_.emplace(key, slot);
  return Lookup{slot, false};
}

void MediaCache::release(int32_t slot) {
  Entry& e = live_or_throw("release", slot);
  if (e.ref == 0) fail("release: slot " + std::to_string(slot) + " has ref count 0");
  if (--e.ref == 0) {
    e.lru = lru_.insert(lru_.end(), slot);
    evictable_bytes_ += e.bytes;
  }
}

std::vector<int32_t> MediaCache::take_evicted() {
  std::vector<int32_t> out;
  out.swap(evicted_);
  for (int32_t slot : out) {
    free_slots_.push_back(slot);
    std::push_heap(free_slots_.begin(), free_slots_.end(), std::greater<>());
  }
  return out;
}

int32_t MediaCache::ref_count(int32_t slot) const {
  if (slot < 0 || slot >= static_cast<int32_t>(slots_.size())) {
    fail("ref_count: slot " + std::to_string(slot) + " outside [0, " +
         std::to_string(slots_.size()) + ")");
  }
  return slots_[slot].live ? slots_[slot].ref : 0;
}

MediaCache::Entry& MediaCache::live_or_throw(const char* what, int32_t slot) {
  if (slot < 0 || slot >= static_cast<int32_t>(slots_.size()) || !slots_[slot].live) {
    fail(std::string(what) + ": slot " + std::to_string(slot) + " holds no entry");
  }
  return slots_[slot];
}

void MediaCache::drop(int32_t slot) {
  Entry& e = slots_[slot];
  lru_.erase(e.lru);
  evictable_bytes_ -= e.bytes;
  used_bytes_ -= e.bytes;
  by_key_.erase(e.key);
  e = Entry{};
  evicted_.push_back(slot);
}

int32_t MediaCache::take_slot() {
  if (free_slots_.empty()) {
    slots_.emplace_back();
    return static_cast<int32_t>(slots_.size()) - 1;
  }
  std::pop_heap(free_slots_.begin(), free_slots_.end(), std::greater<>());
  const int32_t slot = free_slots_.back();
  free_slots_.pop_back();
  return slot;
}

}  // namespace flamingo
