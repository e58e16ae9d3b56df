#include "worker/chat/jinja_json.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_text.h"

namespace tokenfab::jinja {
namespace {

template <typename Json>
absl::StatusOr<Value> FromJson(const Json& json, int depth) {
  if (depth > kMaxValueDepth) {
    return absl::InvalidArgumentError(StrCat("the template context nests arrays/objects more than ",
                                             kMaxValueDepth, " levels deep"));
  }
  switch (json.type()) {
    case nlohmann::json::value_t::null:
      return Value::None();
    case nlohmann::json::value_t::boolean:
      return Value::Bool(json.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::Int(json.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      uint64_t u = json.template get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::InvalidArgumentError(
            StrCat("integer ", u, " in the template context is too large (64-bit signed limit)"));
      }
      return Value::Int(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value::Float(json.template get<double>());
    case nlohmann::json::value_t::string:
      return Value::Str(json.template get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) {
        ASSIGN_OR_RETURN(Value v, FromJson(item, depth + 1));
        items.push_back(std::move(v));
      }
      return Value::Seq(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Dict dict;
      dict.entries.reserve(json.size());
      for (auto it = json.begin(); it != json.end(); ++it) {
        ASSIGN_OR_RETURN(Value v, FromJson(it.value(), depth + 1));
        dict.entries.emplace_back(Value::Str(it.key()), std::move(v));
      }
      return Value::MakeDict(std::move(dict));
    }
    default:
      return absl::InvalidArgumentError(
          "the template context holds a binary or discarded JSON value");
  }
}

void AppendJsonString(std::string_view s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  auto append_u = [out](unsigned v) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "\\u%04x", v);
    out->append(buf);
  };
  for (char32_t c : DecodeUtf8(s)) {
    switch (c) {
      case '"':
        out->append("\\\"");
        continue;
      case '\\':
        out->append("\\\\");
        continue;
      case '\n':
        out->append("\\n");
        continue;
      case '\r':
        out->append("\\r");
        continue;
      case '\t':
        out->append("\\t");
        continue;
      case '\b':
        out->append("\\b");
        continue;
      case '\f':
        out->append("\\f");
        continue;
      default:
        break;
    }
    if (c < 0x20) {
      append_u(c);
    } else if (!ensure_ascii || c < 0x7F) {
      AppendUtf8(c, out);
    } else if (c < 0x10000) {
      append_u(c);
    } else {
      char32_t v = c - 0x10000;
      append_u(0xD800 | (v >> 10));
      append_u(0xDC00 | (v & 0x3FF));
    }
  }
  out->push_back('"');
}

std::string JsonFloat(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return PyFloatRepr(d);
}

class JsonWriter {
 public:
  explicit JsonWriter(const JsonDumpOptions& options) : options_(options) {
    item_sep_ = options.item_separator.value_or(options.indent ? "," : ", ");
    key_sep_ = options.key_separator.value_or(": ");
  }

  absl::Status Write(const Value& v, int level, std::string* out) {
    if (level > kMaxValueDepth) return absl::InvalidArgumentError("Circular reference detected");
    switch (v.kind()) {
      case Value::Kind::kNone:
        out->append("null");
        return absl::OkStatus();
      case Value::Kind::kBool:
        out->append(v.as_bool() ? "true" : "false");
        return absl::OkStatus();
      case Value::Kind::kInt:
        out->append(std::to_string(v.as_int()));
        return absl::OkStatus();
      case Value::Kind::kFloat:
        out->append(JsonFloat(v.as_float()));
        return absl::OkStatus();
      case Value::Kind::kString:
        AppendJsonString(v.as_string(), options_.ensure_ascii, out);
        return absl::OkStatus();
      case Value::Kind::kSequence: {
        const Sequence& s = v.as_seq();
        if (s.kind != SeqKind::kList && s.kind != SeqKind::kTuple) break;
        if (s.items.empty()) {
          out->append("[]");
          return absl::OkStatus();
        }
        out->push_back('[');
        for (size_t i = 0; i < s.items.size(); ++i) {
          out->append(i == 0 ? Newline(level + 1) : item_sep_ + Newline(level + 1));
          RETURN_IF_ERROR(Write(s.items[i], level + 1, out));
        }
        out->append(Newline(level));
        out->push_back(']');
        return absl::OkStatus();
      }
      case Value::Kind::kDict:
        return WriteDict(v.as_dict(), level, out);
      default:
        break;
    }
    return absl::InvalidArgumentError(
        StrCat("Object of type ", PyTypeName(v), " is not JSON serializable"));
  }

 private:
  // "\n" + indent * level when indenting, else nothing.
  std::string Newline(int level) const {
    if (!options_.indent) return "";
    std::string s = "\n";
    for (int i = 0; i < level; ++i) s.append(*options_.indent);
    return s;
  }

  absl::StatusOr<std::string> KeyString(const Value& k) const {
    switch (k.kind()) {
      case Value::Kind::kString:
        return k.as_string();
      case Value::Kind::kFloat:
        return JsonFloat(k.as_float());
      case Value::Kind::kBool:
        return std::string(k.as_bool() ? "true" : "false");
      case Value::Kind::kNone:
        return std::string("null");
      case Value::Kind::kInt:
        return std::to_string(k.as_int());
      default:
        return absl::InvalidArgumentError(
            StrCat("keys must be str, int, float, bool or None, not ", PyTypeName(k)));
    }
  }

  absl::Status WriteDict(const Dict& dict, int level, std::string* out) {
    if (dict.entries.empty()) {
      out->append("{}");
      return absl::OkStatus();
    }
    std::vector<const std::pair<Value, Value>*> entries;
    for (const auto& e : dict.entries) entries.push_back(&e);
    if (options_.sort_keys) {
      absl::Status error;
      std::stable_sort(entries.begin(), entries.end(), [&](const auto* a, const auto* b) {
        absl::StatusOr<int> c = PyCompare(a->first, b->first);
        if (!c.ok()) {
          error = c.status();
          return false;
        }
        return *c < 0;
      });
      RETURN_IF_ERROR(error);
    }
    out->push_back('{');
    for (size_t i = 0; i < entries.size(); ++i) {
      out->append(i == 0 ? Newline(level + 1) : item_sep_ + Newline(level + 1));
      ASSIGN_OR_RETURN(std::string key, KeyString(entries[i]->first));
      AppendJsonString(key, options_.ensure_ascii, out);
      out->append(key_sep_);
      RETURN_IF_ERROR(Write(entries[i]->second, level + 1, out));
    }
    out->append(Newline(level));
    out->push_back('}');
    return absl::OkStatus();
  }

  const JsonDumpOptions& options_;
  std::string item_sep_;
  std::string key_sep_;
};

}  // namespace

absl::StatusOr<Value> ValueFromJson(const nlohmann::ordered_json& json) {
  return FromJson(json, 0);
}
absl::StatusOr<Value> ValueFromJson(const nlohmann::json& json) { return FromJson(json, 0); }

absl::StatusOr<std::string> DumpPythonJson(const Value& value, const JsonDumpOptions& options) {
  std::string out;
  RETURN_IF_ERROR(JsonWriter(options).Write(value, 0, &out));
  return out;
}

}  // namespace tokenfab::jinja
