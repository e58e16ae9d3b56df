#include "server/metric_families.h"

#include <cmath>

namespace tokenfab {

prometheus::MetricFamily MetricFamilyOf(const std::string& name, const std::string& help,
                                        prometheus::MetricType type, const LabelledValues& values) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  for (const auto& [labels, value] : values) {
    prometheus::ClientMetric m;
    m.label = labels;
    if (type == prometheus::MetricType::Counter) {
      m.counter.value = value;
    } else {
      m.gauge.value = value;
    }
    f.metric.push_back(std::move(m));
  }
  return f;
}

prometheus::MetricFamily HistogramFamilyOf(const std::string& name, const std::string& help,
                                           const std::vector<HistogramValue>& values) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = prometheus::MetricType::Histogram;
  for (const HistogramValue& v : values) {
    prometheus::ClientMetric m;
    m.label = v.labels;
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= v.bounds.size() && i < v.counts.size(); ++i) {
      cumulative += v.counts[i];
      prometheus::ClientMetric::Bucket b;
      b.cumulative_count = cumulative;
      b.upper_bound = i < v.bounds.size() ? v.bounds[i] : std::numeric_limits<double>::infinity();
      m.histogram.bucket.push_back(b);
    }
    m.histogram.sample_count = cumulative;
    m.histogram.sample_sum = v.sum;
    f.metric.push_back(std::move(m));
  }
  return f;
}

std::vector<double> LatencyBuckets() {
  // 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9 per decade: at
  // most 25% apart, and round SLA targets (50 ms, 0.2 s, 0.5 s, 1 s ...) are
  // bounds, so the share of requests under a target is exact.
  static const double kSteps[] = {1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9};
  std::vector<double> b = {0.005, 0.006, 0.007, 0.008, 0.009};
  for (double decade : {0.01, 0.1, 1.0, 10.0}) {
    for (double step : kSteps) {
      // Rounded so the `le` labels read as written (0.0175, not 0.017499...).
      const double v = std::round(decade * step * 1e4) / 1e4;
      if (v <= 60.0) b.push_back(v);
    }
  }
  return b;
}

}  // namespace tokenfab
