// Fuzz target: config.json text (IdeficsConfig and its nested vision / perceiver configs) as
// parse_model_config reads it. Errors are flamingo::Error.
#include "model/config.h"

#include <cstddef>
#include <cstdint>
#include <string>

#include "model/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const flamingo::ModelConfig c = flamingo::parse_model_config(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    (void)c.total_vocab();
    (void)c.num_cross_layers();
  } catch (const flamingo::Error&) {
  }
  return 0;
}
