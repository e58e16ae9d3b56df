#include "scheduler/profile.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tokenfab {
namespace {

using json = nlohmann::json;

// Linear through (x0, y0), (x1, y1) at x; flat if x0 == x1.
double Lerp(double x0, double y0, double x1, double y1, double x) {
  if (x1 == x0) return y0;
  return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
}

// Piecewise-linear over ascending xs; outside, the nearest segment extended.
double Interpolate(const std::vector<double>& xs, const std::vector<double>& ys, double x) {
  if (xs.size() == 1) return ys[0];
  size_t i = 1;
  while (i + 1 < xs.size() && x > xs[i]) ++i;
  return std::max(0.0, Lerp(xs[i - 1], ys[i - 1], xs[i], ys[i], x));
}

template <typename T>
absl::Status Field(const json& j, const char* name, T* out, const std::string& where) {
  auto it = j.find(name);
  if (it == j.end()) return absl::InvalidArgumentError(StrCat(where, name, " is missing"));
  try {
    *out = it->get<T>();
  } catch (const json::exception&) {
    return absl::InvalidArgumentError(StrCat(where, name, " has the wrong type"));
  }
  return absl::OkStatus();
}

absl::Status Positive(double v, const std::string& what) {
  if (!std::isfinite(v) || v <= 0) {
    return absl::InvalidArgumentError(StrCat(what, " must be a positive number, got ", v));
  }
  return absl::OkStatus();
}

absl::Status NonNegative(double v, const std::string& what) {
  if (!std::isfinite(v) || v < 0) {
    return absl::InvalidArgumentError(StrCat(what, " must be a number >= 0, got ", v));
  }
  return absl::OkStatus();
}

}  // namespace

double Profile::PrefillSeconds(int32_t n) const {
  std::vector<double> xs, ys;
  for (const PrefillPoint& p : prefill) xs.push_back(p.prompt_tokens), ys.push_back(p.seconds);
  return Interpolate(xs, ys, n);
}

double Profile::PrefillWatts(int32_t n) const {
  std::vector<double> xs, ys;
  for (const PrefillPoint& p : prefill) xs.push_back(p.prompt_tokens), ys.push_back(p.watts);
  return Interpolate(xs, ys, n);
}

std::vector<int32_t> Profile::DecodeBatches() const {
  std::set<int32_t> s;
  for (const DecodePoint& p : decode) s.insert(p.batch);
  return {s.begin(), s.end()};
}

std::vector<int32_t> Profile::DecodeContexts() const {
  std::set<int32_t> s;
  for (const DecodePoint& p : decode) s.insert(p.context);
  return {s.begin(), s.end()};
}

namespace {

// Bilinear over the (batch, context) grid: along context for each batch,
// then along batch.
double Bilinear(const Profile& p, int32_t batch, int32_t context, double DecodePoint::*field) {
  const std::vector<int32_t> batches = p.DecodeBatches();
  const std::vector<int32_t> contexts = p.DecodeContexts();
  std::vector<double> bx, by;
  for (int32_t b : batches) {
    std::vector<double> cx, cy;
    for (int32_t c : contexts) {
      for (const DecodePoint& d : p.decode) {
        if (d.batch == b && d.context == c) cx.push_back(c), cy.push_back(d.*field);
      }
    }
    bx.push_back(b);
    by.push_back(Interpolate(cx, cy, context));
  }
  return Interpolate(bx, by, batch);
}

}  // namespace

double Profile::DecodeStepSeconds(int32_t batch, int32_t context) const {
  return Bilinear(*this, batch, context, &DecodePoint::step_seconds);
}

double Profile::DecodeWatts(int32_t batch, int32_t context) const {
  return Bilinear(*this, batch, context, &DecodePoint::watts);
}

