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
  std::vector<double> b;
  for (double x = 0.005; x < 60.0; x *= 1.15) {
    // Three significant digits keep the `le` labels readable.
    const double scale = std::pow(10.0, 2 - std::floor(std::log10(x)));
    b.push_back(std::round(x * scale) / scale);
  }
  b.push_back(60.0);
  return b;
}

}  // namespace tokenfab
