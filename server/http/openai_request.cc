#include "server/http/openai_request.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "common/status_macros.h"
#include "common/strings.h"
#include "scheduler/admission.h"
#include "worker/tokenizer/utf8.h"

namespace tokenfab {
namespace {

using Json = nlohmann::ordered_json;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

absl::Status Bad(std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(StrCat(field, " ", why));
}

// OpenAI treats an explicit null as "not given"; so do we.
const Json* Find(const Json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string RangeText(double lo, double hi, double got) {
  return StrCat("must be between ", lo, " and ", hi, ", got ", got);
}

absl::StatusOr<std::optional<double>> GetNumber(const Json& body, const char* key, double lo,
                                                double hi) {
  const Json* v = Find(body, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) return Bad(key, "must be a number");
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) return Bad(key, RangeText(lo, hi, x));
  return x;
}

// Integers may arrive as 3 or 3.0; 3.5 is a type error.
absl::StatusOr<std::optional<int64_t>> GetInteger(const Json& body, const char* key, int64_t lo,
                                                  int64_t hi) {
  const Json* v = Find(body, key);
  if (v == nullptr) return std::nullopt;
  int64_t x = 0;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(hi)) return Bad(key, StrCat("must be at most ", hi, ", got ", u));
    x = static_cast<int64_t>(u);
  } else if (v->is_number_integer()) {
    x = v->get<int64_t>();
  } else if (v->is_number_float()) {
    const double d = v->get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9e15) {
      return Bad(key, "must be an integer");
    }
    x = static_cast<int64_t>(d);
  } else {
    return Bad(key, "must be an integer");
  }
  if (x < lo) return Bad(key, StrCat("must be at least ", lo, ", got ", x));
  if (x > hi) return Bad(key, StrCat("must be at most ", hi, ", got ", x));
  return x;
}

absl::StatusOr<std::optional<bool>> GetBool(const Json& body, const char* key) {
  const Json* v = Find(body, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) return Bad(key, "must be a boolean");
  return v->get<bool>();
}

