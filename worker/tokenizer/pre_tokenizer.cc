#include "worker/tokenizer/pre_tokenizer.h"

#include "absl/status/status.h"
#include "common/strings.h"

namespace tokenfab {
namespace {

// llama.cpp's adapted forms: the case-insensitive contraction group is spelled
// out as character classes (its custom splitters lower-case only ASCII here).
constexpr std::string_view kLlama3Regex =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr std::string_view kQwen2Regex =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// llama.cpp's GPT-2 expression has no trailing "|\s+": its custom splitter
// falls back to \s+ itself, and text no alternative matches is kept as its
// own piece, which comes to the same words.
constexpr std::string_view kLlamaCppGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";

bool OneOf(std::string_view s, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names) {
    if (s == n) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<LlamaCppPreTokenizer> LlamaCppPreTokenizerFor(std::string_view pre) {
  // Names grouped as llama.cpp's llama_vocab::impl::load maps them onto
  // LLAMA_VOCAB_PRE_TYPE_* values that share these expressions.
  if (OneOf(pre, {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
                  "lfm2", "jina-v5-nano"})) {
    return LlamaCppPreTokenizer{{std::string(kLlama3Regex)},
                                /*ignore_merges=*/true,
                                /*add_bos=*/true};
  }
  if (OneOf(pre, {"dbrx", "smaug-bpe"})) {
    return LlamaCppPreTokenizer{{std::string(kLlama3Regex)}, /*ignore_merges=*/false};
  }
  if (OneOf(pre, {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan",
                  "solar-open"})) {
    return LlamaCppPreTokenizer{{std::string(kQwen2Regex)}, false};
  }
  if (OneOf(pre, {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b",
                  "mellum2"})) {
    return LlamaCppPreTokenizer{{"\\p{N}", std::string(kLlamaCppGpt2Regex)}, false};
  }
  if (OneOf(pre,
            {"",         "default",    "gpt-2",          "phi-2",       "jina-es", "jina-de",
             "gigachat", "jina-v2-es", "jina-v2-de",     "a.x-4.0",     "mellum",  "modern-bert",
             "exaone4",  "jina-v1-en", "jina-v2-code",   "roberta-bpe", "mpt",     "olmo",
             "jais",     "trillion",   "granite-docling"})) {
    return LlamaCppPreTokenizer{{std::string(kLlamaCppGpt2Regex)}, false};
  }
  return absl::NotFoundError(StrCat("pre-tokenizer type '", pre, "' is not supported"));
}

std::vector<std::string> PreTokenizer::Run(std::string_view text, bool first_section) const {
  std::vector<std::string> pieces;
  if (text.empty()) return pieces;
  pieces.emplace_back(text);
  std::vector<std::string_view> cut;
  for (const Step& step : steps_) {
    std::vector<std::string> next;
    next.reserve(pieces.size());
    if (const auto* split = std::get_if<RegexSplit>(&step)) {
      for (const std::string& p : pieces) {
        cut.clear();
        split->splitter->Split(p, split->behavior, split->invert, &cut);
        for (std::string_view c : cut) next.emplace_back(c);
      }
    } else if (const auto* byte_level = std::get_if<ByteLevel>(&step)) {
      for (std::string& p : pieces) {
        if (byte_level->add_prefix_space && (p.empty() || p[0] != ' ')) p.insert(p.begin(), ' ');
        if (byte_level->splitter == nullptr) {
          next.push_back(std::move(p));
          continue;
        }
        cut.clear();
        byte_level->splitter->Split(p, SplitBehavior::kIsolated, false, &cut);
        for (std::string_view c : cut) next.emplace_back(c);
      }
    } else if (const auto* meta = std::get_if<Metaspace>(&step)) {
      for (size_t i = 0; i < pieces.size(); ++i) {
        std::string s;
        s.reserve(pieces[i].size() + 8);
        for (char c : pieces[i]) {
          if (c == ' ') {
            s += meta->replacement;
          } else {
            s.push_back(c);
          }
        }
        const bool prepend =
            meta->prepend == Metaspace::Prepend::kAlways ||
            (meta->prepend == Metaspace::Prepend::kFirst && first_section && i == 0);
        if (prepend && s.compare(0, meta->replacement.size(), meta->replacement) != 0) {
          s.insert(0, meta->replacement);
        }
        if (!meta->split) {
          next.push_back(std::move(s));
          continue;
        }
        // Each replacement character starts a new word.
        size_t start = 0;
        for (size_t p = s.find(meta->replacement, 1); p != std::string::npos;
             p = s.find(meta->replacement, p + meta->replacement.size())) {
          if (p > start) next.push_back(s.substr(start, p - start));
          start = p;
        }
        if (start < s.size()) next.push_back(s.substr(start));
      }
    }
    pieces = std::move(next);
  }
  return pieces;
}

}  // namespace tokenfab
