#include "server/auth_metrics.h"

#include "server/metric_families.h"

namespace tokenfab {

std::vector<prometheus::MetricFamily> AuthMetrics::Collect() const {
  using prometheus::MetricType;
  LabelledValues keys, refusals, reloads, refused_files;
  for (const auto& [secret, set] : secrets_) {
    const KeyStats s = set.stats();
    // The process's labels, then the secret's, then the sample's.
    auto with = [&](std::vector<std::pair<std::string, std::string>> more) {
      MetricLabels l = labels_;
      l.push_back({"secret", secret});
      for (auto& [name, value] : more) l.push_back({std::move(name), std::move(value)});
      return l;
    };
    keys.push_back({with({}), static_cast<double>(s.keys)});
    refusals.push_back({with({{"reason", "missing"}}), static_cast<double>(s.refused_missing)});
    refusals.push_back({with({{"reason", "invalid"}}), static_cast<double>(s.refused_invalid)});
    reloads.push_back({with({{"result", "ok"}}), static_cast<double>(s.reloads)});
    reloads.push_back({with({{"result", "error"}}), static_cast<double>(s.reload_errors)});
    refused_files.push_back({with({}), s.file_refused ? 1.0 : 0.0});
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
