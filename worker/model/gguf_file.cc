#include "worker/model/gguf_file.h"

#include <cstring>
#include <limits>

#include "common/strings.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace tokenfab {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;
// Generous bounds that no real file reaches; they keep a hostile header from
// making us loop or allocate for a long time before the byte checks fail.
constexpr uint64_t kMaxStringBytes = 1ull << 30;
// Decoded metadata takes more memory than its encoding (a one-byte integer
// becomes an int64, an empty string a std::string), so it gets a budget of
// its own; the largest real vocabularies (256K tokens and merges) need ~30 MiB.
constexpr uint64_t kMaxDecodedMetadataBytes = 256ull << 20;

const char* ValueTypeName(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8: return "uint8";
    case GgufValueType::kInt8: return "int8";
    case GgufValueType::kUint16: return "uint16";
    case GgufValueType::kInt16: return "int16";
    case GgufValueType::kUint32: return "uint32";
    case GgufValueType::kInt32: return "int32";
    case GgufValueType::kFloat32: return "float32";
    case GgufValueType::kBool: return "bool";
    case GgufValueType::kString: return "string";
    case GgufValueType::kArray: return "array";
    case GgufValueType::kUint64: return "uint64";
    case GgufValueType::kInt64: return "int64";
    case GgufValueType::kFloat64: return "float64";
  }
  return "unknown";
}

// Smallest encoded size of one value of a type, used to bound array counts.
uint64_t MinEncodedSize(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool: return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16: return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32: return 4;
    case GgufValueType::kString:  // 8-byte length
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64: return 8;
    case GgufValueType::kArray: return 12;
  }
  return 1;
}

bool IsKnownValueType(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::kFloat64); }

// A bounds-checked little-endian cursor over the mapped bytes.
class Reader {
 public:
  Reader(const std::string& path, const uint8_t* data, uint64_t size)
      : path_(path), data_(data), size_(size) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(
        StrCat(path_, ": invalid GGUF file: ", what, " (at byte ", pos_, ")"));
  }

  template <typename T>
  absl::Status Read(T* out, std::string_view what) {
    if (remaining() < sizeof(T)) {
      return Error(StrCat("truncated while reading ", what));
    }
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }

  absl::Status ReadString(std::string* out, std::string_view what) {
    uint64_t len = 0;
    RETURN_IF_ERROR(Read(&len, what));
    if (len > remaining() || len > kMaxStringBytes) {
      return Error(StrCat(what, " has length ", len, " but only ", remaining(),
                                " bytes remain"));
    }
    out->assign(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return absl::OkStatus();
  }

  // Accounts for `bytes` of decoded metadata (of array `key`) against the budget.
  absl::Status Charge(uint64_t bytes, std::string_view key) {
    if (bytes > kMaxDecodedMetadataBytes - decoded_) {
      return Error(StrCat("metadata array '", key, "' would take more than ",
                          kMaxDecodedMetadataBytes >> 20, " MiB of memory once decoded"));
    }
    decoded_ += bytes;
    return absl::OkStatus();
  }

  absl::Status Seek(uint64_t pos) {
    if (pos > size_) return Error("offset past end of file");
    pos_ = pos;
    return absl::OkStatus();
  }

 private:
  const std::string& path_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t decoded_ = 0;
};

