// The flattened batch one forward pass consumes: the tokens of several sequences laid end to
// end, each with its position, sequence, KV slot and image. Plain data, torch-free, built by
// the engine (or the CLI's generator) and read by FlamingoModel::forward.
#pragma once

#include <cstdint>
#include <vector>

namespace flamingo {

struct FlatBatch {
  std::vector<int32_t> token_ids;       // [T]
  std::vector<int32_t> positions;       // [T] position within its sequence (RoPE, causality)
  std::vector<int32_t> seq_of_token;    // [T] row of block_tables
  std::vector<int64_t> slots;           // [T] KV slot = block * block_size + offset
  std::vector<int32_t> image_of_token;  // [T] index into the forward's images, -1 = none
  std::vector<std::vector<int32_t>> block_tables;  // [S][blocks]
  std::vector<int32_t> logit_rows;                 // token rows whose logits the forward returns

  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
  int64_t num_seqs() const { return static_cast<int64_t>(block_tables.size()); }
};

}  // namespace flamingo
