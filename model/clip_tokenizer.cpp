// CLIP's BPE tokenizer. See clip_tokenizer.h.
#include "model/clip_tokenizer.h"

#include <algorithm>
#include <climits>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "model/error.h"
#include "model/py_string.h"
#include "model/unicode_classes.h"

namespace flamingo {
namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

// transformers reads merges.txt lines [1, 49152 - 256 - 2 + 1): the header, then 48894 merges.
constexpr size_t kMaxMerges = 49152 - 256 - 2;
constexpr char kStartOfText[] = "<|startoftext|>";
constexpr char kEndOfText[] = "<|endoftext|>";

std::optional<std::string> read_file(const fs::path& path, bool required) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    if (!required) return std::nullopt;
    throw Error("clip tokenizer: " + path.string() + ": missing (not a regular file)");
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (!in) throw Error("clip tokenizer: " + path.string() + ": cannot read");
  return buffer.str();
}

std::optional<Json> read_json(const fs::path& path, bool required) {
  const std::optional<std::string> text = read_file(path, required);
  if (!text) return std::nullopt;
  Json j;
  try {
    j = Json::parse(*text);
  } catch (const std::exception& e) {
    throw Error("clip tokenizer: " + path.string() + ": invalid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error("clip tokenizer: " + path.string() + ": not a JSON object");
  return j;
}

// A special-token value: a string, {"content": string, ...} or null (nullopt).
std::optional<std::string> token_content(const Json& v, const fs::path& file,
                                         const std::string& key) {
  if (v.is_null()) return std::nullopt;
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) {
    const auto it = v.find("content");
    if (it != v.end() && it->is_string()) return it->get<std::string>();
  }
  throw Error("clip tokenizer: " + file.string() + ": key '" + key +
              "' must be a string, null or an object with a string \"content\", found " + v.dump());
}

int32_t json_id(const Json& v, const fs::path& file, const std::string& key) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX) {
    throw Error("clip tokenizer: " + file.string() + ": '" + key +
                "' must map to a non-negative integer id, found " + v.dump());
  }
  return static_cast<int32_t>(v.get<int64_t>());
}

// BERT's _is_chinese_char: the CJK Unified Ideographs blocks (not Hangul, kana, ...).
bool is_cjk_ideograph(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// What a code point is to CLIP's pre-tokenizer regex (after the cleanup no whitespace is left
// inside a word). Case-insensitive matching makes U+0345 (which folds to a Greek letter but
// is a mark) match none of [\p{L}], [\p{N}] and [^\s\p{L}\p{N}]: findall skips it.
enum class RegexClass { kLetter, kNumber, kOther, kNone };

RegexClass regex_class(char32_t c) {
  if (c == 0x345) return RegexClass::kNone;
  switch (unicode_category(c)) {
    case UnicodeCategory::kLetter:
      return RegexClass::kLetter;
    case UnicodeCategory::kNumber:
      return RegexClass::kNumber;
    default:
      return py_isspace(c) ? RegexClass::kNone : RegexClass::kOther;
  }
}

// Whether the literal `lit` (ASCII, lower case) matches case-insensitively at w[pos]. After
// str.lower() the only other code point equal to one of its letters under the regex module's
// simple case folding is U+017F (long s) for 's'.
bool literal_at(std::u32string_view w, size_t pos, std::string_view lit) {
  if (w.size() - pos < lit.size()) return false;
  for (size_t k = 0; k < lit.size(); ++k) {
    const char32_t c = w[pos + k];
    if (c != static_cast<char32_t>(lit[k]) && !(lit[k] == 's' && c == 0x17F)) return false;
  }
  return true;
}

// findall of <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|
// [^\s\p{L}\p{N}]+ (re.IGNORECASE) over one lower-cased word, as UTF-8 pre-tokens.
void pretokenize(std::u32string_view w, std::vector<std::string>* out) {
  static constexpr std::string_view kLiterals[] = {kStartOfText, kEndOfText, "'s",  "'t", "'re",
                                                   "'ve",        "'m",       "'ll", "'d"};
  size_t pos = 0;
  while (pos < w.size()) {
    size_t end = pos;
    for (const std::string_view lit : kLiterals) {
      if (literal_at(w, pos, lit)) {
        end = pos + lit.size();
        break;
      }
    }
    if (end == pos) {
      const RegexClass cls = regex_class(w[pos]);
      if (cls == RegexClass::kNone) {
        ++pos;
        continue;
      }
      end = pos + 1;
      if (cls != RegexClass::kNumber) {
        while (end < w.size() && regex_class(w[end]) == cls) ++end;
      }
    }
    out->push_back(u32_to_utf8(w.substr(pos, end - pos)));
    pos = end;
  }
}

}  // namespace

