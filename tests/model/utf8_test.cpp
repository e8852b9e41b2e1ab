// UTF-8 helpers: decode_utf8 (valid 1-4 byte forms, and the surrogateescape-like mapping of
// every invalid byte to U+DC00 + byte), invalid_utf8_at (strict validation: truncated,
// overlong, surrogate, above U+10FFFF, lone continuation bytes) and complete_utf8_prefix.
// Expected values written out by hand.
#include "model/utf8.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace flamingo {
namespace {

constexpr size_t kNpos = std::string_view::npos;

// The code point at s[pos] and the bytes it took.
struct Decoded {
  char32_t cp;
  size_t len;
};

Decoded decode_at(std::string_view s, size_t pos = 0) {
  size_t len = 0;
  const char32_t cp = decode_utf8(s, pos, &len);
  return {cp, len};
}

// Every code point of `s`, decoded left to right.
std::vector<char32_t> decode_all(std::string_view s) {
  std::vector<char32_t> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t len = 0;
    out.push_back(decode_utf8(s, pos, &len));
    pos += len;
  }
  return out;
}

void expect_decoded(std::string_view s, char32_t cp, size_t len, size_t pos = 0) {
  const Decoded d = decode_at(s, pos);
  EXPECT_EQ(static_cast<uint32_t>(d.cp), static_cast<uint32_t>(cp)) << "at " << pos;
  EXPECT_EQ(d.len, len) << "at " << pos;
}

TEST(DecodeUtf8, ValidForms) {
  expect_decoded("A", 0x41, 1);
  expect_decoded(std::string_view("\0", 1), 0x00, 1);
  expect_decoded("\x7F", 0x7F, 1);
  expect_decoded("\xC2\x80", 0x80, 2);              // smallest 2-byte
  expect_decoded("\xC3\xA9", 0xE9, 2);              // é
  expect_decoded("\xDF\xBF", 0x7FF, 2);             // largest 2-byte
  expect_decoded("\xE0\xA0\x80", 0x800, 3);         // smallest 3-byte
  expect_decoded("\xE2\x82\xAC", 0x20AC, 3);        // €
  expect_decoded("\xE2\x96\x81", 0x2581, 3);        // ▁ (sentencepiece space)
  expect_decoded("\xED\x9F\xBF", 0xD7FF, 3);        // just below the surrogates
  expect_decoded("\xEE\x80\x80", 0xE000, 3);        // just above the surrogates
  expect_decoded("\xEF\xBF\xBF", 0xFFFF, 3);        // largest 3-byte
  expect_decoded("\xF0\x90\x80\x80", 0x10000, 4);   // smallest 4-byte
  expect_decoded("\xF0\x9F\x98\x80", 0x1F600, 4);   // 😀
  expect_decoded("\xF4\x8F\xBF\xBF", 0x10FFFF, 4);  // largest code point
  // Decoding from the middle of a string.
  expect_decoded("a\xC3\xA9z", 0xE9, 2, 1);
  expect_decoded("a\xC3\xA9z", 0x7A, 1, 3);
}

