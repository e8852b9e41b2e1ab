// HF slow LlamaTokenizer (transformers v4.44.2) over sentencepiece. See tokenizer.h.
// The only file that includes sentencepiece_processor.h (its absl::string_view alias clashes
// with abseil/gRPC headers).
#include "model/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <array>
#include <climits>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "model/error.h"

namespace flamingo {
namespace {

using Json = nlohmann::ordered_json;  // keeps file order, as Python dicts do

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581 "▁", SPIECE_UNDERLINE
constexpr std::string_view kEndOfUtterance = "<end_of_utterance>";

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers. Python strings index code points; the trie and str.strip() work on those.

// Decodes one UTF-8 sequence at s[pos]; sets *len. Invalid bytes decode to U+DC00 + byte
// (a lone surrogate, which no valid token contains), one byte each.
char32_t decode_utf8(std::string_view s, size_t pos, size_t* len) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  auto cont = [&](size_t k) -> int {
    if (pos + k >= s.size()) return -1;
    const auto b = static_cast<unsigned char>(s[pos + k]);
    return (b & 0xC0) == 0x80 ? (b & 0x3F) : -1;
  };
  if (b0 < 0x80) {
    *len = 1;
    return b0;
  }
  int need = 0;
  char32_t cp = 0;
  char32_t min_cp = 0;
  if ((b0 & 0xE0) == 0xC0) {
    need = 1, cp = b0 & 0x1F, min_cp = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    need = 2, cp = b0 & 0x0F, min_cp = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    need = 3, cp = b0 & 0x07, min_cp = 0x10000;
  } else {
    *len = 1;
    return 0xDC00 + b0;
  }
  for (int k = 1; k <= need; ++k) {
    const int c = cont(k);
    if (c < 0) {
      *len = 1;
      return 0xDC00 + b0;
    }
    cp = (cp << 6) | static_cast<char32_t>(c);
  }
  if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    *len = 1;
    return 0xDC00 + b0;
  }
  *len = static_cast<size_t>(need) + 1;
  return cp;
}

// Code points of `s` with their byte offsets (offsets has one extra entry: s.size()).
struct CodePoints {
  std::vector<char32_t> cps;
  std::vector<size_t> offsets;
};

CodePoints to_code_points(std::string_view s) {
  CodePoints out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t len = 1;
    out.cps.push_back(decode_utf8(s, pos, &len));
    out.offsets.push_back(pos);
    pos += len;
  }
  out.offsets.push_back(s.size());
  return out;
}

// Python's str.isspace() set, which str.strip()/lstrip()/rstrip() without arguments remove.
bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

std::string py_lstrip(const std::string& s) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t len = 1;
    if (!py_isspace(decode_utf8(s, pos, &len))) break;
    pos += len;
  }
  return s.substr(pos);
}

std::string py_rstrip(const std::string& s) {
  const CodePoints cp = to_code_points(s);
  size_t n = cp.cps.size();
  while (n > 0 && py_isspace(cp.cps[n - 1])) --n;
  return s.substr(0, cp.offsets[n]);
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t at = s.find(from, pos);
    if (at == std::string::npos) break;
    out.append(s, pos, at - pos);
    out.append(to);
    pos = at + from.size();
  }
  out.append(s, pos, std::string::npos);
  return out;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// ---------------------------------------------------------------------------------------------
// HF tokenization_utils.Trie over code points, with its exact split() semantics (earliest start
// wins, longest match from that start via lookahead, greedy left to right).
class Trie {
 public:
  Trie() : nodes_(1) {}

