// Reading config.json values with the errors every config reader gives (file, key, expected
// and found value), shared by model/config.cpp (IDEFICS) and model/clip_config.cpp (CLIP).
// Internal to model/: includes nlohmann/json. Not thread-safe state: none (pure functions).
#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>

#include "model/config.h"
#include "model/error.h"

namespace flamingo {

using nlohmann::json;

class Reader {
 public:
  Reader(const json& obj, std::string source, std::string prefix)
      : obj_(obj), source_(std::move(source)), prefix_(std::move(prefix)) {}

  template <typename T>
  void get(const char* key, T& out) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return;  // class default
    try {
      if constexpr (std::is_same_v<T, int64_t>) {
        if (!it->is_number_integer()) throw std::invalid_argument("an integer");
        out = it->template get<int64_t>();
      } else if constexpr (std::is_same_v<T, double>) {
        if (!it->is_number()) throw std::invalid_argument("a number");
        out = it->template get<double>();
      } else if constexpr (std::is_same_v<T, bool>) {
        if (!it->is_boolean()) throw std::invalid_argument("a boolean");
        out = it->template get<bool>();
      } else {
        if (!it->is_string()) throw std::invalid_argument("a string");
        out = it->template get<std::string>();
      }
    } catch (const std::invalid_argument& e) {
      throw Error(source_ + ": key '" + prefix_ + key + "' must be " + std::string(e.what()) +
                  ", found " + it->dump());
    }
  }

  void positive(const char* key, int64_t value) const {
    if (value <= 0) {
      throw Error(source_ + ": key '" + prefix_ + key + "' must be > 0, found " +
                  std::to_string(value));
    }
  }

  // The encoder activations model/layers.h implements.
  void check_activation(const char* key, const std::string& act) const {
    if (act != "gelu" && act != "quick_gelu" && act != "gelu_new" && act != "gelu_pytorch_tanh") {
      fail(key, "one of gelu, quick_gelu, gelu_new, gelu_pytorch_tanh", "\"" + act + "\"");
    }
  }

  [[noreturn]] void fail(const std::string& key, const std::string& expected,
                         const std::string& found) const {
    throw Error(source_ + ": key '" + prefix_ + key + "': expected " + expected + ", found " +
                found);
  }

 private:
  const json& obj_;
  std::string source_;
  std::string prefix_;
};

inline void check_model_type(const json& obj, const char* key, const std::string& source,
                             std::initializer_list<const char*> accepted) {
  auto it = obj.find("model_type");
  if (it == obj.end()) return;
  std::string found = it->is_string() ? it->get<std::string>() : it->dump();
  for (const char* a : accepted) {
    if (found == a) return;
  }
  std::string list;
  for (const char* a : accepted) list += (list.empty() ? "\"" : ", \"") + std::string(a) + "\"";
  throw Error(source + ": unsupported " + key + " \"" + found + "\" (supported: " + list + ")");
}

// The vision_config object of an IDEFICS or CLIP config: `v` holds the class defaults
// (IdeficsVisionConfig or CLIPVisionConfig), present keys override them; model_type, when
// present, must be one of `model_types`.
VisionConfig parse_vision_config(const json& obj, const std::string& source, VisionConfig v,
                                 std::initializer_list<const char*> model_types);

// The text of <dir>/config.json; *path gets the file's path. Throws Error naming the file and
// asking whether `dir` is `kind` ("an IDEFICS", "a CLIP") checkpoint folder.
std::string read_config_json(const std::string& dir, const std::string& kind, std::string* path);

}  // namespace flamingo