absl::Status ParseSampling(const Json& body, v1::GenerateRequest* r) {
  v1::SamplingParams* s = r->mutable_sampling();
  ASSIGN_OR_RETURN(auto temperature, GetNumber(body, "temperature", 0, 2));
  s->set_temperature(static_cast<float>(temperature.value_or(1.0)));  // OpenAI's default
  ASSIGN_OR_RETURN(auto top_p, GetNumber(body, "top_p", 0, 1));
  // The proto reads top_p 0 as "off"; OpenAI's top_p 0 keeps only the most
  // likely token, which is greedy sampling.
  if (top_p.has_value() && *top_p == 0) {
    s->set_temperature(0);
    s->set_top_p(1);
  } else {
    s->set_top_p(static_cast<float>(top_p.value_or(1.0)));
  }
  // vLLM: top_k -1 (or 0) disables it.
  ASSIGN_OR_RETURN(auto top_k, GetInteger(body, "top_k", -1, kInt32Max));
  if (top_k.has_value() && *top_k > 0) s->set_top_k(static_cast<int32_t>(*top_k));
  ASSIGN_OR_RETURN(auto min_p, GetNumber(body, "min_p", 0, 1));
  if (min_p) s->set_min_p(static_cast<float>(*min_p));
  ASSIGN_OR_RETURN(auto repetition, GetNumber(body, "repetition_penalty", 0, 100));
  if (repetition.has_value()) {
    // The proto reads 0 as "off"; vLLM rejects it, and so do we.
    if (*repetition == 0) return Bad("repetition_penalty", "must be greater than 0, got 0");
    s->set_repetition_penalty(static_cast<float>(*repetition));
  }
  ASSIGN_OR_RETURN(auto presence, GetNumber(body, "presence_penalty", -2, 2));
  if (presence) s->set_presence_penalty(static_cast<float>(*presence));
  ASSIGN_OR_RETURN(auto frequency, GetNumber(body, "frequency_penalty", -2, 2));
  if (frequency) s->set_frequency_penalty(static_cast<float>(*frequency));
  if (const Json* seed = Find(body, "seed")) {
    // OpenAI's seed is a signed 64-bit integer; the proto's is its bit pattern.
    if (seed->is_number_unsigned()) {
      s->set_seed(seed->get<uint64_t>());
    } else {
      ASSIGN_OR_RETURN(auto v, GetInteger(body, "seed", std::numeric_limits<int64_t>::min(),
                                          std::numeric_limits<int64_t>::max()));
      s->set_seed(static_cast<uint64_t>(*v));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseStops(const Json& body, v1::GenerateRequest* r) {
  if (const Json* stop = Find(body, "stop")) {
    if (stop->is_string()) {
      r->add_stop(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const Json& s : *stop) {
        if (!s.is_string()) return Bad("stop", "must be a string or a list of strings");
        r->add_stop(s.get<std::string>());
      }
    } else {
      return Bad("stop", "must be a string or a list of strings");
    }
    for (const std::string& s : r->stop()) {
      if (s.empty()) return Bad("stop", "contains an empty string");
    }
  }
  if (const Json* ids = Find(body, "stop_token_ids")) {
    if (!ids->is_array()) return Bad("stop_token_ids", "must be a list of token ids");
    for (const Json& id : *ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > kInt32Max) {
        return Bad("stop_token_ids", "must be a list of token ids (non-negative integers)");
      }
      r->add_stop_token_ids(static_cast<int32_t>(id.get<int64_t>()));
    }
  }
  return absl::OkStatus();
}

// Fields whose OpenAI meaning tokenfab does not implement: a 400 naming the
// field rather than a silently different answer. Absent, null or neutral
// values pass.
absl::Status RejectUnsupported(const Json& body) {
  ASSIGN_OR_RETURN(auto n, GetInteger(body, "n", 1, kInt32Max));
  if (n.has_value() && *n != 1) return Bad("n", StrCat("must be 1 (one choice per request), got ", *n));
  ASSIGN_OR_RETURN(auto best_of, GetInteger(body, "best_of", 1, kInt32Max));
  if (best_of.has_value() && *best_of != 1) {
    return Bad("best_of", StrCat("must be 1 (one choice per request), got ", *best_of));
  }
  ASSIGN_OR_RETURN(auto echo, GetBool(body, "echo"));
  if (echo.value_or(false)) return Bad("echo", "is not supported");
  if (const Json* suffix = Find(body, "suffix")) {
    if (!suffix->is_string() || !suffix->get<std::string>().empty()) {
      return Bad("suffix", "is not supported");
    }
  }
  if (const Json* bias = Find(body, "logit_bias")) {
    if (!bias->is_object() || !bias->empty()) return Bad("logit_bias", "is not supported");
  }
  for (const char* key : {"tools", "functions"}) {
    if (const Json* tools = Find(body, key)) {
      if (!tools->is_array() || !tools->empty()) return Bad(key, "are not supported");
    }
  }
  if (const Json* format = Find(body, "response_format")) {
    const bool text = format->is_object() && format->contains("type") &&
                      (*format)["type"].is_string() && (*format)["type"].get<std::string>() == "text";
    if (!text) return Bad("response_format", "other than {\"type\": \"text\"} is not supported");
  }
  return absl::OkStatus();
}

absl::Status ParsePrompt(const Json& body, v1::GenerateRequest* r) {
  const Json* prompt = Find(body, "prompt");
  if (prompt == nullptr) return Bad("prompt", "is required");
  auto token_ids = [&](const Json& list, v1::TokenIds* out) -> absl::Status {
    for (size_t i = 0; i < list.size(); ++i) {
      const Json& id = list[i];
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > kInt32Max) {
        return Bad(StrCat("prompt[", i, "]"), "must be a token id (a non-negative integer)");
      }
      out->add_ids(static_cast<int32_t>(id.get<int64_t>()));
    }
    return absl::OkStatus();
  };
  if (prompt->is_string()) {
    if (prompt->get_ref<const std::string&>().empty()) return Bad("prompt", "is empty");
    r->set_prompt(prompt->get<std::string>());
    return absl::OkStatus();
  }
  if (!prompt->is_array()) {
    return Bad("prompt", "must be a string, a list of token ids, or a list of one string");
  }
  if (prompt->empty()) return Bad("prompt", "is empty");
  const Json& first = (*prompt)[0];
  if (first.is_number()) return token_ids(*prompt, r->mutable_prompt_ids());
  if (first.is_string() || first.is_array()) {
    if (prompt->size() > 1) {
      return Bad("prompt", StrCat("is a list of ", prompt->size(),
                                  " prompts; send one prompt per request"));
    }
    if (first.is_string()) {
      if (first.get_ref<const std::string&>().empty()) return Bad("prompt", "is empty");
      r->set_prompt(first.get<std::string>());
      return absl::OkStatus();
    }
    if (first.empty()) return Bad("prompt", "is empty");
    return token_ids(first, r->mutable_prompt_ids());
  }
  return Bad("prompt", "must be a string, a list of token ids, or a list of one string");
}

absl::Status ParseMessages(const Json& body, v1::GenerateRequest* r) {
  const Json* messages = Find(body, "messages");
  if (messages == nullptr) return Bad("messages", "is required");
  if (!messages->is_array()) return Bad("messages", "must be a list of messages");
  if (messages->empty()) return Bad("messages", "must not be empty");
  v1::ChatMessages* chat = r->mutable_chat();
  for (size_t i = 0; i < messages->size(); ++i) {
    const Json& m = (*messages)[i];
    const std::string at = StrCat("messages[", i, "]");
    if (!m.is_object()) return Bad(at, "must be an object with role and content");
    const Json* role = Find(m, "role");
    if (role == nullptr || !role->is_string()) return Bad(StrCat(at, ".role"), "must be a string");
    v1::ChatMessage* out = chat->add_messages();
    out->set_role(role->get<std::string>());  // checked and mapped by the router (PromptTokens)
    const Json* content = Find(m, "content");
    if (content == nullptr) continue;  // e.g. an assistant turn that only called tools
    if (content->is_string()) {
      out->set_content(content->get<std::string>());
      continue;
    }
    if (!content->is_array()) {
      return Bad(StrCat(at, ".content"), "must be a string or a list of content parts");
    }
    std::string text;
    for (size_t j = 0; j < content->size(); ++j) {
      const Json& part = (*content)[j];
      const std::string part_at = StrCat(at, ".content[", j, "]");
      const Json* type = part.is_object() ? Find(part, "type") : nullptr;
      if (type == nullptr || !type->is_string()) {
        return Bad(StrCat(part_at, ".type"), "must be a string");
      }
      if (type->get<std::string>() != "text") {
        return Bad(StrCat(part_at, ".type"),
                   StrCat("'", type->get<std::string>(), "' is not supported (text only)"));
      }
      const Json* part_text = Find(part, "text");
      if (part_text == nullptr || !part_text->is_string()) {
        return Bad(StrCat(part_at, ".text"), "must be a string");
      }
      text += part_text->get<std::string>();
    }
    out->set_content(std::move(text));
  }
  return absl::OkStatus();
}

absl::Status ParseLogprobs(const Json& body, OpenAiEndpoint endpoint, OpenAiRequest* out) {
  if (endpoint == OpenAiEndpoint::kCompletions) {
    ASSIGN_OR_RETURN(auto n, GetInteger(body, "logprobs", 0, kMaxLogprobs));
    if (n.has_value()) out->logprobs = static_cast<int32_t>(*n);
  } else {
    ASSIGN_OR_RETURN(auto enabled, GetBool(body, "logprobs"));
    ASSIGN_OR_RETURN(auto top, GetInteger(body, "top_logprobs", 0, kMaxLogprobs));
    if (top.value_or(0) > 0 && !enabled.value_or(false)) {
      return Bad("top_logprobs", "requires logprobs to be true");
    }
    if (enabled.value_or(false)) out->logprobs = static_cast<int32_t>(top.value_or(0));
  }
  if (out->logprobs >= 0) out->request.set_logprobs(std::max(out->logprobs, 1));
  return absl::OkStatus();
}

// Invalid UTF-8 is found before parsing; to say which field holds it, the
// bad bytes are replaced by a marker, the body parsed, and the marker sought.
constexpr std::string_view kBadUtf8Marker = "\xEF\xBF\xBF";  // U+FFFF, a noncharacter

std::string MarkInvalidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 16);
  size_t pos = 0;
  while (pos < s.size()) {
    uint32_t cp = 0;
    const size_t n = DecodeUtf8(s, pos, &cp);
    if (n == 0) {
      out += kBadUtf8Marker;
      ++pos;
    } else {
      out.append(s.substr(pos, n));
      pos += n;
    }
  }
  return out;
}

