// Disaggregated prefill between two engines in one process, over the real
// tcp transport on loopback: the decode engine's greedy output equals the
// aggregated output token for token (the KV arrived bit-exact), only the
// positions the decode engine lacks are sent, and a failed or abandoned
// remote prefill falls back to local compute without the caller noticing.
#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/strings.h"
#include "gtest/gtest.h"
#include "tests/worker/engine/engine_test_util.h"
#include "worker/transport/tcp_transport.h"
#include "worker/transport_prefiller.h"

namespace tokenfab {
namespace {

using namespace engine_test;  // NOLINT

std::unique_ptr<TcpTransport> Transport() { return std::move(*TcpTransport::Create({})); }

// A prefill worker (engine + transport) and a decode worker whose
// TransportPrefiller reaches it through ServePrefill, as the gRPC Prefill
// call does across processes.
class DisaggPair {
 public:
  explicit DisaggPair(TransportPrefiller::PrefillCall call = nullptr)
      : p_backend_(TinyBackend(256)),
        d_backend_(TinyBackend(256)),
        p_transport_(Transport()),
        d_transport_(Transport()),
        p_engine_(p_backend_.get(), {.scheduler = {.max_num_seqs = 8, .max_batched_tokens = 40}}),
        prefiller_(d_transport_.get(), call ? call : Call(), std::chrono::seconds(10)),
        d_engine_(d_backend_.get(), {.scheduler = {.max_num_seqs = 8, .max_batched_tokens = 64},
                                     .remote_prefiller = &prefiller_}) {}

  TransportPrefiller::PrefillCall Call() {
    return [this](const internal::v1::RemotePrefill&, internal::v1::PrefillRequest request,
                  std::chrono::system_clock::time_point, std::function<void(absl::Status)> reply) {
      ++prefill_calls;
      absl::Status s = ServePrefill(
          p_engine_, *p_transport_, request,
          [reply](absl::StatusOr<internal::v1::PrefillReply> r) { reply(r.status()); });
      if (!s.ok()) reply(s);
      return std::function<void()>([] {});
    };
  }

  Engine& decode() { return d_engine_; }
  Engine& prefill() { return p_engine_; }
  TcpTransport& p_transport() { return *p_transport_; }
  std::atomic<int> prefill_calls{0};

