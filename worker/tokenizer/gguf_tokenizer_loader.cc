// Builds TokenizerParts from GGUF tokenizer.ggml.* metadata the way llama.cpp's
// llama_vocab::impl::load reads it, but refusing what llama.cpp would crash on
// or silently patch: every array length, id and merge is checked first.
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/tokenizer/byte_unicode.h"
#include "worker/tokenizer/end_of_generation.h"
#include "worker/tokenizer/tokenizer_loaders.h"

namespace tokenfab {
namespace {

// GGUF token types (llama.cpp's llama_token_type).
constexpr int64_t kTypeNormal = 1;
constexpr int64_t kTypeUnknown = 2;
constexpr int64_t kTypeControl = 3;
constexpr int64_t kTypeUserDefined = 4;
constexpr int64_t kTypeUnused = 5;
constexpr int64_t kTypeByte = 6;

// Far beyond any real vocabulary (the largest are ~260k); keeps every id in
// int32_t with room to spare.
constexpr size_t kMaxVocabSize = size_t{1} << 24;

absl::Status Invalid(const GgufFile& gguf, std::string_view key, std::string_view what) {
  return absl::InvalidArgumentError(StrCat(gguf.path(), ": ", key, ": ", what));
}

uint8_t AttrForType(int64_t type) {
  switch (type) {
    case kTypeNormal:
      return kTokenNormal;
    case kTypeUnknown:
      return kTokenUnknown;
    case kTypeControl:
      return kTokenControl;
    case kTypeUserDefined:
      return kTokenUserDefined;
    case kTypeUnused:
      return kTokenUnused;
    case kTypeByte:
      return kTokenByte;
    default:
      return 0;  // llama.cpp's "undefined": decodes to nothing
  }
}

absl::Status ReadVocab(const GgufFile& gguf, Vocab* vocab) {
  constexpr std::string_view kTokens = "tokenizer.ggml.tokens";
  ASSIGN_OR_RETURN(const std::vector<std::string>* tokens, gguf.GetStringArray(kTokens));
  if (tokens->empty()) return Invalid(gguf, kTokens, "the vocabulary is empty");
  if (tokens->size() > kMaxVocabSize) {
    return Invalid(gguf, kTokens,
                   StrCat(tokens->size(), " tokens is more than the supported ", kMaxVocabSize));
  }
  const size_t n = tokens->size();

  std::vector<double> scores;
  constexpr std::string_view kScores = "tokenizer.ggml.scores";
  if (const GgufValue* v = gguf.Find(kScores)) {
    if (v->type == GgufValueType::kArray && v->array_type == GgufValueType::kInt32) {
      scores.assign(v->ints.begin(), v->ints.end());  // llama.cpp accepts int32 scores too
    } else {
      ASSIGN_OR_RETURN(const std::vector<double>* s, gguf.GetFloatArray(kScores));
      scores = *s;
    }
    if (scores.size() != n) {
      return Invalid(gguf, kScores, StrCat("has ", scores.size(), " entries for ", n, " tokens"));
    }
  }
  const std::vector<int64_t>* types = nullptr;
  constexpr std::string_view kTypes = "tokenizer.ggml.token_type";
  if (gguf.Find(kTypes) != nullptr) {
    ASSIGN_OR_RETURN(types, gguf.GetIntArray(kTypes));
    if (types->size() != n) {
      return Invalid(gguf, kTypes, StrCat("has ", types->size(), " entries for ", n, " tokens"));
    }
  }

  vocab->texts.resize(n);
  vocab->scores.assign(n, 0.0f);
  vocab->attrs.assign(n, kTokenNormal);
  vocab->ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string text = (*tokens)[i];
    // llama.cpp renames empty tokens so they stay addressable and unmatchable.
    if (text.empty()) text = StrCat("[EMPTY_", i, "]");
    vocab->ids[text] = static_cast<int32_t>(i);
    vocab->texts[i] = std::move(text);
    if (!scores.empty()) vocab->scores[i] = static_cast<float>(scores[i]);
    if (types != nullptr) vocab->attrs[i] = AttrForType((*types)[i]);
  }
  return absl::OkStatus();
}

// A metadata token id: absent -> `fallback` (dropped if outside the
// vocabulary, as llama.cpp does with its defaults); present -> must be in range.
absl::StatusOr<int32_t> ReadTokenId(const GgufFile& gguf, std::string_view key, int32_t fallback,
                                    int32_t n_vocab) {
  if (gguf.Find(key) == nullptr) return fallback >= 0 && fallback < n_vocab ? fallback : -1;
  ASSIGN_OR_RETURN(int64_t id, gguf.GetInt(key));
  if (id < 0 || id >= n_vocab) {
    return Invalid(gguf, key,
                   StrCat("token id ", id, " is outside the vocabulary of ", n_vocab, " tokens"));
  }
  return static_cast<int32_t>(id);
}

absl::Status ReadMerges(const GgufFile& gguf, const Vocab& vocab, MergeTable* merges) {
  constexpr std::string_view kMerges = "tokenizer.ggml.merges";
  ASSIGN_OR_RETURN(const std::vector<std::string>* list, gguf.GetStringArray(kMerges));
  if (list->size() > size_t{INT32_MAX}) return Invalid(gguf, kMerges, "too many merges");
  std::string joined;
  for (size_t i = 0; i < list->size(); ++i) {
    const std::string& m = (*list)[i];
    // As llama.cpp splits: at the first space after the first character.
    const size_t space = m.find(' ', 1);
    if (space == std::string::npos || space + 1 >= m.size()) {
      return Invalid(gguf, kMerges,
                     StrCat("merge #", i, " '", m, "' is not two tokens separated by a space"));
    }
    const std::string_view left(m.data(), space);
    const std::string_view right(m.data() + space + 1, m.size() - space - 1);
    const int32_t l = vocab.Find(left);
    const int32_t r = vocab.Find(right);
    joined.assign(left);
    joined.append(right);
    const int32_t result = vocab.Find(joined);
    // A merge whose parts or result are not tokens can never produce a token
    // here; llama.cpp keeps it but it can only feed a later byte fallback.
    if (l < 0 || r < 0 || result < 0) continue;
    merges->Add(l, r, result, static_cast<int32_t>(i));
  }
  return absl::OkStatus();
}

void ApplyEndOfGeneration(const EndOfGenerationResult& eog, Vocab* vocab) {
  for (int32_t id : eog.make_control) vocab->attrs[id] |= kTokenControl;
  for (int32_t id : eog.make_user_defined) vocab->attrs[id] = kTokenUserDefined;
  for (int32_t id : eog.make_normal) vocab->attrs[id] = kTokenNormal;
}

std::string PieceForToken(const Vocab& vocab, int32_t id, bool spm) {
  const uint8_t attr = vocab.attrs[id];
  const std::string& text = vocab.texts[id];
  if (attr & (kTokenControl | kTokenUserDefined | kTokenUnknown)) return text;
  if (attr & kTokenNormal) {
    if (!spm) return ByteLevelTextToBytes(text);
    std::string out;
    for (size_t i = 0; i < text.size();) {
      if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
        out.push_back(' ');
        i += 3;
      } else {
        out.push_back(text[i++]);
      }
    }
    return out;
  }
  if (attr & kTokenByte) {
    uint8_t b;
    if (ParseByteTokenText(text, &b)) return std::string(1, static_cast<char>(b));
    return text;
  }
  return "";  // unused / undefined tokens render as nothing, as in llama.cpp
}

}  // namespace

