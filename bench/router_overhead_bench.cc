// The latency the router adds to a request: the real router (gRPC face,
// tokenizer, block hashing, KV-aware routing, the internal gRPC hop to the
// worker, detokenization) in front of a worker that answers every request at
// once with one token, driven open-loop at --rate requests/s with one-token
// outputs. The peer, in the same run: the same client sending the same
// (already tokenized) requests straight to that worker. Printed: latency
// percentiles of both and their difference, the router's added latency.
//
//   build/bench/router_overhead_bench [--model PATH] [--rate 1000] [--requests 5000]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "common/strings.h"
#include "grpcpp/grpcpp.h"
#include "server/attach_client.h"
#include "server/cli/engine_flags.h"
#include "server/cli/flags.h"
#include "server/router_node.h"
#include "tokenfab/internal/v1/worker.grpc.pb.h"
#include "tokenfab/v1/generation.grpc.pb.h"
#include "worker/transport/kv_wire.h"

namespace tokenfab {
namespace {

using Clock = std::chrono::steady_clock;
using internal::v1::WorkerOutput;
using internal::v1::WorkerRequest;

// A worker that finishes every request at once with one token.
class InstantWorker final : public internal::v1::Worker::CallbackService {
  class Reactor : public grpc::ServerWriteReactor<WorkerOutput> {
   public:
    explicit Reactor(const WorkerRequest& r) {
      out_.set_request_id(r.request_id());
      out_.add_token_ids(r.prompt_ids(r.prompt_ids_size() - 1));
      out_.set_finish(internal::v1::WORKER_FINISH_LENGTH);
      out_.set_prompt_tokens(r.prompt_ids_size());
      out_.set_completion_tokens(1);
      StartWriteAndFinish(&out_, grpc::WriteOptions(), grpc::Status::OK);
    }
    void OnDone() override { delete this; }

   private:
    WorkerOutput out_;
  };

 public:
  grpc::ServerWriteReactor<WorkerOutput>* Generate(grpc::CallbackServerContext*,
                                                   const WorkerRequest* request) override {
    return new Reactor(*request);
  }
};

// Open-loop load: one call every 1/rate s; each call's latency is the time
// from its start to its final message.
template <typename Response>
class Load {
 public:
  struct Call : grpc::ClientReadReactor<Response> {
    Load* load;
    grpc::ClientContext context;
    Response response;
    Clock::time_point start;
    void OnReadDone(bool ok) override {
      if (ok) this->StartRead(&response);
    }
    void OnDone(const grpc::Status& s) override {
      load->Done(s.ok(), Clock::now() - start);
      delete this;
    }
  };

  // `start(call)` binds the call to its RPC and returns.
  template <typename StartFn>
  std::vector<double> Run(int32_t rate, int32_t n, StartFn start) {
    const auto period = std::chrono::nanoseconds(1'000'000'000 / rate);
    auto next = Clock::now();
    for (int32_t i = 0; i < n; ++i) {
      std::this_thread::sleep_until(next);
      next += period;
      auto* call = new Call;
      call->load = this;
      call->start = Clock::now();
      start(call);
      call->StartRead(&call->response);
      call->StartCall();
    }
    absl::MutexLock lock(&mu_);
    std::pair<int32_t*, int32_t> want(&done_, n);
    mu_.Await(absl::Condition(
        +[](std::pair<int32_t*, int32_t>* w) { return *w->first >= w->second; }, &want));
    return latencies_;
  }
  int32_t failures() const { return failures_; }

 private:
  void Done(bool ok, Clock::duration d) {
    absl::MutexLock lock(&mu_);
    ++done_;
    if (!ok) ++failures_;
    latencies_.push_back(std::chrono::duration<double, std::milli>(d).count());
  }
  absl::Mutex mu_;
  int32_t done_ = 0, failures_ = 0;
  std::vector<double> latencies_;
};

}  // namespace
}  // namespace tokenfab

int main(int argc, char** argv) {
  using namespace tokenfab;
  std::string model_path = DefaultModelPath();
  int32_t rate = 1000, requests = 5000;
  FlagSet flags("router_overhead_bench", "Latency the router adds per request.");
  flags.AddString("model", &model_path, "model whose tokenizer the router uses (default: SmolLM2)");
  flags.AddInt("rate", &rate, "requests per second, open loop (default 1000)");
  flags.AddInt("requests", &requests, "requests per side (default 5000)");
  bench::ParseOrExit(flags, argc, argv);
  if (rate < 1 || requests < 1) {
    std::fprintf(stderr, "--rate and --requests must be positive\n");
    return 2;
  }
  auto model = LoadModel(model_path, {.load_weights = false});
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  RouterNodeOptions ro;
  ro.frontend.host = "127.0.0.1";
  ro.frontend.grpc_port = ro.frontend.http_port = ro.frontend.metrics_port = 0;
  ro.internal_host = "127.0.0.1";
  ro.internal_port = 0;
  ro.model_id = "bench";
  auto router = RouterNode::Start(**model, ro);
  if (!router.ok()) return 1;

  InstantWorker worker;
  grpc::ServerBuilder builder;
  int worker_port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &worker_port);
  builder.RegisterService(&worker);
  auto worker_server = builder.BuildAndStart();
  internal::v1::WorkerHello hello;
  hello.set_worker_id("instant");
  hello.set_address(StrCat("127.0.0.1:", worker_port));
  hello.set_role(internal::v1::WORKER_ROLE_BOTH);
  hello.set_max_num_seqs(1 << 20);
  hello.set_model_fingerprint(ModelFingerprint(**model));
  hello.set_kv_wire_version(kKvWireVersion);
  AttachCallbacks callbacks;
  callbacks.load = [] { return internal::v1::WorkerLoadReport(); };
  callbacks.on_refused = [](absl::Status s) {
    std::fprintf(stderr, "refused: %s\n", std::string(s.message()).c_str());
  };
  AttachClient attach(StrCat("127.0.0.1:", (*router)->internal_port()), hello, callbacks);
  while (!attach.attached()) absl::SleepFor(absl::Milliseconds(10));

