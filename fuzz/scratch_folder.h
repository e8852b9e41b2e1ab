// A fuzz target's scratch folder: made once under /tmp (mkdtemp), filled by `setup`, removed
// at exit. Its path is kept in a plain array, which outlives the static destructors: those run
// before an atexit handler registered while a static is being initialized.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace flamingo::fuzz {

template <class Setup>
const std::string& scratch_folder(const char* name, Setup setup) {
  static char path[256];
  static const std::string dir = [&] {
    std::snprintf(path, sizeof path, "/tmp/%s.XXXXXX", name);
    if (mkdtemp(path) == nullptr) std::abort();
    setup(std::string(path));
    std::atexit([] { std::filesystem::remove_all(path); });
    return std::string(path);
  }();
  return dir;
}

}  // namespace flamingo::fuzz
