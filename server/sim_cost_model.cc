#include "server/sim_cost_model.h"

#include <algorithm>

namespace tokenfab {

SimCostModel ProfileCostModel(std::shared_ptr<const Profile> profile) {
  return [profile = std::move(profile)](const SimStepShape& shape) {
    auto prefill = [&](int32_t tokens) {
      return tokens <= 0 ? 0.0 : profile->PrefillSeconds(tokens);
    };
    double seconds = 0, joules = 0;
    for (const auto& [start, n] : shape.prefill_chunks) {
      const double s = std::max(0.0, prefill(start + n) - prefill(start));
      seconds += s;
      joules += s * profile->PrefillWatts(start + n);
    }
    if (!shape.decode_contexts.empty()) {
      double context = 0;
      for (int32_t c : shape.decode_contexts) context += c;
      const int32_t batch = static_cast<int32_t>(shape.decode_contexts.size());
      const int32_t mean = static_cast<int32_t>(context / batch + 0.5);
      const double s = profile->DecodeStepSeconds(batch, mean);
      seconds += s;
      joules += s * profile->DecodeWatts(batch, mean);
    }
    SimStepCost cost;
    cost.seconds = seconds;
    cost.watts = seconds > 0 ? joules / seconds : profile->idle_watts;
    return cost;
  };
}

}  // namespace tokenfab
