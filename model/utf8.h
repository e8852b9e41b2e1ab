// UTF-8 byte-level helpers shared by the tokenizer, request validation and streaming: decoding
// one code point the way the tokenizer's Python-string emulation needs it (invalid bytes map
// to lone surrogates, like Python's surrogateescape), locating the first invalid sequence
// (strict UTF-8: overlong forms, surrogates and code points above U+10FFFF are invalid) and
// finding where the last complete character ends (for text still growing).
// Torch-free. Thread-safety: pure functions, no shared state.
#pragma once

#include <cstddef>
#include <string_view>

namespace flamingo {

// Decodes one UTF-8 sequence at s[pos] (pos < s.size()); sets *len to the bytes it took.
// An invalid byte (a lone continuation byte, an unknown lead byte, a lead byte whose sequence
// is truncated, overlong, a surrogate or above U+10FFFF) decodes to U+DC00 + byte (U+DC80 ..
// U+DCFF, a lone surrogate, which no valid token contains), one byte at a time: the bytes after
// it are decoded afresh.
char32_t decode_utf8(std::string_view s, size_t pos, size_t* len);

// Byte offset of the first invalid UTF-8 sequence, or npos (overlong forms, surrogates and
// code points above U+10FFFF are invalid).
size_t invalid_utf8_at(std::string_view s);

// Length of the longest prefix of `s` that ends on a complete UTF-8 character: a lead byte in
// the last 4 bytes followed by fewer continuation bytes than it announces is cut off with them.
// No validation: a byte that leads no multi-byte sequence, or only continuation bytes in the
// last 4, leave `s` whole (malformed, nothing to wait for).
size_t complete_utf8_prefix(std::string_view s);

}  // namespace flamingo
