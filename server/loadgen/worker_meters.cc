#include "server/loadgen/worker_meters.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "common/strings.h"

namespace tokenfab::loadgen {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;

// `name{k="v",...} value` → name, labels, value. Label values may hold
// escaped quotes and backslashes.
struct Sample {
  std::string_view name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

absl::StatusOr<Sample> ParseSample(std::string_view line) {
  Sample s;
  size_t i = line.find_first_of("{ ");
  if (i == std::string_view::npos) return absl::InvalidArgumentError("no value");
  s.name = line.substr(0, i);
  if (line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      const size_t eq = line.find('=', i);
      if (eq == std::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
        return absl::InvalidArgumentError("bad label");
      }
      std::string key(line.substr(i, eq - i));
      std::string value;
      size_t j = eq + 2;
      for (; j < line.size() && line[j] != '"'; ++j) {
        if (line[j] == '\\' && j + 1 < line.size()) ++j;
        value += line[j];
      }
      if (j >= line.size()) return absl::InvalidArgumentError("unterminated label value");
      s.labels[key] = value;
      i = j + 1;
      if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) return absl::InvalidArgumentError("unterminated labels");
    ++i;
  }
  while (i < line.size() && line[i] == ' ') ++i;
  const std::string value(line.substr(i, line.find(' ', i) - i));
  char* end = nullptr;
  errno = 0;
  s.value = std::strtod(value.c_str(), &end);
  if (value.empty() || end != value.c_str() + value.size() || errno == ERANGE ||
      !std::isfinite(s.value)) {
    return absl::InvalidArgumentError(StrCat("bad value '", value, "'"));
  }
  return s;
}

absl::StatusOr<std::string> HttpGet(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (url.rfind(kScheme, 0) != 0) {
    return absl::InvalidArgumentError(
        StrCat("metrics URL must start with http://, got '", url, "'"));
  }
  std::string rest = url.substr(kScheme.size());
  const size_t slash = rest.find('/');
  const std::string path = slash == std::string::npos ? "/metrics" : rest.substr(slash);
  const std::string hostport = rest.substr(0, slash);
  const size_t colon = hostport.rfind(':');
  if (colon == std::string::npos || colon + 1 == hostport.size()) {
    return absl::InvalidArgumentError(StrCat("metrics URL needs HOST:PORT, got '", url, "'"));
  }
  std::string host = hostport.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port = hostport.substr(colon + 1);
  try {
    net::io_context ioc;
    net::ip::tcp::resolver resolver(ioc);
    beast::tcp_stream stream(ioc);
    stream.expires_after(std::chrono::seconds(5));
    stream.connect(resolver.resolve(host, port));
    http::request<http::empty_body> req{http::verb::get, path, 11};
    req.set(http::field::host, hostport);
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read(stream, buffer, parser);
    if (parser.get().result() != http::status::ok) {
      return absl::UnavailableError(
          StrCat("GET ", url, ": HTTP ", static_cast<int>(parser.get().result_int())));
    }
    return std::move(parser.get().body());
  } catch (const boost::system::system_error& e) {
    return absl::UnavailableError(StrCat("GET ", url, ": ", e.code().message()));
  } catch (const std::exception& e) {
    return absl::UnavailableError(StrCat("GET ", url, ": ", e.what()));
  }
}

}  // namespace

absl::StatusOr<MeterReading> ParseMeterReading(std::string_view page) {
  MeterReading r;
  size_t line_no = 0;
  while (!page.empty()) {
    const size_t nl = page.find('\n');
    std::string_view line = page.substr(0, nl);
    page = nl == std::string_view::npos ? std::string_view() : page.substr(nl + 1);
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    const bool energy = line.rfind("tokenfab_energy_joules_total", 0) == 0;
    const bool phase = line.rfind("tokenfab_phase_energy_joules_total", 0) == 0;
    const bool tokens = line.rfind("tokenfab_worker_tokens_total", 0) == 0;
    if (!energy && !phase && !tokens) continue;
    absl::StatusOr<Sample> s = ParseSample(line);
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          StrCat("metrics line ", line_no, ": ", s.status().message(), ": ", line.substr(0, 120)));
    }
    const std::string& p = s->labels["phase"];
    if (s->name == "tokenfab_energy_joules_total") {
      r.joules_by_source[s->labels["source"]] += s->value;
      ++r.meters;
    } else if (s->name == "tokenfab_phase_energy_joules_total") {
      (p == "prefill"  ? r.prefill_joules
       : p == "decode" ? r.decode_joules
                       : r.idle_joules) += s->value;
    } else if (s->name == "tokenfab_worker_tokens_total") {
      (p == "prefill" ? r.prefill_tokens : r.decode_tokens) += s->value;
    }
  }
  return r;
}

absl::StatusOr<MeterReading> ReadWorkerMeters(const std::vector<std::string>& urls) {
  MeterReading total;
  for (const std::string& url : urls) {
    absl::StatusOr<std::string> page = HttpGet(url);
    if (!page.ok()) return page.status();
    absl::StatusOr<MeterReading> r = ParseMeterReading(*page);
    if (!r.ok()) return absl::InvalidArgumentError(StrCat(url, ": ", r.status().message()));
    for (const auto& [source, j] : r->joules_by_source) total.joules_by_source[source] += j;
    total.prefill_joules += r->prefill_joules;
    total.decode_joules += r->decode_joules;
    total.idle_joules += r->idle_joules;
    total.prefill_tokens += r->prefill_tokens;
    total.decode_tokens += r->decode_tokens;
    total.meters += r->meters;
  }
  return total;
}

RunEnergy EnergyOfRun(const MeterReading& before, const MeterReading& after,
                      int64_t output_tokens) {
  RunEnergy e;
  e.meters = after.meters;
  for (const auto& [source, j] : after.joules_by_source) {
    auto it = before.joules_by_source.find(source);
    e.joules += std::max(0.0, j - (it == before.joules_by_source.end() ? 0.0 : it->second));
    if (!e.sources.empty()) e.sources += ", ";
    e.sources += source == "model" ? "model (a declared estimate, not a measurement)" : source;
  }
  auto per = [](double num, double den) { return den > 0 ? num / den : 0.0; };
  e.tokens_per_joule = per(static_cast<double>(output_tokens), e.joules);
  e.joules_per_token = per(e.joules, static_cast<double>(output_tokens));
  e.prefill_joules_per_token = per(after.prefill_joules - before.prefill_joules,
                                   after.prefill_tokens - before.prefill_tokens);
  e.decode_joules_per_token =
      per(after.decode_joules - before.decode_joules, after.decode_tokens - before.decode_tokens);
  return e;
}

}  // namespace tokenfab::loadgen
