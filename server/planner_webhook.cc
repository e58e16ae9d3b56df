#include "server/planner_webhook.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <climits>
#include <cmath>
#include <cstdio>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/strings.h"

namespace tokenfab {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr char kFlag[] = "--planner-webhook";
constexpr double kMaxJitter = 0.2;
// Past the attempt's deadline, how long the sender waits for a name lookup
// (which the stream's timer does not cover) before calling the attempt lost.
constexpr std::chrono::milliseconds kResolveGrace{100};

absl::Status BadUrl(std::string_view url, std::string_view why) {
  return absl::InvalidArgumentError(
      StrCat(kFlag, ": ", why, " (want http://HOST[:PORT][/PATH], got \"", url, "\")"));
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// One POST on its own connection, driven by the caller's io_context: the
// sender thread runs it to completion, and the destructor of PlannerWebhook
// stops it from outside. Connect, send and read share one deadline on the
// stream; the answer's body is not read, only its status line and headers.
class HttpPost {
 public:
  HttpPost(net::io_context& io, const http::request<http::string_body>& request)
      : resolver_(io), stream_(io), request_(request) {}

  void Start(const std::string& host, uint16_t port, Clock::time_point deadline) {
    deadline_ = deadline;
    beast::error_code ec;
    const net::ip::address address = net::ip::make_address(host, ec);
    if (!ec) {
      Connect(tcp::endpoint(address, port));
      return;
    }
    resolver_.async_resolve(
        host, std::to_string(port),
        [this, host](const beast::error_code& ec, const tcp::resolver::results_type& results) {
          if (ec) return Fail(StrCat("resolve ", host), ec);
          stream_.expires_at(deadline_);
          stream_.async_connect(results, [this](const beast::error_code& ec, const tcp::endpoint&) {
            OnConnect(ec);
          });
        });
  }

  bool done() const { return done_; }
  const absl::Status& result() const { return result_; }

 private:
  void Connect(const tcp::endpoint& endpoint) {
    stream_.expires_at(deadline_);
    stream_.async_connect(endpoint, [this](const beast::error_code& ec) { OnConnect(ec); });
  }

  void OnConnect(const beast::error_code& ec) {
    if (ec) return Fail("connect", ec);
    http::async_write(stream_, request_,
                      [this](const beast::error_code& ec, size_t) { OnWrite(ec); });
  }

  void OnWrite(const beast::error_code& ec) {
    if (ec) return Fail("send", ec);
    http::async_read_header(stream_, buffer_, parser_,
                            [this](const beast::error_code& ec, size_t) { OnRead(ec); });
  }

  void OnRead(const beast::error_code& ec) {
    if (ec) return Fail("read answer", ec);
    const auto& answer = parser_.get();
    const unsigned code = answer.result_int();
    if (code >= 200 && code < 300) {
      result_ = absl::OkStatus();
    } else {
      result_ = absl::UnavailableError(StrCat(
          "HTTP ", code, " ", std::string_view(answer.reason().data(), answer.reason().size())));
    }
    done_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }

  void Fail(std::string_view what, const beast::error_code& ec) {
    done_ = true;
    if (ec == beast::error::timeout) {
      result_ = absl::DeadlineExceededError(StrCat(what, ": timed out"));
    } else {
      result_ = absl::UnavailableError(StrCat(what, ": ", ec.message()));
    }
  }

  tcp::resolver resolver_;
  beast::tcp_stream stream_;
  const http::request<http::string_body>& request_;
  beast::flat_buffer buffer_;
  http::response_parser<http::empty_body> parser_;
  Clock::time_point deadline_;
  bool done_ = false;
  absl::Status result_ = absl::DeadlineExceededError("timed out");
};

}  // namespace

std::string HmacSha256Hex(std::string_view key, std::string_view message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  // OpenSSL wants a non-null key pointer even for an empty key.
  static const unsigned char kEmpty = 0;
  const void* key_data = key.empty() ? static_cast<const void*>(&kEmpty) : key.data();
  if (key.size() > static_cast<size_t>(INT_MAX) ||
      HMAC(EVP_sha256(), key_data, static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac,
           &mac_len) == nullptr) {
    return "";
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(2 * mac_len, '0');
  for (unsigned int i = 0; i < mac_len; ++i) {
    hex[2 * i] = kHex[mac[i] >> 4];
    hex[2 * i + 1] = kHex[mac[i] & 0xf];
  }
  return hex;
}

std::chrono::milliseconds WebhookRetryDelay(const WebhookOptions& options, int32_t failed_attempts,
                                            double jitter) {
  const double cap = static_cast<double>(options.max_backoff.count());
  // Doubles are exact up to 2^53 and saturate beyond, so no overflow.
  const double base = std::min(cap, std::ldexp(static_cast<double>(options.initial_backoff.count()),
                                               std::clamp(failed_attempts - 1, 0, 62)));
  jitter = std::clamp(jitter, 0.0, 1.0);
  return std::chrono::milliseconds(std::llround(base * (1.0 + kMaxJitter * jitter)));
}

absl::StatusOr<std::unique_ptr<PlannerWebhook>> PlannerWebhook::Create(WebhookOptions options) {
  const std::string_view url = options.url;
  if (url.empty()) return BadUrl(url, "empty URL");
  // The target goes into the request line: nothing there may break it.
  if (std::any_of(url.begin(), url.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; })) {
    return BadUrl(url, "spaces or control characters in the URL");
  }
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return BadUrl(url, "no scheme");
  std::string scheme(url.substr(0, scheme_end));
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme == "https") {
    return absl::InvalidArgumentError(StrCat(kFlag, ": https is not supported (\"", url,
                                             "\"); use a sidecar/ingress for TLS and give its "
                                             "http:// URL here"));
  }
  if (scheme != "http") return BadUrl(url, StrCat("scheme \"", scheme, "\" is not http"));

