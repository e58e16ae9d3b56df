#include "server/http/http_connection.h"

#include <chrono>
#include <exception>
#include <utility>

#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/write.hpp"
#include "common/strings.h"
#include "server/http/http_error.h"
#include "server/http/openai_request.h"

namespace tokenfab::http_internal {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
using Json = nlohmann::ordered_json;

constexpr uint32_t kHeaderLimit = 64 * 1024;
constexpr size_t kWatchReadBytes = 4096;
// Bytes a client may send ahead (pipelining) while a response is pending;
// past this the connection stops reading until the response is done.
constexpr size_t kMaxReadAhead = 64 * 1024;
// How long a closing connection reads what the client still sends, so the
// close does not reset the connection before the client has read the answer.
constexpr auto kLinger = std::chrono::seconds(2);
// How long a TLS client has to finish its handshake.
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);

int64_t NowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The Router's way back to a connection; see http_connection.h.
class ConnectionSink : public ResponseSink {
 public:
  ConnectionSink(std::shared_ptr<ServerState> state, std::weak_ptr<Connection> connection,
                 uint64_t serial)
      : state_(std::move(state)), connection_(std::move(connection)), serial_(serial) {}

  void OnResponse(const v1::GenerateResponse& response) override {
    absl::ReaderMutexLock lock(&state_->gate_mu);
    if (!state_->gate_open) return;
    std::shared_ptr<Connection> c = connection_.lock();
    if (c == nullptr) return;
    net::post(c->executor(),
              [c, serial = serial_, response] { c->OnGenerateResponse(serial, response); });
  }

 private:
  const std::shared_ptr<ServerState> state_;
  const std::weak_ptr<Connection> connection_;
  const uint64_t serial_;
};

}  // namespace

Connection::Connection(net::ip::tcp::socket socket, std::shared_ptr<ServerState> state,
                       std::shared_ptr<net::ssl::context> tls)
    : state_(std::move(state)),
      executor_(socket.get_executor()),
      tls_(std::move(tls)),
      stream_([&]() -> std::variant<PlainStream, TlsStream> {
        if (tls_)
          return std::variant<PlainStream, TlsStream>(std::in_place_type<TlsStream>,
                                                      std::move(socket), *tls_);
        return std::variant<PlainStream, TlsStream>(std::in_place_type<PlainStream>,
                                                    std::move(socket));
      }()),
      linger_timer_(executor_) {}

net::ip::tcp::socket& Connection::socket() {
  return WithStream(
      [](auto& s) -> net::ip::tcp::socket& { return beast::get_lowest_layer(s).socket(); });
}

Connection::~Connection() {
  // Only reached with a request running when the io_context is destroyed
  // with this connection's handlers still queued.
  if (generating_ && !admitting_) state_->router->Cancel(request_id_);
  absl::MutexLock lock(&state_->mu);
  state_->connections.erase(this);
}

void Connection::Start() {
  {
    absl::MutexLock lock(&state_->mu);
    if (state_->stopping) {
      beast::error_code ec;
      socket().close(ec);
      return;
    }
    state_->connections[this] = weak_from_this();
  }
  beast::error_code ec;
  socket().set_option(net::ip::tcp::no_delay(true), ec);  // tokens leave at once
  net::dispatch(executor_, [self = shared_from_this()] {
    if (self->tls_) return self->Handshake();
    self->ReadHeader();
  });
}

void Connection::Handshake() {
  auto& s = std::get<TlsStream>(stream_);
  beast::get_lowest_layer(s).expires_after(kHandshakeTimeout);
  reading_ = true;
  s.async_handshake(net::ssl::stream_base::server,
                    [self = shared_from_this()](beast::error_code ec) {
                      self->reading_ = false;
                      if (self->closed_) return;
                      beast::get_lowest_layer(std::get<TlsStream>(self->stream_)).expires_never();
                      // Plain HTTP on this port, a client that does not trust the
                      // certificate, or one too slow: there is nothing to answer it with.
                      if (ec) return self->CloseNow();
                      self->ReadHeader();
                    });
}

