// tokenfab drain: drains a running worker and waits until it has nothing in
// flight: the worker refuses new calls, tells its routers (which route
// elsewhere), and finishes what it has. The process keeps running; SIGTERM
// then ends it at once. A Kubernetes preStop hook runs this, so a pod that
// is going away finishes its requests within the grace period.
//
//   tokenfab drain [--target HOST:PORT] [--timeout-s N] [--cluster-key-file F]
#include <algorithm>
#include <cstdio>
#include <thread>

#include "common/strings.h"
#include "grpcpp/grpcpp.h"
#include "server/cli/auth_flags.h"
#include "server/cli/cli_util.h"
#include "server/cli/commands.h"
#include "server/cli/engine_flags.h"
#include "server/grpc_service.h"
#include "tokenfab/internal/v1/worker.grpc.pb.h"

namespace tokenfab {

int RunDrain(const std::vector<std::string>& args) {
  std::string target = "127.0.0.1:50060";
  int32_t timeout_s = 60;
  FlagSet flags("drain",
                "Drain a running worker: no new requests; exit 0 once the ones in flight finish.");
  flags.AddString("target", &target,
                  "HOST:PORT of the worker's --listen (default 127.0.0.1:50060)");
  flags.AddInt("timeout-s", &timeout_s,
               "give up (exit 1) if requests are still in flight after this long (default 60)");
  std::string cluster_key_file;
  AddClusterKeyFlag(flags, &cluster_key_file, /*serving=*/false);
  if (int rc = ParseFlagsOrExit(flags, "drain", args); rc >= 0) return rc;
  absl::StatusOr<KeySet> key = LoadClusterKey(cluster_key_file);
  absl::Status check = key.status();
  if (check.ok()) check = CheckRange("timeout-s", timeout_s, 0, 86400);
  if (!check.ok()) {
    ReportError("drain", check);
    return kExitUsage;
  }
  auto stub = internal::v1::Worker::NewStub(KeyedChannel(target, *key));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  int32_t first = -1;
  while (true) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    internal::v1::DrainReply reply;
    const grpc::Status status = stub->Drain(&context, internal::v1::DrainRequest(), &reply);
    if (!status.ok()) {
      return ReportError("drain", RpcFailure(target, status));
    }
    const int32_t left = std::max(reply.calls_in_flight(), reply.running() + reply.waiting());
    if (first < 0) first = left;
    if (left == 0) {
      std::printf("%s: drained (%d requests were in flight)\n", target.c_str(), first);
      return 0;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return ReportError(
          "drain", absl::DeadlineExceededError(StrCat(
                       target, ": ", left, " requests still in flight after ", timeout_s, " s")));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace tokenfab
