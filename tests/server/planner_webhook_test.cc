// PlannerWebhook against a real HTTP receiver on loopback that records each
// request and answers with a scripted status: signing, retries with backoff,
// giving up, superseding, refused connections, shutdown mid-backoff, and the
// URL checks of Create.
#include "server/planner_webhook.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenfab {
namespace {

namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using std::chrono::milliseconds;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

struct Received {
  Clock::time_point at;
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// A one-request-per-connection HTTP/1.1 server on 127.0.0.1 with an
// ephemeral port. `answer` picks the status for the n-th request (0-based).
class Receiver {
 public:
  using Answer = std::function<int(size_t n, const Received& request)>;

  explicit Receiver(Answer answer)
      : answer_(std::move(answer)),
        acceptor_(io_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { Serve(); });
  }
  // Answers the statuses in order, the last one for every request after.
  explicit Receiver(std::vector<int> statuses)
      : Receiver([statuses](size_t n, const Received&) {
          return statuses[std::min(n, statuses.size() - 1)];
        }) {}

  ~Receiver() {
    stop_ = true;
    // Wakes the blocking accept.
    net::io_context io;
    tcp::socket wake(io);
    boost::system::error_code ec;
    wake.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port_), ec);
    thread_.join();
  }

  int port() const { return port_; }
  std::string url(const std::string& path = "/hooks/plan") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  // The requests so far, once there are at least `n` (or after 5 s).
  std::vector<Received> WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return requests_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(5));
    return requests_;
  }

 private:
  void Serve() {
    while (true) {
      tcp::socket socket(io_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (stop_) return;
      if (ec) continue;
      timeval tv{5, 0};
      setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      boost::beast::flat_buffer buffer;
      http::request<http::string_body> req;
      http::read(socket, buffer, req, ec);
      if (ec) continue;
      Received r;
      r.at = Clock::now();
      r.method = std::string(req.method_string());
      r.target = std::string(req.target());
      for (const auto& f : req) {
        std::string name(f.name_string());
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        r.headers[name] = std::string(f.value());
      }
      r.body = req.body();
      size_t n;
      {
        absl::MutexLock lock(&mu_);
        n = requests_.size();
      }
      http::response<http::string_body> res{static_cast<http::status>(answer_(n, r)), 11};
      res.body() = "{}";
      res.keep_alive(false);
      res.prepare_payload();
      {
        absl::MutexLock lock(&mu_);
        requests_.push_back(std::move(r));
      }
      http::write(socket, res, ec);
      socket.shutdown(tcp::socket::shutdown_both, ec);
    }
  }

  const Answer answer_;
  net::io_context io_;
  tcp::acceptor acceptor_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  std::vector<Received> requests_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// Polls until `done` or `timeout`; returns whether `done` held.
bool WaitUntil(const std::function<bool()>& done, milliseconds timeout = milliseconds(5000)) {
  const Clock::time_point end = Clock::now() + timeout;
  while (!done()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

std::unique_ptr<PlannerWebhook> MustCreate(WebhookOptions options) {
  auto webhook = PlannerWebhook::Create(std::move(options));
  EXPECT_TRUE(webhook.ok()) << webhook.status();
  return webhook.ok() ? std::move(*webhook) : nullptr;
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

TEST(PlannerWebhookTest, HmacMatchesRfc4231TestCase2) {
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // RFC 4231 test case 1: a 20-byte key of 0x0b.
  EXPECT_EQ(HmacSha256Hex(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

TEST(PlannerWebhookTest, RetryDelayDoublesUpToTheCapPlusJitter) {
  WebhookOptions o;
  o.initial_backoff = milliseconds(500);
  o.max_backoff = milliseconds(3000);
  EXPECT_EQ(WebhookRetryDelay(o, 1, 0.0), milliseconds(500));
  EXPECT_EQ(WebhookRetryDelay(o, 2, 0.0), milliseconds(1000));
  EXPECT_EQ(WebhookRetryDelay(o, 3, 0.0), milliseconds(2000));
  EXPECT_EQ(WebhookRetryDelay(o, 4, 0.0), milliseconds(3000));
  EXPECT_EQ(WebhookRetryDelay(o, 1000, 0.0), milliseconds(3000));
  EXPECT_EQ(WebhookRetryDelay(o, 1, 0.5), milliseconds(550));
  EXPECT_EQ(WebhookRetryDelay(o, 4, 0.999999), milliseconds(3600));
}

TEST(PlannerWebhookTest, DeliversSignedJson) {
  Receiver receiver({200});
  const std::string secret = "s3cret";
  std::unique_ptr<PlannerWebhook> webhook = MustCreate({.url = receiver.url(), .secret = secret});
  ASSERT_NE(webhook, nullptr);
  const std::string body = R"({"decision":{"prefill":2,"decode":3}})";
  webhook->Publish(body);

  std::vector<Received> got = receiver.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  const Received& r = got[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/hooks/plan");
  EXPECT_EQ(r.body, body);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.header("user-agent"), "tokenfab-planner");
  EXPECT_EQ(r.header("host"), "127.0.0.1:" + std::to_string(receiver.port()));
  EXPECT_EQ(r.header("x-tokenfab-delivery"), "1");
  const std::string timestamp = r.header("x-tokenfab-timestamp");
  int64_t ts = 0;
  ASSERT_TRUE(absl::SimpleAtoi(timestamp, &ts)) << timestamp;
  EXPECT_NEAR(static_cast<double>(ts), static_cast<double>(absl::ToUnixSeconds(absl::Now())), 60);
  EXPECT_EQ(r.header("x-tokenfab-signature"),
            "sha256=" + HmacSha256Hex(secret, timestamp + "." + body));
  // A signature over the body alone (no timestamp) must not be what is sent.
  EXPECT_NE(r.header("x-tokenfab-signature"), "sha256=" + HmacSha256Hex(secret, body));
  ASSERT_TRUE(WaitUntil([&] { return webhook->stats().delivered == 1; }));

  // The next decision gets the next delivery id.
  webhook->Publish(R"({"decision":2})");
  got = receiver.WaitFor(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].header("x-tokenfab-delivery"), "2");
  EXPECT_EQ(got[1].body, R"({"decision":2})");
  ASSERT_TRUE(WaitUntil([&] { return webhook->stats().delivered == 2; }));
  const WebhookStats s = webhook->stats();
  EXPECT_EQ(s.failed_attempts, 0);
  EXPECT_EQ(s.dropped, 0);
  EXPECT_EQ(s.superseded, 0);
}

TEST(PlannerWebhookTest, NoSecretSendsNoSignature) {
  Receiver receiver({200});
  std::unique_ptr<PlannerWebhook> webhook = MustCreate({.url = receiver.url()});
  ASSERT_NE(webhook, nullptr);
  webhook->Publish("{}");
  std::vector<Received> got = receiver.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].headers.count("x-tokenfab-signature"), 0u);
  EXPECT_FALSE(got[0].header("x-tokenfab-timestamp").empty());
}

TEST(PlannerWebhookTest, RetriesWithGrowingBackoffUntil2xx) {
  Receiver receiver({503, 503, 200});
  std::unique_ptr<PlannerWebhook> webhook = MustCreate({.url = receiver.url(),
                                                        .secret = "k",
                                                        .initial_backoff = milliseconds(50),
                                                        .max_backoff = milliseconds(1000)});
  ASSERT_NE(webhook, nullptr);
  webhook->Publish(R"({"n":1})");
  ASSERT_TRUE(WaitUntil([&] { return webhook->stats().delivered == 1; }));
  std::this_thread::sleep_for(milliseconds(150));  // room for a wrong 4th attempt

  const std::vector<Received> got = receiver.WaitFor(3);
  ASSERT_EQ(got.size(), 3u);
  for (const Received& r : got) {
    EXPECT_EQ(r.header("x-tokenfab-delivery"), "1");
    EXPECT_EQ(r.body, R"({"n":1})");
    // Each attempt is signed over its own timestamp.
    EXPECT_EQ(r.header("x-tokenfab-signature"),
              "sha256=" + HmacSha256Hex("k", r.header("x-tokenfab-timestamp") + "." + r.body));
  }
  const double gap1 = Ms(got[1].at - got[0].at);
  const double gap2 = Ms(got[2].at - got[1].at);
  // 50 ms then 100 ms, plus up to 20% jitter; a timer never fires early.
  EXPECT_GE(gap1, 49) << gap1;
  EXPECT_GE(gap2, 99) << gap2;
  EXPECT_GT(gap2, gap1) << gap1 << " then " << gap2;
  const WebhookStats s = webhook->stats();
  EXPECT_EQ(s.delivered, 1);
  EXPECT_EQ(s.failed_attempts, 2);
  EXPECT_EQ(s.dropped, 0);
  EXPECT_EQ(s.superseded, 0);
}

TEST(PlannerWebhookTest, GivesUpAfterMaxAttempts) {
  Receiver receiver({500});
  std::unique_ptr<PlannerWebhook> webhook = MustCreate({.url = receiver.url(),
                                                        .max_attempts = 3,
                                                        .initial_backoff = milliseconds(10),
                                                        .max_backoff = milliseconds(20)});
  ASSERT_NE(webhook, nullptr);
  webhook->Publish("{}");
  ASSERT_TRUE(WaitUntil([&] { return webhook->stats().dropped == 1; }));
  std::this_thread::sleep_for(milliseconds(100));  // room for a wrong 4th attempt
  EXPECT_EQ(receiver.WaitFor(3).size(), 3u);
  const WebhookStats s = webhook->stats();
  EXPECT_EQ(s.failed_attempts, 3);
  EXPECT_EQ(s.delivered, 0);
  EXPECT_EQ(s.dropped, 1);
}

TEST(PlannerWebhookTest, NewerDecisionSupersedesOneStillRetrying) {
  // The old decision always fails; the new one succeeds.
  Receiver receiver([](size_t, const Received& r) { return r.body == "new" ? 200 : 500; });
  std::unique_ptr<PlannerWebhook> webhook = MustCreate({.url = receiver.url(),
                                                        .initial_backoff = milliseconds(3000),
                                                        .max_backoff = milliseconds(3000)});
  ASSERT_NE(webhook, nullptr);
  webhook->Publish("old");
  ASSERT_EQ(receiver.WaitFor(1).size(), 1u);
  ASSERT_TRUE(WaitUntil([&] { return webhook->stats().failed_attempts == 1; }));
  const Clock::time_point published = Clock::now();
  webhook->Publish("new");
  // Sent at once, not after the old one's 3 s backoff.
  ASSERT_TRUE(WaitUntil([&] { return webhook->stats().delivered == 1; }, milliseconds(2000)));
  EXPECT_LT(Ms(Clock::now() - published), 2000);
  std::this_thread::sleep_for(milliseconds(100));

  const std::vector<Received> got = receiver.WaitFor(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].body, "old");
  EXPECT_EQ(got[0].header("x-tokenfab-delivery"), "1");
  EXPECT_EQ(got[1].body, "new");
  EXPECT_EQ(got[1].header("x-tokenfab-delivery"), "2");
  const WebhookStats s = webhook->stats();
  EXPECT_EQ(s.delivered, 1);
  EXPECT_EQ(s.failed_attempts, 1);
  EXPECT_EQ(s.superseded, 1);
  EXPECT_EQ(s.dropped, 0);
}

TEST(PlannerWebhookTest, DecisionsPublishedWhileOneIsInFlightCollapseToTheLatest) {
  // The receiver holds the first answer until three more decisions are
  // published, then answers 200 to all.
  std::atomic<bool> entered{false}, release{false};
  Receiver receiver([&](size_t n, const Received&) {
    entered = true;
    if (n == 0) WaitUntil([&] { return release.load(); });
    return 200;
  });
  std::unique_ptr<PlannerWebhook> webhook = MustCreate({.url = receiver.url()});
  ASSERT_NE(webhook, nullptr);
  webhook->Publish("a");
  ASSERT_TRUE(WaitUntil([&] { return entered.load(); }));  // "a" is in flight
  webhook->Publish("b");
  webhook->Publish("c");
  webhook->Publish("d");
  release = true;
  ASSERT_TRUE(WaitUntil([&] { return webhook->stats().delivered == 2; }));
  std::this_thread::sleep_for(milliseconds(100));
  const std::vector<Received> got = receiver.WaitFor(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].body, "a");
  EXPECT_EQ(got[1].body, "d");
  EXPECT_EQ(got[1].header("x-tokenfab-delivery"), "4");
  EXPECT_EQ(webhook->stats().superseded, 2);
}

TEST(PlannerWebhookTest, RefusedConnectionIsAFailedAttemptAndShutdownIsPrompt) {
  // A bound socket that does not listen: connecting to it is refused, and
  // its port is not handed to anyone else meanwhile.
  net::io_context io;
  tcp::socket closed(io);
  closed.open(tcp::v4());
  closed.bind(tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  const int port = closed.local_endpoint().port();

  std::unique_ptr<PlannerWebhook> webhook =
      MustCreate({.url = "http://127.0.0.1:" + std::to_string(port) + "/",
                  .initial_backoff = milliseconds(60000),
                  .max_backoff = milliseconds(60000)});
  ASSERT_NE(webhook, nullptr);
  webhook->Publish("{}");
  ASSERT_TRUE(WaitUntil([&] { return webhook->stats().failed_attempts == 1; }));
  std::this_thread::sleep_for(milliseconds(20));  // into the 60 s backoff
  const WebhookStats s = webhook->stats();
  EXPECT_EQ(s.delivered, 0);
  EXPECT_EQ(s.dropped, 0);

  const Clock::time_point start = Clock::now();
  webhook.reset();
  EXPECT_LT(Ms(Clock::now() - start), 1000);
}

TEST(PlannerWebhookTest, ShutdownAbandonsAnAttemptInFlight) {
  // A receiver that reads the request and does not answer within the 10 s
  // timeout.
  std::atomic<bool> entered{false}, release{false};
  Receiver receiver([&](size_t, const Received&) {
    entered = true;
    WaitUntil([&] { return release.load(); });
    return 200;
  });
  std::unique_ptr<PlannerWebhook> webhook =
      MustCreate({.url = receiver.url(), .timeout = milliseconds(10000)});
  ASSERT_NE(webhook, nullptr);
  webhook->Publish("{}");
  ASSERT_TRUE(WaitUntil([&] { return entered.load(); }));  // sent; the answer is awaited
  const Clock::time_point start = Clock::now();
  webhook.reset();
  EXPECT_LT(Ms(Clock::now() - start), 1000);
  release = true;
}

TEST(PlannerWebhookTest, TimesOutASilentReceiver) {
  std::atomic<bool> release{false};
  Receiver receiver([&release](size_t, const Received&) {
    WaitUntil([&] { return release.load(); });
    return 200;
  });
  std::unique_ptr<PlannerWebhook> webhook =
      MustCreate({.url = receiver.url(), .max_attempts = 1, .timeout = milliseconds(100)});
  ASSERT_NE(webhook, nullptr);
  const Clock::time_point start = Clock::now();
  webhook->Publish("{}");
  ASSERT_TRUE(WaitUntil([&] { return webhook->stats().dropped == 1; }, milliseconds(2000)));
  EXPECT_GE(Ms(Clock::now() - start), 99);
  EXPECT_EQ(webhook->stats().failed_attempts, 1);
  release = true;
}

TEST(PlannerWebhookTest, CreateRejectsBadUrls) {
  for (const char* url : {"", "https://x", "ftp://x", "http://:80", "http://h:99999", "http://h:0",
                          "http://h:8x", "x", "http://[::1", "http://u:p@h/", "http://h/a b"}) {
    auto webhook = PlannerWebhook::Create({.url = url});
    ASSERT_FALSE(webhook.ok()) << url;
    EXPECT_EQ(webhook.status().code(), absl::StatusCode::kInvalidArgument) << url;
    EXPECT_THAT(webhook.status().message(), HasSubstr("--planner-webhook")) << url;
  }
  EXPECT_THAT(PlannerWebhook::Create({.url = "https://x"}).status().message(),
              HasSubstr("use a sidecar/ingress for TLS"));
  EXPECT_FALSE(PlannerWebhook::Create({.url = "http://h", .max_attempts = 0}).ok());
  EXPECT_FALSE(PlannerWebhook::Create({.url = "http://h", .timeout = milliseconds(0)}).ok());
}

TEST(PlannerWebhookTest, CreateAcceptsDefaultsPortsPathsAndIpv6) {
  // Nothing is published, so nothing connects.
  for (const char* url : {"http://planner-sink", "HTTP://h:8080/hook?x=1", "http://h?x",
                          "http://[::1]:9000/p", "http://h:65535/"}) {
    auto webhook = PlannerWebhook::Create({.url = url});
    EXPECT_TRUE(webhook.ok()) << url << ": " << webhook.status();
  }
}

TEST(PlannerWebhookTest, DefaultPortAndPathInTheRequest) {
  // A query-only URL targets "/?...", and the Host header carries the port.
  Receiver receiver({200});
  std::unique_ptr<PlannerWebhook> webhook =
      MustCreate({.url = "http://localhost:" + std::to_string(receiver.port()) + "?team=a#frag"});
  ASSERT_NE(webhook, nullptr);
  webhook->Publish("{}");
  const std::vector<Received> got = receiver.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].target, "/?team=a");
  EXPECT_EQ(got[0].header("host"), "localhost:" + std::to_string(receiver.port()));
}

}  // namespace
}  // namespace tokenfab
