#include "worker/engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "common/strings.h"
#include "worker/engine/kv_cache.h"

namespace tokenfab {
namespace {

using internal::v1::WorkerFinish;
using internal::v1::WorkerOutput;
using internal::v1::WorkerRequest;

constexpr int32_t kMaxLogprobs = 20;

SamplingOptions ToSamplingOptions(const v1::SamplingParams& p) {
  SamplingOptions o;
  o.temperature = p.temperature();
  o.top_k = p.top_k();
  o.top_p = p.top_p() == 0 ? 1.0f : p.top_p();
  o.min_p = p.min_p();
  o.repetition_penalty = p.repetition_penalty() == 0 ? 1.0f : p.repetition_penalty();
  o.presence_penalty = p.presence_penalty();
  o.frequency_penalty = p.frequency_penalty();
  o.seed = p.has_seed() ? p.seed() : 0;
  return o;
}

}  // namespace

Engine::Engine(Backend* backend, const EngineOptions& options, KvEventCallback on_kv_events)
    : backend_(backend),
      options_(options),
      on_kv_events_(std::move(on_kv_events)),
      context_length_(backend->config().context_length),
      vocab_size_(backend->config().vocab_size),
      pool_(backend->num_kv_blocks()),
      scheduler_(options.scheduler, &pool_) {
  PublishStats();
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

absl::Status Engine::Submit(WorkerRequest request, OutputCallback on_output) {
  if (options_.remote_prefiller == nullptr) request.clear_remote_prefill();
  return CheckAndQueue(std::move(request), std::move(on_output), nullptr, 0);
}

absl::Status Engine::SubmitPrefill(const internal::v1::PrefillRequest& prefill,
                                   std::shared_ptr<KvSendStream> sink, OutputCallback on_output) {
  const int32_t n = prefill.token_ids_size();
  if (prefill.send_from() < 0 || prefill.send_from() >= n) {
    return absl::InvalidArgumentError(
        StrCat("send_from ", prefill.send_from(), " is outside the ", n, " tokens"));
  }
  if (sink == nullptr) return absl::InvalidArgumentError("no KV stream to send to");
  WorkerRequest request;
  request.set_request_id(PrefillId(prefill.request_id()));
  *request.mutable_prompt_ids() = prefill.token_ids();
  request.set_max_tokens(1);  // nothing is sampled; it only sizes the blocks
  request.set_deadline_unix_ms(prefill.deadline_unix_ms());
  return CheckAndQueue(std::move(request), std::move(on_output), std::move(sink),
                       prefill.send_from());
}

absl::Status Engine::CheckAndQueue(WorkerRequest request, OutputCallback on_output,
                                   std::shared_ptr<KvSendStream> kv_export, int32_t export_from) {
  const int32_t n = request.prompt_ids_size();
  if (request.request_id().empty()) return absl::InvalidArgumentError("request_id is empty");
  if (n == 0) return absl::InvalidArgumentError("the prompt is empty");
  for (int32_t id : request.prompt_ids()) {
    if (id < 0 || id >= vocab_size_) {
      return absl::InvalidArgumentError(
          StrCat("prompt token ", id, " is outside the vocabulary of ", vocab_size_));
    }
  }
  if (request.max_tokens() <= 0) return absl::InvalidArgumentError("max_tokens must be positive");
  if (static_cast<int64_t>(n) + request.max_tokens() > context_length_) {
    return absl::InvalidArgumentError(StrCat("prompt (", n, " tokens) plus max_tokens (",
                                             request.max_tokens(), ") exceeds the context length ",
                                             context_length_));
  }
  const int64_t blocks =
      (static_cast<int64_t>(n) + request.max_tokens() + kKvBlockSize - 1) / kKvBlockSize;
  if (blocks > pool_.num_blocks()) {
    return absl::InvalidArgumentError(StrCat("the request needs ", blocks, " KV blocks but the ",
                                             "worker's cache has ", pool_.num_blocks()));
  }
  if (request.logprobs() < 0 || request.logprobs() > kMaxLogprobs) {
    return absl::InvalidArgumentError(StrCat("logprobs must be between 0 and ", kMaxLogprobs));
  }
  absl::MutexLock lock(&mu_);
  if (stop_) return absl::UnavailableError("the engine is shutting down");
  if (active_ids_.contains(request.request_id())) {
    return absl::AlreadyExistsError(StrCat("request id '", request.request_id(), "' is in use"));
  }
  if (queued_ >= options_.scheduler.max_queue) {
    return absl::ResourceExhaustedError(
        StrCat("the queue is full (", options_.scheduler.max_queue, " requests waiting)"));
  }
  active_ids_.insert(request.request_id());
  ++queued_;
  incoming_.push_back(
      {std::move(request), std::move(on_output), std::move(kv_export), export_from});
  return absl::OkStatus();
}

void Engine::Cancel(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  if (active_ids_.contains(request_id)) cancels_.insert(request_id);
}

EngineStats Engine::Stats() const {
  absl::MutexLock lock(&mu_);
  EngineStats s = stats_;
  if (step_running_) {
    const double running = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                         current_step_start_)
                               .count();
    s.prefill_busy_seconds += running * current_step_prefill_share_;
    s.decode_busy_seconds += running * (1.0 - current_step_prefill_share_);
  }
  return s;
}

void Engine::Loop() {
  bool worked = true;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (!worked) {
        const absl::Condition news(
            +[](Engine* e) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return e->stop_ || !e->incoming_.empty() || !e->cancels_.empty() ||
                     !e->arrivals_.empty();
            },
            this);
        if (scheduler_.running().empty() && scheduler_.waiting().empty()) {
          mu_.Await(news);
        } else {
          // Sequences wait for KV or for blocks: look again soon (deadlines).
          mu_.AwaitWithTimeout(news, absl::Milliseconds(20));
        }
      }
      if (stop_) break;
    }
    TakeIncoming();
    FinishCancelled();
    worked = Step();
    // Stats first: whoever sees a request's final output then also sees the
    // blocks it freed.
    PublishStats();
    Deliver();
  }
  // Shutting down: every request still here ends as cancelled.
  TakeIncoming();
  std::vector<Sequence*> all;
  for (const auto& s : scheduler_.running()) all.push_back(s.get());
  for (const auto& s : scheduler_.waiting()) all.push_back(s.get());
  for (Sequence* s : all) {
    WorkerOutput out;
    Finish(s, internal::v1::WORKER_FINISH_CANCELLED, &out);
  }
  PublishStats();
  Deliver();
}

