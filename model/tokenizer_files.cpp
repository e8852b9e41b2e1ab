// Reading a tokenizer folder's JSON files as HF does. See tokenizer_files.h.
#include "model/tokenizer_files.h"

#include <algorithm>
#include <climits>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/error.h"

namespace flamingo {
namespace {

using Json = nlohmann::ordered_json;  // keeps file order, as Python dicts do

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

}  // namespace

TokenizerFiles read_tokenizer_files(const std::filesystem::path& dir) {
  TokenizerFiles files;
  const std::filesystem::path config_path = dir / "tokenizer_config.json";
  files.config_file = config_path.string();
  const std::string& config_file = files.config_file;
  const Json config = read_json_file(config_path).value_or(Json::object());
  if (!config.is_object()) throw Error("tokenizer: " + config_file + ": not a JSON object");

  // legacy=None (missing or null) means legacy=True in v4.44.2.
  files.legacy = read_bool(config, "legacy", true, config_file);
  files.add_prefix_space = read_bool(config, "add_prefix_space", true, config_file);
  files.add_bos = read_bool(config, "add_bos_token", true, config_file);
  files.clean_up_tokenization_spaces =
      read_bool(config, "clean_up_tokenization_spaces", false, config_file);
  files.split_special_tokens = read_bool(config, "split_special_tokens", false, config_file);

  // Special-token attributes: LlamaTokenizer's defaults, then tokenizer_config.json.
  auto& specs = files.specs;
  specs[0] = TokenSpec{{"<s>"}, false};
  specs[1] = TokenSpec{{"</s>"}, false};
  specs[2] = TokenSpec{{"<unk>"}, false};
  std::vector<TokenSpec>& additional = files.additional;
  for (size_t k = 0; k < kSpecialAttributes.size(); ++k) {
    const auto it = config.find(kSpecialAttributes[k]);
    if (it != config.end()) specs[k] = parse_token_spec(*it, config_file, kSpecialAttributes[k]);
  }
  if (const auto it = config.find("additional_special_tokens"); it != config.end()) {
    additional = parse_token_list(*it, config_file, "additional_special_tokens");
  }

  // Added tokens (_from_pretrained).
  std::vector<std::pair<int32_t, AddedToken>>& decoder = files.decoder;  // in file order
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
  return files;
}

}  // namespace flamingo
