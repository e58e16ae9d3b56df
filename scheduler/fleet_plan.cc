#include "scheduler/fleet_plan.h"

#include <algorithm>
#include <cmath>

namespace tokenfab {
namespace {

using internal::v1::WorkerRole;
constexpr WorkerRole kBoth = internal::v1::WORKER_ROLE_BOTH;
constexpr WorkerRole kPrefill = internal::v1::WORKER_ROLE_PREFILL;
constexpr WorkerRole kDecode = internal::v1::WORKER_ROLE_DECODE;

}  // namespace

FleetAssignment AssignFleet(std::span<const FleetMember> fleet, int64_t prefill, int64_t decode,
                            bool aggregated) {
  const int64_t n = static_cast<int64_t>(fleet.size());
  prefill = std::max<int64_t>(prefill, 0);
  decode = std::max<int64_t>(decode, 1);
  FleetAssignment out;
  int64_t want_prefill = aggregated ? 0 : prefill;
  int64_t want_decode = decode;
  out.missing = std::max<int64_t>(0, want_prefill + want_decode - n);
  WorkerRole decode_role = aggregated ? kBoth : kDecode;
  if (out.missing > 0 && !aggregated) {
    if (n <= 1) {
      want_prefill = 0;
      want_decode = n;
      decode_role = kBoth;
    } else {
      const double share = static_cast<double>(prefill) / static_cast<double>(prefill + decode);
      want_prefill = std::clamp<int64_t>(std::llround(share * static_cast<double>(n)),
                                         prefill > 0 ? 1 : 0, n - 1);
      want_decode = n - want_prefill;
    }
  } else if (out.missing > 0) {
    want_decode = n;
  }

  // Each worker's new place: 0 prefill, 1 decode, 2 standby.
  std::vector<int> place(fleet.size(), -1);
  // Picks `count` unplaced workers for `slot`, by ascending `rank` (lower
  // is a better fit; 0 is "already there"). Among those already there the
  // busiest stay; among the others the least busy move.
  auto pick = [&](int slot, int64_t count, auto rank) {
    std::vector<size_t> order;
    for (size_t i = 0; i < fleet.size(); ++i) {
      if (place[i] < 0) order.push_back(i);
    }
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      const int ra = rank(fleet[a]), rb = rank(fleet[b]);
      if (ra != rb) return ra < rb;
      return ra == 0 ? fleet[a].active_requests > fleet[b].active_requests
                     : fleet[a].active_requests < fleet[b].active_requests;
    });
    for (size_t k = 0; k < order.size() && count > 0; ++k, --count) place[order[k]] = slot;
  };
  auto is_active = [](const FleetMember& m, WorkerRole role) {
    return !m.standby && m.role == role;
  };
  pick(0, want_prefill, [&](const FleetMember& m) {
    if (is_active(m, kPrefill)) return 0;
    if (m.standby) return 1;
    return is_active(m, kBoth) ? 2 : 3;
  });
  pick(1, want_decode, [&](const FleetMember& m) {
    if (is_active(m, decode_role)) return 0;
    if (!m.standby && (m.role == kDecode || m.role == kBoth)) return 1;
    if (m.standby) return 2;
    return 3;
  });
  for (size_t i = 0; i < fleet.size(); ++i) {
    const FleetMember& m = fleet[i];
    if (place[i] < 0) place[i] = 2;
    FleetChange c;
    c.id = m.id;
    if (place[i] == 2) {
      ++out.standby;
      if (!m.standby) c.standby = true;
    } else {
      const WorkerRole role = place[i] == 0 ? kPrefill : decode_role;
      ++(place[i] == 0 ? out.prefill : out.decode);
      if (m.standby) c.standby = false;
      if (m.role != role) c.role = role;
    }
    if (c.role || c.standby) out.changes.push_back(std::move(c));
  }
  return out;
}

}  // namespace tokenfab