void Engine::TakeIncoming() {
  std::vector<Incoming> incoming;
  absl::flat_hash_set<std::string> cancels;
  std::vector<KvArrival> arrivals;
  {
    absl::MutexLock lock(&mu_);
    incoming.swap(incoming_);
    cancels.swap(cancels_);
    arrivals.swap(arrivals_);
  }
  for (KvArrival& a : arrivals) ApplyArrival(std::move(a));
  for (Incoming& in : incoming) {
    auto seq = std::make_unique<Sequence>();
    seq->request = std::move(in.request);
    seq->on_output = std::move(in.on_output);
    seq->arrival = next_arrival_++;
    seq->tokens.assign(seq->request.prompt_ids().begin(), seq->request.prompt_ids().end());
    seq->prompt_len = static_cast<int32_t>(seq->tokens.size());
    seq->kv_export = std::move(in.kv_export);
    seq->export_sent = in.export_from;
    seq->stop_ids.insert(seq->request.stop_token_ids().begin(),
                         seq->request.stop_token_ids().end());
    seq->sampler =
        std::make_unique<Sampler>(ToSamplingOptions(seq->request.sampling()), seq->tokens);
    if (seq->request.deadline_unix_ms() > 0) {
      seq->deadline = std::chrono::system_clock::time_point(
          std::chrono::milliseconds(seq->request.deadline_unix_ms()));
    }
    Sequence* raw = seq.get();
    by_id_[raw->request.request_id()] = raw;
    if (absl::Status s = scheduler_.Add(std::move(seq)); !s.ok()) {
      // Submit checked the queue, so this is a race with the limit; report it.
      by_id_.erase(raw->request.request_id());
      WorkerOutput out;
      out.set_request_id(raw->request.request_id());
      out.set_finish(internal::v1::WORKER_FINISH_ERROR);
      out.set_error(std::string(s.message()));
      in.on_output(out);
      absl::MutexLock lock(&mu_);
      active_ids_.erase(out.request_id());
    }
  }
  for (const std::string& id : cancels) {
    if (auto it = by_id_.find(id); it != by_id_.end()) it->second->cancelled = true;
  }
}

