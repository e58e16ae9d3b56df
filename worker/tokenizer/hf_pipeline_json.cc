#include "worker/tokenizer/hf_pipeline_json.h"

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace tokenfab {
namespace {

using hf_json::BoolOr;
using hf_json::Json;
using hf_json::Member;
using hf_json::StringOr;
using hf_json::TypeOf;

absl::Status Unsupported(const std::string& where, std::string_view section,
                         std::string_view type) {
  return absl::UnimplementedError(
      StrCat(where, ": ", section, " type '", type, "' is not supported"));
}

// A {"String": s} or {"Regex": r} pattern.
absl::StatusOr<std::shared_ptr<const RegexSplitter>> ParsePattern(const Json& obj,
                                                                  const std::string& where) {
  const Json* pattern = Member(obj, "pattern");
  if (pattern == nullptr || !pattern->is_object()) {
    return absl::InvalidArgumentError(
        StrCat(where, ": 'pattern' must be {\"String\": ...} or {\"Regex\": ...}"));
  }
  const Json* literal = Member(*pattern, "String");
  const Json* regex = Member(*pattern, "Regex");
  const Json* chosen = literal != nullptr ? literal : regex;
  if (chosen == nullptr || !chosen->is_string() || chosen->get<std::string>().empty()) {
    return absl::InvalidArgumentError(
        StrCat(where, ": 'pattern' needs a non-empty String or Regex"));
  }
  auto splitter = RegexSplitter::Create(chosen->get<std::string>(), literal != nullptr);
  if (!splitter.ok()) {
    return absl::InvalidArgumentError(StrCat(where, ": ", splitter.status().message()));
  }
  return std::shared_ptr<const RegexSplitter>(std::move(*splitter));
}

absl::StatusOr<std::shared_ptr<const RegexSplitter>> Compile(std::string_view regex,
                                                             const std::string& where) {
  auto splitter = RegexSplitter::Create(regex);
  if (!splitter.ok()) return absl::InternalError(StrCat(where, ": ", splitter.status().message()));
  return std::shared_ptr<const RegexSplitter>(std::move(*splitter));
}

absl::Status AddNormalizer(const Json& j, const std::string& where, int depth, Normalizer* out) {
  if (depth > 8) return absl::InvalidArgumentError(StrCat(where, ": normalizers nest too deeply"));
  ASSIGN_OR_RETURN(const std::string type, TypeOf(j, where));
  if (type == "Sequence") {
    const Json* list = Member(j, "normalizers");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError(StrCat(where, ": Sequence normalizer needs 'normalizers'"));
    }
    for (const Json& item : *list) RETURN_IF_ERROR(AddNormalizer(item, where, depth + 1, out));
    return absl::OkStatus();
  }
  if (type == "Prepend") {
    ASSIGN_OR_RETURN(std::string text, StringOr(j, "prepend", "", where));
    out->AddStep(Normalizer::Prepend{std::move(text)});
    return absl::OkStatus();
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(std::shared_ptr<const RegexSplitter> pattern, ParsePattern(j, where));
    ASSIGN_OR_RETURN(std::string content, StringOr(j, "content", "", where));
    out->AddStep(Normalizer::Replace{std::move(pattern), std::move(content)});
    return absl::OkStatus();
  }
  // Qwen2-family files name NFC; text that is already NFC (almost all input)
  // is unchanged by it, and tokenfab has no normalization tables. Accepted as
  // a no-op; decomposed input may tokenize differently from `tokenizers`.
  if (type == "NFC") return absl::OkStatus();
  return Unsupported(where, "normalizer", type);
}

absl::StatusOr<PreTokenizer::Metaspace> ParseMetaspace(const Json& j, const std::string& where) {
  PreTokenizer::Metaspace m;
  ASSIGN_OR_RETURN(m.replacement, StringOr(j, "replacement", m.replacement, where));
  if (m.replacement.empty()) {
    return absl::InvalidArgumentError(StrCat(where, ": Metaspace 'replacement' is empty"));
  }
  ASSIGN_OR_RETURN(m.split, BoolOr(j, "split", true, where));
  if (const Json* scheme = Member(j, "prepend_scheme")) {
    const std::string s = scheme->is_string() ? scheme->get<std::string>() : "";
    if (s == "always") {
      m.prepend = PreTokenizer::Metaspace::Prepend::kAlways;
    } else if (s == "first") {
      m.prepend = PreTokenizer::Metaspace::Prepend::kFirst;
    } else if (s == "never") {
      m.prepend = PreTokenizer::Metaspace::Prepend::kNever;
    } else {
      return absl::InvalidArgumentError(
          StrCat(where, ": unknown Metaspace prepend_scheme '", s, "'"));
    }
  } else {
    // Files from before prepend_scheme existed.
    ASSIGN_OR_RETURN(const bool add_prefix_space, BoolOr(j, "add_prefix_space", true, where));
    m.prepend = add_prefix_space ? PreTokenizer::Metaspace::Prepend::kAlways
                                 : PreTokenizer::Metaspace::Prepend::kNever;
  }
  return m;
}

absl::Status AddPreTokenizer(const Json& j, const std::string& where, int depth,
                             HfPreTokenizer* out) {
  if (depth > 8) {
    return absl::InvalidArgumentError(StrCat(where, ": pre-tokenizers nest too deeply"));
  }
  ASSIGN_OR_RETURN(const std::string type, TypeOf(j, where));
  PreTokenizer& pre = out->pre_tokenizer;
  if (type == "Sequence") {
    const Json* list = Member(j, "pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError(
          StrCat(where, ": Sequence pre_tokenizer needs 'pretokenizers'"));
    }
    for (const Json& item : *list) RETURN_IF_ERROR(AddPreTokenizer(item, where, depth + 1, out));
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    PreTokenizer::ByteLevel step;
    ASSIGN_OR_RETURN(step.add_prefix_space, BoolOr(j, "add_prefix_space", true, where));
    ASSIGN_OR_RETURN(const bool use_regex, BoolOr(j, "use_regex", true, where));
    if (use_regex) {
      ASSIGN_OR_RETURN(step.splitter, Compile(kGpt2SplitRegex, where));
    }
    pre.AddStep(std::move(step));
    out->byte_level = true;
    return absl::OkStatus();
  }
  if (type == "Split") {
    PreTokenizer::RegexSplit step;
    ASSIGN_OR_RETURN(step.splitter, ParsePattern(j, where));
    ASSIGN_OR_RETURN(const std::string behavior, StringOr(j, "behavior", "Isolated", where));
    auto parsed = ParseSplitBehavior(behavior);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(StrCat(where, ": ", parsed.status().message()));
    }
    step.behavior = *parsed;
    ASSIGN_OR_RETURN(step.invert, BoolOr(j, "invert", false, where));
    pre.AddStep(std::move(step));
    return absl::OkStatus();
  }
  if (type == "Digits") {
    // `tokenizers` tests char::is_numeric: general categories Nd, Nl, No = \p{N}.
    ASSIGN_OR_RETURN(const bool individual, BoolOr(j, "individual_digits", false, where));
    PreTokenizer::RegexSplit step;
    ASSIGN_OR_RETURN(step.splitter, Compile(individual ? "\\p{N}" : "\\p{N}+", where));
    pre.AddStep(std::move(step));
    return absl::OkStatus();
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(PreTokenizer::Metaspace m, ParseMetaspace(j, where));
    out->metaspace_replacement = m.replacement;
    pre.AddStep(std::move(m));
    return absl::OkStatus();
  }
  if (type == "Whitespace") {
    // Words and runs of punctuation; whitespace is dropped.
    PreTokenizer::RegexSplit step;
    ASSIGN_OR_RETURN(step.splitter, Compile("\\w+|[^\\w\\s]+", where));
    step.behavior = SplitBehavior::kRemoved;
    step.invert = true;
    pre.AddStep(std::move(step));
    return absl::OkStatus();
  }
  if (type == "WhitespaceSplit") {
    PreTokenizer::RegexSplit step;
    ASSIGN_OR_RETURN(step.splitter, Compile("\\s+", where));
    step.behavior = SplitBehavior::kRemoved;
    pre.AddStep(std::move(step));
    return absl::OkStatus();
  }
  return Unsupported(where, "pre_tokenizer", type);
}

