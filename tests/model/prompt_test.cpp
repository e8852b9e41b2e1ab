// Tests for model/prompt.{h,cpp}.
// Oracles: the golden set (IdeficsProcessor of transformers v4.44.2: input_ids.npy,
// image_attention_mask.npy, attention_mask.npy) and tests/model/spm_oracle.py, which builds the
// processor's full prompt STRING and tokenizes it with HF's special-token splitting, for
// tokenizer variants the golden set lacks (legacy=false, <end_of_utterance>). Exact comparisons.
#include "model/prompt.h"

#include <gtest/gtest.h>

#include "model/error.h"
#include "tests/common/golden_cases.h"
#include "tests/common/npy.h"
#include "tests/model/spm_oracle.h"

namespace flamingo {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
namespace ft = flamingo::testing;

const std::string kGolden = FLAMINGO_GOLDEN_DIR;
const std::string kModelDir = kGolden + "/model";

std::vector<PromptItem> items_from_json(const ordered_json& prompt) {
  std::vector<PromptItem> items;
  for (const auto& item : prompt) {
    if (item.contains("text")) {
      items.push_back(PromptItem::make_text(item["text"].get<std::string>()));
    } else {
      items.push_back(PromptItem::make_image());
    }
  }
  return items;
}

std::vector<int64_t> npy_int64(const ft::NpyArray& a) {
  const int64_t* p = a.as<int64_t>();
  return std::vector<int64_t>(p, p + a.numel());
}

// Row `b` of an image_attention_mask [B, L, N] (int64 one-hot or bool zeros) as image indices:
// -1 for an all-zero row, else the position of the single 1.
std::vector<int32_t> mask_row_to_images(const ft::NpyArray& mask, int64_t b) {
  const int64_t len = mask.shape[1];
  const int64_t n = mask.shape[2];
  std::vector<int32_t> out(len, -1);
  for (int64_t t = 0; t < len; ++t) {
    int ones = 0;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t at = (b * len + t) * n + k;
      const int64_t v = mask.dtype == "|b1" ? mask.as<uint8_t>()[at] : mask.as<int64_t>()[at];
      if (v != 0) {
        EXPECT_EQ(v, 1);
        out[t] = static_cast<int32_t>(k);
        ++ones;
      }
    }
    EXPECT_LE(ones, 1) << "token " << t << " attends to several images";
  }
  return out;
}

TEST(PromptGolden, EightCasesMatchProcessor) {
  const auto tok = Tokenizer::load(kModelDir);
  for (const std::string& name : ft::golden_cases()) {
    const std::string dir = kGolden + "/cases/" + name;
    const ordered_json prompt = ft::read_json(dir + "/prompt.json");
    const auto items = items_from_json(prompt["prompt"]);
    const TokenizedPrompt got = build_idefics_prompt(*tok, items);

    const ft::NpyArray ids = ft::load_npy(dir + "/input_ids.npy");
    ASSERT_EQ(ids.shape.size(), 2u) << name;
    const std::vector<int64_t> want = npy_int64(ids);
    EXPECT_EQ(std::vector<int64_t>(got.token_ids.begin(), got.token_ids.end()), want) << name;

    const ft::NpyArray mask = ft::load_npy(dir + "/image_attention_mask.npy");
    EXPECT_EQ(got.image_of_token, mask_row_to_images(mask, 0)) << name;

    int32_t images = 0;
    for (const auto& item : items) images += item.kind == PromptItem::Kind::kImage;
    EXPECT_EQ(got.num_images, images) << name;
    EXPECT_EQ(std::count(got.token_ids.begin(), got.token_ids.end(), 401), images) << name;
  }
}

