// API keys for both front ends: loaded from --api-key-file (one key a line) and the environment
// variable FLAMINGO_API_KEY; a client sends one as "authorization: Bearer KEY" (gRPC metadata or
// HTTP header). Without keys every client is let in (the default, for loopback use). Keys are
// compared in time that does not depend on the bytes sent (only on each key's length).
//
// Thread-safe: immutable after load. Torch-free.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace flamingo {

class ApiKeys {
 public:
  ApiKeys() = default;
  // Keys from `file` (when not empty: one a line; blank lines and lines starting with '#'
  // skipped; spaces around a key trimmed) and `env_value` (when not null nor empty). Throws
  // flamingo::Error naming the file and line for an unreadable file, a file without keys, or a
  // key with spaces or control characters inside it.
  static ApiKeys load(const std::string& file, const char* env_value);

  bool enabled() const { return !keys_.empty(); }
  size_t size() const { return keys_.size(); }
  // `authorization` is the header / metadata value: "Bearer KEY" (the scheme in any case). True
  // when KEY is one of the keys, or when there are no keys.
  bool accepts(std::string_view authorization) const;

 private:
  std::vector<std::string> keys_;
};

// The message clients get without a valid key (UNAUTHENTICATED / 401).
inline constexpr const char* kApiKeyRequired =
    "missing or invalid API key: send the header (gRPC: metadata) 'authorization: Bearer <key>'";

}  // namespace flamingo
