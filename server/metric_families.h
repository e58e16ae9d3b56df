// Builders for Prometheus families computed at scrape time (from snapshots
// of the engine, the cluster, the power meters), for the Collectables that
// read state owned elsewhere instead of updating metric objects.
#ifndef TOKENFAB_SERVER_METRIC_FAMILIES_H_
#define TOKENFAB_SERVER_METRIC_FAMILIES_H_

#include <string>
#include <utility>
#include <vector>

#include "prometheus/metric_family.h"

namespace tokenfab {

using MetricLabels = std::vector<prometheus::ClientMetric::Label>;
using LabelledValues = std::vector<std::pair<MetricLabels, double>>;

// A counter or gauge family with one sample per entry of `values`.
prometheus::MetricFamily MetricFamilyOf(const std::string& name, const std::string& help,
                                        prometheus::MetricType type, const LabelledValues& values);

// One histogram sample: per-bucket (not cumulative) counts for `bounds`
// plus the +Inf bucket last, and the sum of observations.
struct HistogramValue {
  MetricLabels labels;
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  // bounds.size() + 1
  double sum = 0;
};
prometheus::MetricFamily HistogramFamilyOf(const std::string& name, const std::string& help,
                                           const std::vector<HistogramValue>& values);

// Bucket bounds for request latencies, 5 ms to 60 s at most 25% apart (a
// quantile read from them is within a few percent), round values included.
std::vector<double> LatencyBuckets();

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_METRIC_FAMILIES_H_
