// KV block bookkeeping for the engine: which physical blocks of the paged self-attention KV
// cache (model/kv_cache.h) each running sequence owns, their reference counts, the free list,
// and the prefix cache that lets sequences with a common prompt prefix share full blocks.
// Only integers live here; the K/V tensors stay in model/. A sequence's token at position p
// lives in slot table[p / block_size] * block_size + p % block_size (FlatBatch::slots).
//
// Prefix caching (vLLM-style): a FULL block is keyed by hash(parent block's hash, its token
// ids, the per-token content hash of the image each token attends to, 0 for none), so the
// same text after a different image never shares blocks. Lookups compare the stored token
// ids, image hashes and parent block (with its registration generation) of the cached block,
// so a hash collision can never cause false sharing. Free blocks keep their hash (evictable
// cached blocks) until they are handed out fresh, least recently freed first.
//
// Not thread-safe: owned and called only by the engine thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace flamingo {

class BlockManager {
 public:
  using SeqId = int64_t;
  // Hash of one full block: (parent block hash or kRootHash, its token ids, per-token image
  // hashes). Injectable so tests can force collisions.
  using BlockHashFn = std::function<uint64_t(uint64_t parent, std::span<const int32_t> tokens,
                                             std::span<const uint64_t> image_hashes)>;
  static constexpr uint64_t kRootHash = 0x6a09e667f3bcc908ULL;  // parent hash of block 0
  // Default BlockHashFn: a splitmix64 combine over the parent hash and every token/image hash.
  static uint64_t default_block_hash(uint64_t parent, std::span<const int32_t> tokens,
                                     std::span<const uint64_t> image_hashes);

  // Throws flamingo::Error unless num_blocks >= 1 and block_size >= 1.
  BlockManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching = true,
               BlockHashFn hash_fn = nullptr);

  // Gives a new sequence blocks for its whole prompt (tokens[i] with image_hashes[i], same
  // length, non-empty). Reuses the longest chain of cached full blocks, capped at
  // tokens.size() - 1 tokens rounded down to whole blocks (the last prompt token is always
  // computed so its logits exist; max_cached >= 0 lowers that cap, for a sequence that needs
  // the logits of earlier positions), then takes fresh blocks for the rest. Returns the number of
  // prompt tokens whose KV is already cached (a multiple of block_size; the caller computes
  // tokens from there on), or std::nullopt, state unchanged, when free blocks run short.
  // Throws flamingo::Error if `seq` already exists or the spans are empty/mismatched.
  std::optional<int32_t> allocate(SeqId seq, std::span<const int32_t> tokens,
                                  std::span<const uint64_t> image_hashes, int32_t max_cached = -1);

  // Makes room for one more token at position num_tokens(seq), taking a fresh block when the
  // last one is full. Returns false, state unchanged, when no free block is left.
  bool append_slot(SeqId seq);

  // Registers, for reuse by later sequences, every full block of `seq` covered by
  // tokens/image_hashes: the sequence's tokens from position 0 whose KV has been written
  // (call after each forward; already registered blocks are skipped). A block identical to an
  // already cached one stays private; a block whose hash collides with different content is
  // not cached, nor are the blocks after it. No-op when prefix caching is off. Throws
  // flamingo::Error on unknown seq, mismatched spans or more tokens than num_tokens(seq).
  void commit_full_blocks(SeqId seq, std::span<const int32_t> tokens,
                          std::span<const uint64_t> image_hashes);

  // Releases the sequence: ref counts drop, blocks reaching 0 return to the free list (cached
  // ones keep their hash, at the most-recently-freed end, the sequence's tail first; uncached
  // ones go where they are reused first). Throws flamingo::Error on unknown seq.
  void free(SeqId seq);

  // Prompt tokens that allocate() would find cached right now (same cap rule); no change.
  int32_t cached_prefix_tokens(std::span<const int32_t> tokens,
                               std::span<const uint64_t> image_hashes) const;

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  bool prefix_caching_enabled() const { return caching_; }
  int32_t num_free_blocks() const { return num_free_; }  // includes evictable cached blocks
  int32_t num_used_blocks() const { return num_blocks_ - num_free_; }
  int32_t num_cached_blocks() const { return static_cast<int32_t>(by_hash_.size()); }
  // Whether a sequence of n_tokens fits in the free blocks even with no prefix hit.
  bool can_allocate(int32_t n_tokens) const;
  bool contains(SeqId seq) const { return seqs_.count(seq) != 0; }
  int32_t ref_count(int32_t block) const;  // throws flamingo::Error when out of range
  // The following throw flamingo::Error on an unknown seq or position outside [0, num_tokens).
  int32_t num_tokens(SeqId seq) const;
  const std::vector<int32_t>& block_table(SeqId seq) const;
  int64_t slot_of(SeqId seq, int32_t position) const;

 private:
  struct Block {
    int32_t ref = 0;
    int32_t prev = -1, next = -1;  // free list links (sentinel = num_blocks_)
    bool cached = false;           // registered in by_hash_
    uint64_t hash = 0;
    uint64_t generation = 0;  // bumped whenever the registration is dropped
    int32_t parent = -1;      // cached parent block (-1 for block 0 of a chain)
    uint64_t parent_generation = 0;
    std::vector<int32_t> tokens;
    std::vector<uint64_t> image_hashes;
  };
  struct Seq {
    std::vector<int32_t> table;
    int32_t num_tokens = 0;
    // Per committed block: its chain hash and the cached block holding that content (-1 when
    // the chain was broken by a collision), with that block's generation.
    std::vector<uint64_t> hashes;
    std::vector<int32_t> canonical;
    std::vector<uint64_t> canonical_generation;
  };
  struct Match {
    std::vector<int32_t> blocks;
    std::vector<uint64_t> hashes;
  };

  Match match_prefix(std::span<const int32_t> tokens, std::span<const uint64_t> images,
                     int32_t max_cached = -1) const;
  int32_t find_cached(uint64_t hash, int32_t parent, std::span<const int32_t> tokens,
                      std::span<const uint64_t> images) const;
  Seq& seq_or_throw(SeqId seq);
  const Seq& seq_or_throw(SeqId seq) const;
  int32_t take_fresh();  // pops the least recently freed block, dropping its hash
  void unlink(int32_t block);
  void link_front(int32_t block);
  void link_back(int32_t block);

  int32_t num_blocks_, block_size_;
  bool caching_;
  BlockHashFn hash_fn_;
  std::vector<Block> blocks_;  // num_blocks_ + 1: the last is the free list sentinel
  int32_t num_free_ = 0;
  std::unordered_map<uint64_t, int32_t> by_hash_;
  std::unordered_map<SeqId, Seq> seqs_;
};

}  // namespace flamingo
