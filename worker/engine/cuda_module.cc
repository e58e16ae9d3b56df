#include "worker/engine/cuda_module.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/numbers.h"
#include "common/strings.h"

namespace tokenfab {
namespace {

constexpr char kModuleName[] = "libtokenfab_cuda.so";

std::string ExecutableDir() {
  std::string path(4096, '\0');
  const ssize_t n = ::readlink("/proc/self/exe", path.data(), path.size() - 1);
  if (n <= 0) return "";
  path.resize(static_cast<size_t>(n));
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

// The module stays loaded for the life of the process: backends it made
// may outlive any one caller.
absl::StatusOr<void*> LoadEntry(const char* name) {
  static void* handle = nullptr;
  static std::string tried;
  if (handle == nullptr) {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("TOKENFAB_CUDA_MODULE"); env != nullptr && *env != '\0') {
      candidates.push_back(env);
    } else {
      const std::string dir = ExecutableDir();
      candidates.push_back(StrCat(dir, "/", kModuleName));
      candidates.push_back(StrCat(dir, "/../lib/tokenfab/", kModuleName));
    }
    std::string errors;
    for (const std::string& c : candidates) {
      if (::access(c.c_str(), R_OK) != 0) {
        StrAppend(&errors, errors.empty() ? "" : "; ", c, ": not found");
        continue;
      }
      handle = ::dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle != nullptr) break;
      const char* e = ::dlerror();
      StrAppend(&errors, errors.empty() ? "" : "; ", c, ": ", e != nullptr ? e : "dlopen failed",
                " (is the CUDA runtime with cuBLAS installed?)");
    }
    if (handle == nullptr) {
      return absl::UnavailableError(
          StrCat("the CUDA backend module cannot be loaded (a build without nvcc, or the CUDA "
                 "runtime or cuBLAS missing): ",
                 errors));
    }
  }
  void* sym = ::dlsym(handle, name);
  if (sym == nullptr) {
    return absl::FailedPreconditionError(
        StrCat("the CUDA module has no ", name, ": not a tokenfab CUDA module of this build"));
  }
  return sym;
}

}  // namespace

absl::StatusOr<int32_t> ParseCudaDevice(const std::string& device) {
  int32_t index = -1;
  if (device.rfind("cuda:", 0) != 0 || !absl::SimpleAtoi(device.substr(5), &index) || index < 0 ||
      index > 1023) {
    return absl::InvalidArgumentError(
        StrCat("--device must be cpu or cuda:N (N a GPU index), got '", device, "'"));
  }
  return index;
}

absl::StatusOr<CudaBackendHandle> CreateCudaBackend(const ModelConfig& config,
                                                    const ModelWeights& weights,
                                                    const CudaBackendOptions& options) {
  absl::StatusOr<void*> entry = LoadEntry(kCudaModuleEntryName);
  if (!entry.ok()) {
    return absl::Status(entry.status().code(),
                        StrCat("cuda:", options.device, ": ", entry.status().message()));
  }
  CudaModuleCall call;
  call.config = &config;
  call.weights = &weights;
  call.options = &options;
  reinterpret_cast<CudaModuleEntry>(*entry)(&call);
  if (call.backend == nullptr) {
    return absl::Status(static_cast<absl::StatusCode>(call.error_code),
                        StrCat("cuda:", options.device, ": ", call.message));
  }
  return CudaBackendHandle{std::unique_ptr<Backend>(call.backend), call.message};
}

absl::StatusOr<std::unique_ptr<KvTransport>> CreateNcclTransport(
    const NcclTransportOptions& options) {
  absl::StatusOr<void*> entry = LoadEntry(kNcclModuleEntryName);
  if (!entry.ok()) {
    return absl::Status(entry.status().code(), StrCat("--transport nccl on cuda:", options.device,
                                                      ": ", entry.status().message()));
  }
  NcclModuleCall call;
  call.options = &options;
  reinterpret_cast<NcclModuleEntry>(*entry)(&call);
  if (call.transport == nullptr) {
    return absl::Status(static_cast<absl::StatusCode>(call.error_code),
                        StrCat("--transport nccl on cuda:", options.device, ": ", call.message));
  }
  return std::unique_ptr<KvTransport>(call.transport);
}

}  // namespace tokenfab
