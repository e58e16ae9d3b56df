#include "server/http/http_server.h"

#include <chrono>
#include <cstdio>
#include <exception>
#include <thread>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/thread_pool.hpp"
#include "common/strings.h"
#include "server/http/http_connection.h"

namespace tokenfab {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using http_internal::Connection;
using http_internal::ServerState;

struct HttpServer::Impl {
  std::shared_ptr<ServerState> state;
  std::unique_ptr<net::thread_pool> admission;  // parses and admits requests
  std::unique_ptr<net::io_context> ioc;
  std::unique_ptr<tcp::acceptor> acceptor;      // on its own strand
  std::unique_ptr<net::steady_timer> backoff;   // after a failed accept (e.g. out of fds)
  std::vector<std::thread> threads;
  int port = 0;

  absl::Mutex shutdown_mu;
  bool shut_down ABSL_GUARDED_BY(shutdown_mu) = false;

  void Accept() {
    acceptor->async_accept(net::make_strand(*ioc), [this](boost::system::error_code ec,
                                                          tcp::socket socket) {
      if (ec == net::error::operation_aborted || !acceptor->is_open()) return;
      if (ec) {
        std::fprintf(stderr, "tokenfab http: accept failed: %s\n", ec.message().c_str());
        backoff->expires_after(std::chrono::milliseconds(100));
        backoff->async_wait([this](boost::system::error_code ec) {
          if (!ec && acceptor->is_open()) Accept();
        });
        return;
      }
      // The certificate in force now; a renewal serves the next connection.
      std::make_shared<Connection>(std::move(socket), state, state->options.tls.context())->Start();
      Accept();
    });
  }

  void Run() {
    // A handler that throws is a bug; log it and keep serving the others.
    for (;;) {
      try {
        ioc->run();
        return;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "tokenfab http: unexpected exception: %s\n", e.what());
      }
    }
  }
};

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(Router* router,
                                                             const HttpServerOptions& options) {
  if (router == nullptr) return absl::InvalidArgumentError("HttpServer needs a router");
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(StrCat("port must be between 0 and 65535, got ", options.port));
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError(StrCat("http threads must be at least 1, got ", options.threads));
  }
  if (options.max_body_bytes == 0) return absl::InvalidArgumentError("max_body_bytes must be positive");

  auto impl = std::make_unique<Impl>();
  impl->state = std::make_shared<ServerState>();
  impl->state->router = router;
  impl->state->options = options;
  impl->state->started_unix = std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  impl->ioc = std::make_unique<net::io_context>(options.threads);
  impl->admission = std::make_unique<net::thread_pool>(options.threads);
  impl->state->admission = impl->admission.get();

  boost::system::error_code ec;
  tcp::endpoint endpoint;
  const net::ip::address address = net::ip::make_address(options.host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, static_cast<unsigned short>(options.port));
  } else {
    tcp::resolver resolver(*impl->ioc);
    auto results = resolver.resolve(options.host, std::to_string(options.port),
                                    tcp::resolver::passive, ec);
    if (ec || results.empty()) {
      return absl::InvalidArgumentError(
          StrCat("cannot resolve host '", options.host, "': ", ec ? ec.message() : "no address"));
    }
    endpoint = results.begin()->endpoint();
  }

  const std::string where = StrCat(options.host, ":", options.port);
  impl->acceptor = std::make_unique<tcp::acceptor>(net::make_strand(*impl->ioc));
  impl->backoff = std::make_unique<net::steady_timer>(impl->acceptor->get_executor());
  auto fail = [&](std::string_view what) {
    return absl::UnavailableError(StrCat("cannot ", what, " ", where, ": ", ec.message()));
  };
  if (impl->acceptor->open(endpoint.protocol(), ec)) return fail("open a socket for");
  if (impl->acceptor->set_option(net::socket_base::reuse_address(true), ec)) {
    return fail("set SO_REUSEADDR on");
  }
  if (impl->acceptor->bind(endpoint, ec)) return fail("bind");
  if (impl->acceptor->listen(net::socket_base::max_listen_connections, ec)) return fail("listen on");
  impl->port = impl->acceptor->local_endpoint(ec).port();
  if (ec) return fail("read the port of");

  impl->Accept();
  Impl* raw = impl.get();
  for (int i = 0; i < options.threads; ++i) raw->threads.emplace_back([raw] { raw->Run(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Shutdown(); }

int HttpServer::port() const { return impl_->port; }

void HttpServer::Shutdown() {
  Impl& s = *impl_;
  {
    absl::MutexLock lock(&s.shutdown_mu);
    if (s.shut_down) return;
    s.shut_down = true;
  }
  // New connections close themselves from now on (Connection::Start).
  std::vector<std::shared_ptr<Connection>> live;
  {
    absl::MutexLock lock(&s.state->mu);
    s.state->stopping = true;
    for (auto& [raw, weak] : s.state->connections) {
      if (auto c = weak.lock()) live.push_back(std::move(c));
    }
  }
  net::post(s.acceptor->get_executor(), [&s] {
    boost::system::error_code ec;
    s.acceptor->close(ec);
    s.backoff->cancel();
  });
  for (const auto& c : live) c->Close();  // cancels their requests
  live.clear();  // outside state->mu: a Connection's destructor takes it
  // With the acceptor and every socket closed the io_context runs out of
  // work and its threads return; a request still being admitted holds work
  // until its result is back (and its connection cancels it).
  for (std::thread& t : s.threads) t.join();
  s.threads.clear();
  s.admission->join();  // nothing posts to it any more
  {
    // From here sinks that the Router still holds drop their responses
    // instead of posting into an io_context that is going away.
    absl::WriterMutexLock lock(&s.state->gate_mu);
    s.state->gate_open = false;
  }
  s.backoff.reset();
  s.acceptor.reset();
  s.ioc.reset();
  s.admission.reset();
}

}  // namespace tokenfab
