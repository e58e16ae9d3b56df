// tools/make_random_model.py's checkpoints load into tokenfab: a Llama-3.2-1B
// shape shrunk to one layer and a small vocabulary reads as a ModelConfig
// and weights, and the CPU engine computes finite logits from it.
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "common/mapped_file.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/subprocess.h"
#include "tests/test_paths.h"
#include "worker/engine/cpu_backend.h"
#include "worker/model/model_config.h"
#include "worker/model/model_weights.h"
#include "worker/model/safetensors_file.h"

namespace tokenfab {
namespace {

TEST(RandomModelTest, ToolOutputLoadsAndRuns) {
  const std::string python = testing::SourceDir() + "/.venv/bin/python";
  if (::access(python.c_str(), X_OK) != 0) {
    GTEST_SKIP() << "run scripts/setup: the tool needs .venv's numpy";
  }
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("tokenfab-random-" + std::to_string(::getpid())))
          .string();
  const testing::ProcessResult r =
      testing::RunProcess({python, testing::SourceDir() + "/tools/make_random_model.py", "--shape",
                           "llama-3.2-1b", "--layers", "1", "--vocab", "320", "--out", dir});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto text = ReadFileToString(dir + "/config.json");
  ASSERT_TRUE(text.ok()) << text.status();
  auto config = ModelConfigFromHfJson(nlohmann::json::parse(*text), dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->hidden_size, 2048);
  EXPECT_EQ(config->head_dim, 64);
  EXPECT_EQ(config->num_kv_heads, 8);
  EXPECT_TRUE(config->tied_embeddings);
  auto ckpt = SafetensorsCheckpoint::OpenDirectory(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto weights = WeightsFromSafetensors(**ckpt, *config, dir);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->layers[0].wq.type, DType::kBF16);

  auto backend = CpuBackend::Create(*config, *weights, {.threads = 2, .num_kv_blocks = 2});
  ASSERT_TRUE(backend.ok()) << backend.status();
  const std::vector<int32_t> ids = {1, 2, 3, 300}, table = {0};
  const SequenceStep step{ids, 0, table, LogitsMode::kLast};
  StepResult result;
  ASSERT_TRUE((*backend)->Forward({&step, 1}, &result).ok());
  ASSERT_EQ(result.logits.size(), 320u);
  for (float l : result.logits) ASSERT_TRUE(std::isfinite(l));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tokenfab
