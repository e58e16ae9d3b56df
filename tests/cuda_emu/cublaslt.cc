// cuBLASLt for the CUDA emulator: the matrix product D = alpha op(A) op(B) +
// beta C with float accumulation, for bf16 or float A and B and bf16 or float
// C and D, column-major as cuBLAS defines it; one "algorithm" that needs no
// workspace. Descriptors are checked as cuBLASLt checks them (types, shapes,
// leading dimensions), and the product's operands against the device
// allocations they must lie in: an operand that runs past its allocation
// faults the device (cudaErrorIllegalAddress), as it would on a GPU.
#include <cublasLt.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "tests/cuda_emu/emu_runtime.h"

using namespace tokenfab::cuda_emu;  // NOLINT: the C API is global

struct cublasLtContext {
  uint32_t magic = 0x6c74656d;
};

namespace {

constexpr uint32_t kDescMagic = 0x64657363, kLayoutMagic = 0x6c61796f, kPrefMagic = 0x70726566;

struct Desc {
  uint32_t magic = kDescMagic;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cudaDataType_t scale = CUDA_R_32F;
  int32_t trans_a = CUBLAS_OP_N;
  int32_t trans_b = CUBLAS_OP_N;
  int32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  int32_t pointer_mode = CUBLASLT_POINTER_MODE_HOST;
};
struct Layout {
  uint32_t magic = kLayoutMagic;
  cudaDataType_t type = CUDA_R_32F;
  uint64_t rows = 0, cols = 0;
  int64_t ld = 0;
  int32_t order = CUBLASLT_ORDER_COL;
  int32_t batch = 1;
};
struct Pref {
  uint32_t magic = kPrefMagic;
  uint64_t max_workspace = 0;
};
static_assert(sizeof(Desc) <= sizeof(cublasLtMatmulDescOpaque_t));
static_assert(sizeof(Layout) <= sizeof(cublasLtMatrixLayoutOpaque_t));
static_assert(sizeof(Pref) <= sizeof(cublasLtMatmulPreferenceOpaque_t));

template <typename T, typename Opaque>
T* Get(Opaque* o, uint32_t magic) {
  if (o == nullptr) return nullptr;
  T* t = reinterpret_cast<T*>(o->data);
  return t->magic == magic ? t : nullptr;
}

// Frees a descriptor made by this library (its magic checked first).
template <typename T, typename Opaque>
cublasStatus_t Destroy(Opaque* o, uint32_t magic) {
  T* t = Get<T>(o, magic);
  if (t == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  t->magic = 0;
  delete o;
  return CUBLAS_STATUS_SUCCESS;
}

template <typename T>
bool SetValue(T* field, const void* buf, size_t size) {
  if (buf == nullptr || size != sizeof(T)) return false;
  std::memcpy(field, buf, sizeof(T));
  return true;
}

size_t ElementBytes(cudaDataType_t t) { return t == CUDA_R_16BF ? 2 : 4; }

float Load(const void* p, cudaDataType_t t, size_t i) {
  if (t == CUDA_R_32F) return static_cast<const float*>(p)[i];
  uint16_t b;
  std::memcpy(&b, static_cast<const uint8_t*>(p) + 2 * i, 2);
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void Store(void* p, cudaDataType_t t, size_t i, float v) {
  if (t == CUDA_R_32F) {
    static_cast<float*>(p)[i] = v;
    return;
  }
  uint32_t u;
  std::memcpy(&u, &v, 4);
  uint16_t b;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    b = static_cast<uint16_t>((u >> 16) | 0x40);  // NaN stays NaN
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);  // nearest, ties to even
    b = static_cast<uint16_t>(u >> 16);
  }
  std::memcpy(static_cast<uint8_t*>(p) + 2 * i, &b, 2);
}

// `count` elements of op(X) row `r` (or column, for N) into `out` as floats:
// element j is X[r * ld + j] when X is stored transposed for the operation,
// else X[j * ld + r].
void Gather(const void* x, cudaDataType_t t, int64_t ld, bool contiguous, uint64_t r,
            uint64_t count, float* out) {
  for (uint64_t j = 0; j < count; ++j) {
    out[j] = Load(x, t, contiguous ? r * ld + j : j * ld + r);
  }
}

// Four dot products of `k` elements at once: rows a[0..3] (each k long, laid
// out one after another) with b, in vectors of 8 floats (GCC's vector
// extension: registers, whatever the target), b loaded once for four rows.
void Dot4(const float* a, const float* b, uint64_t k, float out[4]) {
  typedef float V8 __attribute__((vector_size(32)));
  auto load = [](const float* p) {
    V8 v;
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  V8 acc0 = {}, acc1 = {}, acc2 = {}, acc3 = {};
  uint64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const V8 bv = load(b + i);
    acc0 += load(a + i) * bv;
    acc1 += load(a + k + i) * bv;
    acc2 += load(a + 2 * k + i) * bv;
    acc3 += load(a + 3 * k + i) * bv;
  }
  const V8 acc[4] = {acc0, acc1, acc2, acc3};
  for (int r = 0; r < 4; ++r) {
    float s = 0;
    for (uint64_t t = i; t < k; ++t) s += a[r * k + t] * b[t];
    for (int j = 0; j < 8; ++j) s += acc[r][j];
    out[r] = s;
  }
}

std::string Shape(const char* name, const Layout& l) {
  return std::string(name) + " " + std::to_string(l.rows) + "x" + std::to_string(l.cols) + " (ld " +
         std::to_string(l.ld) + ")";
}

// Bytes an operand spans, from its first element.
size_t Span(const Layout& l) {
  return ((l.cols - 1) * static_cast<uint64_t>(l.ld) + l.rows) * ElementBytes(l.type);
}

}  // namespace

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasLtContext();
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  if (handle == nullptr || handle->magic != cublasLtContext().magic) {
    return CUBLAS_STATUS_NOT_INITIALIZED;
  }
  handle->magic = 0;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasLtGetStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    default:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
  }
}
const char* cublasLtGetStatusString(cublasStatus_t s) { return cublasLtGetStatusName(s); }
size_t cublasLtGetVersion() { return CUBLAS_VERSION; }

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
  if (desc == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  auto* o = new cublasLtMatmulDescOpaque_t{};
  Desc* d = new (o->data) Desc();
  d->compute = compute;
  d->scale = scale;
  *desc = o;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  return Destroy<Desc>(desc, kDescMagic);
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr, const void* buf,
                                              size_t size) {
  Desc* d = Get<Desc>(desc, kDescMagic);
  if (d == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  bool ok;
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
      ok = SetValue(&d->trans_a, buf, size);
      break;
    case CUBLASLT_MATMUL_DESC_TRANSB:
      ok = SetValue(&d->trans_b, buf, size);
      break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
      ok = SetValue(&d->epilogue, buf, size);
      break;
    case CUBLASLT_MATMUL_DESC_POINTER_MODE:
      ok = SetValue(&d->pointer_mode, buf, size);
      break;
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE:
      ok = SetValue(&d->scale, buf, size);
      break;
    default:
      Complain("cublasLtMatmulDescSetAttribute: attribute " + std::to_string(attr) +
               " is not emulated");
      return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  if (layout == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (rows == 0 || cols == 0 || ld < static_cast<int64_t>(rows)) {
    Complain("cublasLtMatrixLayoutCreate: " + std::to_string(rows) + "x" + std::to_string(cols) +
             " with leading dimension " + std::to_string(ld) + " (at least the rows)");
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  auto* o = new cublasLtMatrixLayoutOpaque_t{};
  Layout* l = new (o->data) Layout();
  l->type = type;
  l->rows = rows;
  l->cols = cols;
  l->ld = ld;
  *layout = o;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
  return Destroy<Layout>(layout, kLayoutMagic);
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout,
                                                cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t size) {
  Layout* l = Get<Layout>(layout, kLayoutMagic);
  if (l == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_ORDER:
      return SetValue(&l->order, buf, size) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT:
      return SetValue(&l->batch, buf, size) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
    default:
      Complain("cublasLtMatrixLayoutSetAttribute: attribute " + std::to_string(attr) +
               " is not emulated");
      return CUBLAS_STATUS_NOT_SUPPORTED;
  }
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  if (pref == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  auto* o = new cublasLtMatmulPreferenceOpaque_t{};
  new (o->data) Pref();
  *pref = o;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  return Destroy<Pref>(pref, kPrefMagic);
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void* buf, size_t size) {
  Pref* p = Get<Pref>(pref, kPrefMagic);
  if (p == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
    return SetValue(&p->max_workspace, buf, size) ? CUBLAS_STATUS_SUCCESS
                                                  : CUBLAS_STATUS_INVALID_VALUE;
  }
  return CUBLAS_STATUS_SUCCESS;  // search hints: the emulator has one algorithm
}

namespace {

// Empty when the descriptors describe a product the emulator (and cuBLASLt)
// can run, else why not.
std::string CheckProduct(const Desc& d, const Layout& a, const Layout& b, const Layout& c,
                         const Layout& dd) {
  if (d.compute != CUBLAS_COMPUTE_32F || d.scale != CUDA_R_32F) {
    return "only float compute and scale types are emulated";
  }
  if (d.epilogue != CUBLASLT_EPILOGUE_DEFAULT) return "epilogues are not emulated";
  if (d.pointer_mode != CUBLASLT_POINTER_MODE_HOST) return "only host scalars are emulated";
  for (const Layout* l : {&a, &b, &c, &dd}) {
    if (l->type != CUDA_R_16BF && l->type != CUDA_R_32F) return "a type other than bf16 or float";
    if (l->order != CUBLASLT_ORDER_COL || l->batch != 1) return "only single column-major matrices";
  }
  if (a.type != b.type) return "A and B of different types";
  if (c.type != dd.type || c.rows != dd.rows || c.cols != dd.cols) return "C and D differ";
  if (a.type == CUDA_R_32F && c.type == CUDA_R_16BF) return "float A and B with a bf16 C";
  const bool ta = d.trans_a != CUBLAS_OP_N, tb = d.trans_b != CUBLAS_OP_N;
  const uint64_t m = ta ? a.cols : a.rows, k = ta ? a.rows : a.cols;
  const uint64_t kb = tb ? b.cols : b.rows, n = tb ? b.rows : b.cols;
  if (k != kb || dd.rows != m || dd.cols != n) {
    return "shapes do not multiply: op(" + Shape("A", a) + ") times op(" + Shape("B", b) +
           ") into " + Shape("D", dd);
  }
  return "";
}

}  // namespace

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t op,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[],
                                              int* returned) {
  Desc* desc = Get<Desc>(op, kDescMagic);
  Layout *la = Get<Layout>(a, kLayoutMagic), *lb = Get<Layout>(b, kLayoutMagic);
  Layout *lc = Get<Layout>(c, kLayoutMagic), *ld = Get<Layout>(d, kLayoutMagic);
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (desc == nullptr || la == nullptr || lb == nullptr || lc == nullptr || ld == nullptr ||
      Get<Pref>(pref, kPrefMagic) == nullptr || requested < 1 || results == nullptr ||
      returned == nullptr) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (std::string why = CheckProduct(*desc, *la, *lb, *lc, *ld); !why.empty()) {
    Complain("cublasLtMatmulAlgoGetHeuristic: " + why);
    *returned = 0;
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  results[0] = cublasLtMatmulHeuristicResult_t{};
  results[0].algo.data[0] = 0x656d75;  // the emulator's one algorithm
  results[0].workspaceSize = 0;
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.0f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t op, const void* alpha,
                              const void* A, cublasLtMatrixLayout_t a, const void* B,
                              cublasLtMatrixLayout_t b, const void* beta, const void* C,
                              cublasLtMatrixLayout_t c, void* D, cublasLtMatrixLayout_t d,
                              const cublasLtMatmulAlgo_t* algo, void* workspace,
                              size_t workspace_bytes, cudaStream_t stream) {
  const Desc* desc = Get<Desc>(op, kDescMagic);
  const Layout *la = Get<Layout>(a, kLayoutMagic), *lb = Get<Layout>(b, kLayoutMagic);
  const Layout *lc = Get<Layout>(c, kLayoutMagic), *ld = Get<Layout>(d, kLayoutMagic);
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (desc == nullptr || la == nullptr || lb == nullptr || lc == nullptr || ld == nullptr ||
      alpha == nullptr || beta == nullptr) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (std::string why = CheckProduct(*desc, *la, *lb, *lc, *ld); !why.empty()) {
    Complain("cublasLtMatmul: " + why);
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (algo != nullptr && algo->data[0] != 0x656d75) {
    Complain("cublasLtMatmul: an algorithm that cublasLtMatmulAlgoGetHeuristic did not give");
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const Desc dsc = *desc;
  const Layout A_ = *la, B_ = *lb, C_ = *lc, D_ = *ld;
  // The operands are checked when the product runs, as a GPU would fault then.
  const cudaError_t e = Enqueue(stream, "cublasLtMatmul", [=]() -> cudaError_t {
    const char* names[] = {"A", "B", "C", "D"};
    const void* ptrs[] = {A, B, C, D};
    const Layout* ls[] = {&A_, &B_, &C_, &D_};
    for (int i = 0; i < 4; ++i) {
      if (i == 2 && be == 0.0f) continue;  // C is not read
      if (std::string why = CheckRange(ptrs[i], Span(*ls[i]), MemoryKind::kDevice); !why.empty()) {
        Complain(std::string("cublasLtMatmul: operand ") + names[i] + ": " + why);
        return cudaErrorIllegalAddress;
      }
    }
    const bool ta = dsc.trans_a != CUBLAS_OP_N, tb = dsc.trans_b != CUBLAS_OP_N;
    const uint64_t m = D_.rows, n = D_.cols, k = ta ? A_.rows : A_.cols;
    // Columns of op(B) as floats, once; rows of op(A) four at a time.
    std::vector<float> arows(4 * k), bcols(n * k);
    for (uint64_t j = 0; j < n; ++j) Gather(B, B_.type, B_.ld, !tb, j, k, &bcols[j * k]);
    for (uint64_t i0 = 0; i0 < m; i0 += 4) {
      const uint64_t rows = std::min<uint64_t>(4, m - i0);
      std::fill(arows.begin(), arows.end(), 0.0f);
      for (uint64_t r = 0; r < rows; ++r) Gather(A, A_.type, A_.ld, ta, i0 + r, k, &arows[r * k]);
      for (uint64_t j = 0; j < n; ++j) {
        float dots[4];
        Dot4(arows.data(), &bcols[j * k], k, dots);
        for (uint64_t r = 0; r < rows; ++r) {
          const uint64_t i = i0 + r;
          float v = al * dots[r];
          if (be != 0.0f) v += be * Load(C, C_.type, j * C_.ld + i);
          Store(D, D_.type, j * D_.ld + i, v);
        }
      }
    }
    return cudaSuccess;
  });
  if (e != cudaSuccess) {
    Complain(std::string("cublasLtMatmul: ") + cudaGetErrorName(e));
    return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  return CUBLAS_STATUS_SUCCESS;
}
