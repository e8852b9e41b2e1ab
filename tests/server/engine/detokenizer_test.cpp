// Detokenizer: on random token sequences of the golden tokenizer and of variants (clean-up
// spaces on, legacy=false, a non-special added token), the text after every token is a prefix
// of Tokenizer::decode of the tokens so far, the deltas rebuild it, and finish() ends exactly
// at the whole decode; through TextStream the streamed text equals that decode too. A
// 4,000-token output costs O(n) decoding: the tokens passed to decode are counted (the
// clean-up variant's whole decodes are its documented O(n^2) limitation, not checked here).
#include "server/engine/detokenizer.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "model/tokenizer.h"
#include "server/engine/text_stream.h"
#include "tests/model/spm_oracle.h"

namespace flamingo {
namespace {

const std::string kModelDir = std::string(FLAMINGO_GOLDEN_DIR) + "/model";

std::string apply(std::string text, const Detokenizer::Delta& d) {
  EXPECT_LE(d.keep, text.size());
  text.resize(d.keep);
  return text + d.append;
}

// Feeds `ids` one by one, checking the invariants; returns the streamed text. The text after
// each token is a prefix of the decode so far, except that a tokenizer with clean-up rules
// may still rewrite its tail (`exact_prefix` false); the streamed text, which holds such
// tails back, is always a prefix of the final decode.
std::string run(const Tokenizer& tok, const std::vector<int32_t>& ids, const std::string& label,
                bool exact_prefix = true) {
  Detokenizer detok(tok, detokenizer_anchor(tok));
  TextStream stream({});
  std::string rebuilt, streamed;
  for (size_t i = 0; i < ids.size(); ++i) {
    const Detokenizer::Delta d = detok.add(ids[i]);
    rebuilt = apply(rebuilt, d);
    streamed += stream.update(d.keep, d.append).delta;
    EXPECT_EQ(rebuilt, detok.text()) << label << " token " << i;
    const std::string want = tok.decode(std::span(ids).first(i + 1), true);
    if (exact_prefix) {
      EXPECT_TRUE(want.starts_with(detok.text()))
          << label << " token " << i << ": '" << detok.text() << "' vs '" << want << "'";
    }
    EXPECT_TRUE(tok.decode(ids, true).starts_with(streamed))
        << label << " token " << i << ": streamed '" << streamed << "' vs '" << want << "'";
  }
  const Detokenizer::Delta d = detok.finish();
  rebuilt = apply(rebuilt, d);
  streamed += stream.update(d.keep, d.append).delta;
  streamed += stream.finish();
  const std::string want = tok.decode(ids, true);
  EXPECT_EQ(detok.text(), want) << label;
  EXPECT_EQ(rebuilt, want) << label;
  return streamed;
}

void check_random_sequences(const Tokenizer& tok, const std::string& name, bool exact_prefix) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> any(0, tok.size() - 1);
  std::uniform_int_distribution<int32_t> len(1, 40);
  for (int s = 0; s < 300; ++s) {
    std::vector<int32_t> ids(len(rng));
    for (int32_t& id : ids) id = any(rng);
    const std::string label = name + " sequence " + std::to_string(s);
    EXPECT_EQ(run(tok, ids, label, exact_prefix), tok.decode(ids, true)) << label;
  }
}

// Ids of text that the tokenizer's clean-up rules and byte fallback act on.
std::vector<int32_t> tricky_ids(const Tokenizer& tok) {
  std::vector<int32_t> ids;
  for (const char* t : {"It is cold , is it ? I don 't know .", " n't 's 're 've 'm", "日本語 ü é",
                        " ' quoted ' ! ?"}) {
    const std::vector<int32_t> e = tok.encode(t);
    ids.insert(ids.end(), e.begin(), e.end());
  }
  return ids;
}

TEST(DetokenizerTest, RandomSequencesOfTheGoldenTokenizer) {
  const auto tok = Tokenizer::load(kModelDir);
  check_random_sequences(*tok, "golden", true);
  const std::vector<int32_t> ids = tricky_ids(*tok);
  EXPECT_EQ(run(*tok, ids, "tricky"), tok->decode(ids, true));
}

TEST(DetokenizerTest, CleanUpSpacesLegacyFalseAndAddedTokenVariants) {
  using testing::make_tokenizer_variant;
  const std::vector<std::string> dirs = {
      make_tokenizer_variant(
          kModelDir, "detok_cleanup",
          [](auto& config, auto&, auto&) { config["clean_up_tokenization_spaces"] = true; }),
      make_tokenizer_variant(kModelDir, "detok_legacy_false",
                             [](auto& config, auto&, auto&) { config["legacy"] = false; }),
      make_tokenizer_variant(kModelDir, "detok_added", [](auto& config, auto&, auto&) {
        config["added_tokens_decoder"]["402"] = {{"content", "<note>"},  {"lstrip", false},
                                                 {"normalized", false},  {"rstrip", false},
                                                 {"single_word", false}, {"special", false}};
      })};
  for (size_t v = 0; v < dirs.size(); ++v) {
    const auto tok = Tokenizer::load(dirs[v]);
    check_random_sequences(*tok, dirs[v], v != 0);
    std::vector<int32_t> ids = tricky_ids(*tok);
    if (tok->size() > 402) ids.insert(ids.begin() + 5, 402);
    EXPECT_EQ(run(*tok, ids, dirs[v] + " tricky", v != 0), tok->decode(ids, true)) << dirs[v];
  }
}

TEST(DetokenizerTest, LongOutputCostsLinearDecodingWork) {
  const auto tok = Tokenizer::load(kModelDir);
  const std::vector<int32_t> sentence = tok->encode(" The cat sat on the mat, and it was happy.");
  std::vector<int32_t> ids;
  while (ids.size() < 4000) ids.insert(ids.end(), sentence.begin(), sentence.end());
  ids.resize(4000);
  Detokenizer detok(*tok, detokenizer_anchor(*tok));
  for (int32_t id : ids) detok.add(id);
  const int64_t per_token = detok.decoded_tokens() / 4000;
  detok.finish();
  EXPECT_EQ(detok.text(), tok->decode(ids, true));
  // Each token: a window of itself and one token of context, decoded with and without it.
  EXPECT_LE(per_token, 4);
  EXPECT_LE(detok.decoded_tokens(), 5 * 4000);  // + one whole decode at the end
}

TEST(DetokenizerTest, SpecialTokensAreSkippedLikeDecodeSkipsThem) {
  const auto tok = Tokenizer::load(kModelDir);
  std::vector<int32_t> ids = tok->encode("Hello world");
  ids.insert(ids.begin() + 1, tok->eos_id());
  ids.push_back(401);  // <image>
  ids.push_back(tok->bos_id());
  const std::vector<int32_t> more = tok->encode(" again");
  ids.insert(ids.end(), more.begin(), more.end());
  EXPECT_EQ(run(*tok, ids, "specials"), tok->decode(ids, true));
}

}  // namespace
}  // namespace flamingo
