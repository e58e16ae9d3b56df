#include "server/loadgen/grpc_client.h"

#include <grpcpp/grpcpp.h>

#include "common/strings.h"
#include "server/auth.h"
#include "tokenfab/v1/generation.grpc.pb.h"

namespace tokenfab::loadgen {
namespace {

std::string GrpcError(const grpc::Status& s) {
  return StrCat("gRPC ", static_cast<int>(s.error_code()), ": ", s.error_message());
}

class GrpcLoadClient : public LoadClient {
 public:
  GrpcLoadClient(const Target& target, const KeySet& api_key,
                 std::shared_ptr<grpc::ChannelCredentials> credentials) {
    const bool v6 = target.host.find(':') != std::string::npos;
    const std::string address = StrCat(v6 ? "[" : "", target.host, v6 ? "]" : "", ":", target.port);
    grpc::ChannelArguments args;
    // Token streams are many small messages; do not let one slow reader's
    // flow-control window stall the others on the shared connection.
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 1);
    channel_ = KeyedChannel(address, api_key, args, std::move(credentials));
    stub_ = v1::Generation::NewStub(channel_);
  }

  RequestRecord Send(const LoadRequest& request, Clock::time_point origin) override {
    RequestRecord record;
    v1::GenerateRequest req;
    req.set_prompt(request.prompt);
    req.set_max_tokens(request.max_tokens);
    req.set_stop_at_eos(false);
    req.set_model(request.model_id);
    grpc::ClientContext ctx;
    record.start_s = SecondsSince(origin);
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = stub_->Generate(&ctx, req);
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
      const double now = SecondsSince(origin);
      if (response.token_ids_size() > 0) {
        record.chunk_times_s.push_back(now);
        record.chunk_tokens.push_back(response.token_ids_size());
      }
      if (response.has_usage() && response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
        record.prompt_tokens = response.usage().prompt_tokens();
        record.completion_tokens = response.usage().completion_tokens();
      }
      if (response.finish_reason() == v1::FINISH_REASON_ERROR ||
          response.finish_reason() == v1::FINISH_REASON_CANCELLED) {
        record.error = StrCat("stream ended with finish_reason ",
                              v1::FinishReason_Name(response.finish_reason()));
      }
    }
    const grpc::Status status = reader->Finish();
    record.done_s = SecondsSince(origin);
    if (!status.ok()) record.error = GrpcError(status);
    record.ok = record.error.empty();
    return record;
  }

  absl::StatusOr<std::string> ServedModelId() override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ListModelsResponse response;
    grpc::Status s = stub_->ListModels(&ctx, v1::ListModelsRequest(), &response);
    if (!s.ok()) return absl::UnavailableError(StrCat("ListModels: ", GrpcError(s)));
    if (response.models_size() == 0) return absl::NotFoundError("ListModels returned no model");
    return response.models(0).id();
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> stub_;
};

}  // namespace

std::unique_ptr<LoadClient> NewGrpcLoadClient(
    const Target& target, const KeySet& api_key,
    std::shared_ptr<grpc::ChannelCredentials> credentials) {
  return std::make_unique<GrpcLoadClient>(target, api_key, std::move(credentials));
}

}  // namespace tokenfab::loadgen