absl::Status AddDecoder(const Json& j, const std::string& where, int depth, HfDecoder* out) {
  if (depth > 8) return absl::InvalidArgumentError(StrCat(where, ": decoders nest too deeply"));
  ASSIGN_OR_RETURN(const std::string type, TypeOf(j, where));
  if (type == "Sequence") {
    const Json* list = Member(j, "decoders");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError(StrCat(where, ": Sequence decoder needs 'decoders'"));
    }
    for (const Json& item : *list) RETURN_IF_ERROR(AddDecoder(item, where, depth + 1, out));
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    out->byte_level = true;
    return absl::OkStatus();
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(PreTokenizer::Metaspace m, ParseMetaspace(j, where));
    out->replacement = m.replacement;
    out->strip_leading_space = m.prepend != PreTokenizer::Metaspace::Prepend::kNever;
    return absl::OkStatus();
  }
  if (type == "Replace") {
    const Json* pattern = Member(j, "pattern");
    const Json* literal = pattern != nullptr ? Member(*pattern, "String") : nullptr;
    ASSIGN_OR_RETURN(const std::string content, StringOr(j, "content", "", where));
    if (literal == nullptr || !literal->is_string() || content != " ") {
      return absl::UnimplementedError(
          StrCat(where, ": only a decoder Replace of a string with \" \" is supported"));
    }
    out->replacement = literal->get<std::string>();
    return absl::OkStatus();
  }
  if (type == "Strip") {
    ASSIGN_OR_RETURN(const std::string content, StringOr(j, "content", " ", where));
    ASSIGN_OR_RETURN(const int64_t start, hf_json::IntOr(j, "start", 0, where));
    ASSIGN_OR_RETURN(const int64_t stop, hf_json::IntOr(j, "stop", 0, where));
    if (content != " " || start > 1 || stop != 0) {
      return absl::UnimplementedError(
          StrCat(where, ": only a decoder Strip of one leading space is supported"));
    }
    out->strip_leading_space = start == 1;
    return absl::OkStatus();
  }
  // Byte tokens are always turned back into bytes and pieces are always
  // concatenated, which is what these two do.
  if (type == "ByteFallback" || type == "Fuse") return absl::OkStatus();
  return Unsupported(where, "decoder", type);
}

