// Builds TokenizerParts from a Hugging Face folder: tokenizer.json (model,
// added tokens, pipeline), tokenizer_config.json (add_bos/add_eos, bos/eos
// strings) and generation_config.json (extra end-of-generation ids).
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "common/mapped_file.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/tokenizer/byte_unicode.h"
#include "worker/tokenizer/end_of_generation.h"
#include "worker/tokenizer/hf_json.h"
#include "worker/tokenizer/hf_pipeline_json.h"
#include "worker/tokenizer/tokenizer_loaders.h"

namespace tokenfab {
namespace {

using hf_json::BoolOr;
using hf_json::Json;
using hf_json::Member;
using hf_json::StringOr;

constexpr int64_t kMaxTokenId = int64_t{1} << 24;

absl::Status Invalid(const std::string& where, std::string_view what) {
  return absl::InvalidArgumentError(StrCat(where, ": ", what));
}

absl::StatusOr<Json> ReadJson(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Invalid(path, "is not valid JSON");
  return j;
}

struct AddedToken {
  int32_t id;
  std::string content;
  bool special;
  bool lstrip;
  bool rstrip;
  bool single_word;
};

absl::StatusOr<std::vector<AddedToken>> ParseAddedTokens(const Json& root,
                                                         const std::string& where) {
  std::vector<AddedToken> out;
  const Json* list = Member(root, "added_tokens");
  if (list == nullptr) return out;
  if (!list->is_array()) return Invalid(where, "'added_tokens' must be a list");
  for (const Json& item : *list) {
    AddedToken t;
    ASSIGN_OR_RETURN(const int64_t id, hf_json::IntOr(item, "id", -1, where));
    if (id < 0 || id >= kMaxTokenId) {
      return Invalid(where, StrCat("added token id ", id, " is out of range"));
    }
    t.id = static_cast<int32_t>(id);
    ASSIGN_OR_RETURN(t.content, StringOr(item, "content", "", where));
    if (t.content.empty()) return Invalid(where, StrCat("added token ", id, " has no content"));
    ASSIGN_OR_RETURN(t.special, BoolOr(item, "special", false, where));
    ASSIGN_OR_RETURN(t.lstrip, BoolOr(item, "lstrip", false, where));
    ASSIGN_OR_RETURN(t.rstrip, BoolOr(item, "rstrip", false, where));
    ASSIGN_OR_RETURN(t.single_word, BoolOr(item, "single_word", false, where));
    out.push_back(std::move(t));
  }
  return out;
}

// Model vocabulary: text -> id from model.vocab.
absl::Status ParseModelVocab(const Json& model, const std::string& where,
                             std::vector<std::pair<std::string, int32_t>>* entries) {
  const Json* vocab = Member(model, "vocab");
  if (vocab == nullptr || !vocab->is_object()) {
    return Invalid(where, "model 'vocab' must be an object");
  }
  entries->reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer()) {
      return Invalid(where, StrCat("vocab entry '", it.key(), "' has a non-integer id"));
    }
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= kMaxTokenId) {
      return Invalid(where, StrCat("vocab entry '", it.key(), "' has id ", id, " out of range"));
    }
    entries->emplace_back(it.key(), static_cast<int32_t>(id));
  }
  return absl::OkStatus();
}

absl::Status ParseMerges(const Json& model, const Vocab& vocab, const std::string& where,
                         MergeTable* merges) {
  const Json* list = Member(model, "merges");
  if (list == nullptr) return absl::OkStatus();
  if (!list->is_array()) return Invalid(where, "model 'merges' must be a list");
  int32_t rank = 0;
  for (const Json& m : *list) {
    std::string left, right;
    if (m.is_string()) {
      // "a b": exactly two parts, as `tokenizers` requires.
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return Invalid(
            where, StrCat("merge #", rank, " '", s, "' is not two tokens separated by a space"));
      }
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      return Invalid(where, StrCat("merge #", rank, " is neither \"a b\" nor [\"a\", \"b\"]"));
    }
    const int32_t l = vocab.Find(left);
    const int32_t r = vocab.Find(right);
    const int32_t result = vocab.Find(left + right);
    if (l < 0 || r < 0 || result < 0) {
      return Invalid(where, StrCat("merge #", rank, " '", left, " ", right,
                                   "' uses or makes a token that is not in the vocabulary"));
    }
    merges->Add(l, r, result, rank);
    ++rank;
  }
  return absl::OkStatus();
}

// "bos_token": "<s>" or {"content": "<s>", ...}; "" if absent.
absl::StatusOr<std::string> ConfigToken(const Json& config, std::string_view key,
                                        const std::string& where) {
  const Json* v = Member(config, key);
  if (v == nullptr) return std::string();
  if (v->is_string()) return v->get<std::string>();
  if (v->is_object()) return StringOr(*v, "content", "", where);
  return Invalid(where, StrCat("'", key, "' must be a string or an object with 'content'"));
}

}  // namespace