  const std::string_view rest = url.substr(scheme_end + 3);
  const size_t authority_end = std::min(rest.find_first_of("/?#"), rest.size());
  const std::string_view authority = rest.substr(0, authority_end);
  std::string_view tail = rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos) {
    return BadUrl(url, "credentials in the URL are not supported; set the webhook secret instead");
  }
  Endpoint endpoint;
  std::string_view host;
  std::optional<std::string_view> port;
  bool v6 = false;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return BadUrl(url, "unclosed '[' in the host");
    host = authority.substr(1, close - 1);
    v6 = true;
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return BadUrl(url, "junk after the IPv6 host");
      port = after.substr(1);
    }
  } else {
    const size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (host.empty()) return BadUrl(url, "no host");
  if (port.has_value()) {
    if (!AllDigits(*port) || port->size() > 5) return BadUrl(url, "port must be 1..65535");
    const int value = std::stoi(std::string(*port));
    if (value < 1 || value > 65535) return BadUrl(url, "port must be 1..65535");
    endpoint.port = static_cast<uint16_t>(value);
  }
  endpoint.host = std::string(host);
  endpoint.host_header = StrCat(v6 ? "[" : "", host, v6 ? "]" : "");
  if (endpoint.port != 80) StrAppend(&endpoint.host_header, ":", endpoint.port);
  tail = tail.substr(0, tail.find('#'));  // a fragment is the client's, never sent
  endpoint.target = tail.empty() ? "/" : StrCat(tail.front() == '?' ? "/" : "", tail);

  if (options.max_attempts < 1) {
    return absl::InvalidArgumentError(
        StrCat("planner webhook: max_attempts must be >= 1, got ", options.max_attempts));
  }
  if (options.initial_backoff.count() < 0 || options.max_backoff.count() < 0) {
    return absl::InvalidArgumentError("planner webhook: backoffs must not be negative");
  }
  if (options.timeout.count() <= 0) {
    return absl::InvalidArgumentError("planner webhook: the timeout must be positive");
  }
  return std::unique_ptr<PlannerWebhook>(
      new PlannerWebhook(std::move(options), std::move(endpoint)));
}

