// CliPrompt: --prompt split at "<image>" markers into text and image parts (each marker takes
// the next --image file's bytes), marker/file count and unreadable files as errors, and the
// flag each request field names in the CLI's messages.
#include "cli/cli_request.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "model/error.h"

namespace flamingo::cli {
namespace {

std::string temp_file(const std::string& name, const std::string& bytes) {
  const auto path = std::filesystem::temp_directory_path() / name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path.string();
}

TEST(CliPromptTest, MarkersTakeTheImagesInOrder) {
  CliArgs a;
  a.prompt = "<image>A cat.<image>Two<image>";
  a.images = {temp_file("cli_req_a.bin", "AAA"), temp_file("cli_req_b.bin", "BB"),
              temp_file("cli_req_c.bin", "C")};
  const CliPrompt p(a);
  ASSERT_EQ(p.parts().size(), 5u);
  EXPECT_EQ(p.parts()[0].kind, PromptPart::Kind::kImage);
  EXPECT_EQ(p.parts()[0].image, "AAA");
  EXPECT_EQ(p.parts()[1].text, "A cat.");
  EXPECT_EQ(p.parts()[2].image, "BB");
  EXPECT_EQ(p.parts()[3].text, "Two");
  EXPECT_EQ(p.parts()[4].image, "C");
  EXPECT_EQ(p.flag_of("prompt[2].image.data"), "--image " + a.images[1]);
  EXPECT_EQ(p.flag_of("prompt[1].text"), "--prompt");
  EXPECT_EQ(p.flag_of("prompt"), "--prompt");
  EXPECT_EQ(p.flag_of("sampling.top_p"), "--top-p");
  EXPECT_EQ(p.flag_of("stop[0]"), "--stop");
  EXPECT_EQ(p.flag_of("candidates[3]"), "--candidate");
  EXPECT_EQ(p.flag_of("max_new_tokens"), "--max-new-tokens");
  EXPECT_EQ(p.flag_of("request_id"), "");
}

TEST(CliPromptTest, CountMismatchAndUnreadableFiles) {
  CliArgs a;
  a.prompt = "<image><image>x";
  a.images = {temp_file("cli_req_a.bin", "AAA")};
  try {
    CliPrompt p(a);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "--prompt has 2 <image> marker(s) but 1 --image file(s) were given");
  }
  a.prompt = "<image>";
  a.images = {"/nonexistent/cli_req.png"};
  try {
    CliPrompt p(a);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--image: cannot read '/nonexistent/cli_req.png'"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace flamingo::cli
