// The routing policy's flags, shared by `router` and `serve --workers N`.
#ifndef TOKENFAB_SERVER_CLI_ROUTING_FLAGS_H_
#define TOKENFAB_SERVER_CLI_ROUTING_FLAGS_H_

#include "absl/status/status.h"
#include "scheduler/cluster.h"
#include "server/cli/flags.h"

namespace tokenfab {

void AddRoutingFlags(FlagSet& flags, RoutingOptions* r, int32_t* worker_timeout_ms,
                     int32_t* max_prefill_queue);
// Checks them and stores the converted values into `r`.
absl::Status FinishRoutingFlags(RoutingOptions* r, int32_t worker_timeout_ms,
                                int32_t max_prefill_queue);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_CLI_ROUTING_FLAGS_H_
