// Tokenizer::FromHfDirectory on tokenizer.json files written by the test:
// malformed or unsupported content must give an error naming the file.
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/tokenizer/tokenizer.h"

namespace tokenfab {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string WriteDir(const std::string& name, const std::string& tokenizer_json,
                     const std::string& config_json = "") {
  const auto dir = std::filesystem::temp_directory_path() / ("tokenfab_hf_" + name);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tokenizer_json;
  std::filesystem::remove(dir / "tokenizer_config.json");
  if (!config_json.empty()) std::ofstream(dir / "tokenizer_config.json") << config_json;
  return dir.string();
}

// A byte-level BPE model over "a", "b", "ab" (plus "Ġ" for the space byte).
std::string ByteLevelJson(const std::string& model_extra = "",
                          const std::string& merges = R"(["a b"])",
                          const std::string& vocab = R"({"a": 0, "b": 1, "ab": 2, "\u0120": 3})") {
  return R"({"added_tokens": [{"id": 4, "content": "<eos>", "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "post_processor": null, "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", )" +
         model_extra + R"( "vocab": )" + vocab + R"(, "merges": )" + merges + "}}";
}

TEST(HfTokenizerLoaderTest, MinimalByteLevelFile) {
  auto t =
      Tokenizer::FromHfDirectory(WriteDir("minimal", ByteLevelJson(), R"({"eos_token": "<eos>"})"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT((*t)->Encode("ab a<eos>"), ElementsAre(2, 3, 0, 4));
  EXPECT_EQ((*t)->eos_id(), 4);
  EXPECT_TRUE((*t)->IsEndOfGeneration(4));
  EXPECT_FALSE((*t)->add_bos_default());
  EXPECT_EQ((*t)->Decode((*t)->Encode("ab a<eos>"), /*skip_special=*/true), "ab a");
}

struct BadCase {
  std::string name;
  std::string json;
  std::string message;
};

TEST(HfTokenizerLoaderTest, MalformedFilesAreClearErrors) {
  const std::vector<BadCase> cases = {
      {"not_json", "{not json", "not valid JSON"},
      {"no_model", R"({"added_tokens": []})", "no 'model'"},
      {"unigram", R"({"model": {"type": "Unigram", "vocab": []}})", "'Unigram' is not supported"},
      {"merge_not_pair", ByteLevelJson("", R"(["a b c"])"), "merge #0"},
      {"merge_unknown", ByteLevelJson("", R"(["a z"])"), "not in the vocabulary"},
      {"merge_list_form_bad", ByteLevelJson("", R"([["a"]])"), "merge #0"},
      {"id_not_int", ByteLevelJson("", R"([])", R"({"a": "zero"})"), "non-integer id"},
      {"id_negative", ByteLevelJson("", R"([])", R"({"a": -1})"), "out of range"},
      {"id_huge", ByteLevelJson("", R"([])", R"({"a": 9000000})"), "far beyond"},
      {"id_twice", ByteLevelJson("", R"([])", R"({"a": 0, "b": 0})"), "used twice"},
      {"bad_unk", ByteLevelJson(R"("unk_token": "<nope>",)"), "unk_token '<nope>'"},
      {"bool_as_string", ByteLevelJson(R"("byte_fallback": "yes",)"),
       "'byte_fallback' must be a boolean"},
      {"dropout", ByteLevelJson(R"("dropout": 0.1,)"), "dropout"},
      {"bad_regex",
       R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"},
          "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})",
       "cannot compile regex"},
      {"unknown_pre",
       R"({"pre_tokenizer": {"type": "BertPreTokenizer"}, "model": {"type": "BPE", "vocab": {"a": 0}}})",
       "'BertPreTokenizer' is not supported"},
      {"bad_behavior",
       R"({"pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways"},
          "model": {"type": "BPE", "vocab": {"a": 0}}})",
       "unknown split behavior"},
      {"added_no_content",
       R"({"added_tokens": [{"id": 1}], "model": {"type": "BPE", "vocab": {"a": 0}}})",
       "has no content"},
  };
  for (const BadCase& c : cases) {
    const std::string dir = WriteDir(c.name, c.json);
    auto t = Tokenizer::FromHfDirectory(dir);
    ASSERT_FALSE(t.ok()) << c.name << " was accepted";
    const std::string message(t.status().message());
    EXPECT_THAT(message, HasSubstr(dir)) << c.name;
    EXPECT_THAT(message, HasSubstr(c.message)) << c.name;
  }
}

TEST(HfTokenizerLoaderTest, AddBosNeedsABosToken) {
  auto t = Tokenizer::FromHfDirectory(
      WriteDir("bos_missing", ByteLevelJson(), R"({"add_bos_token": true, "bos_token": "<s>"})"));
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("bos token '<s>'"));
}

}  // namespace
}  // namespace tokenfab
