// flamingo-bench: microbenchmark of FlamingoModel on the CPU. Measures, in the same run, the
// machine's limits (memory bandwidth, GEMM peak) and, per compute dtype, image encoding,
// prefill and batched decode; each decode step is set against the weight bytes it must read
// and against the same GEMVs run alone. A tool, not a test: figures go to stdout as a table
// (and as JSON with --json PATH); errors are one line on stderr and exit 1. Single-threaded
// driver; the products run on the kernel thread pool (--threads).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/device_bench.h"
#include "bench/gemv_floor.h"
#include "bench/machine_limits.h"
#include "bench/model_bench_args.h"
#include "bench/step_weights.h"
#include "bench/timing.h"
#include "kernels/thread_pool.h"
#include "model/config.h"
#include "model/error.h"
#include "model/flamingo.h"
#include "model/layers.h"

namespace flamingo::bench {
namespace {

constexpr int64_t kBlockSize = 16;
constexpr int64_t kImageFrom = 8;           // tokens at positions >= this attend to an image
constexpr int64_t kDecodeContext = 64;      // tokens prefilled per sequence before decode (untimed)
constexpr int64_t kQuickDecodeContext = 8;  // the same with --quick
constexpr int64_t kWarmupSteps = 2;
constexpr int kReps = 3;  // timed repetitions of machine, encode and prefill figures
// The adjacent read-bandwidth probe of the decode table: 8x the 32 MB L3 of the CPUs we run on
// (128 MiB read 5-10% faster than 256-1024 MiB on a Zen 5 VM), small beside a model (the peak
// RSS the bench reports includes it).
constexpr int64_t kAdjacentReadBytes = 256LL << 20;
constexpr double kGB = 1e9;
const std::vector<int64_t> kPrefillTokens = {128, 512};
const std::vector<int64_t> kDecodeBatches = {1,  2,  3,  4,  5,  6,  7,  8,  9,
                                             10, 11, 12, 13, 14, 15, 16, 32, 64};
const std::vector<int64_t> kQuickDecodeBatches = {1, 8, 16};

const char* dtype_name(at::ScalarType t) { return t == at::kBFloat16 ? "bfloat16" : "float32"; }

// --- machine limits ---------------------------------------------------------------------

struct Machine {
  int threads = 0;
  double copy_gbps = 0, read_gbps = 0, fma_peak_gflops = 0;
  double amx_bf16_peak_gflops = 0;  // 0: the kernels do not run AMX
  double bf16_dot_peak_gflops = 0;  // 0: the kernels do not run vdpbf16ps
  double int8_peak_gops = 0;        // 0: no int8 dot-product peak measured
  const char* int8_peak_name = "";
  std::map<std::string, double> gemm_gflops;  // by dtype name
};

// The arithmetic limit of a model's products: the AMX tile peak where they run on AMX
// (bfloat16 weights and activations, kernels/amx_product.h), the int8 dot-product peak for int8
// weights (AMX or vpdpbusd, kernels/int8_product.h), else the float32 FMA peak.
struct Peak {
  const char* name;
  double gflops;
};
Peak product_peak(const Machine& m, const FlamingoModel& model) {
  if (m.amx_bf16_peak_gflops > 0 && model.dtype() == at::kBFloat16 &&
      model.weight_type() == kernels::WeightType::kBFloat16) {
    return {"AMX bfloat16 tile peak", m.amx_bf16_peak_gflops};
  }
  if (m.bf16_dot_peak_gflops > 0 && model.dtype() == at::kBFloat16 &&
      model.weight_type() == kernels::WeightType::kBFloat16) {
    return {"bfloat16 vdpbf16ps peak", m.bf16_dot_peak_gflops};
  }
  if (m.int8_peak_gops > 0 && model.weight_type() == kernels::WeightType::kInt8) {
    return {m.int8_peak_name, m.int8_peak_gops};
  }
  return {"float32 FMA peak", m.fma_peak_gflops};
}

// Best of kReps copies of a 256 MiB float buffer; bytes counted = read + write.
double copy_bandwidth() {
  at::Tensor src = at::empty({(256LL << 20) / 4}, at::kFloat).fill_(1.0);
  at::Tensor dst = at::empty_like(src).fill_(0.0);
  const double t = best(timed_runs(kReps, [&] { dst.copy_(src); }));
  return 2.0 * static_cast<double>(src.nbytes()) / t / kGB;
}

// Best of kReps 2048^3 at::matmul in `dtype`.
double gemm_gflops(at::ScalarType dtype) {
  const int64_t n = 2048;
  at::Tensor a = at::rand({n, n}, at::TensorOptions(dtype));
  at::Tensor b = at::rand({n, n}, at::TensorOptions(dtype));
  const double t = best(timed_runs(kReps, [&] { at::matmul(a, b); }));
  return 2.0 * n * n * n / t / 1e9;
}

Machine measure_machine(const Args& a) {
  Machine m;
  m.threads = kernels::kernel_threads();
  m.copy_gbps = copy_bandwidth();
  m.read_gbps = pool_read_gbps(512LL << 20, 5);
  m.fma_peak_gflops = pool_fma_peak_gflops();
  m.amx_bf16_peak_gflops = pool_amx_bf16_peak_gflops();
  m.bf16_dot_peak_gflops = pool_bf16_dot_peak_gflops();
  m.int8_peak_gops = pool_int8_peak_gops(&m.int8_peak_name);
  m.gemm_gflops["float32"] = gemm_gflops(at::kFloat);  // decode GFLOP/s are set against it
  for (at::ScalarType t : a.dtypes) m.gemm_gflops[dtype_name(t)] = gemm_gflops(t);
  std::printf("== machine: %d threads; CPU flags: %s; kernels: %s ==\n", m.threads,
              kernels::cpu_flags_summary().c_str(), kernels::isa_name(kernels::active_isa()));
  std::printf("  memory copy, 256 MiB float (read+write)  %8.1f GB/s\n", m.copy_gbps);
  std::printf("  memory read, 512 MiB float sum, kernel pool  %8.1f GB/s\n", m.read_gbps);
  std::printf("  float32 FMA peak (%s), kernel pool       %8.1f GFLOP/s\n",
              kernels::isa_name(std::min(kernels::active_isa(), kernels::Isa::kAvx512)),
              m.fma_peak_gflops);
  if (m.amx_bf16_peak_gflops > 0) {
    std::printf("  bfloat16 AMX tile peak (tdpbf16ps), kernel pool  %8.1f GFLOP/s\n",
                m.amx_bf16_peak_gflops);
  }
  if (m.bf16_dot_peak_gflops > 0) {
    std::printf("  bfloat16 dot-product peak (vdpbf16ps), kernel pool  %8.1f GFLOP/s\n",
                m.bf16_dot_peak_gflops);
  }
  if (m.int8_peak_gops > 0) {
    std::printf("  %s, kernel pool  %8.1f GOP/s\n", m.int8_peak_name, m.int8_peak_gops);
  }
  for (const auto& [name, g] : m.gemm_gflops) {
    std::printf("  GEMM 2048^3 %-8s (at::matmul)        %8.1f GFLOP/s\n", name.c_str(), g);
  }
  return m;
}

// --- model measurements -----------------------------------------------------------------

// Sequences 0..seqs-1, each with tokens at positions [begin, end) and blocks_per_seq blocks of
// its own; sequence s attends to image s from position kImageFrom on; logits for the last
// token of each sequence.
FlatBatch make_batch(int64_t seqs, int64_t begin, int64_t end, int64_t blocks_per_seq,
                     int32_t vocab, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> token(3, vocab - 1);
  FlatBatch b;
  for (int64_t s = 0; s < seqs; ++s) {
    b.block_tables.emplace_back();
    for (int64_t k = 0; k < blocks_per_seq; ++k) {
      b.block_tables.back().push_back(static_cast<int32_t>(s * blocks_per_seq + k));
    }
    for (int64_t p = begin; p < end; ++p) {
      b.token_ids.push_back(token(rng));
      b.positions.push_back(static_cast<int32_t>(p));
      b.seq_of_token.push_back(static_cast<int32_t>(s));
      b.slots.push_back((s * blocks_per_seq + p / kBlockSize) * kBlockSize + p % kBlockSize);
      b.image_of_token.push_back(p >= kImageFrom ? static_cast<int32_t>(s) : -1);
    }
    b.logit_rows.push_back(static_cast<int32_t>(b.num_tokens() - 1));
  }
  return b;
}

int64_t blocks_for(int64_t tokens) { return (tokens + kBlockSize - 1) / kBlockSize; }

at::Tensor random_pixels(const ModelConfig& c, int64_t n) {
  const int64_t s = c.vision.image_size;
  return at::rand({n, c.vision.num_channels, s, s}) * 2 - 1;  // about the normalized range
}

// Median seconds of encode_images on n random images.
double encode_seconds(const FlamingoModel& model, int64_t n, int64_t reps) {
  at::Tensor pixels = random_pixels(model.config(), n);
  return median(timed_runs(reps, [&] { model.encode_images(pixels); }));
}

// Median seconds of one forward over a `tokens`-long prompt (one sequence, logits for the
// last token only) whose tokens from kImageFrom on see `image`.
double prefill_seconds(const FlamingoModel& model, const ImageKV& image, int64_t tokens,
                       std::mt19937& rng) {
  const int64_t blocks = blocks_for(tokens);
  KvCache cache(model.config(), blocks, kBlockSize, model.dtype());
  const FlatBatch b =
      make_batch(1, 0, tokens, blocks, static_cast<int32_t>(model.config().vocab_size), rng);
  const std::vector<const ImageKV*> images = {&image};
  return median(timed_runs(kReps, [&] { model.forward(b, cache, images); }));
}

// Median seconds of a decode step of `batch` sequences (one new token each, all logits),
// after an untimed `context`-token prefill of every sequence and kWarmupSteps steps.
double decode_step_seconds(const FlamingoModel& model, const ImageKV& image, int64_t batch,
                           int64_t context, int64_t steps, std::mt19937& rng) {
  const ModelConfig& c = model.config();
  const auto vocab = static_cast<int32_t>(c.vocab_size);
  const int64_t blocks = blocks_for(context + kWarmupSteps + steps);
  KvCache cache(c, batch * blocks, kBlockSize, model.dtype());
  // Each sequence names its own image entry (as when every request brings its image); all
  // entries share one ImageKV so that only one image has to be encoded.
  const std::vector<const ImageKV*> images(batch, &image);
  model.forward(make_batch(batch, 0, context, blocks, vocab, rng), cache, images);
  std::vector<double> times;
  for (int64_t k = 0; k < kWarmupSteps + steps; ++k) {
    const int64_t pos = context + k;
    const FlatBatch b = make_batch(batch, pos, pos + 1, blocks, vocab, rng);
    const double t = seconds([&] { model.forward(b, cache, images); });
    if (k >= kWarmupSteps) times.push_back(t);
  }
  return median(times);
}

// Image encoding (vision + perceiver + cross-attention K/V of every gated layer).
void report_encode(const FlamingoModel& model, bool quick, const Peak& peak, nlohmann::json& out) {
  const double flops = encode_linear_flops(model.config());
  std::printf(
      "\n  encode_images (linear products: %.1f GFLOP per image)\n"
      "  images  total ms  ms/image  GFLOP/s  %% of peak\n",
      flops / 1e9);
  for (int64_t n : quick ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 8}) {
    const double t = encode_seconds(model, n, n == 1 ? kReps : 2);
    const double gflops = flops * n / t / 1e9;
    std::printf("  %6lld  %8.1f  %8.1f  %7.1f  %12.0f%%\n", static_cast<long long>(n), t * 1e3,
                t * 1e3 / n, gflops, 100 * gflops / peak.gflops);
    out["encode_images"].push_back(
        {{"images", n}, {"ms", t * 1e3}, {"ms_per_image", t * 1e3 / n}, {"gflops", gflops}});
  }
}

void report_prefill(const FlamingoModel& model, const ImageKV& image, bool quick, const Peak& peak,
                    std::mt19937& rng, nlohmann::json& out) {
  const ModelConfig& c = model.config();
  const double head = static_cast<double>(c.total_vocab()) * c.hidden_size;
  std::printf(
      "\n  prefill (one sequence, positions >= %lld see an image, logits of the last "
      "token; median of %d; GFLOP/s of the linear products)\n"
      "  tokens  ms        tokens/s  GFLOP/s  %% of peak\n",
      static_cast<long long>(kImageFrom), kReps);
  for (int64_t tokens : kPrefillTokens) {
    if (quick && tokens != kPrefillTokens.front()) continue;
    const double t = prefill_seconds(model, image, tokens, rng);
    const double flops = 2 * ((step_weight_elements(c) - head) * tokens + head);
    const double gflops = flops / t / 1e9;
    std::printf("  %6lld  %8.1f  %9.1f  %7.1f  %12.0f%%\n", static_cast<long long>(tokens), t * 1e3,
                tokens / t, gflops, 100 * gflops / peak.gflops);
    out["prefill"].push_back(
        {{"tokens", tokens}, {"ms", t * 1e3}, {"tokens_per_s", tokens / t}, {"gflops", gflops}});
  }
}

void report_decode(const FlamingoModel& model, const ImageKV& image, const Args& a,
                   const Machine& m, std::mt19937& rng, nlohmann::json& out) {
  const int64_t step_bytes = step_weight_bytes(model.config(), model.weight_type());
  const double step_flops = 2.0 * static_cast<double>(step_weight_elements(model.config()));
  const double peak = product_peak(m, model).gflops;
  const int64_t context = a.quick ? kQuickDecodeContext : kDecodeContext;
  std::printf(
      "\n  decode (after a %lld-token prefill per sequence; each sequence sees its own "
      "image entry; median of %lld steps)\n",
      static_cast<long long>(context), static_cast<long long>(a.steps));
  std::printf(
      "  batch  step ms  tokens/s  weights GB/s  %% of read BW  GFLOP/s  %% of peak  "
      "floor ms  floor GB/s  step/floor  adj. read GB/s  %% of adj.\n");
  // The floor holds a second copy of the step's weights: skipped where that does not fit.
  const int64_t avail = memory_available_bytes();
  const bool with_floor = avail < 0 || 2 * step_bytes < avail;
  std::unique_ptr<GemvFloor> floor;
  if (with_floor) {
    floor = std::make_unique<GemvFloor>(model.config(), model.dtype(), model.weight_type());
  } else {
    std::printf(
        "  (weight-product floor skipped: a second copy of %.1f GB of weights does not fit "
        "in the %.1f GB available)\n",
        step_bytes / kGB, avail / kGB);
  }
  // The read bandwidth again right before and after each batch size's steps (the higher of
  // the two): the bandwidth a shared host gives moves, and the one at the start of the run
  // may not be the one the steps had.
  const ReadProbe probe(kAdjacentReadBytes);
  std::map<int64_t, double> step_s;
  const std::vector<int64_t>& batches = !a.batches.empty() ? a.batches
                                        : a.quick          ? kQuickDecodeBatches
                                                           : kDecodeBatches;
  for (int64_t batch : batches) {
    const double read_before = probe.gbps(kReps);
    const double t = decode_step_seconds(model, image, batch, context, a.steps, rng);
    const double read_adj = std::max(read_before, probe.gbps(kReps));
    const double f = floor ? floor->step_seconds(batch, a.steps) : std::nan("");
    step_s[batch] = t;
    const double gbps = step_bytes / t / kGB;
    const double gflops = step_flops * batch / t / 1e9;
    std::printf(
        "  %5lld  %7.2f  %8.1f  %12.1f  %11.0f%%  %7.1f  %13.0f%%  %8.2f  %10.1f  %10.2f  %14.1f  "
        "%8.0f%%\n",
        static_cast<long long>(batch), t * 1e3, batch / t, gbps, 100.0 * gbps / m.read_gbps, gflops,
        100.0 * gflops / peak, f * 1e3, step_bytes / f / kGB, t / f, read_adj,
        100.0 * gbps / read_adj);
    out["decode"].push_back({{"batch", batch},
                             {"step_ms", t * 1e3},
                             {"tokens_per_s", batch / t},
                             {"weight_gbps", gbps},
                             {"read_bw_fraction", gbps / m.read_gbps},
                             {"read_gbps_adjacent", read_adj},
                             {"read_bw_fraction_adjacent", gbps / read_adj},
                             {"gflops", gflops},
                             {"fma_peak_fraction", gflops / m.fma_peak_gflops},
                             {"peak_fraction", gflops / peak},
                             {"gemv_floor_ms", f * 1e3},
                             {"gemv_floor_gbps", step_bytes / f / kGB},
                             {"step_over_floor", t / f}});
  }
  if (step_s.count(1) && step_s.count(32)) {
    const double ratio = step_s.at(32) / (32 * step_s.at(1));
    std::printf(
        "  batch-32 step / (32 x batch-1 step) = %.3f  (below 1: the flattened batch "
        "shares each weight read)\n",
        ratio);
    out["batch32_step_over_32x_batch1_step"] = ratio;
  }
  if (step_s.count(1) && step_s.count(16)) {
    out["batch16_step_over_batch1_step"] = step_s.at(16) / step_s.at(1);
    std::printf("  batch-16 step / batch-1 step = %.2f\n", step_s.at(16) / step_s.at(1));
  }
}

// The model's weights against float32 weights (same compute dtype) on one prompt: every
// position's next-token distribution, random tokens, one image seen from kImageFrom on.
void report_accuracy(const FlamingoModel& model, const Args& a, nlohmann::json& out) {
  ModelOptions ref_options;
  ref_options.dtype = dtype_name(model.dtype());
  ref_options.weights = "float32";
  std::unique_ptr<FlamingoModel> ref;
  try {
    ref = FlamingoModel::load(a.model, ref_options);
  } catch (const Error& e) {  // e.g. float32 weights of a 9b model do not fit
    std::printf("\n  accuracy against float32 weights skipped: %s\n", e.what());
    out["accuracy_vs_float32"] = {{"skipped", e.what()}};
    return;
  }
  const int64_t tokens = 128;
  std::mt19937 rng(99);
  FlatBatch b = make_batch(1, 0, tokens, blocks_for(tokens),
                           static_cast<int32_t>(model.config().vocab_size), rng);
  b.logit_rows.clear();
  for (int32_t r = 0; r < tokens; ++r) b.logit_rows.push_back(r);
  const at::Tensor pixels = random_pixels(model.config(), 1);
  const ImageKV img_q = std::move(model.encode_images(pixels).front());
  const ImageKV img_f = std::move(ref->encode_images(pixels).front());
  KvCache cq(model.config(), blocks_for(tokens), kBlockSize, model.dtype());
  KvCache cf(model.config(), blocks_for(tokens), kBlockSize, model.dtype());
  const at::Tensor lq = at::log_softmax(model.forward(b, cq, {&img_q}), -1);
  const at::Tensor lf = at::log_softmax(ref->forward(b, cf, {&img_f}), -1);
  const at::Tensor top_f = lf.argmax(-1), top_q = lq.argmax(-1);
  const double agree = (top_f == top_q).to(at::kDouble).mean().item<double>();
  const at::Tensor lp_f = lf.gather(-1, top_f.unsqueeze(-1));
  const at::Tensor lp_q = lq.gather(-1, top_f.unsqueeze(-1));
  const double max_delta = (lp_f - lp_q).abs().max().item<double>();
  const double kl = (lf.exp() * (lf - lq)).sum(-1).mean().item<double>();
  std::printf(
      "\n  accuracy against float32 weights (%lld positions of a random prompt with an image): "
      "top-1 agreement %.2f%%, max |delta logprob| of the float32 top-1 %.4f, mean KL %.2e\n",
      static_cast<long long>(tokens), 100 * agree, max_delta, kl);
  out["accuracy_vs_float32"] = {{"positions", tokens},
                                {"top1_agreement", agree},
                                {"max_abs_delta_logprob", max_delta},
                                {"mean_kl", kl}};
}

nlohmann::json run_dtype(const Args& a, at::ScalarType dtype, const std::string& weights,
                         const Machine& m) {
  ModelOptions options;
  options.dtype = dtype_name(dtype);
  options.weights = weights;
  std::unique_ptr<FlamingoModel> model;
  const double load_s = seconds([&] { model = FlamingoModel::load(a.model, options); });
  const ModelConfig& c = model->config();
  const int64_t need = std::max(kPrefillTokens.back(), kDecodeContext + kWarmupSteps + a.steps);
  if (model->context_length() < need) {
    throw Error(a.model + ": context length " + std::to_string(model->context_length()) +
                " is below the " + std::to_string(need) + " positions the benchmark needs");
  }
  const int64_t step_bytes = step_weight_bytes(c, model->weight_type());
  const char* wname = kernels::weight_type_name(model->weight_type());
  nlohmann::json out = {{"dtype", dtype_name(dtype)},
                        {"weights", wname},
                        {"kernel_isa", kernels::isa_name(kernels::active_isa())},
                        {"load_s", load_s},
                        {"model_weight_bytes", model->weight_bytes()},
                        {"decode_weight_bytes_per_step", step_bytes},
                        {"decode_weight_bytes_formula", kStepBytesFormula}};
  std::printf(
      "\n== %s, weights %s, kernels %s: %s (loaded in %.1f s; %.2f GB of weights held, peak RSS "
      "so far %.2f GB) ==\n",
      dtype_name(dtype), wname, kernels::isa_name(kernels::active_isa()), a.model.c_str(), load_s,
      model->weight_bytes() / kGB, peak_rss_bytes() / kGB);
  out["peak_rss_after_load_bytes"] = peak_rss_bytes();
  const Peak peak = product_peak(m, *model);
  out["peak_name"] = peak.name;
  out["peak_gflops"] = peak.gflops;
  std::printf("  GFLOP/s below are set against the %s, %.1f GFLOP/s\n", peak.name, peak.gflops);
  std::printf("  decode weight bytes per step: %.3f GB = %s\n", step_bytes / kGB,
              kStepBytesFormula);
  std::printf("    with h=%lld i=%lld layers=%lld gated_layers=%lld vocab+additional=%lld\n",
              static_cast<long long>(c.hidden_size), static_cast<long long>(c.intermediate_size),
              static_cast<long long>(c.num_hidden_layers),
              static_cast<long long>(c.num_cross_layers()),
              static_cast<long long>(c.total_vocab()));
  std::mt19937 rng(1234);
  report_encode(*model, a.quick, peak, out);
  const ImageKV image = std::move(model->encode_images(random_pixels(c, 1)).front());
  report_prefill(*model, image, a.quick, peak, rng, out);
  report_decode(*model, image, a, m, rng, out);
  out["peak_rss_bytes"] = peak_rss_bytes();
  std::printf("  peak RSS of the process so far: %.2f GB (with the %lld MiB read probe)\n",
              peak_rss_bytes() / kGB, static_cast<long long>(kAdjacentReadBytes >> 20));
  if (model->weight_type() == kernels::WeightType::kInt8) report_accuracy(*model, a, out);
  return out;
}

// The CPU benchmark: the machine's limits, then each dtype and weight type.
nlohmann::json run_cpu(const Args& a) {
  FlamingoModel::set_threads(a.threads);
  c10::InferenceMode guard;
  const Machine m = measure_machine(a);
  nlohmann::json out = {{"model", a.model},
                        {"machine",
                         {{"threads", m.threads},
                          {"copy_gbps", m.copy_gbps},
                          {"read_gbps", m.read_gbps},
                          {"fma_peak_gflops", m.fma_peak_gflops},
                          {"amx_bf16_peak_gflops", m.amx_bf16_peak_gflops},
                          {"bf16_dot_peak_gflops", m.bf16_dot_peak_gflops},
                          {"int8_peak_gops", m.int8_peak_gops},
                          {"int8_peak_name", m.int8_peak_name},
                          {"gemm_2048_gflops", m.gemm_gflops},
                          {"cpu_flags", kernels::cpu_flags_summary()},
                          {"kernel_isa", kernels::isa_name(kernels::active_isa())}}}};
  for (at::ScalarType t : a.dtypes) {
    for (const std::string& w : a.weights) {
      out["runs"].push_back(run_dtype(a, t, w, m));
      std::fflush(stdout);
    }
  }
  return out;
}

// --device cuda: the decoder on the GPU (bench/device_bench.h), bfloat16 only.
nlohmann::json run_device(const Args& a) {
  for (at::ScalarType t : a.dtypes) {
    if (a.dtypes_given && t != at::kBFloat16) {
      throw Error("--device cuda computes in bfloat16: --dtypes must be bfloat16");
    }
  }
  for (const std::string& w : a.weights) {
    if (a.weights_given && w != "auto" && w != "bfloat16") {
      throw Error("--device cuda holds bfloat16 weights: --weights must be auto or bfloat16, got " +
                  w);
    }
  }
  DeviceBenchOptions o;
  o.model_dir = a.model;
  o.batches = !a.batches.empty() ? a.batches : a.quick ? kQuickDecodeBatches : kDecodeBatches;
  o.steps = a.steps;
  o.host_ops = device_bench_host_ops();
  return {{"model", a.model}, {"device", "cuda"}, {"runs", {run_device_bench(o)}}};
}

int run(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  if (a.help) {
    std::cout << usage();
    return 0;
  }
  load_model_config(a.model);  // fail fast on a bad --model, before the machine figures
  std::ofstream json_file;
  if (!a.json_path.empty()) {
    json_file.open(a.json_path);
    if (!json_file) throw Error("--json: cannot write '" + a.json_path + "'");
  }
  const nlohmann::json out =
      a.device == "cuda" ||
              (a.device == "auto" && device_bench_available(device_bench_host_ops(), nullptr))
          ? run_device(a)
          : run_cpu(a);
  if (json_file.is_open()) {
    json_file << out.dump(2) << "\n";
    if (!json_file) throw Error("--json: writing '" + a.json_path + "' failed");
  }
  return 0;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace
}  // namespace flamingo::bench

int main(int argc, char** argv) {
  try {
    return flamingo::bench::run(argc, argv);
  } catch (const c10::Error& e) {
    std::cerr << "flamingo-bench: " << flamingo::bench::first_line(e.what_without_backtrace())
              << "\n";
  } catch (const std::exception& e) {
    std::cerr << "flamingo-bench: " << flamingo::bench::first_line(e.what()) << "\n";
  }
  return 1;
}
