// The Unicode character data the Python tokenizers we emulate rely on, from generated tables
// (model/unicode_tables.cpp, written by tools/gen_unicode_tables.py from Debian 12's Python
// 3.11 `unicodedata`, Unicode 14.0.0): coarse general categories (regex's \p{L} / \p{N},
// unicodedata.category(c)[0] == "C", "Zs"), Python's str.lower() (full mappings, including
// U+0130 -> "i\u0307" and the Final_Sigma rule) and unicodedata.normalize("NFC", ...).
// Code points outside the Unicode 14.0 repertoire are unassigned (category C); lone
// surrogates (how model/utf8.h decodes invalid bytes) are category C too.
// Torch-free. Thread-safety: pure functions over constant data (the NFC composition index is
// built once, thread-safely, on first use).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace flamingo {

// unicodedata.category(c), coarsely. kControl is every "C*" category: Cc, Cf, Cs (surrogates),
// Co (private use) and Cn (unassigned); kOther is M*, P*, S*, Zl and Zp.
enum class UnicodeCategory : uint8_t { kOther, kLetter, kNumber, kControl, kSpaceSeparator };

UnicodeCategory unicode_category(char32_t c);

inline bool is_unicode_letter(char32_t c) {  // \p{L}
  return unicode_category(c) == UnicodeCategory::kLetter;
}
inline bool is_unicode_number(char32_t c) {  // \p{N}
  return unicode_category(c) == UnicodeCategory::kNumber;
}

// unicodedata.combining(c): the canonical combining class.
uint8_t canonical_combining_class(char32_t c);

// Python's str.lower() of `s` (code points), appended to *out.
void py_lower_append(std::u32string_view s, std::u32string* out);
std::u32string py_lower(std::u32string_view s);

// unicodedata.normalize("NFC", s).
std::u32string nfc_normalize(std::u32string_view s);

// The Unicode version the tables were generated from ("14.0.0").
const char* unicode_tables_version();

// Code points <-> UTF-8. Encoding writes a lone surrogate as its 3-byte form (like Python's
// "surrogatepass"); decoding is model/utf8.h's decode_utf8 (invalid bytes -> U+DC80..U+DCFF).
std::u32string utf8_to_u32(std::string_view s);
void append_utf8(char32_t c, std::string* out);
std::string u32_to_utf8(std::u32string_view s);

}  // namespace flamingo
