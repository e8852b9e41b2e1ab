// POST /v1/embeddings: see openai_embeddings.h.
#include "server/http/openai_embeddings.h"

#include <cstring>
#include <future>
#include <nlohmann/json.hpp>

#include "server/http/httplib_config.h"
#include "server/http/openai_generation.h"
#include "server/http/openai_response.h"
#include "server/metrics.h"

namespace flamingo {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& what) {
  throw HttpError(400, param + ": " + what, param);
}

std::string base64(const std::vector<float>& values) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes(values.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());  // little-endian float32, as OpenAI's
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t b0 = static_cast<uint8_t>(bytes[i]);
    const uint32_t b1 = i + 1 < bytes.size() ? static_cast<uint8_t>(bytes[i + 1]) : 0;
    const uint32_t b2 = i + 2 < bytes.size() ? static_cast<uint8_t>(bytes[i + 2]) : 0;
    const uint32_t v = b0 << 16 | b1 << 8 | b2;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[v & 63] : '=';
  }
  return out;
}

// An "input" array item that is an image: {"type": "image_url", "image_url": {"url": U}} (or
// "image_url": U).
std::string image_item(const json& item, const MediaPolicy& policy, const std::string& param) {
  const auto type = item.find("type");
  if (type == item.end() || *type != "image_url") {
    bad(param + ".type", "expected \"image_url\" (an input item is a string or an image)");
  }
  const auto iu = item.find("image_url");
  if (iu == item.end()) bad(param + ".image_url", "missing");
  const json* url = &*iu;
  if (iu->is_object()) {
    const auto u = iu->find("url");
    if (u == iu->end()) bad(param + ".image_url.url", "missing");
    url = &*u;
  }
  if (!url->is_string()) bad(param + ".image_url.url", "expected a string");
  return fetch_image(url->get<std::string>(), policy, param + ".image_url.url");
}

}  // namespace

EmbeddingsRequest parse_embeddings_request(std::string_view body, const MediaPolicy& policy) {
  const json root = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) bad("body", "not valid JSON");
  if (!root.is_object()) bad("body", "expected a JSON object");
  EmbeddingsRequest r;
  for (const auto& [key, value] : root.items()) {
    if (key == "model") {
      if (!value.is_string()) bad("model", "expected a string");
      r.model = value.get<std::string>();
    } else if (key == "encoding_format") {
      if (value != "float" && value != "base64")
        bad("encoding_format", "expected \"float\" or \"base64\"");
      r.base64 = value == "base64";
    } else if (key == "dimensions") {
      if (!value.is_number_integer() || value.get<int64_t>() < 1) {
        bad("dimensions", "expected a positive integer");
      }
      r.dimensions = value.get<int64_t>();
    } else if (key != "input" && key != "user") {
      bad(key.substr(0, 60),
          "unknown parameter (supported: input, model, encoding_format, "
          "dimensions, user)");
    }
  }
  const auto input = root.find("input");
  if (input == root.end()) bad("input", "missing (a string or an array of strings and images)");
  if (input->is_string()) {
    r.items.push_back({false, input->get<std::string>()});
  } else if (input->is_array()) {
    if (input->empty()) bad("input", "an empty array (give at least one string or image)");
    for (size_t i = 0; i < input->size(); ++i) {
      const json& item = (*input)[i];
      const std::string param = "input[" + std::to_string(i) + "]";
      if (item.is_string()) {
        r.items.push_back({false, item.get<std::string>()});
      } else if (item.is_object()) {
        r.items.push_back({true, image_item(item, policy, param)});
      } else {
        bad(param,
            "expected a string or an image_url object (token arrays are not supported: "
            "send text)");
      }
    }
  } else {
    bad("input", "expected a string or an array");
  }
  return r;
}

void handle_embeddings(std::string_view body, const MediaPolicy& policy,
                       const std::string& served_model, ClipEngine& engine,
                       const ClipRequestBuilder& builder, ServerMetrics& metrics,
                       httplib::Response& res) {
  std::string outcome = "ok";
  try {
    const EmbeddingsRequest r = parse_embeddings_request(body, policy);
    if (!r.model.empty() && r.model != served_model) {
      throw HttpError(404,
                      "the model '" + r.model.substr(0, 100) +
                          "' does not exist (this server "
                          "serves '" +
                          served_model + "')",
                      "model", "invalid_request_error", "model_not_found");
    }
    const int64_t dim = engine.description().projection_dim;
    if (r.dimensions != 0 && r.dimensions != dim) {
      bad("dimensions", "this CLIP's embeddings have " + std::to_string(dim) + " dimensions, got " +
                            std::to_string(r.dimensions));
    }
    EmbedInput in;
    std::vector<std::string> image_param;  // input[k] of images[j]
    std::vector<std::string> text_param;   // input[k] of texts[j]
    for (size_t k = 0; k < r.items.size(); ++k) {
      const std::string param = "input[" + std::to_string(k) + "]";
      if (r.items[k].image) {
        in.images.push_back({r.items[k].data, "images[" + std::to_string(in.images.size()) + "]"});
        image_param.push_back(param);
      } else {
        in.texts.push_back(r.items[k].data);
        text_param.push_back(param);
      }
    }
    EmbedJob job;
    try {
      job = builder.build_embed(in);
    } catch (const InvalidRequest& e) {
      // "images[j].data: ..." / "texts[j]: ..." -> the input item's parameter.
      std::string field = e.field(), message = e.what();
      for (const auto& [prefix, params] : {std::pair{std::string("images["), &image_param},
                                           {std::string("texts["), &text_param}}) {
        if (field.rfind(prefix, 0) != 0) continue;
        const size_t j = std::stoul(field.substr(prefix.size()));
        const std::string replaced = (*params)[j] + field.substr(field.find(']') + 1);
        message = replaced + message.substr(field.size());
        field = replaced;
      }
      if (field == "images" || field == "texts") field = "input";
      throw HttpError(400, message, field);
    }
    const std::vector<int32_t> truncated = job.truncated;
    int64_t tokens = 0;
    for (const auto& t : job.texts) tokens += static_cast<int64_t>(t.size());
    std::promise<EmbedOutcome> done;
    engine.submit(std::move(job), [&done](EmbedOutcome o) { done.set_value(std::move(o)); });
    const EmbedOutcome o = done.get_future().get();
    if (!o.ok) throw HttpError(500, "clip engine: " + o.message, "", "server_error");
    json data = json::array();
    size_t next_image = 0, next_text = 0;
    for (size_t k = 0; k < r.items.size(); ++k) {
      const std::vector<float>& e =
          r.items[k].image ? o.image_embeddings[next_image++] : o.text_embeddings[next_text++];
      data.push_back({{"object", "embedding"},
                      {"index", k},
                      {"embedding", r.base64 ? json(base64(e)) : json(e)}});
    }
    json truncated_inputs = json::array();
    for (int32_t j : truncated) truncated_inputs.push_back(text_param[j]);
    json response = {{"object", "list"},
                     {"data", data},
                     {"model", served_model},
                     {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}};
    if (!truncated_inputs.empty()) response["truncated"] = truncated_inputs;
    res.set_content(dump(response), "application/json");
  } catch (const HttpError& e) {
    outcome = e.status() == 404 || e.status() == 400 ? "invalid_argument" : "internal";
    send_error(res, e);
  }
  metrics.record_request("embeddings", outcome, "openai");
}

}  // namespace flamingo