TEST(DecodeUtf8, InvalidBytesMapToLoneSurrogatesOneByteEach) {
  // Truncated sequences: the lead byte alone is invalid.
  expect_decoded("\xC3", 0xDCC3, 1);
  expect_decoded("\xE2\x82", 0xDCE2, 1);
  expect_decoded("\xE2\x82", 0xDC82, 1, 1);
  expect_decoded("\xF0\x9F\x98", 0xDCF0, 1);
  expect_decoded("\xE2\x82\x41", 0xDCE2, 1);  // "A" cuts the sequence
  // Overlong forms.
  expect_decoded("\xC0\x80", 0xDCC0, 1);
  expect_decoded("\xC1\xBF", 0xDCC1, 1);
  expect_decoded("\xE0\x80\xAF", 0xDCE0, 1);
  expect_decoded("\xE0\x9F\xBF", 0xDCE0, 1);
  expect_decoded("\xF0\x82\x82\xAC", 0xDCF0, 1);
  expect_decoded("\xF0\x8F\xBF\xBF", 0xDCF0, 1);
  // Surrogates U+D800..U+DFFF.
  expect_decoded("\xED\xA0\x80", 0xDCED, 1);
  expect_decoded("\xED\xBF\xBF", 0xDCED, 1);
  // Above U+10FFFF.
  expect_decoded("\xF4\x90\x80\x80", 0xDCF4, 1);
  expect_decoded("\xF5\x80\x80\x80", 0xDCF5, 1);
  expect_decoded("\xF7\xBF\xBF\xBF", 0xDCF7, 1);
  // Bytes that lead nothing.
  expect_decoded("\xF8\x88\x80\x80\x80", 0xDCF8, 1);
  expect_decoded("\xFE", 0xDCFE, 1);
  expect_decoded("\xFF", 0xDCFF, 1);
  // Lone continuation bytes.
  expect_decoded("\x80", 0xDC80, 1);
  expect_decoded("\xBF", 0xDCBF, 1);
  expect_decoded("\xC3\xA9", 0xDCA9, 1, 1);
}

TEST(DecodeUtf8, WholeStringsLikeSurrogateescape) {
  // Python: b"...".decode("utf-8", "surrogateescape").
  EXPECT_EQ(decode_all(""), std::vector<char32_t>{});
  EXPECT_EQ(decode_all("a\xFF\xC3\xA9\x80"), (std::vector<char32_t>{0x61, 0xDCFF, 0xE9, 0xDC80}));
  EXPECT_EQ(decode_all("\xE2\x82\x41"), (std::vector<char32_t>{0xDCE2, 0xDC82, 0x41}));
  EXPECT_EQ(decode_all("\xED\xA0\x80"), (std::vector<char32_t>{0xDCED, 0xDCA0, 0xDC80}));
  EXPECT_EQ(decode_all("\xC0\xAF\x62"), (std::vector<char32_t>{0xDCC0, 0xDCAF, 0x62}));
  EXPECT_EQ(decode_all("\xF4\x90\x80\x80"),
            (std::vector<char32_t>{0xDCF4, 0xDC90, 0xDC80, 0xDC80}));
  EXPECT_EQ(decode_all("\xF0\x9F\x98\x80\xF0\x9F\x98"),
            (std::vector<char32_t>{0x1F600, 0xDCF0, 0xDC9F, 0xDC98}));
}

TEST(InvalidUtf8At, ValidText) {
  EXPECT_EQ(invalid_utf8_at(""), kNpos);
  EXPECT_EQ(invalid_utf8_at("hello"), kNpos);
  EXPECT_EQ(invalid_utf8_at(std::string_view("a\0b", 3)), kNpos);
  EXPECT_EQ(invalid_utf8_at("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"), kNpos);
  EXPECT_EQ(invalid_utf8_at("\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF"), kNpos);
  EXPECT_EQ(invalid_utf8_at("\xED\x9F\xBF\xEE\x80\x80"), kNpos);          // U+D7FF, U+E000
  EXPECT_EQ(invalid_utf8_at("\xF0\x90\x80\x80\xF4\x8F\xBF\xBF"), kNpos);  // U+10000, U+10FFFF
}

TEST(InvalidUtf8At, TruncatedSequences) {
  EXPECT_EQ(invalid_utf8_at("\xC3"), 0u);
  EXPECT_EQ(invalid_utf8_at("ab\xE2\x82"), 2u);
  EXPECT_EQ(invalid_utf8_at("\xF0\x9F\x98"), 0u);
  EXPECT_EQ(invalid_utf8_at("a\xC3\x62"), 1u);         // cut by "b"
  EXPECT_EQ(invalid_utf8_at("\xE2\x82\x41\xE2"), 0u);  // the first one wins
  EXPECT_EQ(invalid_utf8_at("\xC3\xA9\xC3\xA9\xF0\x9F"), 4u);
}

