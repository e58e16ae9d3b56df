#include "worker/tokenizer/tokenizer.h"

#include <algorithm>

#include "common/status_macros.h"
#include "worker/tokenizer/spm_bpe.h"
#include "worker/tokenizer/tokenizer_loaders.h"
#include "worker/tokenizer/utf8.h"

namespace tokenfab {
namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581

std::string EscapeSpaces(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  for (char c : text) {
    if (c == ' ') {
      out += kSpmSpace;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufFile& gguf) {
  ASSIGN_OR_RETURN(TokenizerParts parts, LoadGgufTokenizerParts(gguf));
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(parts)));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromHfDirectory(const std::string& dir) {
  ASSIGN_OR_RETURN(TokenizerParts parts, LoadHfTokenizerParts(dir));
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(parts)));
}

void Tokenizer::EncodeText(std::string_view text, bool starts_input, bool after_special,
                           std::vector<int32_t>* out) const {
  const TokenizerParts& p = parts_;
  if (p.algorithm == TokenizerParts::Algorithm::kSentencePieceScores) {
    // llama.cpp works on the raw bytes here: ill-formed UTF-8 falls back to
    // byte tokens instead of being replaced.
    std::string escaped;
    if (p.spm_add_space_prefix && after_special) escaped = std::string(kSpmSpace);
    escaped += EscapeSpaces(text);
    EncodeSentencePieceBpe(p.vocab, escaped, p.unk_id, out);
    return;
  }
  // Regexes need valid UTF-8; llama.cpp replaces bad bytes with U+FFFD the
  // same way before splitting.
  std::string sanitized;
  if (!IsValidUtf8(text)) {
    sanitized = SanitizeUtf8LlamaStyle(text);
    text = sanitized;
  }
  std::string normalized;
  if (!p.normalizer.empty()) {
    normalized = p.normalizer.Apply(text);
    text = normalized;
  }
  if (p.pre_tokenizer.empty()) {
    p.bpe.EncodeWord(p.vocab, text, out);
    return;
  }
  for (const std::string& word : p.pre_tokenizer.Run(text, starts_input)) {
    p.bpe.EncodeWord(p.vocab, word, out);
  }
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  const TokenizerParts& p = parts_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_bos && p.add_bos && p.bos_id >= 0) out.push_back(p.bos_id);
  bool after_special = true;  // the start of the input counts as a boundary
  for (const TextFragment& f : p.splitter.Split(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
      continue;
    }
    EncodeText(f.text, f.offset == 0, after_special, &out);
    after_special = false;
  }
  if (add_bos && p.add_eos && p.eos_id >= 0) out.push_back(p.eos_id);
  return out;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  bool may_strip = parts_.decode_strips_leading_space;
  for (int32_t id : ids) {
    if (!parts_.vocab.Contains(id)) continue;
    const bool special = parts_.special[id] != 0;
    if (skip_special && special) continue;
    std::string_view piece = parts_.pieces[id];
    if (may_strip) {
      // Only the space the encoder put in front of the text is removed: if a
      // special token is rendered first, nothing is.
      if (special) {
        may_strip = false;
      } else if (!piece.empty()) {
        if (piece[0] == ' ') piece.remove_prefix(1);
        may_strip = false;
      }
    }
    bytes.append(piece);
  }
  std::string out;
  out.reserve(bytes.size());
  AppendUtf8Lossy(bytes, /*final=*/true, &out);
  return out;
}

std::string Tokenizer::TokenPiece(int32_t id) const { return std::string(PieceBytes(id)); }

std::string_view Tokenizer::PieceBytes(int32_t id) const {
  return parts_.vocab.Contains(id) ? std::string_view(parts_.pieces[id]) : std::string_view();
}

std::string_view Tokenizer::TokenText(int32_t id) const {
  return parts_.vocab.Contains(id) ? std::string_view(parts_.vocab.texts[id]) : std::string_view();
}

int32_t Tokenizer::TokenId(std::string_view text) const {
  for (const SpecialTokenRule& r : parts_.splitter.rules()) {
    if (r.text == text) return r.id;
  }
  return parts_.vocab.Find(text);
}

bool Tokenizer::IsEndOfGeneration(int32_t id) const {
  return std::binary_search(parts_.end_of_generation_ids.begin(),
                            parts_.end_of_generation_ids.end(), id);
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return parts_.vocab.Contains(id) && parts_.special[id] != 0;
}

std::string Tokenizer::bos_text() const { return std::string(TokenText(parts_.bos_id)); }
std::string Tokenizer::eos_text() const { return std::string(TokenText(parts_.eos_id)); }

}  // namespace tokenfab
