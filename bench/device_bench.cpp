// flamingo-bench --device cuda (device_bench.h).
#include "bench/device_bench.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "bench/timing.h"
#include "model/error.h"

#if FLAMINGO_HAVE_CUDA_KERNELS
#include "gpu/bench_util.cuh"
#include "kernels/cuda/bf16_bits.h"
#include "kernels/cuda/decoder_ops.h"
#include "model/config.h"
#include "model/cuda_decoder.h"
#include "model/cuda_decoder_checkpoint.h"
#include "model/safetensors.h"
#endif

namespace flamingo::bench {

bool device_bench_host_ops() {
  const char* v = std::getenv("FLAMINGO_BENCH_HOST_OPS");
  return v != nullptr && std::string(v) == "1";
}

#if FLAMINGO_HAVE_CUDA_KERNELS

namespace {

constexpr int64_t kContext = 64;  // tokens prefilled per sequence before its decode steps
constexpr int64_t kWarmup = 2;    // untimed decode steps per batch size
constexpr int64_t kBlock = 16;
const std::vector<int64_t> kPrefillTokens = {128, 512};

// `count` tokens of sequence `seq` from `position` on, all seeing image 0; the last one's
// logits returned. Blocks: sequence s owns blocks [s * per_seq, (s + 1) * per_seq).
void add_tokens(FlatBatch& b, int64_t seq, int64_t position, int64_t count, int64_t per_seq) {
  const auto row = static_cast<int32_t>(b.block_tables.size());
  b.block_tables.emplace_back();
  for (int64_t k = 0; k < per_seq; ++k) {
    b.block_tables.back().push_back(static_cast<int32_t>(seq * per_seq + k));
  }
  for (int64_t t = 0; t < count; ++t) {
    const int64_t pos = position + t;
    b.token_ids.push_back(static_cast<int32_t>(5 + (seq * 7 + pos) % 97));
    b.positions.push_back(static_cast<int32_t>(pos));
    b.seq_of_token.push_back(row);
    b.slots.push_back((seq * per_seq + pos / kBlock) * kBlock + pos % kBlock);
    b.image_of_token.push_back(0);
  }
  b.logit_rows.push_back(static_cast<int32_t>(b.token_ids.size() - 1));
}

// Random latents for one image, uniform in about [-1, 1], as bfloat16.
std::vector<uint16_t> random_latents(int64_t count) {
  std::vector<uint16_t> v(count);
  uint64_t state = 0x9e3779b97f4a7c15ull;
  for (auto& e : v) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    e = kernels::cuda::round_bf16(
        static_cast<float>(static_cast<int64_t>(state >> 40) - (int64_t{1} << 23)) * 0x1p-23f);
  }
  return v;
}

}  // namespace

bool device_bench_available(bool host_ops, std::string* why) {
  return host_ops || kernels::cuda::device_available(why);
}