std::unique_ptr<ClipTokenizer> ClipTokenizer::load(const std::string& model_dir) {
  std::unique_ptr<ClipTokenizer> tok(new ClipTokenizer());
  const fs::path dir(model_dir);

  // GPT-2's bytes-to-unicode: printable Latin-1 bytes stand for themselves, the others (in
  // byte order) for U+0100, U+0101, ...
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    append_utf8(printable ? static_cast<char32_t>(b) : next++, &tok->byte_symbols_[b]);
  }

  const fs::path vocab_path = dir / "vocab.json";
  const Json vocab = *read_json(vocab_path, true);
  for (const auto& [token, id] : vocab.items()) {
    tok->vocab_[token] = json_id(id, vocab_path, token);
  }
  if (tok->vocab_.empty()) throw Error("clip tokenizer: " + vocab_path.string() + ": empty");

  // merges.txt: read().strip().split("\n")[1 : 48895], each line "first second".
  const fs::path merges_path = dir / "merges.txt";
  const std::string merges = *read_file(merges_path, true);
  const auto is_ws = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  size_t begin = 0, end = merges.size();
  while (begin < end && is_ws(merges[begin])) ++begin;
  while (end > begin && is_ws(merges[end - 1])) --end;
  size_t line_no = 0;  // 0-based line of the stripped text
  for (size_t pos = begin; pos < end && line_no <= kMaxMerges; ++line_no) {
    size_t eol = merges.find('\n', pos);
    if (eol == std::string::npos || eol > end) eol = end;
    const std::string_view line(merges.data() + pos, eol - pos);
    pos = eol + 1;
    if (line_no == 0) continue;  // the "#version" header (skipped whatever it says)
    std::vector<std::string> parts;
    for (size_t i = 0; i < line.size();) {
      if (is_ws(line[i])) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < line.size() && !is_ws(line[j])) ++j;
      parts.emplace_back(line.substr(i, j - i));
      i = j;
    }
    if (parts.empty()) continue;  // a blank line merges nothing (but takes its rank)
    const std::string where =
        "clip tokenizer: " + merges_path.string() + ": line " + std::to_string(line_no + 1);
    if (parts.size() != 2) {
      throw Error(where + ": expected two symbols, found \"" + std::string(line) + "\"");
    }
    for (const std::string& sym : {parts[0], parts[1], parts[0] + parts[1]}) {
      if (!tok->vocab_.count(sym)) {
        throw Error(where + ": symbol \"" + sym + "\" is not in " + vocab_path.string());
      }
    }
    tok->merge_ranks_[parts[0] + " " + parts[1]] = static_cast<int32_t>(line_no - 1);
  }

  // Special tokens: CLIPTokenizer's defaults, tokenizer_config.json, then (legacy files
  // without "added_tokens_decoder") special_tokens_map.json and added_tokens.json.
  static constexpr const char* kAttrs[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
  std::optional<std::string> specials[4] = {kStartOfText, kEndOfText, kEndOfText, kEndOfText};
  std::vector<std::pair<std::string, int32_t>> added;
  const fs::path config_path = dir / "tokenizer_config.json";
  const std::optional<Json> config = read_json(config_path, false);
  const auto read_specials = [&](const Json& j, const fs::path& file) {
    for (int k = 0; k < 4; ++k) {
      if (const auto it = j.find(kAttrs[k]); it != j.end()) {
        specials[k] = token_content(*it, file, kAttrs[k]);
      }
    }
  };
  bool has_decoder = false;
  if (config) {
    read_specials(*config, config_path);
    if (const auto it = config->find("model_max_length");
        it != config->end() && it->is_number_integer() && it->get<int64_t>() >= 2 &&
        it->get<int64_t>() <= 1000000) {
      tok->model_max_length_ = static_cast<int32_t>(it->get<int64_t>());
    }
    if (const auto it = config->find("added_tokens_decoder"); it != config->end()) {
      if (!it->is_object()) {
        throw Error("clip tokenizer: " + config_path.string() +
                    ": 'added_tokens_decoder' must be an object");
      }
      has_decoder = true;
      for (const auto& [key, value] : it->items()) {
        const std::string where = "added_tokens_decoder." + key;
        int32_t id = -1;
        try {
          size_t used = 0;
          const long parsed = std::stol(key, &used);
          if (used == key.size() && parsed >= 0 && parsed <= INT32_MAX) id = parsed;
        } catch (const std::exception&) {
        }
        const std::optional<std::string> content = token_content(value, config_path, where);
        if (id < 0 || !content) {
          throw Error("clip tokenizer: " + config_path.string() + ": bad entry '" + where + "'");
        }
        added.emplace_back(*content, id);
      }
    }
  }
  if (!has_decoder) {
    const fs::path map_path = dir / "special_tokens_map.json";
    if (const std::optional<Json> map = read_json(map_path, false)) read_specials(*map, map_path);
    const fs::path added_path = dir / "added_tokens.json";
    if (const std::optional<Json> extra = read_json(added_path, false)) {
      for (const auto& [content, id] : extra->items()) {
        added.emplace_back(content, json_id(id, added_path, content));
      }
    }
  }
  // Special tokens not yet known are added after the vocab, as _add_tokens does.
  const auto known_id = [&](const std::string& s) -> std::optional<int32_t> {
    for (const auto& [content, id] : added) {
      if (content == s) return id;
    }
    if (const auto it = tok->vocab_.find(s); it != tok->vocab_.end()) return it->second;
    return std::nullopt;
  };
  size_t known = tok->vocab_.size();
  for (const auto& [content, id] : added) known += tok->vocab_.count(content) ? 0 : 1;
  int32_t ids[4] = {0, 0, 0, 0};
  for (int k = 0; k < 4; ++k) {
    if (!specials[k]) continue;
    std::optional<int32_t> id = known_id(*specials[k]);
    if (!id) id = static_cast<int32_t>(known++);
    if (std::none_of(added.begin(), added.end(),
                     [&](auto& a) { return a.first == *specials[k]; })) {
      added.emplace_back(*specials[k], *id);
    }
    ids[k] = *id;
  }
  if (!specials[0] || !specials[1]) {
    throw Error("clip tokenizer: " + config_path.string() +
                ": bos_token and eos_token must not be null");
  }
  tok->bos_id_ = ids[0];
  tok->eos_id_ = ids[1];
  tok->unk_id_ = specials[2] ? ids[2] : ids[1];
  tok->pad_id_ = specials[3] ? ids[3] : ids[1];
  added.erase(std::remove_if(added.begin(), added.end(), [](auto& a) { return a.first.empty(); }),
              added.end());
  std::stable_sort(added.begin(), added.end(),
                   [](auto& a, auto& b) { return a.first.size() > b.first.size(); });
  tok->added_ = std::move(added);
  return tok;
}

