// flamingo-server's command line: defaults, every limit flag, ranges and errors that name the
// flag and the value, and --help listing every flag.
#include "server/server_args.h"

#include <gtest/gtest.h>

namespace flamingo {
namespace {

ServerArgs parse(std::vector<std::string> argv) { return parse_server_args(argv); }

void expect_usage_error(std::vector<std::string> argv, const std::string& needle) {
  try {
    parse(argv);
    FAIL() << "no error for " << argv[0];
  } catch (const ServerUsageError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ServerArgsTest, DefaultsMatchTheIssue) {
  const ServerArgs a = parse({});
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 50051);
  EXPECT_EQ(a.metrics_port, 9090);
  EXPECT_EQ(a.dtype, "auto");
  EXPECT_EQ(a.weights, "auto");
  EXPECT_TRUE(a.model_dir.empty());
  EXPECT_EQ(a.limits.max_images_per_request, 32);
  EXPECT_EQ(a.limits.max_image_bytes, 20 << 20);
  EXPECT_TRUE(a.prefix_caching);
}

TEST(ServerArgsTest, ParsesEveryKindOfFlag) {
  const ServerArgs a = parse({"--model",
                              "/m",
                              "--host=0.0.0.0",
                              "--port",
                              "0",
                              "--dtype",
                              "bfloat16",
                              "--max-images",
                              "4",
                              "--max-image-bytes",
                              "1000",
                              "--max-image-pixels",
                              "5000000000",
                              "--max-queued",
                              "0",
                              "--max-running",
                              "2",
                              "--drain-timeout",
                              "2.5",
                              "--no-prefix-caching",
                              "--kv-cache-mb",
                              "64",
                              "--metrics-port",
                              "0",
                              "--default-max-new-tokens",
                              "8",
                              "--max-new-tokens",
                              "16"});
  EXPECT_EQ(a.model_dir, "/m");
  EXPECT_EQ(a.host, "0.0.0.0");
  EXPECT_EQ(a.port, 0);
  EXPECT_EQ(a.dtype, "bfloat16");
  EXPECT_EQ(a.limits.max_images_per_request, 4);
  EXPECT_EQ(a.limits.max_image_bytes, 1000);
  EXPECT_EQ(a.limits.max_image_pixels, 5000000000LL);
  EXPECT_EQ(a.limits.max_queued_requests, 0);
  EXPECT_EQ(a.limits.max_running_requests, 2);
  EXPECT_DOUBLE_EQ(a.drain_timeout_s, 2.5);
  EXPECT_FALSE(a.prefix_caching);
  EXPECT_EQ(a.kv_cache_mb, 64);
  EXPECT_EQ(a.metrics_port, 0);
  EXPECT_EQ(a.limits.default_max_new_tokens, 8);
  EXPECT_EQ(a.limits.max_new_tokens, 16);
}

TEST(ServerArgsTest, ErrorsNameTheFlagAndValue) {
  expect_usage_error({"--port", "70000"}, "--port");
  expect_usage_error({"--port", "70000"}, "70000");
  expect_usage_error({"--max-images", "x"}, "'x'");
  expect_usage_error({"--dtype", "fp8"}, "auto|float32|bfloat16");
  expect_usage_error({"--drain-timeout", "nan"}, "--drain-timeout");
  expect_usage_error({"--max-running"}, "needs a value");
  expect_usage_error({"--bogus"}, "'--bogus'");
  expect_usage_error({"--no-prefix-caching=1"}, "takes no value");
  expect_usage_error({"--default-max-new-tokens", "100", "--max-new-tokens", "50"},
                     "--default-max-new-tokens 100");
  expect_usage_error({"--max-running", "64", "--token-budget", "32"}, "--token-budget 32");
}

TEST(ServerArgsTest, WeightsFlag) {
  for (const std::string w : {"auto", "float32", "bfloat16", "int8"}) {
    EXPECT_EQ(parse({"--weights", w}).weights, w);
  }
  EXPECT_EQ(parse({"--weights=int8", "--dtype", "float32"}).weights, "int8");
  expect_usage_error({"--weights", "int4"}, "--weights");
  expect_usage_error({"--weights", "int4"}, "'int4'");
  expect_usage_error({"--weights", "int4"}, "auto|float32|bfloat16|int8");
  expect_usage_error({"--weights"}, "needs a value");
  EXPECT_NE(server_usage().find("--weights"), std::string::npos);
  const std::vector<std::string> lines = describe_server_args(parse({"--weights", "int8"}));
  EXPECT_NE(std::find(lines.begin(), lines.end(), "weights = int8"), lines.end());
}

TEST(ServerArgsTest, HttpFlags) {
  const ServerArgs d = parse({});
  EXPECT_EQ(d.http_port, 8000);
  EXPECT_TRUE(d.http_host.empty());  // --host
  EXPECT_EQ(d.max_choices, 8);
  EXPECT_TRUE(d.served_model_name.empty());
  const ServerArgs a = parse({"--http-port", "0", "--http-host", "0.0.0.0", "--served-model-name",
                              "idefics", "--chat-template", "/t.json", "--allowed-local-media-path",
                              "/media", "--max-choices", "3", "--http-threads", "16"});
  EXPECT_EQ(a.http_port, 0);
  EXPECT_EQ(a.http_host, "0.0.0.0");
  EXPECT_EQ(a.served_model_name, "idefics");
  EXPECT_EQ(a.chat_template_path, "/t.json");
  EXPECT_EQ(a.allowed_local_media_path, "/media");
  EXPECT_EQ(a.max_choices, 3);
  EXPECT_EQ(a.http_threads, 16);
  expect_usage_error({"--http-port", "70000"}, "--http-port: expected an integer in [0, 65535]");
  expect_usage_error({"--max-choices", "0"}, "--max-choices");
  for (const char* flag :
       {"--http-port", "--http-host", "--served-model-name", "--chat-template",
        "--allowed-local-media-path", "--max-choices", "--http-threads", "--http-keep-alive"}) {
    EXPECT_NE(server_usage().find(flag), std::string::npos) << flag;
  }
}

TEST(ServerArgsTest, HelpListsEveryLimitFlag) {
  const std::string help = server_usage();
  for (const char* flag :
       {"--model", "--host", "--port", "--dtype", "--metrics-port", "--max-images",
        "--max-image-bytes", "--max-image-pixels", "--max-prompt-tokens", "--max-new-tokens",
        "--max-queued", "--max-running", "--kv-cache-mb", "--drain-timeout", "--templates"}) {
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
  }
  EXPECT_TRUE(parse({"--help"}).help);
}

TEST(ServerArgsTest, DescribeListsEffectiveValues) {
  const std::vector<std::string> lines = describe_server_args(parse({"--max-images", "3"}));
  EXPECT_NE(std::find(lines.begin(), lines.end(), "max-images = 3"), lines.end());
}

}  // namespace
}  // namespace flamingo
