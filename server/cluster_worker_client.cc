#include "server/cluster_worker_client.h"

#include <cstdio>

#include "common/block_hash.h"
#include "common/strings.h"
#include "server/grpc_service.h"

namespace tokenfab {

using internal::v1::WorkerFinish;
using internal::v1::WorkerOutput;
using internal::v1::WorkerRequest;

struct ClusterWorkerClient::Request {
  WorkerRequest original;
  OutputCallback on_output;
  absl::Mutex mu;
  std::vector<int32_t> generated ABSL_GUARDED_BY(mu);
  int32_t cached_tokens ABSL_GUARDED_BY(mu) = -1;  // from the first attempt's first output
  bool cancelled ABSL_GUARDED_BY(mu) = false;
  bool finished ABSL_GUARDED_BY(mu) = false;
  bool prefill_done ABSL_GUARDED_BY(mu) = false;
  int32_t attempts ABSL_GUARDED_BY(mu) = 0;
  absl::flat_hash_set<std::string> failed ABSL_GUARDED_BY(mu);
  RouteDecision decision ABSL_GUARDED_BY(mu);
  Call* call ABSL_GUARDED_BY(mu) = nullptr;  // the attempt in flight
};

// One attempt: a Worker.Generate call to a decode worker.
class ClusterWorkerClient::Call : public grpc::ClientReadReactor<WorkerOutput> {
 public:
  Call(ClusterWorkerClient* owner, std::shared_ptr<Request> request, WorkerRequest wire,
       std::string worker)
      : owner_(owner),
        request_(std::move(request)),
        wire_(std::move(wire)),
        worker_(std::move(worker)) {}

  Call(ClusterWorkerClient* owner, std::shared_ptr<Request> request, WorkerRequest wire,
       std::string worker, std::string address)
      : Call(owner, std::move(request), std::move(wire), std::move(worker)) {
    address_ = std::move(address);
  }
  const std::string& address() const { return address_; }

  void Start(internal::v1::Worker::Stub* stub) {
    stub->async()->Generate(&context_, &wire_, this);
    StartRead(&out_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    const bool final = out_.finish() != internal::v1::WORKER_FINISH_NONE;
    owner_->OnOutput(this, std::move(out_));
    out_.Clear();
    if (!final) StartRead(&out_);
  }
  void OnDone(const grpc::Status& status) override {
    owner_->OnCallDone(this, FromGrpcStatus(status));
    delete this;
  }
  const std::shared_ptr<Request>& request() const { return request_; }
  const std::string& worker() const { return worker_; }

 private:
  ClusterWorkerClient* owner_;
  std::shared_ptr<Request> request_;
  WorkerRequest wire_;
  const std::string worker_;
  std::string address_;
  grpc::ClientContext context_;
  WorkerOutput out_;
};

ClusterWorkerClient::ClusterWorkerClient(Cluster* cluster, std::shared_ptr<WorkerStubs> stubs,
                                         ClusterClientOptions options)
    : cluster_(cluster), stubs_(std::move(stubs)), options_(options) {}

ClusterWorkerClient::~ClusterWorkerClient() {
  std::vector<std::string> ids;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, r] : requests_) ids.push_back(id);
  }
  for (const std::string& id : ids) Cancel(id);
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int32_t* n) { return *n == 0; }, &calls_));
}

absl::Status ClusterWorkerClient::Submit(WorkerRequest request, OutputCallback on_output) {
  auto r = std::make_shared<Request>();
  const std::string id = request.request_id();
  r->original = std::move(request);
  r->on_output = std::move(on_output);
  {
    absl::MutexLock lock(&mu_);
    if (!requests_.emplace(id, r).second) {
      return absl::AlreadyExistsError(StrCat("request id '", id, "' is in use"));
    }
  }
  absl::StatusOr<Call*> call;
  {
    absl::MutexLock lock(&r->mu);
    call = NextAttempt(r);
  }
  if (!call.ok()) {
    Forget(id);
    return call.status();
  }
  StartCall(*call);
  return absl::OkStatus();
}

void ClusterWorkerClient::StartCall(Call* call) { call->Start(stubs_->Get(call->address()).get()); }

absl::StatusOr<ClusterWorkerClient::Call*> ClusterWorkerClient::NextAttempt(
    const std::shared_ptr<Request>& r) {
  // The prompt so far: the original one plus what earlier attempts generated.
  WorkerRequest wire = r->original;
  const int32_t remaining = r->original.max_tokens() - static_cast<int32_t>(r->generated.size());
  for (int32_t t : r->generated) wire.add_prompt_ids(t);
  wire.set_max_tokens(remaining);
  wire.clear_remote_prefill();
  const std::vector<int32_t> prompt(wire.prompt_ids().begin(), wire.prompt_ids().end());
  const std::vector<uint64_t> hashes = BlockHashes(prompt, options_.block_size);
  RouteRequest route{hashes, static_cast<int32_t>(prompt.size()), remaining, r->failed};
  absl::StatusOr<RouteDecision> d = cluster_->Route(route);
  if (!d.ok()) return d.status();
  if (d->remote_prefill) {
    wire.mutable_remote_prefill()->set_worker_id(d->prefill_worker);
    wire.mutable_remote_prefill()->set_address(d->prefill_address);
  }
  r->decision = *d;
  r->prefill_done = false;
  ++r->attempts;
  auto* call = new Call(this, r, std::move(wire), d->decode_worker, d->decode_address);
  r->call = call;
  absl::MutexLock lock(&mu_);
  ++calls_;
  return call;
}