// The path ("messages[0].content") of the first string holding the marker.
std::optional<std::string> FindMarker(const Json& v, const std::string& path, int depth) {
  if (depth > 32) return std::nullopt;
  auto has = [](const std::string& s) { return s.find(kBadUtf8Marker) != std::string::npos; };
  if (v.is_string()) {
    if (has(v.get_ref<const std::string&>())) return path;
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (auto p = FindMarker(v[i], StrCat(path, "[", i, "]"), depth + 1)) return p;
    }
  } else if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      const std::string child = path.empty() ? it.key() : StrCat(path, ".", it.key());
      if (has(it.key())) return StrCat("a key in ", path.empty() ? "the request body" : path);
      if (auto p = FindMarker(it.value(), child, depth + 1)) return p;
    }
  }
  return std::nullopt;
}

absl::Status InvalidUtf8Error(std::string_view body) {
  const Json marked = Json::parse(MarkInvalidUtf8(body), nullptr, /*allow_exceptions=*/false);
  if (!marked.is_discarded()) {
    if (auto path = FindMarker(marked, "", 0)) {
      return absl::InvalidArgumentError(StrCat(*path, " is not valid UTF-8"));
    }
  }
  return absl::InvalidArgumentError("the request body is not valid UTF-8");
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, std::string_view body) {
  if (!IsValidUtf8(body)) return InvalidUtf8Error(body);
  Json json;
  try {
    json = Json::parse(body);
  } catch (const Json::parse_error& e) {
    std::string_view what = e.what();
    // "[json.exception.parse_error.101] parse error at ...": keep the part after the tag.
    if (const size_t tag = what.find("] "); tag != std::string_view::npos) what.remove_prefix(tag + 2);
    return absl::InvalidArgumentError(StrCat("the request body is not valid JSON: ", what));
  }
  return ParseOpenAiJson(endpoint, json);
}

