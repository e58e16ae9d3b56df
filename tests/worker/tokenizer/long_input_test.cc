// Long inputs: a 10 KB mixed prompt round-trips in every family, and 64 KB
// runs of one character class finish within a bound some 100x above their
// usual time, which catches accidental quadratic behaviour (throughput
// figures: bench/tokenizer_bench).
#include <chrono>
#include <string>

#include "gtest/gtest.h"
#include "tests/test_paths.h"
#include "tests/worker/tokenizer/tokenizer_test_util.h"
#include "worker/tokenizer/tokenizer.h"

namespace tokenfab {
namespace {

std::string TenKilobytePrompt() {
  const std::string paragraph =
      "The quick brown fox jumps over the lazy dog; it's 2024 and we've shipped v1.2.3 "
      "(finally!).\n"
      "def encode(text):\n    return [vocab[w] for w in text.split()]  # \xE2\x9C\x93 fast\n"
      "Caf\xC3\xA9 na\xC3\xAFve \xE4\xBD\xA0\xE5\xA5\xBD\xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x98\x80  "
      "  indented 1234567890\n";
  std::string text;
  while (text.size() < 10 * 1024) text += paragraph;
  return text.substr(0, 10 * 1024);
}

class LongInputTest : public ::testing::TestWithParam<std::string> {};

// A 10 KB prompt of every kind of text round-trips in every family.
TEST_P(LongInputTest, TenKilobytePromptRoundTrips) {
  const std::string name = GetParam();
  absl::StatusOr<std::unique_ptr<Tokenizer>> t;
  if (name == "smollm2") {
    if (!testing::RequireFile(testing::DefaultModelPath())) return;
    t = testing::LoadGgufTokenizer(testing::DefaultModelPath());
  } else if (name == "hf_bytelevel_llama3") {
    t = Tokenizer::FromHfDirectory(testing::TestDataPath("tokenizer/bytelevel_llama3"));
  } else {
    const std::string path = testing::LlamaCppTestData("vocab/ggml-vocab-" + name + ".gguf");
    if (!testing::RequireFile(path)) return;
    t = testing::LoadGgufTokenizer(path);
  }
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string text = TenKilobytePrompt();
  const std::vector<int32_t> ids = (*t)->Encode(text);
  EXPECT_GT(ids.size(), 1000u);
  EXPECT_EQ((*t)->Decode(ids), text);
}

// Long runs of one character class are where a regex can backtrack
// quadratically and a merge loop can degrade; 64 KB of each must stay fast.
TEST(LongInputTest, LongUniformRunsStayLinear) {
  const std::string path = testing::LlamaCppTestData("vocab/ggml-vocab-llama-bpe.gguf");
  if (!testing::RequireFile(path)) return;
  auto t = testing::LoadGgufTokenizer(path);
  ASSERT_TRUE(t.ok()) << t.status();
  for (const std::string unit : {" ", "a", "7", "\n \n", "\xE4\xBD\xA0", "!"}) {
    std::string text;
    while (text.size() < 64 * 1024) text += unit;
    const auto start = std::chrono::steady_clock::now();
    const auto ids = (*t)->Encode(text);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf("[ llama-bpe ] 64 KB of '%s' -> %zu tokens in %.2f ms\n",
                unit == "\n \n" ? "\\n \\n" : unit.c_str(), ids.size(), ms);
    EXPECT_EQ((*t)->Decode(ids), text);
    EXPECT_LT(ms, 1000.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, LongInputTest,
                         ::testing::Values("smollm2", "llama-bpe", "qwen2", "llama-spm", "gpt-2",
                                           "hf_bytelevel_llama3"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace tokenfab
