// TextStream: streamed text is always valid UTF-8, never retracts, ends equal to the cut text,
// and stop strings are found across token boundaries.
#include "server/engine/text_stream.h"

#include <gtest/gtest.h>

namespace flamingo {
namespace {

// Feeds successive prefixes of `pieces` and returns the concatenated deltas.
std::string stream(TextStream& ts, const std::vector<std::string>& pieces) {
  std::string full, out;
  for (const std::string& p : pieces) {
    full += p;
    out += ts.update(full).delta;
    if (ts.stopped()) break;
  }
  return out + ts.finish();
}

TEST(TextStreamTest, CompleteUtf8Prefix) {
  EXPECT_EQ(complete_utf8_prefix("abc"), 3u);
  EXPECT_EQ(complete_utf8_prefix("a\xE4\xBD"), 1u);      // 2 of 3 bytes of U+4F60
  EXPECT_EQ(complete_utf8_prefix("a\xE4\xBD\xA0"), 4u);  // complete
  EXPECT_EQ(complete_utf8_prefix("\xF0\x9F\x98"), 0u);   // 3 of 4 bytes of an emoji
  EXPECT_EQ(complete_utf8_prefix("\xC3"), 0u);
  EXPECT_EQ(complete_utf8_prefix(""), 0u);
}

TEST(TextStreamTest, HoldsBackIncompleteCharacters) {
  TextStream ts({});
  EXPECT_EQ(ts.update("ni").delta, "ni");
  EXPECT_EQ(ts.update("ni\xE4\xBD").delta, "");
  EXPECT_EQ(ts.update("ni\xE4\xBD\xA0").delta, "\xE4\xBD\xA0");
  EXPECT_EQ(ts.finish(), "");
  EXPECT_EQ(ts.text(), "ni\xE4\xBD\xA0");
}

TEST(TextStreamTest, HoldsBackReplacementCharacterUntilResolved) {
  TextStream ts({});
  EXPECT_EQ(ts.update("x\xEF\xBF\xBD").delta, "x");  // byte fallback still incomplete
  EXPECT_EQ(ts.update("x\xE4\xBD\xA0").delta, "\xE4\xBD\xA0");
}

TEST(TextStreamTest, HoldsBackCleanUpCandidates) {
  TextStream ts({});
  EXPECT_EQ(ts.update("Hello ").delta, "Hello");  // " ." may still become "."
  EXPECT_EQ(ts.update("Hello.").delta, ".");
  EXPECT_EQ(ts.update("Hello. I do").delta, " I do");  // "do" starts no clean-up pattern
  EXPECT_EQ(ts.update("Hello. I do n").delta, "");     // " n" may become " n't"
}

TEST(TextStreamTest, HoldsBackAQuoteThatCleanUpMayUndo) {
  TextStream ts({});
  EXPECT_EQ(ts.update("x'").delta, "x");      // " ' " cleaned up to "'"...
  EXPECT_EQ(ts.update("x '!").delta, " '!");  // ...until " !" took the space first
  EXPECT_EQ(ts.text(), "x '!");
}

TEST(TextStreamTest, UpdateWithKeepRewritesOnlyUnreleasedText) {
  TextStream ts({"END"});
  EXPECT_EQ(ts.update(0, "Hello ").delta, "Hello");
  EXPECT_EQ(ts.update(5, ".").delta, ".");  // " ." became "."
  EXPECT_EQ(ts.text(), "Hello.");
  EXPECT_EQ(ts.update(2, "llo. Go").delta, " Go");  // keep < released: released bytes stay
  EXPECT_EQ(ts.text(), "Hello. Go");
  EXPECT_EQ(ts.update(9, " EN").delta, " ");  // "EN" may become "END"
  EXPECT_EQ(ts.update(12, "D!").delta, "");
  EXPECT_TRUE(ts.stopped());
  EXPECT_EQ(ts.text(), "Hello. Go ");
  EXPECT_EQ(ts.finish(), "");
}

TEST(TextStreamTest, StopStringAcrossTokensIsCutAndNeverStreamed) {
  TextStream ts({"\nQ:"});
  const std::string out = stream(ts, {"The", " answer", " is", " 4", "\n", "Q", ":", " more"});
  EXPECT_EQ(out, "The answer is 4");
  EXPECT_EQ(ts.text(), "The answer is 4");
  EXPECT_TRUE(ts.stopped());
}

TEST(TextStreamTest, EarliestStopStringWins) {
  TextStream ts({"world", "lo w"});
  EXPECT_EQ(stream(ts, {"hello", " world"}), "hel");
}

TEST(TextStreamTest, PrefixOfStopStringReleasedWhenItDiverges) {
  TextStream ts({"STOP"});
  EXPECT_EQ(ts.update("go ST").delta, "go ");  // "ST" may become "STOP"
  EXPECT_EQ(ts.update("go STAY").delta, "STAY");
  EXPECT_FALSE(ts.stopped());
}

TEST(TextStreamTest, DeltasConcatenateToFinalText) {
  const std::vector<std::string> pieces = {"a", " ,", " b", "\xC3", "\xA9", " n", "'t", " ?"};
  TextStream ts({"zz"});
  std::string full;
  std::string out;
  for (const std::string& p : pieces) {
    full += p;
    const std::string d = ts.update(full).delta;
    out += d;
    EXPECT_EQ(complete_utf8_prefix(out), out.size()) << "delta broke UTF-8";
    EXPECT_EQ(full.compare(0, out.size(), out), 0) << "released text is not a prefix";
  }
  out += ts.finish();
  EXPECT_EQ(out, full);
}

}  // namespace
}  // namespace flamingo
