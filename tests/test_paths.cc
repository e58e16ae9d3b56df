#include "tests/test_paths.h"

#include <cstdlib>
#include <filesystem>

#include "gtest/gtest.h"

namespace tokenfab::testing {

std::string CacheDir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) {
    return std::string(xdg) + "/tokenfab";
  }
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/root") + "/.cache/tokenfab";
}

std::string DefaultModelPath() {
  if (const char* m = std::getenv("TOKENFAB_TEST_MODEL"); m && *m) return m;
  return CacheDir() + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::string LlamaCppTestData(const std::string& relative) {
  return CacheDir() + "/testdata/llama.cpp-0.3.36/" + relative;
}

// $TOKENFAB_SOURCE_DIR when the test binaries run from another checkout
// (copied to a GPU machine, say); else the tree they were built from.
std::string SourceDir() {
  if (const char* dir = std::getenv("TOKENFAB_SOURCE_DIR"); dir && *dir) return dir;
  return TOKENFAB_SOURCE_DIR;
}
std::string GoldenPath(const std::string& relative) { return SourceDir() + "/tests/golden/" + relative; }
std::string TestDataPath(const std::string& relative) { return SourceDir() + "/tests/data/" + relative; }
std::string TokenfabBinary() { return std::string(TOKENFAB_BINARY_DIR) + "/server/tokenfab"; }

bool RequireFile(const std::string& path) {
  if (std::filesystem::exists(path)) return true;
  ADD_FAILURE() << path << " is missing; run scripts/setup to fetch the model and test data";
  return false;
}

}  // namespace tokenfab::testing
