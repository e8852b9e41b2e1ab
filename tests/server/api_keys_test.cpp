// ApiKeys: keys from a file (comments, blank lines, spaces trimmed) and the environment; file
// errors name the file and line; "Bearer KEY" accepted in any case of the scheme, anything else
// refused; no keys: every client is let in.
#include "server/api_keys.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "model/error.h"

namespace flamingo {
namespace {

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path =
      (std::filesystem::temp_directory_path() / (name + "." + std::to_string(::getpid()))).string();
  std::ofstream(path) << text;
  return path;
}

void expect_error(const std::string& file, const char* env, const std::string& part) {
  try {
    ApiKeys::load(file, env);
    ADD_FAILURE() << "no error; expected one with '" << part << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(ApiKeys, NoKeysLetEveryClientIn) {
  const ApiKeys none = ApiKeys::load("", nullptr);
  EXPECT_FALSE(none.enabled());
  EXPECT_TRUE(none.accepts(""));
  EXPECT_TRUE(none.accepts("Bearer anything"));
  EXPECT_FALSE(ApiKeys::load("", "").enabled());
}

TEST(ApiKeys, FileAndEnvironmentKeys) {
  const std::string file =
      write_file("keys", "# team keys\n\n  sk-alpha-123  \r\nsk-beta-456\n# old: sk-gamma\n");
  const ApiKeys keys = ApiKeys::load(file, "sk-env-789");
  EXPECT_TRUE(keys.enabled());
  EXPECT_EQ(keys.size(), 3u);
  EXPECT_TRUE(keys.accepts("Bearer sk-alpha-123"));
  EXPECT_TRUE(keys.accepts("bearer sk-beta-456"));
  EXPECT_TRUE(keys.accepts("BEARER   sk-env-789 "));
  EXPECT_FALSE(keys.accepts("Bearer sk-gamma"));     // commented out
  EXPECT_FALSE(keys.accepts("Bearer sk-alpha-12"));  // a prefix
  EXPECT_FALSE(keys.accepts("Bearer sk-alpha-1234"));
  EXPECT_FALSE(keys.accepts("sk-alpha-123"));  // no scheme
  EXPECT_FALSE(keys.accepts("Basic sk-alpha-123"));
  EXPECT_FALSE(keys.accepts("Bearer "));
  EXPECT_FALSE(keys.accepts(""));
  std::filesystem::remove(file);
}

TEST(ApiKeys, BadFilesNameTheFileAndLine) {
  expect_error("/nonexistent/keys.txt", nullptr, "cannot read '/nonexistent/keys.txt'");
  const std::string empty = write_file("empty-keys", "# nothing\n\n");
  expect_error(empty, nullptr, "holds no key");
  const std::string spaced = write_file("spaced-keys", "good\nbad key\n");
  expect_error(spaced, nullptr, "line 2: a key may not contain spaces");
  expect_error("", "two words", "FLAMINGO_API_KEY");
  std::filesystem::remove(empty);
  std::filesystem::remove(spaced);
}

}  // namespace
}  // namespace flamingo
