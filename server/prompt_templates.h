// Caption and visual-question-answering prompt templates as data (the --templates JSON file),
// so each model family brings its own few-shot layout. Owns: the file format, its validation
// at load time and rendering a request's demos + query into prompt parts.
// Thread-safety: immutable after construction; const methods may be called concurrently.
//
// File format (templates/idefics.json is the IDEFICS one, also built in as idefics()):
//   {
//     "description": "optional free text",
//     "caption": {
//       "example": ["<image>", "Caption: {text}\n"],      // one few-shot demo
//       "query":   ["<image>", "Caption:"],               // the request itself, after the demos
//       "stop":    ["\n"]                                 // stop strings of the task
//     },
//     "question": {
//       "example": ["<image>", "Question: {question} Answer: {answer}\n"],
//       "query":   ["<image>", "Question: {question} Answer:"],
//       "stop":    ["\n"]
//     }
//   }
// - "caption" and "question" are required; each needs "example", "query" (arrays of strings)
//   and "stop" (an array of non-empty strings, may be empty). Other keys are errors.
// - An element that is exactly "<image>" is the demo's / query's image; every "example" and
//   "query" has exactly one. Any other element is text, which may not contain "<image>".
// - Text holds {placeholders}, filled with the request's strings as literal text (never control
//   tokens): caption.example needs {text}; caption.query takes none; question.example needs
//   {question} and {answer}; question.query needs {question}. "{{" and "}}" are literal braces.
// Errors (bad JSON, wrong types, missing or unknown keys, unknown or missing placeholders,
// image count) throw flamingo::Error naming the file and the key, e.g.
//   "templates.json: caption.example[1]: unknown placeholder {txt} (allowed: {text})".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/prompt.h"

namespace flamingo {

// One item of a rendered prompt. Adjacent text is already merged into one item (IDEFICS puts
// <end_of_utterance> between consecutive text items, which a template must never cause), and
// empty text items are dropped.
struct RenderedPart {
  enum class Kind { kText, kImage };
  Kind kind = Kind::kText;
  std::string text;    // kText
  int32_t image = -1;  // kImage: index into the request's images, demos in order then the query

  bool operator==(const RenderedPart&) const = default;
};

struct QAPair {
  std::string question;
  std::string answer;
};

class PromptTemplates {
 public:
  // Reads and validates a template file; errors name `path`.
  static PromptTemplates load_file(const std::string& path);
  // Parses JSON text; errors name `source`.
  static PromptTemplates parse(std::string_view json_text, const std::string& source);
  // The IDEFICS templates (the same content as templates/idefics.json).
  static PromptTemplates idefics();

  // Demos (one per example caption, in order), then the query. Images are numbered 0..n.
  std::vector<RenderedPart> render_caption(const std::vector<std::string>& example_texts) const;
  std::vector<RenderedPart> render_question(const std::vector<QAPair>& examples,
                                            const std::string& question) const;

  const std::vector<std::string>& caption_stop() const { return caption_.stop; }
  const std::vector<std::string>& question_stop() const { return question_.stop; }
  const std::string& source() const { return source_; }

  // A template element after parsing: the image, or text as literal runs and placeholders.
  struct Segment {
    bool placeholder = false;
    std::string text;  // literal text, or the placeholder's name
  };
  struct Element {
    bool image = false;
    std::vector<Segment> segments;  // text elements only
  };
  struct Task {
    std::vector<Element> example;
    std::vector<Element> query;
    std::vector<std::string> stop;
  };

 private:
  PromptTemplates() = default;

  std::string source_;
  Task caption_;
  Task question_;
};

// Rendered parts -> build_idefics_prompt's items (image indices are implied by order).
std::vector<PromptItem> to_prompt_items(const std::vector<RenderedPart>& parts);

}  // namespace flamingo
