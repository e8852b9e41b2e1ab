#include "server/engine/block_manager.h"

#include <algorithm>
#include <string>
#include <utility>

#include "model/error.h"

namespace flamingo {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

[[noreturn]] void fail(const std::string& message) { throw Error("block_manager: " + message); }

void check_spans(const char* what, std::span<const int32_t> tokens,
                 std::span<const uint64_t> image_hashes) {
  if (image_hashes.size() != tokens.size()) {
    fail(std::string(what) + ": image_hashes size " + std::to_string(image_hashes.size()) +
         " != tokens size " + std::to_string(tokens.size()));
  }
}

}  // namespace

uint64_t BlockManager::default_block_hash(uint64_t parent, std::span<const int32_t> tokens,
                                          std::span<const uint64_t> image_hashes) {
  uint64_t h = splitmix64(parent ^ (static_cast<uint64_t>(tokens.size()) << 32));
  for (size_t i = 0; i < tokens.size(); ++i) {
    h = splitmix64(h ^ static_cast<uint32_t>(tokens[i]));
    h = splitmix64(h ^ image_hashes[i]);
  }
  return h;
}

BlockManager::BlockManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching,
                           BlockHashFn hash_fn)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      caching_(enable_prefix_caching),
      hash_fn_(hash_fn ? std::move(hash_fn) : BlockHashFn(&default_block_hash)) {
  if (num_blocks < 1) fail("num_blocks must be >= 1, got " + std::to_string(num_blocks));
  if (block_size < 1) fail("block_size must be >= 1, got " + std::to_string(block_size));
  blocks_.resize(static_cast<size_t>(num_blocks) + 1);
  const int32_t sentinel = num_blocks_;
  blocks_[sentinel].prev = blocks_[sentinel].next = sentinel;
  for (int32_t b = 0; b < num_blocks_; ++b) link_back(b);
}

// ---- free list: doubly linked through Block::prev/next, front = reused first ----

void BlockManager::unlink(int32_t block) {
  Block& b = blocks_[block];
  blocks_[b.prev].next = b.next;
  blocks_[b.next].prev = b.prev;
  b.prev = b.next = -1;
  --num_free_;
}

void BlockManager::link_front(int32_t block) {
  const int32_t sentinel = num_blocks_;
  const int32_t first = blocks_[sentinel].next;
  blocks_[block].prev = sentinel;
  blocks_[block].next = first;
  blocks_[first].prev = block;
  blocks_[sentinel].next = block;
  ++num_free_;
}

void BlockManager::link_back(int32_t block) {
  const int32_t sentinel = num_blocks_;
  const int32_t last = blocks_[sentinel].prev;
  blocks_[block].prev = last;
  blocks_[block].next = sentinel;
  blocks_[last].next = block;
  blocks_[sentinel].prev = block;
  ++num_free_;
}

int32_t BlockManager::take_fresh() {
  const int32_t block = blocks_[num_blocks_].next;
  if (block == num_blocks_) return -1;
  unlink(block);
  Block& b = blocks_[block];
  if (b.cached) {  // evict: the content is about to be overwritten
    by_hash_.erase(b.hash);
    b.cached = false;
    ++b.generation;
    b.tokens.clear();
    b.image_hashes.clear();
  }
  b.ref = 1;
  return block;
}

// ---- prefix cache ----

int32_t BlockManager::find_cached(uint64_t hash, int32_t parent, std::span<const int32_t> tokens,
                                  std::span<const uint64_t> images) const {
  const auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return -1;
  const Block& b = blocks_[it->second];
  // Collision guard: same parent registration and same content, not just the same hash.
  if (b.parent != parent) return -1;
  if (parent >= 0 && b.parent_generation != blocks_[parent].generation) return -1;
  if (!std::equal(tokens.begin(), tokens.end(), b.tokens.begin(), b.tokens.end())) return -1;
  if (!std::equal(images.begin(), images.end(), b.image_hashes.begin(), b.image_hashes.end())) {
    return -1;
  }
  return it->second;
}

