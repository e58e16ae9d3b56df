#include "worker/tokenizer/incremental_detokenizer.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/test_paths.h"
#include "tests/worker/tokenizer/tokenizer_test_util.h"
#include "worker/tokenizer/utf8.h"

namespace tokenfab {
namespace {

// Feeds `ids` one at a time; checks every chunk is whole UTF-8 and returns
// the concatenation.
std::string Stream(const Tokenizer& t, const std::vector<int32_t>& ids, bool skip_special = false,
                   std::vector<std::string>* chunks = nullptr) {
  IncrementalDetokenizer detok(t, skip_special);
  std::string all;
  for (int32_t id : ids) {
    const std::string chunk = detok.Push(id);
    EXPECT_TRUE(IsValidUtf8(chunk)) << "chunk after id " << id << " is not whole UTF-8";
    if (chunks) chunks->push_back(chunk);
    all += chunk;
  }
  const std::string tail = detok.Finish();
  EXPECT_TRUE(IsValidUtf8(tail));
  if (chunks) chunks->push_back(tail);
  return all + tail;
}

class IncrementalDetokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::RequireFile(testing::DefaultModelPath())) GTEST_SKIP();
    auto t = testing::LoadGgufTokenizer(testing::DefaultModelPath());
    ASSERT_TRUE(t.ok()) << t.status();
    smollm_ = std::move(*t);
  }
  std::unique_ptr<Tokenizer> smollm_;
};

TEST_F(IncrementalDetokenizerTest, EmojiSplitAcrossByteTokensIsHeldBack) {
  const std::string text = "ok \xF0\x9F\xA6\x99 \xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB done";
  const std::vector<int32_t> ids = smollm_->Encode(text);
  std::vector<std::string> chunks;
  EXPECT_EQ(Stream(*smollm_, ids, false, &chunks), text);
  // The llama emoji is not one token in SmolLM2: some pushes must return
  // nothing while its bytes are incomplete.
  int empty_pushes = 0;
  for (size_t i = 0; i + 1 < chunks.size(); ++i) empty_pushes += chunks[i].empty();
  EXPECT_GT(empty_pushes, 0);
  EXPECT_GT(ids.size(), 6u);
}

TEST_F(IncrementalDetokenizerTest, CjkAndAccentsMatchWholeDecode) {
  for (const std::string text :
       {"\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C", "na\xC3\xAFve caf\xC3\xA9",
        "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4"}) {
    const std::vector<int32_t> ids = smollm_->Encode(text);
    EXPECT_EQ(Stream(*smollm_, ids), smollm_->Decode(ids));
    EXPECT_EQ(Stream(*smollm_, ids), text);
  }
}

TEST_F(IncrementalDetokenizerTest, IllFormedBytesBecomeReplacementCharacters) {
  // Byte tokens for E4 BD (an unfinished 3-byte character) then 'a', and a
  // lone E4 at the very end: U+FFFD where Decode puts it, never half a char.
  const int32_t e4 = smollm_->TokenId("\xC3\xA4");  // byte-level text of 0xE4
  const int32_t bd = smollm_->TokenId("\xC2\xBD");  // 0xBD
  const int32_t a = smollm_->TokenId("a");
  ASSERT_GE(e4, 0);
  ASSERT_GE(bd, 0);
  ASSERT_GE(a, 0);
  const std::vector<int32_t> ids = {e4, bd, a, e4};
  std::vector<std::string> chunks;
  const std::string streamed = Stream(*smollm_, ids, false, &chunks);
  EXPECT_EQ(streamed, smollm_->Decode(ids));
  EXPECT_EQ(streamed,
            "\xEF\xBF\xBD"
            "a\xEF\xBF\xBD");
  EXPECT_EQ(chunks[0], "");
  EXPECT_EQ(chunks[1], "");
  EXPECT_EQ(chunks[2],
            "\xEF\xBF\xBD"
            "a");
  EXPECT_EQ(chunks[4], "\xEF\xBF\xBD");  // flushed by Finish
}

TEST_F(IncrementalDetokenizerTest, SkipSpecialMatchesDecode) {
  const std::vector<int32_t> ids =
      smollm_->Encode("<|im_start|>assistant\nHi \xF0\x9F\x98\x80<|im_end|>");
  EXPECT_EQ(Stream(*smollm_, ids, /*skip_special=*/true), smollm_->Decode(ids, true));
  EXPECT_EQ(Stream(*smollm_, ids, /*skip_special=*/true), "assistant\nHi \xF0\x9F\x98\x80");
}

// Random id sequences: whatever bytes they spell, streaming equals Decode.
TEST_F(IncrementalDetokenizerTest, RandomSequencesMatchDecode) {
  const uint32_t seed = 20240611;
  std::printf("seed %u\n", seed);
  std::mt19937 rng(seed);
  // Favour the byte-level single-byte tokens, which split characters most.
  std::uniform_int_distribution<int32_t> any(0, smollm_->vocab_size() - 1);
  std::uniform_int_distribution<int32_t> low(0, 300);
  for (int round = 0; round < 300; ++round) {
    std::vector<int32_t> ids(1 + rng() % 24);
    for (int32_t& id : ids) id = (rng() % 2) ? low(rng) : any(rng);
    for (bool skip : {false, true}) {
      ASSERT_EQ(Stream(*smollm_, ids, skip), smollm_->Decode(ids, skip))
          << "seed " << seed << " round " << round;
    }
  }
}

TEST(IncrementalDetokenizerSpmTest, LeadingSpaceRuleMatchesDecode) {
  const std::string path = testing::LlamaCppTestData("vocab/ggml-vocab-llama-spm.gguf");
  if (!testing::RequireFile(path)) return;
  auto t = testing::LoadGgufTokenizer(path);
  ASSERT_TRUE(t.ok()) << t.status();
  const Tokenizer& spm = **t;
  const std::vector<int32_t> ids = spm.Encode("Hello \xF0\x9F\xA6\x99 world", /*add_bos=*/true);
  EXPECT_EQ(Stream(spm, ids, true), "Hello \xF0\x9F\xA6\x99 world");
  EXPECT_EQ(Stream(spm, ids, false), spm.Decode(ids));
  EXPECT_EQ(spm.Decode(ids), "<s> Hello \xF0\x9F\xA6\x99 world");

  // A completion continues its prompt: its first space is real.
  const std::vector<int32_t> completion = spm.Encode(" Paris");
  IncrementalDetokenizer continuing(spm, false, /*continues_text=*/true);
  std::string out;
  for (int32_t id : completion) out += continuing.Push(id);
  out += continuing.Finish();
  EXPECT_EQ(out, "  Paris");  // the encoder's prefix space plus the text's own
  EXPECT_EQ(spm.Decode(completion), " Paris");
}

}  // namespace
}  // namespace tokenfab