void Connection::Close() {
  net::post(executor_, [self = shared_from_this()] { self->CloseNow(); });
}

void Connection::ReadHeader() {
  if (closed_ || closing_) return;
  reading_ = true;
  parser_.emplace();
  parser_->header_limit(kHeaderLimit);
  parser_->body_limit(state_->options.max_body_bytes);
  WithStream([&](auto& s) {
    http::async_read_header(
        s, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  });
}

void Connection::OnHeader(beast::error_code ec) {
  reading_ = false;
  if (closed_) return;
  if (ec) return OnReadError(ec);
  // curl waits a second for "100 Continue" before sending a large body.
  const auto expect = parser_->get()[http::field::expect];
  if (beast::iequals(expect, "100-continue")) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    reading_ = true;
    WithStream([&](auto& s) {
      net::async_write(s, net::buffer(kContinue.data(), kContinue.size()),
                       [self = shared_from_this()](beast::error_code ec, size_t) {
                         self->reading_ = false;
                         if (self->closed_) return;
                         if (ec) return self->CloseNow();
                         self->ReadBody();
                       });
    });
    return;
  }
  ReadBody();
}

void Connection::ReadBody() {
  reading_ = true;
  WithStream([&](auto& s) {
    http::async_read(
        s, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
  });
}

void Connection::OnBody(beast::error_code ec) {
  reading_ = false;
  if (closed_) return;
  if (ec) return OnReadError(ec);
  Request request = parser_->release();
  parser_.reset();
  try {
    Handle(request);  // may move the body out
  } catch (const std::exception& e) {
    // A bug, not the client's fault; the connection stays usable.
    if (!busy_)
      SendJson(500, MakeHttpError(500, "server_error", StrCat("internal error: ", e.what())).body);
  }
}

void Connection::OnReadError(beast::error_code ec) {
  keep_alive_ = false;
  version_ = 11;
  if (ec == http::error::body_limit) {
    SendJson(413, MakeHttpError(413, "invalid_request_error",
                                StrCat("the request body is larger than ",
                                       state_->options.max_body_bytes, " bytes"))
                      .body);
  } else if (ec == http::error::header_limit) {
    SendJson(431,
             MakeHttpError(431, "invalid_request_error", "the request headers are too large").body);
  } else if (ec.category() == beast::error_code(http::error::bad_target).category() &&
             ec != http::error::end_of_stream && ec != http::error::partial_message) {
    SendJson(400, MakeHttpError(400, "invalid_request_error",
                                StrCat("malformed HTTP request: ", ec.message()))
                      .body);
  } else {
    CloseNow();  // the client closed or the connection failed
  }
}

void Connection::Handle(Request& request) {
  keep_alive_ = request.keep_alive();
  version_ = request.version();
  const std::string_view target = request.target();
  const std::string_view path = target.substr(0, target.find('?'));
  const http::verb method = request.method();
  const std::string_view method_name(request.method_string().data(),
                                     request.method_string().size());
  auto not_allowed = [&](std::string_view allow) {
    SendJson(
        405,
        MakeHttpError(405, "invalid_request_error",
                      StrCat("method ", method_name, " is not allowed on ", path, "; use ", allow))
            .body,
        0, allow);
  };
  if (path == "/health") {
    if (method != http::verb::get) return not_allowed("GET");
    if (!state_->router->Ready()) {
      return SendJson(503,
                      Json{{"status", "unavailable"}, {"reason", "no decode worker is attached"}});
    }
    return SendJson(200, Json{{"status", "ok"}});
  }
  if (path == "/live") {  // the HTTP twin of gRPC's "liveness" service (health.h)
    if (method != http::verb::get) return not_allowed("GET");
    return SendJson(200, Json{{"status", "ok"}});
  }
  // Everything under /v1/ needs an API key when the server has any.
  if (path.starts_with("/v1/")) {
    switch (state_->options.api_keys.Check(request[http::field::authorization])) {
      case KeyCheck::kAdmitted:
        break;
      case KeyCheck::kMissing:
        return SendError(absl::UnauthenticatedError(
            "missing API key: send the header 'Authorization: Bearer <key>'"));
      case KeyCheck::kInvalid:
        return SendError(absl::UnauthenticatedError("invalid API key"));
    }
  }
  if (path == "/v1/models" || path.starts_with("/v1/models/")) {
    if (method != http::verb::get) return not_allowed("GET");
    return HandleModels(path);
  }
  if (auto route = state_->options.json_routes.find(std::string(path));
      route != state_->options.json_routes.end()) {
    if (method != http::verb::get) return not_allowed("GET");
    return SendJson(200, Json::parse(route->second()));
  }
  if (path == "/v1/completions" || path == "/v1/chat/completions") {
    if (method != http::verb::post) return not_allowed("POST");
    return StartGeneration(
        path == "/v1/completions" ? OpenAiEndpoint::kCompletions : OpenAiEndpoint::kChatCompletions,
        std::move(request.body()));
  }
  SendJson(404,
           MakeHttpError(404, "invalid_request_error", StrCat("no such endpoint: ", path)).body);
}

void Connection::HandleModels(std::string_view path) {
  Json data = Json::array();
  const v1::ListModelsResponse models = state_->router->ListModels();
  for (const v1::ModelInfo& m : models.models()) {
    data.push_back(Json{{"id", m.id()},
                        {"object", "model"},
                        {"created", state_->started_unix},
                        {"owned_by", "tokenfab"},
                        {"max_model_len", m.context_length()}});  // as vLLM reports it
  }
  if (path == "/v1/models")
    return SendJson(200, Json{{"object", "list"}, {"data", std::move(data)}});
  const std::string_view id = path.substr(std::string_view("/v1/models/").size());
  for (const Json& m : data) {
    if (m["id"].get<std::string>() == id) return SendJson(200, m);
  }
  SendJson(404,
           MakeHttpError(404, "invalid_request_error",
                         StrCat("the model '", id, "' does not exist"), "model", "model_not_found")
               .body);
}

void Connection::StartGeneration(OpenAiEndpoint endpoint, std::string body) {
  ++serial_;
  busy_ = true;
  generating_ = true;
  admitting_ = true;
  request_id_.clear();
  early_.clear();
  encoder_.reset();
  builder_.reset();
  // Holds the io_context's work until the result is posted back, so the io
  // threads cannot run out of work (and Shutdown finish) while a request is
  // being admitted; Shutdown relies on that to cancel it.
  net::any_io_executor work = net::prefer(executor_, net::execution::outstanding_work.tracked);
  net::post(*state_->admission, [state = state_, weak = weak_from_this(), serial = serial_,
                                 endpoint, body = std::move(body),
                                 work = std::move(work)]() mutable {
    Admission a;
    try {
      absl::StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(endpoint, body);
      if (parsed.ok()) {
        auto sink = std::make_shared<ConnectionSink>(state, weak, serial);
        absl::StatusOr<std::string> id = state->router->Generate(parsed->request, std::move(sink));
        if (id.ok()) {
          a.request_id = *std::move(id);
          a.parsed = *std::move(parsed);
        } else {
          a.status = id.status();
        }
      } else {
        a.status = parsed.status();
      }
    } catch (const std::exception& e) {
      a.status = absl::InternalError(StrCat("internal error: ", e.what()));
    }
    std::shared_ptr<Connection> self = weak.lock();
    if (self == nullptr) {
      // Cannot happen while the watch read holds the connection; be safe.
      if (a.status.ok()) state->router->Cancel(a.request_id);
      return;
    }
    net::post(work, [self, serial, a = std::move(a)]() mutable {
      self->OnAdmitted(serial, std::move(a));
    });
  });
  Watch();  // a client that leaves while its request is admitted is noticed too
}

void Connection::OnAdmitted(uint64_t serial, Admission a) {
  if (serial != serial_) return;
  admitting_ = false;
  if (closed_) {
    if (a.status.ok()) state_->router->Cancel(a.request_id);
    generating_ = false;
    return;
  }
  if (!a.status.ok()) {
    generating_ = false;
    early_.clear();
    return SendError(a.status);
  }
  request_id_ = a.request_id;
  const OpenAiEndpoint endpoint = a.parsed.endpoint;
  ResponseContext context{.endpoint = endpoint,
                          .id = ResponseId(endpoint, request_id_),
                          .created = NowUnix(),
                          .model = state_->router->model_id(),
                          .logprobs = a.parsed.logprobs,
                          .include_usage = a.parsed.include_usage};
  if (a.parsed.stream) {
    encoder_.emplace(std::move(context));
    chunked_ = version_ >= 11;  // HTTP/1.0 has no chunks: the close ends the stream
    if (!chunked_) keep_alive_ = false;
    stream_header_.emplace(http::status::ok, version_);
    stream_header_->set(http::field::server, "tokenfab");
    stream_header_->set(http::field::content_type, "text/event-stream");
    stream_header_->set(http::field::cache_control, "no-cache");
    stream_header_->keep_alive(keep_alive_);
    if (chunked_) stream_header_->chunked(true);
    stream_serializer_.emplace(*stream_header_);
    header_written_ = false;
    stream_done_ = false;
    last_chunk_written_ = false;
    close_after_stream_ = false;
    pending_ = encoder_->Begin();
    StreamWrite();
  } else {
    builder_.emplace(std::move(context));
  }
  std::vector<v1::GenerateResponse> early = std::move(early_);
  early_.clear();
  for (const v1::GenerateResponse& r : early) OnGenerateResponse(serial, r);
}

void Connection::OnGenerateResponse(uint64_t serial, const v1::GenerateResponse& response) {
  if (closed_ || serial != serial_ || !generating_) return;
  if (admitting_) {
    early_.push_back(response);
    return;
  }
  const v1::FinishReason reason = response.finish_reason();
  const bool final = reason != v1::FINISH_REASON_UNSPECIFIED;
  if (final) generating_ = false;
  if (encoder_.has_value()) {
    pending_ += encoder_->Encode(response);
    if (final) {
      stream_done_ = true;
      // A cancelled stream just ends; with no [DONE] the connection is not reused.
      close_after_stream_ = reason == v1::FINISH_REASON_CANCELLED;
    }
    return StreamWrite();
  }
  builder_->Add(response);
  if (!final) return;
  if (reason == v1::FINISH_REASON_CANCELLED) {
    return SendJson(503, MakeHttpError(503, "server_error", "the request was cancelled", "",
                                       "service_unavailable")
                             .body);
  }
  if (reason == v1::FINISH_REASON_ERROR) {
    return SendJson(500,
                    MakeHttpError(500, "server_error", "the worker failed while generating").body);
  }
  SendJson(200, builder_->Build());
}

void Connection::SendJson(int status, const Json& body, int retry_after, std::string_view allow) {
  if (closed_) return;
  busy_ = true;
  auto response = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(status), version_);
  response->set(http::field::server, "tokenfab");
  response->set(http::field::content_type, "application/json");
  if (retry_after > 0) response->set(http::field::retry_after, std::to_string(retry_after));
  if (!allow.empty()) response->set(http::field::allow, allow);
  if (status == 401) response->set(http::field::www_authenticate, "Bearer");
  response->keep_alive(keep_alive_);
  response->body() = DumpJson(body);
  response->prepare_payload();
  WithStream([&](auto& s) {
    http::async_write(s, *response,
                      [self = shared_from_this(), response](beast::error_code ec, size_t) {
                        self->OnResponseWritten(ec);
                      });
  });
}

