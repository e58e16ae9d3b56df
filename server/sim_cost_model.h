// A simulated worker's step cost from a hardware profile (tokenfab profile):
//  - a prompt chunk of n tokens from position p takes prefill(p + n) -
//    prefill(p) (the whole prompt alone takes exactly prefill(N); later
//    chunks pay the attention over what came before); several chunks add up;
//  - B decode tokens at a mean context C take one decode step(B, C);
//  - a mixed step takes the sum of both.
// Watts: each part's profiled watts, weighted by its seconds.
#ifndef TOKENFAB_SERVER_SIM_COST_MODEL_H_
#define TOKENFAB_SERVER_SIM_COST_MODEL_H_

#include <memory>

#include "scheduler/profile.h"
#include "worker/engine/sim_backend.h"

namespace tokenfab {

SimCostModel ProfileCostModel(std::shared_ptr<const Profile> profile);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_SIM_COST_MODEL_H_
