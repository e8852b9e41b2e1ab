// What the two template files (--templates: server/prompt_templates.h; --chat-template:
// server/chat_template.h) share when they are read: the file's text, and checks of a JSON
// object's keys and of string arrays whose errors name the file and the key path, e.g.
// "t.json: roles.tool: unknown key (expected "system", "user", "assistant")". Header-only,
// torch-free; a parser is used by one thread.
#pragma once

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "model/error.h"

namespace flamingo {

// The whole file; Error "PATH: cannot open the WHAT file" when it cannot be read.
inline std::string read_template_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the " + what + " file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path + ": cannot read the " + what + " file");
  return ss.str();
}

class TemplateFileParser {
 public:
  explicit TemplateFileParser(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw Error(source_ + ": " + key + ": " + what);
  }

  // `obj` must be an object holding every `required` key and no key outside required and
  // optional. `key` is its path ("" at the top).
  void check_keys(const nlohmann::json& obj, const std::string& key,
                  const std::vector<std::string>& required,
                  const std::vector<std::string>& optional) const {
    if (!obj.is_object()) fail(key, std::string("expected an object, found ") + obj.type_name());
    for (const std::string& r : required) {
      if (!obj.contains(r)) fail(key.empty() ? r : key + "." + r, "missing");
    }
    for (const auto& [name, value] : obj.items()) {
      const bool known = std::find(required.begin(), required.end(), name) != required.end() ||
                         std::find(optional.begin(), optional.end(), name) != optional.end();
      if (!known) {
        std::vector<std::string> all = required;
        all.insert(all.end(), optional.begin(), optional.end());
        std::string list;
        for (const std::string& a : all) list += (list.empty() ? "" : ", ") + ("\"" + a + "\"");
        fail(key.empty() ? name : key + "." + name, "unknown key (expected " + list + ")");
      }
    }
  }

  std::vector<std::string> strings(const nlohmann::json& arr, const std::string& key) const {
    if (!arr.is_array()) {
      fail(key, std::string("expected an array of strings, found ") + arr.type_name());
    }
    std::vector<std::string> out;
    for (size_t i = 0; i < arr.size(); ++i) {
      if (!arr[i].is_string()) {
        fail(key + "[" + std::to_string(i) + "]",
             std::string("expected a string, found ") + arr[i].type_name());
      }
      out.push_back(arr[i].get<std::string>());
    }
    return out;
  }

 private:
  std::string source_;
};

}  // namespace flamingo
