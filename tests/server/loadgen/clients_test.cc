// The gRPC and HTTP load clients against small fake servers on loopback:
// what they send, and how they time and count what comes back.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "server/loadgen/load_client.h"
#include "tokenfab/v1/generation.grpc.pb.h"

namespace tokenfab::loadgen {
namespace {

TEST(ParseTargetTest, AcceptsBothSchemes) {
  auto g = ParseTarget("grpc://localhost:50051");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->protocol, Protocol::kGrpc);
  EXPECT_FALSE(g->tls);
  EXPECT_EQ(g->host, "localhost");
  EXPECT_EQ(g->port, 50051);
  auto h = ParseTarget("http://127.0.0.1:8080/");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->protocol, Protocol::kHttp);
  EXPECT_EQ(h->host, "127.0.0.1");
  EXPECT_EQ(h->port, 8080);
  auto v6 = ParseTarget("http://[::1]:9000");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 9000);
  EXPECT_FALSE(v6->tls);
}

TEST(ParseTargetTest, TlsSchemesSayTls) {
  auto g = ParseTarget("grpcs://localhost:443");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->protocol, Protocol::kGrpc);
  EXPECT_TRUE(g->tls);
  auto h = ParseTarget("https://[::1]:8443/");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->protocol, Protocol::kHttp);
  EXPECT_TRUE(h->tls);
  EXPECT_EQ(h->host, "::1");
  EXPECT_EQ(h->port, 8443);
}

TEST(ParseTargetTest, ACaFileNeedsATlsTarget) {
  auto client = CreateLoadClient(*ParseTarget("http://127.0.0.1:1"), {.tls_ca_file = "/ca.pem"});
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  auto missing =
      CreateLoadClient(*ParseTarget("https://127.0.0.1:1"), {.tls_ca_file = "/nonexistent/ca.pem"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument) << missing.status();
}

TEST(ParseTargetTest, RejectsBadTargets) {
  for (const char* bad :
       {"ftp://h:1", "grpcss://h:1", "h:1", "http://h", "http://:80", "http://h:0",
        "http://h:65536", "http://h:80x", "http://h:80/v1", "grpc://[::1]80"}) {
    EXPECT_FALSE(ParseTarget(bad).ok()) << bad;
  }
}

// One-connection-at-a-time HTTP/1.1 server that answers each request with
// the next canned response, writing its SSE events as separate chunks with
// a pause before each.
class FakeHttpServer {
 public:
  struct Response {
    int status = 200;
    std::vector<std::string> events;  // SSE data payloads, streamed chunked
    std::string body;                 // for non-streamed answers
  };

  explicit FakeHttpServer(std::vector<Response> responses, std::chrono::milliseconds pause)
      : responses_(std::move(responses)), pause_(pause) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 8);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeHttpServer() {
    thread_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }
  const std::vector<std::string>& requests() const { return requests_; }

 private:
  void Serve() {
    for (const Response& r : responses_) {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      requests_.push_back(ReadRequest(c));
      if (!r.events.empty()) {
        Write(c,
              "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
              "Transfer-Encoding: chunked\r\n\r\n");
        for (const std::string& e : r.events) {
          std::this_thread::sleep_for(pause_);
          const std::string data = "data: " + e + "\n\n";
          char size[16];
          std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
          Write(c, size + data + "\r\n");
        }
        Write(c, "0\r\n\r\n");
      } else {
        Write(c, "HTTP/1.1 " + std::to_string(r.status) +
                     " X\r\nContent-Type: application/json\r\nContent-Length: " +
                     std::to_string(r.body.size()) + "\r\n\r\n" + r.body);
      }
      close(c);
    }
  }
  static std::string ReadRequest(int c) {
    std::string in;
    char buf[4096];
    size_t need = std::string::npos;
    while (need == std::string::npos || in.size() < need) {
      const ssize_t n = read(c, buf, sizeof(buf));
      if (n <= 0) break;
      in.append(buf, n);
      const size_t end = in.find("\r\n\r\n");
      if (need == std::string::npos && end != std::string::npos) {
        size_t length = 0;
        const size_t cl = in.find("Content-Length: ");
        if (cl != std::string::npos && cl < end) length = std::stoul(in.substr(cl + 16));
        need = end + 4 + length;
      }
    }
    return in;
  }
  static void Write(int c, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = write(c, s.data() + off, s.size() - off);
      if (n <= 0) return;
      off += n;
    }
  }

  std::vector<Response> responses_;
  std::chrono::milliseconds pause_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::vector<std::string> requests_;
  std::thread thread_;
};

std::string TextChunk(const std::string& text) {
  return nlohmann::json{{"object", "text_completion"},
                        {"choices", {{{"index", 0}, {"text", text}, {"finish_reason", nullptr}}}}}
      .dump();
}

