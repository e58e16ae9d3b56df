// tokenfab health: asks a running router, worker or serve for its gRPC health
// (grpc.health.v1.Health/Check) and exits 0 when it is SERVING, 1 when not
// (or unreachable). Container health checks and scripts run it; Kubernetes
// asks the same service with its own gRPC probes.
//
//   tokenfab health [--target HOST:PORT] [--service NAME] [--timeout-ms N]
#include <cstdio>

#include "common/strings.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/cli/cli_util.h"
#include "server/cli/commands.h"
#include "server/cli/engine_flags.h"
#include "server/grpc_service.h"
#include "server/health.h"

namespace tokenfab {

int RunHealth(const std::vector<std::string>& args) {
  std::string target = "127.0.0.1:50051", service;
  int32_t timeout_ms = 2000;
  FlagSet flags("health", "Check a tokenfab process's gRPC health; exit 0 when SERVING, else 1.");
  flags.AddString("target", &target,
                  "HOST:PORT of its gRPC port: a router's or serve's --grpc-port, a worker's "
                  "--listen (default 127.0.0.1:50051)");
  flags.AddString("service", &service,
                  StrCat("what to ask about: empty for readiness (default), or ", kLivenessService,
                         " (SERVING while the process runs)"));
  flags.AddInt("timeout-ms", &timeout_ms, "give up after this long (default 2000)");
  if (int rc = ParseFlagsOrExit(flags, "health", args); rc >= 0) return rc;
  if (absl::Status s = CheckRange("timeout-ms", timeout_ms, 1, 600000); !s.ok()) {
    ReportError("health", s);
    return kExitUsage;
  }
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  const std::string what = service.empty() ? target : StrCat(target, " (", service, ")");
  if (!status.ok()) {
    return ReportError("health", RpcFailure(what, status));
  }
  const std::string name =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  std::printf("%s: %s\n", what.c_str(), name.c_str());
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : kExitError;
}

}  // namespace tokenfab