absl::Status ReadScalar(Reader& r, GgufValueType type, GgufValue* v, std::string_view what) {
  switch (type) {
    case GgufValueType::kUint8: { uint8_t x = 0; RETURN_IF_ERROR(r.Read(&x, what)); v->int_value = x; break; }
    case GgufValueType::kInt8: { int8_t x = 0; RETURN_IF_ERROR(r.Read(&x, what)); v->int_value = x; break; }
    case GgufValueType::kUint16: { uint16_t x = 0; RETURN_IF_ERROR(r.Read(&x, what)); v->int_value = x; break; }
    case GgufValueType::kInt16: { int16_t x = 0; RETURN_IF_ERROR(r.Read(&x, what)); v->int_value = x; break; }
    case GgufValueType::kUint32: { uint32_t x = 0; RETURN_IF_ERROR(r.Read(&x, what)); v->int_value = x; break; }
    case GgufValueType::kInt32: { int32_t x = 0; RETURN_IF_ERROR(r.Read(&x, what)); v->int_value = x; break; }
    case GgufValueType::kInt64: { int64_t x = 0; RETURN_IF_ERROR(r.Read(&x, what)); v->int_value = x; break; }
    case GgufValueType::kUint64: {
      uint64_t x = 0;
      RETURN_IF_ERROR(r.Read(&x, what));
      if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return r.Error(StrCat(what, " = ", x, " is out of range"));
      }
      v->int_value = static_cast<int64_t>(x);
      break;
    }
    case GgufValueType::kBool: {
      uint8_t x = 0;
      RETURN_IF_ERROR(r.Read(&x, what));
      if (x > 1) return r.Error(StrCat(what, " is a bool with value ", int{x}));
      v->int_value = x;
      break;
    }
    case GgufValueType::kFloat32: { float x = 0; RETURN_IF_ERROR(r.Read(&x, what)); v->float_value = x; break; }
    case GgufValueType::kFloat64: { double x = 0; RETURN_IF_ERROR(r.Read(&x, what)); v->float_value = x; break; }
    case GgufValueType::kString: RETURN_IF_ERROR(r.ReadString(&v->string_value, what)); break;
    case GgufValueType::kArray: return r.Error(StrCat(what, ": nested arrays are not supported"));
  }
  return absl::OkStatus();
}

absl::Status ReadValue(Reader& r, GgufValue* v, const std::string& key) {
  uint32_t raw_type = 0;
  RETURN_IF_ERROR(r.Read(&raw_type, StrCat("type of '", key, "'")));
  if (!IsKnownValueType(raw_type)) {
    return r.Error(StrCat("metadata '", key, "' has unknown value type ", raw_type));
  }
  v->type = static_cast<GgufValueType>(raw_type);
  if (v->type != GgufValueType::kArray) {
    return ReadScalar(r, v->type, v, StrCat("value of '", key, "'"));
  }
  uint32_t raw_elem = 0;
  uint64_t count = 0;
  RETURN_IF_ERROR(r.Read(&raw_elem, StrCat("element type of '", key, "'")));
  RETURN_IF_ERROR(r.Read(&count, StrCat("length of '", key, "'")));
  if (!IsKnownValueType(raw_elem)) {
    return r.Error(StrCat("array '", key, "' has unknown element type ", raw_elem));
  }
  v->array_type = static_cast<GgufValueType>(raw_elem);
  if (v->array_type == GgufValueType::kArray) {
    return r.Error(StrCat("array '", key, "' nests arrays, which is not supported"));
  }
  if (count > r.remaining() / MinEncodedSize(v->array_type)) {
    return r.Error(StrCat("array '", key, "' claims ", count, " elements of type ",
                                ValueTypeName(v->array_type), " but only ", r.remaining(),
                                " bytes remain"));
  }
  const uint64_t per_element =
      v->array_type == GgufValueType::kString ? sizeof(std::string) : sizeof(int64_t);
  RETURN_IF_ERROR(r.Charge(count * per_element, key));
  GgufValue elem;
  const std::string what = StrCat("element of '", key, "'");
  if (v->array_type == GgufValueType::kString) {
    v->strings.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      RETURN_IF_ERROR(r.ReadString(&elem.string_value, what));
      RETURN_IF_ERROR(r.Charge(elem.string_value.size(), key));
      v->strings.push_back(std::move(elem.string_value));
    }
  } else if (v->array_type == GgufValueType::kFloat32 || v->array_type == GgufValueType::kFloat64) {
    v->floats.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      RETURN_IF_ERROR(ReadScalar(r, v->array_type, &elem, what));
      v->floats.push_back(elem.float_value);
    }
  } else {
    v->ints.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      RETURN_IF_ERROR(ReadScalar(r, v->array_type, &elem, what));
      v->ints.push_back(elem.int_value);
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kUint64:
    case GgufValueType::kInt64: return true;
    default: return false;
  }
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(path));
  std::unique_ptr<GgufFile> file(new GgufFile(std::move(mapped)));
  RETURN_IF_ERROR(file->Parse());
  return file;
}

