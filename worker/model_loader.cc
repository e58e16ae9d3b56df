#include "worker/model_loader.h"

#include <cstdio>
#include <filesystem>

#include "common/block_hash.h"
#include "common/mapped_file.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "worker/model/gguf_file.h"
#include "worker/model/safetensors_file.h"

namespace tokenfab {
namespace {

namespace fs = std::filesystem;

absl::Status ParseTemplate(const std::string& source, const std::string& where, LoadedModel* m) {
  if (source.empty()) return absl::OkStatus();
  auto tmpl = ChatTemplate::Create(source);
  if (!tmpl.ok()) {
    return absl::InvalidArgumentError(
        StrCat(where, ": the chat template cannot be used: ", tmpl.status().message()));
  }
  m->chat_template = std::move(*tmpl);
  m->chat_template_source = source;
  return absl::OkStatus();
}

absl::Status LoadGguf(const std::string& path, const ModelLoadOptions& options, LoadedModel* m) {
  ASSIGN_OR_RETURN(m->gguf, GgufFile::Open(path));
  ASSIGN_OR_RETURN(std::vector<float> freq_factors, RopeFreqFactorsFromGguf(*m->gguf));
  ASSIGN_OR_RETURN(m->config, ModelConfigFromGguf(*m->gguf, freq_factors));
  ASSIGN_OR_RETURN(m->tokenizer, Tokenizer::FromGguf(*m->gguf));
  if (m->tokenizer->vocab_size() > m->config.vocab_size) {
    return absl::InvalidArgumentError(StrCat(path, ": the tokenizer has ",
                                             m->tokenizer->vocab_size(),
                                             " tokens but the model only ", m->config.vocab_size));
  }
  ASSIGN_OR_RETURN(std::string tmpl, m->gguf->GetStringOr("tokenizer.chat_template", ""));
  RETURN_IF_ERROR(ParseTemplate(tmpl, path, m));
  if (options.load_weights) {
    ASSIGN_OR_RETURN(m->weights, WeightsFromGguf(*m->gguf, m->config));
  }
  return absl::OkStatus();
}

// The chat template of a Hugging Face folder: chat_template.jinja, else
// tokenizer_config.json's "chat_template" (a string, or a list of named
// templates of which "default" is used).
absl::StatusOr<std::string> HfChatTemplateUnchecked(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / "chat_template.jinja", ec)) {
    return ReadFileToString((dir / "chat_template.jinja").string());
  }
  const fs::path cfg = dir / "tokenizer_config.json";
  if (!fs::exists(cfg, ec)) return std::string();
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(cfg.string()));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(StrCat(cfg.string(), ": not a JSON object"));
  }
  auto it = j.find("chat_template");
  if (it == j.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const auto& t : *it) {
      if (t.is_object() && t.value("name", "") == "default" && t.contains("template") &&
          t["template"].is_string()) {
        return t["template"].get<std::string>();
      }
    }
  }
  return absl::InvalidArgumentError(
      StrCat(cfg.string(), ": 'chat_template' is neither a string nor a list with a 'default'"));
}

absl::StatusOr<std::string> HfChatTemplate(const fs::path& dir) {
  try {
    return HfChatTemplateUnchecked(dir);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        StrCat((dir / "tokenizer_config.json").string(), ": unexpected value type: ", e.what()));
  }
}

absl::Status LoadHf(const std::string& path, const ModelLoadOptions& options, LoadedModel* m) {
  const fs::path dir(path);
  const std::string config_path = (dir / "config.json").string();
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return absl::InvalidArgumentError(StrCat(config_path, ": invalid JSON"));
  ASSIGN_OR_RETURN(m->config, ModelConfigFromHfJson(j, config_path));
  ASSIGN_OR_RETURN(m->tokenizer, Tokenizer::FromHfDirectory(path));
  if (m->tokenizer->vocab_size() > m->config.vocab_size) {
    return absl::InvalidArgumentError(StrCat(path, ": the tokenizer has ",
                                             m->tokenizer->vocab_size(),
                                             " tokens but the model only ", m->config.vocab_size));
  }
  ASSIGN_OR_RETURN(std::string tmpl, HfChatTemplate(dir));
  RETURN_IF_ERROR(ParseTemplate(tmpl, path, m));
  if (options.load_weights) {
    ASSIGN_OR_RETURN(m->safetensors, SafetensorsCheckpoint::OpenDirectory(path));
    ASSIGN_OR_RETURN(m->weights, WeightsFromSafetensors(*m->safetensors, m->config, path));
  }
  return absl::OkStatus();
}

}  // namespace

LoadedModel::~LoadedModel() = default;

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModel(const std::string& path,
                                                       const ModelLoadOptions& options) {
  auto m = std::make_unique<LoadedModel>();
  m->path = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    m->format = ModelFormat::kHuggingFace;
    RETURN_IF_ERROR(LoadHf(path, options, m.get()));
  } else if (fs::exists(path, ec)) {
    m->format = ModelFormat::kGguf;
    RETURN_IF_ERROR(LoadGguf(path, options, m.get()));
  } else {
    return absl::NotFoundError(StrCat(path, ": no such file or directory"));
  }
  return m;
}

}  // namespace tokenfab

namespace tokenfab {

std::string ModelFingerprint(const LoadedModel& model) {
  const ModelConfig& c = model.config;
  std::string canonical =
      StrCat(c.arch_name, "|", c.vocab_size, "|", c.hidden_size, "|", c.intermediate_size, "|",
             c.num_layers, "|", c.num_heads, "|", c.num_kv_heads, "|", c.head_dim, "|",
             c.context_length, "|", c.rope_theta, "|", c.tied_embeddings, "|", c.qkv_bias);
  if (model.tokenizer != nullptr) {
    for (int32_t id = 0; id < model.tokenizer->vocab_size(); ++id) {
      canonical += '\0';
      canonical += model.tokenizer->TokenText(id);
    }
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(HashBytes(canonical)));
  return hex;
}

}  // namespace tokenfab
