#include "server/health.h"

#include "grpcpp/health_check_service_interface.h"

namespace tokenfab {

void EnableHealthService() { grpc::EnableDefaultHealthCheckService(true); }

void StartHealth(grpc::Server* server, bool ready, std::initializer_list<const char*> services) {
  if (grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService()) {
    health->SetServingStatus(kLivenessService, true);
  }
  SetReadiness(server, ready, services);
}

void SetReadiness(grpc::Server* server, bool ready, std::initializer_list<const char*> services) {
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus("", ready);
  for (const char* s : services) health->SetServingStatus(s, ready);
}

}  // namespace tokenfab