void Engine::FinishCancelled() {
  const auto now = std::chrono::system_clock::now();
  std::vector<Sequence*> done;
  auto check = [&](const std::unique_ptr<Sequence>& s) {
    if (s->cancelled || now >= s->deadline) done.push_back(s.get());
  };
  for (const auto& s : scheduler_.running()) check(s);
  for (const auto& s : scheduler_.waiting()) check(s);
  for (Sequence* s : done) {
    WorkerOutput out;
    Finish(s, internal::v1::WORKER_FINISH_CANCELLED, &out);
  }
}

void Engine::Finish(Sequence* seq, WorkerFinish reason, WorkerOutput* out,
                    const std::string& error) {
  out->set_request_id(seq->request.request_id());
  out->set_finish(reason);
  if (!error.empty()) out->set_error(error);
  out->set_prompt_tokens(seq->prompt_len);
  out->set_cached_tokens(seq->cached_tokens);
  out->set_completion_tokens(seq->generated());
  by_id_.erase(seq->request.request_id());
  if (seq->awaiting_kv && options_.remote_prefiller != nullptr) {
    options_.remote_prefiller->Abort(seq->request.request_id());
  }
  std::unique_ptr<Sequence> owned = scheduler_.Remove(seq);
  emits_.push_back({&owned->on_output, std::move(*out)});
  finished_.push_back(std::move(owned));
}

