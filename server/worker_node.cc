#include "server/worker_node.h"

#include <algorithm>
#include <cstdio>

#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "scheduler/cluster.h"
#include "server/grpc_service.h"
#include "server/health.h"
#include "server/sim_cost_model.h"
#include "server/worker_stubs.h"
#include "worker/engine/backend_factory.h"
#include "worker/engine/cuda_module.h"
#include "worker/engine/sim_backend.h"
#include "worker/engine_energy.h"
#include "worker/power/sim_power_meter.h"
#include "worker/transport/kv_wire.h"
#include "worker/transport/tcp_transport.h"

namespace tokenfab {
namespace {

constexpr char kWorkerService[] = "tokenfab.internal.v1.Worker";

absl::Status CheckOptions(const WorkerNodeOptions& o) {
  if (o.router.empty()) return absl::InvalidArgumentError("--router HOST:PORT is required");
  RETURN_IF_ERROR(ParseRouterList(o.router).status());
  const bool gpu = o.engine.device != "cpu";
  if (gpu) {
    RETURN_IF_ERROR(ParseCudaDevice(o.engine.device).status());
    if (o.backend != "cuda") {
      return absl::InvalidArgumentError(
          StrCat("--device ", o.engine.device, " runs the cuda backend, not --backend ",
                 o.backend));
    }
  } else if (o.backend == "cuda") {
    return absl::InvalidArgumentError("--backend cuda needs --device cuda:N");
  }
  if (o.transport == "nccl" && !gpu) {
    return absl::InvalidArgumentError(
        "--transport nccl moves KV between GPU workers; a --device cpu worker uses "
        "--transport tcp");
  }
  if (o.transport == "nccl" && (o.nccl_max_peers < 1 || o.nccl_max_peers > 1024)) {
    return absl::InvalidArgumentError(
        StrCat("--nccl-max-peers must be 1 to 1024, got ", o.nccl_max_peers));
  }
  if (o.transport != "tcp" && o.transport != "nccl") {
    return absl::InvalidArgumentError(
        StrCat("--transport must be tcp or nccl, got '", o.transport, "'"));
  }
  if (o.engine.threads < 1 || o.engine.threads > 1024) {
    return absl::InvalidArgumentError(
        StrCat("--threads must be between 1 and 1024, got ", o.engine.threads));
  }
  if (o.backend == "sim") {
    if (o.sim_profile == nullptr) {
      return absl::InvalidArgumentError("--backend sim needs --profile PROFILE.json");
    }
    if (o.sim_profile->kv_blocks < 1 || o.sim_profile->kv_blocks > (1 << 30)) {
      return absl::InvalidArgumentError(StrCat("the profile's kv_blocks (",
                                               o.sim_profile->kv_blocks,
                                               ") is out of range for a simulated worker"));
    }
  } else if (o.backend != "cpu" && o.backend != "cuda") {
    return absl::InvalidArgumentError(
        StrCat("--backend must be cpu or sim, got '", o.backend, "'"));
  }
  if (o.kv_port < 0 || o.kv_port > 65535) {
    return absl::InvalidArgumentError(StrCat("--kv-port must be 0 to 65535, got ", o.kv_port));
  }
  if (o.listen.rfind(':') == std::string::npos) {
    return absl::InvalidArgumentError(StrCat("--listen must be HOST:PORT, got '", o.listen, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

// Forwards the engine's KV events to the routers once they are attached
// (the engine starts first; no request runs before the attach, but nothing
// is lost if one did).
class KvEventRelay {
 public:
  void Forward(std::vector<internal::v1::KvEvent> events) {
    absl::MutexLock lock(&mu_);
    if (target_ == nullptr) {
      for (auto& e : events) early_.push_back(std::move(e));
      return;
    }
    target_->OnKvEvents(std::move(events));
  }
  void SetTarget(RouterSet* target) {
    absl::MutexLock lock(&mu_);
    target_ = target;
    if (target_ != nullptr && !early_.empty()) target_->OnKvEvents(std::exchange(early_, {}));
  }

 private:
  absl::Mutex mu_;
  RouterSet* target_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::vector<internal::v1::KvEvent> early_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<WorkerNode>> WorkerNode::Start(const LoadedModel& model,
                                                              const WorkerNodeOptions& o) {
  RETURN_IF_ERROR(CheckOptions(o));
  std::unique_ptr<WorkerNode> node(new WorkerNode());
  const std::string listen_host = o.listen.substr(0, o.listen.rfind(':'));
  std::string host = o.advertise_host;
  if (host.empty())
    host = listen_host == "0.0.0.0" || listen_host == "[::]" ? "127.0.0.1" : listen_host;

  SimBackend* sim = nullptr;
  if (o.backend == "sim") {
    SimBackendOptions so;
    so.num_kv_blocks = static_cast<int32_t>(o.sim_profile->kv_blocks);
    so.cost = ProfileCostModel(o.sim_profile);
    ASSIGN_OR_RETURN(auto backend, SimBackend::Create(model.config, std::move(so)));
    sim = backend.get();
    node->backend_ = std::move(backend);
  } else {
    ASSIGN_OR_RETURN(DeviceBackend made, MakeDeviceBackend(model, o.engine));
    if (o.backend == "cuda") {
      std::fprintf(stderr, "tokenfab worker: %s\n", made.description.c_str());
    }
    node->backend_ = std::move(made.backend);
  }
  const int32_t blocks = node->backend_->num_kv_blocks();

  if (o.transport == "nccl") {
    NcclTransportOptions no;
    ASSIGN_OR_RETURN(no.device, ParseCudaDevice(o.engine.device));
    no.max_peers = o.nccl_max_peers;
    ASSIGN_OR_RETURN(node->transport_, CreateNcclTransport(no));
  } else {
    TcpTransportOptions to;
    to.listen_host = listen_host == "[::]" ? "::" : listen_host;
    to.advertise_host = host;
    to.port = o.kv_port;
    // One transfer at most per running sequence; the rest is room for
    // senders of transfers given up here that connect late.
    to.max_connections = std::max(64, 4 * o.engine.scheduler.max_num_seqs);
    ASSIGN_OR_RETURN(node->transport_, TcpTransport::Create(to));
  }

  node->stubs_ = std::make_shared<WorkerStubs>(o.cluster_key);
  node->prefiller_ = std::make_unique<TransportPrefiller>(
      node->transport_.get(),
      [stubs = node->stubs_](
          const internal::v1::RemotePrefill& where, internal::v1::PrefillRequest request,
          std::chrono::system_clock::time_point deadline, std::function<void(absl::Status)> reply) {
        auto context = std::make_shared<grpc::ClientContext>();
        context->set_deadline(deadline);
        auto req = std::make_shared<internal::v1::PrefillRequest>(std::move(request));
        auto resp = std::make_shared<internal::v1::PrefillReply>();
        stubs->Get(where.address())
            ->async()
            ->Prefill(context.get(), req.get(), resp.get(),
                      [context, req, resp, reply](grpc::Status s) { reply(FromGrpcStatus(s)); });
        return std::function<void()>([context] { context->TryCancel(); });
      },
      o.prefill_timeout);

  node->relay_ = std::make_shared<KvEventRelay>();
  std::shared_ptr<KvEventRelay> relay = node->relay_;
  EngineOptions eo;
  eo.scheduler = o.engine.scheduler;
  eo.remote_prefiller = node->prefiller_.get();
  eo.on_step = o.on_step;
  node->engine_ = std::make_unique<Engine>(
      node->backend_.get(), eo,
      [relay](std::vector<internal::v1::KvEvent> events) { relay->Forward(std::move(events)); });
  if (sim != nullptr) {
    node->energy_ = StartEnergyMonitor(
        *node->engine_, std::make_unique<SimPowerMeter>(o.sim_profile->idle_watts, [sim] {
          return SimPowerMeter::Steps{sim->step_joules(), sim->step_seconds()};
        }));
  } else {
    ASSIGN_OR_RETURN(node->energy_, StartEnergyMonitor(*node->engine_, o.power, o.power_sharers,
                                                       &node->power_fallback_));
  }

  node->service_ = std::make_unique<WorkerService>(
      node->engine_.get(), node->transport_.get(), [raw = node.get()] { raw->StartDraining(); },
      o.cluster_key);
  EnableHealthService();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(o.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(node->service_.get());
  builder.SetMaxReceiveMessageSize(64 << 20);
  node->server_ = builder.BuildAndStart();
  if (node->server_ == nullptr || port == 0) {
    return absl::UnavailableError(StrCat("cannot listen for the worker service on ", o.listen));
  }
  StartHealth(node->server_.get(), true, {kWorkerService});
  node->address_ = StrCat(
      host.find(':') != std::string::npos && host.front() != '[' ? StrCat("[", host, "]") : host,
      ":", port);
  node->id_ = o.id.empty() ? node->address_ : o.id;

  internal::v1::WorkerHello hello;
  hello.set_worker_id(node->id_);
  hello.set_address(node->address_);
  hello.set_role(o.role);
  hello.set_kv_blocks_total(blocks);
  hello.set_max_num_seqs(o.engine.scheduler.max_num_seqs);
  hello.set_max_queue(o.engine.scheduler.max_queue);
  hello.set_model_fingerprint(ModelFingerprint(model));
  hello.set_kv_wire_version(kKvWireVersion);
  hello.set_kv_transport(std::string(node->transport_->kind()));
  hello.set_device(o.engine.device);
  hello.set_backend(std::string(node->backend_->name()));
  WorkerNode* raw = node.get();
  AttachCallbacks callbacks;
  callbacks.load = [raw] { return raw->LoadReport(); };
  callbacks.on_role = [raw](internal::v1::WorkerRole role) {
    std::fprintf(stderr, "tokenfab worker %s (backend=%s): role is now %s\n", raw->id_.c_str(),
                 std::string(raw->backend()).c_str(), RoleName(role));
  };
  callbacks.on_drain = [raw] { raw->RequestExit(absl::OkStatus()); };
  callbacks.on_refused = [raw](absl::Status s) { raw->RequestExit(std::move(s)); };
  RouterSetOptions ro;
  ro.routers = o.router;
  ro.report_interval = o.report_interval;
  ro.cluster_key = o.cluster_key;
  ASSIGN_OR_RETURN(node->routers_, RouterSet::Start(std::move(ro), std::move(hello), std::move(callbacks)));
  relay->SetTarget(node->routers_.get());
  {
    absl::MutexLock lock(&node->mu_);
    node->running_ = true;
  }
  if (node->service_->draining()) node->StartDraining();  // a Drain call came early
  return node;
}

WorkerNode::~WorkerNode() {
  {
    absl::MutexLock lock(&mu_);
    running_ = false;
  }
  // The engine still runs (and reports KV events) until below.
  if (relay_ != nullptr) relay_->SetTarget(nullptr);
  routers_.reset();
  // Calls in flight are cancelled; the engine (still running) ends their
  // requests, which finishes the calls.
  if (server_ != nullptr)
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  energy_.reset();  // its thread reads the engine
  engine_.reset();
  if (server_ != nullptr) server_->Wait();
  prefiller_.reset();
  transport_.reset();
}

absl::Status WorkerNode::exit_status() const {
  absl::MutexLock lock(&mu_);
  return exit_status_;
}

internal::v1::WorkerLoadReport WorkerNode::LoadReport() const {
  const EngineStats s = engine_->Stats();
  const KvTransportStats t = transport_->Stats();
  internal::v1::WorkerLoadReport r;
  r.set_running(s.running);
  r.set_waiting(s.waiting);
  r.set_kv_blocks_used(s.kv_blocks_used);
  r.set_pending_prefill_tokens(s.pending_prefill_tokens);
  r.set_draining(service_->draining());
  r.set_kv_bytes_sent(t.bytes_sent);
  r.set_kv_bytes_received(t.bytes_received);
  r.set_remote_prefills_ok(s.remote_prefills_ok);
  r.set_remote_prefills_failed(s.remote_prefills_failed);
  return r;
}

void WorkerNode::RequestExit(absl::Status why) {
  absl::MutexLock lock(&mu_);
  if (exit_requested_.HasBeenNotified()) return;  // the first reason stands
  exit_status_ = std::move(why);
  exit_requested_.Notify();
}

void WorkerNode::StartDraining() {
  service_->StartDraining();
  absl::MutexLock lock(&mu_);
  // Before Start finishes (a Drain call that came early) Start does this.
  if (!running_ || drain_announced_) return;
  drain_announced_ = true;
  SetReadiness(server_.get(), false, {kWorkerService});
  routers_->ReportNow();
}

bool WorkerNode::Drain(absl::Duration timeout) {
  StartDraining();
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    const EngineStats s = engine_->Stats();
    if (service_->calls_in_flight() == 0 && s.running == 0 && s.waiting == 0) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

}  // namespace tokenfab