BlockManager::Match BlockManager::match_prefix(std::span<const int32_t> tokens,
                                               std::span<const uint64_t> images,
                                               int32_t max_cached) const {
  Match match;
  if (!caching_ || tokens.empty()) return match;
  size_t limit = tokens.size() - 1;  // keep the last token computed
  if (max_cached >= 0) limit = std::min(limit, static_cast<size_t>(max_cached));
  const size_t max_blocks = limit / block_size_;
  uint64_t parent_hash = kRootHash;
  int32_t parent = -1;
  for (size_t i = 0; i < max_blocks; ++i) {
    const auto t = tokens.subspan(i * block_size_, block_size_);
    const auto m = images.subspan(i * block_size_, block_size_);
    const uint64_t hash = hash_fn_(parent_hash, t, m);
    const int32_t block = find_cached(hash, parent, t, m);
    if (block < 0) break;
    match.blocks.push_back(block);
    match.hashes.push_back(hash);
    parent = block;
    parent_hash = hash;
  }
  return match;
}

int32_t BlockManager::cached_prefix_tokens(std::span<const int32_t> tokens,
                                           std::span<const uint64_t> image_hashes) const {
  check_spans("cached_prefix_tokens", tokens, image_hashes);
  return static_cast<int32_t>(match_prefix(tokens, image_hashes).blocks.size()) * block_size_;
}

// ---- sequences ----

std::optional<int32_t> BlockManager::allocate(SeqId seq, std::span<const int32_t> tokens,
                                              std::span<const uint64_t> image_hashes,
                                              int32_t max_cached) {
  if (contains(seq)) fail("allocate: seq " + std::to_string(seq) + " already allocated");
  if (tokens.empty()) fail("allocate: seq " + std::to_string(seq) + " has 0 prompt tokens");
  check_spans("allocate", tokens, image_hashes);
  Match match = match_prefix(tokens, image_hashes, max_cached);
  const int64_t needed = (static_cast<int64_t>(tokens.size()) + block_size_ - 1) / block_size_;
  const int64_t fresh = needed - static_cast<int64_t>(match.blocks.size());
  // Matched blocks with ref 0 sit in the free list: reusing them consumes free blocks too.
  const int64_t idle_hits = std::count_if(match.blocks.begin(), match.blocks.end(),
                                          [&](int32_t b) { return blocks_[b].ref == 0; });
  if (fresh > num_free_ - idle_hits) return std::nullopt;

  Seq s;
  for (int32_t block : match.blocks) {
    if (blocks_[block].ref == 0) unlink(block);
    ++blocks_[block].ref;
    s.table.push_back(block);
    s.canonical.push_back(block);
    s.canonical_generation.push_back(blocks_[block].generation);
  }
  s.hashes = std::move(match.hashes);
  for (int64_t i = 0; i < fresh; ++i) s.table.push_back(take_fresh());
  s.num_tokens = static_cast<int32_t>(tokens.size());
  seqs_.emplace(seq, std::move(s));
  return static_cast<int32_t>(match.blocks.size()) * block_size_;
}

bool BlockManager::append_slot(SeqId seq) {
  Seq& s = seq_or_throw(seq);
  if (static_cast<int64_t>(s.num_tokens) == static_cast<int64_t>(s.table.size()) * block_size_) {
    const int32_t block = take_fresh();
    if (block < 0) return false;
    s.table.push_back(block);
  }
  ++s.num_tokens;
  return true;
}

