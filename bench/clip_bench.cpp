// flamingo-clip-bench: images/s and texts/s a CLIP checkpoint embeds on this CPU at batch
// sizes 1/8/32 (by default), each with its GFLOP/s against the float32 FMA peak (and the AMX
// bfloat16 tile peak when the compute dtype is bfloat16) measured in the same run. Prints a
// table; not a test. See docs/PERFORMANCE.md.
#include <ATen/ATen.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/machine_limits.h"
#include "bench/timing.h"
#include "model/clip_model.h"
#include "model/clip_tokenizer.h"

namespace flamingo {
namespace {

const char kUsage[] =
    R"(usage: flamingo-clip-bench --model DIR [--dtype float32|bfloat16] [--batches LIST]
                           [--reps N] [--text-tokens N]

Times ClipModel::image_embeds and text_embeds at each batch size (default 1,8,32; median of
--reps runs, default 5) and reports images/s, texts/s and GFLOP/s against the FMA peak (and
the AMX bf16 peak for --dtype bfloat16) measured in the same run. Texts are --text-tokens long
(default 16, start and end tokens included).

  --model DIR    an HF CLIPModel folder, e.g. tests/golden/clip-tiny/model or one made by
                 /usr/bin/python3 tools/make_checkpoint.py --preset clip-tiny --out DIR
)";

// Multiply-adds x 2 of one encoder pass over `len` tokens of width e (MLP i, `layers` deep):
// q/k/v/out and the MLP per token, scores and the weighted sum per token pair.
double encoder_flops(int64_t e, int64_t i, int64_t layers, int64_t len) {
  const double per_layer = double(len) * (4.0 * e * e + 2.0 * e * i) + 2.0 * double(len) * len * e;
  return 2.0 * layers * per_layer;
}

int run(int argc, char** argv) {
  std::string model_dir, dtype = "float32";
  std::vector<int64_t> batches = {1, 8, 32};
  int reps = 5;
  int64_t text_tokens = 16;
  for (int a = 1; a < argc; ++a) {
    const std::string f = argv[a];
    const auto value = [&]() -> std::string {
      if (a + 1 >= argc) throw std::runtime_error(f + ": missing value");
      return argv[++a];
    };
    if (f == "--model") {
      model_dir = value();
    } else if (f == "--dtype") {
      dtype = value();
    } else if (f == "--reps") {
      reps = std::stoi(value());
    } else if (f == "--text-tokens") {
      text_tokens = std::stoll(value());
    } else if (f == "--batches") {
      batches.clear();
      const std::string list = value();
      for (size_t p = 0; p < list.size();) {
        const size_t c = list.find(',', p);
        batches.push_back(std::stoll(list.substr(p, c - p)));
        p = c == std::string::npos ? list.size() : c + 1;
      }
    } else if (f == "--help" || f == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      throw std::runtime_error("unknown argument '" + f + "' (see --help)");
    }
  }
  if (model_dir.empty()) throw std::runtime_error("--model DIR is required (see --help)");
  ModelOptions o;
  o.dtype = dtype;
  const auto model = ClipModel::load(model_dir, o);
  const ClipConfig& c = model->config();
  const double fma_peak = bench::pool_fma_peak_gflops();
  const double amx_peak = dtype == "bfloat16" ? bench::pool_amx_bf16_peak_gflops() : 0.0;
  const double dot_peak = dtype == "bfloat16" ? bench::pool_bf16_dot_peak_gflops() : 0.0;
  const double peak = amx_peak > 0 ? amx_peak : dot_peak > 0 ? dot_peak : fma_peak;
  const int64_t s = c.vision.image_size, p = c.vision.patch_size;
  const int64_t patches = (s / p) * (s / p);
  const double image_flops = encoder_flops(c.vision.embed_dim, c.vision.intermediate_size,
                                           c.vision.num_hidden_layers, patches + 1) +
                             2.0 * patches * c.vision.embed_dim * 3 * p * p +
                             2.0 * c.vision.embed_dim * c.projection_dim;
  const double text_flops = encoder_flops(c.text.hidden_size, c.text.intermediate_size,
                                          c.text.num_hidden_layers, text_tokens) +
                            2.0 * c.text.hidden_size * c.projection_dim;
  std::printf("model %s, dtype %s; float32 FMA peak %.1f GFLOP/s", model_dir.c_str(), dtype.c_str(),
              fma_peak);
  if (amx_peak > 0) std::printf(", AMX bf16 peak %.1f GFLOP/s (the ratios' base)", amx_peak);
  if (dot_peak > 0) std::printf(", vdpbf16ps peak %.1f GFLOP/s (the ratios' base)", dot_peak);
  std::printf("\n");
  std::printf(
      "vision %lldx%lld patch %lld (%lld tokens), text %lld tokens; %.3f / %.3f GFLOP "
      "per image / text\n",
      (long long)s, (long long)s, (long long)p, (long long)(patches + 1), (long long)text_tokens,
      image_flops / 1e9, text_flops / 1e9);
  std::printf("%6s %12s %10s %8s %12s %10s %8s\n", "batch", "images/s", "GFLOP/s", "of peak",
              "texts/s", "GFLOP/s", "of peak");
  for (int64_t b : batches) {
    const at::Tensor pixels = at::randn({b, 3, s, s}, at::kFloat);
    std::vector<std::vector<int32_t>> texts(b, std::vector<int32_t>(text_tokens, 1));
    for (auto& t : texts) {
      t.front() = static_cast<int32_t>(c.text.bos_token_id);
      t.back() = static_cast<int32_t>(c.text.vocab_size - 1);
    }
    const double ti = bench::median(bench::timed_runs(reps, [&] { model->image_embeds(pixels); }));
    const double tt = bench::median(bench::timed_runs(reps, [&] { model->text_embeds(texts); }));
    const double ig = image_flops * b / ti / 1e9, tg = text_flops * b / tt / 1e9;
    std::printf("%6lld %12.1f %10.1f %7.1f%% %12.1f %10.1f %7.1f%%\n", (long long)b, b / ti, ig,
                100 * ig / peak, b / tt, tg, 100 * tg / peak);
  }
  return 0;
}

}  // namespace
}  // namespace flamingo

int main(int argc, char** argv) {
  try {
    return flamingo::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flamingo-clip-bench: %s\n", e.what());
    return 2;
  }
}
