#include "worker/transport_prefiller.h"

#include "common/random.h"
#include "common/strings.h"
#include "worker/transport/kv_wire.h"

namespace tokenfab {

struct TransportPrefiller::Job {
  std::string request_id;
  uint64_t transfer_id = 0;
  absl::Mutex mu;
  Done done ABSL_GUARDED_BY(mu);  // null once called or aborted
  std::function<void()> cancel_call ABSL_GUARDED_BY(mu);
};

TransportPrefiller::TransportPrefiller(KvTransport* transport, PrefillCall call,
                                       std::chrono::milliseconds timeout)
    : transport_(transport), call_(std::move(call)), timeout_(timeout) {}

TransportPrefiller::~TransportPrefiller() {
  std::vector<std::string> ids;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, job] : jobs_) ids.push_back(id);
  }
  for (const std::string& id : ids) Abort(id);
}

void TransportPrefiller::Complete(const std::shared_ptr<Job>& job,
                                  absl::StatusOr<std::unique_ptr<ReceivedKv>> kv) {
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job->request_id);
    if (it != jobs_.end() && it->second == job) jobs_.erase(it);
  }
  const bool ok = kv.ok();
  if (!ok) transport_->Failed(job->transfer_id, kv.status());
  Done done;
  std::function<void()> cancel;
  {
    absl::MutexLock lock(&job->mu);
    done = std::exchange(job->done, nullptr);
    cancel = std::exchange(job->cancel_call, nullptr);
    // Called under the job's lock, so Abort cannot return while it runs.
    if (done) done(std::move(kv));
  }
  if (cancel && !ok) cancel();
}

void TransportPrefiller::Start(RemotePrefillJob j, Done done) {
  auto job = std::make_shared<Job>();
  job->request_id = j.request_id;
  {
    absl::MutexLock lock(&job->mu);
    job->done = std::move(done);
  }
  {
    absl::MutexLock lock(&mu_);
    // The id is what admits the prefill worker's connection (tcp) or frames
    // (nccl) for this transfer, so it is drawn, not counted.
    job->transfer_id = RandomU64();
    jobs_[j.request_id] = job;  // a request has one prefill at a time
  }
  KvTransferSpec spec;
  spec.transfer_id = job->transfer_id;
  spec.layout = j.layout;
  spec.first_position = j.send_from;
  spec.end_position = static_cast<int32_t>(j.tokens.size());
  if (absl::Status s =
          transport_->Expect(spec,
                             [this, job](absl::StatusOr<std::unique_ptr<ReceivedKv>> kv) {
                               Complete(job, std::move(kv));
                             });
      !s.ok()) {
    Complete(job, s);
    return;
  }
  absl::StatusOr<KvRoute> route = transport_->Route(j.where.address(), job->transfer_id);
  if (!route.ok()) {
    Complete(job, route.status());
    return;
  }
  internal::v1::PrefillRequest request;
  request.set_request_id(j.request_id);
  request.mutable_token_ids()->Assign(j.tokens.begin(), j.tokens.end());
  request.set_send_from(j.send_from);
  request.set_kv_wire_version(kKvWireVersion);
  request.set_deadline_unix_ms(j.deadline_unix_ms);
  internal::v1::KvTarget* target = request.mutable_target();
  target->set_transport(std::string(transport_->kind()));
  target->set_endpoint(route->endpoint);
  target->set_transfer_id(job->transfer_id);
  target->set_nccl_unique_id(route->bootstrap);
  auto deadline = std::chrono::system_clock::now() + timeout_;
  if (j.deadline_unix_ms > 0) {
    deadline = std::min(deadline, std::chrono::system_clock::time_point(
                                      std::chrono::milliseconds(j.deadline_unix_ms)));
  }
  std::function<void()> cancel =
      call_(j.where, std::move(request), deadline, [this, job](absl::Status reply) {
        // Success is the transfer's arrival; the reply only matters if it failed.
        if (!reply.ok()) {
          Complete(job, absl::Status(reply.code(), StrCat("prefill worker: ", reply.message())));
        }
      });
  absl::MutexLock lock(&job->mu);
  if (job->done) job->cancel_call = std::move(cancel);
}

void TransportPrefiller::Abort(const std::string& request_id) {
  std::shared_ptr<Job> job;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(request_id);
    if (it == jobs_.end()) return;
    job = std::move(it->second);
    jobs_.erase(it);
  }
  transport_->Forget(job->transfer_id);
  std::function<void()> cancel;
  {
    absl::MutexLock lock(&job->mu);
    job->done = nullptr;
    cancel = std::exchange(job->cancel_call, nullptr);
  }
  if (cancel) cancel();
}

absl::Status ServePrefill(Engine& engine, KvTransport& transport,
                          const internal::v1::PrefillRequest& request,
                          std::function<void(absl::StatusOr<internal::v1::PrefillReply>)> reply) {
  if (request.kv_wire_version() != kKvWireVersion) {
    return absl::FailedPreconditionError(StrCat("KV wire version ", request.kv_wire_version(),
                                                " asked, this worker speaks ", kKvWireVersion));
  }
  if (request.target().transport() != transport.kind()) {
    return absl::FailedPreconditionError(StrCat("KV transport '", request.target().transport(),
                                                "' asked, this worker has '", transport.kind(),
                                                "'"));
  }
  if (request.send_from() < 0 || request.send_from() >= request.token_ids_size()) {
    return absl::InvalidArgumentError(StrCat("send_from ", request.send_from(), " is outside the ",
                                             request.token_ids_size(), " tokens"));
  }
  KvTransferSpec spec;
  spec.transfer_id = request.target().transfer_id();
  spec.layout = engine.kv_layout();
  spec.first_position = request.send_from();
  spec.end_position = request.token_ids_size();
  std::shared_ptr<KvSendStream> stream =
      transport.Open({request.target().endpoint(), request.target().nccl_unique_id()}, spec);
  const int64_t bytes = spec.TotalBytes();
  absl::Status s = engine.SubmitPrefill(
      request, stream, [stream, bytes, reply](const internal::v1::WorkerOutput& out) {
        if (out.finish() != internal::v1::WORKER_FINISH_LENGTH) {
          stream->Abort();
          reply(out.finish() == internal::v1::WORKER_FINISH_CANCELLED
                    ? absl::CancelledError("the prefill was cancelled")
                    : absl::InternalError(StrCat("the prefill failed: ", out.error())));
          return;
        }
        internal::v1::PrefillReply r;
        r.set_computed_tokens(out.prompt_tokens() - out.cached_tokens());
        r.set_bytes_sent(bytes);
        stream->Finish([r, reply](absl::Status sent) {
          if (sent.ok()) {
            reply(r);
          } else {
            reply(absl::Status(sent.code(), StrCat("sending the KV: ", sent.message())));
          }
        });
      });
  if (!s.ok()) stream->Abort();
  return s;
}

}  // namespace tokenfab
