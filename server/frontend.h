// The public faces of a router, shared by `serve` and `router`: gRPC
// (tokenfab.v1.Generation, health, reflection), the OpenAI-compatible HTTP
// API and the Prometheus endpoint with the given collectables.
#ifndef TOKENFAB_SERVER_FRONTEND_H_
#define TOKENFAB_SERVER_FRONTEND_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"
#include "server/grpc_service.h"
#include "server/http/http_server.h"
#include "server/router.h"

namespace tokenfab {

// A Prometheus endpoint on host:port (0 picks one) serving `metrics`, which
// it keeps alive (the exposer itself holds only weak references).
class MetricsEndpoint {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      const std::string& host, int32_t port,
      std::vector<std::shared_ptr<prometheus::Collectable>> metrics);
  int port() const;

 private:
  MetricsEndpoint() = default;
  std::vector<std::shared_ptr<prometheus::Collectable>> metrics_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

struct FrontendOptions {
  std::string host = "0.0.0.0";
  int32_t grpc_port = 50051;
  int32_t http_port = 8000;
  int32_t http_threads = 1;
  int32_t metrics_port = 9400;
  // What gRPC Generation and HTTP /v1/* need (auth.h); health and metrics are open.
  KeySet api_keys;
  // TLS on the gRPC and HTTP ports when enabled (tls.h); metrics stay plain.
  TlsIdentity tls;
  // Extra services on the gRPC port (e.g. nothing, or admin for tests).
  std::vector<grpc::Service*> extra_services;
  // Extra GET endpoints of the HTTP face (HttpServerOptions::json_routes).
  std::map<std::string, std::function<std::string()>> json_routes;
};

class Frontend {
 public:
  static absl::StatusOr<std::unique_ptr<Frontend>> Start(
      Router* router, const FrontendOptions& options,
      const std::vector<std::shared_ptr<prometheus::Collectable>>& metrics);
  ~Frontend();

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_->port(); }
  int metrics_port() const { return metrics_->port(); }
  // For the start-up log: "gRPC on H:P, HTTP on http://H:P, metrics on
  // http://H:P/metrics", with TLS named and its certificate described.
  std::string Addresses() const;
  // Readiness as grpc.health.v1 answers it (serving at start; the
  // "liveness" service always is: health.h).
  void SetServing(bool serving);
  // Stops taking requests; calls in flight get two seconds, then are cancelled.
  void Shutdown();

 private:
  Frontend() = default;
  std::unique_ptr<GenerationService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<MetricsEndpoint> metrics_;
  int grpc_port_ = 0;
  std::string host_;
  TlsIdentity tls_;
  bool shut_down_ = false;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_FRONTEND_H_
