// parse_cli_args for remote mode (--server): which flags need the server and which it refuses,
// the TLS flags, each command's own checks, the local command line unchanged, and --help.
#include "cli/cli_args.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "tests/cli/cli_args_test_util.h"

namespace flamingo::cli {
namespace {

using cli_testing::usage_error;

TEST(RemoteArgs, CaptionAndAskNeedTheServer) {
  EXPECT_NE(usage_error({"caption", "--image", "a.png"}).find("caption: needs --server"),
            std::string::npos);
  EXPECT_NE(usage_error({"ask", "--image", "a.png", "--question", "q"}).find("needs --server"),
            std::string::npos);
}

TEST(RemoteArgs, RemoteOnlyFlagsNeedTheServer) {
  const std::vector<std::vector<std::string>> cases = {
      {"generate", "--prompt", "x", "--stream"},
      {"generate", "--prompt", "x", "--timeout", "3"},
      {"generate", "--prompt", "x", "--request-id", "r"},
      {"generate", "--prompt", "x", "--tls"},
      {"generate", "--prompt", "x", "--tls-ca", "ca.pem"}};
  for (const auto& argv : cases) {
    EXPECT_NE(usage_error(argv).find("only with --server"), std::string::npos) << argv.back();
  }
}

TEST(RemoteArgs, TlsFlags) {
  const CliArgs plain = parse_cli_args({"info", "--server", "h:1"}, "/m");
  EXPECT_FALSE(plain.tls);
  const CliArgs ca =
      parse_cli_args({"generate", "--server", "h:1", "--prompt", "x", "--tls-ca", "ca.pem"}, "/m");
  EXPECT_TRUE(ca.tls);
  EXPECT_EQ(ca.tls_ca, "ca.pem");
  const CliArgs mutual = parse_cli_args(
      {"info", "--server", "h:1", "--tls-cert", "c.pem", "--tls-key", "c.key", "--tls-ca", "ca"},
      "/m");
  EXPECT_TRUE(mutual.tls);
  EXPECT_EQ(mutual.tls_cert, "c.pem");
  EXPECT_EQ(mutual.tls_key, "c.key");
  EXPECT_TRUE(parse_cli_args({"info", "--server", "h:1", "--tls"}, "/m").tls);
  EXPECT_EQ(usage_error({"info", "--server", "h:1", "--tls-cert", "c.pem"}),
            "--tls-cert needs --tls-key");
  EXPECT_EQ(usage_error({"generate", "--server", "h:1", "--prompt", "x", "--tls-key", "k"}),
            "--tls-key needs --tls-cert");
}

TEST(RemoteArgs, LocalOnlyFlagsAreRejectedWithTheServer) {
  const std::vector<std::pair<std::string, std::string>> local = {
      {"--model", "/m"},  {"--dtype", "float32"},       {"--context-length", "64"},
      {"--threads", "2"}, {"--max-image-bytes", "100"}, {"--max-image-pixels", "100"}};
  for (const auto& [flag, value] : local) {
    EXPECT_EQ(usage_error({"generate", "--server", "h:1", "--prompt", "x", flag, value}),
              flag + ": not used with --server (the server's model and flags decide)");
  }
  EXPECT_EQ(usage_error({"generate", "--server", "h:1", "--prompt", "x", "--weights", "int8"}),
            "--weights: not used with --server (the server's model and flags decide)");
}

TEST(RemoteArgs, CommandSpecificChecks) {
  const std::string s = "--server";
  EXPECT_EQ(usage_error({"ask", s, "h:1", "--image", "a.png"}), "ask: --question is required");
  EXPECT_EQ(usage_error({"caption", s, "h:1"}), "caption: exactly one --image is required, got 0");
  EXPECT_EQ(usage_error({"caption", s, "h:1", "--image", "a", "--image", "b"}),
            "caption: exactly one --image is required, got 2");
  EXPECT_NE(usage_error({"caption", s, "h:1", "--image", "a", "--prompt", "p"})
                .find("--prompt: not used by caption"),
            std::string::npos);
  EXPECT_EQ(usage_error({"caption", s, "h:1", "--image", "a", "--example", "nocaption"}),
            "--example: expected IMAGE=TEXT, got 'nocaption'");
  EXPECT_EQ(usage_error({"ask", s, "h:1", "--image", "a", "--question", "q", "--example", "a=b"}),
            "--example: expected IMAGE=QUESTION=ANSWER, got 'a=b'");
  EXPECT_EQ(usage_error({"caption", s, "h:1", "--image", "a", "--stop", "x"}),
            "--stop: only for generate");
  EXPECT_EQ(usage_error({"caption", s, "h:1", "--image", "a", "--stream"}),
            "--stream: only for the generate command");
  EXPECT_EQ(usage_error({"generate", s, "h:1", "--prompt", "x", "--example", "a=b"}),
            "--example: only for caption and ask");
  EXPECT_NE(usage_error({"score", s, "h:1", "--prompt", "x", "--json"})
                .find("at least one --candidate is required"),
            std::string::npos);
  EXPECT_EQ(usage_error({"generate", s, "h:1", "--prompt", "x", "--timeout", "0"}),
            "--timeout: must be a number of seconds > 0, got 0");
  EXPECT_EQ(usage_error({"generate", s, "h:1", "--prompt", "x", "--timeout", "-1.5"}),
            "--timeout: must be a number of seconds > 0, got -1.5");
  EXPECT_NE(usage_error({"generate", s, "h:1", "--prompt", "x", "--seed", "0"}).find("--seed"),
            std::string::npos);
  EXPECT_EQ(usage_error({"generate", s, "", "--prompt", "x"}),
            "--server: expected HOST:PORT, got ''");
}

TEST(RemoteArgs, LocalCommandLineIsUnchanged) {
  CliArgs a = parse_cli_args({"generate", "--prompt", "<image>hi", "--image", "a.png", "--stop",
                              "x", "--top-logprobs", "20", "--seed", "0", "--json"},
                             "/default/model");
  EXPECT_TRUE(a.server.empty());
  EXPECT_EQ(a.model_dir, "/default/model");
  EXPECT_EQ(a.max_new_tokens, 32);
  EXPECT_FALSE(a.max_new_tokens_given);
  EXPECT_EQ(a.seed, std::optional<uint64_t>(0));  // seed 0 is a real seed locally
  EXPECT_EQ(usage_error({"generate", "--prompt", "x", "--top-logprobs", "21"}),
            "--top-logprobs: must be in [0, 20], got 21");
  EXPECT_EQ(usage_error({"generate"}), "--prompt is required");
  EXPECT_NE(usage_error({"frobnicate"}).find("unknown command"), std::string::npos);
}

TEST(RemoteArgs, HelpDocumentsRemoteModeAndExitCodes) {
  const std::string u = cli_usage();
  for (const char* needle :
       {"--server HOST:PORT", "flamingo-cli caption", "flamingo-cli ask", "--stream",
        "--timeout SECONDS", "IMAGE=QUESTION=ANSWER", "3 the server answered an error"}) {
    EXPECT_NE(u.find(needle), std::string::npos) << needle;
  }
}

}  // namespace
}  // namespace flamingo::cli