 private:
  std::unique_ptr<CpuBackend> p_backend_, d_backend_;
  std::unique_ptr<TcpTransport> p_transport_, d_transport_;
  Engine p_engine_;
  TransportPrefiller prefiller_;
  Engine d_engine_;
};

WorkerRequest Remote(const std::string& id, const std::vector<int32_t>& prompt, int max_tokens) {
  WorkerRequest r = Request(id, prompt, max_tokens);
  r.mutable_remote_prefill()->set_worker_id("p");
  r.mutable_remote_prefill()->set_address("in-process");
  return r;
}

TEST(DisaggEngineTest, GreedyOutputEqualsAggregatedOnTenPrompts) {
  Collector c;
  DisaggPair pair;
  for (int i = 0; i < 10; ++i) {
    const std::string id = StrCat("r", i);
    ASSERT_TRUE(pair.decode().Submit(Remote(id, Prompt(100 + i, 20 + 19 * i), 12), c.For(id)).ok());
  }
  c.WaitFor(10);
  auto results = c.results();
  for (int i = 0; i < 10; ++i) {
    const auto& r = results[StrCat("r", i)];
    EXPECT_EQ(r.finish, internal::v1::WORKER_FINISH_LENGTH);
    EXPECT_EQ(r.tokens, Alone(Prompt(100 + i, 20 + 19 * i), 12)) << "prompt " << i;
    EXPECT_EQ(r.final.prompt_tokens(), 20 + 19 * i);
  }
  const EngineStats d = pair.decode().Stats();
  EXPECT_EQ(d.remote_prefills_ok, 10);
  EXPECT_EQ(d.remote_prefills_failed, 0);
  EXPECT_EQ(pair.prefill().Stats().kv_exports, 10);
  // The decode engine computed only each prompt's last token, then decoded.
  EXPECT_EQ(d.prefill_tokens, 10);
  EXPECT_EQ(d.kv_blocks_used, 0);
  EXPECT_EQ(pair.prefill().Stats().kv_blocks_used, 0);
}

TEST(DisaggEngineTest, OnlyPositionsTheDecodeWorkerLacksAreSent) {
  Collector c;
  DisaggPair pair;
  const std::vector<int32_t> base = Prompt(7, 64);
  ASSERT_TRUE(pair.decode().Submit(Remote("a", base, 4), c.For("a")).ok());
  c.WaitFor(1);
  const int64_t after_first = pair.p_transport().Stats().bytes_sent;
  std::vector<int32_t> longer = base;
  for (int32_t t : Prompt(8, 40)) longer.push_back(t);
  ASSERT_TRUE(pair.decode().Submit(Remote("b", longer, 6), c.For("b")).ok());
  c.WaitFor(2);
  // The decode worker holds the 64-token prefix (4 blocks) from "a"; the
  // prefill worker sends positions 64..102 (103 = all but the last).
  const int64_t per_position =
      pair.decode().kv_layout().PositionBytes() * pair.decode().kv_layout().num_layers;
  EXPECT_EQ(after_first, 63 * per_position);
  EXPECT_EQ(pair.p_transport().Stats().bytes_sent - after_first, (103 - 64) * per_position);
  EXPECT_EQ(c.results()["b"].tokens, Alone(longer, 6));
  EXPECT_EQ(c.results()["b"].final.cached_tokens(), 64);
}

TEST(DisaggEngineTest, AFailedRemotePrefillIsRecomputedLocally) {
  Collector c;
  DisaggPair pair([](const internal::v1::RemotePrefill&, internal::v1::PrefillRequest,
                     std::chrono::system_clock::time_point,
                     std::function<void(absl::Status)> reply) {
    reply(absl::UnavailableError("the prefill worker is gone"));
    return std::function<void()>([] {});
  });
  for (int i = 0; i < 4; ++i) {
    const std::string id = StrCat("r", i);
    ASSERT_TRUE(pair.decode().Submit(Remote(id, Prompt(i, 50 + 10 * i), 8), c.For(id)).ok());
  }
  c.WaitFor(4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(c.results()[StrCat("r", i)].tokens, Alone(Prompt(i, 50 + 10 * i), 8));
  }
  EXPECT_EQ(pair.decode().Stats().remote_prefills_failed, 4);
  EXPECT_EQ(pair.decode().Stats().kv_blocks_used, 0);
}

TEST(DisaggEngineTest, CancellingARequestWaitingForKvFreesItsBlocks) {
  Collector c;
  std::atomic<int> cancelled{0};
  absl::Notification called;
  DisaggPair pair([&](const internal::v1::RemotePrefill&, internal::v1::PrefillRequest,
                      std::chrono::system_clock::time_point, std::function<void(absl::Status)>) {
    called.Notify();  // never replies: a prefill worker that hangs
    return std::function<void()>([&] { ++cancelled; });
  });
  ASSERT_TRUE(pair.decode().Submit(Remote("x", Prompt(3, 90), 8), c.For("x")).ok());
  ASSERT_TRUE(called.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // The engine publishes its stats at the end of the step that started the call.
  for (int i = 0; i < 1000 && pair.decode().Stats().kv_blocks_used == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_GT(pair.decode().Stats().kv_blocks_used, 0);
  pair.decode().Cancel("x");
  c.WaitFor(1);
  EXPECT_EQ(c.results()["x"].finish, internal::v1::WORKER_FINISH_CANCELLED);
  EXPECT_EQ(pair.decode().Stats().kv_blocks_used, 0);
  EXPECT_EQ(cancelled.load(), 1);
}

}  // namespace
}  // namespace tokenfab
