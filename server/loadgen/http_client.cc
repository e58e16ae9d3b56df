#include "server/loadgen/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <variant>

#include "common/status_macros.h"
#include "common/strings.h"
#include "server/loadgen/openai_stream.h"

namespace tokenfab::loadgen {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

constexpr size_t kMaxErrorBody = 2048;
constexpr size_t kReadBuffer = 16 * 1024;

absl::Status NetError(std::string_view what, const beast::error_code& ec) {
  return absl::UnavailableError(StrCat(what, ": ", ec.message()));
}

class HttpLoadClient : public LoadClient {
 public:
  HttpLoadClient(const Target& target, const ClientOptions& options,
                 std::shared_ptr<net::ssl::context> tls)
      : target_(target), options_(options), tls_(std::move(tls)) {
    const bool v6 = target.host.find(':') != std::string::npos;
    host_header_ = StrCat(v6 ? "[" : "", target.host, v6 ? "]" : "", ":", target.port);
  }

  RequestRecord Send(const LoadRequest& request, Clock::time_point origin) override {
    RequestRecord record;
    absl::Status status = Stream(request, origin, &record);
    record.done_s = SecondsSince(origin);
    if (record.start_s == 0) record.start_s = record.done_s;
    record.ok = status.ok();
    if (!status.ok()) record.error = std::string(status.message());
    return record;
  }

  absl::StatusOr<std::string> ServedModelId() override {
    net::io_context ioc;
    ASSIGN_OR_RETURN(Connection connection, Connect(ioc));
    return std::visit([&](auto& stream) { return ModelsOn(stream); }, connection);
  }

 private:
  using TlsStream = beast::ssl_stream<beast::tcp_stream>;
  using Connection = std::variant<beast::tcp_stream, TlsStream>;

  // A connected stream, its TLS handshake done (the server's certificate
  // checked against the target's host name).
  absl::StatusOr<Connection> Connect(net::io_context& ioc) {
    tcp::resolver resolver(ioc);
    beast::error_code ec;
    auto endpoints = resolver.resolve(target_.host, std::to_string(target_.port), ec);
    if (ec) return NetError(StrCat("resolve ", target_.host), ec);
    beast::tcp_stream tcp_stream(ioc);
    tcp_stream.connect(endpoints, ec);
    if (ec) return NetError(StrCat("connect ", host_header_), ec);
    tcp_stream.socket().set_option(tcp::no_delay(true), ec);
    if (tls_ == nullptr) return Connection(std::move(tcp_stream));
    Connection connection(std::in_place_type<TlsStream>, std::move(tcp_stream), *tls_);
    TlsStream& stream = std::get<TlsStream>(connection);
    // SNI, and the name the certificate must carry.
    if (!SSL_set_tlsext_host_name(stream.native_handle(), target_.host.c_str())) {
      return absl::InternalError("cannot set the TLS server name");
    }
    stream.set_verify_callback(net::ssl::host_name_verification(target_.host));
    stream.handshake(net::ssl::stream_base::client, ec);
    if (ec) return NetError(StrCat("TLS handshake with ", host_header_), ec);
    return connection;
  }

  template <typename Stream>
  absl::StatusOr<std::string> ModelsOn(Stream& stream) {
    http::request<http::empty_body> req{http::verb::get, "/v1/models", 11};
    req.set(http::field::host, host_header_);
    SetAuthorization(req);
    beast::error_code ec;
    http::write(stream, req, ec);
    if (ec) return NetError("GET /v1/models", ec);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res, ec);
    if (ec) return NetError("GET /v1/models", ec);
    if (res.result_int() != 200) {
      return absl::UnavailableError(StrCat("GET /v1/models: HTTP ", res.result_int(), ": ",
                                           res.body().substr(0, kMaxErrorBody)));
    }
    return FirstModelId(res.body());
  }

  // The connection is made before the clock starts, as a client with a warm
  // connection pool (aiperf's aiohttp) would have it.
  absl::Status Stream(const LoadRequest& request, Clock::time_point origin, RequestRecord* record) {
    absl::StatusOr<std::string> body = CompletionRequestBody(
        request.model_id, request.prompt, request.max_tokens, options_.extra_body_json);
    if (!body.ok()) return body.status();
    net::io_context ioc;
    ASSIGN_OR_RETURN(Connection connection, Connect(ioc));
    return std::visit(
        [&](auto& stream) { return StreamOn(stream, std::move(*body), origin, record); },
        connection);
  }

  template <typename Stream>
  absl::Status StreamOn(Stream& stream, std::string body, Clock::time_point origin,
                        RequestRecord* record) {
    http::request<http::string_body> req{http::verb::post, "/v1/completions", 11};
    req.set(http::field::host, host_header_);
    SetAuthorization(req);
    req.set(http::field::content_type, "application/json");
    req.set(http::field::accept, "text/event-stream");
    req.body() = std::move(body);
    req.prepare_payload();

    beast::error_code ec;
    record->start_s = SecondsSince(origin);
    http::write(stream, req, ec);
    if (ec) return NetError("send", ec);

    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    http::read_header(stream, buffer, parser, ec);
    if (ec) return NetError("read response header", ec);
    const unsigned code = parser.get().result_int();

    char buf[kReadBuffer];
    SseParser sse;
    std::string error_body;
    bool done = false;
    bool finished = false;  // a chunk carried a finish_reason
    while (!parser.is_done()) {
      parser.get().body().data = buf;
      parser.get().body().size = sizeof(buf);
      http::read_some(stream, buffer, parser, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return NetError("read stream", ec);
      const size_t n = sizeof(buf) - parser.get().body().size;
      if (n == 0) continue;
      const double now = SecondsSince(origin);
      if (code != 200) {
        error_body.append(buf,
                          std::min(n, kMaxErrorBody - std::min(kMaxErrorBody, error_body.size())));
        continue;
      }
      for (const std::string& data : sse.Feed(std::string_view(buf, n))) {
        absl::StatusOr<CompletionChunk> chunk = ParseCompletionChunk(data);
        if (!chunk.ok()) return chunk.status();
        if (chunk->done) {
          done = true;
          continue;
        }
        if (!chunk->text.empty()) record->chunk_times_s.push_back(now);
        if (!chunk->finish_reason.empty()) finished = true;
        if (chunk->completion_tokens >= 0) {
          record->prompt_tokens = chunk->prompt_tokens;
          record->completion_tokens = chunk->completion_tokens;
        }
      }
    }
    if (code != 200) return absl::UnavailableError(StrCat("HTTP ", code, ": ", error_body));
    if (!done && !finished) {
      return absl::DataLossError("stream ended without a finish_reason or [DONE]");
    }
    beast::error_code ignored;
    beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
    return absl::OkStatus();
  }

  const Target target_;
  template <typename Request>
  void SetAuthorization(Request& req) const {
    if (!options_.api_key.open())
      req.set(http::field::authorization, StrCat("Bearer ", options_.api_key.first()));
  }

  const ClientOptions options_;
  const std::shared_ptr<net::ssl::context> tls_;  // null: plain HTTP
  std::string host_header_;
};

}  // namespace

std::unique_ptr<LoadClient> NewHttpLoadClient(const Target& target, const ClientOptions& options,
                                              std::shared_ptr<net::ssl::context> tls) {
  return std::make_unique<HttpLoadClient>(target, options, std::move(tls));
}

}  // namespace tokenfab::loadgen
