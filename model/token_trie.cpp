// HF tokenization_utils.Trie over code points. See token_trie.h.
#include "model/token_trie.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "model/py_string.h"

namespace flamingo {

void Trie::add(std::string_view word) {
  if (word.empty()) return;
  const CodePoints cp = to_code_points(word);
  int node = 0;
  for (char32_t c : cp.cps) {
    auto it = nodes_[node].next.find(c);
    if (it == nodes_[node].next.end()) {
      nodes_.emplace_back();
      const int fresh = static_cast<int>(nodes_.size()) - 1;
      nodes_[node].next.emplace(c, fresh);
      node = fresh;
    } else {
      node = it->second;
    }
  }
  nodes_[node].terminal = true;
}

std::vector<std::string> Trie::split(std::string_view text) const {
  const CodePoints cp = to_code_points(text);
  const std::vector<char32_t>& t = cp.cps;
  const size_t n = t.size();
  std::vector<size_t> offsets = {0};
  std::vector<std::pair<size_t, int>> states;  // (start, node), ordered by start
  size_t skip = 0;
  for (size_t current = 0; current < n; ++current) {
    if (skip != 0 && current < skip) continue;
    const char32_t current_char = t[current];
    std::vector<size_t> to_remove;
    bool reset = false;
    for (auto& state : states) {
      size_t start = state.first;
      const int node = state.second;
      if (nodes_[node].terminal) {
        // A match ended before `current`: look for the earliest start with the longest
        // match, including partial matches that started earlier.
        size_t end = current;
        for (const auto& [lookstart, lookstart_node] : states) {
          int looknode = lookstart_node;
          size_t lookahead_index = 0;
          if (lookstart > start) break;
          if (lookstart < start) {
            // Its pointer was already advanced past `current` (or left stale on a
            // mismatch, exactly as in HF).
            lookahead_index = current + 1;
            end = current + 1;
          } else {
            lookahead_index = current;
            end = current;
          }
          if (nodes_[looknode].terminal) {
            start = lookstart;
            end = lookahead_index;
            skip = lookahead_index;
          }
          while (lookahead_index < n) {
            const int next = child(looknode, t[lookahead_index]);
            if (next < 0) break;
            looknode = next;
            ++lookahead_index;
            if (nodes_[looknode].terminal) {
              start = lookstart;
              end = lookahead_index;
              skip = lookahead_index;
            }
          }
        }
        offsets.push_back(start);
        offsets.push_back(end);
        reset = true;
        break;
      }
      const int next = child(node, current_char);
      if (next >= 0) {
        state.second = next;
      } else {
        to_remove.push_back(start);
      }
    }
    if (reset) {
      states.clear();
    } else if (!to_remove.empty()) {
      std::erase_if(states, [&](const auto& s) {
        return std::find(to_remove.begin(), to_remove.end(), s.first) != to_remove.end();
      });
    }
    if (current >= skip) {
      const int first = child(0, current_char);
      if (first >= 0) states.emplace_back(current, first);
    }
  }
  for (const auto& [start, node] : states) {
    if (nodes_[node].terminal) {
      offsets.push_back(start);
      offsets.push_back(n);
      break;
    }
  }
  // cut_text
  offsets.push_back(n);
  std::vector<std::string> pieces;
  size_t start = 0;
  for (size_t end : offsets) {
    if (start >= end) continue;  // HF logs an error for start > end and skips the cut
    pieces.emplace_back(text.substr(cp.offsets[start], cp.offsets[end] - cp.offsets[start]));
    start = end;
  }
  return pieces;
}

}  // namespace flamingo
