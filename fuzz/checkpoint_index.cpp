// Fuzz target: a checkpoint folder's model.safetensors.index.json (its JSON, the weight_map,
// shard names, keys against their shards) as Checkpoint::open reads it, beside two valid
// shards written once into a scratch folder: a.safetensors ("x" F32 [2], "y" BF16 [3]) and
// b.safetensors ("z" I8 [4]). Every key the checkpoint then lists must be found and lie inside
// its mapping. Errors are flamingo::Error.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "fuzz/scratch_folder.h"
#include "model/error.h"
#include "model/safetensors.h"

namespace {

void write_shard(const std::string& path, const std::string& header, size_t data_bytes) {
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(n >> (8 * i) & 0xff));
  out << header << std::string(data_bytes, '\x01');
}

const std::string& folder() {
  return flamingo::fuzz::scratch_folder("fuzz_checkpoint_index", [](const std::string& d) {
    write_shard(d + "/a.safetensors",
                R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                R"( "y": {"dtype": "BF16", "shape": [3], "data_offsets": [8, 14]}})",
                14);
    write_shard(d + "/b.safetensors",
                R"({"z": {"dtype": "I8", "shape": [4], "data_offsets": [0, 4]}})", 4);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = folder();
  {
    std::ofstream out(dir + "/model.safetensors.index.json", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const flamingo::Checkpoint c = flamingo::Checkpoint::open(dir);
    for (const std::string& name : c.names()) {
      const flamingo::TensorView* t = c.find(name);
      if (t == nullptr) __builtin_trap();
      if (t->nbytes > 0) {
        volatile std::byte first = t->data[0], last = t->data[t->nbytes - 1];
        (void)first;
        (void)last;
      }
    }
  } catch (const flamingo::Error&) {
  }
  return 0;
}
