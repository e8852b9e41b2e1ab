#include "server/api_keys.h"

#include <cctype>
#include <fstream>

#include "model/error.h"

namespace flamingo {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

bool valid_key(std::string_view k) {
  for (const char c : k) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) return false;
  }
  return !k.empty();
}

// Equal in time that depends on `key`'s length only, not on `given`.
bool constant_time_equal(const std::string& key, std::string_view given) {
  unsigned diff = key.size() == given.size() ? 0u : 1u;
  for (size_t i = 0; i < key.size(); ++i) {
    const char g = given.empty() ? '\0' : given[i % given.size()];
    diff |= static_cast<unsigned char>(key[i] ^ g);
  }
  return diff == 0;
}

}  // namespace

ApiKeys ApiKeys::load(const std::string& file, const char* env_value) {
  ApiKeys out;
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) throw Error("--api-key-file: cannot read '" + file + "'");
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      const std::string_view k = trim(line);
      if (k.empty() || k.front() == '#') continue;
      if (!valid_key(k)) {
        throw Error("--api-key-file: " + file + " line " + std::to_string(n) +
                    ": a key may not contain spaces or control characters");
      }
      out.keys_.emplace_back(k);
    }
    if (out.keys_.empty()) throw Error("--api-key-file: " + file + " holds no key");
  }
  if (env_value != nullptr && *env_value != '\0') {
    const std::string_view k = trim(env_value);
    if (!valid_key(k)) {
      throw Error("FLAMINGO_API_KEY: a key may not contain spaces or control characters");
    }
    out.keys_.emplace_back(k);
  }
  return out;
}

bool ApiKeys::accepts(std::string_view authorization) const {
  if (keys_.empty()) return true;
  constexpr std::string_view kScheme = "bearer ";
  std::string_view v = trim(authorization);
  bool scheme = v.size() > kScheme.size();
  for (size_t i = 0; scheme && i < kScheme.size(); ++i) {
    scheme = std::tolower(static_cast<unsigned char>(v[i])) == kScheme[i];
  }
  if (!scheme) return false;
  const std::string_view given = trim(v.substr(kScheme.size()));
  bool ok = false;
  for (const std::string& k : keys_) ok |= constant_time_equal(k, given);  // no early exit
  return ok;
}

}  // namespace flamingo
