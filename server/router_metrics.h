// The router's own metrics, read at scrape time from the cluster and the
// cluster client: routing decisions, attached workers per role, migrations
// and KV bytes moved between workers.
#ifndef TOKENFAB_SERVER_ROUTER_METRICS_H_
#define TOKENFAB_SERVER_ROUTER_METRICS_H_

#include <vector>

#include "prometheus/collectable.h"
#include "scheduler/cluster.h"
#include "server/cluster_worker_client.h"

namespace tokenfab {

class RouterMetrics : public prometheus::Collectable {
 public:
  RouterMetrics(const Cluster* cluster, const ClusterWorkerClient* client)
      : cluster_(cluster), client_(client) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const Cluster* cluster_;
  const ClusterWorkerClient* client_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_ROUTER_METRICS_H_