int32_t ClipTokenizer::token_to_id(const std::string& token) const {
  for (const auto& [content, id] : added_) {
    if (content == token) return id;
  }
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? unk_id_ : it->second;
}

void ClipTokenizer::bpe(const std::string& pretoken, std::vector<std::string>* out) const {
  if (pretoken == kStartOfText || pretoken == kEndOfText) {  // CLIPTokenizer's bpe cache
    out->push_back(pretoken);
    return;
  }
  std::vector<std::string> word;
  for (const char ch : pretoken) word.push_back(byte_symbols_[static_cast<unsigned char>(ch)]);
  word.back() += "</w>";
  while (word.size() > 1) {
    int32_t best = INT32_MAX;
    size_t best_at = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      const auto it = merge_ranks_.find(word[i] + " " + word[i + 1]);
      if (it != merge_ranks_.end() && it->second < best) best = it->second, best_at = i;
    }
    if (best == INT32_MAX) break;
    // Merge every occurrence of the best pair, left to right.
    const std::string first = word[best_at], second = word[best_at + 1];
    std::vector<std::string> merged;
    merged.reserve(word.size());
    for (size_t i = 0; i < word.size(); ++i) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        ++i;
      } else {
        merged.push_back(std::move(word[i]));
      }
    }
    word = std::move(merged);
  }
  for (std::string& s : word) out->push_back(std::move(s));
}