TEST(HttpLoadClientTest, TimesChunksAndReadsUsage) {
  const std::string usage =
      R"({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}})";
  FakeHttpServer server({{.events = {TextChunk(" a"), TextChunk(""), TextChunk(" b"),
                                     TextChunk(" c"), usage, "[DONE]"}}},
                        std::chrono::milliseconds(30));
  auto client = CreateLoadClient({Protocol::kHttp, "127.0.0.1", server.port()}, {});
  ASSERT_TRUE(client.ok());
  const Clock::time_point origin = Clock::now();
  const RequestRecord r =
      (*client)->Send({.prompt = "hi there", .max_tokens = 4, .model_id = "m"}, origin);
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.chunk_times_s.size(), 3u);  // the empty-text chunk is not a token chunk
  EXPECT_EQ(r.completion_tokens, 4);
  EXPECT_EQ(r.prompt_tokens, 5);
  EXPECT_GE(*r.Ttft(), 0.025);
  EXPECT_GE(r.chunk_times_s[1] - r.chunk_times_s[0], 0.05);  // two pauses: the empty chunk
  EXPECT_GE(r.chunk_times_s[2] - r.chunk_times_s[1], 0.025);
  EXPECT_GT(r.done_s, r.chunk_times_s.back());

  ASSERT_EQ(server.requests().size(), 1u);
  const std::string& req = server.requests()[0];
  EXPECT_EQ(req.rfind("POST /v1/completions HTTP/1.1\r\n", 0), 0u) << req;
  const nlohmann::json body = nlohmann::json::parse(req.substr(req.find("\r\n\r\n") + 4));
  EXPECT_EQ(body["prompt"], "hi there");
  EXPECT_EQ(body["max_tokens"], 4);
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_EQ(body["stream"], true);
}

TEST(HttpLoadClientTest, HttpErrorAndModelList) {
  FakeHttpServer server({{.status = 200, .body = R"({"data":[{"id":"served-model"}]})"},
                         {.status = 400, .body = R"({"error":{"message":"prompt too long"}})"}},
                        std::chrono::milliseconds(0));
  auto client = CreateLoadClient({Protocol::kHttp, "127.0.0.1", server.port()}, {});
  ASSERT_TRUE(client.ok());
  auto id = (*client)->ServedModelId();
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, "served-model");
  const RequestRecord r = (*client)->Send({.prompt = "p", .max_tokens = 1}, Clock::now());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("HTTP 400"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("prompt too long"), std::string::npos) << r.error;
}

TEST(HttpLoadClientTest, ConnectionRefusedIsAFailedRecord) {
  auto client = CreateLoadClient({Protocol::kHttp, "127.0.0.1", 1}, {});
  ASSERT_TRUE(client.ok());
  const RequestRecord r = (*client)->Send({.prompt = "p", .max_tokens = 1}, Clock::now());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("connect"), std::string::npos) << r.error;
}

class FakeGeneration final : public v1::Generation::Service {
 public:
  grpc::Status Generate(grpc::ServerContext*, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override {
    last_request_ = *request;
    if (request->prompt() == "fail") return {grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full"};
    v1::GenerateResponse r;
    for (int n : {1, 2}) {
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      r.Clear();
      for (int i = 0; i < n; ++i) r.add_token_ids(100 + i);
      r.set_text("x");
      writer->Write(r);
    }
    r.Clear();
    r.set_finish_reason(v1::FINISH_REASON_LENGTH);
    r.mutable_usage()->set_prompt_tokens(7);
    r.mutable_usage()->set_completion_tokens(3);
    writer->Write(r);
    return grpc::Status::OK;
  }
  grpc::Status ListModels(grpc::ServerContext*, const v1::ListModelsRequest*,
                          v1::ListModelsResponse* response) override {
    response->add_models()->set_id("grpc-model");
    return grpc::Status::OK;
  }
  v1::GenerateRequest last_request_;
};

TEST(GrpcLoadClientTest, StreamsCountsAndErrors) {
  FakeGeneration service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_GT(port, 0);
  auto client = CreateLoadClient({Protocol::kGrpc, "127.0.0.1", static_cast<uint16_t>(port)}, {});
  ASSERT_TRUE(client.ok());
  auto id = (*client)->ServedModelId();
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, "grpc-model");

  const RequestRecord r =
      (*client)->Send({.prompt = "hello", .max_tokens = 3, .model_id = "grpc-model"}, Clock::now());
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(service.last_request_.prompt(), "hello");
  EXPECT_EQ(service.last_request_.max_tokens(), 3);
  EXPECT_TRUE(service.last_request_.has_stop_at_eos());
  EXPECT_FALSE(service.last_request_.stop_at_eos());
  EXPECT_EQ(service.last_request_.model(), "grpc-model");
  ASSERT_EQ(r.chunk_times_s.size(), 2u);  // the final usage message carries no token
  EXPECT_EQ(r.chunk_tokens, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(r.completion_tokens, 3);
  EXPECT_EQ(r.prompt_tokens, 7);
  EXPECT_GE(*r.Ttft(), 0.025);
  EXPECT_NEAR(*r.InterTokenLatency(), (r.chunk_times_s[1] - r.chunk_times_s[0]) / 2, 1e-9);

  const RequestRecord failed = (*client)->Send({.prompt = "fail", .max_tokens = 3}, Clock::now());
  EXPECT_FALSE(failed.ok);
  EXPECT_NE(failed.error.find("queue full"), std::string::npos) << failed.error;
  server->Shutdown();
}

TEST(CreateLoadClientTest, ExtraBodyIsForHttpOnly) {
  EXPECT_FALSE(CreateLoadClient({Protocol::kGrpc, "h", 1}, {.extra_body_json = "{}"}).ok());
  EXPECT_TRUE(CreateLoadClient({Protocol::kHttp, "h", 1}, {.extra_body_json = "{}"}).ok());
}

}  // namespace
}  // namespace tokenfab::loadgen