absl::StatusOr<TokenizerParts> LoadHfTokenizerParts(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string path = (fs::path(dir) / "tokenizer.json").string();
  try {
    ASSIGN_OR_RETURN(const Json root, ReadJson(path));
    if (!root.is_object()) return Invalid(path, "must be a JSON object");
    const Json* model = Member(root, "model");
    if (model == nullptr || !model->is_object()) return Invalid(path, "has no 'model'");
    ASSIGN_OR_RETURN(const std::string model_type, StringOr(*model, "type", "BPE", path));
    if (model_type != "BPE") {
      return absl::UnimplementedError(
          StrCat(path, ": model type '", model_type, "' is not supported (only BPE)"));
    }
    ASSIGN_OR_RETURN(const std::string prefix,
                     StringOr(*model, "continuing_subword_prefix", "", path));
    ASSIGN_OR_RETURN(const std::string suffix, StringOr(*model, "end_of_word_suffix", "", path));
    if (!prefix.empty() || !suffix.empty()) {
      return absl::UnimplementedError(
          StrCat(path, ": BPE subword prefixes/suffixes are not supported"));
    }
    if (const Json* dropout = Member(*model, "dropout");
        dropout != nullptr && dropout->is_number() && dropout->get<double>() > 0) {
      return absl::UnimplementedError(StrCat(path, ": BPE dropout is not supported"));
    }

    TokenizerParts parts;
    std::vector<std::pair<std::string, int32_t>> entries;
    RETURN_IF_ERROR(ParseModelVocab(*model, path, &entries));
    ASSIGN_OR_RETURN(const std::vector<AddedToken> added, ParseAddedTokens(root, path));

    int64_t max_id = -1;
    for (const auto& e : entries) max_id = std::max<int64_t>(max_id, e.second);
    for (const AddedToken& t : added) max_id = std::max<int64_t>(max_id, t.id);
    if (max_id < 0) return Invalid(path, "the vocabulary is empty");
    // Ids are dense in real files; a sparse one would only size an allocation.
    const int64_t n_entries = static_cast<int64_t>(entries.size() + added.size());
    if (max_id >= 2 * n_entries + 1024) {
      return Invalid(
          path, StrCat("token id ", max_id, " is far beyond the ", n_entries, " tokens defined"));
    }

    ASSIGN_OR_RETURN(const bool byte_fallback, BoolOr(*model, "byte_fallback", false, path));
    Vocab& vocab = parts.vocab;
    const int32_t n = static_cast<int32_t>(max_id + 1);
    vocab.texts.assign(n, "");
    vocab.scores.assign(n, 0.0f);
    vocab.attrs.assign(n, kTokenUnused);
    vocab.ids.reserve(entries.size());
    for (auto& [text, id] : entries) {
      if (vocab.attrs[id] != kTokenUnused) {
        return Invalid(path, StrCat("vocab id ", id, " is used twice"));
      }
      uint8_t byte;
      vocab.attrs[id] =
          byte_fallback && ParseByteTokenText(text, &byte) ? kTokenByte : kTokenNormal;
      vocab.texts[id] = text;
      vocab.ids[text] = id;
    }
    parts.special.assign(n, 0);
    std::vector<SpecialTokenRule> rules;
    std::vector<uint8_t> is_added(n, 0);
    absl::flat_hash_map<std::string, int32_t> added_ids;
    for (const AddedToken& t : added) {
      vocab.texts[t.id] = t.content;
      vocab.attrs[t.id] = t.special ? kTokenControl : kTokenUserDefined;
      parts.special[t.id] = t.special ? 1 : 0;
      is_added[t.id] = 1;
      added_ids[t.content] = t.id;
      rules.push_back({t.id, t.content, t.special, t.lstrip, t.rstrip, t.single_word});
    }
    parts.splitter =
        SpecialTokenSplitter(std::move(rules), SpecialTokenSplitter::Order::kLeftmostLongest);

    MergeTable merges;
    RETURN_IF_ERROR(ParseMerges(*model, vocab, path, &merges));

    const Json null_json;
    auto section = [&](const char* key) -> const Json& {
      const Json* v = Member(root, key);
      return v != nullptr ? *v : null_json;
    };
    ASSIGN_OR_RETURN(parts.normalizer, ParseHfNormalizer(section("normalizer"), path));
    ASSIGN_OR_RETURN(HfPreTokenizer pre, ParseHfPreTokenizer(section("pre_tokenizer"), path));
    ASSIGN_OR_RETURN(const HfDecoder decoder, ParseHfDecoder(section("decoder"), path));
    ASSIGN_OR_RETURN(const HfPostProcessor post,
                     ParseHfPostProcessor(section("post_processor"), path));
    parts.pre_tokenizer = std::move(pre.pre_tokenizer);
    const bool byte_level = pre.byte_level || decoder.byte_level;

    auto id_of = [&](const std::string& text) -> int32_t {
      if (text.empty()) return -1;
      auto it = added_ids.find(text);
      return it != added_ids.end() ? it->second : vocab.Find(text);
    };
    ASSIGN_OR_RETURN(const std::string unk_text, StringOr(*model, "unk_token", "", path));
    parts.unk_id = id_of(unk_text);
    if (!unk_text.empty() && parts.unk_id < 0) {
      return Invalid(path, StrCat("unk_token '", unk_text, "' is not in the vocabulary"));
    }
    BpeOptions options;
    options.byte_level = byte_level;
    ASSIGN_OR_RETURN(options.ignore_merges, BoolOr(*model, "ignore_merges", false, path));
    options.byte_fallback = byte_fallback;
    options.unk_id = parts.unk_id;
    ASSIGN_OR_RETURN(options.fuse_unk, BoolOr(*model, "fuse_unk", false, path));
    parts.bpe = BpeModel(vocab, std::move(merges), options);

    // BOS/EOS: tokenizer_config.json wins, the post-processor fills the gaps.
    Json config = Json::object();
    const std::string config_path = (fs::path(dir) / "tokenizer_config.json").string();
    if (fs::exists(config_path)) {
      ASSIGN_OR_RETURN(config, ReadJson(config_path));
    }
    ASSIGN_OR_RETURN(std::string bos_text, ConfigToken(config, "bos_token", config_path));
    ASSIGN_OR_RETURN(std::string eos_text, ConfigToken(config, "eos_token", config_path));
    if (bos_text.empty() && !post.leading.empty()) bos_text = post.leading.front();
    if (eos_text.empty() && !post.trailing.empty()) eos_text = post.trailing.back();
    parts.bos_id = id_of(bos_text);
    parts.eos_id = id_of(eos_text);
    ASSIGN_OR_RETURN(parts.add_bos,
                     BoolOr(config, "add_bos_token", !post.leading.empty(), config_path));
    ASSIGN_OR_RETURN(parts.add_eos,
                     BoolOr(config, "add_eos_token", !post.trailing.empty(), config_path));
    if (parts.add_bos && parts.bos_id < 0) {
      return Invalid(
          path, StrCat("BOS is added but bos token '", bos_text, "' is not in the vocabulary"));
    }
    if (parts.add_eos && parts.eos_id < 0) {
      return Invalid(
          path, StrCat("EOS is added but eos token '", eos_text, "' is not in the vocabulary"));
    }

    SpecialIds special_ids;
    special_ids.eos = parts.eos_id;
    std::vector<int32_t> eog = FindEndOfGeneration(vocab, special_ids).eog_ids;
    const std::string generation_path = (fs::path(dir) / "generation_config.json").string();
    if (fs::exists(generation_path)) {
      ASSIGN_OR_RETURN(const Json generation, ReadJson(generation_path));
      if (const Json* ids = Member(generation, "eos_token_id")) {
        const Json list = ids->is_array() ? *ids : Json::array({*ids});
        for (const Json& id : list) {
          if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= n) {
            return Invalid(generation_path, "'eos_token_id' holds an id outside the vocabulary");
          }
          eog.push_back(id.get<int32_t>());
        }
      }
    }
    std::sort(eog.begin(), eog.end());
    eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
    parts.end_of_generation_ids = std::move(eog);

    // Decoding.
    std::string replacement = decoder.replacement;
    if (replacement.empty()) replacement = pre.metaspace_replacement;
    if (replacement.empty()) replacement = "\xE2\x96\x81";
    parts.decode_strips_leading_space = !byte_level && decoder.strip_leading_space;
    parts.pieces.resize(n);
    for (int32_t id = 0; id < n; ++id) {
      const std::string& text = vocab.texts[id];
      uint8_t byte;
      if (is_added[id]) {
        parts.pieces[id] = text;
      } else if (byte_level) {
        parts.pieces[id] = ByteLevelTextToBytes(text);
      } else if ((vocab.attrs[id] & kTokenByte) && ParseByteTokenText(text, &byte)) {
        parts.pieces[id] = std::string(1, static_cast<char>(byte));
      } else {
        std::string piece;
        for (size_t i = 0; i < text.size();) {
          if (text.compare(i, replacement.size(), replacement) == 0) {
            piece.push_back(' ');
            i += replacement.size();
          } else {
            piece.push_back(text[i++]);
          }
        }
        parts.pieces[id] = std::move(piece);
      }
    }
    return parts;
  } catch (const nlohmann::json::exception& e) {
    // The accessors check types first; this only guards against a missed case.
    return Invalid(path, StrCat("malformed: ", e.what()));
  }
}

}  // namespace tokenfab
