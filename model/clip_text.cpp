#include "model/clip_text.h"

#include <algorithm>
#include <map>

#include "model/error.h"

namespace flamingo {

ClipText::ClipText(const ClipTextConfig& c, WeightLoader& w, const std::string& prefix)
    : config_(c) {
  const int64_t d = c.hidden_size;
  token_embedding_ = w.get(prefix + ".embeddings.token_embedding.weight", {c.vocab_size, d});
  position_embedding_ =
      w.get(prefix + ".embeddings.position_embedding.weight", {c.max_position_embeddings, d});
  encoder_ = ClipEncoder({d, c.num_attention_heads, c.intermediate_size, c.num_hidden_layers,
                          c.layer_norm_eps, c.hidden_act},
                         w, prefix + ".encoder");
  final_norm_ = LayerNorm(w, prefix + ".final_layer_norm", d, c.layer_norm_eps);
}

int64_t ClipText::pool_position_for(const ClipTextConfig& config, const std::vector<int32_t>& ids) {
  if (config.eos_token_id == 2) {  // argmax of the ids (the first maximum)
    return std::max_element(ids.begin(), ids.end()) - ids.begin();
  }
  // The first position holding eos_token_id; argmax of an all-zero mask (none) is 0.
  const auto it = std::find(ids.begin(), ids.end(), static_cast<int32_t>(config.eos_token_id));
  return it == ids.end() ? 0 : it - ids.begin();
}

at::Tensor ClipText::pooled(const std::vector<std::vector<int32_t>>& ids) const {
  const int64_t d = config_.hidden_size;
  std::map<size_t, std::vector<size_t>> by_length;  // texts of one length form one batch
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::vector<int32_t>& t = ids[i];
    if (t.empty() || static_cast<int64_t>(t.size()) > config_.max_position_embeddings) {
      throw Error("clip text: " + std::to_string(t.size()) + " tokens, expected 1 to " +
                  std::to_string(config_.max_position_embeddings));
    }
    for (int32_t id : t) {
      if (id < 0 || id >= config_.vocab_size) {
        throw Error("clip text: token id " + std::to_string(id) + " outside [0, " +
                    std::to_string(config_.vocab_size) + ")");
      }
    }
    by_length[t.size()].push_back(i);
  }
  at::Tensor out = at::empty({static_cast<int64_t>(ids.size()), d}, token_embedding_.options());
  for (const auto& [len, members] : by_length) {
    const auto n = static_cast<int64_t>(members.size());
    const auto l = static_cast<int64_t>(len);
    at::Tensor flat = at::empty({n * l}, at::kLong);
    int64_t* p = flat.data_ptr<int64_t>();
    for (size_t m : members) p = std::copy(ids[m].begin(), ids[m].end(), p);
    at::Tensor x = token_embedding_.index_select(0, flat).view({n, l, d}) +
                   position_embedding_.slice(0, 0, l).unsqueeze(0);
    x = final_norm_(encoder_.forward(x, /*causal=*/true));
    for (int64_t j = 0; j < n; ++j) {
      out[static_cast<int64_t>(members[j])].copy_(
          x[j][pool_position_for(config_, ids[members[j]])]);
    }
  }
  return out;
}

}  // namespace flamingo
