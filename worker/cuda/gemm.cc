#include "worker/cuda/gemm.h"

#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/cuda/cuda_status.h"

namespace tokenfab::cuda {

struct Gemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};

  ~Plan() {
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

absl::StatusOr<std::unique_ptr<Gemm>> Gemm::Create(size_t workspace_bytes) {
  std::unique_ptr<Gemm> g(new Gemm());
  CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&g->handle_));
  ASSIGN_OR_RETURN(g->workspace_,
                   DeviceBuffer<uint8_t>::Allocate(workspace_bytes, "GEMM workspace"));
  return g;
}

Gemm::~Gemm() {
  plans_.clear();
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

// In cuBLAS's column-major terms the row-major product y = x w^T is
// y^T (out x n) = w (out x in, stored as the column-major in x out matrix,
// hence op T) times x^T (in x n).
absl::StatusOr<Gemm::Plan*> Gemm::PlanFor(const Key& key) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second.get();
  const auto [n, in, out, y_type, accumulate] = key;
  auto plan = std::make_unique<Plan>();
  CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                        &trans_a, sizeof(trans_a)));
  CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                        &trans_b, sizeof(trans_b)));
  CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, in, out, in));
  CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, in, n, in));
  CUBLAS_RETURN_IF_ERROR(
      cublasLtMatrixLayoutCreate(&plan->c, static_cast<cudaDataType_t>(y_type), out, n, out));

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
  const size_t ws = workspace_.bytes();
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof(ws));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(
      handle_, plan->desc, plan->a, plan->b, plan->c, plan->c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  CUBLAS_RETURN_IF_ERROR(s);
  if (found == 0) {
    return absl::InternalError(
        StrCat("cuBLASLt has no algorithm for a bf16 GEMM of ", n, "x", in, " by ", out, "x", in));
  }
  plan->algo = result.algo;
  Plan* raw = plan.get();
  plans_.emplace(key, std::move(plan));
  return raw;
}

absl::Status Gemm::Run(const bf16* x, const bf16* w, int64_t n, int64_t in, int64_t out, void* y,
                       cudaDataType_t y_type, bool accumulate, cudaStream_t stream) {
  if (n == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(Plan * plan, PlanFor({n, in, out, static_cast<int>(y_type), accumulate}));
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(handle_, plan->desc, &alpha, w, plan->a, x, plan->b, &beta,
                                        y, plan->c, y, plan->c, &plan->algo, workspace_.get(),
                                        workspace_.bytes(), stream));
  return absl::OkStatus();
}

}  // namespace tokenfab::cuda