  void add(std::string_view word) {
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

  std::vector<std::string> split(std::string_view text) const {
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

// ---------------------------------------------------------------------------------------------
// Loading helpers.

// An AddedToken as HF stores it (normalized/special do not change slow Llama tokenization).
struct AddedToken {
  std::string content;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

// A special-token attribute value: a plain string, or an AddedToken dict (has_flags).
struct TokenSpec {
  AddedToken token;
  bool has_flags = false;
};

std::optional<Json> read_json_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("tokenizer: cannot open " + path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return Json::parse(buffer.str());
  } catch (const std::exception& e) {
    throw Error("tokenizer: " + path.string() + ": invalid JSON: " + e.what());
  }
}

bool read_bool(const Json& obj, const std::string& key, bool fallback, const std::string& file) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    throw Error("tokenizer: " + file + ": key '" + key + "' must be true/false, found " +
                it->dump());
  }
  return it->get<bool>();
}

// Parses a token value: "text" or {"content": "text", "lstrip": ..., ...}. nullopt for null.
std::optional<TokenSpec> parse_token_spec(const Json& value, const std::string& file,
                                          const std::string& key) {
  if (value.is_null()) return std::nullopt;
  TokenSpec spec;
  if (value.is_string()) {
    spec.token.content = value.get<std::string>();
    return spec;
  }
  if (value.is_object()) {
    const auto it = value.find("content");
    if (it == value.end() || !it->is_string()) {
      throw Error("tokenizer: " + file + ": key '" + key +
                  "' is an object without a string \"content\": " + value.dump());
    }
    spec.token.content = it->get<std::string>();
    spec.token.lstrip = read_bool(value, "lstrip", false, file);
    spec.token.rstrip = read_bool(value, "rstrip", false, file);
    spec.token.single_word = read_bool(value, "single_word", false, file);
    spec.has_flags = true;
    return spec;
  }
  throw Error("tokenizer: " + file + ": key '" + key +
              "' must be a string, null or an object with \"content\", found " + value.dump());
}

std::vector<TokenSpec> parse_token_list(const Json& value, const std::string& file,
                                        const std::string& key) {
  std::vector<TokenSpec> out;
  if (value.is_null()) return out;
  if (!value.is_array()) {
    throw Error("tokenizer: " + file + ": key '" + key + "' must be a list, found " + value.dump());
  }
  for (size_t i = 0; i < value.size(); ++i) {
    auto spec = parse_token_spec(value[i], file, key + "[" + std::to_string(i) + "]");
    if (!spec) {
      throw Error("tokenizer: " + file + ": key '" + key + "[" + std::to_string(i) + "]' is null");
    }
    out.push_back(*spec);
  }
  return out;
}

// SPECIAL_TOKENS_ATTRIBUTES of PreTrainedTokenizerBase, in order (without the list).
constexpr std::array<const char*, 7> kSpecialAttributes = {
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};

}  // namespace

