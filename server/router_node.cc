#include "server/router_node.h"

#include "common/strings.h"
#include "server/auth_metrics.h"
#include "server/router_metrics.h"
#include "worker/transport/kv_wire.h"

namespace tokenfab {

absl::StatusOr<std::unique_ptr<RouterNode>> RouterNode::Start(
    const LoadedModel& model, const RouterNodeOptions& o,
    std::vector<std::shared_ptr<prometheus::Collectable>> extra_metrics) {
  std::unique_ptr<RouterNode> node(new RouterNode());
  node->cluster_ = std::make_unique<Cluster>(o.routing, ModelFingerprint(model), kKvWireVersion);
  node->stubs_ = std::make_shared<WorkerStubs>(o.cluster_key);
  node->client_ = std::make_unique<ClusterWorkerClient>(node->cluster_.get(), node->stubs_);
  node->request_registry_ = std::make_shared<prometheus::Registry>();
  node->request_metrics_ = std::make_unique<RequestMetrics>(*node->request_registry_);
  RouterOptions ro;
  ro.model_id = o.model_id;
  ro.metrics = node->request_metrics_.get();
  if (o.planner_profile) {
    node->load_ = std::make_unique<LoadObserver>(o.planner.planner.ttft_seconds,
                                                 o.planner.planner.itl_seconds);
    ro.load = node->load_.get();
  }
  node->router_ = std::make_unique<Router>(model, node->client_.get(), ro);

  ClusterWorkerClient* client = node->client_.get();
  RouterNode* raw = node.get();
  node->control_ = std::make_unique<ControlService>(
      node->cluster_.get(), o.cluster_key,
      [client](const std::string& id) { client->WorkerGone(id); },
      [raw] {
        // grpc.health.v1 says NOT_SERVING while no worker can decode, as /health does.
        if (Frontend* f = raw->serving_frontend_.load())
          f->SetServing(raw->cluster_->HasDecodeWorker());
      });
  node->admin_ = std::make_unique<AdminService>(node->cluster_.get(), o.cluster_key);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(StrCat(o.internal_host, ":", o.internal_port),
                           grpc::InsecureServerCredentials(), &node->internal_port_);
  builder.RegisterService(node->control_.get());
  builder.RegisterService(node->admin_.get());
  node->internal_ = builder.BuildAndStart();
  if (!node->internal_ || node->internal_port_ == 0) {
    return absl::UnavailableError(
        StrCat("cannot listen for workers on ", o.internal_host, ":", o.internal_port));
  }
  extra_metrics.push_back(std::make_shared<RouterMetrics>(node->cluster_.get(), client));
  extra_metrics.push_back(node->request_registry_);
  extra_metrics.push_back(std::make_shared<AuthMetrics>(
      NamedKeySets{{"api_key", o.frontend.api_keys}, {"cluster_key", o.cluster_key}}));
  FrontendOptions fo = o.frontend;
  if (o.planner_profile) {
    auto planner =
        PlannerLoop::Start(*o.planner_profile, o.planner, node->cluster_.get(), node->load_.get());
    if (!planner.ok()) return planner.status();
    node->planner_ = std::move(*planner);
    extra_metrics.push_back(node->planner_);
  }
  fo.json_routes["/v1/planner"] = [planner = node->planner_] {
    if (planner == nullptr) {
      return std::string(
          R"({"object":"planner","enabled":false,"error":"the planner is off: start the router with --planner-profile PROFILE.json"})");
    }
    return planner->StatusJson();
  };
  auto frontend = Frontend::Start(node->router_.get(), fo, extra_metrics);
  if (!frontend.ok()) return frontend.status();
  node->frontend_ = std::move(*frontend);
  node->frontend_->SetServing(node->cluster_->HasDecodeWorker());
  node->serving_frontend_ = node->frontend_.get();
  return node;
}

void RouterNode::Shutdown() {
  if (frontend_) frontend_->Shutdown();
}

RouterNode::~RouterNode() {
  serving_frontend_ = nullptr;
  Shutdown();
  // Attach streams end first: their reactors tell the client workers left.
  if (internal_) {
    internal_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
    internal_->Wait();
  }
  control_.reset();
  if (planner_) planner_->Stop();  // its thread orders the cluster about
  client_.reset();  // cancels the worker calls still open and waits for them
  frontend_.reset();
}

}  // namespace tokenfab
