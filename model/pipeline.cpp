#include "model/pipeline.h"

#include "model/error.h"

namespace flamingo {

std::unique_ptr<Pipeline> Pipeline::load(const std::string& dir, const PipelineOptions& options) {
  std::unique_ptr<Pipeline> p(new Pipeline());
  p->tokenizer_ = Tokenizer::load(dir);
  p->model_ = FlamingoModel::load(dir, options.model);
  const int64_t rows = p->model_->config().total_vocab();
  if (p->tokenizer_->sp_size() > rows) {
    throw Error(dir + ": the tokenizer has " + std::to_string(p->tokenizer_->sp_size()) +
                " sentencepiece pieces but the model's embedding has only " + std::to_string(rows) +
                " rows (config.json vocab_size + additional_vocab_size): a tokenizer of another "
                "checkpoint?");
  }
  p->image_config_ =
      load_preprocess_config(dir, static_cast<int>(p->model_->config().vision.image_size));
  if (p->image_config_.image_size != p->model_->config().vision.image_size) {
    throw Error(dir + "/preprocessor_config.json: image_size " +
                std::to_string(p->image_config_.image_size) +
                " differs from config.json vision_config.image_size " +
                std::to_string(p->model_->config().vision.image_size));
  }
  return p;
}

void Pipeline::check_rows(const std::vector<int32_t>& ids) const {
  const int64_t rows = model_->config().total_vocab();
  for (int32_t id : ids) {
    if (id < 0 || id >= rows) {
      throw Error("prompt token '" + tokenizer_->id_to_piece(id) + "' (id " + std::to_string(id) +
                  ") has no row in the model's embedding (" + std::to_string(rows) + " rows)");
    }
  }
}

TokenizedPrompt Pipeline::tokenize(const std::vector<PromptItem>& items, size_t num_images) const {
  size_t image_items = 0;
  for (const auto& item : items) image_items += item.kind == PromptItem::Kind::kImage;
  if (image_items != num_images) {
    throw Error("prompt has " + std::to_string(image_items) + " image marker(s) but " +
                std::to_string(num_images) + " image(s) were given");
  }
  TokenizedPrompt t = build_idefics_prompt(*tokenizer_, items);
  check_rows(t.token_ids);
  return t;
}

FamilyDefaults Pipeline::generation_defaults() const {
  FamilyDefaults o;
  for (const char* banned : {"<image>", "<fake_token_around_image>"}) {
    if (auto id = tokenizer_->token_to_id(banned)) o.banned_ids.push_back(*id);
  }
  const int32_t rows = static_cast<int32_t>(model_->config().total_vocab());
  for (int32_t id = 0; id < rows; ++id) {
    if (tokenizer_->has_token(id)) continue;
    o.banned_ids.push_back(id);
    if (!o.rows_without_tokens.empty() && o.rows_without_tokens.back().second == id - 1) {
      o.rows_without_tokens.back().second = id;
    } else {
      o.rows_without_tokens.emplace_back(id, id);
    }
  }
  if (tokenizer_->eos_id() >= 0) o.stop_ids.push_back(tokenizer_->eos_id());
  if (auto eou = tokenizer_->end_of_utterance_id()) {
    if (*eou < model_->config().total_vocab()) {
      o.stop_ids.push_back(*eou);
    } else {
      o.stop.push_back("<end_of_utterance>");  // no row: the model can only spell it out
    }
  }
  return o;
}

}  // namespace flamingo
