// One client connection of HttpServer (internal to server/http/): reads
// HTTP/1.1 requests, answers the OpenAI endpoints through the Router, and
// keeps a read outstanding while a generation runs so a client that goes
// away is noticed and its request cancelled. Over plain TCP, or TLS when the
// server has a certificate: the connection then shakes hands first (within
// kHandshakeTimeout) and everything else is the same code over either stream.
//
// Threading: every member runs on the connection's strand, except Start and
// Close (any thread) and the ResponseSink the Router calls on a worker
// thread, which only posts onto the strand. Parsing a body and
// Router::Generate (chat template, tokenizer: over a second for a body of
// several MiB) run on the server's admission pool, so they never stall the
// io threads that carry every other stream. The sink may outlive the
// connection and the server: it holds the connection weakly and posts only
// while ServerState's gate is open, which Shutdown closes before the
// io_context goes away.
#ifndef TOKENFAB_SERVER_HTTP_HTTP_CONNECTION_H_
#define TOKENFAB_SERVER_HTTP_HTTP_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/thread_pool.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/http.hpp"
#include "boost/beast/ssl/ssl_stream.hpp"
#include "nlohmann/json.hpp"
#include "server/http/http_server.h"
#include "server/http/openai_response.h"
#include "server/router.h"

namespace tokenfab::http_internal {

class Connection;

// What the server shares with its connections and their sinks.
struct ServerState {
  Router* router = nullptr;
  HttpServerOptions options;
  int64_t started_unix = 0;  // the `created` of /v1/models
  // Runs ParseOpenAiRequest + Router::Generate; outlives the io threads.
  boost::asio::thread_pool* admission = nullptr;

  // Sinks post into the io_context only while this is open.
  absl::Mutex gate_mu;
  bool gate_open ABSL_GUARDED_BY(gate_mu) = true;

  absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  absl::flat_hash_map<Connection*, std::weak_ptr<Connection>> connections ABSL_GUARDED_BY(mu);
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // `tls`: the context to shake hands with; null for plain TCP.
  Connection(boost::asio::ip::tcp::socket socket, std::shared_ptr<ServerState> state,
             std::shared_ptr<boost::asio::ssl::context> tls);
  ~Connection();

  // Registers with the server and starts reading. Any thread.
  void Start();
  // Cancels the request in progress and closes the socket. Any thread.
  void Close();

  // A Router response for the request numbered `serial`. Strand only.
  void OnGenerateResponse(uint64_t serial, const v1::GenerateResponse& response);

  const boost::asio::any_io_executor& executor() const { return executor_; }

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  // What the admission pool hands back: the request id, or why there is none.
  struct Admission {
    absl::Status status;
    std::string request_id;
    OpenAiRequest parsed;  // stream, include_usage, logprobs
  };

  using PlainStream = boost::beast::tcp_stream;
  using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

  // Runs `f(stream)` on the stream in use; every read and write goes
  // through here, so one code path serves both.
  template <typename F>
  decltype(auto) WithStream(F&& f) {
    return std::visit(std::forward<F>(f), stream_);
  }
  boost::asio::ip::tcp::socket& socket();

  void Handshake();
  void ReadHeader();
  void OnHeader(boost::beast::error_code ec);
  void ReadBody();
  void OnBody(boost::beast::error_code ec);
  void OnReadError(boost::beast::error_code ec);
  void Handle(Request& request);
  void HandleModels(std::string_view path);
  void StartGeneration(OpenAiEndpoint endpoint, std::string body);
  void OnAdmitted(uint64_t serial, Admission admission);

  void SendJson(int status, const nlohmann::ordered_json& body, int retry_after = 0,
                std::string_view allow = "");
  void SendError(const absl::Status& status);
  void OnResponseWritten(boost::beast::error_code ec);

  void StreamWrite();  // writes what the stream has pending, if no write is in flight
  void OnStreamWritten(boost::beast::error_code ec);

  void Watch();  // reads while a response is in progress; EOF = client gone
  void OnWatch(boost::beast::error_code ec, size_t bytes);
  void NextRequest();
  void ClientGone();
  void CloseNow();
  void CloseGracefully();

  const std::shared_ptr<ServerState> state_;
  const boost::asio::any_io_executor executor_;
  const std::shared_ptr<boost::asio::ssl::context> tls_;  // outlives stream_
  std::variant<PlainStream, TlsStream> stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  boost::asio::steady_timer linger_timer_;

  bool reading_ = false;   // a request read is in flight
  bool watching_ = false;  // a watch (or drain) read is in flight
  bool busy_ = false;      // a response is in progress (generating or being written)
  bool closing_ = false;   // sent the last response; draining before close
  bool closed_ = false;
  bool keep_alive_ = false;
  unsigned version_ = 11;

  // The generation in progress.
  uint64_t serial_ = 0;  // numbers requests, so a late response of an old one is ignored
  std::string request_id_;
  bool generating_ = false;      // a Router request is running (no final response yet)
  bool admitting_ = false;       // ...and the admission pool has not yet said its id
  std::vector<v1::GenerateResponse> early_;  // responses that beat OnAdmitted here
  std::optional<OpenAiStreamEncoder> encoder_;     // streamed
  std::optional<OpenAiResponseBuilder> builder_;   // not streamed

  // A streamed response's writes: one in flight, the rest gathered.
  std::optional<boost::beast::http::response<boost::beast::http::empty_body>> stream_header_;
  std::optional<boost::beast::http::response_serializer<boost::beast::http::empty_body>>
      stream_serializer_;
  bool chunked_ = true;
  bool header_written_ = false;
  bool write_in_flight_ = false;
  bool stream_done_ = false;       // the last event is in pending_ or written
  bool last_chunk_written_ = false;
  bool close_after_stream_ = false;
  std::string pending_;
  std::string writing_;
};

}  // namespace tokenfab::http_internal

#endif  // TOKENFAB_SERVER_HTTP_HTTP_CONNECTION_H_
