// Loading NCCL with dlopen (no GPU needed): the library the toolkit ships
// binds every entry point the transport calls, and a missing or foreign
// library is a clear error instead of a crash at the first call.
#include "worker/cuda/nccl_api.h"

#include "gtest/gtest.h"

namespace tokenfab::cuda {
namespace {

TEST(NcclApiTest, BindsEveryEntryPointOfTheInstalledLibrary) {
  absl::StatusOr<NcclApi> api = NcclApi::LoadFrom("libnccl.so.2");
  if (!api.ok()) GTEST_SKIP() << api.status().message();
  EXPECT_GE(api->version, NCCL_VERSION(2, 14, 0));
  for (const void* f :
       {reinterpret_cast<const void*>(api->GetVersion),
        reinterpret_cast<const void*>(api->GetUniqueId),
        reinterpret_cast<const void*>(api->CommInitRankConfig),
        reinterpret_cast<const void*>(api->CommGetAsyncError),
        reinterpret_cast<const void*>(api->CommAbort), reinterpret_cast<const void*>(api->Send),
        reinterpret_cast<const void*>(api->Recv), reinterpret_cast<const void*>(api->GroupStart),
        reinterpret_cast<const void*>(api->GroupEnd),
        reinterpret_cast<const void*>(api->GetErrorString),
        reinterpret_cast<const void*>(api->GetLastError)}) {
    EXPECT_NE(f, nullptr);
  }
  const absl::Status e = api->Error(ncclInvalidArgument, nullptr, "ncclSend");
  EXPECT_EQ(e.code(), absl::StatusCode::kInternal);
  EXPECT_NE(e.message().find("ncclSend: "), std::string::npos) << e.message();
  EXPECT_EQ(api->Error(ncclRemoteError, nullptr, "x").code(), absl::StatusCode::kUnavailable);
}

TEST(NcclApiTest, AMissingOrForeignLibraryIsAClearError) {
  absl::StatusOr<NcclApi> missing = NcclApi::LoadFrom("/nonexistent/libnccl.so.2");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(missing.status().message().find("TOKENFAB_NCCL_LIBRARY"), std::string::npos)
      << missing.status().message();
  absl::StatusOr<NcclApi> foreign = NcclApi::LoadFrom("libm.so.6");
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(foreign.status().message().find("lacks the NCCL entry points"), std::string::npos)
      << foreign.status().message();
}

}  // namespace
}  // namespace tokenfab::cuda
