// Paths the tests read: the default model and the test data that scripts/setup
// fetches into the cache, and the committed golden files under tests/golden.
// A missing fetched file is a test failure that says to run scripts/setup.
#ifndef TOKENFAB_TESTS_TEST_PATHS_H_
#define TOKENFAB_TESTS_TEST_PATHS_H_

#include <string>

namespace tokenfab::testing {

// ${XDG_CACHE_HOME:-$HOME/.cache}/tokenfab
std::string CacheDir();
// The default model (SmolLM2-135M-Instruct Q4_1); $TOKENFAB_TEST_MODEL overrides.
std::string DefaultModelPath();
// Files extracted from llama.cpp's source distribution by scripts/setup:
// LlamaCppTestData("templates/Qwen-Qwen2.5-7B-Instruct.jinja").
std::string LlamaCppTestData(const std::string& relative);
// The repository root, and tests/golden/<relative>, tests/data/<relative>.
std::string SourceDir();
std::string GoldenPath(const std::string& relative);
std::string TestDataPath(const std::string& relative);
// The built `tokenfab` binary.
std::string TokenfabBinary();
// True if the file exists; otherwise records a failure telling to run scripts/setup.
bool RequireFile(const std::string& path);

}  // namespace tokenfab::testing

#endif  // TOKENFAB_TESTS_TEST_PATHS_H_
