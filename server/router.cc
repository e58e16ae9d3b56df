#include "server/router.h"

#include "absl/container/flat_hash_set.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "scheduler/admission.h"
#include "server/prompt_tokens.h"
#include "server/stop_matcher.h"
#include "worker/tokenizer/incremental_detokenizer.h"
#include "worker/tokenizer/utf8.h"

namespace tokenfab {
namespace {

using internal::v1::WorkerFinish;
using internal::v1::WorkerOutput;

v1::FinishReason ToFinishReason(WorkerFinish f) {
  switch (f) {
    case internal::v1::WORKER_FINISH_STOP_TOKEN: return v1::FINISH_REASON_STOP;
    case internal::v1::WORKER_FINISH_LENGTH: return v1::FINISH_REASON_LENGTH;
    case internal::v1::WORKER_FINISH_CANCELLED: return v1::FINISH_REASON_CANCELLED;
    case internal::v1::WORKER_FINISH_ERROR: return v1::FINISH_REASON_ERROR;
    default: return v1::FINISH_REASON_UNSPECIFIED;
  }
}

// One request's way back: worker outputs in, GenerateResponses out. Lives as
// long as the worker's callback holds it. Worker thread only.
class RequestStream {
 public:
  using Clock = std::chrono::steady_clock;

  RequestStream(std::string id, const Tokenizer& tokenizer, std::shared_ptr<ResponseSink> sink,
                std::vector<std::string> stops, absl::flat_hash_set<int32_t> stop_ids,
                int32_t prompt_tokens, WorkerClient* worker, RequestMetrics* metrics,
                LoadObserver* load, Clock::time_point arrived)
      : id_(std::move(id)),
        tokenizer_(tokenizer),
        sink_(std::move(sink)),
        detok_(tokenizer, /*skip_special=*/false, /*continues_text=*/true),
        stops_(std::move(stops)),
        stop_ids_(std::move(stop_ids)),
        prompt_tokens_(prompt_tokens),
        worker_(worker),
        metrics_(metrics),
        load_(load),
        arrived_(arrived) {
    if (metrics_ != nullptr) metrics_->Started();
  }
  // A stream the worker never finished (it went away) still leaves the gauges.
  ~RequestStream() {
    if (!done_ && !abandoned_) {
      if (metrics_ != nullptr) {
        metrics_->Finished(v1::FINISH_REASON_ERROR, Seconds(Clock::now() - arrived_), got_token_);
      }
      Observe(/*completed=*/false);
    }
  }
  // The worker refused it: it never started.
  void Abandon() {
    if (metrics_ != nullptr && !abandoned_) metrics_->Abandoned();
    abandoned_ = true;
  }

  void OnWorkerOutput(const WorkerOutput& out) {
    if (done_) return;  // ended by a stop string; the worker's tail is dropped
    const Clock::time_point now = Clock::now();
    if (metrics_ != nullptr && out.token_ids_size() > 0) {
      if (!got_token_) {
        metrics_->FirstToken(Seconds(now - arrived_), prompt_tokens_, out.cached_tokens());
        metrics_->Tokens(out.token_ids_size(), 0.0, /*first=*/true);
      } else {
        metrics_->Tokens(out.token_ids_size(), Seconds(now - last_token_), /*first=*/false);
      }
    }
    if (out.token_ids_size() > 0) {
      if (!got_token_) first_token_ = now;
      got_token_ = true;
      last_token_ = now;
    }
    v1::GenerateResponse r;
    r.set_request_id(id_);
    cached_tokens_ = out.cached_tokens();
    std::string text;
    for (int i = 0; i < out.token_ids_size(); ++i) {
      const int32_t t = out.token_ids(i);
      r.add_token_ids(t);
      ++completion_tokens_;
      // A stop token ends the text; it is not part of it.
      const bool stop_token = out.finish() == internal::v1::WORKER_FINISH_STOP_TOKEN &&
                              i + 1 == out.token_ids_size() && stop_ids_.contains(t);
      if (!stop_token) text += detok_.Push(t);
      if (i < out.logprobs_size()) AddLogprobs(out.logprobs(i), r.add_logprobs());
    }
    const bool finished = out.finish() != internal::v1::WORKER_FINISH_NONE;
    if (finished) text += detok_.Finish();
    bool stopped = false;
    std::string emit = stops_.Push(text, &stopped);
    v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
    if (stopped) {
      reason = v1::FINISH_REASON_STOP;
      worker_->Cancel(id_);
    } else if (finished) {
      emit += stops_.Flush();
      reason = ToFinishReason(out.finish());
    }
    r.set_text(std::move(emit));
    if (reason != v1::FINISH_REASON_UNSPECIFIED) {
      done_ = true;
      r.set_finish_reason(reason);
      v1::Usage* u = r.mutable_usage();
      u->set_prompt_tokens(prompt_tokens_);
      u->set_cached_tokens(cached_tokens_);
      u->set_completion_tokens(completion_tokens_);
      if (metrics_ != nullptr) metrics_->Finished(reason, Seconds(now - arrived_), got_token_);
      Observe(reason == v1::FINISH_REASON_STOP || reason == v1::FINISH_REASON_LENGTH);
    }
    sink_->OnResponse(r);
  }

