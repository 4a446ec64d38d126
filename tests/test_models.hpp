// Finds the real models tests run on: $TESSERA_TEST_MODEL (the file, or a
// folder holding it), then each folder of TESSERA_TEST_MODEL_DIRS (set by
// tests/CMakeLists.txt: <repo>/models, then <repo>/../shared/models).
// Tests that need a model WARN and return when it is missing.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <unistd.h>

namespace tessera::test {

/// The default model's file name (scripts/fetch-model fetches it).
inline constexpr const char* kDefaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// A path in the temporary folder unique to this process: tessera-test-<pid>-<name>.
inline std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("tessera-test-" + std::to_string(::getpid()) + "-" + name)).string();
}

/// The path of file_name (e.g. "SmolLM2-135M-Instruct.Q4_1.gguf"), or nullopt when no search place holds it.
inline std::optional<std::string> find_test_model(const std::string& file_name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  auto holds = [&](const fs::path& dir) { return fs::is_regular_file(dir / file_name, ec); };
  if (const char* env = std::getenv("TESSERA_TEST_MODEL"); env && *env) {
    const fs::path p(env);
    if (fs::is_regular_file(p, ec) && p.filename() == file_name) return p.string();
    if (fs::is_directory(p, ec) && holds(p)) return (p / file_name).string();
  }
#ifdef TESSERA_TEST_MODEL_DIRS
  std::string_view dirs = TESSERA_TEST_MODEL_DIRS;
  while (!dirs.empty()) {
    const size_t colon = dirs.find(':');
    const fs::path dir(std::string(dirs.substr(0, colon)));
    if (!dir.empty() && holds(dir)) return (dir / file_name).string();
    dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
  }
#endif
  return std::nullopt;
}

}  // namespace tessera::test
