// Tests for server/prompt_templates.{h,cpp}: the file format's validation, rendering (demos
// then query, adjacent text merged, placeholder values literal) and templates/idefics.json.
// Expected parts are written out by hand from the issue's IDEFICS layout.
#include "server/prompt_templates.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/error.h"

namespace flamingo {
namespace {

using Kind = RenderedPart::Kind;

RenderedPart img(int32_t i) { return {Kind::kImage, {}, i}; }
RenderedPart txt(std::string s) { return {Kind::kText, std::move(s), -1}; }

// Renders parts as "[0]" / "'text'" for readable failure messages.
std::string show(const std::vector<RenderedPart>& parts) {
  std::string out;
  for (const auto& p : parts) {
    out += p.kind == Kind::kImage ? "[" + std::to_string(p.image) + "] " : "'" + p.text + "' ";
  }
  return out;
}

// A minimal valid document whose caption/question pieces can be replaced one at a time.
std::string doc(const std::string& caption_example = R"(["<image>", "C: {text}"])",
                const std::string& caption_query = R"(["<image>", "C:"])",
                const std::string& question_example = R"(["<image>", "Q: {question} A: {answer}"])",
                const std::string& question_query = R"(["<image>", "Q: {question} A:"])",
                const std::string& stop = R"(["\n"])") {
  return R"({"caption": {"example": )" + caption_example + R"(, "query": )" + caption_query +
         R"(, "stop": )" + stop + R"(}, "question": {"example": )" + question_example +
         R"(, "query": )" + question_query + R"(, "stop": ["\n"]}})";
}

// Expects parse() to throw an Error whose message contains every fragment.
void expect_error(const std::string& json_text, const std::vector<std::string>& fragments) {
  try {
    PromptTemplates::parse(json_text, "t.json");
    ADD_FAILURE() << "no error for " << json_text;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("t.json: ", 0), 0u) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << f << " | " << msg;
  }
}

TEST(PromptTemplates, IdeficsCaptionLayout) {
  const auto t = PromptTemplates::idefics();
  const std::vector<RenderedPart> want = {
      img(0), txt("Caption: a cat\n"), img(1), txt("Caption: a dog\n"), img(2), txt("Caption:")};
  const auto got = t.render_caption({"a cat", "a dog"});
  EXPECT_EQ(got, want) << show(got);
  EXPECT_EQ(t.render_caption({}), (std::vector<RenderedPart>{img(0), txt("Caption:")}));
  EXPECT_EQ(t.caption_stop(), std::vector<std::string>{"\n"});
}

TEST(PromptTemplates, IdeficsQuestionLayout) {
  const auto t = PromptTemplates::idefics();
  const std::vector<RenderedPart> want = {img(0), txt("Question: Color? Answer: red\n"), img(1),
                                          txt("Question: What is it? Answer:")};
  const auto got = t.render_question({{"Color?", "red"}}, "What is it?");
  EXPECT_EQ(got, want) << show(got);
  EXPECT_EQ(t.question_stop(), std::vector<std::string>{"\n"});
}

TEST(PromptTemplates, RepoFileLoadsAndMatchesBuiltIn) {
  const std::string path = std::string(FLAMINGO_SOURCE_DIR) + "/templates/idefics.json";
  const auto file = PromptTemplates::load_file(path);
  EXPECT_EQ(file.source(), path);
  const auto builtin = PromptTemplates::idefics();
  EXPECT_EQ(file.render_caption({"x", "y z"}), builtin.render_caption({"x", "y z"}));
  EXPECT_EQ(file.render_question({{"q1", "a1"}, {"q2", "a2"}}, "q3"),
            builtin.render_question({{"q1", "a1"}, {"q2", "a2"}}, "q3"));
  EXPECT_EQ(file.caption_stop(), builtin.caption_stop());
  EXPECT_EQ(file.question_stop(), builtin.question_stop());
  // And the file says what the issue asks for.
  EXPECT_EQ(file.render_caption({"a"}),
            (std::vector<RenderedPart>{img(0), txt("Caption: a\n"), img(1), txt("Caption:")}));
}

TEST(PromptTemplates, AdjacentTextMergedAcrossElementsAndDemos) {
  // Text split over several elements, and a demo that ends in text followed by one that
  // starts with text: all one text item each time.
  const auto t = PromptTemplates::parse(
      doc(R"(["{text}", " / ", "<image>", "|"])", R"(["end ", "<image>", "?", "!"])"), "t.json");
  const auto got = t.render_caption({"one", "two"});
  const std::vector<RenderedPart> want = {txt("one / "), img(0), txt("|two / "), img(1),
                                          txt("|end "),  img(2), txt("?!")};
  EXPECT_EQ(got, want) << show(got);
}

TEST(PromptTemplates, EmptyTextDropped) {
  const auto t =
      PromptTemplates::parse(doc(R"(["<image>", "{text}"])", R"(["", "<image>", ""])"), "t.json");
  const auto got = t.render_caption({"", "b"});
  EXPECT_EQ(got, (std::vector<RenderedPart>{img(0), img(1), txt("b"), img(2)})) << show(got);
}

TEST(PromptTemplates, ValuesAreLiteralAndBracesEscape) {
  const auto t = PromptTemplates::parse(
      doc(R"(["<image>", "{{{text}}}"])", R"(["<image>", "{{}}"])",
          R"(["<image>", "{question}={answer}"])", R"(["<image>", "{question}{{question}}"])"),
      "t.json");
  EXPECT_EQ(t.render_caption({"{text} <image> </s>"}),
            (std::vector<RenderedPart>{img(0), txt("{{text} <image> </s>}"), img(1), txt("{}")}));
  EXPECT_EQ(
      t.render_question({{"{answer}", "{question}"}}, "x"),
      (std::vector<RenderedPart>{img(0), txt("{answer}={question}"), img(1), txt("x{question}")}));
}

TEST(PromptTemplates, ValidationErrorsNameFileAndKey) {
  expect_error("{", {"invalid JSON"});
  expect_error("[1]", {"top level", "array"});
  expect_error(
      R"({"caption": {"example": ["<image>", "{text}"], "query": ["<image>"], "stop": []}})",
      {"question", "missing"});
  expect_error(doc(R"(["<image>", "C: {txt}"])"),
               {"caption.example[1]", "unknown placeholder {txt}", "{text}"});
  expect_error(doc(R"(["<image>", "C:"])"), {"caption.example", "never uses {text}"});
  expect_error(doc(R"(["<image>", "C: {text}"])", R"(["<image>", "C: {text}"])"),
               {"caption.query[1]", "unknown placeholder {text}", "allowed: none"});
  expect_error(doc(R"(["<image>", "{text}"])", R"(["<image>", "<image>"])"),
               {"caption.query", "exactly one \"<image>\"", "found 2"});
  expect_error(doc(R"(["{text}"])"), {"caption.example", "found 0"});
  expect_error(doc(R"(["<image>", "{text} <image>"])"), {"caption.example[1]", "<image>"});
  expect_error(doc(R"("<image> {text}")"), {"caption.example", "array", "string"});
  expect_error(doc(R"(["<image>", 3])"), {"caption.example[1]", "expected a string", "number"});
  expect_error(doc(R"(["<image>", "{text}"])", R"(["<image>"])", R"(["<image>", "{question}"])"),
               {"question.example", "never uses {answer}"});
  expect_error(
      doc(R"(["<image>", "{text}"])", R"(["<image>"])", R"(["<image>", "{question} {answer}"])",
          R"(["<image>", "{question} {answer}"])"),
      {"question.query[1]", "unknown placeholder {answer}"});
  expect_error(doc(R"(["<image>", "{text}"])", R"(["<image>"])",
                   R"(["<image>", "{question} {answer}"])", R"(["<image>", "A:"])"),
               {"question.query", "never uses {question}"});
  expect_error(doc(R"(["<image>", "{text"])"), {"caption.example[1]", "unclosed '{'"});
  expect_error(doc(R"(["<image>", "{text} }"])"), {"caption.example[1]", "single '}'"});
  expect_error(
      doc(R"(["<image>", "{text}"])", R"(["<image>"])", R"(["<image>", "{question}{answer}"])",
          R"(["<image>", "{question}"])", R"(["\n", ""])"),
      {"caption.stop[1]", "empty stop string"});
  expect_error(
      doc(R"(["<image>", "{text}"])", R"(["<image>"])", R"(["<image>", "{question}{answer}"])",
          R"(["<image>", "{question}"])", R"("\n")"),
      {"caption.stop", "array"});
  std::string extra = doc();
  extra.insert(1, R"("captoin": {}, )");
  expect_error(extra, {"captoin", "unknown key"});
  std::string extra_task = doc();
  extra_task.replace(extra_task.find("\"stop\""), 6, R"("stops": [], "stop")");
  expect_error(extra_task, {"caption.stops", "unknown key"});
  std::string bad_description = doc();
  bad_description.insert(1, R"("description": 1, )");
  expect_error(bad_description, {"description", "expected a string"});
}

TEST(PromptTemplates, LoadFileErrorsNamePath) {
  try {
    PromptTemplates::load_file("/nonexistent/templates.json");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/templates.json"), std::string::npos);
  }
}

TEST(PromptTemplates, ToPromptItems) {
  const auto items = to_prompt_items({img(0), txt("a b"), img(1)});
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].kind, PromptItem::Kind::kImage);
  EXPECT_EQ(items[1].kind, PromptItem::Kind::kText);
  EXPECT_EQ(items[1].text, "a b");
  EXPECT_EQ(items[2].kind, PromptItem::Kind::kImage);
}

}  // namespace
}  // namespace flamingo
