// HttpServer over a Router with a fake worker, spoken to in raw HTTP/1.1 on
// loopback: endpoints, SSE framing, errors, keep-alive, pipelining, and
// cancellation when a client goes away or the server shuts down.
#include "server/http/http_server.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "boost/asio/connect.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/server/http/fake_worker.h"
#include "tests/test_paths.h"
#include "worker/model_loader.h"

namespace tokenfab {
namespace {

namespace net = boost::asio;
namespace http = boost::beast::http;
using Json = nlohmann::ordered_json;
using tcp = net::ip::tcp;
using ::testing::HasSubstr;
using ::testing::StartsWith;

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  Json json() const { return Json::parse(body); }
};

// A blocking HTTP/1.1 client on one connection; reads time out after 10 s.
class RawClient {
 public:
  explicit RawClient(int port) : socket_(ioc_) {
    socket_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    timeval tv{10, 0};
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  void Send(const std::string& raw) { net::write(socket_, net::buffer(raw)); }

  Reply Read() {
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    http::read(socket_, buffer_, parser);
    Reply r;
    r.status = parser.get().result_int();
    for (const auto& f : parser.get()) {
      std::string name(f.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers[name] = std::string(f.value());
    }
    r.body = parser.get().body();
    return r;
  }

  // Reads raw bytes until `needle` appears (for a stream left open).
  std::string ReadUntil(const std::string& needle) {
    std::string got;
    char buf[1024];
    while (got.find(needle) == std::string::npos) {
      boost::system::error_code ec;
      const size_t n = socket_.read_some(net::buffer(buf), ec);
      if (ec) break;
      got.append(buf, n);
    }
    return got;
  }

  // True once the server has closed the connection.
  bool ReadsEof() {
    char buf[256];
    boost::system::error_code ec;
    while (!ec) socket_.read_some(net::buffer(buf), ec);
    return ec == net::error::eof || ec == net::error::connection_reset;
  }

  void Close() {
    boost::system::error_code ec;
    socket_.close(ec);
  }

 private:
  net::io_context ioc_;
  tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
};

std::string Request(const std::string& method, const std::string& path, const std::string& body = "",
                    const std::string& extra_headers = "") {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\n" + extra_headers;
  if (!body.empty() || method == "POST") {
    r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return r + "\r\n" + body;
}

// The JSON objects of a server-sent event stream; [DONE] as the string "[DONE]".
std::vector<Json> SseEvents(const std::string& body) {
  std::vector<Json> out;
  size_t pos = 0;
  while (pos < body.size()) {
    const size_t end = body.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << "unterminated event in: " << body;
    if (end == std::string::npos) break;
    const std::string event = body.substr(pos, end - pos);
    EXPECT_THAT(event, StartsWith("data: "));
    const std::string data = event.substr(6);
    out.push_back(data == "[DONE]" ? Json("[DONE]") : Json::parse(data));
    pos = end + 2;
  }
  return out;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(std::chrono::milliseconds(2)); }

  void StartServer(std::chrono::milliseconds delay) {
    auto model = LoadModel(testing::TestDataPath("hf/tiny-llama"), {.load_weights = false});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    tokens_ = model_->tokenizer->Encode(" one two three four five six seven eight");
    ASSERT_GE(tokens_.size(), 8u);
    worker_ = std::make_unique<testing::FakeWorker>(tokens_, delay);
    router_ = std::make_unique<Router>(*model_, worker_.get(),
                                       RouterOptions{.model_id = "tiny", .retry_after_seconds = 3});
    auto server = HttpServer::Start(
        router_.get(), {.host = "127.0.0.1", .port = 0, .threads = 2, .max_body_bytes = 64 * 1024});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
  }

  void TearDown() override {
    server_.reset();
    worker_.reset();  // joins its threads, which may still call the router
    router_.reset();
  }

  // The text of the first n tokens the fake worker emits.
  std::string Expected(size_t n) const {
    std::vector<int32_t> ids;
    for (size_t i = 0; i < n; ++i) ids.push_back(tokens_[i % tokens_.size()]);
    return model_->tokenizer->Decode(ids);
  }

  Reply Call(const std::string& method, const std::string& path, const std::string& body = "") {
    RawClient c(server_->port());
    c.Send(Request(method, path, body));
    return c.Read();
  }

  std::unique_ptr<LoadedModel> model_;
  std::vector<int32_t> tokens_;
  std::unique_ptr<testing::FakeWorker> worker_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, HealthModelsAndUnknownPaths) {
  Reply health = Call("GET", "/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.json().dump(), R"({"status":"ok"})");

  Reply models = Call("GET", "/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.headers["content-type"], "application/json");
  Json list = models.json();
  EXPECT_EQ(list["object"], "list");
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["id"], "tiny");
  EXPECT_EQ(list["data"][0]["object"], "model");
  EXPECT_EQ(Call("GET", "/v1/models/tiny").json()["id"], "tiny");
  EXPECT_EQ(Call("GET", "/v1/models/other").status, 404);

  Reply missing = Call("GET", "/v2/nothing");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.json()["error"]["type"], "invalid_request_error");
  Reply wrong = Call("GET", "/v1/completions");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(wrong.headers["allow"], "POST");
  EXPECT_EQ(Call("DELETE", "/health").status, 405);
  EXPECT_EQ(Call("GET", "/live").json().dump(), R"({"status":"ok"})");
  EXPECT_EQ(Call("POST", "/live").status, 405);
}

TEST_F(HttpServerTest, NonStreamedCompletionsWithKeepAlive) {
  RawClient c(server_->port());
  for (int round = 0; round < 3; ++round) {
    c.Send(Request("POST", "/v1/completions", R"({"model": "tiny", "prompt": "hi", "max_tokens": 4})"));
    Reply r = c.Read();
    ASSERT_EQ(r.status, 200) << r.body;
    Json j = r.json();
    EXPECT_THAT(j["id"].get<std::string>(), StartsWith("cmpl-"));
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_EQ(j["model"], "tiny");
    EXPECT_GT(j["created"].get<int64_t>(), 1600000000);
    EXPECT_EQ(j["choices"][0]["index"], 0);
    EXPECT_EQ(j["choices"][0]["text"], Expected(4));
    EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(j["usage"]["completion_tokens"], 4);
    EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 0);
    EXPECT_EQ(j["usage"]["total_tokens"].get<int>(),
              j["usage"]["prompt_tokens"].get<int>() + 4);
    EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  }
  EXPECT_EQ(worker_->submitted_count(), 3);
}

TEST_F(HttpServerTest, StreamedCompletionIsServerSentEvents) {
  Reply r = Call("POST", "/v1/completions", R"({"prompt": "hi", "max_tokens": 6, "stream": true})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["content-type"], "text/event-stream");
  EXPECT_EQ(r.headers["transfer-encoding"], "chunked");
  std::vector<Json> events = SseEvents(r.body);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    EXPECT_EQ(events[i]["object"], "text_completion");
    EXPECT_FALSE(events[i].contains("usage"));
    text += events[i]["choices"][0]["text"].get<std::string>();
    const bool last = i + 2 == events.size();
    EXPECT_EQ(events[i]["choices"][0]["finish_reason"], last ? Json("length") : Json(nullptr));
  }
  EXPECT_EQ(text, Expected(6));
}

TEST_F(HttpServerTest, StreamedChatStartsWithTheRoleAndEndsWithUsage) {
  Reply r = Call("POST", "/v1/chat/completions",
                 R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
                     "stream": true, "stream_options": {"include_usage": true}})");
  ASSERT_EQ(r.status, 200) << r.body;
  std::vector<Json> events = SseEvents(r.body);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(events.back(), "[DONE]");
  const Json& usage = events[events.size() - 2];
  EXPECT_EQ(usage["choices"].dump(), "[]");
  EXPECT_EQ(usage["usage"]["completion_tokens"], 5);
  std::string text;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    EXPECT_EQ(events[i]["object"], "chat.completion.chunk");
    EXPECT_THAT(events[i]["id"].get<std::string>(), StartsWith("chatcmpl-"));
    EXPECT_TRUE(events[i]["usage"].is_null());
    const Json& delta = events[i]["choices"][0]["delta"];
    if (delta.contains("content")) text += delta["content"].get<std::string>();
  }
  EXPECT_EQ(events[events.size() - 3]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(text, Expected(5));
}

TEST_F(HttpServerTest, NonStreamedChatWithLogprobs) {
  Reply r = Call("POST", "/v1/chat/completions",
                 R"({"messages": [{"role": "system", "content": "s"},
                                  {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                     "max_completion_tokens": 3, "logprobs": true, "top_logprobs": 2})");
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = r.json();
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], Expected(3));
  const Json& content = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 3u);
  EXPECT_EQ(content[0]["logprob"], -0.5);
  EXPECT_EQ(content[0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(content[0]["token"], model_->tokenizer->TokenPiece(tokens_[0]));
}

TEST_F(HttpServerTest, CompletionLogprobs) {
  Reply r = Call("POST", "/v1/completions", R"({"prompt": "hi", "max_tokens": 2, "logprobs": 1})");
  ASSERT_EQ(r.status, 200) << r.body;
  const Json j = r.json();
  const Json& lp = j["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"].size(), 2u);
  EXPECT_EQ(lp["token_logprobs"].dump(), "[-0.5,-0.5]");
  EXPECT_EQ(lp["top_logprobs"][0].size(), 1u);
  EXPECT_EQ(lp["text_offset"][0], 0);
}

