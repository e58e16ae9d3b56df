#include "worker/cuda/nccl_api.h"

#include <dlfcn.h>

#include <cstdlib>
#include <string>

#include "common/strings.h"

namespace tokenfab::cuda {
namespace {

template <typename F>
bool Bind(void* lib, const char* name, F* f) {
  *f = reinterpret_cast<F>(dlsym(lib, name));
  return *f != nullptr;
}

}  // namespace

absl::StatusOr<NcclApi> NcclApi::LoadFrom(const std::string& path) {
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = dlerror();
    return absl::UnavailableError(StrCat(
        "--transport nccl needs NCCL (", path, "): ", why != nullptr ? why : "not found",
        "; install it (Debian/Ubuntu: libnccl2) or point TOKENFAB_NCCL_LIBRARY at libnccl.so.2"));
  }
  NcclApi api;
  const bool ok = Bind(lib, "ncclGetVersion", &api.GetVersion) &&
                  Bind(lib, "ncclGetUniqueId", &api.GetUniqueId) &&
                  Bind(lib, "ncclCommInitRankConfig", &api.CommInitRankConfig) &&
                  Bind(lib, "ncclCommGetAsyncError", &api.CommGetAsyncError) &&
                  Bind(lib, "ncclCommAbort", &api.CommAbort) && Bind(lib, "ncclSend", &api.Send) &&
                  Bind(lib, "ncclRecv", &api.Recv) &&
                  Bind(lib, "ncclGroupStart", &api.GroupStart) &&
                  Bind(lib, "ncclGroupEnd", &api.GroupEnd) &&
                  Bind(lib, "ncclGetErrorString", &api.GetErrorString) &&
                  Bind(lib, "ncclGetLastError", &api.GetLastError);
  if (!ok) {
    dlclose(lib);
    return absl::UnavailableError(StrCat(path, " lacks the NCCL entry points tokenfab uses (",
                                         "non-blocking communicators need NCCL 2.14 or newer)"));
  }
  api.GetVersion(&api.version);
  if (api.version < NCCL_VERSION(2, 14, 0)) {
    dlclose(lib);
    return absl::UnavailableError(StrCat("NCCL ", api.version, " from ", path,
                                         " is too old: non-blocking communicators need 2.14"));
  }
  return api;  // the library stays loaded for the process
}

absl::StatusOr<const NcclApi*> NcclApi::Load() {
  static const absl::StatusOr<NcclApi>* loaded = [] {
    const char* env = std::getenv("TOKENFAB_NCCL_LIBRARY");
    return new absl::StatusOr<NcclApi>(
        LoadFrom(env != nullptr && *env != '\0' ? env : "libnccl.so.2"));
  }();
  if (!loaded->ok()) return loaded->status();
  return &**loaded;
}

absl::Status NcclApi::Error(ncclResult_t r, ncclComm_t comm, const char* op) const {
  const char* last = GetLastError(comm);
  const std::string msg = StrCat(op, ": ", GetErrorString(r),
                                 last != nullptr && *last != '\0' ? StrCat(" (", last, ")") : "");
  return r == ncclSystemError || r == ncclRemoteError ? absl::UnavailableError(msg)
                                                      : absl::InternalError(msg);
}

}  // namespace tokenfab::cuda
