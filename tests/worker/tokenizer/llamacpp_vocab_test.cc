// llama.cpp's own tokenizer test vectors (test-tokenizer-0): the vocab-only
// GGUF files of Llama 2 (SentencePiece), Llama 3, Qwen2 and GPT-2 with their
// .inp/.out files, tokenized as test-tokenizer-0 does it: no BOS/EOS
// (add_special = false) and special-token parsing off.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/test_paths.h"
#include "tests/worker/tokenizer/tokenizer_test_util.h"
#include "worker/tokenizer/tokenizer.h"

namespace tokenfab {
namespace {

using testing::FormatIds;
using testing::LlamaCppTestData;
using testing::ReadWholeFile;

struct VocabCase {
  std::string input;
  std::vector<int32_t> expected;
};

// test-tokenizer-0's read_tests: inputs separated by "\n__ggml_vocab_test__\n",
// outputs one line of space-separated ids per input.
std::vector<VocabCase> ReadCases(const std::string& gguf_path) {
  const std::string raw = ReadWholeFile(gguf_path + ".inp");
  const std::string out = ReadWholeFile(gguf_path + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  size_t pos = 0;
  while (pos < raw.size()) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      inputs.push_back(raw.substr(pos));
      break;
    }
    inputs.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<std::vector<int32_t>> outputs;
  size_t line_start = 0;
  while (line_start < out.size()) {
    size_t line_end = out.find('\n', line_start);
    if (line_end == std::string::npos) line_end = out.size();
    std::vector<int32_t> ids;
    size_t p = line_start;
    while (p < line_end) {
      while (p < line_end && out[p] == ' ') ++p;
      size_t q = p;
      while (q < line_end && out[q] != ' ') ++q;
      if (q > p) ids.push_back(std::stoi(out.substr(p, q - p)));
      p = q;
    }
    outputs.push_back(std::move(ids));
    line_start = line_end + 1;
  }
  std::vector<VocabCase> cases;
  if (inputs.size() != outputs.size()) {
    ADD_FAILURE() << gguf_path << ": " << inputs.size() << " inputs but " << outputs.size()
                  << " outputs";
    return cases;
  }
  for (size_t i = 0; i < inputs.size(); ++i) cases.push_back({inputs[i], outputs[i]});
  return cases;
}

class LlamaCppVocabTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LlamaCppVocabTest, MatchesReferenceTokenization) {
  const std::string path = LlamaCppTestData("vocab/ggml-vocab-" + GetParam() + ".gguf");
  if (!testing::RequireFile(path)) return;
  auto tokenizer = testing::LoadGgufTokenizer(path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::vector<VocabCase> cases = ReadCases(path);
  ASSERT_GE(cases.size(), 40u);
  int matched = 0;
  for (const VocabCase& c : cases) {
    const std::vector<int32_t> ids =
        (*tokenizer)->Encode(c.input, /*add_bos=*/false, /*parse_special=*/false);
    EXPECT_EQ(ids, c.expected) << "input '" << c.input << "'\n  got      " << FormatIds(ids)
                               << "\n  expected " << FormatIds(c.expected);
    matched += ids == c.expected;
  }
  ::testing::Test::RecordProperty("matched", matched);
  std::printf("[ %s ] %d/%zu inputs match llama.cpp exactly\n", GetParam().c_str(), matched,
              cases.size());
}

TEST_P(LlamaCppVocabTest, DecodeRoundTrips) {
  const std::string path = LlamaCppTestData("vocab/ggml-vocab-" + GetParam() + ".gguf");
  if (!testing::RequireFile(path)) return;
  auto tokenizer = testing::LoadGgufTokenizer(path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  for (const VocabCase& c : ReadCases(path)) {
    // Decoding the reference ids gives back the input, and so does decoding
    // our own ids with BOS added and skipped.
    EXPECT_EQ((*tokenizer)->Decode(c.expected), c.input);
    const std::vector<int32_t> with_bos = (*tokenizer)->Encode(c.input, /*add_bos=*/true);
    EXPECT_EQ((*tokenizer)->Decode(with_bos, /*skip_special=*/true), c.input);
  }
}

// bos/eos, add_bos and the end-of-generation set as llama.cpp reports them
// (tests/golden/tokenizer/llamacpp_vocab_facts.json).
TEST_P(LlamaCppVocabTest, SpecialTokenFactsMatchLlamaCpp) {
  const std::string path = LlamaCppTestData("vocab/ggml-vocab-" + GetParam() + ".gguf");
  if (!testing::RequireFile(path)) return;
  auto tokenizer = testing::LoadGgufTokenizer(path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const nlohmann::json facts = nlohmann::json::parse(ReadWholeFile(
      testing::GoldenPath("tokenizer/llamacpp_vocab_facts.json")))["vocabs"][GetParam()];
  const Tokenizer& t = **tokenizer;
  EXPECT_EQ(t.vocab_size(), facts["n_vocab"].get<int>());
  EXPECT_EQ(t.bos_id(), facts["bos_id"].get<int>());
  EXPECT_EQ(t.eos_id(), facts["eos_id"].get<int>());
  EXPECT_EQ(t.add_bos_default(), facts["add_bos"].get<bool>());
  EXPECT_EQ(t.end_of_generation_ids(), facts["eog_ids"].get<std::vector<int32_t>>());
}

INSTANTIATE_TEST_SUITE_P(Vocabs, LlamaCppVocabTest,
                         ::testing::Values("llama-spm", "llama-bpe", "qwen2", "gpt-2"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace tokenfab
