// flamingo-cli end to end, the way a user runs it: the real binary on the golden checkpoint.
// generate --json reproduces transformers' prompt ids and greedy tokens for all golden cases;
// score --json gives the golden prompt log-probabilities and candidate sums consistent with
// scoring the extended prompt; every bad input exits non-zero with one clear stderr line and
// nothing on stdout.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "server/engine/engine_model_cuda.h"
#include "tests/common/golden.h"
#include "tests/common/process.h"

namespace flamingo {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::golden_cases;
using testing::golden_path;
using testing::load_tensor;
using testing::run_command;
using testing::TempDir;

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string cli() { return quote(std::string(FLAMINGO_BINARY_DIR) + "/bin/flamingo-cli"); }

struct CliRun {
  int exit_code;
  std::string out, err;
};

CliRun run_cli(const std::string& args) {
  TempDir dir("flamingo_cli");
  auto r = run_command(cli() + " " + args + " 2>" + quote(dir.file("err")));
  std::ifstream e(dir.file("err"));
  std::string err((std::istreambuf_iterator<char>(e)), {});
  return {r.exit_code, r.output, err};
}

// The golden case's prompt as CLI arguments: text with <image> markers plus --image files.
std::string case_args(const std::string& c) {
  std::ifstream in(golden_path("cases/" + c + "/prompt.json"));
  json p = json::parse(in);
  std::string prompt, images;
  for (const auto& item : p["prompt"]) {
    if (item.contains("text")) {
      prompt += item["text"].get<std::string>();
    } else {
      prompt += "<image>";
      images +=
          " --image " + quote(golden_path("cases/" + c + "/" + item["image"].get<std::string>()));
    }
  }
  return "--model " + quote(golden_path("model")) + " --prompt " + quote(prompt) + images;
}

std::vector<int32_t> golden_ids(const std::string& c) {
  at::Tensor ids = load_tensor("cases/" + c + "/input_ids.npy")[0].to(at::kInt).contiguous();
  return std::vector<int32_t>(ids.data_ptr<int32_t>(), ids.data_ptr<int32_t>() + ids.size(0));
}

class CliGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(CliGolden, GenerateJsonMatchesTransformers) {
  const std::string c = GetParam();
  CliRun r = run_cli("generate " + case_args(c) +
                     " --max-new-tokens 10 --ignore-eos --dtype float32 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  EXPECT_EQ(out["prompt_token_ids"].get<std::vector<int32_t>>(), golden_ids(c));
  std::ifstream in(golden_path("cases/" + c + "/generation.json"));
  json g = json::parse(in)["use_cache_true"];
  EXPECT_EQ(out["token_ids"], g["new_token_ids"]);
  auto lp = out["logprobs"].get<std::vector<double>>();
  auto ref = g["logprobs"].get<std::vector<double>>();
  ASSERT_EQ(lp.size(), ref.size());
  for (size_t i = 0; i < lp.size(); ++i) EXPECT_NEAR(lp[i], ref[i], 2e-4);
  EXPECT_EQ(out["finish_reason"], "length");
  EXPECT_TRUE(out["text"].is_string());
}

TEST_P(CliGolden, ScoreJsonMatchesGoldenLogits) {
  const std::string c = GetParam();
  CliRun r = run_cli("score " + case_args(c) + " --dtype float32 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  std::vector<int32_t> ids = golden_ids(c);
  EXPECT_EQ(out["prompt_token_ids"].get<std::vector<int32_t>>(), ids);
  at::Tensor ref = at::log_softmax(load_tensor("cases/" + c + "/logits.npy").to(at::kDouble), -1);
  ASSERT_EQ(out["token_logprobs"].size(), ids.size());
  EXPECT_TRUE(out["token_logprobs"][0].is_null());
  for (size_t i = 1; i < ids.size(); ++i) {
    EXPECT_NEAR(out["token_logprobs"][i].get<double>(), ref[i - 1][ids[i]].item<double>(), 2e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, CliGolden, ::testing::ValuesIn(golden_cases()));

TEST(Cli, CandidateLogprobIsTheSumOverTheExtendedPrompt) {
  const std::string c = "case1_single_image_question";
  CliRun r = run_cli("score " + case_args(c) + " --candidate ' It will' --candidate ' no' --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  ASSERT_EQ(out["candidate_logprobs"].size(), 2u);
  const std::vector<std::string> cands = {" It will", " no"};
  for (size_t k = 0; k < cands.size(); ++k) {
    // Score the prompt with the candidate appended to its last text: the candidate's tokens
    // are those beyond the base prompt's ids.
    std::string args = case_args(c);
    const std::string marker = "Assistant:";
    args.insert(args.find(marker) + marker.size(), cands[k]);
    CliRun full = run_cli("score " + args + " --json");
    ASSERT_EQ(full.exit_code, 0) << full.err;
    json f = json::parse(full.out);
    double sum = 0;
    for (size_t i = out["prompt_token_ids"].size(); i < f["token_logprobs"].size(); ++i) {
      sum += f["token_logprobs"][i].get<double>();
    }
    // Candidates are scored together in one flattened batch: the fp32 batch-invariance bar.
    EXPECT_NEAR(out["candidate_logprobs"][k].get<double>(), sum, 1e-4) << cands[k];
  }
}

TEST(Cli, StopStringCutsTextAndStops) {
  // Golden greedy text of case 1 is ":" x 6, then "9" (token 378) ...: generation stops at
  // the token that completes a stop string and the text is cut at the earliest occurrence
  // of any of them ("::9" starts at offset 4, before "9" at offset 6).
  CliRun r = run_cli("generate " + case_args("case1_single_image_question") +
                     " --max-new-tokens 10 --dtype float32 --stop Z --stop 9 --stop '::9' --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  EXPECT_EQ(out["finish_reason"], "stop");
  EXPECT_EQ(out["text"], "::::");
  EXPECT_EQ(out["token_ids"], json({376, 376, 376, 376, 376, 376, 378}));
}

TEST(Cli, Bf16ComputeRuns) {
  CliRun r = run_cli("generate " + case_args("case7_image_first") +
                     " --max-new-tokens 4 --dtype bfloat16 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["dtype"], "bfloat16");
}

// --weights (issue 8): int8 and bfloat16 linear weights generate and say so in the JSON; the
// bf16-stored checkpoint held as bfloat16 gives the same tokens and logprobs as widened to
// float32 (exactly representable weights, same summation order).
TEST(Cli, WeightsFlagChoosesHowLinearWeightsAreHeld) {
  for (const std::string w : {"int8", "bfloat16", "float32"}) {
    CliRun r =
        run_cli("generate " + case_args("case7_image_first") +
                " --max-new-tokens 4 --ignore-eos --dtype float32 --weights " + w + " --json");
    ASSERT_EQ(r.exit_code, 0) << w << ": " << r.err;
    const json out = json::parse(r.out);
    EXPECT_EQ(out["weights"], w);
    EXPECT_EQ(out["dtype"], "float32");
    EXPECT_EQ(out["token_ids"].size(), 4u) << w;
    EXPECT_EQ(out["logprobs"].size(), 4u) << w;
  }
  CliRun a = run_cli("generate " + case_args("case7_image_first") +
                     " --max-new-tokens 4 --ignore-eos --dtype float32 --json");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(json::parse(a.out)["weights"], "float32");  // auto: fp32 checkpoint, fp32 compute

  std::string bf16_args = case_args("case7_image_first");
  bf16_args.replace(bf16_args.find(quote(golden_path("model"))), quote(golden_path("model")).size(),
                    quote(golden_path("model_bf16")));
  CliRun held =
      run_cli("generate " + bf16_args +
              " --max-new-tokens 6 --ignore-eos --dtype float32 --weights bfloat16 --json");
  CliRun wide =
      run_cli("generate " + bf16_args +
              " --max-new-tokens 6 --ignore-eos --dtype float32 --weights float32 --json");
  CliRun autow =
      run_cli("generate " + bf16_args + " --max-new-tokens 6 --ignore-eos --dtype float32 --json");
  ASSERT_EQ(held.exit_code, 0) << held.err;
  ASSERT_EQ(wide.exit_code, 0) << wide.err;
  ASSERT_EQ(autow.exit_code, 0) << autow.err;
  EXPECT_EQ(json::parse(autow.out)["weights"], "bfloat16");  // auto: bf16 checkpoint as stored
  EXPECT_EQ(json::parse(held.out)["token_ids"], json::parse(wide.out)["token_ids"]);
  EXPECT_EQ(json::parse(held.out)["logprobs"], json::parse(wide.out)["logprobs"]);

  CliRun s = run_cli("score " + case_args("case7_image_first") +
                     " --candidate ' cat' --dtype float32 --weights int8 --json");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(json::parse(s.out)["candidate_logprobs"].size(), 1u);
}

TEST(Cli, SeededSamplingIsReproducible) {
  const std::string args = "generate " + case_args("case7_image_first") +
                           " --max-new-tokens 8 --temperature 0.9 --top-k 20 --top-p 0.9 "
                           "--repetition-penalty 1.2 --seed 11 --ignore-eos --json";
  CliRun a = run_cli(args), b = run_cli(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(json::parse(a.out)["token_ids"], json::parse(b.out)["token_ids"]);
  EXPECT_EQ(json::parse(a.out)["seed"], 11);
}

TEST(Cli, HelpPrintsUsage) {
  CliRun r = run_cli("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("flamingo-cli generate"), std::string::npos);
}

// A bad input: non-zero exit, nothing on stdout, one stderr line naming what is wrong.
void expect_error(const std::string& args, const std::string& needle, int code = 1) {
  CliRun r = run_cli(args);
  EXPECT_EQ(r.exit_code, code) << args << "\n" << r.err;
  EXPECT_EQ(r.out, "") << args;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err;
  if (code == 1) {
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr: " << r.err;
  }
}

// A copy of the golden checkpoint to damage.
struct CheckpointCopy {
  TempDir dir{"flamingo_ckpt"};
  std::string path = dir.file("model");
  CheckpointCopy() { fs::copy(golden_path("model"), path, fs::copy_options::recursive); }
  void edit_json(const std::string& file, const std::function<void(json&)>& edit) {
    std::ifstream in(path + "/" + file);
    json j = json::parse(in);
    edit(j);
    std::ofstream(path + "/" + file) << j.dump(2);
  }
};

const std::string kImage = golden_path("images/cat_face_28x28.png");

TEST(CliBadInput, MissingCheckpointFolder) {
  expect_error("generate --model /nonexistent/ckpt --prompt hi", "/nonexistent/ckpt");
}

TEST(CliBadInput, MoreMarkersThanImages) {
  expect_error("generate --model " + quote(golden_path("model")) +
                   " --prompt '<image><image>x' --image " + quote(kImage),
               "2 <image> marker(s) but 1 --image file(s)");
}

TEST(CliBadInput, FewerMarkersThanImages) {
  expect_error(
      "generate --model " + quote(golden_path("model")) + " --prompt 'x' --image " + quote(kImage),
      "0 <image> marker(s) but 1 --image file(s)");
}

TEST(CliBadInput, UnreadableAndUndecodableImages) {
  expect_error("generate --model " + quote(golden_path("model")) +
                   " --prompt '<image>' --image /nonexistent.png",
               "/nonexistent.png");
  expect_error("generate --model " + quote(golden_path("model")) + " --prompt '<image>' --image " +
                   quote(golden_path("README.md")),
               "README.md");
}

TEST(CliBadInput, OversizedImage) {
  expect_error("generate --model " + quote(golden_path("model")) +
                   " --prompt '<image>' --max-image-pixels 100 --image " + quote(kImage),
               "784 pixels exceed the limit 100 (--max-image-pixels)");
  expect_error("generate --model " + quote(golden_path("model")) +
                   " --prompt '<image>' --max-image-bytes 10 --image " + quote(kImage),
               "242 bytes exceed the limit 10 (--max-image-bytes)");
}

TEST(CliBadInput, TruncatedShard) {
  CheckpointCopy c;
  const std::string shard = c.path + "/model-00002-of-00003.safetensors";
  fs::resize_file(shard, fs::file_size(shard) / 2);
  expect_error("generate --model " + quote(c.path) + " --prompt hi", "model-00002-of-00003");
}

TEST(CliBadInput, WrongShape) {
  CheckpointCopy c;
  c.edit_json("config.json", [](json& j) { j["intermediate_size"] = 100; });
  expect_error("generate --model " + quote(c.path) + " --prompt hi", "expected [100, 48]");
}

TEST(CliBadInput, MissingTensor) {
  CheckpointCopy c;
  c.edit_json("model.safetensors.index.json",
              [](json& j) { j["weight_map"].erase("model.norm.weight"); });
  expect_error("generate --model " + quote(c.path) + " --prompt hi",
               "missing tensor 'model.norm.weight'");
}

TEST(CliBadInput, UnknownModelType) {
  CheckpointCopy c;
  c.edit_json("config.json", [](json& j) { j["model_type"] = "llava"; });
  expect_error("generate --model " + quote(c.path) + " --prompt hi", "unsupported model_type");
}

TEST(CliBadInput, CorruptConfigJson) {
  CheckpointCopy c;
  std::ofstream(c.path + "/config.json") << "{ not json";
  expect_error("generate --model " + quote(c.path) + " --prompt hi", "config.json");
}

TEST(CliBadInput, UsageAndSamplingErrors) {
  const std::string m = "--model " + quote(golden_path("model"));
  expect_error("generate " + m + " --prompt hi --temperature warm", "--temperature", 2);
  expect_error("generate " + m, "--prompt is required", 2);
  expect_error("frobnicate", "unknown command", 2);
  expect_error("generate " + m + " --prompt hi --top-p 1.5", "top_p");
  expect_error("generate " + m + " --prompt hi --max-new-tokens 5000", "context length 2048");
}

TEST(CliBadInput, WeightsFlagErrors) {
  const std::string m = "--model " + quote(golden_path("model"));
  // A value outside the choices: usage error (exit 2) naming the flag, the value and the choices.
  expect_error("generate " + m + " --prompt hi --weights int4",
               "--weights: expected auto, float32, bfloat16 or int8, got 'int4'", 2);
  expect_error("generate " + m + " --prompt hi --weights", "--weights", 2);
  // The server holds its own weights: refused with --server, like --dtype.
  for (const std::string flag : {"--weights", "--dtype"}) {
    const std::string value = flag == "--weights" ? "int8" : "float32";
    expect_error("generate --server 127.0.0.1:1 --prompt hi " + flag + " " + value,
                 flag + ": not used with --server", 2);
  }
}

// --device (issue 13): cpu by default and said in the JSON; auto runs on the CPU where no GPU
// answers; cuda where none answers is an error saying why, before any weight loads; with
// --server the server's flag decides.
TEST(Cli, DeviceFlag) {
  const std::string args = "generate " + case_args("case7_image_first") +
                           " --max-new-tokens 4 --ignore-eos --dtype float32 --json";
  CliRun cpu = run_cli(args);
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  EXPECT_EQ(json::parse(cpu.out)["device"], "cpu");
  expect_error(args + " --device gpu", "--device: expected cpu, cuda or auto, got 'gpu'", 2);
  expect_error("generate --server 127.0.0.1:1 --prompt hi --device cuda",
               "--device: not used with --server", 2);
  std::string why;
  if (cuda_decoder_available(&why)) GTEST_SKIP() << "a GPU answers here";
  CliRun autod = run_cli(args + " --device auto");
  ASSERT_EQ(autod.exit_code, 0) << autod.err;
  EXPECT_EQ(json::parse(autod.out)["device"], "cpu");
  EXPECT_EQ(json::parse(autod.out)["token_ids"], json::parse(cpu.out)["token_ids"]);
  expect_error("generate " + case_args("case7_image_first") + " --device cuda",
               "--device cuda: " + why);
}

// quantize (issue 8): an int8 copy that loads with --weights auto as int8 and generates the
// tokens of --weights int8 on the source; usage errors name the flag.
TEST(Cli, QuantizeWritesAnInt8CheckpointThatGeneratesTheSameTokens) {
  TempDir dir("flamingo_cli_quantize");
  const std::string out = (dir.path() / "int8").string();
  CliRun q = run_cli("quantize --model " + quote(golden_path("model")) + " --out " + quote(out));
  ASSERT_EQ(q.exit_code, 0) << q.err;
  const json summary = json::parse(q.out);
  EXPECT_EQ(summary["shards"], 3);
  EXPECT_GT(summary["weights_quantized"].get<int>(), 50);
  std::string args = case_args("case7_image_first");
  const std::string src = quote(golden_path("model"));
  CliRun want = run_cli("generate " + args +
                        " --max-new-tokens 6 --ignore-eos --dtype float32 --weights int8 --json");
  args.replace(args.find(src), src.size(), quote(out));
  CliRun got =
      run_cli("generate " + args + " --max-new-tokens 6 --ignore-eos --dtype float32 --json");
  ASSERT_EQ(want.exit_code, 0) << want.err;
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(json::parse(got.out)["weights"], "int8");
  EXPECT_EQ(json::parse(got.out)["token_ids"], json::parse(want.out)["token_ids"]);
  EXPECT_EQ(json::parse(got.out)["logprobs"], json::parse(want.out)["logprobs"]);
  expect_error("quantize --model " + quote(golden_path("model")), "--out DIR is required", 2);
  expect_error("quantize --out x --prompt hi", "quantize: unknown or incomplete flag '--prompt'",
               2);
  expect_error("quantize --model " + quote(golden_path("model")) + " --out " + quote(out),
               "not an empty folder", 1);
}

}  // namespace
}  // namespace flamingo