bool Engine::Step() {
  const auto started = std::chrono::steady_clock::now();
  const std::vector<ScheduledSequence> plan = scheduler_.Schedule();
  if (options_.remote_prefiller != nullptr) StartRemotePrefills();
  if (plan.empty()) return false;
  std::vector<SequenceStep> steps;
  steps.reserve(plan.size());
  // A backend that samples on its device chooses the tokens of sequences
  // that want no logprobs (those need the logits here).
  // (A member, reserved to the plan: the pointers below stay valid.)
  std::vector<DeviceSampling>& device_sampling = device_sampling_;
  device_sampling.clear();
  device_sampling.reserve(plan.size());
  int64_t prefill = 0, decode = 0;
  for (const ScheduledSequence& p : plan) {
    Sequence* s = p.seq;
    const bool last = s->num_computed + p.num_tokens == static_cast<int32_t>(s->tokens.size()) &&
                      s->kv_export == nullptr;
    steps.push_back({std::span<const int32_t>(s->tokens).subspan(s->num_computed, p.num_tokens),
                     s->num_computed, s->block_table,
                     last ? LogitsMode::kLast : LogitsMode::kNone});
    steps.back().prompt_end = s->prompt_len;
    if (last && backend_->samples_on_device() && s->request.logprobs() == 0) {
      device_sampling.push_back({ToSamplingOptions(s->request.sampling()), s->tokens,
                                 s->prompt_len, static_cast<uint64_t>(s->generated())});
      steps.back().sampling = &device_sampling.back();
    }
    if (p.num_tokens == 1 && s->num_computed >= s->prompt_len) {
      ++decode;
    } else {
      prefill += p.num_tokens;
    }
  }
  // Prefills for a decode worker: each layer's KV leaves as soon as the layer
  // is computed, while the next layers run.
  struct Export {
    Sequence* seq;
    int32_t first, end;
  };
  std::vector<Export> exports;
  for (const ScheduledSequence& p : plan) {
    if (p.seq->kv_export == nullptr) continue;
    const int32_t end = p.seq->num_computed + p.num_tokens;
    if (end > p.seq->export_sent) exports.push_back({p.seq, p.seq->export_sent, end});
  }
  Backend::LayerDone after_layer;
  if (!exports.empty()) {
    after_layer = [this, &exports](int32_t layer) {
      for (const Export& e : exports) ExportLayer(e.seq, layer, e.first, e.end - e.first);
    };
  }
  {
    // Busy time counts while the step runs, not only when it ends: a long
    // prefill step must not look idle to the power meter in the meantime.
    absl::MutexLock lock(&mu_);
    current_step_start_ = started;
    current_step_prefill_share_ =
        prefill + decode > 0 ? static_cast<double>(prefill) / static_cast<double>(prefill + decode)
                             : 0.0;
    step_running_ = true;
  }
  const absl::Status status = backend_->Forward(steps, &step_result_, after_layer);
  if (status.ok()) {
    for (const Export& e : exports) e.seq->export_sent = e.end;
  }
  if (!status.ok()) {
    {
      absl::MutexLock lock(&mu_);
      step_running_ = false;
    }
    for (const ScheduledSequence& p : plan) {
      WorkerOutput out;
      Finish(p.seq, internal::v1::WORKER_FINISH_ERROR, &out, std::string(status.message()));
    }
    return true;
  }
  for (size_t i = 0; i < plan.size(); ++i) {
    Sequence* s = plan[i].seq;
    scheduler_.Computed(s, plan[i].num_tokens);
    if (s->kv_export != nullptr) {
      if (s->num_computed == static_cast<int32_t>(s->tokens.size())) {
        WorkerOutput out;
        Finish(s, internal::v1::WORKER_FINISH_LENGTH, &out);
        absl::MutexLock lock(&mu_);
        ++stats_.kv_exports;
      }
      continue;
    }
    const int32_t row = step_result_.first_row[i];
    if (row < 0) continue;
    const bool chosen_by_backend = !step_result_.tokens.empty() && step_result_.tokens[row] >= 0;
    std::span<const float> logits;
    int32_t token;
    if (chosen_by_backend) {
      token = step_result_.tokens[row];
      s->sampler->Accept(token);
    } else {
      logits = std::span<const float>(step_result_.Row(row),
                                      static_cast<size_t>(step_result_.vocab_size));
      token = s->sampler->Sample(logits);
    }
    WorkerOutput out;
    out.set_request_id(s->request.request_id());
    out.set_prompt_tokens(s->prompt_len);
    out.set_cached_tokens(s->cached_tokens);
    out.add_token_ids(token);
    if (s->request.logprobs() > 0) {
      internal::v1::TokenLogprobs* lp = out.add_logprobs();
      lp->mutable_chosen()->set_token_id(token);
      // A token the backend chose itself is certain: log-probability 0.
      lp->mutable_chosen()->set_logprob(chosen_by_backend ? 0.0f : TokenLogprob(logits, token));
      if (!chosen_by_backend) {
        for (const TokenLogprobValue& v : TopLogprobs(logits, s->request.logprobs())) {
          internal::v1::TokenLogprob* t = lp->add_top();
          t->set_token_id(v.token);
          t->set_logprob(v.logprob);
        }
      }
    }
    s->tokens.push_back(token);
    WorkerFinish finish = internal::v1::WORKER_FINISH_NONE;
    if (s->stop_ids.contains(token)) {
      finish = internal::v1::WORKER_FINISH_STOP_TOKEN;
    } else if (s->generated() >= s->request.max_tokens() ||
               static_cast<int32_t>(s->tokens.size()) >= context_length_) {
      finish = internal::v1::WORKER_FINISH_LENGTH;
    }
    if (finish != internal::v1::WORKER_FINISH_NONE) {
      Finish(s, finish, &out);
    } else {
      emits_.push_back({&s->on_output, std::move(out)});
    }
  }
  if (on_kv_events_) {
    std::vector<internal::v1::KvEvent> events = pool_.TakeEvents();
    if (!events.empty()) on_kv_events_(std::move(events));
  } else {
    pool_.TakeEvents();
  }
  StepRecord record;
  record.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  record.sequences = static_cast<int32_t>(plan.size());
  record.prefill_tokens = prefill;
  record.decode_tokens = decode;
  record.phase = prefill > 0 ? (decode > 0 ? "mixed" : "prefill") : "decode";
  {
    absl::MutexLock lock(&mu_);
    const double prefill_share = current_step_prefill_share_;
    step_running_ = false;
    ++stats_.steps;
    stats_.prefill_tokens += prefill;
    stats_.decode_tokens += decode;
    stats_.prefill_busy_seconds += record.seconds * prefill_share;
    stats_.decode_busy_seconds += record.seconds * (1.0 - prefill_share);
  }
  if (options_.on_step) options_.on_step(record);
  return true;
}