// -----------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
  // HF's self.sp_model: the model as stored when legacy, else with add_dummy_prefix=false.
  sentencepiece::SentencePieceProcessor sp;
  int32_t sp_size = 0;
  bool legacy = true;
  bool add_prefix_space = true;
  bool add_bos = true;
  bool clean_up_tokenization_spaces = false;
  bool split_special_tokens = false;

  std::map<int32_t, AddedToken> added_by_id;                  // _added_tokens_decoder
  std::unordered_map<std::string, int32_t> added_by_content;  // _added_tokens_encoder
  Trie trie;

  // Special tokens (contents), as special_tokens_map holds them.
  std::optional<std::string> special[kSpecialAttributes.size()];
  std::vector<std::string> additional_special;
  std::vector<std::string> all_special_tokens;  // deduplicated, HF order
  std::unordered_set<std::string> all_special_set;
  std::unordered_set<int32_t> all_special_ids;
  std::unordered_set<std::string> legacy_added_tokens;  // decode: joined with spaces
  int32_t ids[kSpecialAttributes.size()] = {-1, -1, -1, -1, -1, -1, -1};
  std::optional<int32_t> end_of_utterance;
  size_t unk_token_length = 0;  // legacy=false only

  // _convert_token_to_id_with_added_voc
  int32_t convert_token_to_id(const std::string& token) const {
    const auto it = added_by_content.find(token);
    if (it != added_by_content.end()) return it->second;
    return sp.PieceToId(token);
  }

  std::vector<std::string> sp_encode(std::string_view text) const {
    std::vector<std::string> pieces;
    const auto status = sp.Encode(text, &pieces);
    if (!status.ok()) throw Error("tokenizer: sentencepiece encode failed: " + status.ToString());
    return pieces;
  }

  std::string sp_decode(const std::vector<std::string>& pieces) const {
    if (pieces.empty()) return {};
    std::string out;
    const auto status = sp.Decode(pieces, &out);
    if (!status.ok()) throw Error("tokenizer: sentencepiece decode failed: " + status.ToString());
    return out;
  }

  // LlamaTokenizer._tokenize
  std::vector<std::string> tokenize_text(const std::string& text) const {
    if (legacy || !(starts_with(text, kSpaceSymbol) || starts_with(text, " "))) {
      return sp_encode(text);
    }
    const std::string& unk = *special[2];
    std::vector<std::string> pieces = sp_encode(unk + text);
    if (pieces.size() >= unk_token_length) {
      pieces.erase(pieces.begin(), pieces.begin() + static_cast<std::ptrdiff_t>(unk_token_length));
    }
    return pieces;
  }

  // A piece after the split. Pieces that are not `literal` are treated as added tokens when
  // their text is an added token's content (HF checks membership by string).
  struct Piece {
    std::string text;
    bool literal = false;
  };

  bool is_added(const Piece& p) const { return !p.literal && added_by_content.count(p.text) > 0; }

  // PreTrainedTokenizer.tokenize after the trie split: AddedToken stripping, then _tokenize.
  std::vector<std::string> tokenize_split(std::vector<Piece> pieces) const {
    const size_t n = pieces.size();
    for (size_t i = 0; i < n; ++i) {
      if (!is_added(pieces[i])) continue;
      const std::string token = pieces[i].text;
      const AddedToken& ext = added_by_id.at(added_by_content.at(token));
      const bool has_left = i > 0 && !pieces[i - 1].text.empty();
      const bool has_right = i + 1 < n && !pieces[i + 1].text.empty();
      const std::string left = has_left ? pieces[i - 1].text : std::string();
      const std::string right = has_right ? pieces[i + 1].text : std::string();
      if (ext.rstrip && has_right) pieces[i + 1].text = py_lstrip(right);
      if (ext.lstrip && has_left) pieces[i - 1].text = py_rstrip(left);
      if (ext.single_word && has_left && left.back() != ' ') {
        pieces[i - 1].text += token;
        pieces[i].text.clear();
      } else if (ext.single_word && has_right && right.front() != ' ') {
        pieces[i + 1].text = token + pieces[i + 1].text;
        pieces[i].text.clear();
      }
    }
    std::vector<std::string> tokens;
    for (const Piece& p : pieces) {
      if (p.text.empty()) continue;
      if (is_added(p)) {
        tokens.push_back(p.text);
      } else {
        std::vector<std::string> sub = tokenize_text(p.text);
        tokens.insert(tokens.end(), std::make_move_iterator(sub.begin()),
                      std::make_move_iterator(sub.end()));
      }
    }
    return tokens;
  }

  // LlamaTokenizer.tokenize (legacy=false: "▁" replaced by " ", a "▁" prepended, and a lone
  // leading "▁" before a special token dropped), then convert_tokens_to_ids.
  // `split` turns the (prepared) text into pieces.
  template <class SplitFn>
  std::vector<int32_t> tokenize_string(std::string_view text, SplitFn split) const {
    std::vector<std::string> tokens;
    if (legacy || text.empty()) {
      tokens = tokenize_split(split(std::string(text)));
    } else {
      std::string prepared = replace_all(std::string(text), kSpaceSymbol, " ");
      if (add_prefix_space) prepared = std::string(kSpaceSymbol) + prepared;
      tokens = drop_leading_space_before_special(tokenize_split(split(prepared)));
    }
    return to_ids(tokens);
  }

  std::vector<std::string> drop_leading_space_before_special(
      std::vector<std::string> tokens) const {
    if (tokens.size() > 1 && tokens[0] == kSpaceSymbol && all_special_set.count(tokens[1])) {
      tokens.erase(tokens.begin());
    }
    return tokens;
  }

  std::vector<int32_t> to_ids(const std::vector<std::string>& tokens) const {
    std::vector<int32_t> ids_out;
    ids_out.reserve(tokens.size());
    for (const std::string& t : tokens) ids_out.push_back(convert_token_to_id(t));
    return ids_out;
  }

  // LlamaTokenizer.convert_tokens_to_string
  std::string tokens_to_string(std::vector<std::string> tokens) const {
    if (tokens.empty()) return {};
    if (add_prefix_space && starts_with(tokens[0], kSpaceSymbol)) {
      tokens[0].erase(0, kSpaceSymbol.size());
    }
    std::vector<std::string> current;
    std::string out;
    bool prev_is_special = false;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::string& token = tokens[i];
      if (all_special_set.count(token)) {
        if (!prev_is_special && i != 0 && legacy) out += ' ';
        out += sp_decode(current) + token;
        prev_is_special = true;
        current.clear();
      } else {
        if (prev_is_special && i == 1 && add_prefix_space && !starts_with(token, kSpaceSymbol)) {
          out += ' ';
        }
        current.push_back(token);
        prev_is_special = false;
      }
    }
    out += sp_decode(current);
    return out;
  }

  std::string id_to_token(int32_t id) const {
    const auto it = added_by_id.find(id);
    if (it != added_by_id.end()) return it->second.content;
    if (id < 0 || id >= sp_size) {
      int32_t size = sp_size;
      if (!added_by_id.empty()) size = std::max(size, added_by_id.rbegin()->first + 1);
      throw Error("tokenizer: token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                  std::to_string(size) + ")");
    }
    return sp.IdToPiece(id);
  }
};