PlannerWebhook::PlannerWebhook(WebhookOptions options, Endpoint endpoint)
    : options_(std::move(options)),
      endpoint_(std::move(endpoint)),
      jitter_rng_(std::random_device{}()) {
  thread_ = std::thread([this] { Run(); });
}

PlannerWebhook::~PlannerWebhook() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    // A stopped io_context stays stopped, so a POST about to start returns at once too.
    if (attempt_io_ != nullptr) attempt_io_->stop();
  }
  thread_.join();
}

void PlannerWebhook::Publish(std::string json_body) {
  absl::MutexLock lock(&mu_);
  if (next_.has_value()) ++stats_.superseded;
  next_ = Decision{next_id_++, std::move(json_body)};
}

WebhookStats PlannerWebhook::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void PlannerWebhook::Run() {
  while (true) {
    Decision decision;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &PlannerWebhook::StoppingOrNewer));
      if (stop_) return;
      decision = std::move(*next_);
      next_.reset();
    }
    if (!Deliver(decision)) return;
  }
}

bool PlannerWebhook::Deliver(const Decision& decision) {
  for (int32_t attempt = 1;; ++attempt) {
    const absl::Status status = Attempt(decision);
    std::string log;
    bool retry = false;
    std::chrono::milliseconds delay{0};
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return false;
      if (!status.ok()) ++stats_.failed_attempts;
      if (status.ok()) {
        ++stats_.delivered;
      } else if (next_.has_value()) {
        ++stats_.superseded;  // the newer decision goes out at once instead
      } else if (attempt >= options_.max_attempts) {
        ++stats_.dropped;
        log = StrCat("giving up on decision ", decision.id, " after ", attempt,
                     attempt == 1 ? " attempt (" : " attempts (", status.message(), ")");
      } else {
        retry = true;
        delay = WebhookRetryDelay(options_, attempt,
                                  std::uniform_real_distribution<double>(0, 1)(jitter_rng_));
        if (attempt == 1) {  // one line per decision, not per attempt
          log = StrCat("decision ", decision.id, " not delivered (", status.message(),
                       "); retrying up to ", options_.max_attempts - 1, " times");
        }
      }
    }
    if (!log.empty()) {
      std::fprintf(stderr, "tokenfab router: planner webhook %s: %s\n", options_.url.c_str(),
                   log.c_str());
    }
    if (!retry) return true;
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &PlannerWebhook::StoppingOrNewer),
                         absl::FromChrono(delay));
    if (stop_) return false;
    if (next_.has_value()) {
      ++stats_.superseded;
      return true;
    }
  }
}

absl::Status PlannerWebhook::Attempt(const Decision& decision) {
  // Stamped per attempt, so a retry after a long backoff is still fresh to a
  // receiver that refuses old timestamps.
  const std::string timestamp = StrCat(absl::ToUnixSeconds(absl::Now()));
  http::request<http::string_body> request{http::verb::post, endpoint_.target, 11};
  request.set(http::field::host, endpoint_.host_header);
  request.set(http::field::content_type, "application/json");
  request.set(http::field::user_agent, "tokenfab-planner");
  request.set("X-Tokenfab-Timestamp", timestamp);
  request.set("X-Tokenfab-Delivery", StrCat(decision.id));
  if (!options_.secret.empty()) {
    request.set(
        "X-Tokenfab-Signature",
        StrCat("sha256=", HmacSha256Hex(options_.secret, StrCat(timestamp, ".", decision.body))));
  }
  request.keep_alive(false);
  request.body() = decision.body;
  request.prepare_payload();

  net::io_context io;
  HttpPost post(io, request);
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return absl::CancelledError("planner webhook stopping");
    attempt_io_ = &io;
  }
  const Clock::time_point deadline = Clock::now() + options_.timeout;
  post.Start(endpoint_.host, endpoint_.port, deadline);
  io.run_until(deadline + kResolveGrace);
  {
    absl::MutexLock lock(&mu_);
    attempt_io_ = nullptr;
  }
  if (!post.done()) return absl::DeadlineExceededError("timed out");
  return post.result();
}

}  // namespace tokenfab
