// Turns requests (server/requests.h, whichever front end received them) into engine jobs:
// validates every field against the server's limits, decodes and preprocesses the images,
// renders Caption/AnswerQuestion prompts from the templates and tokenizes with the IDEFICS
// layout. Torch-free and proto-free; runs on the front end's threads (image decoding happens
// here, not on the engine thread).
// Thread-safety: immutable after construction; the build_* methods may be called concurrently
// (the Tokenizer is immutable and must outlive the builder).
//
// Rules (each violation throws InvalidRequest, answered INVALID_ARGUMENT; its message starts
// with the field path and names the limit, its flag and the value):
// - Every request needs a non-empty prompt (Generate, Score) or an image (Caption, Question).
//   A Part must hold text or an image; an empty text part is allowed (IDEFICS keeps it).
// - Text must be valid UTF-8; all text of a request together (prompt text, captions,
//   questions, answers, candidates; not stop strings) is at most --max-text-bytes.
// - Images: at most --max-images per request (Caption/Question: demos + the query); each
//   non-empty, at most --max-image-bytes encoded, at most --max-image-pixels declared
//   width*height (read from the header before decoding), and decodable.
// - Tokens: the prompt (and each Score sequence) is at most --max-prompt-tokens (0: the context
//   length) and every id must have an embedding row; prompt + max_new_tokens <= context length.
// - max_new_tokens: 0 -> --default-max-new-tokens; else 1..--max-new-tokens.
// - sampling: zero means unset (top_p 0 -> 1, repetition_penalty 0 -> 1); temperature in
//   [0, 100], top_p in (0, 1], top_k >= 0, repetition_penalty in (0, 100], finite; seed 0 ->
//   a random non-zero seed (std::random_device), otherwise kept.
// - stop: at most --max-stop-strings, each non-empty, at most --max-stop-string-bytes.
// - top_logprobs: 0..--max-top-logprobs. request_id: at most 256 bytes, no control characters.
// - Caption/Question demos: every field non-empty (an example without its image, caption,
//   question or answer teaches the model nothing useful); the question must be non-empty.
// - Score: 1..--max-candidates candidates (0 allowed when !candidates_required), each
//   non-empty and adding at least one token to the prompt (see build_score).
// Errors that are not the client's fault (e.g. a tokenizer without "<image>") are plain
// flamingo::Error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/error.h"
#include "model/image_preprocess.h"
#include "model/tokenizer.h"
#include "server/engine/job.h"
#include "server/limits.h"
#include "server/prompt_templates.h"
#include "server/requests.h"

namespace flamingo {

// A request the client got wrong. what() == field() + ": " + detail.
class InvalidRequest : public Error {
 public:
  InvalidRequest(const std::string& field, const std::string& detail)
      : Error(field + ": " + detail), field_(field) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

// An image of a request, as the client sent it.
struct ImageRef {
  std::string_view bytes;  // encoded
  std::string field;       // e.g. "prompt[3].image"
};

// Each image non-empty, within --max-image-bytes, a PNG or JPEG header declaring at most
// --max-image-pixels (InvalidRequest naming "<field>.data" or the field otherwise).
void check_image_refs(const std::vector<ImageRef>& images, const ServerLimits& limits);
// Decodes (transparency as config.alpha says) and preprocesses each image; the same bytes
// twice are decoded once. Keys are media_key() of the bytes and config.
std::vector<ImageInput> decode_image_refs(const std::vector<ImageRef>& images,
                                          const ServerLimits& limits,
                                          const ImagePreprocessConfig& config);

class RequestBuilder {
 public:
  static constexpr size_t kMaxRequestIdBytes = 256;
  using ImageRef = flamingo::ImageRef;

  // context_length >= 1: tokens a sequence may hold (prompt + generated). vocab_rows: rows of
  // the model's embedding; a token id >= vocab_rows cannot be fed to the model.
  RequestBuilder(const Tokenizer& tokenizer, ImagePreprocessConfig image_config,
                 ServerLimits limits, int64_t context_length, int64_t vocab_rows,
                 PromptTemplates templates);

  GenerateJob build_generate(const GenerateInput& request) const;
  // The templates' caption prompt (demos first, then the query); job.stop = the template's stops.
  GenerateJob build_caption(const CaptionInput& request) const;
  GenerateJob build_question(const QuestionInput& request) const;
  // The one home of candidate tokenization: each candidate is appended to the last text part
  // (or becomes a new text part after a final image); sequences[0] is the prompt,
  // sequences[1 + c] the prompt with candidate c, first_new[c] = max(common prefix with the
  // prompt, 1).
  ScoreJob build_score(const ScoreInput& request) const;

  // The effective prompt-token limit: --max-prompt-tokens, or the context length when it is 0
  // or larger.
  int64_t max_prompt_tokens() const;
  const PromptTemplates& templates() const { return templates_; }
  const ServerLimits& limits() const { return limits_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  int64_t vocab_rows() const { return vocab_rows_; }
  int64_t context_length() const { return context_length_; }
  // A template's special-token string -> its id when it is an added (special) token of the
  // tokenizer with an embedding row, else nullopt (the template then spells it as text).
  std::optional<int32_t> template_token(std::string_view token) const;

 private:
  TokenizedPrompt tokenize(const std::vector<PromptItem>& items, const std::string& field) const;
  int32_t resolve_max_new_tokens(int32_t requested, int64_t prompt_tokens,
                                 const std::string& prompt_field) const;
  SamplingParams resolve_sampling(const SamplingInput& sampling) const;
  void check_text_bytes(int64_t bytes, const std::string& field) const;
  // Every field of a generation besides its prompt: request id, sampling, stops, logprobs.
  void resolve_generation_fields(const GenerateInput& r, GenerateJob& job) const;
  // Tokenizes `items` and fills the job's prompt, max_new_tokens and images.
  void finish_job(const std::vector<PromptItem>& items, const std::string& field,
                  int32_t max_new_tokens, const std::string& prompt_name,
                  const std::vector<ImageRef>& images, GenerateJob& job) const;

  const Tokenizer& tokenizer_;
  ImagePreprocessConfig image_config_;
  ServerLimits limits_;
  int64_t context_length_;
  int64_t vocab_rows_;
  PromptTemplates templates_;
};

}  // namespace flamingo
