#include "server/auth_metrics.h"

#include "server/metric_families.h"

namespace tokenfab {

std::vector<prometheus::MetricFamily> AuthMetrics::Collect() const {
  using prometheus::MetricType;
  LabelledValues keys, refusals, reloads, refused_files;
  for (const auto& [secret, set] : secrets_) {
    const KeyStats s = set.stats();
    keys.push_back({{{"secret", secret}}, static_cast<double>(s.keys)});
    refusals.push_back(
        {{{"secret", secret}, {"reason", "missing"}}, static_cast<double>(s.refused_missing)});
    refusals.push_back(
        {{{"secret", secret}, {"reason", "invalid"}}, static_cast<double>(s.refused_invalid)});
    reloads.push_back({{{"secret", secret}, {"result", "ok"}}, static_cast<double>(s.reloads)});
    reloads.push_back(
        {{{"secret", secret}, {"result", "error"}}, static_cast<double>(s.reload_errors)});
    refused_files.push_back({{{"secret", secret}}, s.file_refused ? 1.0 : 0.0});
  }
  return {
      MetricFamilyOf("tokenfab_auth_keys", "Keys this secret admits now; 0: it is open.",
                     MetricType::Gauge, keys),
      MetricFamilyOf("tokenfab_auth_refusals_total", "Calls refused for a missing or invalid key.",
                     MetricType::Counter, refusals),
      MetricFamilyOf("tokenfab_auth_key_reloads_total",
                     "Changes of the key file taken (ok), or refused with the old keys kept "
                     "(error).",
                     MetricType::Counter, reloads),
      MetricFamilyOf("tokenfab_auth_key_file_refused",
                     "1 while the key file holds what was refused, with older keys in force.",
                     MetricType::Gauge, refused_files),
  };
}

}  // namespace tokenfab
