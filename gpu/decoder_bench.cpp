// Times CudaDecoder's decode step (model/cuda_decoder.h: the CUDA kernels in sequence) on the
// GPU with IDEFICS-9b's decoder shape (LLaMA-7B: hidden 4096, 32 layers of 32 heads,
// intermediate 11008, a gated cross-attention layer before every 4th, vocab 32002; images of
// 64 latents of width 1280), random bfloat16 weights, at 1, 16 and 64 sequences of 512 cached
// positions each seeing one image: step ms (best of 10 after 2 warm-up steps, logits copied to
// the host), the weight bytes a step reads / step time against the device's copy bandwidth
// measured in the same run (issue 13's target: >= 80% at batch 1), tokens/s. Prints a table and
// writes JSON to the file given as the first argument. Exits 77 without a device.
// `decoder_bench --host-dry-run` runs the same code on a small shape through HostOps (the
// kernels' CPU references): a check of the bench itself on a machine without a GPU.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "gpu/bench_util.cuh"
#include "kernels/cuda/bf16_bits.h"
#include "model/cuda_decoder.h"

int main(int argc, char** argv) {
  const bool dry = argc > 1 && std::string(argv[1]) == "--host-dry-run";
  if (!dry && !flamingo::gpu_bench::have_device("decoder_bench")) return 77;
  cudaDeviceProp prop{};
  double copy_gbps = 1;
  if (!dry) {
    flamingo::gpu_bench::check(cudaGetDeviceProperties(&prop, 0), "properties");
    copy_gbps = flamingo::gpu_bench::copy_gbps();
  } else {
    std::snprintf(prop.name, sizeof prop.name, "host (dry run)");
  }
  flamingo::CudaDecoderConfig c;
  c.hidden = dry ? 128 : 4096;
  c.heads = dry ? 4 : 32;
  c.intermediate = dry ? 256 : 11008;
  c.layers = dry ? 4 : 32;
  c.cross_interval = 4;
  c.vocab = dry ? 1000 : 32002;
  c.image_dim = dry ? 64 : 1280;
  c.max_positions = 2048;
  c.block_size = 16;
  const int64_t context = dry ? 64 : 512, max_batch = 64;
  c.num_blocks = max_batch * context / c.block_size;
  uint64_t state = 0x9e3779b97f4a7c15ull;
  auto random_bf16 = [&](const std::string&, const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::vector<uint16_t> v(n);
    for (auto& e : v) {  // xorshift64: uniform in about [-0.03, 0.03]
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      e = flamingo::kernels::cuda::round_bf16(
          static_cast<float>(static_cast<int64_t>(state >> 40) - (int64_t{1} << 23)) * 0x1p-28f);
    }
    return v;
  };
  auto ops = dry ? flamingo::kernels::cuda::make_host_ops()
                 : flamingo::kernels::cuda::make_device_ops(nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  flamingo::CudaDecoder d(c, *ops, random_bf16);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t read_bytes = d.step_read_bytes();
  flamingo::CudaDecoderImage image = d.image_kv(random_bf16("latents", {64, c.image_dim}), 64);
  std::printf(
      "device %s; copy bandwidth (read + write) %.0f GB/s; %.2f GB of weights uploaded "
      "in %.1f s; a step reads %.2f GB\n",
      prop.name, copy_gbps, d.weight_bytes() / 1e9, load_s, read_bytes / 1e9);
  std::printf("%6s %10s %10s %8s %10s\n", "batch", "step ms", "GB/s", "% copy", "tokens/s");
  std::string json = "{\"device\": \"" + std::string(prop.name) +
                     "\", \"copy_gbps\": " + std::to_string(copy_gbps) +
                     ", \"step_weight_bytes\": " + std::to_string(read_bytes) + ", \"runs\": [";
  bool first = true;
  for (int64_t batch : {1, 16, 64}) {
    flamingo::FlatBatch b;
    for (int64_t s = 0; s < batch; ++s) {
      b.block_tables.emplace_back();
      for (int64_t k = 0; k < context / c.block_size; ++k) {
        b.block_tables.back().push_back(static_cast<int32_t>(s * context / c.block_size + k));
      }
      b.token_ids.push_back(static_cast<int32_t>(100 + s));
      b.positions.push_back(static_cast<int32_t>(context - 1));
      b.seq_of_token.push_back(static_cast<int32_t>(s));
      b.slots.push_back(s * context + context - 1);
      b.image_of_token.push_back(0);
      b.logit_rows.push_back(static_cast<int32_t>(s));
    }
    double best = 1e30;
    for (int rep = 0; rep < 12; ++rep) {
      const auto a = std::chrono::steady_clock::now();
      d.forward(b, {&image});
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
      if (rep >= 2 && ms < best) best = ms;
    }
    const double gbps = read_bytes / (best * 1e-3) / 1e9;
    std::printf("%6ld %10.2f %10.0f %7.0f%% %10.0f\n", static_cast<long>(batch), best, gbps,
                100.0 * gbps / copy_gbps, batch * 1e3 / best);
    json += std::string(first ? "" : ", ") + "{\"batch\": " + std::to_string(batch) +
            ", \"step_ms\": " + std::to_string(best) +
            ", \"weight_gbps\": " + std::to_string(gbps) + "}";
    first = false;
  }
  d.release_image(image);
  json += "]}\n";
  if (argc > 1 && !dry) flamingo::gpu_bench::write_file(argv[1], json);
  return 0;
}
