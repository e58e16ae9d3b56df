// A hardware profile: what one worker of a given model on given hardware
// does, measured by `tokenfab profile` and read by the planner, `tokenfab
// plan` and the simulated backend. Prefill: seconds and watts to compute a
// prompt of N tokens alone. Decode: seconds per step and watts with B
// sequences at a context of C tokens. Between measured points figures are
// interpolated linearly (bilinearly for decode); beyond them, extrapolated
// from the last two points, never below zero.
//
// JSON, schema "tokenfab.profile/1" (README, "Profiles"). Every field is
// checked on load: a profile is a file from anywhere.
#ifndef TOKENFAB_SCHEDULER_PROFILE_H_
#define TOKENFAB_SCHEDULER_PROFILE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tokenfab {

struct PrefillPoint {
  int32_t prompt_tokens = 0;
  double seconds = 0;  // the whole prompt, batch of one, chunked as the engine does
  double watts = 0;
};

struct DecodePoint {
  int32_t batch = 0;
  int32_t context = 0;      // tokens in each sequence's KV
  double step_seconds = 0;  // one step: one token for each of `batch` sequences
  double watts = 0;
};

struct Profile {
  static constexpr std::string_view kSchema = "tokenfab.profile/1";

  std::string model;         // model id
  std::string architecture;  // e.g. llama
  std::string device;        // cpu, cuda:0
  std::string hardware;      // CPU or GPU name, threads
  std::string power_source;  // nvml, rapl, model
  std::string measured_at;   // UTC
  int32_t threads = 0;
  int32_t block_size = 16;
  int64_t kv_blocks = 0;  // KV cache of one worker
  int32_t max_num_seqs = 0;
  int32_t max_batched_tokens = 0;
  double idle_watts = 0;
  std::vector<PrefillPoint> prefill;  // ascending prompt_tokens
  std::vector<DecodePoint> decode;    // a full grid of batches x contexts

  double PrefillSeconds(int32_t prompt_tokens) const;
  double PrefillWatts(int32_t prompt_tokens) const;
  double DecodeStepSeconds(int32_t batch, int32_t context) const;
  double DecodeWatts(int32_t batch, int32_t context) const;
  // The measured batch sizes and contexts, ascending.
  std::vector<int32_t> DecodeBatches() const;
  std::vector<int32_t> DecodeContexts() const;
};

// InvalidArgument naming the field for anything missing, of the wrong type,
// out of range, unsorted or not a full decode grid.
absl::StatusOr<Profile> ParseProfile(std::string_view json);
absl::StatusOr<Profile> ReadProfile(const std::string& path);
std::string ProfileToJson(const Profile& profile);

}  // namespace tokenfab

#endif  // TOKENFAB_SCHEDULER_PROFILE_H_
