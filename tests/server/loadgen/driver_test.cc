#include "server/loadgen/driver.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace tokenfab::loadgen {
namespace {

// Answers every request after `delay`, counting how many are in flight.
class FakeClient : public LoadClient {
 public:
  explicit FakeClient(std::chrono::milliseconds delay) : delay_(delay) {}
  RequestRecord Send(const LoadRequest& request, Clock::time_point origin) override {
    RequestRecord r;
    r.start_s = SecondsSince(origin);
    const int now = ++in_flight_;
    int seen = max_in_flight_.load();
    while (now > seen && !max_in_flight_.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(delay_);
    r.chunk_times_s = {SecondsSince(origin)};
    r.completion_tokens = request.max_tokens;
    --in_flight_;
    r.done_s = SecondsSince(origin);
    r.ok = true;
    r.error = request.prompt;  // lets the test check the order
    return r;
  }
  absl::StatusOr<std::string> ServedModelId() override { return "fake"; }
  int max_in_flight() const { return max_in_flight_; }

 private:
  const std::chrono::milliseconds delay_;
  std::atomic<int> in_flight_{0};
  std::atomic<int> max_in_flight_{0};
};

std::vector<LoadRequest> Requests(int n) {
  std::vector<LoadRequest> v;
  for (int i = 0; i < n; ++i) v.push_back({.prompt = std::to_string(i), .max_tokens = i + 1});
  return v;
}

TEST(RunLoadTest, ClosedLoopKeepsConcurrencyRequestsInFlight) {
  FakeClient client(std::chrono::milliseconds(20));
  const std::vector<RequestRecord> records =
      RunLoad(client, Requests(12), std::vector<double>(12, 0.0), 3);
  ASSERT_EQ(records.size(), 12u);
  EXPECT_EQ(client.max_in_flight(), 3);
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_TRUE(records[i].ok);
    EXPECT_EQ(records[i].error, std::to_string(i));
    EXPECT_EQ(records[i].completion_tokens, static_cast<int32_t>(i) + 1);
  }
  // 12 requests of 20 ms, 3 at a time: 4 rounds, about 80 ms.
  const double end = records.back().done_s;
  EXPECT_GE(end, 0.075);
}

TEST(RunLoadTest, OpenLoopSendsAtArrivalTimes) {
  FakeClient client(std::chrono::milliseconds(1));
  const std::vector<double> arrivals = {0.0, 0.05, 0.1, 0.15};
  const std::vector<RequestRecord> records = RunLoad(client, Requests(4), arrivals, 16);
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_GE(records[i].start_s, arrivals[i]) << i;
    EXPECT_LT(records[i].start_s, arrivals[i] + 0.04) << i;  // generous for a loaded machine
  }
}

TEST(RunLoadTest, MoreSlotsThanRequests) {
  FakeClient client(std::chrono::milliseconds(1));
  EXPECT_EQ(RunLoad(client, Requests(2), {0, 0}, 100).size(), 2u);
  EXPECT_TRUE(RunLoad(client, {}, {}, 4).empty());
}

}  // namespace
}  // namespace tokenfab::loadgen
