#include "server/worker_service.h"

#include <memory>

#include "server/grpc_service.h"
#include "server/queued_stream_writer.h"
#include "worker/transport_prefiller.h"

namespace tokenfab {
namespace {

using internal::v1::WorkerOutput;
using OutputWriter = QueuedStreamWriter<WorkerOutput, WorkerOutput>;

bool IsFinal(const WorkerOutput& o) { return o.finish() != internal::v1::WORKER_FINISH_NONE; }

const grpc::Status kDraining(grpc::StatusCode::UNAVAILABLE, "the worker is draining");

class GenerateReactor : public grpc::ServerWriteReactor<WorkerOutput> {
 public:
  // `draining` is read once the call counts as in flight, so a Drain that
  // sees no call in flight is never followed by one that started.
  GenerateReactor(Engine* engine, std::atomic<int32_t>* in_flight,
                  const std::atomic<bool>& draining, const internal::v1::WorkerRequest& request)
      : engine_(engine),
        counter_(in_flight),
        id_(request.request_id()),
        writer_(std::make_shared<OutputWriter>(this, IsFinal,
                                               [](const WorkerOutput& o) { return o; })) {
    if (draining) {
      writer_->Detach();
      Finish(kDraining);
      return;
    }
    absl::Status s =
        engine_->Submit(request, [w = writer_](const WorkerOutput& out) { w->Push(out); });
    if (!s.ok()) {
      writer_->Detach();
      Finish(ToGrpcStatus(s));
    }
  }
  void OnWriteDone(bool ok) override { writer_->WriteDone(ok); }
  void OnCancel() override { engine_->Cancel(id_); }
  void OnDone() override {
    writer_->Detach();
    delete this;
  }

 private:
  Engine* engine_;
  WorkerService::Counter counter_;
  const std::string id_;
  std::shared_ptr<OutputWriter> writer_;
};

class PrefillReactor : public grpc::ServerUnaryReactor {
 public:
  PrefillReactor(Engine* engine, KvTransport* transport, std::atomic<int32_t>* in_flight,
                 const std::atomic<bool>& draining, const internal::v1::PrefillRequest& request,
                 internal::v1::PrefillReply* reply)
      : engine_(engine), counter_(in_flight), id_(Engine::PrefillId(request.request_id())) {
    if (draining) {
      Complete(kDraining);
      return;
    }
    absl::Status s = ServePrefill(*engine, *transport, request,
                                  [this, reply](absl::StatusOr<internal::v1::PrefillReply> r) {
                                    if (r.ok()) *reply = *r;
                                    Complete(ToGrpcStatus(r.status()));
                                  });
    if (!s.ok()) Complete(ToGrpcStatus(s));
  }
  void OnCancel() override { engine_->Cancel(id_); }
  void OnDone() override { delete this; }

 private:
  void Complete(const grpc::Status& status) {
    // Finish may run OnDone (delete this) inline: nothing after it.
    if (!finished_.exchange(true)) Finish(status);
  }

  Engine* engine_;
  WorkerService::Counter counter_;
  const std::string id_;
  std::atomic<bool> finished_{false};
};

}  // namespace

grpc::ServerWriteReactor<WorkerOutput>* WorkerService::Generate(
    grpc::CallbackServerContext* context, const internal::v1::WorkerRequest* request) {
  if (grpc::Status s = Authorize(cluster_key_, kClusterKey, *context); !s.ok()) {
    return new RefusedCall<grpc::ServerWriteReactor<WorkerOutput>>(s);
  }
  return new GenerateReactor(engine_, &in_flight_, draining_, *request);
}

grpc::ServerUnaryReactor* WorkerService::Prefill(grpc::CallbackServerContext* context,
                                                 const internal::v1::PrefillRequest* request,
                                                 internal::v1::PrefillReply* reply) {
  if (auto* refused = RefuseUnary(cluster_key_, kClusterKey, context)) return refused;
  return new PrefillReactor(engine_, transport_, &in_flight_, draining_, *request, reply);
}

grpc::ServerUnaryReactor* WorkerService::Drain(grpc::CallbackServerContext* context,
                                               const internal::v1::DrainRequest*,
                                               internal::v1::DrainReply* reply) {
  if (auto* refused = RefuseUnary(cluster_key_, kClusterKey, context)) return refused;
  on_drain_();
  const EngineStats s = engine_->Stats();
  reply->set_calls_in_flight(in_flight_);
  reply->set_running(s.running);
  reply->set_waiting(s.waiting);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace tokenfab
