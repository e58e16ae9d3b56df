#include "tests/support/gguf_builder.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace tokenfab::testing {

std::string WriteTempFile(const std::string& stem, const void* data, size_t n) {
  static std::atomic<int> counter{0};
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::filesystem::path dir =
      (tmp && *tmp) ? std::filesystem::path(tmp) : std::filesystem::temp_directory_path();
  const std::filesystem::path path =
      dir / (stem + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  return path.string();
}

std::string GgufBuilder::WriteTemp(const std::string& stem, size_t n) const {
  return WriteTempFile(stem, bytes_.data(), std::min(n, bytes_.size()));
}

}  // namespace tokenfab::testing
