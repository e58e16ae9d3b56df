#include "server/control_service.h"

#include <cstdio>
#include <deque>

#include "common/random.h"
#include "server/grpc_service.h"

namespace tokenfab {
namespace {

using internal::v1::RouterOrder;
using internal::v1::WorkerReport;

class AttachReactor : public grpc::ServerBidiReactor<WorkerReport, RouterOrder> {
 public:
  AttachReactor(Cluster* cluster, uint64_t router_id, const ControlService::GoneCallback* on_gone)
      : cluster_(cluster), router_id_(router_id), on_gone_(on_gone) {
    StartRead(&report_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The worker's stream ended (it exited, crashed or was cut off).
      if (session_ != 0) {
        cluster_->Detach(id_, session_);
        std::fprintf(stderr, "tokenfab router: worker %s detached\n", id_.c_str());
        (*on_gone_)(id_);
      }
      Close(grpc::Status::OK);
      return;
    }
    const auto now = Cluster::Clock::now();
    if (session_ == 0) {
      if (!report_.has_hello()) {
        Close(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first report must be a hello"));
        return;
      }
      absl::StatusOr<uint64_t> session = cluster_->Attach(report_.hello(), now);
      if (!session.ok()) {
        std::fprintf(stderr, "tokenfab router: refused worker %s: %s\n",
                     report_.hello().worker_id().c_str(),
                     std::string(session.status().message()).c_str());
        Close(ToGrpcStatus(session.status()));
        return;
      }
      session_ = *session;
      id_ = report_.hello().worker_id();
      std::fprintf(stderr,
                   "tokenfab router: worker %s attached at %s as %s (backend=%s, %d KV blocks, %d "
                   "cached)\n",
                   id_.c_str(), report_.hello().address().c_str(), RoleName(report_.hello().role()),
                   report_.hello().backend().empty() ? "cpu" : report_.hello().backend().c_str(),
                   report_.hello().kv_blocks_total(), report_.hello().cached_block_hashes_size());
      RouterOrder welcome;
      welcome.mutable_welcome()->set_role(report_.hello().role());
      welcome.mutable_welcome()->set_router_id(router_id_);
      Send(std::move(welcome));
    } else {
      const bool known = report_.has_load()
                             ? cluster_->ReportLoad(id_, session_, report_.load(), now)
                             : cluster_->ApplyKvEvents(id_, session_, report_.kv_events(), now);
      if (!known) {
        // Expired while silent: make it attach again, with a fresh snapshot.
        session_ = 0;
        Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "expired: attach again"));
        return;
      }
    }
    // Orders from the admin service ride on the next report.
    const Cluster::Orders orders = cluster_->TakeOrders(id_, session_);
    if (orders.role) {
      RouterOrder o;
      o.mutable_set_role()->set_role(*orders.role);
      Send(std::move(o));
    }
    if (orders.drain) {
      RouterOrder o;
      o.mutable_drain();
      Send(std::move(o));
    }
    report_.Clear();
    StartRead(&report_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (ok) WriteNextLocked();
  }

  void OnDone() override { delete this; }

 private:
  void Send(RouterOrder order) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(order));
    WriteNextLocked();
  }
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || closed_ || queue_.empty()) return;
    current_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    StartWrite(&current_);
  }
  void Close(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
    }
    Finish(status);
  }

  Cluster* cluster_;
  const uint64_t router_id_;
  const ControlService::GoneCallback* on_gone_;
  WorkerReport report_;
  std::string id_;
  uint64_t session_ = 0;
  absl::Mutex mu_;
  std::deque<RouterOrder> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  RouterOrder current_;
};

}  // namespace

ControlService::ControlService(Cluster* cluster, KeySet cluster_key, GoneCallback on_gone,
                               std::function<void()> on_tick)
    : cluster_(cluster),
      cluster_key_(std::move(cluster_key)),
      router_id_(RandomU64()),
      on_gone_(std::move(on_gone)),
      on_tick_(std::move(on_tick)) {
  reaper_ = std::thread([this] { Reap(); });
}

ControlService::~ControlService() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  reaper_.join();
}

void ControlService::Reap() {
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(200))) {
    mu_.Unlock();
    for (const std::string& id : cluster_->Expire(Cluster::Clock::now())) {
      std::fprintf(stderr, "tokenfab router: worker %s stopped reporting; dropped\n", id.c_str());
      on_gone_(id);
    }
    if (on_tick_) on_tick_();
    mu_.Lock();
  }
}

grpc::ServerBidiReactor<WorkerReport, RouterOrder>* ControlService::Attach(
    grpc::CallbackServerContext* context) {
  if (grpc::Status s = Authorize(cluster_key_, kClusterKey, *context); !s.ok()) {
    return new RefusedCall<grpc::ServerBidiReactor<WorkerReport, RouterOrder>>(s);
  }
  return new AttachReactor(cluster_, router_id_, &on_gone_);
}

grpc::ServerUnaryReactor* AdminService::ListWorkers(grpc::CallbackServerContext* context,
                                                    const internal::v1::ListWorkersRequest*,
                                                    internal::v1::ListWorkersResponse* response) {
  if (auto* refused = RefuseUnary(cluster_key_, kClusterKey, context)) return refused;
  for (internal::v1::WorkerInfo& w : cluster_->Workers()) *response->add_workers() = std::move(w);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::SetWorkerRole(
    grpc::CallbackServerContext* context, const internal::v1::SetWorkerRoleRequest* request,
    internal::v1::SetWorkerRoleResponse*) {
  if (auto* refused = RefuseUnary(cluster_key_, kClusterKey, context)) return refused;
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(cluster_->SetRole(request->worker_id(), request->role())));
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::DrainWorker(grpc::CallbackServerContext* context,
                                                    const internal::v1::DrainWorkerRequest* request,
                                                    internal::v1::DrainWorkerResponse*) {
  if (auto* refused = RefuseUnary(cluster_key_, kClusterKey, context)) return refused;
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(cluster_->SetDraining(request->worker_id())));
  return reactor;
}

}  // namespace tokenfab
