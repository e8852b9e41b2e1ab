// OpenAI-style response bodies. See openai_response.h.
#include "server/http/openai_response.h"

#include <cstdio>

#include "model/tokenizer.h"
#include "server/http/openai_request.h"

namespace flamingo {
namespace {

using nlohmann::json;

const char* object_name(ApiKind api, bool chunk) {
  if (api == ApiKind::kChat) return chunk ? "chat.completion.chunk" : "chat.completion";
  return "text_completion";
}

json top_entry(ApiKind api, const Tokenizer& tok, int32_t id, double logprob) {
  const TokenText t = token_text(tok, id);
  if (api == ApiKind::kChat) return {{"token", t.text}, {"logprob", logprob}, {"bytes", t.bytes}};
  return {{t.text, logprob}};
}

json header(ApiKind api, const ResponseHeader& h, bool chunk) {
  return {{"id", h.id},
          {"object", object_name(api, chunk)},
          {"created", h.created},
          {"model", h.model}};
}

}  // namespace

TokenText token_text(const Tokenizer& tok, int32_t id) {
  TokenText out;
  if (!tok.has_token(id)) return out;  // a padded vocabulary's row (never sampled): empty
  std::string piece = tok.id_to_piece(id);
  unsigned byte = 0;
  if (piece.size() == 6 && piece.rfind("<0x", 0) == 0 && piece[5] == '>' &&
      std::sscanf(piece.c_str() + 3, "%2x", &byte) == 1) {
    out.text = std::string(1, static_cast<char>(byte));
  } else {
    static const std::string kSpace = "\xE2\x96\x81";  // U+2581
    for (size_t at = piece.find(kSpace); at != std::string::npos; at = piece.find(kSpace, at + 1)) {
      piece.replace(at, kSpace.size(), " ");
    }
    out.text = std::move(piece);
  }
  for (unsigned char c : out.text) out.bytes.push_back(c);
  return out;
}

std::optional<std::string> openai_finish_reason(JobStatus s) {
  if (s == JobStatus::kStop) return "stop";
  if (s == JobStatus::kLength) return "length";
  return std::nullopt;
}

json logprobs_json(ApiKind api, const Tokenizer& tok, const std::vector<int32_t>& ids,
                   const std::vector<float>& logprobs,
                   const std::vector<std::vector<std::pair<int32_t, double>>>& top, bool with_top) {
  const size_t n = std::min(ids.size(), logprobs.size());
  if (api == ApiKind::kChat) {
    json content = json::array();
    for (size_t i = 0; i < n; ++i) {
      json e = top_entry(api, tok, ids[i], logprobs[i]);
      json alts = json::array();
      if (with_top && i < top.size()) {
        for (const auto& [id, lp] : top[i]) alts.push_back(top_entry(api, tok, id, lp));
      }
      e["top_logprobs"] = std::move(alts);
      content.push_back(std::move(e));
    }
    return {{"content", std::move(content)}};
  }
  json tokens = json::array(), lps = json::array(), tops = json::array();
  for (size_t i = 0; i < n; ++i) {
    tokens.push_back(token_text(tok, ids[i]).text);
    lps.push_back(logprobs[i]);
    json alts = json::object();
    if (with_top && i < top.size()) {
      for (const auto& [id, lp] : top[i]) alts[token_text(tok, id).text] = lp;
    }
    tops.push_back(std::move(alts));
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}};
}

json usage_json(int32_t prompt_tokens, int32_t completion_tokens, int32_t cached_prompt_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", cached_prompt_tokens}}}};
}

json completion_json(ApiKind api, const ResponseHeader& h, const std::vector<ChoiceResult>& choices,
                     const Tokenizer& tok, bool logprobs, bool with_top) {
  json out = header(api, h, false);
  json list = json::array();
  int32_t completion = 0, prompt = 0, cached = 0;
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    json choice = {{"index", i}};
    if (api == ApiKind::kChat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    } else {
      choice["text"] = c.text;
    }
    choice["logprobs"] =
        logprobs ? logprobs_json(api, tok, c.token_ids, c.logprobs, c.top_logprobs, with_top)
                 : json(nullptr);
    const std::optional<std::string> finish = openai_finish_reason(c.status);
    choice["finish_reason"] = finish ? json(*finish) : json(nullptr);
    list.push_back(std::move(choice));
    completion += c.completion_tokens;
    prompt = c.prompt_tokens;
    cached = std::max(cached, c.cached_prompt_tokens);
  }
  out["choices"] = std::move(list);
  out["usage"] = usage_json(prompt, completion, cached);
  return out;
}

json chunk_json(ApiKind api, const ResponseHeader& h, int32_t index, const std::string& text,
                bool first, const std::string* finish, json logprobs, bool include_usage) {
  json out = header(api, h, true);
  json choice = {{"index", index}};
  if (api == ApiKind::kChat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || (first && finish == nullptr)) delta["content"] = text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = std::move(logprobs);
  choice["finish_reason"] = finish != nullptr ? json(*finish) : json(nullptr);
  out["choices"] = json::array({std::move(choice)});
  if (include_usage) out["usage"] = nullptr;
  return out;
}

json usage_chunk_json(ApiKind api, const ResponseHeader& h, const json& usage) {
  json out = header(api, h, true);
  out["choices"] = json::array();
  out["usage"] = usage;
  return out;
}

json error_json(const HttpError& e) {
  return {{"error",
           {{"message", e.what()},
            {"type", e.type()},
            {"param", e.param().empty() ? json(nullptr) : json(e.param())},
            {"code", e.code().empty() ? json(nullptr) : json(e.code())}}}};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace flamingo
