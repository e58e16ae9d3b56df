// The OpenAI-compatible HTTP/1.1 face of the router: /v1/completions and
// /v1/chat/completions (streamed as server-sent events or one JSON object),
// /v1/models, /health (ready: 503 while no worker can decode), /live (200
// while the process serves). Event-driven (Boost.Beast over Asio): a connection
// waiting on tokens holds no thread, so thousands of open streams cost a few
// io threads. A client that goes away mid-request has its request cancelled,
// so the worker frees its KV blocks.
//
// Start, port and Shutdown may be called from any thread; the Router must
// outlive the server. Responses a Router delivers after Shutdown are dropped.
#ifndef TOKENFAB_SERVER_HTTP_HTTP_SERVER_H_
#define TOKENFAB_SERVER_HTTP_HTTP_SERVER_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/auth.h"
#include "server/router.h"
#include "server/tls.h"

namespace tokenfab {

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  int port = 8000;  // 0 picks a free port
  int threads = 1;  // io threads
  size_t max_body_bytes = 8 << 20;
  // Keys that /v1/* needs (auth.h); /health and /live are open.
  KeySet api_keys;
  // HTTPS when enabled (tls.h), on this one port; else plain HTTP.
  TlsIdentity tls;
  // Extra read-only JSON endpoints: GET path -> the JSON document to answer
  // (e.g. the router's /v1/planner). Called on an io thread; must not block.
  std::map<std::string, std::function<std::string()>> json_routes;
};

class HttpServer {
 public:
  // Binds and starts serving. InvalidArgument for a bad host or option,
  // Unavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(Router* router,
                                                           const HttpServerOptions& options);
  ~HttpServer();  // Shutdown()

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const;  // the bound port
  // Stops accepting, closes every connection (cancelling its request) and
  // joins the io threads. Idempotent.
  void Shutdown();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_HTTP_HTTP_SERVER_H_
