// Prometheus families for a process's secrets (auth.h), read at scrape time:
//   tokenfab_auth_keys{secret}                     keys admitted now (0: open)
//   tokenfab_auth_refusals_total{secret, reason}   calls refused: missing, invalid
//   tokenfab_auth_key_reloads_total{secret, result} file changes taken (ok) or refused (error)
//   tokenfab_auth_key_file_refused{secret}         1 while the file holds what was refused
// `secret` is "api_key" or "cluster_key". Every sample is there from the
// start, so rate() and alerts work before the first refusal.
#ifndef TOKENFAB_SERVER_AUTH_METRICS_H_
#define TOKENFAB_SERVER_AUTH_METRICS_H_

#include <string>
#include <utility>
#include <vector>

#include "prometheus/collectable.h"
#include "server/auth.h"
#include "server/metric_families.h"

namespace tokenfab {

// A process's secrets: (the `secret` label, the set).
using NamedKeySets = std::vector<std::pair<std::string, KeySet>>;

class AuthMetrics : public prometheus::Collectable {
 public:
  // `labels` go on every sample (a worker's WorkerLabels, so a simulated
  // worker's page says so throughout).
  explicit AuthMetrics(NamedKeySets secrets, MetricLabels labels = {})
      : secrets_(std::move(secrets)), labels_(std::move(labels)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const NamedKeySets secrets_;
  const MetricLabels labels_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_AUTH_METRICS_H_
