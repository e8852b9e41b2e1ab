// Python str semantics over UTF-8. See py_string.h.
#include "model/py_string.h"

#include "model/utf8.h"

namespace flamingo {

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

}  // namespace flamingo
