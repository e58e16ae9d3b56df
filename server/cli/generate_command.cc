// tokenfab generate: one completion on the CPU engine, streamed to stdout.
//
//   tokenfab generate --model PATH --prompt TEXT [--chat] [--max-tokens N]
//       [--temperature T] [--seed S] [--threads N] [--print-token-ids] ...
//
// With --print-token-ids the last stdout line is `token_ids: <ids>` of the
// generated tokens. Timing goes to stderr so stdout stays the completion.
#include <algorithm>
#include <cstdio>

#include "common/strings.h"
#include "common/thread_pool.h"
#include "scheduler/admission.h"
#include "server/cli/cli_util.h"
#include "server/cli/commands.h"
#include "server/prompt_tokens.h"
#include "worker/engine/cpu_backend.h"
#include "worker/engine/single_sequence.h"
#include "worker/model_loader.h"
#include "worker/tokenizer/incremental_detokenizer.h"

namespace tokenfab {
namespace {

constexpr int32_t kMaxThreads = 1024;

struct GenerateFlags {
  std::string model;
  std::string prompt;
  std::string system;
  bool chat = false;
  int32_t max_tokens = 128;
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::optional<uint64_t> seed;
  int32_t threads = std::min(HardwareThreads(), kMaxThreads);
  bool print_token_ids = false;
  bool ignore_eos = false;
  std::string kv_cache_type = "f16";
  int32_t prefill_chunk = 512;
};

absl::StatusOr<KvDType> ParseKvType(const std::string& s) {
  if (s == "f16") return KvDType::kF16;
  if (s == "f32") return KvDType::kF32;
  return absl::InvalidArgumentError(StrCat("--kv-cache-type must be f16 or f32, got '", s, "'"));
}

}  // namespace

int RunGenerate(const std::vector<std::string>& args) {
  GenerateFlags f;
  FlagSet flags("generate", "Generate a completion for one prompt on the CPU engine.");
  flags.AddString("model", &f.model, "GGUF file or Hugging Face model folder", true);
  flags.AddString("prompt", &f.prompt, "the prompt (the user message with --chat)", true);
  flags.AddBool("chat", &f.chat, "render the prompt as a user message with the model's chat template");
  flags.AddString("system", &f.system, "a system message (with --chat)");
  flags.AddInt("max-tokens", &f.max_tokens, "tokens to generate at most (default 128)");
  flags.AddFloat("temperature", &f.temperature, "0 is greedy (default 0)");
  flags.AddInt("top-k", &f.top_k, "sample from the k most likely tokens (0: off)");
  flags.AddFloat("top-p", &f.top_p, "nucleus sampling mass (1: off)");
  flags.AddFloat("min-p", &f.min_p, "drop tokens under min-p times the best one (0: off)");
  flags.AddFloat("repetition-penalty", &f.repetition_penalty, "penalty for seen tokens (1: off)");
  flags.AddFloat("presence-penalty", &f.presence_penalty, "subtracted once per generated token");
  flags.AddFloat("frequency-penalty", &f.frequency_penalty, "subtracted per occurrence");
  flags.AddOptionalUint64("seed", &f.seed, "sampling seed (same seed, same output)");
  flags.AddInt("threads", &f.threads, "CPU threads (default: all hardware threads)");
  flags.AddBool("print-token-ids", &f.print_token_ids, "end with a line `token_ids: <ids>`");
  flags.AddBool("ignore-eos", &f.ignore_eos, "do not stop at end-of-generation tokens");
  flags.AddString("kv-cache-type", &f.kv_cache_type, "f16 (default) or f32");
  flags.AddInt("prefill-chunk", &f.prefill_chunk, "prompt tokens per forward step (default 512)");
  if (int rc = ParseFlagsOrExit(flags, "generate", args); rc >= 0) return rc;

  // Every flag value is checked before the (possibly slow) model load; a bad
  // value is a usage error.
  auto usage_error = [](const absl::Status& s) {
    ReportError("generate", s);
    return kExitUsage;
  };
  auto kv_type = ParseKvType(f.kv_cache_type);
  if (!kv_type.ok()) return usage_error(kv_type.status());
  if (f.prefill_chunk < 1) {
    return usage_error(absl::InvalidArgumentError("--prefill-chunk must be positive"));
  }
  if (f.threads < 1 || f.threads > kMaxThreads) {
    return usage_error(absl::InvalidArgumentError(
        StrCat("--threads must be between 1 and ", kMaxThreads, ", got ", f.threads)));
  }

  v1::GenerateRequest request;
  if (f.chat) {
    if (!f.system.empty()) {
      v1::ChatMessage* m = request.mutable_chat()->add_messages();
      m->set_role("system");
      m->set_content(f.system);
    }
    v1::ChatMessage* m = request.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content(f.prompt);
  } else if (!f.system.empty()) {
    return usage_error(absl::InvalidArgumentError("--system needs --chat"));
  } else {
    request.set_prompt(f.prompt);
  }
  if (f.max_tokens <= 0) {
    return usage_error(
        absl::InvalidArgumentError(StrCat("--max-tokens must be positive, got ", f.max_tokens)));
  }
  request.set_max_tokens(f.max_tokens);
  v1::SamplingParams* s = request.mutable_sampling();
  s->set_temperature(f.temperature);
  s->set_top_k(f.top_k);
  s->set_top_p(f.top_p);
  s->set_min_p(f.min_p);
  s->set_repetition_penalty(f.repetition_penalty);
  s->set_presence_penalty(f.presence_penalty);
  s->set_frequency_penalty(f.frequency_penalty);
  if (f.seed) s->set_seed(*f.seed);
  if (absl::Status st = CheckRequestFields(request); !st.ok()) return usage_error(st);

  auto loaded = LoadModel(f.model);
  if (!loaded.ok()) return ReportError("generate", loaded.status());
  const LoadedModel& model = **loaded;
  const Tokenizer& tokenizer = *model.tokenizer;

  auto prompt = PromptTokens(request, tokenizer, model.chat_template.get());
  if (!prompt.ok()) return ReportError("generate", prompt.status());
  auto max_tokens = AdmitRequest(request, static_cast<int32_t>(prompt->size()),
                                 {model.config.context_length, model.config.vocab_size});
  if (!max_tokens.ok()) return ReportError("generate", max_tokens.status());

  CpuBackendOptions backend_options;
  backend_options.threads = f.threads;
  backend_options.kv_dtype = *kv_type;
  backend_options.num_kv_blocks = KvBlocksFor(static_cast<int32_t>(prompt->size()) + *max_tokens);
  auto backend = CpuBackend::Create(model.config, model.weights, backend_options);
  if (!backend.ok()) return ReportError("generate", backend.status());

  SingleSequenceOptions options;
  options.max_tokens = *max_tokens;
  options.prefill_chunk_tokens = f.prefill_chunk;
  options.sampling = {.temperature = f.temperature,
                      .top_k = f.top_k,
                      .top_p = f.top_p,
                      .min_p = f.min_p,
                      .repetition_penalty = f.repetition_penalty,
                      .presence_penalty = f.presence_penalty,
                      .frequency_penalty = f.frequency_penalty,
                      .seed = f.seed.value_or(std::random_device{}())};
  if (!f.ignore_eos) {
    for (int32_t id : tokenizer.end_of_generation_ids()) options.stop_token_ids.insert(id);
  }

  IncrementalDetokenizer detok(tokenizer, /*skip_special=*/false, /*continues_text=*/true);
  auto result = RunSingleSequence(**backend, *prompt, options, [&](int32_t token) {
    // A stop token ends the text; it is not part of it.
    if (options.stop_token_ids.contains(token)) return true;
    const std::string piece = detok.Push(token);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  if (!result.ok()) return ReportError("generate", result.status());
  const std::string rest = detok.Finish();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  if (f.print_token_ids) {
    std::string line = "token_ids:";
    for (int32_t id : result->tokens) StrAppend(&line, " ", id);
    std::printf("%s\n", line.c_str());
  }
  const size_t n = result->tokens.size();
  std::fprintf(stderr,
               "[tokenfab] prompt %zu tokens, prefill %.3f s (%.1f tok/s); generated %zu tokens, "
               "decode %.1f tok/s; finish: %s; %d threads\n",
               prompt->size(), result->prefill_seconds,
               prompt->size() / std::max(result->prefill_seconds, 1e-9), n,
               n > 1 ? (n - 1) / std::max(result->decode_seconds, 1e-9) : 0.0,
               result->finish == FinishReason::kStop     ? "stop"
               : result->finish == FinishReason::kLength ? "length"
                                                         : "cancelled",
               f.threads);
  return 0;
}

}  // namespace tokenfab