 private:
  // Tells the planner's observer how the request went: its TTFT and its
  // mean inter-token latency (over the tokens after the first).
  void Observe(bool completed) {
    if (load_ == nullptr) return;
    std::optional<double> ttft, itl;
    if (got_token_) ttft = Seconds(first_token_ - arrived_);
    if (got_token_ && completion_tokens_ > 1) {
      itl = Seconds(last_token_ - first_token_) / (completion_tokens_ - 1);
    }
    load_->Ended(completed, completion_tokens_, ttft, itl);
  }

  void AddLogprobs(const internal::v1::TokenLogprobs& in, v1::TokenLogprobs* out) {
    auto fill = [&](const internal::v1::TokenLogprob& a, v1::TokenLogprob* b) {
      b->set_token_id(a.token_id());
      b->set_logprob(a.logprob());
      b->set_text(tokenizer_.TokenPiece(a.token_id()));
    };
    fill(in.chosen(), out->mutable_chosen());
    for (const auto& t : in.top()) fill(t, out->add_top());
  }

  const std::string id_;
  const Tokenizer& tokenizer_;
  std::shared_ptr<ResponseSink> sink_;
  IncrementalDetokenizer detok_;
  StopMatcher stops_;
  const absl::flat_hash_set<int32_t> stop_ids_;
  const int32_t prompt_tokens_;
  WorkerClient* worker_;
  int32_t cached_tokens_ = 0;
  int32_t completion_tokens_ = 0;
  bool done_ = false;
  RequestMetrics* const metrics_;
  LoadObserver* const load_;
  const Clock::time_point arrived_;
  Clock::time_point first_token_, last_token_;
  bool got_token_ = false;
  bool abandoned_ = false;