absl::StatusOr<Profile> ParseProfile(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("the profile is not a JSON object");
  }
  Profile p;
  std::string schema;
  if (absl::Status s = Field(j, "schema", &schema, ""); !s.ok()) return s;
  if (schema != Profile::kSchema) {
    return absl::InvalidArgumentError(
        StrCat("schema is '", schema, "'; this tokenfab reads '", Profile::kSchema, "'"));
  }
  for (auto [name, target] : {std::pair<const char*, std::string*>{"model", &p.model},
                              {"architecture", &p.architecture},
                              {"device", &p.device},
                              {"hardware", &p.hardware},
                              {"power_source", &p.power_source},
                              {"measured_at", &p.measured_at}}) {
    if (absl::Status s = Field(j, name, target, ""); !s.ok()) return s;
  }
  for (auto [name, target, lo, hi] :
       {std::tuple<const char*, int32_t*, int32_t, int32_t>{"threads", &p.threads, 1, 4096},
        {"block_size", &p.block_size, 1, 4096},
        {"max_num_seqs", &p.max_num_seqs, 1, 1 << 20},
        {"max_batched_tokens", &p.max_batched_tokens, 1, 1 << 24}}) {
    if (absl::Status s = Field(j, name, target, ""); !s.ok()) return s;
    if (*target < lo || *target > hi) {
      return absl::InvalidArgumentError(
          StrCat(name, " must be between ", lo, " and ", hi, ", got ", *target));
    }
  }
  if (absl::Status s = Field(j, "kv_blocks", &p.kv_blocks, ""); !s.ok()) return s;
  if (p.kv_blocks < 1 || p.kv_blocks > (int64_t{1} << 40)) {
    return absl::InvalidArgumentError(StrCat("kv_blocks out of range: ", p.kv_blocks));
  }
  if (absl::Status s = Field(j, "idle_watts", &p.idle_watts, ""); !s.ok()) return s;
  if (absl::Status s = NonNegative(p.idle_watts, "idle_watts"); !s.ok()) return s;

  auto prefill = j.find("prefill");
  if (prefill == j.end() || !prefill->is_array() || prefill->empty()) {
    return absl::InvalidArgumentError("prefill must be a non-empty array");
  }
  for (size_t i = 0; i < prefill->size(); ++i) {
    const json& e = (*prefill)[i];
    const std::string where = StrCat("prefill[", i, "].");
    if (!e.is_object())
      return absl::InvalidArgumentError(StrCat("prefill[", i, "] is not an object"));
    PrefillPoint pt;
    if (absl::Status s = Field(e, "prompt_tokens", &pt.prompt_tokens, where); !s.ok()) return s;
    if (absl::Status s = Field(e, "seconds", &pt.seconds, where); !s.ok()) return s;
    if (absl::Status s = Field(e, "watts", &pt.watts, where); !s.ok()) return s;
    if (pt.prompt_tokens < 1) {
      return absl::InvalidArgumentError(StrCat(where, "prompt_tokens must be positive"));
    }
    if (!p.prefill.empty() && pt.prompt_tokens <= p.prefill.back().prompt_tokens) {
      return absl::InvalidArgumentError(StrCat(where, "prompt_tokens must ascend"));
    }
    if (absl::Status s = Positive(pt.seconds, where + "seconds"); !s.ok()) return s;
    if (absl::Status s = NonNegative(pt.watts, where + "watts"); !s.ok()) return s;
    p.prefill.push_back(pt);
  }
  auto decode = j.find("decode");
  if (decode == j.end() || !decode->is_array() || decode->empty()) {
    return absl::InvalidArgumentError("decode must be a non-empty array");
  }
  std::set<std::pair<int32_t, int32_t>> seen;
  for (size_t i = 0; i < decode->size(); ++i) {
    const json& e = (*decode)[i];
    const std::string where = StrCat("decode[", i, "].");
    if (!e.is_object())
      return absl::InvalidArgumentError(StrCat("decode[", i, "] is not an object"));
    DecodePoint pt;
    if (absl::Status s = Field(e, "batch", &pt.batch, where); !s.ok()) return s;
    if (absl::Status s = Field(e, "context", &pt.context, where); !s.ok()) return s;
    if (absl::Status s = Field(e, "step_seconds", &pt.step_seconds, where); !s.ok()) return s;
    if (absl::Status s = Field(e, "watts", &pt.watts, where); !s.ok()) return s;
    if (pt.batch < 1 || pt.context < 1) {
      return absl::InvalidArgumentError(StrCat(where, "batch and context must be positive"));
    }
    if (!seen.insert({pt.batch, pt.context}).second) {
      return absl::InvalidArgumentError(
          StrCat(where, "repeats batch ", pt.batch, " context ", pt.context));
    }
    if (absl::Status s = Positive(pt.step_seconds, where + "step_seconds"); !s.ok()) return s;
    if (absl::Status s = NonNegative(pt.watts, where + "watts"); !s.ok()) return s;
    p.decode.push_back(pt);
  }
  if (seen.size() != p.DecodeBatches().size() * p.DecodeContexts().size()) {
    return absl::InvalidArgumentError(
        "decode must hold every (batch, context) pair of its batches and contexts");
  }
  return p;
}

absl::StatusOr<Profile> ReadProfile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(StrCat("cannot read profile ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().size() > (64u << 20)) return absl::InvalidArgumentError("profile over 64 MiB");
  auto p = ParseProfile(ss.str());
  if (!p.ok()) return absl::InvalidArgumentError(StrCat(path, ": ", p.status().message()));
  return p;
}

std::string ProfileToJson(const Profile& p) {
  json prefill = json::array(), decode = json::array();
  for (const PrefillPoint& pt : p.prefill) {
    prefill.push_back(
        {{"prompt_tokens", pt.prompt_tokens}, {"seconds", pt.seconds}, {"watts", pt.watts}});
  }
  for (const DecodePoint& pt : p.decode) {
    decode.push_back({{"batch", pt.batch},
                      {"context", pt.context},
                      {"step_seconds", pt.step_seconds},
                      {"watts", pt.watts}});
  }
  nlohmann::ordered_json j = {{"schema", Profile::kSchema},
                              {"model", p.model},
                              {"architecture", p.architecture},
                              {"device", p.device},
                              {"hardware", p.hardware},
                              {"power_source", p.power_source},
                              {"measured_at", p.measured_at},
                              {"threads", p.threads},
                              {"block_size", p.block_size},
                              {"kv_blocks", p.kv_blocks},
                              {"max_num_seqs", p.max_num_seqs},
                              {"max_batched_tokens", p.max_batched_tokens},
                              {"idle_watts", p.idle_watts},
                              {"prefill", prefill},
                              {"decode", decode}};
  return j.dump(2) + "\n";
}

}  // namespace tokenfab
