#include "server/attach_client.h"

#include <cstdio>

#include "server/grpc_service.h"

namespace tokenfab {

using internal::v1::RouterOrder;
using internal::v1::WorkerReport;

AttachClient::AttachClient(std::string router, internal::v1::WorkerHello hello,
                           AttachCallbacks callbacks, std::chrono::milliseconds report_interval,
                           absl::flat_hash_set<uint64_t> cached, KeySet cluster_key)
    : router_(std::move(router)),
      cluster_key_(std::move(cluster_key)),
      hello_(std::move(hello)),
      callbacks_(std::move(callbacks)),
      interval_(report_interval),
      role_(hello_.role()),
      cached_(std::move(cached)) {
  thread_ = std::thread([this] { Run(); });
}

AttachClient::~AttachClient() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  thread_.join();
}

void ApplyKvEvents(const std::vector<internal::v1::KvEvent>& events,
                   absl::flat_hash_set<uint64_t>* cached) {
  for (const internal::v1::KvEvent& e : events) {
    for (uint64_t h : e.block_hashes()) {
      if (e.kind() == internal::v1::KvEvent::STORED) {
        cached->insert(h);
      } else {
        cached->erase(h);
      }
    }
  }
}

void AttachClient::OnKvEvents(std::vector<internal::v1::KvEvent> events) {
  absl::MutexLock lock(&mu_);
  ApplyKvEvents(events, &cached_);
  for (internal::v1::KvEvent& e : events) pending_.push_back(std::move(e));
}

void AttachClient::ReportNow() {
  absl::MutexLock lock(&mu_);
  report_now_ = true;
}

internal::v1::WorkerRole AttachClient::role() const {
  absl::MutexLock lock(&mu_);
  return role_;
}

void AttachClient::SetRole(internal::v1::WorkerRole role) {
  absl::MutexLock lock(&mu_);
  role_ = role;
  report_now_ = true;
}

bool AttachClient::attached() const {
  absl::MutexLock lock(&mu_);
  return attached_;
}

void AttachClient::Run() {
  bool warned = false;
  while (true) {
    const grpc::Status status = Session();
    {
      absl::MutexLock lock(&mu_);
      attached_ = false;
      if (stop_) return;
    }
    // Another model, or the wrong cluster key: retrying cannot help.
    if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
        status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
      callbacks_.on_refused(FromGrpcStatus(status));
      return;
    }
    if (!warned) {
      std::fprintf(stderr, "tokenfab worker %s: not attached to the router at %s (%s); retrying\n",
                   hello_.worker_id().c_str(), router_.c_str(), status.error_message().c_str());
      warned = true;
    }
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(300));
    if (stop_) return;
  }
}

grpc::Status AttachClient::Session() {
  auto channel = KeyedChannel(router_, cluster_key_);
  auto stub = internal::v1::WorkerControl::NewStub(channel);
  grpc::ClientContext context;
  WorkerReport hello;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return grpc::Status::CANCELLED;
    context_ = &context;
    *hello.mutable_hello() = hello_;
    hello.mutable_hello()->set_role(role_);
    for (uint64_t h : cached_) hello.mutable_hello()->add_cached_block_hashes(h);
    pending_.clear();  // the snapshot covers them
  }
  auto stream = stub->Attach(&context);
  bool ok = stream->Write(hello);
  bool ended = false;  // guarded by mu_
  std::thread reader;
  if (ok) {
    reader = std::thread([&] {
      RouterOrder order;
      while (stream->Read(&order)) {
        if (order.has_welcome()) {
          {
            absl::MutexLock lock(&mu_);
            attached_ = true;
          }
          if (callbacks_.on_welcome) callbacks_.on_welcome(order.welcome().router_id());
        } else if (order.has_set_role()) {
          {
            absl::MutexLock lock(&mu_);
            role_ = order.set_role().role();
          }
          if (callbacks_.on_role) callbacks_.on_role(order.set_role().role());
        } else if (order.has_drain()) {
          if (callbacks_.on_drain) callbacks_.on_drain();
        }
      }
      // The router ended the stream: wake the writer, which then reads the
      // status (cancelling here would hide a refusal behind CANCELLED).
      absl::MutexLock lock(&mu_);
      ended = true;
      report_now_ = true;
    });
  }
  auto next_report = std::chrono::steady_clock::now();
  while (ok) {
    std::vector<internal::v1::KvEvent> events;
    {
      absl::MutexLock lock(&mu_);
      const auto wait = std::chrono::duration_cast<std::chrono::microseconds>(
          next_report - std::chrono::steady_clock::now());
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](AttachClient* c) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                 return c->stop_ || c->report_now_ || !c->pending_.empty();
                               },
                               this),
                           absl::Microseconds(std::max<int64_t>(0, wait.count())));
      if (stop_ || ended) break;
      events.swap(pending_);
      if (report_now_) next_report = std::chrono::steady_clock::now();
      report_now_ = false;
    }
    if (!events.empty()) {
      WorkerReport r;
      for (auto& e : events) *r.mutable_kv_events()->add_events() = std::move(e);
      ok = stream->Write(r);
    }
    if (ok && std::chrono::steady_clock::now() >= next_report) {
      WorkerReport r;
      *r.mutable_load() = callbacks_.load();
      r.mutable_load()->set_role(role());
      ok = stream->Write(r);
      next_report = std::chrono::steady_clock::now() + interval_;
    }
  }
  bool router_ended;
  {
    absl::MutexLock lock(&mu_);
    router_ended = ended;
  }
  // Only our own stop cancels. A failed write means the call is over (the
  // router finished it, a refusal say, or the connection broke): the reader
  // ends by itself, and Finish then gives the router's status, which a
  // cancel would replace with CANCELLED (and the worker would retry a
  // refusal instead of stopping).
  if (!router_ended && ok) context.TryCancel();  // unblocks the reader
  if (reader.joinable()) reader.join();
  {
    absl::MutexLock lock(&mu_);
    context_ = nullptr;
  }
  return stream->Finish();
}

}  // namespace tokenfab
