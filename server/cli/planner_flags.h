// The router's planner flags, shared by `router` and `serve --workers N`.
#ifndef TOKENFAB_SERVER_CLI_PLANNER_FLAGS_H_
#define TOKENFAB_SERVER_CLI_PLANNER_FLAGS_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "scheduler/profile.h"
#include "server/cli/flags.h"
#include "server/planner_loop.h"

namespace tokenfab {

struct PlannerFlags {
  std::string profile;  // empty: the planner is off
  std::string interval = "10s";
  std::string ttft_target = "2s";
  std::string itl_target = "100ms";
  std::string predictor = "holt";
  std::string mode = "disaggregated";
  bool recommend_only = false;
  int32_t scale_down_intervals = 3;
  std::string webhook;
  std::string webhook_secret_file;
};

void AddPlannerFlags(FlagSet& flags, PlannerFlags* p);
// Checks the flags and reads the profile and the webhook secret.
// `*profile` stays empty when the planner is off.
absl::Status FinishPlannerFlags(const PlannerFlags& p, std::optional<Profile>* profile,
                                PlannerLoopOptions* options);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_CLI_PLANNER_FLAGS_H_
