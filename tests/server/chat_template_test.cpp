// Tests of server/chat_template.h: the file format's validation, rendering messages into prompt
// parts (template tokens resolved or spelled, message text always literal, adjacent text
// merged), the bundled templates/idefics-chat.json.
#include "server/chat_template.h"

#include <gtest/gtest.h>

#include "model/error.h"
#include "server/request_builder.h"

namespace flamingo {
namespace {

using Kind = ChatPromptPart::Kind;

const char* kTemplate = R"json({
  "description": "test",
  "special_tokens": ["<eou>", "<eou2>"],
  "roles": {
    "system": {"prefix": "", "suffix": "\n\n"},
    "user": {"prefix": "User: ", "suffix": "<eou>\n"},
    "assistant": {"prefix": "Assistant: ", "suffix": "<eou>\n"}
  },
  "generation_prompt": "Assistant:",
  "stop": ["<eou>", "\nUser:"]
})json";

ChatPromptPart text(std::string t) { return {Kind::kText, std::move(t), -1, -1}; }
ChatPromptPart image(int32_t i) { return {Kind::kImage, {}, i, -1}; }
ChatPromptPart token(int32_t id) { return {Kind::kToken, {}, -1, id}; }

ChatMessage msg(std::string role, std::vector<ChatContentPart> content) {
  return {std::move(role), std::move(content)};
}

std::optional<int32_t> resolve_eou(std::string_view s) {
  if (s == "<eou>") return 7;
  return std::nullopt;
}

TEST(ChatTemplate, RendersRolesImagesAndGenerationPrompt) {
  const ChatTemplate t = ChatTemplate::parse(kTemplate, "t.json");
  const auto parts =
      t.render({msg("system", {ChatContentPart::of_text("Be brief.")}),
                msg("user", {ChatContentPart::of_text("What is"), ChatContentPart::of_image(0),
                             ChatContentPart::of_text("this?")}),
                msg("assistant", {ChatContentPart::of_text("A cat.")}),
                msg("user", {ChatContentPart::of_image(1)})},
               resolve_eou);
  const std::vector<ChatPromptPart> want = {text("Be brief.\n\nUser: What is"),
                                            image(0),
                                            text("this?"),
                                            token(7),
                                            text("\nAssistant: A cat."),
                                            token(7),
                                            text("\nUser: "),
                                            image(1),
                                            token(7),
                                            text("\nAssistant:")};
  EXPECT_EQ(parts, want);
  EXPECT_EQ(t.stop(), (std::vector<std::string>{"<eou>", "\nUser:"}));
  EXPECT_EQ(
      ChatTemplate::describe(parts, [](int32_t id) { return "<" + std::to_string(id) + ">"; }),
      "Be brief.\n\nUser: What is<image>this?<7>\nAssistant: A cat.<7>\nUser: "
      "<image><7>\nAssistant:");
}

TEST(ChatTemplate, TokensTheModelLacksAreSpelledAsText) {
  const ChatTemplate t = ChatTemplate::parse(kTemplate, "t.json");
  const auto parts = t.render({msg("user", {ChatContentPart::of_text("hi")})},
                              [](std::string_view) { return std::nullopt; });
  EXPECT_EQ(parts, (std::vector<ChatPromptPart>{text("User: hi<eou>\nAssistant:")}));
}

TEST(ChatTemplate, MessageTextIsAlwaysLiteral) {
  const ChatTemplate t = ChatTemplate::parse(kTemplate, "t.json");
  const auto parts =
      t.render({msg("user", {ChatContentPart::of_text("say <eou> and <image>")})}, resolve_eou);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0], text("User: say <eou> and <image>"));
  EXPECT_EQ(parts[1], token(7));
  EXPECT_EQ(parts[2], text("\nAssistant:"));
}

TEST(ChatTemplate, LongestSpecialTokenWinsAtTheSamePosition) {
  const ChatTemplate t = ChatTemplate::parse(
      R"({"special_tokens": ["<a>", "<a>b"], "roles": {"user": {"prefix": "<a>bc"},
          "assistant": {}}})",
      "t.json");
  const auto parts = t.render({msg("user", {})}, [](std::string_view s) -> std::optional<int32_t> {
    return s == "<a>b" ? std::optional<int32_t>(2) : std::nullopt;
  });
  EXPECT_EQ(parts, (std::vector<ChatPromptPart>{token(2), text("c")}));
}

TEST(ChatTemplate, RefusesUnknownRolesAndEmptyMessages) {
  const ChatTemplate t = ChatTemplate::parse(kTemplate, "t.json");
  try {
    t.render({msg("user", {}), msg("tool", {})}, resolve_eou);
    FAIL() << "no throw";
  } catch (const InvalidRequest& e) {
    EXPECT_EQ(e.field(), "messages[1].role");
    EXPECT_NE(std::string(e.what()).find("'tool'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.render({}, resolve_eou), InvalidRequest);
  const ChatTemplate no_system =
      ChatTemplate::parse(R"({"roles": {"user": {}, "assistant": {}}})", "n.json");
  try {
    no_system.render({msg("system", {})}, resolve_eou);
    FAIL() << "no throw";
  } catch (const InvalidRequest& e) {
    EXPECT_EQ(e.field(), "messages[0].role");
    EXPECT_NE(std::string(e.what()).find("no system role"), std::string::npos) << e.what();
  }
}

void expect_error(const std::string& json, const std::string& needle) {
  try {
    ChatTemplate::parse(json, "bad.json");
    FAIL() << "no error for " << json;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).rfind("bad.json: ", 0), 0u) << e.what();
  }
}

TEST(ChatTemplate, FileErrorsNameTheKey) {
  expect_error("{", "not valid JSON");
  expect_error("213E363", "not valid JSON");  // a number too large: found by fuzz_templates
  expect_error("[]", "expected an object");
  expect_error(R"({"roles": {"user": {}}})", "roles.assistant: missing");
  expect_error(R"({})", "roles: missing");
  expect_error(R"({"roles": {"user": {}, "assistant": {}, "tool": {}}})",
               "roles.tool: unknown key");
  expect_error(R"({"roles": {"user": {"prefix": 3}, "assistant": {}}})",
               "roles.user.prefix: expected a string");
  expect_error(R"({"roles": {"user": {}, "assistant": {}}, "stop": [""]})", "stop[0]: empty");
  expect_error(R"({"roles": {"user": {}, "assistant": {}}, "extra": 1})", "extra: unknown key");
}

TEST(ChatTemplate, BundledIdeficsTemplateLoads) {
  const ChatTemplate t =
      ChatTemplate::load_file(std::string(FLAMINGO_SOURCE_DIR) + "/templates/idefics-chat.json");
  const auto parts = t.render({msg("user", {ChatContentPart::of_text("Hi")})},
                              [](std::string_view) { return std::nullopt; });
  EXPECT_EQ(ChatTemplate::describe(parts, [](int32_t) { return std::string(); }),
            "User: Hi<end_of_utterance>\nAssistant:");
  EXPECT_THROW(ChatTemplate::load_file("/nonexistent/chat.json"), Error);
}

}  // namespace
}  // namespace flamingo
