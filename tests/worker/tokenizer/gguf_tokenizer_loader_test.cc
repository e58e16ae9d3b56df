// Tokenizer::FromGguf on small GGUF files written by the test: a working
// byte-level and SentencePiece vocabulary, and hostile metadata that must give
// an error naming the file and the key, never a crash.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/tokenizer/tokenizer_test_util.h"
#include "worker/tokenizer/tokenizer.h"
#include "worker/tokenizer/vocab.h"

namespace tokenfab {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::TinyGgufWriter;

// Byte-level tokens: "Ġ" is the space byte.
const std::vector<std::string> kBpeTokens = {"<|endoftext|>",
                                             "a",
                                             "b",
                                             "c",
                                             "\xC4\xA0",
                                             "ab",
                                             "abc",
                                             "\xC4\xA0"
                                             "a",
                                             "<|im_end|>"};
const std::vector<int32_t> kBpeTypes = {3, 1, 1, 1, 1, 1, 1, 1, 3};

TinyGgufWriter BpeFile(const std::string& pre = "gpt-2") {
  TinyGgufWriter w;
  w.Str("tokenizer.ggml.model", "gpt2")
      .Str("tokenizer.ggml.pre", pre)
      .StrArray("tokenizer.ggml.tokens", kBpeTokens)
      .I32Array("tokenizer.ggml.token_type", kBpeTypes)
      .StrArray("tokenizer.ggml.merges", {"a b", "ab c", "\xC4\xA0 a"})
      .U32Value("tokenizer.ggml.bos_token_id", 0)
      .U32Value("tokenizer.ggml.eos_token_id", 8);
  return w;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& path) {
  return testing::LoadGgufTokenizer(path);
}

TEST(GgufTokenizerLoaderTest, SmallByteLevelVocabularyWorks) {
  auto t = Load(BpeFile().WriteTemp("bpe_ok.gguf"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT((*t)->Encode("abc ab a"), ElementsAre(6, 4, 5, 7));
  EXPECT_THAT((*t)->Encode("abc<|im_end|>"), ElementsAre(6, 8));
  EXPECT_EQ((*t)->Decode((*t)->Encode("abc ab a")), "abc ab a");
  EXPECT_FALSE((*t)->add_bos_default());
  EXPECT_THAT((*t)->end_of_generation_ids(), ElementsAre(0, 8));
  // A byte with no token is dropped, as llama.cpp drops it.
  EXPECT_THAT((*t)->Encode("az"), ElementsAre(1));
}

TEST(GgufTokenizerLoaderTest, SmallSentencePieceVocabularyWorks) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) tokens.push_back(ByteTokenText(static_cast<uint8_t>(b)));
  const int32_t base = static_cast<int32_t>(tokens.size());
  for (const char* t : {"\xE2\x96\x81", "a", "b",
                        "\xE2\x96\x81"
                        "a",
                        "ab",
                        "\xE2\x96\x81"
                        "ab"})
    tokens.push_back(t);
  std::vector<float> scores(tokens.size(), 0.0f);
  scores[base + 3] = -1.0f;  // ▁a
  scores[base + 4] = -2.0f;  // ab
  scores[base + 5] = -0.5f;  // ▁ab
  std::vector<int32_t> types(tokens.size(), 1);
  types[0] = 2;
  types[1] = types[2] = 3;
  for (int b = 0; b < 256; ++b) types[3 + b] = 6;
  TinyGgufWriter w;
  w.Str("tokenizer.ggml.model", "llama")
      .StrArray("tokenizer.ggml.tokens", tokens)
      .F32Array("tokenizer.ggml.scores", scores)
      .I32Array("tokenizer.ggml.token_type", types);
  auto t = Load(w.WriteTemp("spm_ok.gguf"));
  ASSERT_TRUE(t.ok()) << t.status();
  // " ab" -> ▁ab (▁a first by score, then ▁a+b); "z" has no token: byte 0x7A.
  EXPECT_THAT((*t)->Encode("ab z", /*add_bos=*/true), ElementsAre(1, base + 5, base, 3 + 'z'));
  EXPECT_EQ((*t)->Decode((*t)->Encode("ab z")), "ab z");
  EXPECT_TRUE((*t)->add_bos_default());
  EXPECT_EQ((*t)->bos_id(), 1);
  EXPECT_EQ((*t)->eos_id(), 2);
}

struct HostileCase {
  std::string name;
  TinyGgufWriter file;
  std::string key;      // the error must name this key
  std::string message;  // ... and contain this
};

std::vector<HostileCase> HostileCases() {
  std::vector<HostileCase> cases;
  {
    TinyGgufWriter w;
    w.Str("tokenizer.ggml.model", "gpt2")
        .StrArray("tokenizer.ggml.tokens", kBpeTokens)
        .I32Array("tokenizer.ggml.token_type", {1, 1, 1})
        .StrArray("tokenizer.ggml.merges", {"a b"});
    cases.push_back({"type_count", w, "tokenizer.ggml.token_type", "3 entries for 9 tokens"});
  }
  {
    TinyGgufWriter w;
    w.Str("tokenizer.ggml.model", "llama")
        .StrArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"})
        .F32Array("tokenizer.ggml.scores", {0, 0});
    cases.push_back({"score_count", w, "tokenizer.ggml.scores", "2 entries for 4 tokens"});
  }
  {
    TinyGgufWriter w = BpeFile();
    w.U32Value("tokenizer.ggml.eot_token_id", 9);
    cases.push_back(
        {"eot_out_of_range", w, "tokenizer.ggml.eot_token_id", "outside the vocabulary"});
  }
  {
    TinyGgufWriter w;
    w.Str("tokenizer.ggml.model", "gpt2")
        .StrArray("tokenizer.ggml.tokens", kBpeTokens)
        .StrArray("tokenizer.ggml.merges", {"a b"})
        .U32Value("tokenizer.ggml.bos_token_id", 4000000000u);
    cases.push_back(
        {"bos_out_of_range", w, "tokenizer.ggml.bos_token_id", "outside the vocabulary"});
  }
  {
    TinyGgufWriter w;
    w.Str("tokenizer.ggml.model", "gpt2")
        .StrArray("tokenizer.ggml.tokens", kBpeTokens)
        .StrArray("tokenizer.ggml.merges", {"a b", "abc"});
    cases.push_back({"merge_without_space", w, "tokenizer.ggml.merges", "merge #1 'abc'"});
  }
  {
    TinyGgufWriter w;
    w.Str("tokenizer.ggml.model", "gpt2")
        .StrArray("tokenizer.ggml.tokens", kBpeTokens)
        .StrArray("tokenizer.ggml.merges", {"ab "});
    cases.push_back({"merge_missing_right", w, "tokenizer.ggml.merges", "merge #0"});
  }
  {
    TinyGgufWriter w;
    w.Str("tokenizer.ggml.model", "gpt2").StrArray("tokenizer.ggml.tokens", kBpeTokens);
    cases.push_back({"no_merges", w, "tokenizer.ggml.merges", "missing"});
  }
  {
    TinyGgufWriter w;
    w.Str("tokenizer.ggml.model", "gpt2").I32Array("tokenizer.ggml.tokens", {1, 2, 3});
    cases.push_back({"tokens_not_strings", w, "tokenizer.ggml.tokens", "array of strings"});
  }
  {
    TinyGgufWriter w;
    w.Str("tokenizer.ggml.model", "gpt2").StrArray("tokenizer.ggml.tokens", {});
    cases.push_back({"empty_vocab", w, "tokenizer.ggml.tokens", "empty"});
  }
  {
    TinyGgufWriter w;
    w.StrArray("tokenizer.ggml.tokens", kBpeTokens);
    cases.push_back({"no_model", w, "tokenizer.ggml.model", "missing"});
  }
  {
    TinyGgufWriter w;
    w.Str("tokenizer.ggml.model", "bert").StrArray("tokenizer.ggml.tokens", kBpeTokens);
    cases.push_back({"unsupported_model", w, "tokenizer.ggml.model", "not supported"});
  }
  {
    TinyGgufWriter w = BpeFile("no-such-pre");
    cases.push_back({"unsupported_pre", w, "tokenizer.ggml.pre", "no-such-pre"});
  }
  {
    TinyGgufWriter w;
    w.Str("tokenizer.ggml.model", "gpt2")
        .StrArray("tokenizer.ggml.tokens", {"a", "b"})
        .StrArray("tokenizer.ggml.merges", {"a b"})
        .Bool("tokenizer.ggml.add_bos_token", true);
    // gpt2's default BOS (id 11) is outside a 2-token vocabulary.
    cases.push_back({"add_bos_without_bos", w, "tokenizer.ggml.add_bos_token", "no BOS"});
  }
  {
    TinyGgufWriter w = BpeFile();
    w.Str("tokenizer.ggml.add_bos_token", "yes");
    cases.push_back({"add_bos_wrong_type", w, "tokenizer.ggml.add_bos_token", "bool"});
  }
  return cases;
}

TEST(GgufTokenizerLoaderTest, HostileMetadataIsAClearError) {
  for (const HostileCase& c : HostileCases()) {
    const std::string path = c.file.WriteTemp(c.name + ".gguf");
    auto t = Load(path);
    ASSERT_FALSE(t.ok()) << c.name << " was accepted";
    const std::string message(t.status().message());
    EXPECT_THAT(message, HasSubstr(path)) << c.name;
    EXPECT_THAT(message, HasSubstr(c.key)) << c.name;
    EXPECT_THAT(message, HasSubstr(c.message)) << c.name;
  }
}

TEST(GgufTokenizerLoaderTest, MergesOfUnknownTokensAndOddTypesAreHarmless) {
  TinyGgufWriter w;
  w.Str("tokenizer.ggml.model", "gpt2")
      .StrArray("tokenizer.ggml.tokens", {"a", "b", "ab", ""})
      .I32Array("tokenizer.ggml.token_type", {1, 1, 1, 99})
      .StrArray("tokenizer.ggml.merges", {"x y", "a b", "ab zz"});
  auto t = Load(w.WriteTemp("odd.gguf"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT((*t)->Encode("abab"), ElementsAre(2, 2));
  EXPECT_EQ((*t)->TokenText(3), "[EMPTY_3]");  // as llama.cpp renames empty tokens
  EXPECT_EQ((*t)->TokenPiece(3), "");          // undefined type renders as nothing
  EXPECT_EQ((*t)->Decode(std::vector<int32_t>{2, -5, 99, 0}), "aba");  // bad ids skipped
}

}  // namespace
}  // namespace tokenfab
