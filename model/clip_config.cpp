#include "model/clip_config.h"

#include "model/config_reader.h"

namespace flamingo {
namespace {

ClipTextConfig parse_text(const json& obj, const std::string& source) {
  check_model_type(obj, "text_config.model_type", source, {"clip_text_model"});
  Reader r(obj, source, "text_config.");
  ClipTextConfig t;
  r.get("vocab_size", t.vocab_size);
  r.get("hidden_size", t.hidden_size);
  r.get("intermediate_size", t.intermediate_size);
  r.get("num_hidden_layers", t.num_hidden_layers);
  r.get("num_attention_heads", t.num_attention_heads);
  r.get("max_position_embeddings", t.max_position_embeddings);
  r.get("layer_norm_eps", t.layer_norm_eps);
  r.get("hidden_act", t.hidden_act);
  r.get("pad_token_id", t.pad_token_id);
  r.get("bos_token_id", t.bos_token_id);
  r.get("eos_token_id", t.eos_token_id);
  for (auto [key, value] :
       {std::pair{"vocab_size", t.vocab_size}, std::pair{"hidden_size", t.hidden_size},
        std::pair{"intermediate_size", t.intermediate_size},
        std::pair{"num_hidden_layers", t.num_hidden_layers},
        std::pair{"num_attention_heads", t.num_attention_heads},
        std::pair{"max_position_embeddings", t.max_position_embeddings}}) {
    r.positive(key, value);
  }
  if (t.hidden_size % t.num_attention_heads != 0) {
    r.fail("hidden_size",
           "a multiple of num_attention_heads " + std::to_string(t.num_attention_heads),
           std::to_string(t.hidden_size));
  }
  r.check_activation("hidden_act", t.hidden_act);
  return t;
}

}  // namespace

ClipConfig parse_clip_config(const std::string& json_text, const std::string& source) {
  const json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) throw Error(source + ": malformed JSON");
  if (!root.is_object()) throw Error(source + ": expected a JSON object at the top level");
  if (!root.contains("model_type")) {
    throw Error(source + ": missing key 'model_type' (expected \"clip\")");
  }
  check_model_type(root, "model_type", source, {"clip"});
  Reader r(root, source, "");
  ClipConfig c;
  r.get("projection_dim", c.projection_dim);
  r.get("logit_scale_init_value", c.logit_scale_init_value);
  r.positive("projection_dim", c.projection_dim);
  if (auto it = root.find("text_config"); it != root.end() && !it->is_null()) {
    if (!it->is_object()) r.fail("text_config", "an object", it->dump());
    c.text = parse_text(*it, source);
  }
  if (auto it = root.find("vision_config"); it != root.end() && !it->is_null()) {
    if (!it->is_object()) r.fail("vision_config", "an object", it->dump());
    c.vision =
        parse_vision_config(*it, source, ClipConfig::clip_vision_defaults(), {"clip_vision_model"});
  }
  return c;
}

ClipConfig load_clip_config(const std::string& dir) {
  std::string path;
  const std::string text = read_config_json(dir, "a CLIP", &path);
  return parse_clip_config(text, path);
}

}  // namespace flamingo
