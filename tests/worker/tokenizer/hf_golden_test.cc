// The small tokenizer.json files under tests/data/tokenizer/ against the
// Python `tokenizers` library (tests/golden/tokenizer/hf_<name>.json, made by
// tools/make_tokenizer_golden.py): ids with and without post-processing, and
// decoding with special tokens skipped.
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

class HfGoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto tokenizer = Tokenizer::FromHfDirectory(testing::TestDataPath("tokenizer/" + GetParam()));
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer);
    golden_ = nlohmann::json::parse(
        testing::ReadWholeFile(testing::GoldenPath("tokenizer/hf_" + GetParam() + ".json")));
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  nlohmann::json golden_;
};

TEST_P(HfGoldenTest, IdsMatchTokenizersLibrary) {
  EXPECT_EQ(tokenizer_->vocab_size(), golden_["vocab_size"].get<int>());
  int matched = 0, total = 0;
  for (const auto& c : golden_["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    const auto expected_plain = c["ids_no_bos"].get<std::vector<int32_t>>();
    const auto ids = tokenizer_->Encode(text, /*add_bos=*/true);
    const auto plain = tokenizer_->Encode(text, /*add_bos=*/false);
    EXPECT_EQ(ids, expected) << "input '" << text << "'\n  got      " << FormatIds(ids)
                             << "\n  expected " << FormatIds(expected);
    EXPECT_EQ(plain, expected_plain) << "input '" << text << "' without post-processing";
    matched += ids == expected && plain == expected_plain;
    ++total;
  }
  EXPECT_GE(total, 30);
  std::printf("[ %s ] %d/%d match tokenizers exactly\n", GetParam().c_str(), matched, total);
}

TEST_P(HfGoldenTest, SkipSpecialDecodeMatchesTokenizersLibrary) {
  for (const auto& c : golden_["cases"]) {
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tokenizer_->Decode(ids, /*skip_special=*/true),
              c["decoded_skip_special"].get<std::string>())
        << "ids " << FormatIds(ids);
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, HfGoldenTest,
                         ::testing::Values("bytelevel_llama3", "bytelevel_gpt2", "spm_bpe_legacy",
                                           "spm_bpe_metaspace"));

TEST(HfTokenizerTest, ByteLevelRoundTripsAndReadsConfig) {
  auto tokenizer = Tokenizer::FromHfDirectory(testing::TestDataPath("tokenizer/bytelevel_llama3"));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const Tokenizer& t = **tokenizer;
  EXPECT_TRUE(t.add_bos_default());
  EXPECT_EQ(t.bos_text(), "<|begin_of_text|>");
  EXPECT_EQ(t.eos_text(), "<|eot_id|>");
  EXPECT_TRUE(t.IsEndOfGeneration(t.eos_id()));
  EXPECT_TRUE(t.IsEndOfGeneration(t.TokenId("<|end_of_text|>")));
  for (const std::string s :
       {"Hello, world!", "  spaces\n\n\ttabs ", "caf\xC3\xA9 \xF0\x9F\x98\x80 \xE4\xBD\xA0"}) {
    EXPECT_EQ(t.Decode(t.Encode(s)), s);
    EXPECT_EQ(t.Decode(t.Encode(s, /*add_bos=*/true), /*skip_special=*/true), s);
  }
  // A user-defined (non-special) added token is split even without special parsing.
  const auto ids = t.Encode("a<tool_call>b", false, /*parse_special=*/false);
  EXPECT_NE(std::find(ids.begin(), ids.end(), t.TokenId("<tool_call>")), ids.end());
  const auto no_special = t.Encode("<|eot_id|>", false, /*parse_special=*/false);
  EXPECT_GT(no_special.size(), 1u);
}

TEST(HfTokenizerTest, SentencePieceStyleDropsOnlyTheAddedSpace) {
  auto tokenizer = Tokenizer::FromHfDirectory(testing::TestDataPath("tokenizer/spm_bpe_legacy"));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const Tokenizer& t = **tokenizer;
  for (const std::string s :
       {"Hello world", " leading space", "\xE4\xBD\xA0\xE5\xA5\xBD", "a\nb"}) {
    EXPECT_EQ(t.Decode(t.Encode(s)), s);
    EXPECT_EQ(t.Decode(t.Encode(s, /*add_bos=*/true), /*skip_special=*/true), s);
  }
  // Characters outside the vocabulary come back through <0xXX> byte tokens.
  const auto ids = t.Encode("\xF0\x9F\xA6\x99");  // llama emoji
  EXPECT_EQ(t.TokenText(ids.back()).substr(0, 3), "<0x");
}

TEST(HfTokenizerTest, MissingDirectoryIsAnErrorNamingTheFile) {
  auto tokenizer = Tokenizer::FromHfDirectory("/nonexistent/tokenizer/dir");
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_NE(tokenizer.status().message().find("/nonexistent/tokenizer/dir/tokenizer.json"),
            std::string::npos);
}

}  // namespace
}  // namespace tokenfab