absl::Status GgufFile::Parse() {
  const std::string& p = file_->path();
  const uint64_t file_size = file_->size();
  Reader r(p, file_->bytes().data(), file_size);

  uint32_t magic = 0;
  RETURN_IF_ERROR(r.Read(&magic, "magic"));
  if (magic != kGgufMagic) {
    return absl::InvalidArgumentError(StrCat(p, ": not a GGUF file (bad magic)"));
  }
  RETURN_IF_ERROR(r.Read(&version_, "version"));
  if (version_ != 2 && version_ != 3) {
    return absl::InvalidArgumentError(StrCat(
        p, ": unsupported GGUF version ", version_, " (supported: 2, 3; a huge number means a ",
        "big-endian file)"));
  }
  uint64_t n_tensors = 0, n_kv = 0;
  RETURN_IF_ERROR(r.Read(&n_tensors, "tensor count"));
  RETURN_IF_ERROR(r.Read(&n_kv, "metadata count"));
  // A metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes; a
  // tensor entry at least 8 + 4 + 4 + 8.
  if (n_kv > r.remaining() / 13) {
    return r.Error(StrCat("metadata count ", n_kv, " exceeds what the file can hold"));
  }
  if (n_tensors > r.remaining() / 24) {
    return r.Error(StrCat("tensor count ", n_tensors, " exceeds what the file can hold"));
  }

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key;
    RETURN_IF_ERROR(r.ReadString(&key, "metadata key"));
    GgufValue value;
    RETURN_IF_ERROR(ReadValue(r, &value, key));
    if (!metadata_.emplace(key, std::move(value)).second) {
      return r.Error(StrCat("duplicate metadata key '", key, "'"));
    }
  }

  uint64_t alignment = kDefaultAlignment;
  if (const GgufValue* a = Find("general.alignment")) {
    if (!a->is_integer() || a->int_value <= 0 || a->int_value > (1 << 20) ||
        (a->int_value & (a->int_value - 1)) != 0) {
      return r.Error("general.alignment must be a power of two");
    }
    alignment = static_cast<uint64_t>(a->int_value);
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    RETURN_IF_ERROR(r.ReadString(&t.name, "tensor name"));
    uint32_t n_dims = 0;
    RETURN_IF_ERROR(r.Read(&n_dims, StrCat("dimension count of tensor '", t.name, "'")));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return r.Error(StrCat("tensor '", t.name, "' has ", n_dims, " dimensions (1 to 4 allowed)"));
    }
    t.n_dims = static_cast<int>(n_dims);
    uint64_t n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = 0;
      RETURN_IF_ERROR(r.Read(&dim, StrCat("shape of tensor '", t.name, "'")));
      if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / dim) {
        return r.Error(StrCat("tensor '", t.name, "' has an invalid shape (dimension ", d,
                                    " = ", dim, ")"));
      }
      t.ne[d] = static_cast<int64_t>(dim);
      n_elements *= dim;
    }
    t.n_elements = static_cast<int64_t>(n_elements);
    uint32_t raw_type = 0;
    RETURN_IF_ERROR(r.Read(&raw_type, StrCat("type of tensor '", t.name, "'")));
    auto traits = GetDTypeTraits(raw_type);
    if (!traits) {
      return absl::InvalidArgumentError(StrCat(
          p, ": tensor '", t.name, "' has type ", GgmlTypeName(raw_type), " (", raw_type,
          "), which tokenfab does not support (supported: ", SupportedDTypeNames(), ")"));
    }
    t.type = traits->type;
    RETURN_IF_ERROR(r.Read(&t.offset, StrCat("offset of tensor '", t.name, "'")));
    auto row_bytes = RowBytes(t.type, t.ne[0]);
    if (!row_bytes) {
      return r.Error(StrCat("tensor '", t.name, "' of type ", traits->name, " has ", t.ne[0],
                                  " columns, not a multiple of its block size ",
                                  traits->block_elems));
    }
    const uint64_t rows = n_elements / static_cast<uint64_t>(t.ne[0]);
    if (rows > std::numeric_limits<uint64_t>::max() / *row_bytes) {
      return r.Error(StrCat("tensor '", t.name, "' is too large"));
    }
    t.n_bytes = rows * *row_bytes;
    if (!tensor_index_.emplace(t.name, tensors_.size()).second) {
      return r.Error(StrCat("duplicate tensor name '", t.name, "'"));
    }
    tensors_.push_back(std::move(t));
  }

  // Vocabulary-only files (no tensors) may end without the alignment padding.
  if (tensors_.empty()) return absl::OkStatus();
  const uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  if (data_start > file_size) {
    return absl::InvalidArgumentError(
        StrCat(p, ": invalid GGUF file: truncated before the tensor data"));
  }
  const uint64_t data_size = file_size - data_start;
  for (GgufTensor& t : tensors_) {
    if (t.offset % alignment != 0) {
      return absl::InvalidArgumentError(StrCat(p, ": invalid GGUF file: tensor '", t.name,
                                                     "' offset ", t.offset, " is not aligned to ",
                                                     alignment));
    }
    if (t.offset > data_size || t.n_bytes > data_size - t.offset) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: invalid GGUF file: tensor '%s' (%d bytes at data offset %d) extends past the end "
          "of the file (%d bytes of tensor data); the file may be truncated",
          p, t.name, t.n_bytes, t.offset, data_size));
    }
    t.offset += data_start;
    t.data = file_->bytes().data() + t.offset;
  }
  return absl::OkStatus();
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

