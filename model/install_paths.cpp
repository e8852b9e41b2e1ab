#include "model/install_paths.h"

#include <cstdlib>
#include <filesystem>

#ifndef FLAMINGO_INSTALL_DATA_REL  // relative path from the installed bin/ to the data folder
#define FLAMINGO_INSTALL_DATA_REL "../share/flamingo-serve"
#endif

namespace flamingo {
namespace {

namespace fs = std::filesystem;

std::string from_env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

// <exe dir>/<FLAMINGO_INSTALL_DATA_REL>/<rel> when it exists, else "".
std::string installed(const std::string& rel, const std::string& must_exist) {
  const std::string dir = executable_dir();
  if (dir.empty()) return "";
  const fs::path p = (fs::path(dir) / FLAMINGO_INSTALL_DATA_REL / rel).lexically_normal();
  std::error_code ec;
  return fs::exists(p / must_exist, ec) ? p.string() : "";
}

}  // namespace

std::string executable_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

std::string bundled_model_dir(const std::string& build_tree) {
  if (std::string env = from_env("FLAMINGO_DEFAULT_MODEL"); !env.empty()) return env;
  if (std::string p = installed("models/flamingo-demo", "config.json"); !p.empty()) {
    return p;
  }
  return build_tree;
}

std::string bundled_templates_dir(const std::string& build_tree) {
  if (std::string env = from_env("FLAMINGO_TEMPLATES_DIR"); !env.empty()) return env;
  if (std::string p = installed("templates", "."); !p.empty()) return p;
  return build_tree;
}

}  // namespace flamingo
