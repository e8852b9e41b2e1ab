// Prompt templates as data. See prompt_templates.h.
#include "server/prompt_templates.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <utility>

#include "model/error.h"
#include "server/template_file.h"

namespace flamingo {
namespace {

using nlohmann::json;

constexpr std::string_view kImageElement = "<image>";

// Same text as templates/idefics.json (a test checks that they render alike).
constexpr std::string_view kIdeficsTemplates = R"json({
  "description": "IDEFICS few-shot caption and short-answer VQA prompts (format: server/prompt_templates.h)",
  "caption": {
    "example": ["<image>", "Caption: {text}\n"],
    "query": ["<image>", "Caption:"],
    "stop": ["\n"]
  },
  "question": {
    "example": ["<image>", "Question: {question} Answer: {answer}\n"],
    "query": ["<image>", "Question: {question} Answer:"],
    "stop": ["\n"]
  }
})json";

// Which placeholders a slot accepts and which it must use.
struct SlotRule {
  std::vector<std::string> allowed;
  std::vector<std::string> required;
};

std::string braces(const std::vector<std::string>& names) {
  if (names.empty()) return "none";
  std::string out;
  for (const std::string& n : names) {
    if (!out.empty()) out += ", ";
    out += "{" + n + "}";
  }
  return out;
}

class Parser : public TemplateFileParser {
 public:
  using TemplateFileParser::TemplateFileParser;

  PromptTemplates::Element text_element(const std::string& s, const std::string& key,
                                        const SlotRule& rule, std::set<std::string>& used) const {
    if (s.find(kImageElement) != std::string::npos) {
      fail(key,
           "text contains \"<image>\"; an image is an element of its own, exactly \"<image>\"");
    }
    PromptTemplates::Element e;
    std::string literal;
    auto flush = [&] {
      if (!literal.empty()) e.segments.push_back({false, std::move(literal)});
      literal.clear();
    };
    for (size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      if (c == '{' && i + 1 < s.size() && s[i + 1] == '{') {
        literal += '{';
        ++i;
      } else if (c == '}' && i + 1 < s.size() && s[i + 1] == '}') {
        literal += '}';
        ++i;
      } else if (c == '{') {
        const size_t close = s.find('}', i + 1);
        if (close == std::string::npos) {
          fail(key,
               "unclosed '{' at byte " + std::to_string(i) + " (write '{{' for a literal brace)");
        }
        const std::string name = s.substr(i + 1, close - i - 1);
        if (std::find(rule.allowed.begin(), rule.allowed.end(), name) == rule.allowed.end()) {
          fail(key, "unknown placeholder {" + name + "} (allowed: " + braces(rule.allowed) + ")");
        }
        flush();
        e.segments.push_back({true, name});
        used.insert(name);
        i = close;
      } else if (c == '}') {
        fail(key, "single '}' at byte " + std::to_string(i) + " (write '}}' for a literal brace)");
      } else {
        literal += c;
      }
    }
    flush();
    return e;
  }

  std::vector<PromptTemplates::Element> elements(const json& arr, const std::string& key,
                                                 const SlotRule& rule) const {
    const std::vector<std::string> items = strings(arr, key);
    std::vector<PromptTemplates::Element> out;
    std::set<std::string> used;
    int images = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      if (items[i] == kImageElement) {
        ++images;
        out.push_back({true, {}});
      } else {
        out.push_back(text_element(items[i], key + "[" + std::to_string(i) + "]", rule, used));
      }
    }
    if (images != 1) {
      fail(key, "needs exactly one \"<image>\" element, found " + std::to_string(images));
    }
    for (const std::string& r : rule.required) {
      if (!used.count(r)) fail(key, "never uses {" + r + "}");
    }
    return out;
  }

  PromptTemplates::Task task(const json& obj, const std::string& key, const SlotRule& example,
                             const SlotRule& query) const {
    check_keys(obj, key, {"example", "query", "stop"}, {});
    PromptTemplates::Task t;
    t.example = elements(obj["example"], key + ".example", example);
    t.query = elements(obj["query"], key + ".query", query);
    t.stop = strings(obj["stop"], key + ".stop");
    for (size_t i = 0; i < t.stop.size(); ++i) {
      if (t.stop[i].empty()) fail(key + ".stop[" + std::to_string(i) + "]", "empty stop string");
    }
    return t;
  }
};

