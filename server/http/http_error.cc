#include "server/http/http_error.h"

#include <array>

namespace tokenfab {
namespace {

// Fields of the OpenAI request bodies (and the proto fields the router's
// messages name) that an error's `param` may point at.
constexpr std::array<std::string_view, 30> kRequestFields = {
    "model",          "prompt",         "prompt_ids",        "messages",
    "max_tokens",     "max_completion_tokens", "temperature", "top_p",
    "top_k",          "min_p",          "repetition_penalty", "presence_penalty",
    "frequency_penalty", "seed",        "stop",              "stop_token_ids",
    "logprobs",       "top_logprobs",   "n",                 "best_of",
    "echo",           "suffix",         "logit_bias",        "stream",
    "stream_options", "ignore_eos",     "priority",          "tools",
    "response_format", "user"};

bool IsFieldChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '[' || c == ']';
}

}  // namespace

HttpError MakeHttpError(int http_status, std::string_view type, std::string_view message,
                        std::string_view param, std::string_view code) {
  nlohmann::ordered_json error = {
      {"message", std::string(message)},
      {"type", std::string(type)},
      {"param", param.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(param)},
      {"code", code.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(code)},
  };
  return {http_status, nlohmann::ordered_json{{"error", std::move(error)}}};
}

std::string ParamFromMessage(std::string_view message) {
  size_t end = 0;
  while (end < message.size() && IsFieldChar(message[end])) ++end;
  // Only "field ..." or "field: ...": a field must be followed by a separator.
  if (end == 0 || (end < message.size() && message[end] != ' ' && message[end] != ':')) return "";
  const std::string_view path = message.substr(0, end);
  const std::string_view base = path.substr(0, path.find_first_of(".["));
  for (std::string_view f : kRequestFields) {
    if (base == f) return std::string(path);
  }
  return "";
}

HttpError HttpErrorFromStatus(const absl::Status& status) {
  const std::string message(status.message());
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return MakeHttpError(500, "server_error", "internal error: an OK status reported as error");
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kAlreadyExists: {
      const std::string param = ParamFromMessage(message);
      // OpenAI's code for an unknown model.
      const std::string_view code = param == "model" ? "model_not_found" : "";
      return MakeHttpError(400, "invalid_request_error", message, param, code);
    }
    case absl::StatusCode::kNotFound:
      return MakeHttpError(404, "invalid_request_error", message);
    case absl::StatusCode::kUnauthenticated:  // as OpenAI answers a wrong key
      return MakeHttpError(401, "invalid_request_error", message, "", "invalid_api_key");
    case absl::StatusCode::kResourceExhausted:
      return MakeHttpError(429, "rate_limit_error", message, "", "rate_limit_exceeded");
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kAborted:
      return MakeHttpError(503, "server_error", message, "", "service_unavailable");
    case absl::StatusCode::kDeadlineExceeded:
      return MakeHttpError(504, "server_error", message, "", "timeout");
    default:
      return MakeHttpError(500, "server_error", message);
  }
}

}  // namespace tokenfab