void BlockManager::commit_full_blocks(SeqId seq, std::span<const int32_t> tokens,
                                      std::span<const uint64_t> image_hashes) {
  Seq& s = seq_or_throw(seq);
  check_spans("commit_full_blocks", tokens, image_hashes);
  if (tokens.size() > static_cast<size_t>(s.num_tokens)) {
    fail("commit_full_blocks: seq " + std::to_string(seq) + " has " + std::to_string(s.num_tokens) +
         " tokens, got " + std::to_string(tokens.size()));
  }
  if (!caching_) return;
  const size_t full = tokens.size() / block_size_;
  for (size_t i = s.hashes.size(); i < full; ++i) {
    const auto t = tokens.subspan(i * block_size_, block_size_);
    const auto m = image_hashes.subspan(i * block_size_, block_size_);
    const uint64_t parent_hash = i == 0 ? kRootHash : s.hashes[i - 1];
    const uint64_t hash = hash_fn_(parent_hash, t, m);
    s.hashes.push_back(hash);
    int32_t parent = -1;
    if (i > 0) {
      parent = s.canonical[i - 1];
      // Chain broken by a collision, or its cached parent evicted since: not reachable.
      if (parent < 0 || blocks_[parent].generation != s.canonical_generation[i - 1]) {
        s.canonical.push_back(-1);
        s.canonical_generation.push_back(0);
        continue;
      }
    }
    int32_t canonical = -1;
    if (by_hash_.count(hash) != 0) {
      canonical = find_cached(hash, parent, t, m);  // identical block already cached, or -1
    } else {
      const int32_t block = s.table[i];
      Block& b = blocks_[block];
      b.cached = true;
      b.hash = hash;
      b.parent = parent;
      b.parent_generation = parent >= 0 ? blocks_[parent].generation : 0;
      b.tokens.assign(t.begin(), t.end());
      b.image_hashes.assign(m.begin(), m.end());
      by_hash_.emplace(hash, block);
      canonical = block;
    }
    s.canonical.push_back(canonical);
    s.canonical_generation.push_back(canonical >= 0 ? blocks_[canonical].generation : 0);
  }
}

void BlockManager::free(SeqId seq) {
  Seq& s = seq_or_throw(seq);
  for (auto it = s.table.rbegin(); it != s.table.rend(); ++it) {
    Block& b = blocks_[*it];
    if (--b.ref > 0) continue;
    // Cached blocks become evictable, most recently freed last (the tail before the head);
    // uncached ones hold nothing worth keeping and are reused first.
    if (b.cached) {
      link_back(*it);
    } else {
      link_front(*it);
    }
  }
  seqs_.erase(seq);
}

// ---- queries ----

bool BlockManager::can_allocate(int32_t n_tokens) const {
  if (n_tokens < 0) return false;
  return (static_cast<int64_t>(n_tokens) + block_size_ - 1) / block_size_ <= num_free_;
}

int32_t BlockManager::ref_count(int32_t block) const {
  if (block < 0 || block >= num_blocks_) {
    fail("ref_count: block " + std::to_string(block) + " outside [0, " +
         std::to_string(num_blocks_) + ")");
  }
  return blocks_[block].ref;
}

BlockManager::Seq& BlockManager::seq_or_throw(SeqId seq) {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end()) fail("unknown seq " + std::to_string(seq));
  return it->second;
}

const BlockManager::Seq& BlockManager::seq_or_throw(SeqId seq) const {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end()) fail("unknown seq " + std::to_string(seq));
  return it->second;
}

int32_t BlockManager::num_tokens(SeqId seq) const { return seq_or_throw(seq).num_tokens; }

const std::vector<int32_t>& BlockManager::block_table(SeqId seq) const {
  return seq_or_throw(seq).table;
}

int64_t BlockManager::slot_of(SeqId seq, int32_t position) const {
  const Seq& s = seq_or_throw(seq);
  if (position < 0 || position >= s.num_tokens) {
    fail("slot_of: seq " + std::to_string(seq) + " position " + std::to_string(position) +
         " outside [0, " + std::to_string(s.num_tokens) + ")");
  }
  return static_cast<int64_t>(s.table[position / block_size_]) * block_size_ +
         position % block_size_;
}

}  // namespace flamingo
