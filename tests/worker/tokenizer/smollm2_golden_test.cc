// SmolLM2-135M-Instruct's GGUF vocabulary against llama.cpp's tokenization of
// the same strings (tests/golden/tokenizer/smollm2_llamacpp.json, made by
// tools/make_tokenizer_golden.py through llama-cpp-python).
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

class SmolLm2GoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string model = testing::DefaultModelPath();
    if (!testing::RequireFile(model)) GTEST_SKIP();
    auto tokenizer = testing::LoadGgufTokenizer(model);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer);
    golden_ = nlohmann::json::parse(
        testing::ReadWholeFile(testing::GoldenPath("tokenizer/smollm2_llamacpp.json")));
  }

  static std::string Input(const nlohmann::json& c) {
    return c.contains("hex") ? testing::HexDecode(c["hex"].get<std::string>())
                             : c["text"].get<std::string>();
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  nlohmann::json golden_;
};

TEST_F(SmolLm2GoldenTest, VocabularyFacts) {
  EXPECT_EQ(tokenizer_->vocab_size(), golden_["n_vocab"].get<int>());
  EXPECT_EQ(tokenizer_->bos_id(), golden_["bos_id"].get<int>());
  EXPECT_EQ(tokenizer_->eos_id(), golden_["eos_id"].get<int>());
  EXPECT_EQ(tokenizer_->add_bos_default(), golden_["add_bos"].get<bool>());
  EXPECT_EQ(tokenizer_->end_of_generation_ids(), golden_["eog_ids"].get<std::vector<int32_t>>());
  EXPECT_TRUE(tokenizer_->IsEndOfGeneration(tokenizer_->TokenId("<|im_end|>")));
  EXPECT_FALSE(tokenizer_->IsEndOfGeneration(tokenizer_->TokenId("<|im_start|>")));
  EXPECT_EQ(tokenizer_->bos_text(), "<|im_start|>");
  EXPECT_EQ(tokenizer_->eos_text(), "<|im_end|>");
}

TEST_F(SmolLm2GoldenTest, SpecialParsingMatchesLlamaCpp) {
  int matched = 0, total = 0;
  for (const auto& c : golden_["cases_special"]) {
    const std::string input = Input(c);
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    const auto ids = tokenizer_->Encode(input, /*add_bos=*/true, /*parse_special=*/true);
    EXPECT_EQ(ids, expected) << "input '" << input << "'\n  got      " << FormatIds(ids)
                             << "\n  expected " << FormatIds(expected);
    matched += ids == expected;
    ++total;
  }
  EXPECT_GE(total, 35);
  std::printf("[ smollm2 special=true ] %d/%d match llama.cpp exactly\n", matched, total);
}

TEST_F(SmolLm2GoldenTest, NoSpecialParsingMatchesLlamaCpp) {
  for (const auto& c : golden_["cases_no_special"]) {
    const std::string input = Input(c);
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    const auto ids = tokenizer_->Encode(input, /*add_bos=*/false, /*parse_special=*/false);
    EXPECT_EQ(ids, expected) << "input '" << input << "'\n  got      " << FormatIds(ids)
                             << "\n  expected " << FormatIds(expected);
  }
}

TEST_F(SmolLm2GoldenTest, DecodeRoundTripsValidUtf8) {
  for (const auto& c : golden_["cases_special"]) {
    if (c.contains("hex")) continue;  // ill-formed input decodes to U+FFFD, not to itself
    const std::string input = Input(c);
    EXPECT_EQ(tokenizer_->Decode(c["ids"].get<std::vector<int32_t>>()), input);
  }
}

TEST_F(SmolLm2GoldenTest, SkipSpecialDropsControlTokens) {
  const auto ids = tokenizer_->Encode("<|im_start|>user\nHi<|im_end|>");
  EXPECT_EQ(tokenizer_->Decode(ids, /*skip_special=*/true), "user\nHi");
  EXPECT_EQ(tokenizer_->Decode(ids), "<|im_start|>user\nHi<|im_end|>");
  EXPECT_TRUE(tokenizer_->IsSpecial(ids.front()));
  EXPECT_FALSE(tokenizer_->IsSpecial(ids[1]));
}

}  // namespace
}  // namespace tokenfab