TEST(InvalidUtf8At, OverlongForms) {
  EXPECT_EQ(invalid_utf8_at("x\xC0\x80"), 1u);
  EXPECT_EQ(invalid_utf8_at("\xC1\xBF"), 0u);
  EXPECT_EQ(invalid_utf8_at("ab\xE0\x80\xAF"), 2u);
  EXPECT_EQ(invalid_utf8_at("\xE0\x9F\xBF"), 0u);
  EXPECT_EQ(invalid_utf8_at("\xF0\x82\x82\xAC"), 0u);
  EXPECT_EQ(invalid_utf8_at("\xF0\x8F\xBF\xBF"), 0u);
}

TEST(InvalidUtf8At, SurrogatesAndAboveMax) {
  EXPECT_EQ(invalid_utf8_at("a\xED\xA0\x80"), 1u);  // U+D800
  EXPECT_EQ(invalid_utf8_at("\xED\xBF\xBF"), 0u);   // U+DFFF
  EXPECT_EQ(invalid_utf8_at("\xF4\x90\x80\x80"), 0u);
  EXPECT_EQ(invalid_utf8_at("ok\xF5\x80\x80\x80"), 2u);
  EXPECT_EQ(invalid_utf8_at("\xF8\x88\x80\x80\x80"), 0u);
  EXPECT_EQ(invalid_utf8_at("\xFE"), 0u);
  EXPECT_EQ(invalid_utf8_at("\xFF"), 0u);
}

TEST(InvalidUtf8At, LoneContinuationBytes) {
  EXPECT_EQ(invalid_utf8_at("\x80"), 0u);
  EXPECT_EQ(invalid_utf8_at("abc\xBF"), 3u);
  EXPECT_EQ(invalid_utf8_at("\xC3\xA9\xC3\xA9\x80"), 4u);  // one continuation too many
}

TEST(CompleteUtf8Prefix, CutsOnlyAnIncompleteLastCharacter) {
  EXPECT_EQ(complete_utf8_prefix(""), 0u);
  EXPECT_EQ(complete_utf8_prefix("abc"), 3u);
  EXPECT_EQ(complete_utf8_prefix("a\xC3"), 1u);
  EXPECT_EQ(complete_utf8_prefix("a\xC3\xA9"), 3u);
  EXPECT_EQ(complete_utf8_prefix("\xE2\x82"), 0u);
  EXPECT_EQ(complete_utf8_prefix("x\xE2"), 1u);
  EXPECT_EQ(complete_utf8_prefix("x\xE2\x82\xAC"), 4u);
  EXPECT_EQ(complete_utf8_prefix("ab\xF0"), 2u);
  EXPECT_EQ(complete_utf8_prefix("\xF0\x9F\x98"), 0u);
  EXPECT_EQ(complete_utf8_prefix("\xF0\x9F\x98\x80"), 4u);
  EXPECT_EQ(complete_utf8_prefix("\xF0\x9F\x98\x80\xF0\x9F"), 4u);
}

TEST(CompleteUtf8Prefix, MalformedTailsAreNotWaitedFor) {
  EXPECT_EQ(complete_utf8_prefix("\x80\x80"), 2u);      // continuation bytes only
  EXPECT_EQ(complete_utf8_prefix("a\x80"), 2u);         // after a 1-byte character
  EXPECT_EQ(complete_utf8_prefix("\xC3\xA9\x80"), 3u);  // one continuation too many
  EXPECT_EQ(complete_utf8_prefix("\xFF"), 1u);          // leads nothing
  EXPECT_EQ(complete_utf8_prefix("a\xF8\x80"), 3u);
  // No lead byte within the last 4 bytes.
  EXPECT_EQ(complete_utf8_prefix("\xF0\x9F\x98\x80\x80"), 5u);
}

}  // namespace
}  // namespace flamingo
