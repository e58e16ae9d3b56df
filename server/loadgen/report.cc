#include "server/loadgen/report.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/strings.h"

namespace tokenfab::loadgen {
namespace {

using nlohmann::json;

json DistributionJson(const Distribution& d) {
  return {{"count", d.count}, {"mean", d.mean}, {"min", d.min}, {"max", d.max},
          {"p50", d.p50},     {"p90", d.p90},   {"p99", d.p99}};
}

std::string DistributionRow(std::string_view name, const Distribution& d, int digits) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "  %-26.*s %10s %10s %10s %10s %10s %10s\n",
                static_cast<int>(name.size()), name.data(), Fixed(d.mean, digits).c_str(),
                Fixed(d.p50, digits).c_str(), Fixed(d.p90, digits).c_str(),
                Fixed(d.p99, digits).c_str(), Fixed(d.min, digits).c_str(),
                Fixed(d.max, digits).c_str());
  return buf;
}

std::string LoadDescription(const BenchConditions& c) {
  if (c.rate > 0) {
    return StrCat("open loop, Poisson arrivals at ", Fixed(c.rate, 3), " requests/s (seed ", c.seed,
                  "), at most ", c.concurrency, " in flight");
  }
  return StrCat("closed loop, concurrency ", c.concurrency);
}

std::string TargetsDescription(const SloTargets& t) {
  std::string s;
  if (t.ttft_ms) StrAppend(&s, "TTFT <= ", Fixed(*t.ttft_ms, 1), " ms");
  if (t.itl_ms) StrAppend(&s, s.empty() ? "" : " and ", "ITL <= ", Fixed(*t.itl_ms, 1), " ms");
  return s;
}

}  // namespace

MachineInfo ReadMachineInfo() {
  MachineInfo m;
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) m.host = host;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.starts_with("model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) m.cpu = line.substr(colon + 2);
      break;
    }
  }
  m.hardware_threads = static_cast<int32_t>(std::thread::hardware_concurrency());
  std::ifstream loadavg("/proc/loadavg");
  std::string a, b, c;
  if (loadavg >> a >> b >> c) m.load_average = StrCat(a, " ", b, " ", c);
  return m;
}

std::string UtcNow() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string FormatReportText(const BenchConditions& c, const BenchSummary& s,
                             const EnergyReport& energy) {
  std::string out = "tokenfab bench\n";
  StrAppend(&out, "  target      ", c.target, " (model ", c.model_id, ")\n");
  StrAppend(&out, "  load        ", LoadDescription(c), "\n");
  StrAppend(&out, "  workload    ", c.requests, " requests, isl ", c.isl, " tokens, osl ", c.osl,
            " tokens (end-of-sequence ignored), ", c.warmup, " warm-up requests, seed ", c.seed,
            "\n");
  if (!c.extra_body.empty()) StrAppend(&out, "  extra body  ", c.extra_body, "\n");
  StrAppend(&out, "  tokenizer   ", c.tokenizer, "\n");
  StrAppend(&out, "  machine     ", c.machine.host, ": ", c.machine.cpu, ", ",
            c.machine.hardware_threads, " hardware threads; load average ", c.machine.load_average,
            " at start, ", c.load_average_at_end, " at end\n");
  StrAppend(&out, "  started     ", c.started_at, "\n\n");

  StrAppend(&out, "  requests    ", s.requests_completed, " completed, ", s.requests_failed,
            " failed\n");
  StrAppend(&out, "  duration    ", Fixed(s.duration_s, 3),
            " s (first request sent to last token)\n");
  StrAppend(&out, "  throughput  ", Fixed(s.request_throughput, 3), " requests/s, ",
            Fixed(s.output_token_throughput, 2), " output tokens/s, ",
            Fixed(s.total_token_throughput, 2), " total tokens/s\n");
  if (s.goodput) {
    StrAppend(&out, "  goodput     ", Fixed(*s.goodput, 3), " requests/s (", s.good_requests,
              " of ", s.requests_completed, " met ", TargetsDescription(c.targets), ")\n");
  } else {
    StrAppend(&out, "  goodput     n/a (no --ttft-target-ms or --itl-target-ms)\n");
  }
  StrAppend(&out, "  tokens      ", s.total_prompt_tokens, " prompt, ", s.total_output_tokens,
            " output; ", s.osl_mismatches, " requests generated other than ", c.osl, "\n\n");
  char header[256];
  std::snprintf(header, sizeof(header), "  %-26s %10s %10s %10s %10s %10s %10s\n", "", "mean",
                "p50", "p90", "p99", "min", "max");
  out += header;
  out += DistributionRow("TTFT (ms)", s.ttft_ms, 2);
  out += DistributionRow("ITL (ms)", s.itl_ms, 2);
  out += DistributionRow("inter-chunk gap (ms)", s.inter_chunk_ms, 2);
  out += DistributionRow("request latency (ms)", s.latency_ms, 2);
  out += DistributionRow("output tokens/request", s.output_tokens, 1);
  if (s.prompt_tokens.count > 0)
    out += DistributionRow("prompt tokens/request", s.prompt_tokens, 1);
  out +=
      "\n  TTFT: send to first token chunk. ITL: per request (latency - TTFT) / (output tokens - "
      "1),\n"
      "  aiperf's definition; percentiles over requests. Inter-chunk gap: every gap between\n"
      "  token chunks. Request latency: send to last token chunk.\n";
  if (energy.energy) {
    const RunEnergy& e = *energy.energy;
    StrAppend(&out, "\n  energy      ", Fixed(e.joules, 1), " J from ", e.meters,
              " worker meter(s), source ", e.sources, "\n");
    StrAppend(&out, "  efficiency  ", Fixed(e.tokens_per_joule, 4), " output tokens/J, ",
              Fixed(e.joules_per_token, 4), " J/output token\n");
    StrAppend(&out, "  by phase    prefill ", Fixed(e.prefill_joules_per_token, 5),
              " J/prompt token, decode ", Fixed(e.decode_joules_per_token, 5),
              " J/generated token (idle energy in neither)\n");
  } else {
    StrAppend(&out, "\n  energy      n/a (", energy.note, ")\n");
  }
  for (const std::string& e : s.sample_errors) StrAppend(&out, "  error: ", e, "\n");
  return out;
}

