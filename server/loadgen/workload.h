// The requests `tokenfab bench` sends: prompts of an exact token length under
// the served model's tokenizer, and when they are sent (all at once for a
// closed loop, Poisson arrivals for an open loop). Pure functions of their
// inputs and seed, so a run can be repeated request for request.
#ifndef TOKENFAB_SERVER_LOADGEN_WORKLOAD_H_
#define TOKENFAB_SERVER_LOADGEN_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/tokenizer/tokenizer.h"

namespace tokenfab::loadgen {

// `count` distinct texts, each exactly `tokens` tokens long as the server
// counts a raw prompt (Encode with the model's default BOS). Text i starts
// with a numbered tag, so no two prompts share their first 16-token block
// (a prefix cache cannot reuse one request's work for another), followed by
// English prose from a built-in corpus, starting at a seeded offset.
// InvalidArgument if `tokens` is too small to hold the tag (under 8).
absl::StatusOr<std::vector<std::string>> BuildPrompts(const Tokenizer& tokenizer, int32_t count,
                                                      int32_t tokens, uint64_t seed);

// Send times in seconds from the run's start: `count` arrivals of a Poisson
// process of `rate` requests/s (exponential gaps; the first arrival at 0).
// rate <= 0 means all at 0 (a closed loop sends as soon as a slot is free).
std::vector<double> ArrivalTimes(int32_t count, double rate, uint64_t seed);

}  // namespace tokenfab::loadgen

#endif  // TOKENFAB_SERVER_LOADGEN_WORKLOAD_H_
