// Unicode categories, str.lower() and NFC over the generated tables. See unicode_classes.h.
#include "model/unicode_classes.h"

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "model/unicode_tables.h"
#include "model/utf8.h"

namespace flamingo {
namespace {

namespace ut = unicode_tables;

// The value of the last range starting at or before c in a table packed (start << shift) | v.
uint32_t range_value(const uint32_t* table, size_t size, int shift, char32_t c) {
  const uint32_t key = (static_cast<uint32_t>(c) << shift) | ((1u << shift) - 1);
  const uint32_t* it = std::upper_bound(table, table + size, key);
  return it == table ? 0 : (*(it - 1) & ((1u << shift) - 1));
}

enum CaseContext : uint32_t { kNeither = 0, kCaseIgnorable = 1, kCased = 2 };

uint32_t case_context(char32_t c) {
  return range_value(ut::kCaseContextRanges, ut::kCaseContextRangesSize, 2, c);
}

char32_t simple_lower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  const ut::LowerRun* end = ut::kLowerRuns + ut::kLowerRunsSize;
  const ut::LowerRun* it =
      std::upper_bound(ut::kLowerRuns, end, static_cast<uint32_t>(c),
                       [](uint32_t v, const ut::LowerRun& r) { return v < r.start; });
  if (it == ut::kLowerRuns) return c;
  const ut::LowerRun& r = *(it - 1);
  const uint32_t off = static_cast<uint32_t>(c) - r.start;
  if (off >= static_cast<uint32_t>(r.count) * r.stride || off % r.stride != 0) return c;
  return static_cast<char32_t>(static_cast<int64_t>(c) + r.delta);
}

// CPython's handle_capital_sigma: U+03A3 lowers to final U+03C2 when preceded by a cased
// letter (skipping case-ignorables) and not followed by one (skipping case-ignorables).
bool final_sigma(std::u32string_view s, size_t i) {
  size_t j = i;
  while (j > 0 && case_context(s[j - 1]) == kCaseIgnorable) --j;
  if (j == 0 || case_context(s[j - 1]) != kCased) return false;
  j = i + 1;
  while (j < s.size() && case_context(s[j]) == kCaseIgnorable) ++j;
  return j == s.size() || case_context(s[j]) != kCased;
}

constexpr char32_t kHangulS = 0xAC00, kHangulL = 0x1100, kHangulV = 0x1161, kHangulT = 0x11A7;
constexpr char32_t kHangulLCount = 19, kHangulVCount = 21, kHangulTCount = 28;
constexpr char32_t kHangulN = kHangulVCount * kHangulTCount,
                   kHangulSCount = kHangulLCount * kHangulN;

const ut::Decomposition* find_decomposition(char32_t c) {
  const ut::Decomposition* end = ut::kDecompositions + ut::kDecompositionsSize;
  const ut::Decomposition* it =
      std::lower_bound(ut::kDecompositions, end, static_cast<uint32_t>(c),
                       [](const ut::Decomposition& d, uint32_t v) { return d.cp < v; });
  return (it != end && it->cp == c) ? it : nullptr;
}

void decompose_append(char32_t c, std::u32string* out) {
  if (c >= kHangulS && c < kHangulS + kHangulSCount) {
    const char32_t s = c - kHangulS;
    out->push_back(kHangulL + s / kHangulN);
    out->push_back(kHangulV + (s % kHangulN) / kHangulTCount);
    if (s % kHangulTCount != 0) out->push_back(kHangulT + s % kHangulTCount);
    return;
  }
  const ut::Decomposition* d = find_decomposition(c);
  if (d == nullptr) {
    out->push_back(c);
    return;
  }
  decompose_append(d->first, out);
  if (d->second != 0) decompose_append(d->second, out);
}

uint64_t pair_key(char32_t a, char32_t b) { return (static_cast<uint64_t>(a) << 32) | b; }

const std::unordered_map<uint64_t, char32_t>& composition_index() {
  static const auto* index = [] {
    auto* m = new std::unordered_map<uint64_t, char32_t>();
    for (size_t i = 0; i < ut::kDecompositionsSize; ++i) {
      const ut::Decomposition& d = ut::kDecompositions[i];
      if (d.composes) m->emplace(pair_key(d.first, d.second), d.cp);
    }
    return m;
  }();
  return *index;
}

// The primary composite of a + b, or 0.
char32_t compose(char32_t a, char32_t b) {
  if (a >= kHangulL && a < kHangulL + kHangulLCount && b >= kHangulV &&
      b < kHangulV + kHangulVCount) {
    return kHangulS + ((a - kHangulL) * kHangulVCount + (b - kHangulV)) * kHangulTCount;
  }
  if (a >= kHangulS && a < kHangulS + kHangulSCount && (a - kHangulS) % kHangulTCount == 0 &&
      b > kHangulT && b < kHangulT + kHangulTCount) {
    return a + (b - kHangulT);
  }
  const auto& index = composition_index();
  const auto it = index.find(pair_key(a, b));
  return it == index.end() ? 0 : it->second;
}

}  // namespace

