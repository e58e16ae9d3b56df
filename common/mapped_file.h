// A read-only memory map of a whole file. Model weights stay in the page cache
// and are used in place (quantized), so loading a model costs no copy.
// Thread-safe after construction: the mapping is immutable.
#ifndef TOKENFAB_COMMON_MAPPED_FILE_H_
#define TOKENFAB_COMMON_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace tokenfab {

class MappedFile {
 public:
  // Maps `path` read-only. Errors name the file: missing, unreadable, a
  // directory, or empty.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  size_t size() const { return size_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

// Reads a whole (small) file into a string; for JSON configs and templates.
// A file larger than `max_bytes`, or not a regular file (a FIFO, a device),
// is refused without reading it.
absl::StatusOr<std::string> ReadFileToString(const std::string& path,
                                             uintmax_t max_bytes = uintmax_t{1} << 30);

}  // namespace tokenfab

#endif  // TOKENFAB_COMMON_MAPPED_FILE_H_