namespace {

void load_sentencepiece(sentencepiece::SentencePieceProcessor& sp,
                        const std::filesystem::path& path, bool legacy) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw Error("tokenizer: " + path.string() + " not found");
  }
  auto status = sp.Load(path.string());
  if (!status.ok()) {
    throw Error("tokenizer: cannot load " + path.string() + ": " + status.ToString());
  }
  if (!legacy) {
    // What LlamaTokenizer.get_spm_processor does for legacy=false:
    // model.normalizer_spec.MergeFrom(NormalizerSpec(add_dummy_prefix=False)). In protobuf
    // wire format a repeated singular message field is merged, so appending
    // ModelProto.normalizer_spec (field 3) = { add_dummy_prefix (field 3) = false } is that merge.
    std::string proto = sp.serialized_model_proto();
    proto.append(std::string("\x1a\x02\x18\x00", 4));
    status = sp.LoadFromSerializedProto(proto);
    if (!status.ok()) {
      throw Error("tokenizer: cannot reload " + path.string() +
                  " without the dummy prefix: " + status.ToString());
    }
  }
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  auto impl = std::make_unique<Impl>();

  const std::filesystem::path config_path = dir / "tokenizer_config.json";
  const std::string config_file = config_path.string();
  const Json config = read_json_file(config_path).value_or(Json::object());
  if (!config.is_object()) throw Error("tokenizer: " + config_file + ": not a JSON object");

  // legacy=None (missing or null) means legacy=True in v4.44.2.
  impl->legacy = read_bool(config, "legacy", true, config_file);
  impl->add_prefix_space = read_bool(config, "add_prefix_space", true, config_file);
  impl->add_bos = read_bool(config, "add_bos_token", true, config_file);
  impl->clean_up_tokenization_spaces =
      read_bool(config, "clean_up_tokenization_spaces", false, config_file);
  impl->split_special_tokens = read_bool(config, "split_special_tokens", false, config_file);

  // Special-token attributes: LlamaTokenizer's defaults, then tokenizer_config.json.
  std::optional<TokenSpec> specs[kSpecialAttributes.size()];
  specs[0] = TokenSpec{{"<s>"}, false};
  specs[1] = TokenSpec{{"</s>"}, false};
  specs[2] = TokenSpec{{"<unk>"}, false};
  std::vector<TokenSpec> additional;
  for (size_t k = 0; k < kSpecialAttributes.size(); ++k) {
    const auto it = config.find(kSpecialAttributes[k]);
    if (it != config.end()) specs[k] = parse_token_spec(*it, config_file, kSpecialAttributes[k]);
  }
  if (const auto it = config.find("additional_special_tokens"); it != config.end()) {
    additional = parse_token_list(*it, config_file, "additional_special_tokens");
  }

  // Added tokens (_from_pretrained).
  std::vector<std::pair<int32_t, AddedToken>> decoder;  // in file order
  if (const auto it = config.find("added_tokens_decoder"); it != config.end()) {
    if (!it->is_object()) {
      throw Error("tokenizer: " + config_file + ": key 'added_tokens_decoder' must be an object");
    }
    for (const auto& [key, value] : it->items()) {
      const std::string where = "added_tokens_decoder." + key;
      int32_t id = -1;
      try {
        size_t used = 0;
        const long parsed = std::stol(key, &used);
        if (used != key.size() || parsed < 0 || parsed > INT32_MAX) throw std::exception();
        id = static_cast<int32_t>(parsed);
      } catch (const std::exception&) {
        throw Error("tokenizer: " + config_file + ": key '" + where +
                    "' is not a non-negative token id");
      }
      auto spec = parse_token_spec(value, config_file, where);
      if (!spec || !spec->has_flags) {
        throw Error("tokenizer: " + config_file + ": key '" + where +
                    "' must be an object with \"content\"");
      }
      decoder.emplace_back(id, spec->token);
    }
  } else {
    // Legacy files: special_tokens_map.json overrides the config's special tokens (the
    // additional list is merged), then added_tokens.json gives ids.
    const std::filesystem::path map_path = dir / "special_tokens_map.json";
    const std::string map_file = map_path.string();
    if (const auto map = read_json_file(map_path)) {
      if (!map->is_object()) throw Error("tokenizer: " + map_file + ": not a JSON object");
      for (size_t k = 0; k < kSpecialAttributes.size(); ++k) {
        const auto it = map->find(kSpecialAttributes[k]);
        if (it != map->end()) specs[k] = parse_token_spec(*it, map_file, kSpecialAttributes[k]);
      }
      if (const auto it = map->find("additional_special_tokens"); it != map->end()) {
        for (const TokenSpec& s : parse_token_list(*it, map_file, "additional_special_tokens")) {
          const bool present = std::any_of(additional.begin(), additional.end(), [&](auto& a) {
            return a.token.content == s.token.content;
          });
          if (!present) additional.push_back(s);
        }
      }
    }
    const std::filesystem::path added_path = dir / "added_tokens.json";
    const std::string added_file = added_path.string();
    if (const auto added = read_json_file(added_path)) {
      if (!added->is_object()) throw Error("tokenizer: " + added_file + ": not a JSON object");
      for (const auto& [content, value] : added->items()) {
        if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
            value.get<int64_t>() > INT32_MAX) {
          throw Error("tokenizer: " + added_file + ": key '" + content +
                      "' must be a non-negative token id, found " + value.dump());
        }
        decoder.emplace_back(static_cast<int32_t>(value.get<int64_t>()), AddedToken{content});
      }
    }
  }

  const std::filesystem::path model_path = dir / "tokenizer.model";
  load_sentencepiece(impl->sp, model_path, impl->legacy);
  impl->sp_size = impl->sp.GetPieceSize();

  for (const auto& [id, token] : decoder) {
    impl->added_by_id[id] = token;
    impl->added_by_content[token.content] = id;
  }

  // Special tokens (all_special_tokens_extended order, deduplicated by content).
  for (size_t k = 0; k < kSpecialAttributes.size(); ++k) {
    if (specs[k]) impl->special[k] = specs[k]->token.content;
  }
  struct Candidate {
    AddedToken token;
    bool overrides;  // an AddedToken object: replaces the stored flags
  };
  std::vector<Candidate> candidates;
  std::unordered_set<std::string> seen;
  for (size_t k = 0; k < kSpecialAttributes.size(); ++k) {
    if (!specs[k] || specs[k]->token.content.empty()) continue;
    if (!seen.insert(specs[k]->token.content).second) continue;
    // A string value that names an added token is replaced by that AddedToken (its flags
    // stay); an AddedToken dict replaces the stored flags.
    candidates.push_back({specs[k]->token, specs[k]->has_flags});
  }
  for (const TokenSpec& s : additional) {
    impl->additional_special.push_back(s.token.content);
    if (s.token.content.empty() || !seen.insert(s.token.content).second) continue;
    candidates.push_back({s.token, s.has_flags});
  }
  // PreTrainedTokenizer._add_tokens(special_tokens=True) for the special tokens.
  std::unordered_map<std::string, int32_t> vocab;  // get_vocab()
  for (int32_t i = 0; i < impl->sp_size; ++i) {
    const auto it = impl->added_by_id.find(i);
    vocab.insert_or_assign(
        it != impl->added_by_id.end() ? it->second.content : impl->sp.IdToPiece(i), i);
  }
  for (const auto& [content, id] : impl->added_by_content) vocab.insert_or_assign(content, id);
  const int32_t new_idx = static_cast<int32_t>(vocab.size());
  int32_t num_new = 0;
  for (const Candidate& c : candidates) {
    if (!c.overrides && impl->added_by_content.count(c.token.content)) continue;
    int32_t index;
    if (const auto it = vocab.find(c.token.content); it != vocab.end()) {
      index = it->second;
    } else {
      index = new_idx + num_new++;
      vocab.emplace(c.token.content, index);
    }
    impl->added_by_id[index] = c.token;
    impl->added_by_content[c.token.content] = index;
  }
  for (const auto& [id, token] : impl->added_by_id) impl->trie.add(token.content);

  // all_special_tokens / all_special_ids.
  for (size_t k = 0; k < kSpecialAttributes.size(); ++k) {
    if (impl->special[k]) impl->all_special_tokens.push_back(*impl->special[k]);
  }
  for (const std::string& s : impl->additional_special) impl->all_special_tokens.push_back(s);
  {
    std::vector<std::string> unique;
    for (const std::string& s : impl->all_special_tokens) {
      if (impl->all_special_set.insert(s).second) unique.push_back(s);
    }
    impl->all_special_tokens = std::move(unique);
  }
  for (const std::string& s : impl->all_special_tokens) {
    impl->all_special_ids.insert(impl->convert_token_to_id(s));
  }
  for (size_t k = 0; k < kSpecialAttributes.size(); ++k) {
    if (impl->special[k]) impl->ids[k] = impl->convert_token_to_id(*impl->special[k]);
  }
  // _decode's legacy_added_tokens.
  for (const auto& [content, id] : impl->added_by_content) {
    if (!impl->all_special_set.count(content)) impl->legacy_added_tokens.insert(content);
  }
  for (const std::string& s : impl->additional_special) {
    if (impl->convert_token_to_id(s) >= impl->sp_size) impl->legacy_added_tokens.insert(s);
    if (s == kEndOfUtterance) impl->end_of_utterance = impl->convert_token_to_id(s);
  }

  if (!impl->legacy) {
    if (!impl->special[2]) {
      throw Error("tokenizer: " + config_file +
                  ": legacy=false needs an 'unk_token' (HF encodes \"<unk>\" + text)");
    }
    impl->unk_token_length = impl->sp_encode(*impl->special[2]).size();
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  return impl_->tokenize_string(text, [](std::string t) {
    return std::vector<Impl::Piece>{{std::move(t), /*literal=*/true}};
  });
}

