// The planner at work in the router: every interval it takes the load the
// router observed (LoadObserver), asks the Planner for the fleet that meets
// the TTFT and ITL targets at the best tokens per joule, applies it to the
// attached workers (role flips, standby for the surplus, standby workers
// back first when more are needed; never aborting a request), and tells
// external autoscalers: Prometheus gauges (Collect), the JSON of GET
// /v1/planner (StatusJson) and an optional signed webhook per new decision.
//
// Thread-safe; one thread of its own.
#ifndef TOKENFAB_SERVER_PLANNER_LOOP_H_
#define TOKENFAB_SERVER_PLANNER_LOOP_H_

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/collectable.h"
#include "scheduler/cluster.h"
#include "scheduler/load_observer.h"
#include "scheduler/planner.h"
#include "server/planner_webhook.h"

namespace tokenfab {

struct PlannerLoopOptions {
  std::chrono::milliseconds interval{10000};
  // Apply decisions to the attached fleet; false only recommends.
  bool act = true;
  PlannerOptions planner;
  std::optional<WebhookOptions> webhook;
};

class PlannerLoop : public prometheus::Collectable {
 public:
  // `cluster` and `load` must outlive the loop. InvalidArgument for bad
  // options (the planner's, the webhook's, an interval outside 100 ms..1 h).
  static absl::StatusOr<std::unique_ptr<PlannerLoop>> Start(Profile profile,
                                                            PlannerLoopOptions options,
                                                            Cluster* cluster, LoadObserver* load);
  ~PlannerLoop() override;  // Stop()
  // Ends the loop thread (the gauges and JSON stay readable). Idempotent;
  // not from the loop thread.
  void Stop();

  // GET /v1/planner: the last decision, what it was made from, what was
  // done to the fleet, and the SLA tally so far.
  std::string StatusJson() const;
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  PlannerLoop(std::unique_ptr<Planner> planner, PlannerLoopOptions options, Cluster* cluster,
              LoadObserver* load, std::unique_ptr<PlannerWebhook> webhook);
  void Run();
  void Step();

  std::unique_ptr<Planner> planner_;  // the loop thread only
  bool seen_load_ = false;            // the loop thread only
  const PlannerLoopOptions options_;
  Cluster* const cluster_;
  LoadObserver* const load_;
  std::unique_ptr<PlannerWebhook> webhook_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t steps_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t role_changes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t standby_changes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t new_decisions_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  std::optional<PlannerDecision> decision_ ABSL_GUARDED_BY(mu_);
  std::optional<IntervalLoad> observed_ ABSL_GUARDED_BY(mu_);
  FleetAssignment fleet_ ABSL_GUARDED_BY(mu_);
  int64_t decided_at_unix_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_PLANNER_LOOP_H_
