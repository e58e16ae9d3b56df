// Helpers shared by the engine tests: the tiny test model, backends over it,
// seeded prompts, requests, and a collector of engine outputs.
#ifndef TOKENFAB_TESTS_WORKER_ENGINE_ENGINE_TEST_UTIL_H_
#define TOKENFAB_TESTS_WORKER_ENGINE_ENGINE_TEST_UTIL_H_

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "tests/test_paths.h"
#include "worker/engine/cpu_backend.h"
#include "worker/engine/engine.h"
#include "worker/engine/single_sequence.h"
#include "worker/model/gguf_file.h"
#include "worker/model/model_config.h"
#include "worker/model/model_weights.h"

namespace tokenfab {
namespace engine_test {

using internal::v1::WorkerOutput;
using internal::v1::WorkerRequest;

struct TinyModel {
  std::unique_ptr<GgufFile> file;
  ModelConfig config;
  ModelWeights weights;
};

inline const TinyModel& Model() {
  static const TinyModel* m = [] {
    auto* t = new TinyModel;
    t->file = std::move(*GgufFile::Open(testing::TestDataPath("gguf/tiny-llama-mixed.gguf")));
    t->config = *ModelConfigFromGguf(*t->file, *RopeFreqFactorsFromGguf(*t->file));
    t->weights = *WeightsFromGguf(*t->file, t->config);
    return t;
  }();
  return *m;
}

inline std::unique_ptr<CpuBackend> TinyBackend(int blocks) {
  CpuBackendOptions o;
  o.threads = 2;
  o.num_kv_blocks = blocks;
  return std::move(*CpuBackend::Create(Model().config, Model().weights, o));
}

inline std::vector<int32_t> Prompt(int seed, int n) {
  std::mt19937 rng(seed);
  std::vector<int32_t> p(n);
  for (int32_t& t : p) t = static_cast<int32_t>(rng() % 512);
  return p;
}

inline WorkerRequest Request(const std::string& id, const std::vector<int32_t>& prompt,
                             int max_tokens) {
  WorkerRequest r;
  r.set_request_id(id);
  r.mutable_prompt_ids()->Assign(prompt.begin(), prompt.end());
  r.set_max_tokens(max_tokens);
  r.mutable_sampling()->set_seed(1);
  return r;
}

// Collects every request's outputs; waits for all to finish. Declare it before the
// Engine: an engine still delivers (cancelled) outputs until it is destroyed.
class Collector {
 public:
  Engine::OutputCallback For(const std::string& id) {
    return [this, id](const WorkerOutput& out) {
      absl::MutexLock lock(&mu_);
      Result& r = results_[id];
      r.tokens.insert(r.tokens.end(), out.token_ids().begin(), out.token_ids().end());
      if (out.finish() != internal::v1::WORKER_FINISH_NONE) {
        r.finish = out.finish();
        r.final = out;
        ++finished_;
      }
      if (on_output_) on_output_(id, out);
    };
  }
  void WaitFor(int n) {
    absl::MutexLock lock(&mu_);
    std::pair<int*, int> want(&finished_, n);
    mu_.Await(absl::Condition(
        +[](std::pair<int*, int>* p) { return *p->first >= p->second; }, &want));
  }
  struct Result {
    std::vector<int32_t> tokens;
    internal::v1::WorkerFinish finish = internal::v1::WORKER_FINISH_NONE;
    WorkerOutput final;
  };
  std::map<std::string, Result> results() {
    absl::MutexLock lock(&mu_);
    return results_;
  }
  std::function<void(const std::string&, const WorkerOutput&)> on_output_;

 private:
  absl::Mutex mu_;
  std::map<std::string, Result> results_;
  int finished_ = 0;
};

inline std::vector<int32_t> Alone(const std::vector<int32_t>& prompt, int max_tokens) {
  auto backend = TinyBackend(64);
  SingleSequenceOptions o;
  o.max_tokens = max_tokens;
  o.sampling.seed = 1;
  return RunSingleSequence(*backend, prompt, o, [](int32_t) { return true; })->tokens;
}

}  // namespace engine_test
}  // namespace tokenfab

#endif  // TOKENFAB_TESTS_WORKER_ENGINE_ENGINE_TEST_UTIL_H_
