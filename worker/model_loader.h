// Loads a model from a GGUF file or a Hugging Face folder: configuration,
// weights (memory-mapped, in place), tokenizer and chat template, all checked
// before anything runs. Errors name the file and what is wrong.
#ifndef TOKENFAB_WORKER_MODEL_LOADER_H_
#define TOKENFAB_WORKER_MODEL_LOADER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/chat/chat_template.h"
#include "worker/model/model_config.h"
#include "worker/model/model_weights.h"
#include "worker/tokenizer/tokenizer.h"

namespace tokenfab {

class GgufFile;
class SafetensorsCheckpoint;

enum class ModelFormat { kGguf, kHuggingFace };

struct LoadedModel {
  std::string path;
  ModelFormat format = ModelFormat::kGguf;
  ModelConfig config;
  ModelWeights weights;  // empty when loaded without weights
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<ChatTemplate> chat_template;  // null if the model has none
  std::string chat_template_source;

  ~LoadedModel();

  // Keep the mappings that `weights` point into alive.
  std::unique_ptr<GgufFile> gguf;
  std::unique_ptr<SafetensorsCheckpoint> safetensors;
};

struct ModelLoadOptions {
  // The router needs only the tokenizer and chat template.
  bool load_weights = true;
};

// `path`: a .gguf file, or a folder with config.json, tokenizer.json and
// model.safetensors (or sharded model-*.safetensors with the index).
absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModel(const std::string& path,
                                                       const ModelLoadOptions& options = {});

// Identifies what a model computes as far as the router can tell without
// its weights: architecture, shapes, context, and every vocabulary entry.
// Router and workers compare it when a worker attaches.
std::string ModelFingerprint(const LoadedModel& model);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_MODEL_LOADER_H_