TEST(PromptGolden, BatchRowsWithoutPadding) {
  const auto tok = Tokenizer::load(kModelDir);
  const std::string dir = kGolden + "/cases/batch_case1_case5";
  const ordered_json prompt = ft::read_json(dir + "/prompt.json");
  const ft::NpyArray ids = ft::load_npy(dir + "/input_ids.npy");
  const ft::NpyArray attention = ft::load_npy(dir + "/attention_mask.npy");
  const ft::NpyArray mask = ft::load_npy(dir + "/image_attention_mask.npy");
  ASSERT_EQ(ids.shape.size(), 2u);
  const int64_t len = ids.shape[1];
  ASSERT_EQ(static_cast<int64_t>(prompt["prompts"].size()), ids.shape[0]);
  for (int64_t b = 0; b < ids.shape[0]; ++b) {
    const TokenizedPrompt got = build_idefics_prompt(*tok, items_from_json(prompt["prompts"][b]));
    const std::vector<int32_t> mask_row = mask_row_to_images(mask, b);
    std::vector<int64_t> want_ids;
    std::vector<int32_t> want_images;
    for (int64_t t = 0; t < len; ++t) {
      if (attention.as<int64_t>()[b * len + t] == 0) {
        EXPECT_EQ(mask_row[t], -1) << "padding attends to an image";
        continue;
      }
      want_ids.push_back(ids.as<int64_t>()[b * len + t]);
      want_images.push_back(mask_row[t]);
    }
    EXPECT_EQ(std::vector<int64_t>(got.token_ids.begin(), got.token_ids.end()), want_ids) << b;
    EXPECT_EQ(got.image_of_token, want_images) << b;
  }
}

// Prompts for the oracle: consecutive text items, empty and whitespace-only items, image runs,
// an empty text between images, newlines and non-ASCII text. No special strings in text (HF
// would split them, we do not).
std::vector<std::vector<PromptItem>> oracle_prompts() {
  using P = PromptItem;
  std::vector<std::vector<PromptItem>> prompts = {
      {},
      {P::make_text("A")},
      {P::make_text("Hello"), P::make_text("world")},
      {P::make_text("A "), P::make_text(""), P::make_text(" B")},
      {P::make_image()},
      {P::make_image(), P::make_text(""), P::make_image()},
      {P::make_image(), P::make_image(), P::make_image()},
      {P::make_text("   "), P::make_image()},
      {P::make_text("x\n"), P::make_image(), P::make_text(" \ny ")},
      {P::make_text(""), P::make_image(), P::make_text("")},
      {P::make_text("  "), P::make_text(" a ")},
      {P::make_text("a"), P::make_image(), P::make_text("b"), P::make_text("c")},
      {P::make_text("User:"), P::make_image(), P::make_image(), P::make_text("")},
      {P::make_text("\xC3\xA9\xC2\xB0"), P::make_image(),
       P::make_text("\xF0\x9F\x98\x80 \xE4\xB8\xAD")},
      {P::make_text("\tTab"), P::make_text("\nline"), P::make_image(), P::make_text(" 12 34 ")},
      {P::make_text("User: what is this?"), P::make_image(), P::make_text("\nAssistant: a cat.\n"),
       P::make_text("User: and this?"), P::make_image(), P::make_text("Assistant:")},
      {P::make_text("\xE2\x96\x81"
                    "a"),
       P::make_image(), P::make_text("b\xE2\x96\x81")},
  };
  for (const std::string& name : ft::golden_cases()) {
    prompts.push_back(
        items_from_json(ft::read_json(kGolden + "/cases/" + name + "/prompt.json")["prompt"]));
  }
  return prompts;
}

void expect_prompts_match_oracle(const std::string& model_dir, const std::string& label) {
  const auto tok = Tokenizer::load(model_dir);
  const auto prompts = oracle_prompts();
  json request;
  request["model_dir"] = model_dir;
  request["prompts"] = json::array();
  for (const auto& items : prompts) {
    json p = json::array();
    for (const auto& item : items) {
      if (item.kind == PromptItem::Kind::kText) {
        p.push_back({{"text", item.text}});
      } else {
        p.push_back({{"image", 1}});
      }
    }
    request["prompts"].push_back(p);
  }
  const json resp = ft::run_spm_oracle(request);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const TokenizedPrompt got = build_idefics_prompt(*tok, prompts[i]);
    const auto want = resp["prompts"][i].get<std::vector<int32_t>>();
    EXPECT_EQ(got.token_ids, want) << label << " prompt " << i;
    EXPECT_EQ(got.image_of_token, assign_images(want, 401, tok->eos_id())) << label << " " << i;
  }
}

TEST(PromptOracle, Golden) { expect_prompts_match_oracle(kModelDir, "golden"); }

