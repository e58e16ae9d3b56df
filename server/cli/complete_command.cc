// tokenfab complete: a small gRPC client that streams one completion from a
// running server to the terminal.
//
//   tokenfab complete --server HOST:PORT --prompt TEXT [--chat] [--max-tokens N]
//                     [--api-key-file F] [--tls | --tls-ca-file F]
#include <cstdio>

#include "common/strings.h"
#include "grpcpp/grpcpp.h"
#include "server/cli/auth_flags.h"
#include "server/cli/cli_util.h"
#include "server/cli/commands.h"
#include "tokenfab/v1/generation.grpc.pb.h"

namespace tokenfab {

int RunComplete(const std::vector<std::string>& args) {
  std::string server = "localhost:50051", prompt, system, model;
  bool chat = false, print_ids = false;
  int32_t max_tokens = 128;
  float temperature = 0.0f;
  std::optional<uint64_t> seed;
  int32_t timeout_s = 600;
  FlagSet flags("complete", "Stream a completion from a running tokenfab server over gRPC.");
  flags.AddString("server", &server, "HOST:PORT of the gRPC API (default localhost:50051)");
  flags.AddString("prompt", &prompt, "the prompt (the user message with --chat)", true);
  flags.AddBool("chat", &chat, "send the prompt as a chat message (the model's template applies)");
  flags.AddString("system", &system, "a system message (with --chat)");
  flags.AddString("model", &model, "model id (default: the server's)");
  flags.AddInt("max-tokens", &max_tokens, "tokens to generate at most (default 128)");
  flags.AddFloat("temperature", &temperature, "0 is greedy (default 0)");
  flags.AddOptionalUint64("seed", &seed, "sampling seed");
  flags.AddInt("timeout", &timeout_s, "deadline in seconds (default 600)");
  flags.AddBool("print-token-ids", &print_ids, "end with a line `token_ids: <ids>`");
  std::string api_key_file;
  AddApiKeyFlag(flags, &api_key_file, /*serving=*/false);
  TlsClientFlags tls;
  AddTlsClientFlags(flags, &tls);
  if (int rc = ParseFlagsOrExit(flags, "complete", args); rc >= 0) return rc;
  absl::StatusOr<KeySet> api_key = LoadApiKeys(api_key_file);
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      ClientChannelCredentials(tls.enabled(), tls.ca_file);
  absl::Status check = api_key.status();
  if (check.ok()) check = credentials.status();
  if (check.ok() && max_tokens <= 0)
    check = absl::InvalidArgumentError("--max-tokens must be positive");
  if (!check.ok()) {
    ReportError("complete", check);
    return kExitUsage;
  }

  v1::GenerateRequest request;
  if (chat) {
    if (!system.empty()) {
      auto* m = request.mutable_chat()->add_messages();
      m->set_role("system");
      m->set_content(system);
    }
    auto* m = request.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content(prompt);
  } else {
    request.set_prompt(prompt);
  }
  request.set_model(model);
  request.set_max_tokens(max_tokens);
  request.mutable_sampling()->set_temperature(temperature);
  if (seed) request.mutable_sampling()->set_seed(*seed);

  auto channel = KeyedChannel(server, *api_key, {}, *credentials);
  auto stub = v1::Generation::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse response;
  std::string ids = "token_ids:";
  v1::Usage usage;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  while (reader->Read(&response)) {
    std::fwrite(response.text().data(), 1, response.text().size(), stdout);
    std::fflush(stdout);
    for (int32_t id : response.token_ids()) StrAppend(&ids, " ", id);
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      finish = response.finish_reason();
      usage = response.usage();
    }
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) {
    std::fputc('\n', stdout);
    return ReportError("complete", absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                                                status.error_message()));
  }
  std::fputc('\n', stdout);
  if (print_ids) std::printf("%s\n", ids.c_str());
  std::fprintf(stderr, "[tokenfab] finish: %s; prompt %d tokens (%d cached), completion %d tokens\n",
               v1::FinishReason_Name(finish).c_str(), usage.prompt_tokens(), usage.cached_tokens(),
               usage.completion_tokens());
  return 0;
}

}  // namespace tokenfab