absl::StatusOr<TokenizerParts> LoadGgufTokenizerParts(const GgufFile& gguf) {
  TokenizerParts parts;
  ASSIGN_OR_RETURN(const std::string model, gguf.GetString("tokenizer.ggml.model"));
  const bool spm = model == "llama";
  if (!spm && model != "gpt2") {
    return absl::UnimplementedError(StrCat(gguf.path(), ": tokenizer.ggml.model '", model,
                                           "' is not supported (only 'gpt2' and 'llama')"));
  }
  RETURN_IF_ERROR(ReadVocab(gguf, &parts.vocab));
  Vocab& vocab = parts.vocab;
  const int32_t n = vocab.size();

  // llama.cpp's defaults per model type.
  ASSIGN_OR_RETURN(parts.bos_id, ReadTokenId(gguf, "tokenizer.ggml.bos_token_id", spm ? 1 : 11, n));
  ASSIGN_OR_RETURN(parts.eos_id, ReadTokenId(gguf, "tokenizer.ggml.eos_token_id", spm ? 2 : 11, n));
  ASSIGN_OR_RETURN(parts.unk_id,
                   ReadTokenId(gguf, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, n));
  SpecialIds ids;
  ids.eos = parts.eos_id;
  ASSIGN_OR_RETURN(ids.eot, ReadTokenId(gguf, "tokenizer.ggml.eot_token_id", -1, n));
  ASSIGN_OR_RETURN(ids.eom, ReadTokenId(gguf, "tokenizer.ggml.eom_token_id", -1, n));
  // The deprecated prefix/suffix/middle keys are read after the fim_* ones and win.
  ASSIGN_OR_RETURN(ids.fim_pre, ReadTokenId(gguf, "tokenizer.ggml.fim_pre_token_id", -1, n));
  ASSIGN_OR_RETURN(ids.fim_suf, ReadTokenId(gguf, "tokenizer.ggml.fim_suf_token_id", -1, n));
  ASSIGN_OR_RETURN(ids.fim_mid, ReadTokenId(gguf, "tokenizer.ggml.fim_mid_token_id", -1, n));
  ASSIGN_OR_RETURN(ids.fim_pre,
                   ReadTokenId(gguf, "tokenizer.ggml.prefix_token_id", ids.fim_pre, n));
  ASSIGN_OR_RETURN(ids.fim_suf,
                   ReadTokenId(gguf, "tokenizer.ggml.suffix_token_id", ids.fim_suf, n));
  ASSIGN_OR_RETURN(ids.fim_mid,
                   ReadTokenId(gguf, "tokenizer.ggml.middle_token_id", ids.fim_mid, n));
  ASSIGN_OR_RETURN(ids.fim_pad, ReadTokenId(gguf, "tokenizer.ggml.fim_pad_token_id", -1, n));
  ASSIGN_OR_RETURN(ids.fim_rep, ReadTokenId(gguf, "tokenizer.ggml.fim_rep_token_id", -1, n));
  ASSIGN_OR_RETURN(ids.fim_sep, ReadTokenId(gguf, "tokenizer.ggml.fim_sep_token_id", -1, n));

  bool default_add_bos = spm;
  if (spm) {
    parts.algorithm = TokenizerParts::Algorithm::kSentencePieceScores;
  } else {
    ASSIGN_OR_RETURN(const std::string pre, gguf.GetStringOr("tokenizer.ggml.pre", ""));
    auto pre_tokenizer = LlamaCppPreTokenizerFor(pre);
    if (!pre_tokenizer.ok()) {
      return absl::UnimplementedError(
          StrCat(gguf.path(), ": tokenizer.ggml.pre: ", pre_tokenizer.status().message()));
    }
    default_add_bos = pre_tokenizer->add_bos;
    for (const std::string& regex : pre_tokenizer->regexes) {
      ASSIGN_OR_RETURN(std::unique_ptr<RegexSplitter> splitter, RegexSplitter::Create(regex));
      parts.pre_tokenizer.AddStep(PreTokenizer::RegexSplit{std::move(splitter)});
    }
    MergeTable merges;
    RETURN_IF_ERROR(ReadMerges(gguf, vocab, &merges));
    BpeOptions options;
    options.byte_level = true;
    options.ignore_merges = pre_tokenizer->ignore_merges;
    options.unk_id = -1;  // llama.cpp drops bytes that have no token
    parts.bpe = BpeModel(vocab, std::move(merges), options);
  }

  ASSIGN_OR_RETURN(parts.add_bos, gguf.GetBoolOr("tokenizer.ggml.add_bos_token", default_add_bos));
  ASSIGN_OR_RETURN(parts.add_eos, gguf.GetBoolOr("tokenizer.ggml.add_eos_token", false));
  if (parts.add_bos && parts.bos_id < 0) {
    return Invalid(gguf, "tokenizer.ggml.add_bos_token",
                   "is true but the vocabulary has no BOS token");
  }
  if (parts.add_eos && parts.eos_id < 0) {
    return Invalid(gguf, "tokenizer.ggml.add_eos_token",
                   "is true but the vocabulary has no EOS token");
  }
  // Only SentencePiece models act on add_space_prefix: a space before text,
  // and its removal when decoding.
  ASSIGN_OR_RETURN(const bool add_space_prefix,
                   gguf.GetBoolOr("tokenizer.ggml.add_space_prefix", spm));
  parts.spm_add_space_prefix = spm && add_space_prefix;
  parts.decode_strips_leading_space = spm && add_space_prefix;

  const EndOfGenerationResult eog = FindEndOfGeneration(vocab, ids);
  ApplyEndOfGeneration(eog, &vocab);
  parts.end_of_generation_ids = eog.eog_ids;

  std::vector<SpecialTokenRule> rules;
  parts.special.assign(n, 0);
  parts.pieces.resize(n);
  for (int32_t id = 0; id < n; ++id) {
    const uint8_t attr = vocab.attrs[id];
    if (attr & (kTokenControl | kTokenUnknown)) parts.special[id] = 1;
    if (attr & (kTokenControl | kTokenUserDefined | kTokenUnknown)) {
      SpecialTokenRule rule;
      rule.id = id;
      rule.text = vocab.texts[id];
      rule.special = (attr & (kTokenControl | kTokenUnknown)) != 0;
      rules.push_back(std::move(rule));
    }
    parts.pieces[id] = PieceForToken(vocab, id, spm);
  }
  parts.splitter =
      SpecialTokenSplitter(std::move(rules), SpecialTokenSplitter::Order::kLongestTokenFirst);
  return parts;
}

}  // namespace tokenfab
