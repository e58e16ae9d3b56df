// Loading the CUDA backend's module, on any machine: a clear error for a
// missing or foreign module and, where the module is built but no GPU (or
// driver) is there, an error naming the cause instead of a crash.
#include "worker/engine/cuda_module.h"

#include <stdlib.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "tests/test_paths.h"
#include "worker/model_loader.h"

namespace tokenfab {
namespace {

TEST(CudaModuleTest, ParsesDeviceNames) {
  EXPECT_EQ(*ParseCudaDevice("cuda:0"), 0);
  EXPECT_EQ(*ParseCudaDevice("cuda:7"), 7);
  for (const char* bad : {"cuda", "cuda:", "cuda:-1", "cuda:x", "gpu:0", "cuda:99999", "cpu"}) {
    const auto r = ParseCudaDevice(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("cuda:N"), std::string::npos) << r.status();
  }
}

const LoadedModel* TinyModel() {
  static const LoadedModel* m = [] {
    auto r = LoadModel(testing::TestDataPath("hf/tiny-llama"));
    return r.ok() ? r->release() : nullptr;
  }();
  return m;
}

TEST(CudaModuleTest, MissingModuleIsUnavailableAndNamesThePath) {
  ASSERT_NE(TinyModel(), nullptr);
  ::setenv("TOKENFAB_CUDA_MODULE", "/nonexistent/libtokenfab_cuda.so", 1);
  const auto r = CreateCudaBackend(TinyModel()->config, TinyModel()->weights, {});
  ::unsetenv("TOKENFAB_CUDA_MODULE");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("/nonexistent/libtokenfab_cuda.so: not found"),
            std::string::npos)
      << r.status();
}

TEST(CudaModuleTest, ForeignFileIsRefused) {
  ASSERT_NE(TinyModel(), nullptr);
  const std::string not_a_module = testing::TestDataPath("gguf/tiny-qwen2.gguf");
  ::setenv("TOKENFAB_CUDA_MODULE", not_a_module.c_str(), 1);
  const auto r = CreateCudaBackend(TinyModel()->config, TinyModel()->weights, {});
  ::unsetenv("TOKENFAB_CUDA_MODULE");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find(not_a_module), std::string::npos) << r.status();
}

#ifdef TOKENFAB_CUDA_MODULE_FILE
// The module built beside this test: a backend where a GPU is, otherwise
// an error that says why (no driver, no device), prefixed with the device.
TEST(CudaModuleTest, BuiltModuleGivesBackendOrSaysWhyNot) {
  ASSERT_NE(TinyModel(), nullptr);
  ::setenv("TOKENFAB_CUDA_MODULE", TOKENFAB_CUDA_MODULE_FILE, 1);
  CudaBackendOptions o;
  o.num_kv_blocks = 16;
  o.max_batched_tokens = 64;
  o.max_num_seqs = 4;
  const auto r = CreateCudaBackend(TinyModel()->config, TinyModel()->weights, o);
  ::unsetenv("TOKENFAB_CUDA_MODULE");
  const bool driver = ::access("/dev/nvidiactl", F_OK) == 0;
  if (r.ok()) {
    EXPECT_TRUE(driver);
    EXPECT_EQ(r->backend->name(), "cuda");
    EXPECT_EQ(r->backend->num_kv_blocks(), 16);
    EXPECT_FALSE(r->description.empty());
    return;
  }
  std::printf("without a GPU: %s\n", r.status().ToString().c_str());
  EXPECT_NE(r.status().message().find("cuda:0: "), std::string::npos) << r.status();
  EXPECT_NE(r.status().code(), absl::StatusCode::kOk);
  if (!driver) {
    EXPECT_TRUE(r.status().code() == absl::StatusCode::kUnavailable ||
                r.status().code() == absl::StatusCode::kInternal)
        << r.status();
  }
}
#endif

}  // namespace
}  // namespace tokenfab