void Connection::SendError(const absl::Status& status) {
  const HttpError error = HttpErrorFromStatus(status);
  SendJson(error.status, error.body,
           error.status == 429 ? std::max(1, state_->router->retry_after_seconds()) : 0);
}

void Connection::OnResponseWritten(beast::error_code ec) {
  busy_ = false;
  if (closed_) return;
  if (ec) return CloseNow();
  if (!keep_alive_) return CloseGracefully();
  NextRequest();
}

void Connection::StreamWrite() {
  if (closed_ || write_in_flight_) return;
  auto done = [self = shared_from_this()](beast::error_code ec, size_t) {
    self->OnStreamWritten(ec);
  };
  if (!header_written_) {
    write_in_flight_ = true;
    header_written_ = true;
    WithStream([&](auto& s) { http::async_write_header(s, *stream_serializer_, std::move(done)); });
    return;
  }
  if (!pending_.empty()) {
    // Everything gathered since the last write goes as one chunk, so a slow
    // client gets fewer, larger writes instead of a growing queue.
    writing_.swap(pending_);
    pending_.clear();
    write_in_flight_ = true;
    WithStream([&](auto& s) {
      if (chunked_) {
        net::async_write(s, http::make_chunk(net::buffer(writing_)), std::move(done));
      } else {
        net::async_write(s, net::buffer(writing_), std::move(done));
      }
    });
    return;
  }
  if (!stream_done_) return;
  if (chunked_ && !last_chunk_written_) {
    last_chunk_written_ = true;
    write_in_flight_ = true;
    WithStream([&](auto& s) { net::async_write(s, http::make_chunk_last(), std::move(done)); });
    return;
  }
  // The stream is complete.
  busy_ = false;
  encoder_.reset();
  if (keep_alive_ && !close_after_stream_) return NextRequest();
  CloseGracefully();
}

