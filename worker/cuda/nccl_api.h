// NCCL, loaded with dlopen when a worker asks for --transport nccl, so the
// CUDA module (and --device cuda:N with the tcp transport) works on machines
// without libnccl. Types come from the toolkit's nccl.h; the entry points
// are the few the nccl transport calls.
#ifndef TOKENFAB_WORKER_CUDA_NCCL_API_H_
#define TOKENFAB_WORKER_CUDA_NCCL_API_H_

#include <nccl.h>

#include <string>

#include "absl/status/statusor.h"

namespace tokenfab::cuda {

struct NcclApi {
  decltype(&::ncclGetVersion) GetVersion = nullptr;
  decltype(&::ncclGetUniqueId) GetUniqueId = nullptr;
  decltype(&::ncclCommInitRankConfig) CommInitRankConfig = nullptr;
  decltype(&::ncclCommGetAsyncError) CommGetAsyncError = nullptr;
  decltype(&::ncclCommAbort) CommAbort = nullptr;
  decltype(&::ncclSend) Send = nullptr;
  decltype(&::ncclRecv) Recv = nullptr;
  decltype(&::ncclGroupStart) GroupStart = nullptr;
  decltype(&::ncclGroupEnd) GroupEnd = nullptr;
  decltype(&::ncclGetErrorString) GetErrorString = nullptr;
  decltype(&::ncclGetLastError) GetLastError = nullptr;
  int version = 0;  // NCCL_VERSION_CODE of the library loaded

  // The library ($TOKENFAB_NCCL_LIBRARY, else libnccl.so.2 on the loader's
  // path), loaded once per process. Unavailable, saying what is missing.
  static absl::StatusOr<const NcclApi*> Load();
  // The library at `path` (a file, or a name for the loader's path), not
  // cached: Load's work, for tests.
  static absl::StatusOr<NcclApi> LoadFrom(const std::string& path);

  // `op` failed with `r`: the error, with NCCL's last message for `comm`.
  absl::Status Error(ncclResult_t r, ncclComm_t comm, const char* op) const;
};

}  // namespace tokenfab::cuda

#endif  // TOKENFAB_WORKER_CUDA_NCCL_API_H_