std::string FormatReportJson(const BenchConditions& c, const BenchSummary& s,
                             const EnergyReport& energy) {
  json conditions = {
      {"target", c.target},
      {"model_id", c.model_id},
      {"mode", c.rate > 0 ? "rate" : "concurrency"},
      {"concurrency", c.concurrency},
      {"rate", c.rate > 0 ? json(c.rate) : json(nullptr)},
      {"isl", c.isl},
      {"osl", c.osl},
      {"requests", c.requests},
      {"warmup", c.warmup},
      {"seed", c.seed},
      {"tokenizer", c.tokenizer},
      {"extra_body", c.extra_body},
      {"ttft_target_ms", c.targets.ttft_ms ? json(*c.targets.ttft_ms) : json(nullptr)},
      {"itl_target_ms", c.targets.itl_ms ? json(*c.targets.itl_ms) : json(nullptr)},
      {"machine",
       {{"host", c.machine.host},
        {"cpu", c.machine.cpu},
        {"hardware_threads", c.machine.hardware_threads},
        {"load_average_start", c.machine.load_average},
        {"load_average_end", c.load_average_at_end}}},
      {"started_at", c.started_at},
  };
  json results = {
      {"requests_completed", s.requests_completed},
      {"requests_failed", s.requests_failed},
      {"duration_s", s.duration_s},
      {"request_throughput", s.request_throughput},
      {"output_token_throughput", s.output_token_throughput},
      {"total_token_throughput", s.total_token_throughput},
      {"total_prompt_tokens", s.total_prompt_tokens},
      {"total_output_tokens", s.total_output_tokens},
      {"osl_mismatches", s.osl_mismatches},
      {"goodput", s.goodput ? json(*s.goodput) : json(nullptr)},
      {"good_requests", s.good_requests},
      {"ttft_ms", DistributionJson(s.ttft_ms)},
      {"itl_ms", DistributionJson(s.itl_ms)},
      {"inter_chunk_ms", DistributionJson(s.inter_chunk_ms)},
      {"request_latency_ms", DistributionJson(s.latency_ms)},
      {"output_tokens", DistributionJson(s.output_tokens)},
      {"prompt_tokens", DistributionJson(s.prompt_tokens)},
      {"errors", s.sample_errors},
  };
  if (energy.energy) {
    const RunEnergy& e = *energy.energy;
    results["energy"] = {{"source", e.sources},
                         {"meters", e.meters},
                         {"joules", e.joules},
                         {"tokens_per_joule", e.tokens_per_joule},
                         {"joules_per_token", e.joules_per_token},
                         {"prefill_joules_per_token", e.prefill_joules_per_token},
                         {"decode_joules_per_token", e.decode_joules_per_token}};
  } else {
    results["energy"] = nullptr;
    results["energy_note"] = energy.note;
  }
  // Server error texts may hold any bytes: replace invalid UTF-8, never throw.
  return json{{"conditions", conditions}, {"results", results}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

std::string FormatRecordsJsonLines(const std::vector<RequestRecord>& records) {
  auto optional = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); };
  std::string out;
  for (const RequestRecord& r : records) {
    nlohmann::ordered_json j = {{"ok", r.ok},
                                {"error", r.error},
                                {"start_s", r.start_s},
                                {"ttft_s", optional(r.Ttft())},
                                {"latency_s", r.Latency()},
                                {"output_tokens", r.OutputTokens()},
                                {"prompt_tokens", r.prompt_tokens},
                                {"itl_s", optional(r.InterTokenLatency())}};
    out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);  // error texts may hold any bytes
    out += '\n';
  }
  return out;
}

}  // namespace tokenfab::loadgen