void ClipTokenizer::tokenize_piece(std::u32string_view piece, std::vector<std::string>* out) const {
  // BasicTokenizer._clean_text and _tokenize_chinese_chars.
  std::u32string text;
  text.reserve(piece.size());
  for (const char32_t c : piece) {
    if (c == U'\t' || c == U'\n' || c == U'\r') {
      text.push_back(U' ');
      continue;
    }
    const UnicodeCategory cat = unicode_category(c);
    if (c == 0 || c == 0xFFFD || cat == UnicodeCategory::kControl) continue;
    if (cat == UnicodeCategory::kSpaceSeparator) {
      text.push_back(U' ');
    } else if (is_cjk_ideograph(c)) {
      text.push_back(U' ');
      text.push_back(c);
      text.push_back(U' ');
    } else {
      text.push_back(c);
    }
  }
  text = nfc_normalize(text);
  // whitespace_tokenize, then str.lower() and the regex per word (neither crosses a space).
  std::u32string lower;
  std::vector<std::string> pretokens;
  for (size_t pos = 0; pos < text.size();) {
    if (py_isspace(text[pos])) {
      ++pos;
      continue;
    }
    size_t end = pos;
    while (end < text.size() && !py_isspace(text[end])) ++end;
    lower.clear();
    py_lower_append(std::u32string_view(text).substr(pos, end - pos), &lower);
    pretokens.clear();
    pretokenize(lower, &pretokens);
    for (const std::string& p : pretokens) bpe(p, out);
    pos = end;
  }
}

std::vector<std::string> ClipTokenizer::tokens(std::string_view text) const {
  // Trie.split on the added tokens' exact strings (leftmost, then longest).
  std::vector<std::string> out;
  size_t piece_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    const std::pair<std::string, int32_t>* hit = nullptr;
    for (const auto& a : added_) {  // longest first
      if (text.compare(pos, a.first.size(), a.first) == 0) {
        hit = &a;
        break;
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    tokenize_piece(utf8_to_u32(text.substr(piece_start, pos - piece_start)), &out);
    out.push_back(hit->first);
    pos += hit->first.size();
    piece_start = pos;
  }
  tokenize_piece(utf8_to_u32(text.substr(piece_start)), &out);
  return out;
}

std::vector<int32_t> ClipTokenizer::encode(std::string_view text, int32_t context_length,
                                           bool* truncated) const {
  if (context_length < 2) {
    throw Error("clip tokenizer: context length " + std::to_string(context_length) +
                " leaves no room for the start and end tokens");
  }
  const std::vector<std::string> toks = tokens(text);
  const size_t keep = std::min(toks.size(), static_cast<size_t>(context_length) - 2);
  std::vector<int32_t> ids;
  ids.reserve(keep + 2);
  ids.push_back(bos_id_);
  for (size_t i = 0; i < keep; ++i) ids.push_back(token_to_id(toks[i]));
  ids.push_back(eos_id_);
  if (truncated != nullptr) *truncated = keep < toks.size();
  return ids;
}

}  // namespace flamingo