  // ~100 tokens of text, as the router sees it and as the worker sees it.
  std::string prompt;
  for (int i = 0; i < 8; ++i)
    prompt += "The river ran past the old mill where the children played. ";
  const std::vector<int32_t> ids =
      (*model)->tokenizer->Encode(prompt, (*model)->tokenizer->add_bos_default());

  auto router_channel = grpc::CreateChannel(StrCat("127.0.0.1:", (*router)->frontend().grpc_port()),
                                            grpc::InsecureChannelCredentials());
  auto worker_channel =
      grpc::CreateChannel(StrCat("127.0.0.1:", worker_port), grpc::InsecureChannelCredentials());
  auto router_stub = v1::Generation::NewStub(router_channel);
  auto worker_stub = internal::v1::Worker::NewStub(worker_channel);
  v1::GenerateRequest via_router;
  via_router.set_prompt(prompt);
  via_router.set_max_tokens(1);
  via_router.set_stop_at_eos(false);
  WorkerRequest direct;
  direct.mutable_prompt_ids()->Assign(ids.begin(), ids.end());
  direct.set_max_tokens(1);

  // Warm both paths (connections, allocator).
  const int32_t warm = std::min(requests, 500);
  Load<v1::GenerateResponse>().Run(rate, warm, [&](auto* call) {
    router_stub->async()->Generate(&call->context, &via_router, call);
  });
  std::vector<WorkerRequest> direct_requests(requests + warm, direct);
  for (size_t i = 0; i < direct_requests.size(); ++i)
    direct_requests[i].set_request_id(StrCat("d", i));
  size_t next_direct = 0;
  Load<WorkerOutput>().Run(rate, warm, [&](auto* call) {
    worker_stub->async()->Generate(&call->context, &direct_requests[next_direct++], call);
  });

  Load<v1::GenerateResponse> through;
  const std::vector<double> r = through.Run(rate, requests, [&](auto* call) {
    router_stub->async()->Generate(&call->context, &via_router, call);
  });
  Load<WorkerOutput> straight;
  const std::vector<double> d = straight.Run(rate, requests, [&](auto* call) {
    worker_stub->async()->Generate(&call->context, &direct_requests[next_direct++], call);
  });

  std::printf(
      "# router overhead: %d requests at %d/s open loop, one-token outputs, %zu-token prompts\n",
      requests, rate, ids.size());
  std::printf(
      "# machine: %s, %u hardware threads; client, router and an instant worker in one process, "
      "gRPC over loopback\n",
      bench::CpuName().c_str(), std::thread::hardware_concurrency());
  std::printf("%-34s %9s %9s %9s %9s\n", "path", "p50 ms", "p90 ms", "p99 ms", "failed");
  std::printf("%-34s %9.3f %9.3f %9.3f %9d\n", "client -> router -> worker",
              bench::Percentile(r, 0.5), bench::Percentile(r, 0.9), bench::Percentile(r, 0.99),
              through.failures());
  std::printf("%-34s %9.3f %9.3f %9.3f %9d\n", "client -> worker (peer)", bench::Percentile(d, 0.5),
              bench::Percentile(d, 0.9), bench::Percentile(d, 0.99), straight.failures());
  std::printf("%-34s %9.3f %9.3f %9.3f\n", "router adds",
              bench::Percentile(r, 0.5) - bench::Percentile(d, 0.5),
              bench::Percentile(r, 0.9) - bench::Percentile(d, 0.9),
              bench::Percentile(r, 0.99) - bench::Percentile(d, 0.99));
  router->reset();
  worker_server->Shutdown();
  return 0;
}