void Connection::OnStreamWritten(beast::error_code ec) {
  write_in_flight_ = false;
  if (closed_) return;
  if (ec) return ClientGone();
  StreamWrite();
}

void Connection::Watch() {
  if (closed_ || watching_ || reading_) return;
  if (!closing_ && buffer_.size() >= kMaxReadAhead) return;  // resumes with the next request
  if (closing_) buffer_.clear();
  watching_ = true;
  WithStream([&](auto& s) {
    s.async_read_some(buffer_.prepare(kWatchReadBytes),
                      [self = shared_from_this()](beast::error_code ec, size_t bytes) {
                        self->OnWatch(ec, bytes);
                      });
  });
}

void Connection::OnWatch(beast::error_code ec, size_t bytes) {
  watching_ = false;
  if (closed_) return;
  if (ec == net::error::operation_aborted && !busy_ && !closing_) return ReadHeader();
  if (ec) {
    // EOF or a reset while the answer is pending: the client is gone.
    return busy_ ? ClientGone() : CloseNow();
  }
  buffer_.commit(bytes);
  if (busy_ || closing_) return Watch();
  ReadHeader();  // the bytes begin the next request
}

void Connection::NextRequest() {
  if (closed_) return;
  if (!watching_) return ReadHeader();
  // The watch read must end before the request read starts: a pipelined
  // request may already wait in buffer_ while the client sends nothing more.
  // Its handler sees operation_aborted and starts ReadHeader.
  WithStream([](auto& s) { beast::get_lowest_layer(s).cancel(); });
}

void Connection::ClientGone() {
  // While admitting there is no id yet; OnAdmitted cancels it then.
  if (generating_ && !admitting_) state_->router->Cancel(request_id_);
  generating_ = false;
  CloseNow();
}

void Connection::CloseGracefully() {
  if (closed_ || closing_) return;
  closing_ = true;
  beast::error_code ec;
  // Over TLS too, a plain TCP half-close (no close_notify): every response
  // is framed by its length or its last chunk, so nothing reads as cut off.
  socket().shutdown(net::ip::tcp::socket::shutdown_send, ec);
  linger_timer_.expires_after(kLinger);
  linger_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec) self->CloseNow();
  });
  Watch();  // drains until the client closes too
}

void Connection::CloseNow() {
  if (closed_) return;
  closed_ = true;
  if (generating_ && !admitting_) state_->router->Cancel(request_id_);
  generating_ = false;
  linger_timer_.cancel();
  beast::error_code ec;
  socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
  socket().close(ec);
}

}  // namespace tokenfab::http_internal
