#include "worker/model/safetensors_file.h"

#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tokenfab {
namespace {

// Real headers are a few hundred KB; this bound stops a hostile length from
// making us parse (or allocate for) gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

int64_t DTypeSize(std::string_view dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2") {
    return 1;
  }
  return 0;
}

absl::Status Bad(const std::string& path, std::string_view what) {
  return absl::InvalidArgumentError(StrCat(path, ": invalid safetensors file: ", what));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::OpenFile(
    const std::string& path) {
  std::unique_ptr<SafetensorsCheckpoint> ckpt(new SafetensorsCheckpoint());
  RETURN_IF_ERROR(ckpt->AddFile(path));
  return ckpt;
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::OpenDirectory(
    const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path root(dir);
  const fs::path single = root / "model.safetensors";
  const fs::path index = root / "model.safetensors.index.json";
  std::unique_ptr<SafetensorsCheckpoint> ckpt(new SafetensorsCheckpoint());
  std::error_code ec;
  if (fs::exists(index, ec)) {
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(index.string()));
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
        !j["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          StrCat(index.string(), ": not a valid index (expected a 'weight_map' object)"));
    }
    std::set<std::string> shards;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) {
        return absl::InvalidArgumentError(
            StrCat(index.string(), ": weight_map entry '", name, "' is not a file name"));
      }
      const std::string f = file.get<std::string>();
      // Shards must sit beside the index: no paths, so a hostile index cannot
      // make us open files elsewhere.
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..") {
        return absl::InvalidArgumentError(
            StrCat(index.string(), ": shard name '", f, "' is not a plain file name"));
      }
      shards.insert(f);
    }
    if (shards.empty()) {
      return absl::InvalidArgumentError(StrCat(index.string(), ": weight_map is empty"));
    }
    for (const std::string& f : shards) RETURN_IF_ERROR(ckpt->AddFile((root / f).string()));
    for (const auto& [name, file] : j["weight_map"].items()) {
      const SafetensorsTensor* t = ckpt->Find(name);
      const std::string shard = (root / file.get<std::string>()).string();
      if (!t || *t->file != shard) {
        return absl::InvalidArgumentError(StrCat(index.string(), ": tensor '", name,
                                                 "' is listed but not in ", file.get<std::string>()));
      }
    }
    return ckpt;
  }
  if (fs::exists(single, ec)) {
    RETURN_IF_ERROR(ckpt->AddFile(single.string()));
    return ckpt;
  }
  return absl::NotFoundError(StrCat(dir, ": no model.safetensors or model.safetensors.index.json"));
}

absl::Status SafetensorsCheckpoint::AddFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  const uint64_t size = file->size();
  if (size < 8) return Bad(path, "shorter than its 8-byte header length");
  uint64_t header_len;
  std::memcpy(&header_len, file->bytes().data(), 8);
  if (header_len > size - 8 || header_len > kMaxHeaderBytes) {
    return Bad(path, StrCat("header length ", header_len, " exceeds the file (", size,
                            " bytes); the file may be truncated"));
  }
  const char* header = reinterpret_cast<const char*>(file->bytes().data() + 8);
  nlohmann::json j = nlohmann::json::parse(header, header + header_len, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Bad(path, "header is not a JSON object");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  const std::string* file_name = &file->path();

  for (const auto& [name, info] : j.items()) {
    if (name == "__metadata__") continue;
    if (!info.is_object() || !info.contains("dtype") || !info["dtype"].is_string() ||
        !info.contains("shape") || !info["shape"].is_array() || !info.contains("data_offsets") ||
        !info["data_offsets"].is_array() || info["data_offsets"].size() != 2) {
      return Bad(path, StrCat("tensor '", name, "' lacks dtype, shape or data_offsets"));
    }
    SafetensorsTensor t;
    t.name = name;
    t.dtype = info["dtype"].get<std::string>();
    t.file = file_name;
    const int64_t elem = DTypeSize(t.dtype);
    if (elem == 0) return Bad(path, StrCat("tensor '", name, "' has unknown dtype ", t.dtype));
    if (info["shape"].size() > 8) return Bad(path, StrCat("tensor '", name, "' has too many dimensions"));
    uint64_t n = 1;
    for (const auto& d : info["shape"]) {
      if (!d.is_number_unsigned()) {
        return Bad(path, StrCat("tensor '", name, "' has a non-integer or negative dimension"));
      }
      const uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (dim != 0 && n > std::numeric_limits<uint64_t>::max() / 16 / dim)) {
        return Bad(path, StrCat("tensor '", name, "' is too large"));
      }
      n *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = info["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return Bad(path, StrCat("tensor '", name, "' has invalid data_offsets"));
    }
    const uint64_t begin = off[0].get<uint64_t>();
    const uint64_t end = off[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return Bad(path, StrCat("tensor '", name, "' data [", begin, ", ", end,
                              ") lies outside the file's ", data_size,
                              " bytes of data; the file may be truncated"));
    }
    if (end - begin != n * static_cast<uint64_t>(elem)) {
      return Bad(path, StrCat("tensor '", name, "' has ", end - begin, " bytes but its shape and ",
                              t.dtype, " need ", n * elem));
    }
    t.n_bytes = end - begin;
    t.data = file->bytes().data() + data_start + begin;
    if (tensors_.count(name)) return Bad(path, StrCat("tensor '", name, "' appears twice"));
    tensors_.emplace(name, std::move(t));
  }
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

const SafetensorsTensor* SafetensorsCheckpoint::Find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace tokenfab