TEST(PromptOracle, LegacyFalse) {
  const std::string dir = ft::make_tokenizer_variant(
      kModelDir, "p_legacy_false", [](auto& config, auto&, auto&) { config["legacy"] = false; });
  expect_prompts_match_oracle(dir, "legacy_false");
  // README: with legacy=False, case 1 starts <s> <0x55> (no "▁" after <s>).
  const auto tok = Tokenizer::load(dir);
  const auto got = build_idefics_prompt(
      *tok, {PromptItem::make_text("User:"), PromptItem::make_image(), PromptItem::make_text("W")});
  ASSERT_GE(got.token_ids.size(), 2u);
  EXPECT_EQ(got.token_ids[0], 1);
  EXPECT_EQ(got.token_ids[1], 88);
}

TEST(PromptOracle, EndOfUtterance) {
  const std::string dir =
      ft::make_tokenizer_variant(kModelDir, "p_eou", [](auto& config, auto&, auto&) {
        config["additional_special_tokens"].push_back("<end_of_utterance>");
      });
  expect_prompts_match_oracle(dir, "eou");
  const auto tok = Tokenizer::load(dir);
  const int32_t eou = *tok->end_of_utterance_id();
  // Between consecutive text items only; an empty text item still counts as text.
  auto count_eou = [&](const std::vector<PromptItem>& items) {
    const auto ids = build_idefics_prompt(*tok, items).token_ids;
    return std::count(ids.begin(), ids.end(), eou);
  };
  using P = PromptItem;
  EXPECT_EQ(count_eou({P::make_text("a"), P::make_text("b")}), 1);
  EXPECT_EQ(count_eou({P::make_text("a"), P::make_image(), P::make_text("b")}), 0);
  EXPECT_EQ(count_eou({P::make_text("a"), P::make_text(""), P::make_text("b")}), 2);
  EXPECT_EQ(count_eou({P::make_image(), P::make_text("a")}), 0);
}

// A kToken item stands inside the text around it: the same ids as HF splitting the whole
// string with its trie (encode_with_special_tokens, checked against HF in tokenizer_test), no
// <end_of_utterance> inserted around it, spaces stripped at the ends of the whole only.
TEST(PromptOracle, TokenItemsJoinTheTextAroundThem) {
  const std::string dir =
      ft::make_tokenizer_variant(kModelDir, "p_eou_token", [](auto& config, auto&, auto&) {
        config["additional_special_tokens"].push_back("<end_of_utterance>");
      });
  const auto tok = Tokenizer::load(dir);
  const int32_t eou = *tok->end_of_utterance_id();
  using P = PromptItem;
  auto with_bos = [&](std::string_view text) {
    std::vector<int32_t> ids = {tok->bos_id()};
    for (int32_t id : tok->encode_with_special_tokens(text)) ids.push_back(id);
    return ids;
  };
  EXPECT_EQ(build_idefics_prompt(*tok, {P::make_text("  User: hi "), P::make_token(eou),
                                        P::make_text(" \nAssistant: ")})
                .token_ids,
            with_bos("User: hi <end_of_utterance> \nAssistant:"));
  EXPECT_EQ(build_idefics_prompt(*tok, {P::make_token(eou), P::make_token(eou), P::make_text("x")})
                .token_ids,
            with_bos("<end_of_utterance><end_of_utterance>x"));
  // Two text items without a token between them are still two items.
  const auto ids = build_idefics_prompt(*tok, {P::make_text("a"), P::make_token(eou),
                                               P::make_text("b"), P::make_text("c")})
                       .token_ids;
  EXPECT_EQ(std::count(ids.begin(), ids.end(), eou), 2);
  EXPECT_THROW(build_idefics_prompt(*tok, {P::make_text("a"), P::make_token(5)}), Error);
}

TEST(PromptOracle, EndOfUtteranceLegacyFiles) {
  const std::string dir = ft::make_tokenizer_variant(
      kModelDir, "p_eou_files", [](auto& config, auto& map, auto& added) {
        config.erase("added_tokens_decoder");
        config.erase("additional_special_tokens");
        config["legacy"] = false;
        map["additional_special_tokens"].push_back("<end_of_utterance>");
        added["<end_of_utterance>"] = 402;
      });
  expect_prompts_match_oracle(dir, "eou_files_legacy_false");
}