std::vector<int32_t> Tokenizer::encode_with_special_tokens(std::string_view text) const {
  const Impl& impl = *impl_;
  return impl.tokenize_string(text, [&impl](std::string t) {
    std::vector<Impl::Piece> pieces;
    if (impl.split_special_tokens) {
      pieces.push_back({std::move(t), true});
    } else {
      for (std::string& p : impl.trie.split(t)) pieces.push_back({std::move(p), false});
    }
    return pieces;
  });
}

std::vector<int32_t> Tokenizer::encode_segments(std::span<const TokenSegment> segments) const {
  const Impl& impl = *impl_;
  std::vector<Impl::Piece> pieces;
  for (const TokenSegment& s : segments) {
    if (s.kind == TokenSegment::Kind::kText) {
      if (!s.text.empty()) pieces.push_back({s.text, true});
    } else {
      const auto it = impl.added_by_id.find(s.id);
      if (it == impl.added_by_id.end()) {
        throw Error("tokenizer: encode_segments: id " + std::to_string(s.id) +
                    " is not an added token");
      }
      pieces.push_back({it->second.content, false});
    }
  }
  std::vector<std::string> tokens;
  if (impl.legacy || pieces.empty()) {
    tokens = impl.tokenize_split(std::move(pieces));
  } else {
    for (Impl::Piece& p : pieces) {
      if (p.literal) p.text = replace_all(std::move(p.text), kSpaceSymbol, " ");
    }
    if (impl.add_prefix_space) {
      if (pieces.front().literal) {
        pieces.front().text.insert(0, kSpaceSymbol);
      } else {
        pieces.insert(pieces.begin(), Impl::Piece{std::string(kSpaceSymbol), true});
      }
    }
    tokens = impl.drop_leading_space_before_special(impl.tokenize_split(std::move(pieces)));
  }
  return impl.to_ids(tokens);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& impl = *impl_;
  // convert_ids_to_tokens
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (skip_special_tokens && impl.all_special_ids.count(id)) continue;
    tokens.push_back(impl.id_to_token(id));
  }
  // PreTrainedTokenizer._decode
  std::vector<std::string> sub_texts;
  std::vector<std::string> current;
  for (std::string& token : tokens) {
    if (impl.legacy_added_tokens.count(token)) {
      if (!current.empty()) {
        std::string s = impl.tokens_to_string(std::move(current));
        if (!s.empty()) sub_texts.push_back(std::move(s));
        current.clear();
      }
      sub_texts.push_back(std::move(token));
    } else {
      current.push_back(std::move(token));
    }
  }
  if (!current.empty()) sub_texts.push_back(impl.tokens_to_string(std::move(current)));
  std::string text;  // spaces_between_special_tokens=True (the _decode default)
  for (size_t i = 0; i < sub_texts.size(); ++i) {
    if (i > 0) text += ' ';
    text += sub_texts[i];
  }
  if (impl.clean_up_tokenization_spaces) {
    static constexpr std::pair<std::string_view, std::string_view> kCleanUp[] = {
        {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto& [from, to] : kCleanUp) text = replace_all(std::move(text), from, to);
  }
  return text;
}

