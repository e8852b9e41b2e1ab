// Test helpers for tokenizer_test.cpp and prompt_test.cpp: runs tests/model/spm_oracle.py
// (HF v4.44.2 slow-LlamaTokenizer logic over python3-sentencepiece) in its own process, and
// writes variants of a tokenizer folder into a temp dir. Header-only, test-only.
// The interpreter is $FLAMINGO_PYTHON3, else the FLAMINGO_PYTHON3 macro, else /usr/bin/python3.
// Thread-safety: none needed (gtest runs tests sequentially).
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace flamingo::testing {

inline std::string spm_oracle_python() {
  if (const char* env = std::getenv("FLAMINGO_PYTHON3"); env != nullptr && *env != '\0') {
    return env;
  }
#ifdef FLAMINGO_PYTHON3
  return FLAMINGO_PYTHON3;
#else
  return "/usr/bin/python3";
#endif
}

inline std::string spm_oracle_script() {
#ifdef FLAMINGO_SPM_ORACLE
  return FLAMINGO_SPM_ORACLE;
#else
  return (std::filesystem::path(__FILE__).parent_path() / "spm_oracle.py").string();
#endif
}

// Directories made by make_temp_dir, removed when the test process exits.
struct TempDirRegistry {
  std::vector<std::filesystem::path> dirs;
  ~TempDirRegistry() {
    for (const auto& d : dirs) {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  }
};

// A fresh directory under the system temp dir, unique per process and call.
inline std::filesystem::path make_temp_dir(const std::string& tag) {
  static TempDirRegistry registry;
  static int counter = 0;
  const auto dir =
      std::filesystem::temp_directory_path() /
      ("flamingo_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  registry.dirs.push_back(dir);
  return dir;
}

inline nlohmann::ordered_json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  return nlohmann::ordered_json::parse(in);
}

inline void write_json(const std::filesystem::path& path, const nlohmann::ordered_json& j) {
  std::ofstream out(path);
  out << j.dump(2);
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// Runs the oracle on `request` (see spm_oracle.py) and returns its response.
inline nlohmann::json run_spm_oracle(const nlohmann::json& request) {
  const auto dir = make_temp_dir("spm_oracle");
  const auto req = dir / "request.json";
  const auto resp = dir / "response.json";
  {
    std::ofstream out(req);
    out << request.dump();
  }
  const std::string cmd = "'" + spm_oracle_python() + "' '" + spm_oracle_script() + "' '" +
                          req.string() + "' '" + resp.string() + "'";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) throw std::runtime_error("oracle failed (" + std::to_string(rc) + "): " + cmd);
  std::ifstream in(resp);
  nlohmann::json out = nlohmann::json::parse(in);
  std::filesystem::remove_all(dir);
  return out;
}

// Copies the tokenizer files of `src_dir` into a temp dir and lets `edit` change the three
// JSON files (a null json means "file absent"; set it to null to delete the file).
using TokenizerEdit =
    std::function<void(nlohmann::ordered_json& config, nlohmann::ordered_json& special_tokens_map,
                       nlohmann::ordered_json& added_tokens)>;

inline std::string make_tokenizer_variant(const std::string& src_dir, const std::string& tag,
                                          const TokenizerEdit& edit) {
  namespace fs = std::filesystem;
  const fs::path src(src_dir);
  const fs::path dir = make_temp_dir("tok_" + tag);
  fs::copy_file(src / "tokenizer.model", dir / "tokenizer.model");
  const char* names[3] = {"tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"};
  nlohmann::ordered_json files[3];
  for (int i = 0; i < 3; ++i) {
    if (fs::exists(src / names[i])) files[i] = read_json(src / names[i]);
  }
  edit(files[0], files[1], files[2]);
  for (int i = 0; i < 3; ++i) {
    if (!files[i].is_null()) write_json(dir / names[i], files[i]);
  }
  return dir.string();
}

}  // namespace flamingo::testing