absl::Status Missing(const std::string& path, std::string_view key) {
  return absl::NotFoundError(StrCat(path, ": metadata key '", key, "' is missing"));
}

absl::Status WrongType(const std::string& path, std::string_view key, const GgufValue& v,
                       std::string_view want) {
  return absl::InvalidArgumentError(StrCat(path, ": metadata '", key, "' is ",
                                                 ValueTypeName(v.type), ", expected ", want));
}

}  // namespace

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return Missing(path(), key);
  if (!v->is_integer()) return WrongType(path(), key, *v, "an integer");
  return v->int_value;
}

absl::StatusOr<int64_t> GgufFile::GetIntOr(std::string_view key, int64_t fallback) const {
  if (!Find(key)) return fallback;
  return GetInt(key);
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return Missing(path(), key);
  if (v->is_float()) return v->float_value;
  if (v->is_integer()) return static_cast<double>(v->int_value);
  return WrongType(path(), key, *v, "a number");
}

absl::StatusOr<double> GgufFile::GetFloatOr(std::string_view key, double fallback) const {
  if (!Find(key)) return fallback;
  return GetFloat(key);
}

absl::StatusOr<bool> GgufFile::GetBoolOr(std::string_view key, bool fallback) const {
  const GgufValue* v = Find(key);
  if (!v) return fallback;
  if (v->type != GgufValueType::kBool) return WrongType(path(), key, *v, "a bool");
  return v->int_value != 0;
}

absl::StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return Missing(path(), key);
  if (v->type != GgufValueType::kString) return WrongType(path(), key, *v, "a string");
  return v->string_value;
}

absl::StatusOr<std::string> GgufFile::GetStringOr(std::string_view key, std::string fallback) const {
  if (!Find(key)) return fallback;
  return GetString(key);
}

absl::StatusOr<const std::vector<std::string>*> GgufFile::GetStringArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return Missing(path(), key);
  if (v->type != GgufValueType::kArray || v->array_type != GgufValueType::kString) {
    return WrongType(path(), key, *v, "an array of strings");
  }
  return &v->strings;
}

absl::StatusOr<const std::vector<int64_t>*> GgufFile::GetIntArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return Missing(path(), key);
  if (v->type != GgufValueType::kArray || !v->floats.empty() || !v->strings.empty() ||
      v->array_type == GgufValueType::kFloat32 || v->array_type == GgufValueType::kFloat64 ||
      v->array_type == GgufValueType::kString) {
    return WrongType(path(), key, *v, "an array of integers");
  }
  return &v->ints;
}

absl::StatusOr<const std::vector<double>*> GgufFile::GetFloatArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return Missing(path(), key);
  if (v->type != GgufValueType::kArray ||
      (v->array_type != GgufValueType::kFloat32 && v->array_type != GgufValueType::kFloat64)) {
    return WrongType(path(), key, *v, "an array of floats");
  }
  return &v->floats;
}

}  // namespace tokenfab