absl::Status AddPostProcessor(const Json& j, const std::string& where, int depth,
                              HfPostProcessor* out) {
  if (depth > 8) {
    return absl::InvalidArgumentError(StrCat(where, ": post-processors nest too deeply"));
  }
  ASSIGN_OR_RETURN(const std::string type, TypeOf(j, where));
  if (type == "Sequence") {
    const Json* list = Member(j, "processors");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError(
          StrCat(where, ": Sequence post_processor needs 'processors'"));
    }
    for (const Json& item : *list) RETURN_IF_ERROR(AddPostProcessor(item, where, depth + 1, out));
    return absl::OkStatus();
  }
  if (type == "TemplateProcessing") {
    const Json* single = Member(j, "single");
    if (single == nullptr || !single->is_array()) {
      return absl::InvalidArgumentError(
          StrCat(where, ": TemplateProcessing needs a 'single' list"));
    }
    bool seen_sequence = false;
    for (const Json& item : *single) {
      if (Member(item, "Sequence") != nullptr) {
        seen_sequence = true;
        continue;
      }
      const Json* special = Member(item, "SpecialToken");
      if (special == nullptr) continue;
      ASSIGN_OR_RETURN(std::string id, StringOr(*special, "id", "", where));
      // "id" names an entry of "special_tokens", whose "tokens" are the texts.
      const Json* table = Member(j, "special_tokens");
      const Json* entry = table != nullptr ? Member(*table, id) : nullptr;
      const Json* tokens = entry != nullptr ? Member(*entry, "tokens") : nullptr;
      std::vector<std::string>& side = seen_sequence ? out->trailing : out->leading;
      if (tokens != nullptr && tokens->is_array()) {
        for (const Json& t : *tokens) {
          if (t.is_string()) side.push_back(t.get<std::string>());
        }
      } else {
        side.push_back(id);
      }
    }
    return absl::OkStatus();
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    // "cls": ["<s>", 0], "sep": ["</s>", 2]
    const Json* cls = Member(j, "cls");
    const Json* sep = Member(j, "sep");
    if (cls != nullptr && cls->is_array() && !cls->empty() && (*cls)[0].is_string()) {
      out->leading.push_back((*cls)[0].get<std::string>());
    }
    if (sep != nullptr && sep->is_array() && !sep->empty() && (*sep)[0].is_string()) {
      out->trailing.push_back((*sep)[0].get<std::string>());
    }
    return absl::OkStatus();
  }
  if (type == "ByteLevel") return absl::OkStatus();  // offsets only
  return Unsupported(where, "post_processor", type);
}

}  // namespace

absl::StatusOr<Normalizer> ParseHfNormalizer(const Json& j, const std::string& where) {
  Normalizer out;
  if (!j.is_null()) RETURN_IF_ERROR(AddNormalizer(j, where, 0, &out));
  return out;
}

absl::StatusOr<HfPreTokenizer> ParseHfPreTokenizer(const Json& j, const std::string& where) {
  HfPreTokenizer out;
  if (!j.is_null()) RETURN_IF_ERROR(AddPreTokenizer(j, where, 0, &out));
  return out;
}

absl::StatusOr<HfDecoder> ParseHfDecoder(const Json& j, const std::string& where) {
  HfDecoder out;
  if (!j.is_null()) RETURN_IF_ERROR(AddDecoder(j, where, 0, &out));
  return out;
}

absl::StatusOr<HfPostProcessor> ParseHfPostProcessor(const Json& j, const std::string& where) {
  HfPostProcessor out;
  if (!j.is_null()) RETURN_IF_ERROR(AddPostProcessor(j, where, 0, &out));
  return out;
}

}  // namespace tokenfab
