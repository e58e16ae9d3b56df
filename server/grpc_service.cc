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
#include "server/queued_stream_writer.h"
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

bool IsFinal(const v1::GenerateResponse& r) {
  return r.finish_reason() != v1::FINISH_REASON_UNSPECIFIED;
}

using ResponseWriter = QueuedStreamWriter<v1::GenerateResponse, grpc::ByteBuffer>;

// The router's sink for one call: responses into the call's writer.
class StreamSink : public ResponseSink {
 public:
  explicit StreamSink(grpc::ServerWriteReactor<grpc::ByteBuffer>* reactor)
      : writer_(reactor, IsFinal, [](const v1::GenerateResponse& r) { return Serialize(r); }) {}
  void OnResponse(const v1::GenerateResponse& response) override { writer_.Push(response); }
  void WriteDone(bool ok) { writer_.WriteDone(ok); }
  void Detach() { writer_.Detach(); }

 private:
  ResponseWriter writer_;
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
    absl::StatusOr<std::string> id = router_->Generate(
        request, sink_, deadline > limit ? std::chrono::system_clock::time_point::max() : deadline);
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

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::Status RpcFailure(std::string_view what, const grpc::Status& status) {
  return absl::Status(FromGrpcStatus(status).code(),
                      StrCat(what, ": ", status.error_message(), " (gRPC code ",
                             static_cast<int>(status.error_code()), ")"));
}

absl::Status ParseRequest(const grpc::ByteBuffer& bytes, google::protobuf::Message* out) {
  grpc::ByteBuffer copy(bytes);
  grpc::ProtoBufferReader reader(&copy);
  if (out->ParseFromZeroCopyStream(&reader)) return absl::OkStatus();
  std::vector<grpc::Slice> slices;
  std::string wire;
  if (bytes.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices)
      wire.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return FindInvalidUtf8(wire, out->GetDescriptor(), 0);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerationService::Generate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  if (grpc::Status s = Authorize(api_keys_, kApiKey, *context); !s.ok()) {
    return new RefusedCall<grpc::ServerWriteReactor<grpc::ByteBuffer>>(s);
  }
  return new GenerateReactor(router_, context, *request);
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request,
                                                      grpc::ByteBuffer* response) {
  if (auto* refused = RefuseUnary(api_keys_, kApiKey, context)) return refused;
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
  if (auto* refused = RefuseUnary(api_keys_, kApiKey, context)) return refused;
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  *response = router_->ListModels();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace tokenfab
