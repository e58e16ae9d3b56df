// Shared by the tokenizer tests: reading golden files, loading tokenizers,
// printing id lists, and a minimal GGUF writer for hostile-metadata cases.
#ifndef TOKENFAB_TESTS_WORKER_TOKENIZER_TOKENIZER_TEST_UTIL_H_
#define TOKENFAB_TESTS_WORKER_TOKENIZER_TOKENIZER_TEST_UTIL_H_

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/gguf_file.h"
#include "worker/tokenizer/tokenizer.h"

namespace tokenfab::testing {

inline std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const std::string& path) {
  auto gguf = GgufFile::Open(path);
  if (!gguf.ok()) return gguf.status();
  return Tokenizer::FromGguf(**gguf);
}

inline std::string FormatIds(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(ids[i]);
  }
  return s + "]";
}

inline std::string HexDecode(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// Writes GGUF v3 files with metadata only (no tensors), enough to feed the
// tokenizer loader hostile tokenizer.ggml.* values.
class TinyGgufWriter {
 public:
  TinyGgufWriter& Str(const std::string& key, const std::string& value) {
    Key(key);
    U32(8);
    String(value);
    ++count_;
    return *this;
  }
  TinyGgufWriter& Bool(const std::string& key, bool value) {
    Key(key);
    U32(7);
    body_.push_back(value ? 1 : 0);
    ++count_;
    return *this;
  }
  TinyGgufWriter& U32Value(const std::string& key, uint32_t value) {
    Key(key);
    U32(4);
    U32(value);
    ++count_;
    return *this;
  }
  TinyGgufWriter& StrArray(const std::string& key, const std::vector<std::string>& values) {
    Key(key);
    U32(9);
    U32(8);
    U64(values.size());
    for (const auto& v : values) String(v);
    ++count_;
    return *this;
  }
  TinyGgufWriter& I32Array(const std::string& key, const std::vector<int32_t>& values) {
    Key(key);
    U32(9);
    U32(5);
    U64(values.size());
    for (int32_t v : values) U32(static_cast<uint32_t>(v));
    ++count_;
    return *this;
  }
  TinyGgufWriter& F32Array(const std::string& key, const std::vector<float>& values) {
    Key(key);
    U32(9);
    U32(6);
    U64(values.size());
    for (float v : values) {
      uint32_t bits;
      std::memcpy(&bits, &v, 4);
      U32(bits);
    }
    ++count_;
    return *this;
  }

  // Writes the file under the test temp dir and returns its path.
  std::string WriteTemp(const std::string& name) const {
    std::string data = "GGUF";
    auto put = [&data](uint64_t v, int n) {
      for (int i = 0; i < n; ++i) data.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
    };
    put(3, 4);       // version
    put(0, 8);       // tensors
    put(count_, 8);  // metadata entries
    data += body_;
    // Pad to the default alignment: the (empty) tensor data section starts there.
    data.append((32 - data.size() % 32) % 32, '\0');
    const std::string path =
        (std::filesystem::temp_directory_path() / ("tokenfab_tok_" + name)).string();
    std::ofstream(path, std::ios::binary) << data;
    return path;
  }

 private:
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) body_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  }
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) body_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  }
  void String(const std::string& s) {
    U64(s.size());
    body_ += s;
  }
  void Key(const std::string& k) { String(k); }

  std::string body_;
  uint64_t count_ = 0;
};

}  // namespace tokenfab::testing

#endif  // TOKENFAB_TESTS_WORKER_TOKENIZER_TOKENIZER_TEST_UTIL_H_
