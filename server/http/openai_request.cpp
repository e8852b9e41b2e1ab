// OpenAI-style request bodies. See openai_request.h.
#include "server/http/openai_request.h"

#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "server/request_builder.h"

namespace flamingo {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& what) {
  throw HttpError(400, param + ": " + what, param);
}

const json* find(const json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string type_of(const json& v) { return v.type_name(); }

bool get_bool(const json& obj, const char* key, bool fallback) {
  const json* v = find(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) bad(key, "expected a boolean, got " + type_of(*v));
  return v->get<bool>();
}

double get_number(const json& obj, const char* key, double fallback) {
  const json* v = find(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_number()) bad(key, "expected a number, got " + type_of(*v));
  return v->get<double>();
}

// An integer in [lo, hi]; fractional or out-of-range numbers are refused.
int64_t get_integer(const json& obj, const char* key, int64_t fallback, int64_t lo, int64_t hi) {
  const json* v = find(obj, key);
  if (v == nullptr) return fallback;
  if (v->is_number_integer()) {
    const bool too_big = v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi);
    const int64_t x = too_big ? hi : v->get<int64_t>();
    if (too_big || x < lo || x > hi) {
      bad(key,
          "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v->dump());
    }
    return x;
  }
  bad(key, "expected an integer, got " + (v->is_number() ? v->dump() : type_of(*v)));
}

// Keys that would change what the answer means and that we do not implement.
void refuse_unsupported(const json& body) {
  for (const char* key : {"tools", "tool_choice", "functions", "function_call", "suffix"}) {
    if (find(body, key) != nullptr) bad(key, "not supported by this server (refused, not ignored)");
  }
  if (const json* rf = find(body, "response_format")) {
    const bool text = rf->is_object() && rf->contains("type") && (*rf)["type"] == "text";
    if (!text) bad("response_format", "only {\"type\": \"text\"} is supported");
  }
  if (const json* lb = find(body, "logit_bias")) {
    if (!(lb->is_object() && lb->empty())) bad("logit_bias", "not supported by this server");
  }
  for (const char* key : {"presence_penalty", "frequency_penalty"}) {
    if (get_number(body, key, 0) != 0) {
      bad(key, "not supported by this server (only 0); repetition_penalty is our extension");
    }
  }
  if (get_bool(body, "echo", false)) bad("echo", "not supported by this server");
  if (get_integer(body, "best_of", 1, 0, 1 << 20) > 1) bad("best_of", "only 1 is supported");
}

float get_float(const json& body, const char* key, float fallback) {
  const double d = get_number(body, key, fallback);
  if (!std::isfinite(d) || std::fabs(d) > std::numeric_limits<float>::max()) {
    bad(key, "must be a finite number");
  }
  return static_cast<float>(d);
}

OpenAIParams parse_params(const json& body, const MediaPolicy& policy,
                          const std::set<std::string>& endpoint_keys) {
  static const std::set<std::string> kKnown = {
      "model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "n",
      "logprobs", "top_logprobs", "stream", "stream_options", "top_k", "repetition_penalty",
      "ignore_eos", "user", "metadata", "store", "parallel_tool_calls", "service_tier",
      // Refused or checked by refuse_unsupported (so not "ignored").
      "tools", "tool_choice", "functions", "function_call", "suffix", "response_format",
      "logit_bias", "presence_penalty", "frequency_penalty", "echo", "best_of"};
  refuse_unsupported(body);
  OpenAIParams p;
  for (const auto& [key, value] : body.items()) {
    if (!kKnown.count(key) && !endpoint_keys.count(key)) p.ignored.push_back(key);
  }
  if (const json* m = find(body, "model")) {
    if (!m->is_string()) bad("model", "expected a string, got " + type_of(*m));
    p.model = m->get<std::string>();
  }
  constexpr int64_t kI32 = std::numeric_limits<int32_t>::max();
  if (find(body, "max_completion_tokens") != nullptr) {
    p.max_tokens_key = "max_completion_tokens";
    p.max_tokens = static_cast<int32_t>(get_integer(body, "max_completion_tokens", 0, 1, kI32));
  } else {
    p.max_tokens = static_cast<int32_t>(get_integer(body, "max_tokens", 0, 1, kI32));
  }
  p.sampling.temperature = get_float(body, "temperature", 1.f);
  p.sampling.top_p = get_float(body, "top_p", 1.f);
  if (find(body, "top_p") != nullptr && p.sampling.top_p == 0.f) {
    bad("top_p", "must be in (0, 1], got 0");  // 0 would mean "unset" downstream
  }
  p.sampling.top_k = static_cast<int32_t>(get_integer(body, "top_k", 0, -1, kI32));
  if (p.sampling.top_k == -1) p.sampling.top_k = 0;  // vLLM's "off"
  p.sampling.repetition_penalty = get_float(body, "repetition_penalty", 0.f);
  if (find(body, "repetition_penalty") != nullptr && p.sampling.repetition_penalty == 0.f) {
    bad("repetition_penalty", "must be in (0, 100], got 0");
  }
  p.sampling.seed = static_cast<uint64_t>(get_integer(
      body, "seed", 0, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
  if (const json* stop = find(body, "stop")) {
    if (stop->is_string()) {
      p.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (size_t i = 0; i < stop->size(); ++i) {
        if (!(*stop)[i].is_string()) {
          bad("stop[" + std::to_string(i) + "]", "expected a string, got " + type_of((*stop)[i]));
        }
        p.stop.push_back((*stop)[i].get<std::string>());
      }
    } else {
      bad("stop", "expected a string or an array of strings, got " + type_of(*stop));
    }
  }
  p.n = static_cast<int32_t>(get_integer(body, "n", 1, 1, std::numeric_limits<int32_t>::max()));
  if (p.n > policy.max_n) {
    bad("n", std::to_string(p.n) + " choices exceed the limit " + std::to_string(policy.max_n) +
                 " (--max-choices)");
  }
  p.stream = get_bool(body, "stream", false);
  if (const json* so = find(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "expected an object, got " + type_of(*so));
    if (!p.stream) bad("stream_options", "only allowed with \"stream\": true");
    p.include_usage = get_bool(*so, "include_usage", false);
  }
  p.ignore_eos = get_bool(body, "ignore_eos", false);
  return p;
}

json parse_body(std::string_view body) {
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a huge number
    throw HttpError(400, std::string("body: not valid JSON: ") + e.what(), "body");
  }
  if (!doc.is_object()) {
    throw HttpError(400, "body: must be a JSON object, got " + type_of(doc), "body");
  }
  return doc;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string read_local_image(std::string_view url, const MediaPolicy& policy,
                             const std::string& param) {
  namespace fs = std::filesystem;
  if (policy.allowed_local_media_path.empty()) {
    bad(param, "file:// URLs are refused (start the server with --allowed-local-media-path DIR)");
  }
  std::string_view path = url.substr(7);  // after "file://"
  if (starts_with(path, "localhost/")) path.remove_prefix(9);
  if (!starts_with(path, "/")) bad(param, "a file:// URL needs an absolute path");
  std::error_code ec;
  const fs::path real = fs::canonical(fs::path(std::string(path)), ec);
  if (ec) bad(param, "cannot open the file: " + ec.message());
  const fs::path root = fs::canonical(fs::path(policy.allowed_local_media_path), ec);
  if (ec) bad(param, "the --allowed-local-media-path folder cannot be opened: " + ec.message());
  const auto [root_end, real_it] =
      std::mismatch(root.begin(), root.end(), real.begin(), real.end());
  if (root_end != root.end()) bad(param, "the file is outside --allowed-local-media-path");
  if (!fs::is_regular_file(real, ec)) bad(param, "not a regular file");
  const uintmax_t size = fs::file_size(real, ec);
  if (ec) bad(param, "cannot read the file: " + ec.message());
  if (size > static_cast<uintmax_t>(policy.max_image_bytes)) {
    bad(param, std::to_string(size) + " bytes exceed the limit " +
                   std::to_string(policy.max_image_bytes) + " (--max-image-bytes)");
  }
  std::ifstream in(real, std::ios::binary);
  std::string bytes(size, '\0');
  if (!in.read(bytes.data(), static_cast<std::streamsize>(size)))
    bad(param, "cannot read the file");
  return bytes;
}

std::vector<ChatContentPart> parse_content(const json& content, const std::string& path,
                                           const MediaPolicy& policy, ChatRequest& out) {
  std::vector<ChatContentPart> parts;
  if (content.is_string()) {
    parts.push_back(ChatContentPart::of_text(content.get<std::string>()));
    return parts;
  }
  if (!content.is_array()) {
    bad(path, "expected a string or an array of content parts, got " + type_of(content));
  }
  if (content.empty()) bad(path, "empty list of content parts");
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string ppath = path + "[" + std::to_string(i) + "]";
    if (!part.is_object()) bad(ppath, "expected an object, got " + type_of(part));
    const json* type = find(part, "type");
    if (type == nullptr || !type->is_string()) bad(ppath + ".type", "missing (text or image_url)");
    const std::string t = type->get<std::string>();
    if (t == "text") {
      const json* text = find(part, "text");
      if (text == nullptr || !text->is_string()) bad(ppath + ".text", "expected a string");
      parts.push_back(ChatContentPart::of_text(text->get<std::string>()));
    } else if (t == "image_url") {
      const std::string ipath = ppath + ".image_url";
      const json* iu = find(part, "image_url");
      std::string url;
      if (iu != nullptr && iu->is_string()) {
        url = iu->get<std::string>();
      } else if (iu != nullptr && iu->is_object() && find(*iu, "url") != nullptr &&
                 (*iu)["url"].is_string()) {
        url = (*iu)["url"].get<std::string>();
      } else {
        bad(ipath, "expected {\"url\": \"...\"} or a URL string");
      }
      out.images.push_back(fetch_image(url, policy, ipath));
      out.image_paths.push_back(ipath);
      parts.push_back(ChatContentPart::of_image(static_cast<int32_t>(out.images.size() - 1)));
    } else {
      bad(ppath + ".type",
          "unsupported content part type '" + t.substr(0, 40) + "' (supported: text, image_url)");
    }
  }
  return parts;
}

int base64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;  // standard and URL-safe alphabets
  if (c == '/' || c == '_') return 63;
  return -1;
}

}  // namespace

