// The generation defaults of a model family: what every generation honours (stop ids, stop
// strings, never-sampled ids). Computed by Pipeline::generation_defaults(); plain data,
// torch-free, so the engine's bookkeeping can hold it without ATen.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace flamingo {

// What every generation of the family honours.
struct FamilyDefaults {
  std::vector<int32_t> stop_ids;  // </s>, <end_of_utterance> (when the model has its row)
  std::vector<std::string> stop;  // "<end_of_utterance>" when the model can only spell it
  // Never sampled: <image>, <fake_token_around_image>, and every id that has an embedding row
  // but no token in the tokenizer (a padded vocabulary).
  std::vector<int32_t> banned_ids;
  // Those ids without a token, as inclusive ranges [first, last] (for the load log).
  std::vector<std::pair<int32_t, int32_t>> rows_without_tokens;
};

}  // namespace flamingo
