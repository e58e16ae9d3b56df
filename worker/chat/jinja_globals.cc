#include "worker/chat/jinja_globals.h"

#include <ctime>
#include <memory>
#include <string>

#include "absl/strings/cord.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_args.h"

namespace tokenfab::jinja {
namespace {

constexpr char kRaisedPayload[] = "tokenfab.jinja/raise_exception";

absl::StatusOr<Value> RaiseException(const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"raise_exception", {"message"}, 1}, args));
  ASSIGN_OR_RETURN(std::string message, PyStr(b.Get(0)));
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kRaisedPayload, absl::Cord("1"));
  return status;
}

absl::StatusOr<Value> Range(const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"range", {"start", "stop", "step"}, 1}, args));
  for (size_t i = 0; i < 3; ++i) {
    if (b.Has(i) && !b.Get(i).is_integral()) {
      return absl::InvalidArgumentError(
          StrCat("'", PyTypeName(b.Get(i)), "' object cannot be interpreted as an integer"));
    }
  }
  int64_t start = 0;
  int64_t stop = b.Get(0).as_integral();
  int64_t step = 1;
  if (b.Has(1)) {
    start = stop;
    stop = b.Get(1).as_integral();
  }
  if (b.Has(2)) step = b.Get(2).as_integral();
  if (step == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
  __int128 span =
      step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
  __int128 abs_step = step > 0 ? step : -static_cast<__int128>(step);
  __int128 count = span <= 0 ? 0 : (span + abs_step - 1) / abs_step;
  if (count > kMaxRange) {
    return absl::InvalidArgumentError(StrCat(
        "Range too big. The sandbox blocks ranges larger than MAX_RANGE (", kMaxRange, ")."));
  }
  std::vector<Value> items;
  for (int64_t i = 0; i < static_cast<int64_t>(count); ++i)
    items.push_back(Value::Int(start + i * step));
  return Value::Seq(std::move(items), SeqKind::kRange);
}

// dict(mapping?, **kwargs) and namespace(mapping?, **kwargs) both take this shape.
absl::StatusOr<std::vector<std::pair<Value, Value>>> MappingArgs(std::string_view fn,
                                                                 const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({fn, {"mapping"}, 0, false, true}, args));
  std::vector<std::pair<Value, Value>> entries;
  if (b.Has(0)) {
    Value m = b.Get(0);
    if (!m.is_dict()) {
      return absl::InvalidArgumentError(
          StrCat(fn, "() argument must be a mapping, not ", PyTypeName(m)));
    }
    entries = m.as_dict().entries;
  }
  for (const auto& [k, v] : b.rest_keywords) entries.emplace_back(Value::Str(k), v);
  return entries;
}

absl::StatusOr<Value> MakeDictFn(const CallArgs& args) {
  ASSIGN_OR_RETURN(auto entries, MappingArgs("dict", args));
  Dict dict;
  for (auto& [k, v] : entries) dict.Set(std::move(k), std::move(v));
  return Value::MakeDict(std::move(dict));
}

absl::StatusOr<Value> MakeNamespaceFn(const CallArgs& args,
                                      std::vector<std::weak_ptr<Namespace>>* namespaces) {
  ASSIGN_OR_RETURN(auto entries, MappingArgs("namespace", args));
  auto ns = std::make_shared<Namespace>();
  for (auto& [k, v] : entries) {
    if (!k.is_string()) return absl::InvalidArgumentError("namespace() keys must be strings");
    ns->Set(k.as_string(), std::move(v));
  }
  namespaces->push_back(ns);
  return Value::MakeNamespace(std::move(ns));
}

}  // namespace

std::vector<std::pair<std::string, Value>> MakeGlobals(
    Clock now, std::vector<std::weak_ptr<Namespace>>* namespaces) {
  std::vector<std::pair<std::string, Value>> globals;
  globals.emplace_back("raise_exception", Value::Function("raise_exception", RaiseException));
  globals.emplace_back("range", Value::Function("range", Range));
  globals.emplace_back("dict", Value::Function("dict", MakeDictFn));
  globals.emplace_back("namespace",
                       Value::Function("namespace", [namespaces](const CallArgs& args) {
                         return MakeNamespaceFn(args, namespaces);
                       }));
  globals.emplace_back(
      "strftime_now",
      Value::Function(
          "strftime_now", [now = std::move(now)](const CallArgs& args) -> absl::StatusOr<Value> {
            ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"strftime_now", {"format"}, 1}, args));
            Value format = b.Get(0);
            if (!format.is_string()) {
              return absl::InvalidArgumentError(
                  StrCat("strftime() argument 1 must be str, not ", PyTypeName(format)));
            }
            std::time_t t = std::chrono::system_clock::to_time_t(
                now ? now() : std::chrono::system_clock::now());
            std::tm local{};
            localtime_r(&t, &local);
            if (format.as_string().empty()) return Value::Str("");
            // strftime gives 0 both for "buffer too small" and for an empty result.
            for (size_t size = 256; size <= (size_t{1} << 20); size *= 4) {
              std::string buf(size, '\0');
              size_t n = std::strftime(buf.data(), buf.size(), format.as_string().c_str(), &local);
              if (n > 0) return Value::Str(buf.substr(0, n));
            }
            return Value::Str("");
          }));
  return globals;
}

bool IsRaisedByTemplate(const absl::Status& status) {
  return status.GetPayload(kRaisedPayload).has_value();
}

}  // namespace tokenfab::jinja