UnicodeCategory unicode_category(char32_t c) {
  return static_cast<UnicodeCategory>(
      range_value(ut::kCategoryRanges, ut::kCategoryRangesSize, 3, c));
}

uint8_t canonical_combining_class(char32_t c) {
  if (c < 0x300) return 0;
  return static_cast<uint8_t>(
      range_value(ut::kCombiningClassRanges, ut::kCombiningClassRangesSize, 8, c));
}

void py_lower_append(std::u32string_view s, std::u32string* out) {
  for (size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c == 0x3A3) {
      out->push_back(final_sigma(s, i) ? 0x3C2 : 0x3C3);
    } else if (c == 0x130) {  // the one multi-code-point lower-case mapping
      out->push_back(U'i');
      out->push_back(0x307);
    } else {
      out->push_back(simple_lower(c));
    }
  }
}

std::u32string py_lower(std::u32string_view s) {
  std::u32string out;
  out.reserve(s.size());
  py_lower_append(s, &out);
  return out;
}

std::u32string nfc_normalize(std::u32string_view s) {
  // Below U+0300 every code point is a starter that is already NFC and composes with nothing
  // before it.
  if (std::all_of(s.begin(), s.end(), [](char32_t c) { return c < 0x300; })) {
    return std::u32string(s);
  }
  // Canonical decomposition, then canonical ordering (a stable sort of each non-starter run).
  std::u32string d;
  d.reserve(s.size() + 8);
  for (const char32_t c : s) decompose_append(c, &d);
  std::vector<uint8_t> ccc(d.size());
  for (size_t i = 0; i < d.size(); ++i) ccc[i] = canonical_combining_class(d[i]);
  for (size_t i = 0; i < d.size();) {
    if (ccc[i] == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && ccc[j] != 0) ++j;
    // Insertion sort: runs are short, and it is stable.
    for (size_t k = i + 1; k < j; ++k) {
      for (size_t m = k; m > i && ccc[m - 1] > ccc[m]; --m) {
        std::swap(ccc[m - 1], ccc[m]);
        std::swap(d[m - 1], d[m]);
      }
    }
    i = j;
  }
  // Canonical composition (UAX #15): a character composes with the last starter unless a
  // character between them is a starter or has a combining class >= its own.
  std::u32string out;
  out.reserve(d.size());
  size_t starter = std::u32string::npos;
  int last_class = 256;
  for (size_t i = 0; i < d.size(); ++i) {
    const char32_t c = d[i];
    const int cls = ccc[i];
    if (starter != std::u32string::npos && (last_class < cls || last_class == 0)) {
      // last_class == 0 only when the starter itself was the last character appended.
      if (const char32_t composite = compose(out[starter], c); composite != 0) {
        out[starter] = composite;
        continue;
      }
    }
    if (cls == 0) starter = out.size();
    last_class = cls;
    out.push_back(c);
  }
  return out;
}

const char* unicode_tables_version() { return ut::kUnicodeVersion; }

std::u32string utf8_to_u32(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    size_t len = 1;
    out.push_back(decode_utf8(s, pos, &len));
    pos += len;
  }
  return out;
}

void append_utf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string u32_to_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char32_t c : s) append_utf8(c, &out);
  return out;
}

}  // namespace flamingo
