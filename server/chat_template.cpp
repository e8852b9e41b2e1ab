// Chat templates as data. See chat_template.h.
#include "server/chat_template.h"

#include <nlohmann/json.hpp>
#include <utility>

#include "model/error.h"
#include "server/request_builder.h"
#include "server/template_file.h"

namespace flamingo {
namespace {

using nlohmann::json;

class Parser : public TemplateFileParser {
 public:
  using TemplateFileParser::TemplateFileParser;

  std::string string(const json& obj, const std::string& name, const std::string& key) const {
    if (!obj.contains(name)) return {};
    const json& v = obj.at(name);
    if (!v.is_string()) fail(key + name, std::string("expected a string, found ") + v.type_name());
    return v.get<std::string>();
  }

  // An optional array of non-empty strings.
  std::vector<std::string> nonempty_strings(const json& obj, const std::string& name) const {
    if (!obj.contains(name)) return {};
    std::vector<std::string> out = strings(obj.at(name), name);
    for (size_t i = 0; i < out.size(); ++i) {
      if (out[i].empty()) fail(name + "[" + std::to_string(i) + "]", "empty string");
    }
    return out;
  }

  ChatTemplate::Role role(const json& roles, const std::string& name) const {
    const std::string key = "roles." + name;
    const json& r = roles.at(name);
    check_keys(r, key, {}, {"prefix", "suffix"});
    return {string(r, "prefix", key + "."), string(r, "suffix", key + ".")};
  }
};

void append_text(std::string_view text, std::vector<ChatPromptPart>& out) {
  if (text.empty()) return;
  if (!out.empty() && out.back().kind == ChatPromptPart::Kind::kText) {
    out.back().text += text;
    return;
  }
  ChatPromptPart p;
  p.text = std::string(text);
  out.push_back(std::move(p));
}

}  // namespace

ChatTemplate ChatTemplate::load_file(const std::string& path) {
  return parse(read_template_file(path, "chat template"), path);
}

ChatTemplate ChatTemplate::parse(std::string_view json_text, const std::string& source) {
  const Parser p(source);
  json doc;
  try {
    doc = json::parse(json_text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a huge number
    p.fail("(file)", std::string("not valid JSON: ") + e.what());
  }
  p.check_keys(doc, "", {"roles"}, {"description", "special_tokens", "generation_prompt", "stop"});
  ChatTemplate t;
  t.source_ = source;
  p.string(doc, "description", "");
  t.special_tokens_ = p.nonempty_strings(doc, "special_tokens");
  const json& roles = doc.at("roles");
  p.check_keys(roles, "roles", {"user", "assistant"}, {"system"});
  t.user_ = p.role(roles, "user");
  t.assistant_ = p.role(roles, "assistant");
  if (roles.contains("system")) t.system_ = p.role(roles, "system");
  t.generation_prompt_ = p.string(doc, "generation_prompt", "");
  t.stop_ = p.nonempty_strings(doc, "stop");
  return t;
}

void ChatTemplate::append_template_text(std::string_view text, const TokenResolver& resolve,
                                        std::vector<ChatPromptPart>& out) const {
  while (!text.empty()) {
    // The earliest special-token string, the longest one where several start there.
    size_t at = std::string_view::npos;
    size_t len = 0;
    for (const std::string& s : special_tokens_) {
      const size_t pos = text.find(s);
      if (pos == std::string_view::npos) continue;
      if (pos < at || (pos == at && s.size() > len)) {
        at = pos;
        len = s.size();
      }
    }
    if (at == std::string_view::npos) {
      append_text(text, out);
      return;
    }
    append_text(text.substr(0, at), out);
    const std::string_view token = text.substr(at, len);
    if (const std::optional<int32_t> id = resolve ? resolve(token) : std::nullopt) {
      ChatPromptPart p;
      p.kind = ChatPromptPart::Kind::kToken;
      p.token = *id;
      out.push_back(std::move(p));
    } else {
      append_text(token, out);
    }
    text.remove_prefix(at + len);
  }
}

std::vector<ChatPromptPart> ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                                 const TokenResolver& resolve) const {
  if (messages.empty()) throw InvalidRequest("messages", "empty (send at least one message)");
  std::vector<ChatPromptPart> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const Role* role = nullptr;
    if (m.role == "user") {
      role = &user_;
    } else if (m.role == "assistant") {
      role = &assistant_;
    } else if (m.role == "system" && system_) {
      role = &*system_;
    } else if (m.role == "system") {
      throw InvalidRequest("messages[" + std::to_string(i) + "].role",
                           "the chat template (" + source_ + ") has no system role");
    } else {
      throw InvalidRequest(
          "messages[" + std::to_string(i) + "].role",
          "must be one of system, user, assistant, got '" + m.role.substr(0, 40) + "'");
    }
    append_template_text(role->prefix, resolve, out);
    for (const ChatContentPart& c : m.content) {
      if (c.kind == ChatContentPart::Kind::kText) {
        append_text(c.text, out);
      } else {
        ChatPromptPart p;
        p.kind = ChatPromptPart::Kind::kImage;
        p.image = c.image;
        out.push_back(std::move(p));
      }
    }
    append_template_text(role->suffix, resolve, out);
  }
  append_template_text(generation_prompt_, resolve, out);
  return out;
}

std::string ChatTemplate::describe(const std::vector<ChatPromptPart>& parts,
                                   const std::function<std::string(int32_t)>& token_string) {
  std::string out;
  for (const ChatPromptPart& p : parts) {
    switch (p.kind) {
      case ChatPromptPart::Kind::kText:
        out += p.text;
        break;
      case ChatPromptPart::Kind::kImage:
        out += "<image>";
        break;
      case ChatPromptPart::Kind::kToken:
        out += token_string(p.token);
        break;
    }
  }
  return out;
}

}  // namespace flamingo