void Engine::StartRemotePrefills() {
  for (const std::string& id : scheduler_.TakeRemoteAborts()) options_.remote_prefiller->Abort(id);
  for (Sequence* s : scheduler_.TakeRemoteStarts()) {
    RemotePrefillJob job;
    job.request_id = s->request.request_id();
    job.where = s->request.remote_prefill();
    job.tokens.assign(s->tokens.begin(), s->tokens.begin() + s->remote_end);
    job.send_from = s->num_computed;
    job.deadline_unix_ms = s->request.deadline_unix_ms();
    job.layout = backend_->kv_layout();
    const uint64_t generation = s->remote_generation;
    options_.remote_prefiller->Start(
        std::move(job),
        [this, id = job.request_id, generation](absl::StatusOr<std::unique_ptr<ReceivedKv>> kv) {
          absl::MutexLock lock(&mu_);
          arrivals_.push_back({id, generation, std::move(kv)});
        });
  }
}

void Engine::ApplyArrival(KvArrival a) {
  auto it = by_id_.find(a.request_id);
  if (it == by_id_.end()) return;  // finished meanwhile
  Sequence* s = it->second;
  if (!s->awaiting_kv || s->remote_generation != a.generation) return;  // preempted since
  s->awaiting_kv = false;
  absl::Status status = a.kv.status();
  if (status.ok()) {
    const ReceivedKv& kv = **a.kv;
    if (kv.spec.first_position != s->num_computed || kv.spec.end_position != s->remote_end ||
        kv.spec.layout != backend_->kv_layout()) {
      status = absl::InternalError("the KV that arrived is not the KV that was asked for");
    } else {
      status = kv.WriteTo(*backend_, s->block_table);
    }
  }
  if (status.ok()) scheduler_.Computed(s, s->remote_end - s->num_computed);
  absl::MutexLock lock(&mu_);
  if (!status.ok()) {
    ++stats_.remote_prefills_failed;
    std::fprintf(stderr,
                 "tokenfab worker (backend=%s): remote prefill of %s failed (%s); computing it "
                 "here\n",
                 std::string(backend_->name()).c_str(), a.request_id.c_str(),
                 std::string(status.message()).c_str());
    return;
  }
  ++stats_.remote_prefills_ok;
}

void Engine::ExportLayer(Sequence* s, int32_t layer, int32_t first, int32_t count) {
  if (!s->kv_export->PushSlice(*backend_, {layer, s->block_table, first, count}).ok()) {
    s->kv_export->Abort();  // the decode worker recomputes
  }
}

void Engine::Deliver() {
  if (!finished_.empty()) {
    absl::MutexLock lock(&mu_);
    for (const auto& s : finished_) active_ids_.erase(s->request.request_id());
  }
  for (Emit& e : emits_) (*e.callback)(e.output);
  emits_.clear();
  finished_.clear();
}

void Engine::PublishStats() {
  absl::MutexLock lock(&mu_);
  stats_.running = static_cast<int32_t>(scheduler_.running().size());
  stats_.waiting = static_cast<int32_t>(scheduler_.waiting().size());
  stats_.kv_blocks_total = pool_.num_blocks();
  stats_.kv_blocks_used = pool_.num_used();
  stats_.kv_blocks_cached = pool_.num_cached_free();
  stats_.preemptions = scheduler_.preemptions();
  stats_.prefix_queries = pool_.prefix_queries();
  stats_.prefix_hits = pool_.prefix_hits();
  queued_ = static_cast<int32_t>(incoming_.size() + scheduler_.waiting().size());
  int64_t pending = 0;
  for (const auto& q : scheduler_.running())
    pending += std::max(0, q->prompt_len - q->num_computed);
  for (const auto& q : scheduler_.waiting())
    pending += std::max(0, q->prompt_len - q->num_computed);
  stats_.pending_prefill_tokens = pending;
}

}  // namespace tokenfab
