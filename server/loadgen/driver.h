// Runs a workload against a LoadClient: each request is sent at its arrival
// time, or as soon as one of `max_in_flight` slots is free if that is later.
// Arrivals all at 0 make a closed loop of `max_in_flight` users; Poisson
// arrivals with a generous slot count make an open loop.
//
// One thread per slot, each blocking in LoadClient::Send, so the client
// never waits on another request's bookkeeping. The caller's thread blocks
// until every request has finished.
#ifndef TOKENFAB_SERVER_LOADGEN_DRIVER_H_
#define TOKENFAB_SERVER_LOADGEN_DRIVER_H_

#include <vector>

#include "server/loadgen/load_client.h"
#include "server/loadgen/stats.h"

namespace tokenfab::loadgen {

// `arrivals[i]` (seconds after the run starts) is when requests[i] is due;
// requests are started in index order. Records come back in request order,
// their times in seconds since the run's start. `arrivals` must be as long as
// `requests` and non-decreasing; max_in_flight >= 1.
std::vector<RequestRecord> RunLoad(LoadClient& client, const std::vector<LoadRequest>& requests,
                                   const std::vector<double>& arrivals, int max_in_flight);

}  // namespace tokenfab::loadgen

#endif  // TOKENFAB_SERVER_LOADGEN_DRIVER_H_
