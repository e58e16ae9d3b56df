#include "scheduler/load_observer.h"

#include "gtest/gtest.h"

namespace tokenfab {
namespace {

using Clock = LoadObserver::Clock;

TEST(LoadObserverTest, AnIntervalsRateLengthsAndLatencies) {
  const Clock::time_point t0 = Clock::now();
  LoadObserver o(/*ttft=*/1.0, /*itl=*/0.1, t0);
  o.Arrived(100);
  o.Arrived(300);
  o.Refused();  // demand, with no prompt read
  o.Ended(true, 10, 0.5, 0.05);
  o.Ended(true, 30, 2.0, 0.2);
  const IntervalLoad l = o.Take(t0 + std::chrono::seconds(2));
  EXPECT_DOUBLE_EQ(l.seconds, 2.0);
  EXPECT_EQ(l.requests, 3);
  EXPECT_DOUBLE_EQ(l.mean_isl, 200);
  EXPECT_DOUBLE_EQ(l.mean_osl, 20);
  EXPECT_DOUBLE_EQ(*l.observed_ttft, 1.25);
  EXPECT_DOUBLE_EQ(*l.observed_itl, 0.125);
  // The next interval starts empty.
  const IntervalLoad next = o.Take(t0 + std::chrono::seconds(5));
  EXPECT_DOUBLE_EQ(next.seconds, 3.0);
  EXPECT_EQ(next.requests, 0);
  EXPECT_FALSE(next.observed_ttft.has_value());
}

TEST(LoadObserverTest, TotalsCountTargetsMetAndFailures) {
  LoadObserver o(1.0, 0.1);
  o.Ended(true, 10, 0.5, 0.05);          // both met
  o.Ended(true, 10, 1.5, 0.05);          // TTFT missed
  o.Ended(true, 10, 0.5, 0.5);           // ITL missed
  o.Ended(true, 1, 0.9, std::nullopt);   // one token: no ITL to miss
  o.Ended(false, 3, 0.2, std::nullopt);  // cancelled or failed
  o.Refused();
  const LoadObserver::Totals t = o.totals();
  EXPECT_EQ(t.completed, 4);
  EXPECT_EQ(t.failed, 1);
  EXPECT_EQ(t.refused, 1);
  EXPECT_EQ(t.met_ttft, 3);
  EXPECT_EQ(t.met_itl, 3);
  EXPECT_EQ(t.met_both, 2);
}

}  // namespace
}  // namespace tokenfab