void ClusterWorkerClient::OnOutput(Call* call, WorkerOutput out) {
  const std::shared_ptr<Request>& r = call->request();
  {
    absl::MutexLock lock(&r->mu);
    if (r->call != call || r->finished) return;
    if (!r->prefill_done) {
      r->prefill_done = true;
      cluster_->PrefillDone(r->decision);
    }
    if (r->cached_tokens < 0) r->cached_tokens = out.cached_tokens();
    r->generated.insert(r->generated.end(), out.token_ids().begin(), out.token_ids().end());
    // The client sees one request: its own prompt, all its tokens.
    out.set_request_id(r->original.request_id());
    out.set_prompt_tokens(r->original.prompt_ids_size());
    out.set_cached_tokens(r->cached_tokens);
    out.set_completion_tokens(static_cast<int32_t>(r->generated.size()));
    if (out.finish() != internal::v1::WORKER_FINISH_NONE) {
      r->finished = true;
      cluster_->Release(r->decision);
    }
  }
  r->on_output(out);
  if (out.finish() != internal::v1::WORKER_FINISH_NONE) Forget(r->original.request_id());
}

void ClusterWorkerClient::OnCallDone(Call* call, const absl::Status& status) {
  const std::shared_ptr<Request> r = call->request();
  std::optional<WorkerOutput> final;
  Call* next_call = nullptr;
  {
    absl::MutexLock lock(&r->mu);
    if (r->call == call) {
      r->call = nullptr;
      if (!r->finished) {
        if (!r->prefill_done) cluster_->PrefillDone(r->decision);
        cluster_->Release(r->decision);
        WorkerFinish reason = internal::v1::WORKER_FINISH_NONE;
        std::string error;
        const int32_t generated = static_cast<int32_t>(r->generated.size());
        if (r->cancelled) {
          reason = internal::v1::WORKER_FINISH_CANCELLED;
        } else if (generated >= r->original.max_tokens()) {
          reason = internal::v1::WORKER_FINISH_LENGTH;
        } else if (status.code() == absl::StatusCode::kInvalidArgument) {
          reason = internal::v1::WORKER_FINISH_ERROR;  // the same request fails anywhere
          error = std::string(status.message());
        } else {
          r->failed.insert(call->worker());
          absl::StatusOr<Call*> next =
              r->attempts < options_.max_attempts
                  ? NextAttempt(r)
                  : absl::UnavailableError(StrCat("gave up after ", r->attempts, " workers"));
          if (next.ok()) {
            next_call = *next;
            ++migrations_;
            std::fprintf(stderr,
                         "tokenfab router: request %s moved from %s to %s after %d tokens (%s)\n",
                         r->original.request_id().c_str(), call->worker().c_str(),
                         r->decision.decode_worker.c_str(), generated,
                         std::string(status.message()).c_str());
          } else {
            reason = internal::v1::WORKER_FINISH_ERROR;
            error = StrCat("worker ", call->worker(), " failed (", status.message(), ") and ",
                           next.status().message());
          }
        }
        if (reason != internal::v1::WORKER_FINISH_NONE) {
          r->finished = true;
          WorkerOutput out;
          out.set_request_id(r->original.request_id());
          out.set_finish(reason);
          out.set_error(error);
          out.set_prompt_tokens(r->original.prompt_ids_size());
          out.set_cached_tokens(std::max(0, r->cached_tokens));
          out.set_completion_tokens(generated);
          final = std::move(out);
        }
      }
    }
  }
  if (next_call != nullptr) StartCall(next_call);
  if (final) {
    r->on_output(*final);
    Forget(r->original.request_id());
  }
  absl::MutexLock lock(&mu_);
  --calls_;
}

void ClusterWorkerClient::Forget(const std::string& id) {
  absl::MutexLock lock(&mu_);
  requests_.erase(id);
}

void ClusterWorkerClient::Cancel(const std::string& request_id) {
  std::shared_ptr<Request> r;
  {
    absl::MutexLock lock(&mu_);
    auto it = requests_.find(request_id);
    if (it == requests_.end()) return;
    r = it->second;
  }
  absl::MutexLock lock(&r->mu);
  r->cancelled = true;
  if (r->call != nullptr) r->call->Cancel();
}

void ClusterWorkerClient::WorkerGone(const std::string& worker_id) {
  std::vector<std::shared_ptr<Request>> all;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, r] : requests_) all.push_back(r);
  }
  for (const auto& r : all) {
    absl::MutexLock lock(&r->mu);
    // Cancelling the call (not the request) makes it end unfinished: it migrates.
    if (r->call != nullptr && r->call->worker() == worker_id) r->call->Cancel();
  }
}

int32_t ClusterWorkerClient::in_flight() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int32_t>(requests_.size());
}

WorkerLoad ClusterWorkerClient::Load() const {
  WorkerLoad load;
  for (const internal::v1::WorkerInfo& w : cluster_->Workers()) {
    load.running += w.load().running();
    load.waiting += w.load().waiting();
    load.kv_blocks_used += w.load().kv_blocks_used();
  }
  return load;
}

}  // namespace tokenfab
