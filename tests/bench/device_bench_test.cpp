// flamingo-bench --device (bench/device_bench.h), run as a user runs it, on the golden tiny
// checkpoint. Where no GPU answers, the device path runs through the kernels' CPU references
// (FLAMINGO_BENCH_HOST_OPS=1): the bench's own code (batches, prefill, JSON, byte counts) is
// checked, not a GPU's speed. Only in builds with the CUDA kernels.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "kernels/cuda/decoder_ops.h"
#include "tests/common/golden.h"
#include "tests/common/process.h"

namespace flamingo {
namespace {

using nlohmann::json;
using testing::golden_path;
using testing::run_command;
using testing::TempDir;

struct BenchRun {
  int exit_code;
  std::string out, err;
};

BenchRun run_bench(const std::string& env, const std::string& args) {
  TempDir dir("flamingo_device_bench");
  const std::string command = env + " " + std::string(FLAMINGO_BINARY_DIR) +
                              "/bin/flamingo-bench --model '" + golden_path("model") + "' " + args +
                              " 2>'" + dir.file("err") + "'";
  const auto r = run_command(command);
  std::ifstream e(dir.file("err"));
  return {r.exit_code, r.output, std::string((std::istreambuf_iterator<char>(e)), {})};
}

TEST(DeviceBench, HostOpsRunTheDevicePath) {
  TempDir dir("flamingo_device_bench_json");
  const std::string path = dir.file("out.json");
  const BenchRun r = run_bench("FLAMINGO_BENCH_HOST_OPS=1",
                               "--device cuda --batches 1,3 --steps 2 --json '" + path + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("decode, every sequence after a 64-token prefill"), std::string::npos)
      << r.out;
  std::ifstream in(path);
  const json out = json::parse(in);
  EXPECT_EQ(out["device"], "cuda");
  ASSERT_EQ(out["runs"].size(), 1u);
  const json& run = out["runs"][0];
  EXPECT_EQ(run["weights"], "bfloat16");
  // A step reads every weight but the embedding table and the gated layers' K/V projections:
  // the golden config: hidden 48, vocab 400 + 2, 3 layers all gated, vision width 24.
  const int64_t hidden = 48, vocab = 402, gated = 3, image_dim = 24;
  EXPECT_EQ(
      run["model_weight_bytes"].get<int64_t>() - run["decode_weight_bytes_per_step"].get<int64_t>(),
      (vocab * hidden + gated * 2 * hidden * image_dim) * 2);
  ASSERT_EQ(run["prefill"].size(), 2u);
  EXPECT_EQ(run["prefill"][0]["tokens"], 128);
  EXPECT_EQ(run["prefill"][1]["tokens"], 512);
  ASSERT_EQ(run["decode"].size(), 2u);
  EXPECT_EQ(run["decode"][0]["batch"], 1);
  EXPECT_EQ(run["decode"][1]["batch"], 3);
  for (const json& d : run["decode"]) {
    EXPECT_GT(d["step_ms"].get<double>(), 0);
    EXPECT_GT(d["weight_gbps"].get<double>(), 0);
    EXPECT_NEAR(d["tokens_per_s"].get<double>(),
                d["batch"].get<double>() * 1e3 / d["step_ms"].get<double>(), 1e-6 * 1e6);
  }
  // auto takes the device path where it is available (here: the host ops).
  const BenchRun a =
      run_bench("FLAMINGO_BENCH_HOST_OPS=1", "--device auto --batches 1 --steps 1 --quick");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_NE(a.out.find("== device host"), std::string::npos) << a.out;
}

TEST(DeviceBench, BadFlags) {
  BenchRun r = run_bench("", "--device gpu");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--device: expected cpu, cuda or auto, got 'gpu'"), std::string::npos)
      << r.err;
  r = run_bench("FLAMINGO_BENCH_HOST_OPS=1", "--device cuda --dtypes float32");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--device cuda computes in bfloat16: --dtypes must be bfloat16"),
            std::string::npos)
      << r.err;
  r = run_bench("FLAMINGO_BENCH_HOST_OPS=1", "--device cuda --weights int8");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--weights must be auto or bfloat16, got int8"), std::string::npos) << r.err;
}

TEST(DeviceBench, CudaWithoutADeviceSaysWhy) {
  std::string why;
  if (kernels::cuda::device_available(&why)) GTEST_SKIP() << "a GPU answers here";
  const BenchRun r = run_bench("", "--device cuda --batches 1 --steps 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("flamingo-bench: --device cuda: " + why), std::string::npos) << r.err;
}

}  // namespace
}  // namespace flamingo