// Appends text to the parts, merging with a preceding text part.
void add_text(std::vector<RenderedPart>& parts, const std::string& text) {
  if (!parts.empty() && parts.back().kind == RenderedPart::Kind::kText) {
    parts.back().text += text;
  } else {
    parts.push_back({RenderedPart::Kind::kText, text, -1});
  }
}

template <typename Lookup>
void render_elements(const std::vector<PromptTemplates::Element>& elements, int32_t image,
                     const Lookup& lookup, std::vector<RenderedPart>& parts) {
  for (const PromptTemplates::Element& e : elements) {
    if (e.image) {
      if (!parts.empty() && parts.back().kind == RenderedPart::Kind::kText &&
          parts.back().text.empty()) {
        parts.pop_back();  // an empty text item would still change the IDEFICS layout
      }
      parts.push_back({RenderedPart::Kind::kImage, {}, image});
      continue;
    }
    std::string text;
    for (const PromptTemplates::Segment& s : e.segments)
      text += s.placeholder ? lookup(s.text) : s.text;
    add_text(parts, text);
  }
}

void drop_trailing_empty(std::vector<RenderedPart>& parts) {
  if (!parts.empty() && parts.back().kind == RenderedPart::Kind::kText &&
      parts.back().text.empty()) {
    parts.pop_back();
  }
}

}  // namespace

PromptTemplates PromptTemplates::parse(std::string_view json_text, const std::string& source) {
  json doc;
  try {
    doc = json::parse(json_text);
  } catch (const json::exception& e) {
    throw Error(source + ": invalid JSON: " + e.what());
  }
  Parser p(source);
  if (!doc.is_object()) {
    throw Error(source + ": expected a JSON object at the top level, found " + doc.type_name());
  }
  p.check_keys(doc, "", {"caption", "question"}, {"description"});
  if (doc.contains("description") && !doc["description"].is_string()) {
    p.fail("description",
           std::string("expected a string, found ") + doc["description"].type_name());
  }
  PromptTemplates t;
  t.source_ = source;
  t.caption_ = p.task(doc["caption"], "caption", {{"text"}, {"text"}}, {{}, {}});
  t.question_ =
      p.task(doc["question"], "question", {{"question", "answer"}, {"question", "answer"}},
             {{"question"}, {"question"}});
  return t;
}

PromptTemplates PromptTemplates::load_file(const std::string& path) {
  return parse(read_template_file(path, "prompt templates"), path);
}

PromptTemplates PromptTemplates::idefics() {
  return parse(kIdeficsTemplates, "<built-in idefics templates>");
}

std::vector<RenderedPart> PromptTemplates::render_caption(
    const std::vector<std::string>& example_texts) const {
  std::vector<RenderedPart> parts;
  int32_t image = 0;
  for (const std::string& text : example_texts) {
    render_elements(
        caption_.example, image++, [&](const std::string&) { return text; }, parts);
  }
  render_elements(
      caption_.query, image, [](const std::string&) { return std::string(); }, parts);
  drop_trailing_empty(parts);
  return parts;
}

std::vector<RenderedPart> PromptTemplates::render_question(const std::vector<QAPair>& examples,
                                                           const std::string& question) const {
  std::vector<RenderedPart> parts;
  int32_t image = 0;
  for (const QAPair& ex : examples) {
    render_elements(
        question_.example, image++,
        [&](const std::string& name) { return name == "question" ? ex.question : ex.answer; },
        parts);
  }
  render_elements(
      question_.query, image, [&](const std::string&) { return question; }, parts);
  drop_trailing_empty(parts);
  return parts;
}

std::vector<PromptItem> to_prompt_items(const std::vector<RenderedPart>& parts) {
  std::vector<PromptItem> items;
  items.reserve(parts.size());
  for (const RenderedPart& p : parts) {
    items.push_back(p.kind == RenderedPart::Kind::kImage ? PromptItem::make_image()
                                                         : PromptItem::make_text(p.text));
  }
  return items;
}

}  // namespace flamingo