TEST_F(HttpServerTest, BadRequestsAre400NamingTheField) {
  struct Case {
    std::string path, body, field, message;
  };
  const std::string long_prompt = [] {
    std::string s;
    for (int i = 0; i < 400; ++i) s += " word";
    return s;
  }();
  const Case cases[] = {
      {"/v1/completions", R"({"prompt": )", "", "not valid JSON"},
      {"/v1/completions", R"({"prompt": "x", "temperature": -1})", "temperature", "temperature"},
      {"/v1/completions", R"({"prompt": "x", "top_p": 2})", "top_p", "top_p"},
      {"/v1/completions", R"({"prompt": "x", "n": 2})", "n", "n must be 1"},
      {"/v1/completions", R"({"prompt": ""})", "prompt", "prompt is empty"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": 0})", "max_tokens", "max_tokens"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": 5000})", "max_tokens", "context length"},
      {"/v1/completions", R"({"prompt": ")" + long_prompt + R"("})", "prompt", "context length"},
      {"/v1/completions", R"({"prompt": "x", "model": "gpt-4"})", "model", "gpt-4"},
      {"/v1/completions", "{\"prompt\": \"\xff\xfe\"}", "prompt", "not valid UTF-8"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user"}], "stop": [1]})", "stop", "stop"},
  };
  for (const Case& c : cases) {
    Reply r = Call("POST", c.path, c.body);
    EXPECT_EQ(r.status, 400) << c.body;
    Json e = r.json()["error"];
    EXPECT_EQ(e["type"], "invalid_request_error") << c.body;
    EXPECT_THAT(e["message"].get<std::string>(), HasSubstr(c.message)) << c.body;
    if (c.field.empty()) {
      EXPECT_TRUE(e["param"].is_null()) << c.body;
    } else {
      EXPECT_EQ(e["param"], c.field) << c.body;
    }
  }
  EXPECT_EQ(worker_->submitted_count(), 0);
}