TEST(Prompt, ImageRunsAndSharing) {
  const auto tok = Tokenizer::load(kModelDir);
  using P = PromptItem;
  const auto two = build_idefics_prompt(*tok, {P::make_image(), P::make_image()});
  EXPECT_EQ(two.token_ids, (std::vector<int32_t>{1, 400, 401, 400, 401, 400}));
  EXPECT_EQ(two.image_of_token, (std::vector<int32_t>{-1, -1, 0, 0, 1, 1}));
  EXPECT_EQ(two.num_images, 2);
  // An empty text item between the images breaks the sharing (last_was_image becomes false).
  const auto broken =
      build_idefics_prompt(*tok, {P::make_image(), P::make_text(" "), P::make_image()});
  EXPECT_EQ(broken.token_ids, (std::vector<int32_t>{1, 400, 401, 400, 400, 401, 400}));
  const auto empty = build_idefics_prompt(*tok, {});
  EXPECT_EQ(empty.token_ids, (std::vector<int32_t>{1}));
  EXPECT_EQ(empty.image_of_token, (std::vector<int32_t>{-1}));
}

TEST(Prompt, TextIsLiteral) {
  const auto tok = Tokenizer::load(kModelDir);
  const auto got = build_idefics_prompt(
      *tok, {PromptItem::make_text("look <image> here </s>"), PromptItem::make_image()});
  EXPECT_EQ(std::count(got.token_ids.begin(), got.token_ids.end(), 401), 1);
  EXPECT_EQ(std::count(got.token_ids.begin(), got.token_ids.end(), 2), 0);
  EXPECT_EQ(got.num_images, 1);
}

TEST(Prompt, MissingImageTokensThrow) {
  const std::string dir =
      ft::make_tokenizer_variant(kModelDir, "p_bare", [](auto& config, auto& map, auto& added) {
        config = nullptr;
        map = nullptr;
        added = nullptr;
      });
  const auto tok = Tokenizer::load(dir);
  EXPECT_THROW(build_idefics_prompt(*tok, {PromptItem::make_text("hi")}), Error);
}

TEST(AssignImages, RuleFromTheProcessor) {
  // image 9, eos 2: a counter increments at each image token; after an eos, -1 until the
  // next image; the eos token itself keeps its image.
  const std::vector<int32_t> ids = {5, 9, 6, 2, 7, 7, 9, 8, 9, 2};
  EXPECT_EQ(assign_images(ids, 9, 2), (std::vector<int32_t>{-1, 0, 0, 0, -1, -1, 1, 1, 2, 2}));
  EXPECT_EQ(assign_images(ids, 9, -1), (std::vector<int32_t>{-1, 0, 0, 0, 0, 0, 1, 1, 2, 2}));
  const std::vector<int32_t> eos_first = {2, 5, 9, 5};
  EXPECT_EQ(assign_images(eos_first, 9, 2), (std::vector<int32_t>{-1, -1, 0, 0}));
  EXPECT_TRUE(assign_images(std::vector<int32_t>{}, 9, 2).empty());
}

TEST(SplitImageMarkers, Pieces) {
  auto kinds = [](const std::vector<PromptItem>& items) {
    std::string s;
    for (const auto& item : items) {
      s += item.kind == PromptItem::Kind::kImage ? "[I]" : "[" + item.text + "]";
    }
    return s;
  };
  EXPECT_EQ(kinds(split_image_markers("")), "");
  EXPECT_EQ(kinds(split_image_markers("hello")), "[hello]");
  EXPECT_EQ(kinds(split_image_markers("<image>")), "[I]");
  EXPECT_EQ(kinds(split_image_markers("<image><image>")), "[I][I]");
  EXPECT_EQ(kinds(split_image_markers("User:<image>What is it?\nAssistant:")),
            "[User:][I][What is it?\nAssistant:]");
  EXPECT_EQ(kinds(split_image_markers("a <image> <image>b")), "[a ][I][ ][I][b]");
  EXPECT_EQ(kinds(split_image_markers("<image\n<image>>")), "[<image\n][I][>]");
}

}  // namespace
}  // namespace flamingo
