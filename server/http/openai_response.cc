#include "server/http/openai_response.h"

#include <algorithm>

#include "common/strings.h"
#include "server/http/http_error.h"

namespace tokenfab {
namespace {

using Json = nlohmann::ordered_json;

bool IsChat(const ResponseContext& ctx) { return ctx.endpoint == OpenAiEndpoint::kChatCompletions; }

Json Bytes(const std::string& s) {
  Json bytes = Json::array();
  for (unsigned char c : s) bytes.push_back(static_cast<int>(c));
  return bytes;
}

Json ChatTokenJson(const v1::TokenLogprob& t) {
  return Json{{"token", t.text()}, {"logprob", t.logprob()}, {"bytes", Bytes(t.text())}};
}

int32_t TopCount(const v1::TokenLogprobs& l, int32_t top_n) {
  return std::min<int32_t>(top_n, l.top_size());
}

}  // namespace

std::string ResponseId(OpenAiEndpoint endpoint, std::string_view request_id) {
  return StrCat(endpoint == OpenAiEndpoint::kChatCompletions ? "chatcmpl-" : "cmpl-", request_id);
}

std::string DumpJson(const Json& json) {
  return json.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

std::string SseEvent(const Json& json) { return StrCat("data: ", DumpJson(json), "\n\n"); }

Json FinishReasonJson(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_STOP: return "stop";
    case v1::FINISH_REASON_LENGTH: return "length";
    default: return nullptr;
  }
}

Json UsageJson(const v1::Usage& usage) {
  return Json{{"prompt_tokens", usage.prompt_tokens()},
              {"completion_tokens", usage.completion_tokens()},
              {"total_tokens", usage.prompt_tokens() + usage.completion_tokens()},
              {"prompt_tokens_details", {{"cached_tokens", usage.cached_tokens()}}}};
}

Json CompletionLogprobsJson(const LogprobList& logprobs, int32_t top_n, int64_t* text_offset) {
  Json tokens = Json::array(), token_logprobs = Json::array(), top = Json::array(),
       offsets = Json::array();
  for (const v1::TokenLogprobs& l : logprobs) {
    tokens.push_back(l.chosen().text());
    token_logprobs.push_back(l.chosen().logprob());
    Json alternatives = Json::object();
    for (int32_t i = 0; i < TopCount(l, top_n); ++i) {
      alternatives[l.top(i).text()] = l.top(i).logprob();
    }
    top.push_back(std::move(alternatives));
    offsets.push_back(*text_offset);
    *text_offset += static_cast<int64_t>(l.chosen().text().size());
  }
  return Json{{"tokens", std::move(tokens)},
              {"token_logprobs", std::move(token_logprobs)},
              {"top_logprobs", std::move(top)},
              {"text_offset", std::move(offsets)}};
}

Json ChatLogprobsJson(const LogprobList& logprobs, int32_t top_n) {
  Json content = Json::array();
  for (const v1::TokenLogprobs& l : logprobs) {
    Json entry = ChatTokenJson(l.chosen());
    Json top = Json::array();
    for (int32_t i = 0; i < TopCount(l, top_n); ++i) top.push_back(ChatTokenJson(l.top(i)));
    entry["top_logprobs"] = std::move(top);
    content.push_back(std::move(entry));
  }
  return Json{{"content", std::move(content)}};
}

Json OpenAiStreamEncoder::Chunk(Json choice) const {
  Json chunk = {{"id", ctx_.id},
                {"object", IsChat(ctx_) ? "chat.completion.chunk" : "text_completion"},
                {"created", ctx_.created},
                {"model", ctx_.model},
                {"choices", Json::array({std::move(choice)})}};
  // OpenAI: with include_usage every chunk has usage null but the last.
  if (ctx_.include_usage) chunk["usage"] = nullptr;
  return chunk;
}

std::string OpenAiStreamEncoder::Begin() {
  if (!IsChat(ctx_)) return "";
  return SseEvent(Chunk(Json{{"index", 0},
                             {"delta", {{"role", "assistant"}, {"content", ""}}},
                             {"logprobs", nullptr},
                             {"finish_reason", nullptr}}));
}

std::string OpenAiStreamEncoder::Encode(const v1::GenerateResponse& r) {
  const v1::FinishReason reason = r.finish_reason();
  const bool finishes = reason == v1::FINISH_REASON_STOP || reason == v1::FINISH_REASON_LENGTH;
  const bool has_logprobs = ctx_.logprobs >= 0 && r.logprobs_size() > 0;
  std::string out;
  if (!r.text().empty() || has_logprobs || finishes) {
    Json logprobs = nullptr;
    if (has_logprobs) {
      logprobs = IsChat(ctx_) ? ChatLogprobsJson(r.logprobs(), ctx_.logprobs)
                              : CompletionLogprobsJson(r.logprobs(), ctx_.logprobs, &text_offset_);
    }
    Json choice = {{"index", 0}};
    if (IsChat(ctx_)) {
      choice["delta"] = r.text().empty() ? Json::object() : Json{{"content", r.text()}};
    } else {
      choice["text"] = r.text();
    }
    choice["logprobs"] = std::move(logprobs);
    choice["finish_reason"] = finishes ? FinishReasonJson(reason) : Json(nullptr);
    out += SseEvent(Chunk(std::move(choice)));
  }
  if (finishes) {
    if (ctx_.include_usage) {
      Json usage = Chunk(nullptr);
      usage["choices"] = Json::array();
      usage["usage"] = UsageJson(r.usage());
      out += SseEvent(usage);
    }
    out += kSseDone;
  } else if (reason == v1::FINISH_REASON_ERROR) {
    // As vLLM: an error event the SDKs raise, then the end of the stream.
    out += SseEvent(MakeHttpError(500, "server_error", "the worker failed while generating").body);
    out += kSseDone;
  }
  return out;
}

void OpenAiResponseBuilder::Add(const v1::GenerateResponse& r) {
  text_ += r.text();
  if (ctx_.logprobs >= 0) {
    for (const v1::TokenLogprobs& l : r.logprobs()) *logprobs_.Add() = l;
  }
  if (r.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
    finish_reason_ = r.finish_reason();
    usage_ = r.usage();
  }
}

Json OpenAiResponseBuilder::Build() const {
  Json logprobs = nullptr;
  if (ctx_.logprobs >= 0) {
    int64_t offset = 0;
    logprobs = IsChat(ctx_) ? ChatLogprobsJson(logprobs_, ctx_.logprobs)
                            : CompletionLogprobsJson(logprobs_, ctx_.logprobs, &offset);
  }
  Json choice = {{"index", 0}};
  if (IsChat(ctx_)) {
    choice["message"] = {{"role", "assistant"}, {"content", text_}};
  } else {
    choice["text"] = text_;
  }
  choice["logprobs"] = std::move(logprobs);
  choice["finish_reason"] = FinishReasonJson(finish_reason_);
  return Json{{"id", ctx_.id},
              {"object", IsChat(ctx_) ? "chat.completion" : "text_completion"},
              {"created", ctx_.created},
              {"model", ctx_.model},
              {"choices", Json::array({std::move(choice)})},
              {"usage", UsageJson(usage_)}};
}

}  // namespace tokenfab