absl::StatusOr<OpenAiRequest> ParseOpenAiJson(OpenAiEndpoint endpoint, const Json& body) {
  if (!body.is_object()) return absl::InvalidArgumentError("the request body must be a JSON object");
  OpenAiRequest out;
  out.endpoint = endpoint;
  v1::GenerateRequest& r = out.request;
  if (const Json* model = Find(body, "model")) {
    if (!model->is_string()) return Bad("model", "must be a string");
    r.set_model(model->get<std::string>());
  }
  if (endpoint == OpenAiEndpoint::kCompletions) {
    RETURN_IF_ERROR(ParsePrompt(body, &r));
  } else {
    RETURN_IF_ERROR(ParseMessages(body, &r));
  }
  RETURN_IF_ERROR(RejectUnsupported(body));
  // max_completion_tokens is OpenAI's newer name; it wins when both are given.
  ASSIGN_OR_RETURN(auto max_tokens, GetInteger(body, "max_tokens", 1, kInt32Max));
  ASSIGN_OR_RETURN(auto max_completion, GetInteger(body, "max_completion_tokens", 1, kInt32Max));
  if (max_completion) {
    r.set_max_tokens(static_cast<int32_t>(*max_completion));
  } else if (max_tokens) {
    r.set_max_tokens(static_cast<int32_t>(*max_tokens));
  }
  RETURN_IF_ERROR(ParseSampling(body, &r));
  RETURN_IF_ERROR(ParseStops(body, &r));
  RETURN_IF_ERROR(ParseLogprobs(body, endpoint, &out));
  ASSIGN_OR_RETURN(auto ignore_eos, GetBool(body, "ignore_eos"));
  if (ignore_eos.value_or(false)) r.set_stop_at_eos(false);
  // vLLM's priority: lower runs earlier. The proto's: larger runs earlier.
  ASSIGN_OR_RETURN(auto priority, GetInteger(body, "priority", -kInt32Max, kInt32Max));
  if (priority) r.set_priority(static_cast<int32_t>(-*priority));
  ASSIGN_OR_RETURN(auto stream, GetBool(body, "stream"));
  out.stream = stream.value_or(false);
  if (const Json* options = Find(body, "stream_options")) {
    if (!out.stream) return Bad("stream_options", "is only allowed when stream is true");
    if (!options->is_object()) return Bad("stream_options", "must be an object");
    if (const Json* include_usage = Find(*options, "include_usage")) {
      if (!include_usage->is_boolean()) {
        return Bad("stream_options.include_usage", "must be a boolean");
      }
      out.include_usage = include_usage->get<bool>();
    }
  }
  return out;
}

}  // namespace tokenfab