std::string fetch_image(std::string_view url, const MediaPolicy& policy, const std::string& param) {
  if (starts_with(url, "data:")) return decode_data_url(url, policy.max_image_bytes, param);
  if (starts_with(url, "file://")) return read_local_image(url, policy, param);
  if (starts_with(url, "http://") || starts_with(url, "https://")) {
    ImageFetchPolicy fetch = policy.fetch;
    fetch.max_bytes = policy.max_image_bytes;
    return fetch_image_url(url, fetch, param);
  }
  bad(param, "expected a data:, file:// or http(s):// URL");
}

HttpError::HttpError(int status, std::string message, std::string param, std::string type,
                     std::string code)
    : std::runtime_error(std::move(message)),
      status_(status),
      param_(std::move(param)),
      type_(std::move(type)),
      code_(std::move(code)) {
  if (type_.empty()) {
    type_ = status_ == 429   ? "rate_limit_error"
            : status_ == 404 ? "not_found_error"
            : status_ >= 500 ? "server_error"
                             : "invalid_request_error";
  }
}

HttpError HttpError::from_invalid(const InvalidRequest& e,
                                  const std::vector<std::string>& part_paths,
                                  const std::string& prompt_param,
                                  const std::string& max_tokens_key) {
  const std::string& field = e.field();
  const std::string what = e.what();
  const std::string detail = what.size() > field.size() + 2 ? what.substr(field.size() + 2) : what;
  std::string param = field;
  if (field == "max_new_tokens") {
    param = max_tokens_key;
  } else if (starts_with(field, "sampling.")) {
    param = field.substr(9);
  } else if (starts_with(field, "prompt[")) {
    const size_t close = field.find(']');
    const size_t k = std::stoul(field.substr(7, close - 7));
    std::string rest = field.substr(close + 1);
    // The path already names the image.
    if (starts_with(rest, ".image.data")) {
      rest = rest.substr(11);
    } else if (starts_with(rest, ".image")) {
      rest = rest.substr(6);
    }
    // A text part may hold text of several messages: then the prompt as a whole.
    param = k < part_paths.size() && !part_paths[k].empty() ? part_paths[k] + rest : prompt_param;
  } else if (field == "prompt") {
    param = prompt_param;
  }
  return HttpError(400, param + ": " + detail, param);
}

