// Python str semantics over UTF-8 byte strings, as the HF tokenizer code relies on them:
// Python strings index code points, and str.isspace()/strip() work on those. Text is decoded
// with decode_utf8 (model/utf8.h): an invalid byte is one code point of its own (a lone
// surrogate, like Python's surrogateescape), so any byte string round-trips.
// Torch-free. Thread-safety: pure functions, no shared state.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace flamingo {

// Code points of `s` with their byte offsets (offsets has one extra entry: s.size()).
struct CodePoints {
  std::vector<char32_t> cps;
  std::vector<size_t> offsets;
};

CodePoints to_code_points(std::string_view s);

// Python's str.isspace() set, which str.strip()/lstrip()/rstrip() without arguments remove.
bool py_isspace(char32_t c);

// str.lstrip() / str.rstrip() without arguments.
std::string py_lstrip(const std::string& s);
std::string py_rstrip(const std::string& s);

// str.replace(from, to) for a non-empty `from`; an empty `from` returns `s` unchanged.
std::string replace_all(std::string s, std::string_view from, std::string_view to);

// str.startswith(prefix) (byte-wise, which is the same for UTF-8).
bool starts_with(std::string_view s, std::string_view prefix);

}  // namespace flamingo