TEST_F(HttpServerTest, BodyOverTheLimitIs413) {
  const std::string body = R"({"prompt": ")" + std::string(100 * 1024, 'a') + R"("})";
  Reply r = Call("POST", "/v1/completions", body);
  EXPECT_EQ(r.status, 413);
  EXPECT_THAT(r.json()["error"]["message"].get<std::string>(), HasSubstr("larger than"));
}

TEST_F(HttpServerTest, ExpectContinueIsHonoured) {
  RawClient c(server_->port());
  const std::string body = R"({"prompt": "hi", "max_tokens": 1})";
  c.Send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n");
  EXPECT_THAT(c.ReadUntil("\r\n\r\n"), StartsWith("HTTP/1.1 100 Continue"));
  c.Send(body);
  EXPECT_EQ(c.Read().status, 200);
}

TEST_F(HttpServerTest, QueueFullIs429WithRetryAfter) {
  worker_->set_reject(true);
  Reply r = Call("POST", "/v1/completions", R"({"prompt": "hi", "max_tokens": 2})");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.headers["retry-after"], "3");
  EXPECT_EQ(r.json()["error"]["code"], "rate_limit_exceeded");
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  RawClient c(server_->port());
  c.Send(Request("POST", "/v1/completions", R"({"prompt": "a", "max_tokens": 2})") +
         Request("GET", "/health") +
         Request("POST", "/v1/completions", R"({"prompt": "b", "max_tokens": 3, "stream": true})"));
  EXPECT_EQ(c.Read().json()["choices"][0]["text"], Expected(2));
  EXPECT_EQ(c.Read().json()["status"], "ok");
  Reply stream = c.Read();
  EXPECT_EQ(SseEvents(stream.body).back(), "[DONE]");
}

