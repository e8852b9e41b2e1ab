// Where the files a binary ships with are found at run time: the bundled default model and the
// prompt templates. In order: an environment variable (FLAMINGO_DEFAULT_MODEL,
// FLAMINGO_TEMPLATES_DIR); the installed tree next to the running binary
// (<prefix>/bin/flamingo-* -> <prefix>/share/flamingo-serve/...), so an installed binary runs
// from any prefix (`cmake --install build --prefix P`, the container image); else the build
// tree the binary was built in (compiled-in paths). Torch-free; thread-safe.
#pragma once

#include <string>

namespace flamingo {

// The directory of the running executable (/proc/self/exe), "" when it cannot be read.
std::string executable_dir();

// The default model folder. `build_tree` is the compiled-in fallback.
std::string bundled_model_dir(const std::string& build_tree);

// The folder of the bundled prompt templates (<family>.json). `build_tree` as above.
std::string bundled_templates_dir(const std::string& build_tree);

}  // namespace flamingo