std::string Tokenizer::id_to_piece(int32_t id) const { return impl_->id_to_token(id); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  const std::string t(token);
  const auto it = impl_->added_by_content.find(t);
  if (it != impl_->added_by_content.end()) return it->second;
  const int id = impl_->sp.PieceToId(t);
  if (id == impl_->sp.unk_id() && impl_->sp.IdToPiece(id) != t) return std::nullopt;
  return id;
}

int32_t Tokenizer::bos_id() const { return impl_->ids[0]; }
int32_t Tokenizer::eos_id() const { return impl_->ids[1]; }
int32_t Tokenizer::unk_id() const { return impl_->ids[2]; }
int32_t Tokenizer::pad_id() const { return impl_->ids[4]; }

int32_t Tokenizer::size() const {
  int32_t n = impl_->sp_size;
  if (!impl_->added_by_id.empty()) n = std::max(n, impl_->added_by_id.rbegin()->first + 1);
  return n;
}

int32_t Tokenizer::sp_size() const { return impl_->sp_size; }
bool Tokenizer::is_special(int32_t id) const { return impl_->all_special_ids.count(id) > 0; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::legacy() const { return impl_->legacy; }
bool Tokenizer::clean_up_tokenization_spaces() const { return impl_->clean_up_tokenization_spaces; }
std::optional<int32_t> Tokenizer::end_of_utterance_id() const { return impl_->end_of_utterance; }

}  // namespace flamingo
