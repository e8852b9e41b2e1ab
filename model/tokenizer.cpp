// HF slow LlamaTokenizer (transformers v4.44.2) over sentencepiece. See tokenizer.h.
// Its parts live beside it: the JSON files (tokenizer_files.h), the added-token Trie
// (token_trie.h), Python str semantics (py_string.h) and UTF-8 decoding (utf8.h).
// The only file that includes sentencepiece_processor.h (its absl::string_view alias clashes
// with abseil/gRPC headers).
#include "model/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "model/error.h"
#include "model/py_string.h"
#include "model/token_trie.h"
#include "model/tokenizer_files.h"

namespace flamingo {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581 "▁", SPIECE_UNDERLINE
constexpr std::string_view kEndOfUtterance = "<end_of_utterance>";

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
      std::string added;
      if (!added_by_id.empty()) {
        added = " or an added token (ids " + std::to_string(added_by_id.begin()->first) + ".." +
                std::to_string(added_by_id.rbegin()->first) + ", " +
                std::to_string(added_by_id.size()) + " of them)";
      }
      throw Error("tokenizer: token id " + std::to_string(id) +
                  " has no token: not a sentencepiece piece (ids 0.." +
                  std::to_string(sp_size - 1) + ")" + added);
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

  const TokenizerFiles files = read_tokenizer_files(dir);
  const std::string& config_file = files.config_file;
  impl->legacy = files.legacy;
  impl->add_prefix_space = files.add_prefix_space;
  impl->add_bos = files.add_bos;
  impl->clean_up_tokenization_spaces = files.clean_up_tokenization_spaces;
  impl->split_special_tokens = files.split_special_tokens;
  const auto& specs = files.specs;
  const std::vector<TokenSpec>& additional = files.additional;
  const std::vector<std::pair<int32_t, AddedToken>>& decoder = files.decoder;

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
bool Tokenizer::has_token(int32_t id) const {
  return (id >= 0 && id < impl_->sp_size) || impl_->added_by_id.count(id) > 0;
}
bool Tokenizer::is_special(int32_t id) const { return impl_->all_special_ids.count(id) > 0; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::legacy() const { return impl_->legacy; }
bool Tokenizer::clean_up_tokenization_spaces() const { return impl_->clean_up_tokenization_spaces; }
std::optional<int32_t> Tokenizer::end_of_utterance_id() const { return impl_->end_of_utterance; }

}  // namespace flamingo
