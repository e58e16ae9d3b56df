#include "server/loadgen/openai_stream.h"

#include <nlohmann/json.hpp>

#include "common/strings.h"

namespace tokenfab::loadgen {
namespace {

using nlohmann::json;

int32_t TokenCount(const json& usage, const char* key) {
  auto it = usage.find(key);
  if (it == usage.end() || !it->is_number_integer()) return -1;
  const int64_t v = it->get<int64_t>();
  return v >= 0 && v <= INT32_MAX ? static_cast<int32_t>(v) : -1;
}

}  // namespace

std::vector<std::string> SseParser::Feed(std::string_view bytes) {
  for (char c : bytes) {
    if (c == '\n' && last_was_cr_) {  // the second half of "\r\n"
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = c == '\r';
    if (c == '\r' || c == '\n') {
      EndLine();
    } else {
      line_.push_back(c);
    }
  }
  return std::move(events_);
}

void SseParser::EndLine() {
  if (line_.empty()) {  // a blank line dispatches the event
    if (has_data_) events_.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  std::string_view line(line_);
  std::string_view field = line, value;
  if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) data_.push_back('\n');
    data_.append(value);
    has_data_ = true;
  }
  line_.clear();
}

absl::StatusOr<CompletionChunk> ParseCompletionChunk(std::string_view data) {
  CompletionChunk chunk;
  if (data == "[DONE]") {
    chunk.done = true;
    return chunk;
  }
  json j = json::parse(data.begin(), data.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError(StrCat("malformed stream chunk: ", data.substr(0, 200)));
  }
  if (auto e = j.find("error"); e != j.end() && !e->is_null()) {
    std::string message = e->is_object() && e->contains("message") && (*e)["message"].is_string()
                              ? (*e)["message"].get<std::string>()
                              : e->dump();
    return absl::UnavailableError(StrCat("server error in stream: ", message));
  }
  if (auto choices = j.find("choices");
      choices != j.end() && choices->is_array() && !choices->empty() && (*choices)[0].is_object()) {
    const json& c = (*choices)[0];
    if (auto t = c.find("text"); t != c.end() && t->is_string()) {
      chunk.text = t->get<std::string>();
    } else if (auto d = c.find("delta"); d != c.end() && d->is_object()) {
      if (auto t2 = d->find("content"); t2 != d->end() && t2->is_string()) {
        chunk.text = t2->get<std::string>();
      }
    }
    if (auto f = c.find("finish_reason"); f != c.end() && f->is_string()) {
      chunk.finish_reason = f->get<std::string>();
    }
  }
  if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
    chunk.prompt_tokens = TokenCount(*u, "prompt_tokens");
    chunk.completion_tokens = TokenCount(*u, "completion_tokens");
  }
  return chunk;
}

absl::StatusOr<std::string> CompletionRequestBody(const std::string& model,
                                                  const std::string& prompt, int32_t max_tokens,
                                                  const std::string& extra_json) {
  json body = {
      {"prompt", prompt},
      {"max_tokens", max_tokens},
      {"ignore_eos", true},
      {"stream", true},
      {"stream_options", {{"include_usage", true}}},
  };
  if (!model.empty()) body["model"] = model;
  if (!extra_json.empty()) {
    json extra = json::parse(extra_json, nullptr, /*allow_exceptions=*/false);
    if (extra.is_discarded() || !extra.is_object()) {
      return absl::InvalidArgumentError(
          StrCat("extra request fields must be a JSON object, got: ", extra_json));
    }
    body.update(extra);
  }
  return body.dump();
}

absl::StatusOr<std::string> FirstModelId(std::string_view models_json) {
  json j = json::parse(models_json.begin(), models_json.end(), nullptr, false);
  if (j.is_object()) {
    if (auto d = j.find("data"); d != j.end() && d->is_array() && !d->empty() &&
                                 (*d)[0].is_object() && (*d)[0].contains("id") &&
                                 (*d)[0]["id"].is_string()) {
      return (*d)[0]["id"].get<std::string>();
    }
  }
  return absl::NotFoundError(
      StrCat("no model id in the /v1/models response: ", models_json.substr(0, 200)));
}

}  // namespace tokenfab::loadgen
