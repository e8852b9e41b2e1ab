// ClipTokenizer (model/clip_tokenizer.h) against tests/golden/clip-tiny/cases.json (ids and
// tokens computed by transformers v4.44.2's slow CLIPTokenizer without ftfy), plus
// hand-derived cases for the BasicTokenizer cleanup, the pre-tokenizer regex, truncation,
// invalid UTF-8 and bad tokenizer files.
#include "model/clip_tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/error.h"
#include "model/unicode_classes.h"

namespace flamingo {
namespace {

namespace fs = std::filesystem;
using Strings = std::vector<std::string>;

const fs::path kGolden = fs::path(FLAMINGO_SOURCE_DIR) / "tests/golden/clip-tiny";

const ClipTokenizer& golden_tokenizer() {
  static const std::unique_ptr<ClipTokenizer> tok = ClipTokenizer::load(kGolden / "model");
  return *tok;
}

nlohmann::json golden_cases() {
  std::ifstream in(kGolden / "cases.json");
  return nlohmann::json::parse(in);
}

// A fresh copy of the golden tokenizer files, removed at scope exit.
struct TempModel {
  fs::path dir;
  TempModel() {
    static int counter = 0;
    dir = fs::temp_directory_path() /
          ("flamingo_clip_tok_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* f :
         {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"}) {
      fs::copy_file(kGolden / "model" / f, dir / f);
      fs::permissions(dir / f, fs::perms::owner_write, fs::perm_options::add);
    }
  }
  ~TempModel() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(dir / name, std::ios::binary | std::ios::trunc) << text;
  }
  std::string read(const std::string& name) const {
    std::ifstream in(dir / name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
};

// load() must throw a flamingo::Error whose message contains every one of `parts`.
void expect_load_error(const TempModel& m, const std::vector<std::string>& parts) {
  try {
    ClipTokenizer::load(m.dir.string());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

Strings toks(std::string_view text) { return golden_tokenizer().tokens(text); }

Strings concat(std::initializer_list<Strings> lists) {
  Strings out;
  for (const Strings& l : lists) out.insert(out.end(), l.begin(), l.end());
  return out;
}

TEST(ClipTokenizer, SpecialIdsAndVocab) {
  const ClipTokenizer& tok = golden_tokenizer();
  EXPECT_EQ(tok.bos_id(), 632);
  EXPECT_EQ(tok.eos_id(), 633);
  EXPECT_EQ(tok.unk_id(), 633);
  EXPECT_EQ(tok.pad_id(), 633);  // pad_token "<|endoftext|>"
  EXPECT_EQ(tok.vocab_size(), 634);
  EXPECT_EQ(tok.model_max_length(), 77);
  EXPECT_STREQ(unicode_tables_version(), "14.0.0");
}

TEST(ClipTokenizer, GoldenCases) {
  const ClipTokenizer& tok = golden_tokenizer();
  const nlohmann::json cases = golden_cases();
  ASSERT_GE(cases["texts"].size(), 11u);
  for (const auto& c : cases["texts"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::string text = c["text"];
    const auto want_ids = c["input_ids"].get<std::vector<int32_t>>();
    const auto want_tokens = c["tokens"].get<Strings>();  // with <|startoftext|>/<|endoftext|>
    bool truncated = true;
    EXPECT_EQ(tok.encode(text, 77, &truncated), want_ids);
    ASSERT_GE(want_tokens.size(), 2u);
    ASSERT_EQ(want_tokens.size(), want_ids.size());
    for (size_t i = 0; i < want_tokens.size(); ++i) {
      EXPECT_EQ(tok.token_to_id(want_tokens[i]), want_ids[i]) << want_tokens[i];
    }
    const Strings want_inner(want_tokens.begin() + 1, want_tokens.end() - 1);
    Strings got = tok.tokens(text);
    EXPECT_EQ(truncated, got.size() > 75);
    if (truncated) got.resize(75);
    EXPECT_EQ(got, want_inner);
  }
}

TEST(ClipTokenizer, TruncationKeepsTheEndToken) {
  const ClipTokenizer& tok = golden_tokenizer();
  std::string text;
  for (int i = 0; i < 40; ++i) text += "a big green triangle ";
  const Strings all = tok.tokens(text);
  ASSERT_GT(all.size(), 75u);
  bool truncated = false;
  const std::vector<int32_t> ids = tok.encode(text, 77, &truncated);
  EXPECT_TRUE(truncated);
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids.front(), 632);
  EXPECT_EQ(ids.back(), 633);
  for (size_t i = 0; i < 75; ++i) EXPECT_EQ(ids[i + 1], tok.token_to_id(all[i]));

  const std::vector<int32_t> short_ids = tok.encode(text, 5, &truncated);
  EXPECT_TRUE(truncated);
  EXPECT_EQ(short_ids, (std::vector<int32_t>{632, ids[1], ids[2], ids[3], 633}));
  EXPECT_EQ(tok.encode(text, 2, &truncated), (std::vector<int32_t>{632, 633}));
  EXPECT_TRUE(truncated);
  // Exactly 75 tokens fit.
  const Strings three = tok.tokens("a b c");
  ASSERT_EQ(three.size(), 3u);
  EXPECT_EQ(tok.encode("a b c", 5, &truncated).size(), 5u);
  EXPECT_FALSE(truncated);
  EXPECT_THROW(tok.encode("a", 1), Error);
}

TEST(ClipTokenizer, EmptyAndWhitespaceOnly) {
  const ClipTokenizer& tok = golden_tokenizer();
  bool truncated = true;
  EXPECT_EQ(tok.encode("", 77, &truncated), (std::vector<int32_t>{632, 633}));
  EXPECT_FALSE(truncated);
  EXPECT_TRUE(tok.tokens("").empty());
  EXPECT_EQ(tok.encode(" \t\n\r \u3000\u00a0 "), (std::vector<int32_t>{632, 633}));
}

TEST(ClipTokenizer, WhitespaceIsNormalised) {
  const Strings want = toks("a drawing of a square");
  EXPECT_EQ(toks("  a   drawing\t\tof\n\na\r\nsquare  "), want);
  EXPECT_EQ(toks("a\u00a0drawing\u3000of\u2002a\u2028square"), want);  // Zs, Zl
  EXPECT_EQ(toks("a drawing of a square"),
            concat({toks("a"), toks("drawing"), toks("of"), toks("a"), toks("square")}));
}

TEST(ClipTokenizer, ControlCharactersAreDropped) {
  // Cc (except \t \n \r, which are whitespace), Cf, U+0000 and U+FFFD vanish: no space left.
  EXPECT_EQ(toks(std::string("sq\0uare", 7)), toks("square"));
  EXPECT_EQ(toks("sq\x0buare"), toks("square"));          // vertical tab is Cc, not whitespace
  EXPECT_EQ(toks("sq\u200buare"), toks("square"));        // zero-width space, Cf
  EXPECT_EQ(toks("sq\u00adua\ufffdre"), toks("square"));  // soft hyphen (Cf), U+FFFD
  EXPECT_EQ(toks("sq\ue000uare"), toks("square"));        // private use, Co
}

TEST(ClipTokenizer, Apostrophes) {
  // The contractions are pre-tokens of their own, even mid-word; other apostrophes join the
  // punctuation run.
  EXPECT_EQ(toks("we're"), (Strings{"w", "e</w>", "'", "re</w>"}));  // golden "contractions"
  EXPECT_EQ(toks("WE'RE"), toks("we're"));
  EXPECT_EQ(toks("don't"), concat({toks("don"), toks("'t")}));
  EXPECT_EQ(toks("it's"), concat({toks("it"), toks("'s")}));
  EXPECT_EQ(toks("i'm you've we'll he'd"),
            concat({toks("i"), toks("'m"), toks("you"), toks("'ve"), toks("we"), toks("'ll"),
                    toks("he"), toks("'d")}));
  EXPECT_EQ(toks("'s"), (Strings{"'", "s</w>"}));
  EXPECT_EQ(toks("'x"), (Strings{"'</w>", "x</w>"}));        // "'" is a run of its own
  EXPECT_EQ(toks("''s"), (Strings{"'", "'</w>", "s</w>"}));  // pre-tokens "''", "s"
  EXPECT_EQ(toks("'sx"), (Strings{"'", "s</w>", "x</w>"}));
  // Case-insensitively 's also matches "'ſ" (U+017F folds to s): one pre-token.
  EXPECT_EQ(toks("'\u017f").front(), "'");
}

TEST(ClipTokenizer, DigitsAreSplitOnePerToken) {
  EXPECT_EQ(toks("2024"), (Strings{"2</w>", "0</w>", "2</w>", "4</w>"}));
  EXPECT_EQ(toks("x2y"), (Strings{"x</w>", "2</w>", "y</w>"}));
  EXPECT_EQ(toks("10.5"), (Strings{"1</w>", "0</w>", ".</w>", "5</w>"}));
  // Other \p{N}: Arabic-Indic digits (Nd), Roman numeral (Nl), superscript two (No).
  EXPECT_EQ(toks("\u0661\u0662"), concat({toks("\u0661"), toks("\u0662")}));
  EXPECT_EQ(toks("x\u00b2"), concat({toks("x"), toks("\u00b2")}));
}

TEST(ClipTokenizer, SpecialTokensInText) {
  const ClipTokenizer& tok = golden_tokenizer();
  EXPECT_EQ(toks("a<|endoftext|>b"), (Strings{"a</w>", "<|endoftext|>", "b</w>"}));
  EXPECT_EQ(tok.encode("<|startoftext|>x"), (std::vector<int32_t>{632, 632, 343, 633}));
  // Not the exact string: lower-cased, then the regex's special alternative and bpe's cache.
  EXPECT_EQ(toks("a <|EndOfText|>"), (Strings{"a</w>", "<|endoftext|>"}));
}

TEST(ClipTokenizer, LowerCaseAndUnicode) {
  EXPECT_EQ(toks("CRÈME Brûlée"), toks("crème brûlée"));
  EXPECT_EQ(toks("ПРИВЕТ Мир"), toks("привет мир"));
  EXPECT_EQ(toks("ΟΔΟΣ ΣΑ"), toks("οδος σα"));  // Final_Sigma
  EXPECT_EQ(toks("\u0130"), toks("i\u0307"));   // İ lowers to two code points
  // NFC: decomposed accents, Angstrom sign, Greek question mark (-> ';').
  EXPECT_EQ(toks("cre\u0300me"), toks("crème"));
  EXPECT_EQ(toks("\u212b"), toks("å"));
  EXPECT_EQ(toks("a\u037e"), toks("a;"));
  // CJK ideographs become words; kana do not.
  EXPECT_EQ(toks("小狗"), toks("小 狗"));
  EXPECT_NE(toks("ひら"), toks("ひ ら"));
  // U+0345 matches no alternative of the case-insensitive regex: skipped.
  EXPECT_EQ(toks("x\u0345y"), toks("x y"));
}

TEST(ClipTokenizer, InvalidUtf8IsDropped) {
  // Invalid bytes decode to lone surrogates (model/utf8.h), category Cs: dropped like control
  // characters. Never a crash, never an id of their own.
  EXPECT_EQ(toks("sq\xffuare"), toks("square"));
  EXPECT_EQ(toks("square\xc3"), toks("square"));          // truncated sequence at the end
  EXPECT_EQ(toks("sq\xe2\x82uare"), toks("square"));      // truncated in the middle
  EXPECT_EQ(toks("sq\xc0\xafuare"), toks("square"));      // overlong '/'
  EXPECT_EQ(toks("sq\xed\xa0\x80uare"), toks("square"));  // encoded surrogate
  EXPECT_EQ(toks("\x80\x80\x80"), Strings{});
  EXPECT_EQ(golden_tokenizer().encode("\xfe\xff"), (std::vector<int32_t>{632, 633}));
}

TEST(ClipTokenizer, UnicodeTables) {
  EXPECT_EQ(unicode_category(U'a'), UnicodeCategory::kLetter);
  EXPECT_EQ(unicode_category(0x4E00), UnicodeCategory::kLetter);
  EXPECT_EQ(unicode_category(U'7'), UnicodeCategory::kNumber);
  EXPECT_EQ(unicode_category(0x2164), UnicodeCategory::kNumber);  // Roman numeral five
  EXPECT_EQ(unicode_category(0x7F), UnicodeCategory::kControl);
  EXPECT_EQ(unicode_category(0xDC80), UnicodeCategory::kControl);
  EXPECT_EQ(unicode_category(0x10FFFF), UnicodeCategory::kControl);  // unassigned
  EXPECT_EQ(unicode_category(0x3000), UnicodeCategory::kSpaceSeparator);
  EXPECT_EQ(unicode_category(U'!'), UnicodeCategory::kOther);
  EXPECT_EQ(unicode_category(0x301), UnicodeCategory::kOther);  // Mn
  EXPECT_EQ(canonical_combining_class(0x301), 230);
  EXPECT_EQ(py_lower(U"ÀÉÎ ŸĀŁ ǅ ΑΣ ΣΑ Σ ЁЯ ԀＡ𐐀"), U"àéî ÿāł ǆ ας σα σ ёя ԁａ𐐨");
  EXPECT_EQ(nfc_normalize(U"e\u0301 \u1100\u1161\u11a8 a\u0328\u0301 \u0344"),
            U"é \uac01 \u0105\u0301 \u0308\u0301");
}

TEST(ClipTokenizer, FileErrors) {
  {
    TempModel m;
    fs::remove(m.dir / "vocab.json");
    expect_load_error(m, {"vocab.json", "missing"});
  }
  {
    TempModel m;
    m.write("vocab.json", "{\"a\": 0, ");
    expect_load_error(m, {"vocab.json", "invalid JSON"});
  }
  {
    TempModel m;
    m.write("vocab.json", "[1, 2]");
    expect_load_error(m, {"vocab.json", "not a JSON object"});
  }
  {
    TempModel m;
    m.write("vocab.json", "{\"a\": \"zero\"}");
    expect_load_error(m, {"vocab.json", "'a'", "integer id"});
  }
  {
    TempModel m;
    fs::remove(m.dir / "merges.txt");
    expect_load_error(m, {"merges.txt", "missing"});
  }
  {
    TempModel m;
    m.write("merges.txt", m.read("merges.txt") + "q zzz\n");
    expect_load_error(m, {"merges.txt", "line 122", "\"zzz\"", "not in"});
  }
  {
    TempModel m;
    m.write("merges.txt", "#version: 0.2\ni n g\n");
    expect_load_error(m, {"merges.txt", "line 2", "two symbols"});
  }
  {
    TempModel m;
    m.write("tokenizer_config.json", "{\"pad_token\": 5}");
    expect_load_error(m, {"tokenizer_config.json", "pad_token"});
  }
}

TEST(ClipTokenizer, ConfiguredPadAndMissingSpecials) {
  TempModel m;
  m.write("special_tokens_map.json", "{\"pad_token\": \"!\"}");
  const auto tok = ClipTokenizer::load(m.dir.string());
  EXPECT_EQ(tok->pad_id(), 0);
  EXPECT_EQ(tok->eos_id(), 633);

  // No config files at all: CLIPTokenizer's defaults.
  fs::remove(m.dir / "special_tokens_map.json");
  fs::remove(m.dir / "tokenizer_config.json");
  const auto plain = ClipTokenizer::load(m.dir.string());
  EXPECT_EQ(plain->pad_id(), 633);
  EXPECT_EQ(plain->encode("x"), (std::vector<int32_t>{632, 343, 633}));

  // A pad token the vocab lacks is added after it.
  m.write("tokenizer_config.json", "{\"pad_token\": {\"content\": \"<pad>\"}}");
  const auto added = ClipTokenizer::load(m.dir.string());
  EXPECT_EQ(added->pad_id(), 634);
  EXPECT_EQ(added->vocab_size(), 634);
  EXPECT_EQ(added->tokens("x<pad>"), (Strings{"x</w>", "<pad>"}));
}

TEST(ClipTokenizer, FirstMergesLineIsAlwaysTheHeader) {
  // transformers skips line 1 of merges.txt whatever it holds: without a "#version" header
  // the first merge is lost.
  TempModel m;
  const std::string merges = m.read("merges.txt");
  ASSERT_EQ(merges.rfind("#version", 0), 0u);
  const std::string body = merges.substr(merges.find('\n') + 1);  // starts "i n\n"
  m.write("merges.txt", body);
  const auto tok = ClipTokenizer::load(m.dir.string());
  EXPECT_EQ(tok->tokens("ing"), (Strings{"i", "n", "g</w>"}));
  EXPECT_EQ(golden_tokenizer().tokens("ing"), (Strings{"ing</w>"}));
}

}  // namespace
}  // namespace flamingo
