// Reader for GGUF (v2 and v3) model files, memory-mapped.
//
// Every count, length and offset in the file is checked against the bytes that
// remain before it is used, so a truncated or hostile file yields an error that
// names the file and the problem, never a crash or an allocation sized by an
// unchecked field. Tensor data stays in the mapping; GgufTensor::data points
// into it. Immutable after Open(), so any thread may read it.
#ifndef TOKENFAB_WORKER_MODEL_GGUF_FILE_H_
#define TOKENFAB_WORKER_MODEL_GGUF_FILE_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mapped_file.h"
#include "worker/model/tensor_types.h"

namespace tokenfab {

enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// One metadata value. Scalars use the field of their kind; arrays hold their
// elements in `strings`, `ints` (all integer and bool types) or `floats`.
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  int64_t int_value = 0;  // all integer types and bool (uint64 above 2^63 rejected)
  double float_value = 0;
  std::string string_value;
  GgufValueType array_type = GgufValueType::kUint8;
  std::vector<std::string> strings;
  std::vector<int64_t> ints;
  std::vector<double> floats;

  bool is_integer() const;
  bool is_float() const { return type == GgufValueType::kFloat32 || type == GgufValueType::kFloat64; }
  size_t array_size() const { return strings.size() + ints.size() + floats.size(); }
};

struct GgufTensor {
  std::string name;
  DType type = DType::kF32;
  int n_dims = 0;
  std::array<int64_t, 4> ne = {1, 1, 1, 1};  // ne[0] is the contiguous (column) dimension
  int64_t n_elements = 0;
  uint64_t offset = 0;  // from the start of the file
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;
};

class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue, std::less<>>& metadata() const { return metadata_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }

  const GgufValue* Find(std::string_view key) const;
  const GgufTensor* FindTensor(std::string_view name) const;

  // Typed getters; errors name the file and key. The *Or forms return
  // `fallback` when the key is absent but still fail on a wrong type.
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  absl::StatusOr<int64_t> GetIntOr(std::string_view key, int64_t fallback) const;
  absl::StatusOr<double> GetFloat(std::string_view key) const;  // integers accepted too
  absl::StatusOr<double> GetFloatOr(std::string_view key, double fallback) const;
  absl::StatusOr<bool> GetBoolOr(std::string_view key, bool fallback) const;
  absl::StatusOr<std::string> GetString(std::string_view key) const;
  absl::StatusOr<std::string> GetStringOr(std::string_view key, std::string fallback) const;
  // Arrays: a pointer into the metadata, or an error if absent or of another type.
  absl::StatusOr<const std::vector<std::string>*> GetStringArray(std::string_view key) const;
  absl::StatusOr<const std::vector<int64_t>*> GetIntArray(std::string_view key) const;
  absl::StatusOr<const std::vector<double>*> GetFloatArray(std::string_view key) const;

 private:
  explicit GgufFile(std::unique_ptr<MappedFile> file) : file_(std::move(file)) {}
  absl::Status Parse();

  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  std::map<std::string, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_MODEL_GGUF_FILE_H_
