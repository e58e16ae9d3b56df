// Reader for Hugging Face safetensors checkpoints: one model.safetensors, or
// shards listed by model.safetensors.index.json. Memory-mapped; every header
// field (length, offsets, shapes) is checked against the file before use.
// Immutable after Open(); any thread may read.
#ifndef TOKENFAB_WORKER_MODEL_SAFETENSORS_FILE_H_
#define TOKENFAB_WORKER_MODEL_SAFETENSORS_FILE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mapped_file.h"

namespace tokenfab {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16", ... as written
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  uint64_t n_bytes = 0;
  const std::string* file = nullptr;  // path of the shard holding it
};

class SafetensorsCheckpoint {
 public:
  // `dir` holds model.safetensors or model.safetensors.index.json + shards.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> OpenDirectory(const std::string& dir);
  // One .safetensors file.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> OpenFile(const std::string& path);

  const SafetensorsTensor* Find(std::string_view name) const;
  const std::map<std::string, SafetensorsTensor, std::less<>>& tensors() const { return tensors_; }

 private:
  SafetensorsCheckpoint() = default;
  absl::Status AddFile(const std::string& path);

  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, SafetensorsTensor, std::less<>> tensors_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_MODEL_SAFETENSORS_FILE_H_
