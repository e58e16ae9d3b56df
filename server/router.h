// The router's request path, shared by the gRPC and HTTP faces: checks a
// tokenfab.v1.GenerateRequest, renders and tokenizes its prompt, admits it,
// hands it to a worker, and turns the worker's token stream back into
// GenerateResponse messages (incremental text that never splits a UTF-8
// character, stop strings, logprobs with token text, usage).
//
// Thread-safe: Generate/Cancel/Tokenize from any thread. A request's
// responses reach its ResponseSink on a worker thread, in order.
#ifndef TOKENFAB_SERVER_ROUTER_H_
#define TOKENFAB_SERVER_ROUTER_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "scheduler/worker_client.h"
#include "scheduler/load_observer.h"
#include "server/request_metrics.h"
#include "tokenfab/v1/generation.pb.h"
#include "worker/model_loader.h"

namespace tokenfab {

class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  // Called on a worker thread, in order; must not block. The last response
  // has a finish_reason and usage; nothing follows it.
  virtual void OnResponse(const v1::GenerateResponse& response) = 0;
};

struct RouterOptions {
  std::string model_id;  // the name clients use; ListModels reports it
  // How long a client told "queue full" should wait before retrying.
  int32_t retry_after_seconds = 1;
  // Request metrics to update (optional; must outlive the router).
  RequestMetrics* metrics = nullptr;
  // The planner's view of the load (optional; must outlive the router).
  LoadObserver* load = nullptr;
};

class Router {
 public:
  // `model` (tokenizer, chat template, limits) and `worker` must outlive it.
  Router(const LoadedModel& model, WorkerClient* worker, RouterOptions options);

  // Starts a request and returns its id; responses then go to `sink`. On an
  // error nothing is streamed: InvalidArgument names the field (empty prompt,
  // bad sampling value, max_tokens, too long a prompt, invalid UTF-8, unknown
  // model); ResourceExhausted means the queue is full (retry later).
  absl::StatusOr<std::string> Generate(const v1::GenerateRequest& request,
                                       std::shared_ptr<ResponseSink> sink,
                                       std::chrono::system_clock::time_point deadline =
                                           std::chrono::system_clock::time_point::max());

  // Stops a request; its last response says CANCELLED. Any thread.
  void Cancel(const std::string& request_id);

  absl::StatusOr<v1::TokenizeResponse> Tokenize(const v1::TokenizeRequest& request) const;
  v1::ListModelsResponse ListModels() const;

  // False while no worker could take a request (/health says 503).
  bool Ready() const { return worker_->Ready(); }
  const std::string& model_id() const { return options_.model_id; }
  int32_t retry_after_seconds() const { return options_.retry_after_seconds; }
  const LoadedModel& model() const { return model_; }

 private:
  std::string NewRequestId();
  absl::StatusOr<std::string> Start(const v1::GenerateRequest& request,
                                    std::shared_ptr<ResponseSink> sink,
                                    std::chrono::system_clock::time_point deadline);

  const LoadedModel& model_;
  WorkerClient* worker_;
  const RouterOptions options_;
  std::atomic<uint64_t> next_id_{0};
  const uint64_t id_salt_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_ROUTER_H_
