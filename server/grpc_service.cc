#include "server/grpc_service.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/strings.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/proto_buffer_writer.h"
#include "worker/tokenizer/utf8.h"

namespace tokenfab {
namespace {

// Walks a message's wire form without protobuf's UTF-8 checks, to name the
// string field that failed them.
absl::Status FindInvalidUtf8(const std::string& wire, const google::protobuf::Descriptor* type,
                             int depth) {
  google::protobuf::UnknownFieldSet fields;
  if (depth > 16 || !fields.ParseFromString(wire)) {
    return absl::InvalidArgumentError("the request is not a valid protobuf message");
  }
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& f = fields.field(i);
    if (f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) continue;
    const google::protobuf::FieldDescriptor* fd = type->FindFieldByNumber(f.number());
    if (fd == nullptr) continue;
    if (fd->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
        !IsValidUtf8(f.length_delimited())) {
      return absl::InvalidArgumentError(StrCat(fd->name(), " is not valid UTF-8"));
    }
    if (fd->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
      absl::Status s = FindInvalidUtf8(f.length_delimited(), fd->message_type(), depth + 1);
      if (!s.ok()) return s;
    }
  }
  return absl::InvalidArgumentError("the request is not a valid protobuf message");
}

grpc::ByteBuffer Serialize(const google::protobuf::Message& m) {
  grpc::ByteBuffer buffer;
  bool own = false;
  grpc::GenericSerialize<grpc::ProtoBufferWriter, google::protobuf::Message>(m, &buffer, &own);
  return buffer;
}

class GenerateReactor;

bool IsFinal(const v1::GenerateResponse& r) { return r.finish_reason() != v1::FINISH_REASON_UNSPECIFIED; }

// Between the worker thread (responses) and gRPC's threads (write
// completions): queues responses and starts one write at a time. Writes are
// started outside the lock, because gRPC may run the completion inline.
class StreamSink : public ResponseSink {
 public:
  explicit StreamSink(GenerateReactor* reactor) : reactor_(reactor) {}

  void OnResponse(const v1::GenerateResponse& response) override;
  void WriteDone(bool ok);
  void Detach() {
    absl::MutexLock lock(&mu_);
    reactor_ = nullptr;
  }

 private:
  // Takes the next queued response into current_ if no write is in flight;
  // returns the reactor to write with, or null.
  GenerateReactor* NextLocked(bool* last) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Write(GenerateReactor* reactor, bool last);

  absl::Mutex mu_;
  GenerateReactor* reactor_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::GenerateResponse> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // a write failed: the client is gone
  grpc::ByteBuffer current_;  // the message in flight; replaced only between writes
};

class GenerateReactor : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  GenerateReactor(Router* router, grpc::CallbackServerContext* context,
                  const grpc::ByteBuffer& bytes)
      : router_(router), sink_(std::make_shared<StreamSink>(this)) {
    v1::GenerateRequest request;
    if (absl::Status parsed = ParseRequest(bytes, &request); !parsed.ok()) {
      sink_->Detach();
      Finish(ToGrpcStatus(parsed));
      return;
    }
    const auto deadline = context->deadline();
    const auto limit = std::chrono::system_clock::now() + std::chrono::hours(24 * 365);
    absl::StatusOr<std::string> id =
        router_->Generate(request, sink_, deadline > limit ? std::chrono::system_clock::time_point::max() : deadline);
    if (!id.ok()) {
      sink_->Detach();
      Finish(ToGrpcStatus(id.status()));
      return;
    }
    bool cancel;
    {
      absl::MutexLock lock(&mu_);
      id_ = *id;
      cancel = cancelled_;
    }
    if (cancel) router_->Cancel(*id);  // the client left before we knew the id
  }

  void OnWriteDone(bool ok) override { sink_->WriteDone(ok); }
  void OnCancel() override {
    std::string id;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      id = id_;
    }
    if (!id.empty()) router_->Cancel(id);
  }
  void OnDone() override {
    sink_->Detach();
    delete this;
  }

 private:
  Router* router_;
  std::shared_ptr<StreamSink> sink_;
  absl::Mutex mu_;
  std::string id_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

void StreamSink::OnResponse(const v1::GenerateResponse& response) {
  GenerateReactor* reactor;
  bool last = false;
  bool finish = false;
  {
    absl::MutexLock lock(&mu_);
    if (reactor_ == nullptr) return;
    if (broken_) {
      // The client is gone: nothing more is written, but the call still has
      // to be finished once the request ends, or the server cannot shut down.
      if (!IsFinal(response)) return;
      finish = true;
      reactor = std::exchange(reactor_, nullptr);
    } else {
      queue_.push_back(response);
      reactor = NextLocked(&last);
    }
  }
  // Outside the lock: gRPC may run the write completion inline.
  if (finish) {
    reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
  } else {
    Write(reactor, last);
  }
}

void StreamSink::WriteDone(bool ok) {
  GenerateReactor* reactor = nullptr;
  bool last = false;
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (ok) {
      reactor = NextLocked(&last);
    } else {
      // A failed write means the client is gone; OnCancel cancels the
      // request. If its final response is already queued, finish now;
      // otherwise OnResponse does when it comes.
      broken_ = true;
      const bool final_queued = std::any_of(queue_.begin(), queue_.end(), IsFinal);
      queue_.clear();
      if (!final_queued || reactor_ == nullptr) return;
      reactor = std::exchange(reactor_, nullptr);
    }
  }
  // Outside the lock: gRPC may run completions (OnDone included) inline.
  if (ok) {
    Write(reactor, last);
  } else {
    reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
  }
}

GenerateReactor* StreamSink::NextLocked(bool* last) {
  if (writing_ || queue_.empty() || reactor_ == nullptr) return nullptr;
  *last = IsFinal(queue_.front());
  current_ = Serialize(queue_.front());
  queue_.pop_front();
  writing_ = true;
  return reactor_;
}

void StreamSink::Write(GenerateReactor* reactor, bool last) {
  if (reactor == nullptr) return;
  if (last) {
    reactor->StartWriteAndFinish(&current_, grpc::WriteOptions(), grpc::Status::OK);
  } else {
    reactor->StartWrite(&current_);
  }
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status ParseRequest(const grpc::ByteBuffer& bytes, google::protobuf::Message* out) {
  grpc::ByteBuffer copy(bytes);
  grpc::ProtoBufferReader reader(&copy);
  if (out->ParseFromZeroCopyStream(&reader)) return absl::OkStatus();
  std::vector<grpc::Slice> slices;
  std::string wire;
  if (bytes.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) wire.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return FindInvalidUtf8(wire, out->GetDescriptor(), 0);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerationService::Generate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return new GenerateReactor(router_, context, *request);
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request,
                                                      grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  v1::TokenizeRequest parsed;
  absl::Status s = ParseRequest(*request, &parsed);
  if (s.ok()) {
    absl::StatusOr<v1::TokenizeResponse> r = router_->Tokenize(parsed);
    s = r.status();
    if (r.ok()) *response = Serialize(*r);
  }
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::ListModels(grpc::CallbackServerContext* context,
                                                        const v1::ListModelsRequest*,
                                                        v1::ListModelsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  *response = router_->ListModels();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace tokenfab