nlohmann::json run_device_bench(const DeviceBenchOptions& o) {
  std::string why;
  if (!device_bench_available(o.host_ops, &why)) throw Error("--device cuda: " + why);
  const ModelConfig config = load_model_config(o.model_dir);
  const Checkpoint checkpoint = Checkpoint::open(o.model_dir);
  const int64_t max_batch = *std::max_element(o.batches.begin(), o.batches.end());
  const int64_t positions =
      std::max(kPrefillTokens.back(), kContext + kWarmup + o.steps);  // per sequence
  if (config.max_position_embeddings < positions) {
    throw Error(o.model_dir + ": max_position_embeddings " +
                std::to_string(config.max_position_embeddings) + " is below the " +
                std::to_string(positions) + " positions the benchmark needs");
  }
  const int64_t per_seq = (positions + kBlock - 1) / kBlock;
  const CudaDecoderConfig c =
      CudaDecoderConfig::from(config, positions, std::max<int64_t>(max_batch, 1) * per_seq, kBlock);

  std::string device_name = "host (FLAMINGO_BENCH_HOST_OPS: the kernels' CPU references)";
  double copy_gbps = 0;
  if (!o.host_ops) {
    cudaDeviceProp prop{};
    gpu_bench::check(cudaGetDeviceProperties(&prop, 0), "properties");
    device_name = prop.name;
    copy_gbps = gpu_bench::copy_gbps();
  }
  auto ops = o.host_ops ? kernels::cuda::make_host_ops() : kernels::cuda::make_device_ops(nullptr);
  std::unique_ptr<CudaDecoder> d;
  const double load_s = seconds([&] {
    d = std::make_unique<CudaDecoder>(c, *ops, cuda_decoder_weights(checkpoint, config));
  });
  const int64_t step_bytes = d->step_read_bytes();
  CudaDecoderImage image =
      d->image_kv(random_latents(config.image_tokens() * c.image_dim), config.image_tokens());
  const std::vector<const CudaDecoderImage*> images = {&image};
  std::printf(
      "\n== device %s: %s (bfloat16 weights, %.2f GB uploaded in %.1f s; a decode step reads "
      "%.3f GB) ==\n",
      device_name.c_str(), o.model_dir.c_str(), d->weight_bytes() / 1e9, load_s, step_bytes / 1e9);
  if (!o.host_ops) {
    std::printf("  device copy bandwidth (read + write): %.0f GB/s\n", copy_gbps);
  }
  nlohmann::json out = {{"device", "cuda"},
                        {"device_name", device_name},
                        {"copy_gbps", copy_gbps},
                        {"weights", "bfloat16"},
                        {"dtype", "bfloat16"},
                        {"load_s", load_s},
                        {"model_weight_bytes", d->weight_bytes()},
                        {"decode_weight_bytes_per_step", step_bytes}};

  std::printf("  prefill, one sequence seeing one image (median of 3):\n  %8s %10s %10s\n",
              "tokens", "ms", "tokens/s");
  for (int64_t tokens : kPrefillTokens) {
    FlatBatch b;
    add_tokens(b, 0, 0, tokens, per_seq);
    const double s = median(timed_runs(3, [&] { d->forward(b, images); }));
    std::printf("  %8lld %10.2f %10.0f\n", static_cast<long long>(tokens), s * 1e3, tokens / s);
    out["prefill"].push_back({{"tokens", tokens}, {"ms", s * 1e3}, {"tokens_per_s", tokens / s}});
  }

  std::printf(
      "  decode, every sequence after a %lld-token prefill (median of %lld steps):\n"
      "  %6s %10s %12s %8s %10s\n",
      static_cast<long long>(kContext), static_cast<long long>(o.steps), "batch", "step ms",
      "weights GB/s", "% copy", "tokens/s");
  for (int64_t batch : o.batches) {
    for (int64_t s = 0; s < batch; ++s) {  // untimed: one sequence per forward
      FlatBatch p;
      add_tokens(p, s, 0, kContext, per_seq);
      d->forward(p, images);
    }
    std::vector<double> times;
    for (int64_t step = 0; step < kWarmup + o.steps; ++step) {
      FlatBatch b;
      for (int64_t s = 0; s < batch; ++s) add_tokens(b, s, kContext + step, 1, per_seq);
      const double t = seconds([&] { d->forward(b, images); });
      if (step >= kWarmup) times.push_back(t);
    }
    const double t = median(times);
    const double gbps = step_bytes / t / 1e9;
    const double fraction = copy_gbps > 0 ? gbps / copy_gbps : 0;
    std::printf("  %6lld %10.3f %12.1f %7.0f%% %10.0f\n", static_cast<long long>(batch), t * 1e3,
                gbps, 100 * fraction, batch / t);
    out["decode"].push_back({{"batch", batch},
                             {"step_ms", t * 1e3},
                             {"weight_gbps", gbps},
                             {"copy_fraction", fraction},
                             {"tokens_per_s", batch / t}});
  }
  d->release_image(image);
  return out;
}

#else  // a build without nvcc

bool device_bench_available(bool, std::string* why) {
  if (why != nullptr)
    *why = "this build has no CUDA kernels (nvcc was not found when it was built)";
  return false;
}

nlohmann::json run_device_bench(const DeviceBenchOptions&) {
  throw Error(
      "--device cuda: this build has no CUDA kernels (nvcc was not found when it was built)");
}

#endif

}  // namespace flamingo::bench
