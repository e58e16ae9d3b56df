// gRPC health (grpc.health.v1) as tokenfab's servers answer it.
//
// The overall status ("") and each API service's is readiness: a router is
// SERVING once a worker that can decode is attached, a worker until it
// drains. The service "liveness" is SERVING for as long as the process's
// gRPC server runs: liveness probes ask for it, so that a router is not
// restarted merely because no worker has attached yet.
#ifndef TOKENFAB_SERVER_HEALTH_H_
#define TOKENFAB_SERVER_HEALTH_H_

#include <initializer_list>

#include "grpcpp/grpcpp.h"

namespace tokenfab {

inline constexpr char kLivenessService[] = "liveness";

// Call before building the server: turns on gRPC's health service.
void EnableHealthService();
// After building it: liveness SERVING, readiness as given.
void StartHealth(grpc::Server* server, bool ready, std::initializer_list<const char*> services);
// Readiness of "" and of `services` (the API the server exposes).
void SetReadiness(grpc::Server* server, bool ready, std::initializer_list<const char*> services);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_HEALTH_H_