class SlowHttpServerTest : public HttpServerTest {
 protected:
  // 20 ms a token and no max_tokens: a request runs ~5 s unless cancelled.
  void SetUp() override { StartServer(std::chrono::milliseconds(20)); }
};

TEST_F(SlowHttpServerTest, ClientLeavingMidStreamCancelsItsRequest) {
  RawClient c(server_->port());
  c.Send(Request("POST", "/v1/completions", R"({"prompt": "hi", "stream": true})"));
  EXPECT_THAT(c.ReadUntil("data: {"), HasSubstr("text/event-stream"));
  const std::string id = worker_->last_submitted();
  EXPECT_FALSE(worker_->WasCancelled(id));
  c.Close();
  EXPECT_TRUE(worker_->WaitCancelled(id, absl::Seconds(3)));
}

TEST_F(SlowHttpServerTest, ClientLeavingBeforeANonStreamedAnswerCancelsItsRequest) {
  RawClient c(server_->port());
  c.Send(Request("POST", "/v1/chat/completions",
                 R"({"messages": [{"role": "user", "content": "hi"}]})"));
  absl::SleepFor(absl::Milliseconds(200));
  const std::string id = worker_->last_submitted();
  ASSERT_FALSE(id.empty());
  EXPECT_FALSE(worker_->WasCancelled(id));
  c.Close();
  EXPECT_TRUE(worker_->WaitCancelled(id, absl::Seconds(3)));
}

TEST_F(SlowHttpServerTest, ShutdownClosesOpenStreamsAndCancelsThem) {
  RawClient c(server_->port());
  c.Send(Request("POST", "/v1/completions", R"({"prompt": "hi", "stream": true})"));
  c.ReadUntil("data: {");
  const std::string id = worker_->last_submitted();
  server_->Shutdown();
  EXPECT_TRUE(worker_->WasCancelled(id));
  EXPECT_TRUE(c.ReadsEof());
  server_->Shutdown();  // idempotent
}

TEST_F(HttpServerTest, ManyConcurrentStreams) {
  constexpr int kStreams = 32;
  std::vector<std::string> texts(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      RawClient c(server_->port());
      c.Send(Request("POST", "/v1/chat/completions",
                     R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                         "stream": true})"));
      for (const Json& e : SseEvents(c.Read().body)) {
        if (e.is_object() && e["choices"][0]["delta"].contains("content")) {
          texts[i] += e["choices"][0]["delta"]["content"].get<std::string>();
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::string& t : texts) EXPECT_EQ(t, Expected(8));
}

TEST(HttpServerStartTest, RejectsBadOptions) {
  EXPECT_FALSE(HttpServer::Start(nullptr, {}).ok());
}

}  // namespace
}  // namespace tokenfab
