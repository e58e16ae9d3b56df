#include "server/frontend.h"

#include "common/strings.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "server/health.h"

namespace tokenfab {
namespace {

constexpr char kGenerationService[] = "tokenfab.v1.Generation";

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& host, int32_t port,
    std::vector<std::shared_ptr<prometheus::Collectable>> metrics) {
  std::unique_ptr<MetricsEndpoint> m(new MetricsEndpoint());
  try {
    m->exposer_ = std::make_unique<prometheus::Exposer>(StrCat(host, ":", port));
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        StrCat("cannot listen for metrics on ", host, ":", port, ": ", e.what()));
  }
  m->metrics_ = std::move(metrics);
  for (const auto& c : m->metrics_) m->exposer_->RegisterCollectable(c);
  return m;
}

int MetricsEndpoint::port() const {
  const std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports[0];
}

std::string Frontend::Addresses() const {
  const bool tls = tls_.enabled();
  std::string line = StrCat("gRPC on ", host_, ":", grpc_port_, tls ? " (TLS)" : "", ", HTTP on ",
                            tls ? "https" : "http", "://", host_, ":", http_port(),
                            ", metrics on http://", host_, ":", metrics_port(), "/metrics");
  if (tls) StrAppend(&line, "; TLS certificate ", tls_.Describe());
  return line;
}

absl::StatusOr<std::unique_ptr<Frontend>> Frontend::Start(
    Router* router, const FrontendOptions& o,
    const std::vector<std::shared_ptr<prometheus::Collectable>>& metrics) {
  std::unique_ptr<Frontend> f(new Frontend());
  f->host_ = o.host;
  f->tls_ = o.tls;
  f->service_ = std::make_unique<GenerationService>(router, o.api_keys);
  EnableHealthService();
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // As the HTTP face: a TLS client has 10 s to finish its handshake (gRPC's default is 120 s).
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, 10000);
  builder.AddListeningPort(StrCat(o.host, ":", o.grpc_port), o.tls.GrpcCredentials(),
                           &f->grpc_port_);
  builder.RegisterService(f->service_.get());
  for (grpc::Service* s : o.extra_services) builder.RegisterService(s);
  f->grpc_ = builder.BuildAndStart();
  if (!f->grpc_ || f->grpc_port_ == 0) {
    return absl::UnavailableError(StrCat("cannot listen for gRPC on ", o.host, ":", o.grpc_port));
  }
  StartHealth(f->grpc_.get(), true, {kGenerationService});
  HttpServerOptions http;
  http.host = o.host;
  http.port = o.http_port;
  http.threads = o.http_threads;
  http.json_routes = o.json_routes;
  http.api_keys = o.api_keys;
  http.tls = o.tls;
  auto server = HttpServer::Start(router, http);
  if (!server.ok()) return server.status();
  f->http_ = std::move(*server);
  auto endpoint = MetricsEndpoint::Start(o.host, o.metrics_port, metrics);
  if (!endpoint.ok()) return endpoint.status();
  f->metrics_ = std::move(*endpoint);
  return f;
}

void Frontend::SetServing(bool serving) { SetReadiness(grpc_.get(), serving, {kGenerationService}); }

void Frontend::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  http_->Shutdown();
  grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

Frontend::~Frontend() {
  Shutdown();
  grpc_->Wait();
}

}  // namespace tokenfab
