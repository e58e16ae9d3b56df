#include "worker/model/safetensors_file.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/gguf_builder.h"

namespace tokenfab {
namespace {

using ::testing::HasSubstr;

// header length (u64) + JSON header + data.
std::string Safetensors(const std::string& header, const std::vector<uint8_t>& data,
                        int64_t header_len_override = -1) {
  std::string out(8, '\0');
  const uint64_t len = header_len_override >= 0 ? header_len_override : header.size();
  std::memcpy(out.data(), &len, 8);
  out += header;
  out.append(reinterpret_cast<const char*>(data.data()), data.size());
  return out;
}

std::string WriteFile(const std::string& stem, const std::string& bytes) {
  return testing::WriteTempFile(stem, bytes.data(), bytes.size());
}

std::vector<uint8_t> Floats(std::initializer_list<float> v) {
  std::vector<uint8_t> out(v.size() * 4);
  std::memcpy(out.data(), v.begin(), out.size());
  return out;
}

TEST(SafetensorsTest, ReadsTensors) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}})";
  const std::string path = WriteFile("ok.safetensors", Safetensors(header, Floats({1, 2, 3, 4, 5})));
  auto ckpt = SafetensorsCheckpoint::OpenFile(path);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const SafetensorsTensor* a = (*ckpt)->Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, "F32");
  EXPECT_THAT(a->shape, ::testing::ElementsAre(2, 2));
  float v;
  std::memcpy(&v, (*ckpt)->Find("b")->data, 4);
  EXPECT_EQ(v, 5.0f);
  EXPECT_EQ((*ckpt)->Find("missing"), nullptr);
}

TEST(SafetensorsTest, HostileHeadersGiveClearErrors) {
  struct Case {
    std::string name, bytes, expected;
  };
  const std::vector<Case> cases = {
      {"short", std::string("\x01\x02", 2), "shorter than its 8-byte header"},
      {"huge_header_len", Safetensors("{}", {}, 1ll << 50), "header length"},
      {"not_json", Safetensors("{nope", {}), "not a JSON object"},
      {"no_offsets", Safetensors(R"({"a":{"dtype":"F32","shape":[1]}})", Floats({1})),
       "lacks dtype, shape or data_offsets"},
      {"unknown_dtype", Safetensors(R"({"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}})", Floats({1})),
       "unknown dtype Q9"},
      {"negative_dim", Safetensors(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", Floats({1})),
       "negative dimension"},
      {"offset_past_end",
       Safetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,400000]}})", Floats({1})),
       "lies outside"},
      {"reversed_offsets",
       Safetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", Floats({1})),
       "lies outside"},
      {"size_mismatch",
       Safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", Floats({1})),
       "need 8"},
      {"huge_shape",
       Safetensors(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})",
                   Floats({1})),
       "too large"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = WriteFile(c.name + ".safetensors", c.bytes);
    auto ckpt = SafetensorsCheckpoint::OpenFile(path);
    ASSERT_FALSE(ckpt.ok());
    EXPECT_THAT(ckpt.status().message(), HasSubstr(path));
    EXPECT_THAT(ckpt.status().message(), HasSubstr(c.expected));
  }
}

TEST(SafetensorsTest, EveryTruncationIsAnError) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  const std::string bytes = Safetensors(header, Floats({1, 2, 3, 4}));
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::string path = WriteFile("trunc.safetensors", bytes.substr(0, n));
    EXPECT_FALSE(SafetensorsCheckpoint::OpenFile(path).ok()) << n;
  }
}

class ShardedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tokenfab-sharded-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, const std::string& bytes) {
    std::ofstream(dir_ / name, std::ios::binary) << bytes;
  }
  std::filesystem::path dir_;
};

TEST_F(ShardedTest, ReadsShardsThroughTheIndex) {
  Write("model-00001-of-00002.safetensors",
        Safetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", Floats({1})));
  Write("model-00002-of-00002.safetensors",
        Safetensors(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", Floats({2})));
  Write("model.safetensors.index.json",
        R"({"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})");
  auto ckpt = SafetensorsCheckpoint::OpenDirectory(dir_.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_NE((*ckpt)->Find("a"), nullptr);
  EXPECT_NE((*ckpt)->Find("b"), nullptr);
}

TEST_F(ShardedTest, RejectsShardPathsOutsideTheFolder) {
  Write("model.safetensors.index.json", R"({"weight_map":{"a":"../../etc/passwd"}})");
  auto ckpt = SafetensorsCheckpoint::OpenDirectory(dir_.string());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_THAT(ckpt.status().message(), HasSubstr("not a plain file name"));
}

TEST_F(ShardedTest, RejectsIndexNamingAMissingTensor) {
  Write("model-1.safetensors",
        Safetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", Floats({1})));
  Write("model.safetensors.index.json",
        R"({"weight_map":{"a":"model-1.safetensors","zzz":"model-1.safetensors"}})");
  auto ckpt = SafetensorsCheckpoint::OpenDirectory(dir_.string());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_THAT(ckpt.status().message(), HasSubstr("'zzz' is listed but not in"));
}

TEST_F(ShardedTest, EmptyFolderIsNotFound) {
  auto ckpt = SafetensorsCheckpoint::OpenDirectory(dir_.string());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tokenfab