  static double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
};

absl::Status CheckUtf8(const v1::GenerateRequest& r) {
  auto bad = [](std::string_view field) {
    return absl::InvalidArgumentError(StrCat(field, " is not valid UTF-8"));
  };
  if (r.has_prompt() && !IsValidUtf8(r.prompt())) return bad("prompt");
  if (r.has_chat()) {
    for (const v1::ChatMessage& m : r.chat().messages()) {
      if (!IsValidUtf8(m.role()) || !IsValidUtf8(m.content())) return bad("a chat message");
    }
  }
  for (const std::string& s : r.stop()) {
    if (!IsValidUtf8(s)) return bad("a stop string");
  }
  return absl::OkStatus();
}

}  // namespace

Router::Router(const LoadedModel& model, WorkerClient* worker, RouterOptions options)
    : model_(model), worker_(worker), options_(std::move(options)), id_salt_(RandomU64()) {}

std::string Router::NewRequestId() {
  const uint64_t n = next_id_.fetch_add(1);
  char buf[40];
  std::snprintf(buf, sizeof buf, "req-%08llx-%llu", static_cast<unsigned long long>(id_salt_ & 0xffffffff),
                static_cast<unsigned long long>(n));
  return buf;
}

absl::StatusOr<std::string> Router::Generate(const v1::GenerateRequest& request,
                                             std::shared_ptr<ResponseSink> sink,
                                             std::chrono::system_clock::time_point deadline) {
  absl::StatusOr<std::string> id = Start(request, std::move(sink), deadline);
  if (!id.ok() && options_.metrics != nullptr) options_.metrics->Refused(id.status());
  // Requests refused for want of room are demand the planner must see;
  // malformed ones are not.
  if (!id.ok() && options_.load != nullptr &&
      (id.status().code() == absl::StatusCode::kResourceExhausted ||
       id.status().code() == absl::StatusCode::kUnavailable)) {
    options_.load->Refused();
  }
  return id;
}

absl::StatusOr<std::string> Router::Start(const v1::GenerateRequest& request,
                                          std::shared_ptr<ResponseSink> sink,
                                          std::chrono::system_clock::time_point deadline) {
  const auto arrived = std::chrono::steady_clock::now();
  if (!request.model().empty() && request.model() != options_.model_id) {
    return absl::InvalidArgumentError(StrCat("model '", request.model(),
                                             "' is not served here (this server serves '",
                                             options_.model_id, "')"));
  }
  RETURN_IF_ERROR(CheckUtf8(request));
  for (const std::string& s : request.stop()) {
    if (s.empty()) return absl::InvalidArgumentError("stop contains an empty string");
  }
  RETURN_IF_ERROR(CheckRequestFields(request));
  const Tokenizer& tok = *model_.tokenizer;
  ASSIGN_OR_RETURN(std::vector<int32_t> prompt,
                   PromptTokens(request, tok, model_.chat_template.get()));
  ASSIGN_OR_RETURN(const int32_t max_tokens,
                   AdmitRequest(request, static_cast<int32_t>(prompt.size()),
                                {model_.config.context_length, model_.config.vocab_size}));

  internal::v1::WorkerRequest wr;
  std::string id = request.request_id().empty() ? NewRequestId() : request.request_id();
  wr.set_request_id(id);
  wr.mutable_prompt_ids()->Assign(prompt.begin(), prompt.end());
  *wr.mutable_sampling() = request.sampling();
  if (!request.sampling().has_seed()) {
    wr.mutable_sampling()->set_seed(RandomU64());
  }
  wr.set_max_tokens(max_tokens);
  absl::flat_hash_set<int32_t> stop_ids(request.stop_token_ids().begin(),
                                        request.stop_token_ids().end());
  if (!request.has_stop_at_eos() || request.stop_at_eos()) {
    for (int32_t id_eog : tok.end_of_generation_ids()) stop_ids.insert(id_eog);
  }
  for (int32_t s : stop_ids) wr.add_stop_token_ids(s);
  wr.set_logprobs(request.logprobs());
  wr.set_priority(request.priority());
  if (deadline != std::chrono::system_clock::time_point::max()) {
    wr.set_deadline_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                                deadline.time_since_epoch())
                                .count());
  }
  auto stream = std::make_shared<RequestStream>(
      id, tok, std::move(sink), std::vector<std::string>(request.stop().begin(), request.stop().end()),
      std::move(stop_ids), static_cast<int32_t>(prompt.size()), worker_, options_.metrics,
      options_.load, arrived);
  if (absl::Status s = worker_->Submit(std::move(wr), [stream](const WorkerOutput& out) {
        stream->OnWorkerOutput(out);
      });
      !s.ok()) {
    stream->Abandon();
    return s;
  }
  if (options_.load != nullptr) options_.load->Arrived(static_cast<int32_t>(prompt.size()));
  return id;
}

void Router::Cancel(const std::string& request_id) { worker_->Cancel(request_id); }

absl::StatusOr<v1::TokenizeResponse> Router::Tokenize(const v1::TokenizeRequest& request) const {
  if (!IsValidUtf8(request.text())) return absl::InvalidArgumentError("text is not valid UTF-8");
  const Tokenizer& tok = *model_.tokenizer;
  v1::TokenizeResponse r;
  for (int32_t id : tok.Encode(request.text(), request.add_special_tokens() && tok.add_bos_default())) {
    r.add_token_ids(id);
  }
  return r;
}

v1::ListModelsResponse Router::ListModels() const {
  v1::ListModelsResponse r;
  v1::ModelInfo* m = r.add_models();
  m->set_id(options_.model_id);
  m->set_architecture(model_.config.arch_name);
  m->set_context_length(model_.config.context_length);
  m->set_vocab_size(model_.config.vocab_size);
  return r;
}

}  // namespace tokenfab
