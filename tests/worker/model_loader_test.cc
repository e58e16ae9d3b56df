#include "worker/model_loader.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/test_paths.h"

namespace tokenfab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(ModelLoaderTest, LoadsTheDefaultGguf) {
  if (!testing::RequireFile(testing::DefaultModelPath())) return;
  auto m = LoadModel(testing::DefaultModelPath());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->format, ModelFormat::kGguf);
  EXPECT_EQ((*m)->config.num_layers, 30);
  EXPECT_EQ((*m)->tokenizer->vocab_size(), 49152);
  ASSERT_NE((*m)->chat_template, nullptr);
  EXPECT_EQ((*m)->weights.layers.size(), 30u);
  EXPECT_EQ((*m)->weights.output.data, (*m)->weights.token_embedding.data);  // tied
}

TEST(ModelLoaderTest, RouterLoadSkipsWeights) {
  if (!testing::RequireFile(testing::DefaultModelPath())) return;
  auto m = LoadModel(testing::DefaultModelPath(), {.load_weights = false});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE((*m)->weights.layers.empty());
  EXPECT_NE((*m)->tokenizer, nullptr);
}

TEST(ModelLoaderTest, LoadsAHuggingFaceFolder) {
  auto m = LoadModel(testing::TestDataPath("hf/tiny-llama"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->format, ModelFormat::kHuggingFace);
  EXPECT_NE((*m)->chat_template, nullptr);
  EXPECT_EQ((*m)->weights.layers.size(), 2u);
}

class BrokenFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tokenfab-loader-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::copy(testing::TestDataPath("hf/tiny-qwen2"), dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  nlohmann::json ReadJson(const std::string& name) {
    std::ifstream in(dir_ / name);
    return nlohmann::json::parse(in);
  }
  void WriteJson(const std::string& name, const nlohmann::json& j) {
    std::ofstream(dir_ / name) << j.dump();
  }
  fs::path dir_;
};

TEST_F(BrokenFolderTest, UnsupportedTemplateIsALoadErrorWithLineAndColumn) {
  nlohmann::json cfg = ReadJson("tokenizer_config.json");
  cfg["chat_template"] = "{% for m in messages %}\n{% extends 'base.html' %}{% endfor %}";
  WriteJson("tokenizer_config.json", cfg);
  auto m = LoadModel(dir_.string());
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("chat template"));
  EXPECT_THAT(m.status().message(), HasSubstr("line 2"));
}

TEST_F(BrokenFolderTest, WrongShapeNamesTheTensor) {
  nlohmann::json cfg = ReadJson("config.json");
  cfg["intermediate_size"] = 128;  // the checkpoint has 160
  WriteJson("config.json", cfg);
  auto m = LoadModel(dir_.string());
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("mlp.gate_proj.weight"));
  EXPECT_THAT(m.status().message(), HasSubstr("expected [128 x 64]"));
}

TEST_F(BrokenFolderTest, MissingTensorIsNamed) {
  nlohmann::json cfg = ReadJson("config.json");
  cfg["num_hidden_layers"] = 3;
  WriteJson("config.json", cfg);
  auto m = LoadModel(dir_.string());
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("model.layers.2.input_layernorm.weight' is missing"));
}

TEST_F(BrokenFolderTest, WrongJsonTypesAreErrorsNotCrashes) {
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"tie_word_embeddings", 1}, {"rope_parameters", {{"rope_theta", "big"}}}, {"mlp_bias", "no"},
           {"rope_scaling", {{"rope_type", 3}}}}) {
    SCOPED_TRACE(key);
    nlohmann::json cfg = ReadJson("config.json");
    const nlohmann::json saved = cfg;
    cfg[key] = value;
    WriteJson("config.json", cfg);
    auto m = LoadModel(dir_.string());
    ASSERT_FALSE(m.ok());
    EXPECT_THAT(m.status().message(), HasSubstr("config.json"));
    WriteJson("config.json", saved);
  }
  nlohmann::json tc = ReadJson("tokenizer_config.json");
  tc["chat_template"] = nlohmann::json::array({{{"name", 5}, {"template", "x"}}});
  WriteJson("tokenizer_config.json", tc);
  auto m = LoadModel(dir_.string());
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("tokenizer_config.json"));
}

TEST(ModelLoaderTest, MissingPathIsNotFound) {
  auto m = LoadModel("/nonexistent/model");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tokenfab
