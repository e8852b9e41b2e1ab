// RequestBuilder::build_score (server/request_builder.h) with the golden tokenizer: sequences
// and first_new against the Score candidate rule re-derived here, the CLI's form without
// candidates, and every error naming the field, the limit's flag and the value.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/request_builder.h"
#include "tests/server/request_builder_test_util.h"

namespace flamingo {
namespace {

using namespace flamingo::testing;

// The Score candidate rule, re-derived: candidate appended to the last text item (or a new text
// item after a trailing image); its tokens start where it first differs from the prompt.
struct Expected {
  std::vector<int32_t> ids;
  int32_t first_new;
};
Expected score_rule(const Tokenizer& tok, std::vector<PromptItem> items, const std::string& cand) {
  const std::vector<int32_t> base = build_idefics_prompt(tok, items).token_ids;
  if (!items.empty() && items.back().kind == PromptItem::Kind::kText) {
    items.back().text += cand;
  } else {
    items.push_back(PromptItem::make_text(cand));
  }
  Expected e{build_idefics_prompt(tok, items).token_ids, 0};
  const auto diff = std::mismatch(e.ids.begin(), e.ids.end(), base.begin(), base.end());
  e.first_new = std::max<int32_t>(static_cast<int32_t>(diff.first - e.ids.begin()), 1);
  return e;
}

TEST_F(RequestBuilderTest, ScoreSequencesAndFirstNew) {
  v1::ScoreRequest r;
  add_image(r, cat());
  add_text(r, "This animal is a");
  r.add_candidates(" cat");
  r.add_candidates(" dog");
  r.add_candidates("lso");
  const ScoreJob job = builder().build_score(r);
  const std::vector<PromptItem> items = {P::make_image(), P::make_text("This animal is a")};
  const TokenizedPrompt base = build_idefics_prompt(*tok_, items);
  ASSERT_EQ(job.sequences.size(), 4u);
  ASSERT_EQ(job.first_new.size(), 3u);
  ASSERT_EQ(job.image_of_token.size(), 4u);
  EXPECT_EQ(job.sequences[0], base.token_ids);
  EXPECT_EQ(job.image_of_token[0], base.image_of_token);
  const char* cands[] = {" cat", " dog", "lso"};
  for (int c = 0; c < 3; ++c) {
    const Expected e = score_rule(*tok_, items, cands[c]);
    EXPECT_EQ(job.sequences[c + 1], e.ids) << cands[c];
    EXPECT_EQ(job.first_new[c], e.first_new) << cands[c];
    EXPECT_EQ(job.image_of_token[c + 1].size(), e.ids.size());
  }
  // " cat" leaves the prompt's tokens intact: its own tokens start right after them.
  EXPECT_EQ(job.first_new[0], static_cast<int32_t>(base.token_ids.size()));
  ASSERT_EQ(job.images.size(), 1u);
  EXPECT_EQ(job.images[0].key, expected_image(cat()).key);

  // A candidate that merges with the prompt's last token ("▁t" + "he" -> "▁the" in this
  // vocabulary): its own tokens start at the changed token, inside the prompt.
  v1::ScoreRequest r3;
  add_text(r3, "This animal is t");
  r3.add_candidates("he");
  const ScoreJob j3 = builder().build_score(r3);
  const Expected e3 = score_rule(*tok_, {P::make_text("This animal is t")}, "he");
  EXPECT_EQ(j3.sequences[1], e3.ids);
  EXPECT_EQ(j3.first_new[0], static_cast<int32_t>(j3.sequences[0].size()) - 1);
  EXPECT_EQ(j3.sequences[1].size(), j3.sequences[0].size());
  EXPECT_EQ(tok_->id_to_piece(j3.sequences[1].back()), "\u2581the");

  // Trailing image: the candidate becomes a new text item after it.
  v1::ScoreRequest r2;
  add_text(r2, "Look:");
  add_image(r2, leaf());
  r2.add_candidates("green");
  const ScoreJob j2 = builder().build_score(r2);
  const std::vector<int32_t> want =
      ids({P::make_text("Look:"), P::make_image(), P::make_text("green")});
  EXPECT_EQ(j2.sequences[1], want);
  EXPECT_EQ(j2.first_new[0], static_cast<int32_t>(j2.sequences[0].size()));
}

TEST_F(RequestBuilderTest, ScoreWithoutCandidatesWhenNotRequired) {
  const RequestBuilder b(*tok_, *image_config_, {}, context(), config_->total_vocab(),
                         PromptTemplates::idefics());
  ScoreInput in;
  in.prompt = {PromptPart::of_text("Answer:")};
  EXPECT_THROW(b.build_score(in), InvalidRequest);  // the gRPC rule: candidates required
  in.candidates_required = false;
  in.prompt_logprobs = true;
  const ScoreJob job = b.build_score(in);
  EXPECT_TRUE(job.prompt_logprobs);
  ASSERT_EQ(job.sequences.size(), 1u);
  EXPECT_EQ(job.sequences[0], ids({P::make_text("Answer:")}));
  EXPECT_TRUE(job.first_new.empty());
}

TEST_F(RequestBuilderTest, ScoreErrors) {
  const ProtoBuilder b = builder();
  v1::ScoreRequest r;
  r.add_candidates("x");
  expect_invalid([&] { b.build_score(r); }, "prompt", {"empty"});
  add_text(r, "Answer:");
  r.clear_candidates();
  expect_invalid([&] { b.build_score(r); }, "candidates", {"empty"});
  r.add_candidates("yes");
  r.add_candidates("");
  expect_invalid([&] { b.build_score(r); }, "candidates[1]", {"empty"});
  r.set_candidates(1, "   ");  // spaces only: stripped by the layout, adds nothing
  expect_invalid([&] { b.build_score(r); }, "candidates[1]", {"'   '", "adds no tokens"});
  r.set_candidates(1, "no");
  EXPECT_NO_THROW(b.build_score(r));

  ServerLimits limits;
  limits.max_candidates = 2;
  r.add_candidates("maybe");
  expect_invalid([&] { builder(limits).build_score(r); }, "candidates",
                 {"3 candidates", "limit 2", "--max-candidates"});
  limits = {};
  limits.max_text_bytes = 12;  // "Answer:" 7 + "yes" 3 + "no" 2 + "maybe" 5 = 17
  expect_invalid([&] { builder(limits).build_score(r); }, "prompt + candidates",
                 {"17", "12", "--max-text-bytes"});

  // A candidate whose sequence no longer fits in the context.
  const int64_t n = static_cast<int64_t>(ids({P::make_text("Answer:")}).size());
  v1::ScoreRequest r2;
  add_text(r2, "Answer:");
  r2.add_candidates(" yes");
  r2.add_candidates(" a much longer candidate answer than the other one");
  const int64_t n1 =
      static_cast<int64_t>(score_rule(*tok_, {P::make_text("Answer:")}, " yes").ids.size());
  ASSERT_GT(n1, n);
  expect_invalid([&] { builder({}, n1).build_score(r2); }, "candidates[1]",
                 {std::to_string(n1), "context length"});

  v1::ScoreRequest r3;
  add_image(r3, "junk bytes");
  r3.add_candidates("x");
  expect_invalid([&] { b.build_score(r3); }, "prompt[0].image.data", {"unknown image format"});
}

}  // namespace
}  // namespace flamingo
