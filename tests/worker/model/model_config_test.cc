#include "worker/model/model_config.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tokenfab {
namespace {

using ::testing::HasSubstr;

nlohmann::json LlamaConfig() {
  return nlohmann::json::parse(R"({
    "model_type": "llama", "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "tie_word_embeddings": false})");
}

TEST(ModelConfigTest, ReadsHuggingFaceConfig) {
  auto c = ModelConfigFromHfJson(LlamaConfig(), "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kLlama);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->rope_style, RopeStyle::kHalves);
  ASSERT_EQ(c->rope_inv_freq.size(), 8u);
  EXPECT_FLOAT_EQ(c->rope_inv_freq[0], 1.0f);
  EXPECT_NEAR(c->rope_inv_freq[1], std::pow(500000.0, -2.0 / 16), 1e-7);
  EXPECT_FALSE(c->qkv_bias);
}

TEST(ModelConfigTest, Llama3ScalingStretchesOnlyLowFrequencies) {
  nlohmann::json j = LlamaConfig();
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 32}};
  auto c = ModelConfigFromHfJson(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  const std::vector<float> plain = RopeInverseFrequencies(16, 500000.0f);
  EXPECT_EQ(c->rope_inv_freq[0], plain[0]);  // wavelength 2*pi < 32/4: kept
  EXPECT_NEAR(c->rope_inv_freq[7], plain[7] / 8.0f, 1e-12);  // long wavelength: divided by 8
  // In between, smoothly interpolated.
  for (int i = 0; i < 8; ++i) {
    EXPECT_LE(c->rope_inv_freq[i], plain[i]);
    EXPECT_GE(c->rope_inv_freq[i], plain[i] / 8.0f * (1 - 1e-6f));
  }
}

TEST(ModelConfigTest, RejectsBadValues) {
  struct Case {
    const char* key;
    nlohmann::json value;
    const char* expected;
  };
  const Case cases[] = {
      {"num_attention_heads", 0, "out of range"},
      {"num_key_value_heads", 3, "not a multiple of 3 KV heads"},
      {"hidden_size", 1 << 30, "out of range"},
      {"vocab_size", "many", "not an integer"},
      {"max_position_embeddings", -5, "out of range"},
      {"model_type", "gpt_neox", "unsupported architecture 'gpt_neox'"},
      {"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}, "'yarn' is not supported"},
      {"rms_norm_eps", -1.0, "epsilon"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key);
    nlohmann::json j = LlamaConfig();
    j[c.key] = c.value;
    auto config = ModelConfigFromHfJson(j, "bad/config.json");
    ASSERT_FALSE(config.ok());
    EXPECT_THAT(config.status().message(), HasSubstr("bad/config.json"));
    EXPECT_THAT(config.status().message(), HasSubstr(c.expected));
  }
}

TEST(ModelConfigTest, MistralSlidingWindowCapsTheContext) {
  nlohmann::json j = LlamaConfig();
  j["model_type"] = "mistral";
  j["sliding_window"] = 128;
  auto c = ModelConfigFromHfJson(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->context_length, 128);
  j["sliding_window"] = nullptr;
  EXPECT_EQ(ModelConfigFromHfJson(j, "config.json")->context_length, 512);
}

TEST(ModelConfigTest, Qwen2HasBiases) {
  nlohmann::json j = LlamaConfig();
  j["model_type"] = "qwen2";
  EXPECT_TRUE(ModelConfigFromHfJson(j, "config.json")->qkv_bias);
}

}  // namespace
}  // namespace tokenfab
