// tokenfab serve: router and worker in one process. gRPC (tokenfab.v1
// Generation, health, reflection), the OpenAI-compatible HTTP API and
// Prometheus metrics, over the CPU engine with continuous batching.
//
//   tokenfab serve [--model PATH] [--grpc-port 50051] [--http-port 8000]
//                  [--metrics-port 9400] [--threads N] ...
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "common/strings.h"
#include "common/thread_pool.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "prometheus/exposer.h"
#include "server/cli/cli_util.h"
#include "server/cli/commands.h"
#include "server/engine_metrics.h"
#include "server/grpc_service.h"
#include "server/http/http_server.h"
#include "server/in_process_worker.h"
#include "server/router.h"
#include "worker/engine/cpu_backend.h"
#include "worker/engine/engine.h"
#include "worker/model_loader.h"

namespace tokenfab {
namespace {

struct ServeFlags {
  std::string model;
  std::string model_id;
  std::string host = "0.0.0.0";
  int32_t grpc_port = 50051;
  int32_t http_port = 8000;
  int32_t metrics_port = 9400;
  int32_t threads = std::min(HardwareThreads(), 1024);
  int32_t http_threads = 1;
  int32_t kv_cache_mb = 1024;
  std::string kv_cache_type = "f16";
  int32_t max_num_seqs = 32;
  int32_t max_batched_tokens = 512;
  int32_t max_queue = 256;
};

std::string DefaultModelPath() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const std::string cache = xdg && *xdg ? std::string(xdg) : std::string(home ? home : "/root") + "/.cache";
  return cache + "/tokenfab/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

absl::Status CheckFlags(const ServeFlags& f) {
  auto range = [](std::string_view name, int64_t v, int64_t lo, int64_t hi) -> absl::Status {
    if (v < lo || v > hi) {
      return absl::InvalidArgumentError(
          StrCat("--", name, " must be between ", lo, " and ", hi, ", got ", v));
    }
    return absl::OkStatus();
  };
  for (auto [name, v] : {std::pair<std::string_view, int32_t>{"grpc-port", f.grpc_port},
                         {"http-port", f.http_port},
                         {"metrics-port", f.metrics_port}}) {
    if (absl::Status s = range(name, v, 0, 65535); !s.ok()) return s;
  }
  if (absl::Status s = range("threads", f.threads, 1, 1024); !s.ok()) return s;
  if (absl::Status s = range("http-threads", f.http_threads, 1, 64); !s.ok()) return s;
  if (absl::Status s = range("kv-cache-mb", f.kv_cache_mb, 1, 1 << 22); !s.ok()) return s;
  if (absl::Status s = range("max-num-seqs", f.max_num_seqs, 1, 4096); !s.ok()) return s;
  if (absl::Status s = range("max-batched-tokens", f.max_batched_tokens, 1, 1 << 20); !s.ok()) return s;
  if (absl::Status s = range("max-queue", f.max_queue, 0, 1 << 20); !s.ok()) return s;
  if (f.kv_cache_type != "f16" && f.kv_cache_type != "f32") {
    return absl::InvalidArgumentError(
        StrCat("--kv-cache-type must be f16 or f32, got '", f.kv_cache_type, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

int RunServe(const std::vector<std::string>& args) {
  ServeFlags f;
  FlagSet flags("serve", "Serve a model over gRPC and the OpenAI HTTP API (router and worker in one process).");
  flags.AddString("model", &f.model, "GGUF file or Hugging Face folder (default: the setup step's SmolLM2)");
  flags.AddString("model-id", &f.model_id, "the model name clients use (default: the file name)");
  flags.AddString("host", &f.host, "address to listen on (default 0.0.0.0)");
  flags.AddInt("grpc-port", &f.grpc_port, "gRPC port (default 50051; 0 picks one)");
  flags.AddInt("http-port", &f.http_port, "OpenAI-compatible HTTP port (default 8000; 0 picks one)");
  flags.AddInt("metrics-port", &f.metrics_port, "Prometheus /metrics port (default 9400; 0 picks one)");
  flags.AddInt("threads", &f.threads, "engine threads (default: all hardware threads)");
  flags.AddInt("http-threads", &f.http_threads, "HTTP I/O threads (default 1)");
  flags.AddInt("kv-cache-mb", &f.kv_cache_mb, "memory for the KV cache in MiB (default 1024)");
  flags.AddString("kv-cache-type", &f.kv_cache_type, "f16 (default) or f32");
  flags.AddInt("max-num-seqs", &f.max_num_seqs, "sequences in one batch (default 32)");
  flags.AddInt("max-batched-tokens", &f.max_batched_tokens,
               "tokens in one step, prefill chunks included (default 512)");
  flags.AddInt("max-queue", &f.max_queue, "requests waiting before new ones get RESOURCE_EXHAUSTED / 429 (default 256)");
  if (int rc = ParseFlagsOrExit(flags, "serve", args); rc >= 0) return rc;
  if (absl::Status s = CheckFlags(f); !s.ok()) {
    ReportError("serve", s);
    return kExitUsage;
  }
  if (f.model.empty()) f.model = DefaultModelPath();

  // SIGINT/SIGTERM are taken by sigwait below; block them before any thread
  // starts so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto model = LoadModel(f.model);
  if (!model.ok()) return ReportError("serve", model.status());
  const ModelConfig& config = (*model)->config;
  const KvDType kv_type = f.kv_cache_type == "f32" ? KvDType::kF32 : KvDType::kF16;
  const uint64_t block_bytes = KvCache::BytesPerBlock(config, kv_type);
  const int64_t blocks = (static_cast<int64_t>(f.kv_cache_mb) << 20) / static_cast<int64_t>(block_bytes);
  if (blocks < 1) {
    return ReportError("serve", absl::InvalidArgumentError(StrCat(
                                    "--kv-cache-mb ", f.kv_cache_mb, " holds no KV block of this model (",
                                    block_bytes, " bytes each)")));
  }
  CpuBackendOptions backend_options;
  backend_options.threads = f.threads;
  backend_options.kv_dtype = kv_type;
  backend_options.num_kv_blocks = static_cast<int32_t>(std::min<int64_t>(blocks, 1 << 30));
  auto backend = CpuBackend::Create(config, (*model)->weights, backend_options);
  if (!backend.ok()) return ReportError("serve", backend.status());

  EngineOptions engine_options;
  engine_options.scheduler.max_num_seqs = f.max_num_seqs;
  engine_options.scheduler.max_batched_tokens = f.max_batched_tokens;
  engine_options.scheduler.max_queue = f.max_queue;
  auto engine = std::make_unique<Engine>(backend->get(), engine_options);
  InProcessWorker worker(engine.get());
  RouterOptions router_options;
  router_options.model_id =
      f.model_id.empty() ? std::filesystem::path(f.model).filename().replace_extension().string() : f.model_id;
  if (router_options.model_id.empty()) router_options.model_id = "model";
  Router router(**model, &worker, router_options);

  // gRPC: the API, the standard health service and reflection.
  GenerationService service(&router);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(StrCat(f.host, ":", f.grpc_port), grpc::InsecureServerCredentials(), &grpc_port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> grpc_server = builder.BuildAndStart();
  if (!grpc_server || grpc_port == 0) {
    return ReportError("serve", absl::UnavailableError(
                                    StrCat("cannot listen for gRPC on ", f.host, ":", f.grpc_port)));
  }

  HttpServerOptions http_options;
  http_options.host = f.host;
  http_options.port = f.http_port;
  http_options.threads = f.http_threads;
  auto http = HttpServer::Start(&router, http_options);
  if (!http.ok()) return ReportError("serve", http.status());

  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(StrCat(f.host, ":", f.metrics_port));
  } catch (const std::exception& e) {
    return ReportError("serve", absl::UnavailableError(StrCat("cannot listen for metrics on ", f.host,
                                                              ":", f.metrics_port, ": ", e.what())));
  }
  auto metrics = std::make_shared<EngineMetrics>(engine.get());
  exposer->RegisterCollectable(metrics);
  const std::vector<int> metrics_ports = exposer->GetListeningPorts();

  std::fprintf(stderr,
               "tokenfab serve: model %s (%s, context %d), %d KV blocks of 16 tokens, %d threads\n"
               "tokenfab serve: gRPC on %s:%d, HTTP on http://%s:%d, metrics on http://%s:%d/metrics\n",
               router_options.model_id.c_str(), f.model.c_str(), config.context_length,
               backend_options.num_kv_blocks, f.threads, f.host.c_str(), grpc_port, f.host.c_str(),
               (*http)->port(), f.host.c_str(), metrics_ports.empty() ? 0 : metrics_ports[0]);
  std::fflush(stderr);

  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "tokenfab serve: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  // Stop taking requests, end the ones in flight (they finish as cancelled),
  // then stop the engine.
  (*http)->Shutdown();
  grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  engine.reset();
  grpc_server->Wait();
  return 0;
}

}  // namespace tokenfab
