// The public gRPC face: tokenfab.v1.Generation over the router, on gRPC's
// callback API. A Generate stream keeps at most one write outstanding;
// responses that arrive meanwhile wait in the call's queue. A cancelled call
// or a passed deadline cancels the request, which frees its KV blocks.
//
// Generate and Tokenize take their requests as raw bytes and parse them here:
// protobuf rejects a string field holding invalid UTF-8 while parsing, which
// gRPC would report as UNIMPLEMENTED with no message; parsing here turns it
// into INVALID_ARGUMENT naming the field.
#ifndef TOKENFAB_SERVER_GRPC_SERVICE_H_
#define TOKENFAB_SERVER_GRPC_SERVICE_H_

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "server/auth.h"
#include "server/router.h"
#include "tokenfab/v1/generation.grpc.pb.h"

namespace tokenfab {

// The one mapping from absl::Status to a gRPC status (same codes, same message).
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);
// A failed call as a client command reports it: "WHAT: message (gRPC code N)".
absl::Status RpcFailure(std::string_view what, const grpc::Status& status);

// Parses `bytes` as a T; InvalidArgument names a string field that is not
// valid UTF-8 (nested messages included), or says the message is malformed.
absl::Status ParseRequest(const grpc::ByteBuffer& bytes, google::protobuf::Message* out);

class GenerationService final
    : public v1::Generation::WithRawCallbackMethod_Generate<
          v1::Generation::WithRawCallbackMethod_Tokenize<v1::Generation::CallbackService>> {
 public:
  // Calls need one of `api_keys` (auth.h; open: none needed).
  GenerationService(Router* router, KeySet api_keys)
      : router_(router), api_keys_(std::move(api_keys)) {}

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;

 private:
  Router* router_;
  const KeySet api_keys_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_GRPC_SERVICE_H_
