#include "worker/model/tensor_types.h"

#include <array>
#include <limits>

namespace tokenfab {
namespace {

constexpr std::array<DTypeTraits, 10> kTraits = {{
    {DType::kF32, "F32", 1, 4},
    {DType::kF16, "F16", 1, 2},
    {DType::kQ4_0, "Q4_0", 32, 18},
    {DType::kQ4_1, "Q4_1", 32, 20},
    {DType::kQ5_0, "Q5_0", 32, 22},
    {DType::kQ5_1, "Q5_1", 32, 24},
    {DType::kQ8_0, "Q8_0", 32, 34},
    {DType::kQ4_K, "Q4_K", 256, 144},
    {DType::kQ6_K, "Q6_K", 256, 210},
    {DType::kBF16, "BF16", 1, 2},
}};

}  // namespace

std::optional<DTypeTraits> GetDTypeTraits(uint32_t raw_type) {
  for (const auto& t : kTraits) {
    if (static_cast<uint32_t>(t.type) == raw_type) return t;
  }
  return std::nullopt;
}

const DTypeTraits& Traits(DType type) {
  for (const auto& t : kTraits) {
    if (t.type == type) return t;
  }
  return kTraits[0];  // Unreachable for valid enumerators.
}

std::string_view GgmlTypeName(uint32_t raw_type) {
  static constexpr std::array<std::string_view, 42> kNames = {
      "F32",  "F16",  "Q4_0", "Q4_1", "Q4_2", "Q4_3",    "Q5_0",    "Q5_1", "Q8_0",
      "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",    "Q8_K",    "IQ2_XXS",
      "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8",
      "I16",  "I32",  "I64",  "F64",  "IQ1_M", "BF16",   "Q4_0_4_4", "Q4_0_4_8",
      "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",
      "NVFP4", "?"};
  if (raw_type < kNames.size() - 1) return kNames[raw_type];
  return "unknown";
}

std::string_view SupportedDTypeNames() {
  return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K";
}

std::optional<uint64_t> RowBytes(DType type, int64_t cols) {
  const DTypeTraits& t = Traits(type);
  if (cols <= 0 || cols % t.block_elems != 0) return std::nullopt;
  const uint64_t blocks = static_cast<uint64_t>(cols / t.block_elems);
  if (blocks > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(t.block_bytes)) {
    return std::nullopt;
  }
  return blocks * static_cast<uint64_t>(t.block_bytes);
}

}  // namespace tokenfab
