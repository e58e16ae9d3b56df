#include "worker/model/gguf_file.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/gguf_builder.h"
#include "tests/test_paths.h"

namespace tokenfab {
namespace {

using ::testing::HasSubstr;
using testing::GgufBuilder;

constexpr uint32_t kF32 = 0;
constexpr uint32_t kQ8_0 = 8;

// A small valid file: three metadata entries and two tensors (an F32 vector
// of 4 and a Q8_0 matrix of 2 rows x 32).
GgufBuilder ValidFile() {
  GgufBuilder b;
  b.Header(2, 3)
      .KvStr("general.architecture", "llama")
      .KvU32("llama.block_count", 7)
      .KvStrArray("tokenizer.ggml.tokens", {"a", "b", "c"});
  b.TensorInfo("norm.weight", {4}, kF32, 0);
  b.TensorInfo("proj.weight", {32, 2}, kQ8_0, 32);
  b.Pad(32);
  for (int i = 0; i < 4; ++i) b.F32(1.5f * i);
  b.Pad(32);
  for (int r = 0; r < 2; ++r) {
    b.Raw("\x00\x3c", 2);  // d = 1.0 in half
    for (int j = 0; j < 32; ++j) b.U8(static_cast<uint8_t>(j - 16));
  }
  return b;
}

TEST(GgufFileTest, ReadsMetadataAndTensors) {
  const std::string path = ValidFile().WriteTemp("valid.gguf");
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->version(), 3u);
  EXPECT_EQ(*(*file)->GetString("general.architecture"), "llama");
  EXPECT_EQ(*(*file)->GetInt("llama.block_count"), 7);
  auto tokens = (*file)->GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok());
  EXPECT_THAT(**tokens, ::testing::ElementsAre("a", "b", "c"));
  const GgufTensor* norm = (*file)->FindTensor("norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->n_elements, 4);
  float third;
  std::memcpy(&third, norm->data + 8, 4);
  EXPECT_EQ(third, 3.0f);
  const GgufTensor* proj = (*file)->FindTensor("proj.weight");
  ASSERT_NE(proj, nullptr);
  EXPECT_EQ(proj->type, DType::kQ8_0);
  EXPECT_EQ(proj->ne[0], 32);
  EXPECT_EQ(proj->ne[1], 2);
  EXPECT_EQ(proj->n_bytes, 68u);
}

TEST(GgufFileTest, TypedGettersReportWrongTypeAndMissingKey) {
  auto file = GgufFile::Open(ValidFile().WriteTemp("getters.gguf"));
  ASSERT_TRUE(file.ok());
  EXPECT_THAT((*file)->GetInt("general.architecture").status().message(),
              HasSubstr("expected an integer"));
  EXPECT_THAT((*file)->GetString("nope").status().message(), HasSubstr("'nope' is missing"));
  EXPECT_EQ(*(*file)->GetIntOr("nope", 42), 42);
}

// Every proper prefix of a valid file is a truncated file: each must give an
// error naming the file, never a crash or an over-read (run under ASan in the
// sanitizer build).
TEST(GgufFileTest, EveryTruncationIsAnError) {
  const GgufBuilder b = ValidFile();
  for (size_t n = 1; n < b.size(); ++n) {
    const std::string path = b.WriteTemp("truncated.gguf", n);
    auto file = GgufFile::Open(path);
    ASSERT_FALSE(file.ok()) << "prefix of " << n << " bytes was accepted";
    EXPECT_THAT(file.status().message(), HasSubstr(path));
  }
}

struct HostileCase {
  std::string name;
  GgufBuilder file;
  std::string expected;
};

std::vector<HostileCase> HostileCases() {
  std::vector<HostileCase> cases;
  {
    GgufBuilder b;
    b.Raw("GGML", 4).U32(3).U64(0).U64(0);
    cases.push_back({"bad_magic", b, "not a GGUF file"});
  }
  {
    GgufBuilder b;
    b.Header(0, 0, 0x03000000);
    cases.push_back({"big_endian_version", b, "unsupported GGUF version"});
  }
  {
    GgufBuilder b;
    b.Header(0, 1ull << 60);
    cases.push_back({"huge_kv_count", b, "metadata count"});
  }
  {
    GgufBuilder b;
    b.Header(1ull << 62, 0);
    cases.push_back({"huge_tensor_count", b, "tensor count"});
  }
  {
    GgufBuilder b;
    b.Header(0, 1).U64(1ull << 40);
    cases.push_back({"huge_key_length", b, "metadata key has length"});
  }
  {
    GgufBuilder b;
    b.Header(0, 1).Str("tokenizer.ggml.tokens").U32(9).U32(8).U64(1ull << 61);
    cases.push_back({"huge_array_count", b, "claims 2305843009213693952 elements"});
  }
  {
    GgufBuilder b;
    b.Header(0, 1).Str("x").U32(99);
    cases.push_back({"unknown_value_type", b, "unknown value type 99"});
  }
  {
    GgufBuilder b;
    b.Header(0, 1).Str("x").U32(9).U32(9).U64(1);
    cases.push_back({"nested_array", b, "nests arrays"});
  }
  {
    GgufBuilder b;
    b.Header(0, 1).Str("x").U32(7).U8(5);
    cases.push_back({"bad_bool", b, "bool with value 5"});
  }
  {
    GgufBuilder b;
    b.Header(0, 2).KvU32("a", 1).KvU32("a", 2);
    cases.push_back({"duplicate_key", b, "duplicate metadata key 'a'"});
  }
  {
    GgufBuilder b;
    b.Header(1, 0).TensorInfo("t", {4}, 17, 0).Pad(32).F32(0).F32(0).F32(0).F32(0);
    cases.push_back({"unsupported_tensor_type", b, "has type IQ2_XS (17)"});
  }
  {
    GgufBuilder b;
    b.Header(1, 0).TensorInfo("t", {4}, 12345, 0).Pad(32);
    cases.push_back({"unknown_tensor_type", b, "does not support"});
  }
  {
    GgufBuilder b;
    b.Header(1, 0).Str("t").U32(5);
    cases.push_back({"too_many_dims", b, "has 5 dimensions"});
  }
  {
    GgufBuilder b;
    b.Header(1, 0).TensorInfo("t", {0}, kF32, 0).Pad(32);
    cases.push_back({"zero_dim", b, "invalid shape"});
  }
  {
    GgufBuilder b;
    b.Header(1, 0).TensorInfo("t", {1ull << 32, 1ull << 32}, kF32, 0).Pad(32);
    cases.push_back({"overflowing_shape", b, "invalid shape"});
  }
  {
    GgufBuilder b;
    b.Header(1, 0).TensorInfo("t", {31}, kQ8_0, 0).Pad(32);
    cases.push_back({"partial_block", b, "not a multiple of its block size 32"});
  }
  {
    GgufBuilder b;
    b.Header(1, 0).TensorInfo("t", {4}, kF32, 1ull << 40).Pad(32).F32(0);
    cases.push_back({"offset_past_end", b, "extends past the end of the file"});
  }
  {
    GgufBuilder b;
    b.Header(1, 0).TensorInfo("t", {4}, kF32, 4).Pad(32);
    for (int i = 0; i < 8; ++i) b.F32(0);
    cases.push_back({"misaligned_offset", b, "is not aligned to 32"});
  }
  {
    GgufBuilder b;
    b.Header(1, 0).TensorInfo("t", {1024}, kF32, 0).Pad(32).F32(0);
    cases.push_back({"tensor_data_truncated", b, "the file may be truncated"});
  }
  {
    GgufBuilder b;
    b.Header(2, 0).TensorInfo("t", {4}, kF32, 0).TensorInfo("t", {4}, kF32, 32).Pad(32);
    for (int i = 0; i < 16; ++i) b.F32(0);
    cases.push_back({"duplicate_tensor", b, "duplicate tensor name 't'"});
  }
  {
    GgufBuilder b;
    b.Header(0, 1).Str("general.alignment").U32(4).U32(3);
    cases.push_back({"bad_alignment", b, "power of two"});
  }
  return cases;
}

// A file of 40 MiB holding one array of 40M one-byte integers would decode
// to 320 MiB: refused by the metadata budget, not by the allocator.
TEST(GgufFileTest, MetadataArraysHaveAMemoryBudget) {
  GgufBuilder b;
  const uint64_t n = 40ull << 20;
  b.Header(0, 1).Str("huge").U32(9).U32(0).U64(n);
  std::vector<uint8_t> zeros(n);
  b.Raw(zeros.data(), zeros.size());
  auto file = GgufFile::Open(b.WriteTemp("huge-array.gguf"));
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(file.status().message(), HasSubstr("'huge' would take more than 256 MiB"));
}

TEST(GgufFileTest, HostileFilesGiveClearErrors) {
  for (const HostileCase& c : HostileCases()) {
    SCOPED_TRACE(c.name);
    // Trailing zeros keep the count plausibility checks from firing first,
    // so each case reaches the field it corrupts.
    GgufBuilder padded = c.file;
    const char zeros[64] = {};
    padded.Raw(zeros, sizeof zeros);
    const std::string path = padded.WriteTemp(c.name + ".gguf");
    auto file = GgufFile::Open(path);
    ASSERT_FALSE(file.ok());
    EXPECT_THAT(file.status().message(), HasSubstr(path));
    EXPECT_THAT(file.status().message(), HasSubstr(c.expected));
  }
}

// llama.cpp's vocabulary-only files hold metadata and no tensors, and end
// without padding to the alignment.
TEST(GgufFileTest, AcceptsAFileWithoutTensorsOrPadding) {
  GgufBuilder b;
  b.Header(0, 1).KvStr("tokenizer.ggml.model", "gpt2");
  ASSERT_NE(b.size() % 32, 0u);
  auto file = GgufFile::Open(b.WriteTemp("vocab-only.gguf"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->tensors().empty());
}

TEST(GgufFileTest, MissingFileIsNotFound) {
  auto file = GgufFile::Open("/nonexistent/model.gguf");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(file.status().message(), HasSubstr("/nonexistent/model.gguf"));
}

TEST(GgufFileTest, ReadsTheDefaultModel) {
  const std::string path = testing::DefaultModelPath();
  if (!testing::RequireFile(path)) return;
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(*(*file)->GetString("general.architecture"), "llama");
  EXPECT_EQ((*file)->tensors().size(), 272u);
  EXPECT_EQ((*file)->FindTensor("token_embd.weight")->type, DType::kQ8_0);
  EXPECT_EQ((*file)->FindTensor("blk.0.attn_q.weight")->type, DType::kQ4_1);
}

}  // namespace
}  // namespace tokenfab