std::string decode_data_url(std::string_view url, int64_t max_bytes, const std::string& param) {
  const size_t comma = url.find(',');
  if (!starts_with(url, "data:") || comma == std::string_view::npos) {
    bad(param, "malformed data: URL (expected data:image/png;base64,...)");
  }
  const std::string_view meta = url.substr(5, comma - 5);
  if (meta.size() < 7 || meta.substr(meta.size() - 7) != ";base64") {
    bad(param, "the data: URL must be base64 (data:image/...;base64,...)");
  }
  if (!starts_with(meta, "image/")) bad(param, "the data: URL's media type must be image/...");
  const std::string_view data = url.substr(comma + 1);
  if (static_cast<int64_t>(data.size() / 4 * 3) > max_bytes + 3) {
    bad(param, "about " + std::to_string(data.size() / 4 * 3) + " bytes exceed the limit " +
                   std::to_string(max_bytes) + " (--max-image-bytes)");
  }
  std::string out;
  out.reserve(data.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(data[i]);
    if (c == '=') {
      ++pad;
      continue;
    }
    const int v = base64_value(c);
    if (v < 0 || pad > 0) {
      bad(param, "invalid base64 at offset " + std::to_string(i) + " of the data");
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if (pad > 2 || bits >= 6) bad(param, "invalid base64 (the data is truncated)");
  if (out.empty()) bad(param, "empty image data");
  return out;
}

ChatRequest parse_chat_request(std::string_view body, const MediaPolicy& policy) {
  const json doc = parse_body(body);
  ChatRequest r;
  r.params = parse_params(doc, policy, {"messages"});
  r.params.logprobs = get_bool(doc, "logprobs", false);
  r.params.top_logprobs = static_cast<int32_t>(
      get_integer(doc, "top_logprobs", 0, 0, std::numeric_limits<int32_t>::max()));
  if (r.params.top_logprobs > 0 && !r.params.logprobs) {
    bad("top_logprobs", "needs \"logprobs\": true");
  }
  const json* messages = find(doc, "messages");
  if (messages == nullptr) bad("messages", "missing");
  if (!messages->is_array()) bad("messages", "expected an array, got " + type_of(*messages));
  if (messages->empty()) bad("messages", "empty (send at least one message)");
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string path = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad(path, "expected an object, got " + type_of(m));
    const json* role = find(m, "role");
    if (role == nullptr || !role->is_string()) bad(path + ".role", "missing or not a string");
    ChatMessage msg;
    msg.role = role->get<std::string>();
    if (const json* content = find(m, "content")) {
      msg.content = parse_content(*content, path + ".content", policy, r);
    } else if (msg.role != "assistant") {
      bad(path + ".content", "missing");
    }
    r.messages.push_back(std::move(msg));
  }
  return r;
}

CompletionRequest parse_completion_request(std::string_view body, const MediaPolicy& policy) {
  const json doc = parse_body(body);
  CompletionRequest r;
  r.params = parse_params(doc, policy, {"prompt"});
  // The legacy API: "logprobs" is the number of top alternatives per token (0 .. the limit).
  if (find(doc, "logprobs") != nullptr) {
    r.params.logprobs = true;
    r.params.top_logprobs = static_cast<int32_t>(
        get_integer(doc, "logprobs", 0, 0, std::numeric_limits<int32_t>::max()));
  }
  const json* prompt = find(doc, "prompt");
  if (prompt == nullptr) bad("prompt", "missing");
  if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
    r.prompt = (*prompt)[0].get<std::string>();
  } else if (prompt->is_string()) {
    r.prompt = prompt->get<std::string>();
  } else {
    bad("prompt",
        "expected a string (token ids and several prompts per request are not supported)");
  }
  return r;
}

}  // namespace flamingo
