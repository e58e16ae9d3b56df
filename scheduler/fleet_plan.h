// How the planner applies a decision to the fleet it has: which attached
// workers prefill, which decode and which stand by. Workers are
// homogeneous, so a role is a routing choice the router can flip at any
// time (SetRole); a worker put on standby gets no new requests and finishes
// the ones it has (a drain the planner can undo). An external autoscaler
// sees the difference between the decision and the fleet in the planner's
// gauges and adds or removes workers.
//
// Changes are kept few: a worker keeps its role where it can; standby
// workers come back before active ones change role; the workers flipped or
// parked are those with the fewest requests in flight.
#ifndef TOKENFAB_SCHEDULER_FLEET_PLAN_H_
#define TOKENFAB_SCHEDULER_FLEET_PLAN_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tokenfab/internal/v1/control.pb.h"

namespace tokenfab {

struct FleetMember {
  std::string id;
  internal::v1::WorkerRole role = internal::v1::WORKER_ROLE_BOTH;
  bool standby = false;
  int64_t active_requests = 0;
};

struct FleetChange {
  std::string id;
  std::optional<internal::v1::WorkerRole> role;  // set when it changes
  std::optional<bool> standby;                   // set when it changes
};

struct FleetAssignment {
  std::vector<FleetChange> changes;
  int64_t prefill = 0;  // active workers per role after the changes
  int64_t decode = 0;   // decode or both
  int64_t standby = 0;
  int64_t missing = 0;  // workers the decision wants beyond the fleet
};

// `aggregated`: every active worker is role both and `decode` of them are
// wanted (`prefill` is ignored). Otherwise `prefill` prefill workers and
// `decode` decode workers; a fleet too small for both gets them in the
// decision's proportion, at least one of each where it has two workers,
// and a lone worker does both.
FleetAssignment AssignFleet(std::span<const FleetMember> fleet, int64_t prefill, int64_t decode,
                            bool aggregated);

}  // namespace tokenfab

#endif  // TOKENFAB_SCHEDULER_FLEET_PLAN_H_
