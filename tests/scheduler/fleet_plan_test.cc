// How the planner's decision lands on the attached fleet: roles kept where
// possible, standby workers back first, the least busy flipped or parked.
#include "scheduler/fleet_plan.h"

#include <map>

#include "gtest/gtest.h"

namespace tokenfab {
namespace {

using internal::v1::WorkerRole;
constexpr WorkerRole kBoth = internal::v1::WORKER_ROLE_BOTH;
constexpr WorkerRole kPrefill = internal::v1::WORKER_ROLE_PREFILL;
constexpr WorkerRole kDecode = internal::v1::WORKER_ROLE_DECODE;

std::vector<FleetMember> Fresh(int n) {  // n workers as they attach: role both
  std::vector<FleetMember> f;
  for (int i = 0; i < n; ++i) f.push_back({"w" + std::to_string(i), kBoth, false, 0});
  return f;
}

// The fleet after the changes.
std::vector<FleetMember> Apply(std::vector<FleetMember> fleet, const FleetAssignment& a) {
  std::map<std::string, const FleetChange*> by_id;
  for (const FleetChange& c : a.changes) by_id[c.id] = &c;
  for (FleetMember& m : fleet) {
    auto it = by_id.find(m.id);
    if (it == by_id.end()) continue;
    if (it->second->role) m.role = *it->second->role;
    if (it->second->standby) m.standby = *it->second->standby;
  }
  return fleet;
}

std::map<std::string, int> Count(const std::vector<FleetMember>& fleet) {
  std::map<std::string, int> c;
  for (const FleetMember& m : fleet) {
    ++c[m.standby            ? "standby"
        : m.role == kPrefill ? "prefill"
        : m.role == kDecode  ? "decode"
                             : "both"];
  }
  return c;
}

TEST(FleetPlanTest, SplitsAFreshFleetAndParksTheRest) {
  const auto fleet = Fresh(8);
  const FleetAssignment a = AssignFleet(fleet, 3, 2, false);
  EXPECT_EQ(a.prefill, 3);
  EXPECT_EQ(a.decode, 2);
  EXPECT_EQ(a.standby, 3);
  EXPECT_EQ(a.missing, 0);
  const auto after = Count(Apply(fleet, a));
  EXPECT_EQ(after.at("prefill"), 3);
  EXPECT_EQ(after.at("decode"), 2);
  EXPECT_EQ(after.at("standby"), 3);
}

TEST(FleetPlanTest, AStableDecisionChangesNothing) {
  auto fleet = Fresh(8);
  fleet = Apply(fleet, AssignFleet(fleet, 3, 2, false));
  EXPECT_TRUE(AssignFleet(fleet, 3, 2, false).changes.empty());
}

TEST(FleetPlanTest, GrowingBringsStandbyWorkersBackBeforeFlippingRoles) {
  auto fleet = Fresh(8);
  fleet = Apply(fleet, AssignFleet(fleet, 3, 2, false));
  const FleetAssignment a = AssignFleet(fleet, 5, 3, false);
  int flips = 0;
  for (const FleetChange& c : a.changes) {
    const FleetMember& before = *std::find_if(fleet.begin(), fleet.end(),
                                              [&](const FleetMember& m) { return m.id == c.id; });
    EXPECT_TRUE(before.standby) << c.id << " was active and changed";
    flips += c.role.has_value();
  }
  EXPECT_EQ(a.changes.size(), 3u);
  EXPECT_EQ(Count(Apply(fleet, a)).at("prefill"), 5);
}

TEST(FleetPlanTest, ShiftingTheSplitFlipsTheLeastBusy) {
  std::vector<FleetMember> fleet = {{"p0", kPrefill, false, 0},
                                    {"p1", kPrefill, false, 0},
                                    {"d0", kDecode, false, 9},
                                    {"d1", kDecode, false, 2},
                                    {"d2", kDecode, false, 5}};
  const FleetAssignment a = AssignFleet(fleet, 3, 2, false);
  ASSERT_EQ(a.changes.size(), 1u);
  EXPECT_EQ(a.changes[0].id, "d1");
  EXPECT_EQ(a.changes[0].role, kPrefill);
  EXPECT_FALSE(a.changes[0].standby.has_value());
}

TEST(FleetPlanTest, ShrinkingParksTheLeastBusyWithoutFlippingRoles) {
  std::vector<FleetMember> fleet = {{"p0", kPrefill, false, 3},
                                    {"p1", kPrefill, false, 0},
                                    {"d0", kDecode, false, 7},
                                    {"d1", kDecode, false, 1}};
  const FleetAssignment a = AssignFleet(fleet, 1, 1, false);
  std::map<std::string, FleetChange> by_id;
  for (const FleetChange& c : a.changes) by_id[c.id] = c;
  ASSERT_EQ(by_id.size(), 2u);
  EXPECT_TRUE(by_id.at("p1").standby.value_or(false));
  EXPECT_TRUE(by_id.at("d1").standby.value_or(false));
  EXPECT_FALSE(by_id.at("p1").role.has_value());
}

TEST(FleetPlanTest, ATooSmallFleetGetsTheDecisionsProportionAndSaysWhatIsMissing) {
  const auto fleet = Fresh(4);
  const FleetAssignment a = AssignFleet(fleet, 6, 2, false);
  EXPECT_EQ(a.missing, 4);
  EXPECT_EQ(a.prefill, 3);
  EXPECT_EQ(a.decode, 1);
  EXPECT_EQ(a.standby, 0);
  const FleetAssignment lone = AssignFleet(Fresh(1), 3, 1, false);
  EXPECT_EQ(lone.decode, 1);
  EXPECT_EQ(lone.prefill, 0);
  EXPECT_TRUE(lone.changes.empty());  // it stays role both and does everything
}

TEST(FleetPlanTest, AggregatedMakesEveryActiveWorkerDoBoth) {
  std::vector<FleetMember> fleet = {{"p0", kPrefill, false, 0},
                                    {"d0", kDecode, false, 4},
                                    {"d1", kDecode, true, 0},
                                    {"b0", kBoth, false, 0}};
  const FleetAssignment a = AssignFleet(fleet, 0, 3, true);
  const auto after = Apply(fleet, a);
  EXPECT_EQ(Count(after).at("both"), 3);
  EXPECT_EQ(Count(after).at("standby"), 1);
  EXPECT_EQ(a.prefill, 0);
  EXPECT_EQ(a.decode, 3);
}

}  // namespace
}  // namespace tokenfab
