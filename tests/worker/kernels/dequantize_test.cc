// DequantizeRow against gguf-py's independent implementation of every block
// format (golden data from tools/make_tiny_gguf.py).
#include "worker/kernels/dequantize.h"

#include <cmath>
#include <fstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/test_paths.h"
#include "worker/model/tensor_types.h"

namespace tokenfab {
namespace {

std::vector<uint8_t> FromHex(const std::string& hex) {
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

TEST(DequantizeTest, MatchesGgufPyForEveryFormat) {
  std::ifstream in(testing::GoldenPath("gguf/dequant.json"));
  ASSERT_TRUE(in) << "missing golden dequant.json";
  const nlohmann::json golden = nlohmann::json::parse(in);
  int checked_types = 0;
  for (const auto& type : golden["types"]) {
    const std::string name = type["type"];
    SCOPED_TRACE(name);
    auto traits = GetDTypeTraits(type["ggml_type_id"].get<uint32_t>());
    ASSERT_TRUE(traits.has_value());
    EXPECT_EQ(traits->name, name);
    EXPECT_EQ(traits->block_bytes * (traits->block_elems == 1 ? 16 : 1),
              type["type_size"].get<int64_t>() * (traits->block_elems == 1 ? 16 : 1));
    for (const auto& block : type["blocks"]) {
      const std::vector<uint8_t> raw = FromHex(block["hex"]);
      std::vector<float> expected;
      const auto& values = block["values"];
      if (values.is_string()) {
        for (const auto& v : nlohmann::json::parse(values.get<std::string>())) expected.push_back(v);
      } else {
        for (const auto& v : values) expected.push_back(v);
      }
      const int64_t n = static_cast<int64_t>(expected.size());
      ASSERT_EQ(static_cast<int64_t>(raw.size()), n / traits->block_elems * traits->block_bytes);
      std::vector<float> got(n);
      DequantizeRow(traits->type, raw.data(), got.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_NEAR(got[i], expected[i], 1e-6f * std::fabs(expected[i]) + 1e-12f) << "element " << i;
      }
    }
    ++checked_types;
  }
  EXPECT_EQ(checked_types, 9);
}

}  // namespace
}  // namespace tokenfab
