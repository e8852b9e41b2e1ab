// Chat templates as data (the --chat-template JSON file): how a list of chat messages (roles
// system / user / assistant, content as text and image parts) becomes one prompt, for the
// OpenAI-style /v1/chat/completions. Owns the file format, its validation at load time and
// rendering. HF checkpoints carry Jinja templates (tokenizer_config.json "chat_template"); we
// do not run Jinja: the few layouts Flamingo-style models use fit this declarative form,
// which cannot loop, fail at run time or be steered by the messages.
// Thread-safety: immutable after construction; const methods may be called concurrently.
//
// File format (templates/idefics-chat.json is the IDEFICS instruct one):
//   {
//     "description": "optional free text",
//     "special_tokens": ["<end_of_utterance>"],       // strings of the template that are tokens
//     "roles": {
//       "system":    {"prefix": "", "suffix": "\n\n"},
//       "user":      {"prefix": "User: ", "suffix": "<end_of_utterance>\n"},
//       "assistant": {"prefix": "Assistant: ", "suffix": "<end_of_utterance>\n"}
//     },
//     "generation_prompt": "Assistant:",                 // after the last message
//     "stop": ["<end_of_utterance>", "\nUser:"]          // stop strings of every chat request
//   }
// - Each message renders as prefix, its content parts in order (text literally, images where
//   they stand), suffix. Then the generation prompt.
// - In the template's own strings (prefix, suffix, generation prompt), each occurrence of a
//   "special_tokens" string becomes that added token when the served model has it (the token
//   resolver says so), else stays text. Message text is always literal: a client typing
//   "<end_of_utterance>" or "<image>" gets text, never a control token.
// - "roles" needs "user" and "assistant"; "system" is optional (without it, a system message
//   is refused). Unknown keys are errors; errors name the file and the key.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flamingo {

// One content part of a chat message: text, or the index of an image of the request.
struct ChatContentPart {
  enum class Kind { kText, kImage };
  Kind kind = Kind::kText;
  std::string text;    // kText
  int32_t image = -1;  // kImage: index into the request's images

  static ChatContentPart of_text(std::string t) { return {Kind::kText, std::move(t), -1}; }
  static ChatContentPart of_image(int32_t i) { return {Kind::kImage, {}, i}; }
};

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant" (others are refused by render)
  std::vector<ChatContentPart> content;
};

// One part of a rendered chat prompt. Adjacent text is merged into one part (the IDEFICS
// processor puts <end_of_utterance> between consecutive text items).
struct ChatPromptPart {
  enum class Kind { kText, kImage, kToken };
  Kind kind = Kind::kText;
  std::string text;    // kText
  int32_t image = -1;  // kImage: index into the request's images
  int32_t token = -1;  // kToken: the added token's id

  bool operator==(const ChatPromptPart&) const = default;
};

// A special-token string of the template -> its id when the served model can take it as one
// token (an added token with an embedding row), else nullopt (the string stays text).
using TokenResolver = std::function<std::optional<int32_t>(std::string_view)>;

class ChatTemplate {
 public:
  // Reads and validates a template file; errors (flamingo::Error) name `path`.
  static ChatTemplate load_file(const std::string& path);
  // Parses JSON text; errors name `source`.
  static ChatTemplate parse(std::string_view json_text, const std::string& source);

  // Throws InvalidRequest (server/request_builder.h) naming "messages[i].role" for a role the
  // template has no entry for, or "messages" when the list is empty.
  std::vector<ChatPromptPart> render(const std::vector<ChatMessage>& messages,
                                     const TokenResolver& resolve) const;
  // The rendered prompt as one readable string: images as "<image>", tokens by their string
  // (what README's examples and the debug output show).
  static std::string describe(const std::vector<ChatPromptPart>& parts,
                              const std::function<std::string(int32_t)>& token_string);

  const std::vector<std::string>& stop() const { return stop_; }
  const std::string& source() const { return source_; }

  struct Role {
    std::string prefix, suffix;
  };

 private:
  ChatTemplate() = default;
  void append_template_text(std::string_view text, const TokenResolver& resolve,
                            std::vector<ChatPromptPart>& out) const;

  std::string source_;
  std::vector<std::string> special_tokens_;
  std::optional<Role> system_;
  Role user_, assistant_;
  std::string generation_prompt_;
  std::vector<std::string> stop_;
};

}  // namespace flamingo
