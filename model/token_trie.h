// Trie: HF tokenization_utils.Trie (transformers v4.44.2), which splits text on the added
// tokens' strings before sentencepiece sees it. It works over code points (model/py_string.h)
// with HF's exact split() semantics: the earliest start wins, the longest match from that
// start is taken via lookahead, greedy left to right; the pieces concatenate to the input.
// Torch-free. Thread-safety: add() only while building; split() is const and may then be
// called concurrently.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace flamingo {

class Trie {
 public:
  Trie() : nodes_(1) {}

  // Adds one word (an added token's content); an empty word is ignored.
  void add(std::string_view word);

  // HF Trie.split: `text` cut before and after every match (no empty pieces).
  std::vector<std::string> split(std::string_view text) const;

 private:
  struct Node {
    std::map<char32_t, int> next;
    bool terminal = false;
  };

  int child(int node, char32_t c) const {
    const auto it = nodes_[node].next.find(c);
    return it == nodes_[node].next.end() ? -1 : it->second;
  }

  std::vector<Node> nodes_;
};

}  // namespace flamingo
