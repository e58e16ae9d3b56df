// Builds GGUF files byte by byte for tests, including deliberately broken
// ones: every field can be set to any value, consistent or not.
#ifndef TOKENFAB_TESTS_SUPPORT_GGUF_BUILDER_H_
#define TOKENFAB_TESTS_SUPPORT_GGUF_BUILDER_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace tokenfab::testing {

class GgufBuilder {
 public:
  // Raw little-endian appenders.
  GgufBuilder& U8(uint8_t v) { return Raw(&v, 1); }
  GgufBuilder& U32(uint32_t v) { return Raw(&v, 4); }
  GgufBuilder& I32(int32_t v) { return Raw(&v, 4); }
  GgufBuilder& U64(uint64_t v) { return Raw(&v, 8); }
  GgufBuilder& F32(float v) { return Raw(&v, 4); }
  GgufBuilder& Str(const std::string& s) {
    U64(s.size());
    return Raw(s.data(), s.size());
  }
  GgufBuilder& Raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
    return *this;
  }
  GgufBuilder& Pad(size_t alignment) {
    while (bytes_.size() % alignment) bytes_.push_back(0);
    return *this;
  }

  // Header: magic, version, tensor count, metadata count.
  GgufBuilder& Header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    Raw("GGUF", 4);
    U32(version);
    U64(n_tensors);
    return U64(n_kv);
  }
  // Typed metadata entries.
  GgufBuilder& KvU32(const std::string& k, uint32_t v) { return Str(k).U32(4).U32(v); }
  GgufBuilder& KvF32(const std::string& k, float v) { return Str(k).U32(6).F32(v); }
  GgufBuilder& KvBool(const std::string& k, bool v) { return Str(k).U32(7).U8(v ? 1 : 0); }
  GgufBuilder& KvStr(const std::string& k, const std::string& v) { return Str(k).U32(8).Str(v); }
  GgufBuilder& KvStrArray(const std::string& k, const std::vector<std::string>& v) {
    Str(k).U32(9).U32(8).U64(v.size());
    for (const auto& s : v) Str(s);
    return *this;
  }
  GgufBuilder& KvI32Array(const std::string& k, const std::vector<int32_t>& v) {
    Str(k).U32(9).U32(5).U64(v.size());
    for (int32_t x : v) I32(x);
    return *this;
  }
  GgufBuilder& KvF32Array(const std::string& k, const std::vector<float>& v) {
    Str(k).U32(9).U32(6).U64(v.size());
    for (float x : v) F32(x);
    return *this;
  }
  // A tensor info entry; dims innermost first, as GGUF stores them.
  GgufBuilder& TensorInfo(const std::string& name, const std::vector<uint64_t>& dims,
                          uint32_t type, uint64_t offset) {
    Str(name).U32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) U64(d);
    return U32(type).U64(offset);
  }

  const std::vector<uint8_t>& bytes() const { return bytes_; }
  size_t size() const { return bytes_.size(); }

  // Writes the bytes (or their first `n`) to a fresh temporary file and
  // returns its path.
  std::string WriteTemp(const std::string& stem, size_t n = SIZE_MAX) const;

 private:
  std::vector<uint8_t> bytes_;
};

// Writes `bytes` to a fresh file under the test's temporary directory.
std::string WriteTempFile(const std::string& stem, const void* data, size_t n);

}  // namespace tokenfab::testing

#endif  // TOKENFAB_TESTS_SUPPORT_GGUF_BUILDER_H_
