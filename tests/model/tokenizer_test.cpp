// Tests for model/tokenizer.{h,cpp}.
// Oracles: (1) the golden set, computed by HF transformers v4.44.2 itself (input ids, pieces,
// decoded text); (2) tests/model/spm_oracle.py, an independent Python rendition of HF's slow
// LlamaTokenizer over python3-sentencepiece, for inputs the golden set does not cover.
// All comparisons are exact (ids and strings); there is no tolerance.
#include "model/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "model/error.h"
#include "tests/common/golden_cases.h"
#include "tests/model/spm_oracle.h"

namespace flamingo {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
namespace fs = std::filesystem;
namespace ft = flamingo::testing;

const std::string kGolden = FLAMINGO_GOLDEN_DIR;
const std::string kModelDir = kGolden + "/model";

// Texts that stress sentencepiece and HF's splitting: spaces, newlines, tabs, non-ASCII
// (byte fallback), digits, empty strings, special-token strings typed as text, "▁".
const std::vector<std::string> kTrickyTexts = {
    "",
    " ",
    "   ",
    "hello",
    " hello",
    "hello ",
    "  multiple   spaces  inside  ",
    "\n",
    "\n\nx\n",
    "tab\there\t",
    "\t",
    "\xC3\xA9",  // é
    "caf\xC3\xA9 21\xC2\xB0"
    "C",                                     // café 21°C
    "emoji \xF0\x9F\x98\x80!",               // 😀
    "\xE4\xB8\xAD\xE6\x96\x87\xE5\xAD\x97",  // 中文字
    "12345 67 8",
    "User: Will it rain this afternoon?\nAssistant:",
    "<image>",
    "a<image>b",
    " <image> ",
    "</s>",
    "x</s>y",
    "<s>User:",
    "<s><image>",
    "Look <fake_token_around_image><image><fake_token_around_image>The cat",
    "<image><image>",
    "<image>\nAnswer:",
    "<unk>",
    "<0x41>",
    "<<image>>",
    "</s</s>",
    "<imag",
    "<image",
    "\xE2\x96\x81lead",  // ▁lead
    "a\xE2\x96\x81"
    "b",             // a▁b
    "\xE2\x96\x81",  // ▁
    "The weather outside is cold and cloudy.",
};

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

// Id sequences for decode: golden prompts, hand-picked byte-fallback runs, random sequences.
std::vector<std::vector<int32_t>> decode_inputs(int32_t size) {
  std::vector<std::vector<int32_t>> out = {
      {},
      {1},
      {1, 2},
      {349},
      {349, 88},
      {197, 179},  // "°" as two byte pieces
      {197},       // a lone UTF-8 lead byte
      {179, 197},  // bytes in the wrong order
      {400, 401, 400},
      {1, 400, 401, 400, 326, 358},
      {2, 1, 2},
      {0},
      {0, 349, 88, 353},
      {1, 349, 1, 349},
      {13, 13, 400, 13},
      {349, 400, 349, 401, 349},
      {3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x80},  // 😀 via byte fallback
      {3 + 0xF0, 3 + 0x9F, 3 + 0x98},            // truncated 😀
  };
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> any_id(0, size - 1);
  std::uniform_int_distribution<int32_t> len(1, 24);
  for (int r = 0; r < 60; ++r) {
    std::vector<int32_t> ids(len(rng));
    for (int32_t& id : ids) id = any_id(rng);
    out.push_back(std::move(ids));
  }
  // Keep only sequences that exist in this tokenizer (a bare folder has no ids 400/401).
  std::erase_if(out, [size](const std::vector<int32_t>& ids) {
    return std::any_of(ids.begin(), ids.end(), [size](int32_t id) { return id >= size; });
  });
  return out;
}

// Compares encode / encode_with_special_tokens / decode / info against the oracle.
void expect_matches_oracle(const std::string& model_dir, const std::string& label,
                           const std::vector<std::string>& extra_texts = {}) {
  const auto tok = Tokenizer::load(model_dir);
  std::vector<std::string> texts = kTrickyTexts;
  texts.insert(texts.end(), extra_texts.begin(), extra_texts.end());
  json request;
  request["model_dir"] = model_dir;
  request["encode"] = texts;
  request["encode_special"] = texts;
  const auto decodes = decode_inputs(tok->size());
  request["decode"] = json::array();
  for (const auto& ids : decodes) {
    request["decode"].push_back({{"ids", ids}, {"skip", false}});
    request["decode"].push_back({{"ids", ids}, {"skip", true}});
  }
  const json resp = ft::run_spm_oracle(request);

  const json& info = resp["info"];
  EXPECT_EQ(tok->legacy(), info["legacy"].get<bool>()) << label;
  EXPECT_EQ(tok->bos_id(), info["bos_id"].get<int32_t>()) << label;
  EXPECT_EQ(tok->eos_id(), info["eos_id"].get<int32_t>()) << label;
  EXPECT_EQ(tok->unk_id(), info["unk_id"].get<int32_t>()) << label;
  EXPECT_EQ(tok->pad_id(), info["pad_id"].get<int32_t>()) << label;
  EXPECT_EQ(tok->size(), info["max_id_plus_1"].get<int32_t>()) << label;
  EXPECT_EQ(tok->end_of_utterance_id().value_or(-1), info["eou_id"].get<int32_t>()) << label;
  std::vector<int32_t> special;
  for (int32_t id = 0; id < tok->size(); ++id) {
    if (tok->is_special(id)) special.push_back(id);
  }
  EXPECT_EQ(special, ids_of(info["all_special_ids"])) << label;

  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(tok->encode(texts[i]), ids_of(resp["encode"][i]))
        << label << " encode(\"" << texts[i] << "\")";
    EXPECT_EQ(tok->encode_with_special_tokens(texts[i]), ids_of(resp["encode_special"][i]))
        << label << " encode_with_special_tokens(\"" << texts[i] << "\")";
  }
  for (size_t i = 0; i < decodes.size(); ++i) {
    for (int skip = 0; skip < 2; ++skip) {
      std::string ids_text;
      for (int32_t id : decodes[i]) ids_text += std::to_string(id) + " ";
      EXPECT_EQ(tok->decode(decodes[i], skip == 1), resp["decode"][2 * i + skip].get<std::string>())
          << label << " decode([" << ids_text << "], skip_special_tokens=" << skip << ")";
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Golden folder (HF's own outputs).

TEST(TokenizerGolden, SpecialIdsFromTheFiles) {
  const auto tok = Tokenizer::load(kModelDir);
  // README: unk/bos/eos = 0/1/2, pad = <unk>, 400 pieces + 2 added tokens.
  EXPECT_EQ(tok->unk_id(), 0);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->pad_id(), 0);
  EXPECT_EQ(tok->sp_size(), 400);
  EXPECT_EQ(tok->size(), 402);
  EXPECT_TRUE(tok->legacy());  // no "legacy" key
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->token_to_id("<fake_token_around_image>"), 400);
  EXPECT_EQ(tok->token_to_id("<image>"), 401);
  EXPECT_EQ(tok->token_to_id("<0x0A>"), 13);
  EXPECT_EQ(tok->token_to_id("<s>"), 1);
  EXPECT_EQ(tok->token_to_id("no such piece"), std::nullopt);
  EXPECT_EQ(tok->id_to_piece(13), "<0x0A>");
  EXPECT_EQ(tok->id_to_piece(401), "<image>");
  EXPECT_FALSE(tok->end_of_utterance_id().has_value());
  for (int32_t id : {0, 1, 2, 400, 401}) EXPECT_TRUE(tok->is_special(id)) << id;
  for (int32_t id : {3, 13, 349, 399}) EXPECT_FALSE(tok->is_special(id)) << id;
  EXPECT_THROW(tok->id_to_piece(402), Error);
  EXPECT_THROW(tok->id_to_piece(-1), Error);
}

TEST(TokenizerGolden, PiecesAndDecodedTextMatchHf) {
  const auto tok = Tokenizer::load(kModelDir);
  for (const std::string& name : ft::golden_cases()) {
    const ordered_json inputs = ft::read_json(kGolden + "/cases/" + name + "/inputs.json");
    const auto ids = inputs["input_ids"].get<std::vector<int32_t>>();
    const auto pieces = inputs["tokens"].get<std::vector<std::string>>();
    ASSERT_EQ(ids.size(), pieces.size()) << name;
    for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(tok->id_to_piece(ids[i]), pieces[i]) << name;
    EXPECT_EQ(tok->decode(ids, false), inputs["decoded_text"].get<std::string>()) << name;
  }
}

TEST(TokenizerGolden, SpecialSplittingReproducesProcessorIds) {
  // The processor's full string for case 1 tokenized with special splitting gives its ids.
  const auto tok = Tokenizer::load(kModelDir);
  const ordered_json inputs =
      ft::read_json(kGolden + "/cases/case1_single_image_question/inputs.json");
  const std::string full =
      "<s>User:<fake_token_around_image><image><fake_token_around_image>"
      "Will it rain this afternoon?\nAssistant:";
  EXPECT_EQ(tok->encode_with_special_tokens(full), inputs["input_ids"].get<std::vector<int32_t>>());
  // Literal encode never yields the special ids.
  for (int32_t id : tok->encode(full)) {
    EXPECT_TRUE(id != 1 && id != 400 && id != 401) << id;
  }
}

TEST(TokenizerGolden, ReadmeExamples) {
  const auto tok = Tokenizer::load(kModelDir);
  // "User" -> ▁(349) <0x55>(88) s er ; "°" -> <0xC2>(197) <0xB0>(179); digits split.
  const auto user = tok->encode("User");
  ASSERT_GE(user.size(), 2u);
  EXPECT_EQ(user[0], 349);
  EXPECT_EQ(user[1], 88);
  const auto degree = tok->encode("\xC2\xB0");
  EXPECT_EQ(std::vector<int32_t>(degree.end() - 2, degree.end()), (std::vector<int32_t>{197, 179}));
  const auto digits = tok->encode("21");
  EXPECT_EQ(digits, (std::vector<int32_t>{349, *tok->token_to_id("2"), *tok->token_to_id("1")}));
}

TEST(TokenizerGolden, LiteralSpecialStringsStayText) {
  const auto tok = Tokenizer::load(kModelDir);
  for (const std::string text : {"<image>", "</s>", "a <image> b </s>", "<s>"}) {
    for (int32_t id : tok->encode(text)) {
      EXPECT_TRUE(id != 401 && id != 400 && id != 2 && id != 1) << text << " gave " << id;
    }
  }
  EXPECT_EQ(tok->encode_with_special_tokens("<image>"), (std::vector<int32_t>{401}));
  EXPECT_EQ(tok->encode_with_special_tokens("</s>"), (std::vector<int32_t>{2}));
  const auto split = tok->encode_with_special_tokens("a</s>b");
  EXPECT_EQ(std::count(split.begin(), split.end(), 2), 1);
}

TEST(TokenizerGolden, MatchesOracle) { expect_matches_oracle(kModelDir, "golden"); }

TEST(TokenizerGolden, ConcurrentEncodeDecode) {
  const auto tok = Tokenizer::load(kModelDir);
  std::vector<std::vector<int32_t>> expected;
  for (const std::string& t : kTrickyTexts) expected.push_back(tok->encode_with_special_tokens(t));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int rep = 0; rep < 20; ++rep) {
        for (size_t i = 0; i < kTrickyTexts.size(); ++i) {
          const auto ids = tok->encode_with_special_tokens(kTrickyTexts[i]);
          if (ids != expected[i]) ++mismatches;
          (void)tok->decode(ids, rep % 2 == 0);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ---------------------------------------------------------------------------------------------
// Variants of the golden folder.

TEST(TokenizerVariants, LegacyFalse) {
  const std::string dir = ft::make_tokenizer_variant(
      kModelDir, "legacy_false", [](auto& config, auto&, auto&) { config["legacy"] = false; });
  const auto tok = Tokenizer::load(dir);
  EXPECT_FALSE(tok->legacy());
  // README: with legacy=False "<s>User:" has no "▁" after <s> and text after an image token
  // has none either.
  const auto ids = tok->encode_with_special_tokens("<s>User:<image>Will");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 88);  // <0x55>
  const auto image_at = std::find(ids.begin(), ids.end(), 401);
  ASSERT_NE(image_at, ids.end());
  ASSERT_NE(image_at + 1, ids.end());
  EXPECT_NE(tok->id_to_piece(*(image_at + 1)).rfind("\xE2\x96\x81", 0), 0u);
  expect_matches_oracle(dir, "legacy_false");
}

TEST(TokenizerVariants, EndOfUtteranceInConfig) {
  const std::string dir =
      ft::make_tokenizer_variant(kModelDir, "eou_config", [](auto& config, auto&, auto&) {
        config["additional_special_tokens"].push_back("<end_of_utterance>");
      });
  const auto tok = Tokenizer::load(dir);
  // Not in added_tokens_decoder: HF's _add_tokens appends it at len(vocab) = 402.
  EXPECT_EQ(tok->end_of_utterance_id(), 402);
  EXPECT_EQ(tok->size(), 403);
  EXPECT_TRUE(tok->is_special(402));
  EXPECT_EQ(tok->encode_with_special_tokens("a<end_of_utterance>b").size(),
            tok->encode("a").size() + 1 + tok->encode("b").size());
  expect_matches_oracle(dir, "eou_config");
}

TEST(TokenizerVariants, EndOfUtteranceInLegacyFiles) {
  // No added_tokens_decoder: HF reads special_tokens_map.json and added_tokens.json.
  const std::string dir =
      ft::make_tokenizer_variant(kModelDir, "eou_files", [](auto& config, auto& map, auto& added) {
        config.erase("added_tokens_decoder");
        config.erase("additional_special_tokens");
        map["additional_special_tokens"].push_back("<end_of_utterance>");
        added["<end_of_utterance>"] = 402;
      });
  const auto tok = Tokenizer::load(dir);
  EXPECT_EQ(tok->end_of_utterance_id(), 402);
  EXPECT_EQ(tok->token_to_id("<image>"), 401);
  expect_matches_oracle(dir, "eou_files");
}

TEST(TokenizerVariants, EndOfUtteranceLegacyFalse) {
  const std::string dir =
      ft::make_tokenizer_variant(kModelDir, "eou_legacy_false", [](auto& config, auto&, auto&) {
        config["legacy"] = false;
        config["additional_special_tokens"].push_back("<end_of_utterance>");
      });
  expect_matches_oracle(dir, "eou_legacy_false");
}

TEST(TokenizerVariants, TrieOverlapsAndStripFlags) {
  // Overlapping added tokens (HF Trie docstring cases), lstrip/rstrip/single_word flags, a
  // non-special added token (decoded as its own space-separated piece), an eos given as an
  // AddedToken dict with rstrip.
  const std::string dir =
      ft::make_tokenizer_variant(kModelDir, "trie", [](auto& config, auto&, auto&) {
        auto& dec = config["added_tokens_decoder"];
        auto add = [&](int id, const std::string& content, bool lstrip, bool rstrip, bool sw) {
          dec[std::to_string(id)] = {{"content", content},  {"lstrip", lstrip},
                                     {"normalized", false}, {"rstrip", rstrip},
                                     {"single_word", sw},   {"special", false}};
        };
        add(402, "[CLS]", false, false, false);
        add(403, "extra_id_1", false, false, false);
        add(404, "extra_id_100", false, false, false);
        add(405, "blowing", false, false, false);
        add(406, "lower", false, false, false);
        add(407, "<L>", true, false, false);
        add(408, "<R>", false, true, false);
        add(409, "<W>", false, false, true);
        add(410, "ab", false, false, false);
        add(411, "b", false, false, false);
        add(412, "abcd", false, false, false);
        add(413, "xyz", false, false, false);  // with "y": HF's lookahead reads a stale
        add(414, "y", false, false, false);    // pointer ("xyxz" becomes one text piece)
        config["additional_special_tokens"].push_back("[CLS]");
        config["eos_token"] = {{"content", "</s>"},
                               {"lstrip", false},
                               {"normalized", false},
                               {"rstrip", true},
                               {"single_word", false}};
      });
  const auto tok = Tokenizer::load(dir);
  // HF Trie docstring: "[CLS] This is a extra_id_100" -> [CLS] | " This is a " | extra_id_100
  const auto ids = tok->encode_with_special_tokens("[CLS] This is a extra_id_100");
  EXPECT_EQ(ids.front(), 402);
  EXPECT_EQ(ids.back(), 404);
  // "blower": "lower" starts inside a partial "blowing" match.
  EXPECT_EQ(tok->encode_with_special_tokens("blower").back(), 406);
  // Earliest start, then the longest match from it: "abcd" beats "ab" and "b".
  EXPECT_EQ(tok->encode_with_special_tokens("abcd"), (std::vector<int32_t>{412}));
  // eos rstrip: spaces after </s> are eaten.
  EXPECT_EQ(tok->encode_with_special_tokens("</s>   x"), tok->encode_with_special_tokens("</s>x"));

  expect_matches_oracle(dir, "trie",
                        {"[CLS] This is a extra_id_100",
                         "extra_id_1extra_id_100 extra_id_10",
                         "blower",
                         "blowing lower blowe",
                         "a <L> b",
                         "a   <L>   b",
                         "a <R>   b",
                         "x<W>y",
                         "x <W> y",
                         "x<W> y",
                         "<W>",
                         "abcd",
                         "abc",
                         "abdc",
                         "xab b",
                         "a</s>  \n b",
                         "</s>\t\tz",
                         "[CLS]",
                         "[CLS][CLS]",
                         "[C[CLS]",
                         "b<R>",
                         "<L><R><W>",
                         "xyz",
                         "xyxz",
                         "axyxzb",
                         "xxyz",
                         "xyxyz",
                         "x y z"});
}

TEST(TokenizerVariants, OnlyTheSentencepieceModel) {
  // Without any JSON file, HF uses LlamaTokenizer's defaults: <s>, </s>, <unk>, no pad.
  const std::string dir =
      ft::make_tokenizer_variant(kModelDir, "bare", [](auto& config, auto& map, auto& added) {
        config = nullptr;
        map = nullptr;
        added = nullptr;
      });
  const auto tok = Tokenizer::load(dir);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->unk_id(), 0);
  EXPECT_EQ(tok->pad_id(), -1);
  EXPECT_EQ(tok->size(), 400);
  EXPECT_EQ(tok->token_to_id("<image>"), std::nullopt);
  expect_matches_oracle(dir, "bare");
}

TEST(TokenizerVariants, CleanUpTokenizationSpaces) {
  const std::string dir = ft::make_tokenizer_variant(
      kModelDir, "cleanup",
      [](auto& config, auto&, auto&) { config["clean_up_tokenization_spaces"] = true; });
  const auto tok = Tokenizer::load(dir);
  const std::string text = "it is cold , is it ? yes !";
  EXPECT_EQ(tok->decode(tok->encode(text), false), "it is cold, is it? yes!");
  expect_matches_oracle(dir, "cleanup");
}

// ---------------------------------------------------------------------------------------------
// Errors name the file and key.

TEST(TokenizerErrors, MissingModel) {
  const auto dir = ft::make_temp_dir("tok_missing");
  try {
    Tokenizer::load(dir.string());
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.model"), std::string::npos) << e.what();
  }
}

TEST(TokenizerErrors, BadJson) {
  const std::string dir =
      ft::make_tokenizer_variant(kModelDir, "badjson", [](auto&, auto&, auto&) {});
  {
    std::ofstream out(fs::path(dir) / "tokenizer_config.json");
    out << "{\"legacy\": tru";
  }
  try {
    Tokenizer::load(dir);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer_config.json"), std::string::npos) << e.what();
  }
}

TEST(TokenizerErrors, BadValues) {
  struct Case {
    const char* tag;
    ft::TokenizerEdit edit;
    const char* must_mention;
  };
  const std::vector<Case> cases = {
      {"legacy_type", [](auto& c, auto&, auto&) { c["legacy"] = "no"; }, "legacy"},
      {"bos_type", [](auto& c, auto&, auto&) { c["bos_token"] = 5; }, "bos_token"},
      {"added_id",
       [](auto& c, auto&, auto& a) {
         c.erase("added_tokens_decoder");
         a["<image>"] = "401";
       },
       "<image>"},
      {"decoder_key",
       [](auto& c, auto&, auto&) {
         c["added_tokens_decoder"]["x"] = {{"content", "y"}};
       },
       "added_tokens_decoder.x"},
  };
  for (const Case& c : cases) {
    const std::string dir = ft::make_tokenizer_variant(kModelDir, c.tag, c.edit);
    try {
      Tokenizer::load(dir);
      ADD_FAILURE() << c.tag << ": expected an Error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.must_mention), std::string::npos)
          << c.tag << ": " << e.what();
    }
  }
}

TEST(TokenizerErrors, DecodeOutOfRange) {
  const auto tok = Tokenizer::load(kModelDir);
  const std::vector<int32_t> bad = {1, 402};
  EXPECT_THROW(tok->decode(bad, false), Error);
  const std::vector<int32_t> negative = {-3};
  EXPECT_THROW(tok->decode(negative, true), Error);
}

// has_token: pieces 0..399 and the added tokens 400, 401; the message for an id without a token
// says what the tokenizer has (it used to claim a range that contained the id).
TEST(TokenizerErrors, IdsWithoutAToken) {
  const auto tok = Tokenizer::load(kModelDir);
  EXPECT_TRUE(tok->has_token(0));
  EXPECT_TRUE(tok->has_token(399));
  EXPECT_TRUE(tok->has_token(400));
  EXPECT_TRUE(tok->has_token(401));
  EXPECT_FALSE(tok->has_token(402));
  EXPECT_FALSE(tok->has_token(-1));
  try {
    tok->id_to_piece(693);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "tokenizer: token id 693 has no token: not a sentencepiece piece (ids 0..399) or an "
              "added token (ids 0..401, 5 of them)");
  }
}

}  // namespace
}  // namespace flamingo
