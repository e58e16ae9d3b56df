#include "worker/tokenizer/incremental_detokenizer.h"

#include "worker/tokenizer/utf8.h"

namespace tokenfab {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special,
                                               bool continues_text)
    : tokenizer_(tokenizer),
      skip_special_(skip_special),
      continues_text_(continues_text),
      may_strip_(tokenizer.decode_strips_leading_space() && !continues_text) {}

std::string IncrementalDetokenizer::Push(int32_t id) {
  if (id < 0 || id >= tokenizer_.vocab_size()) return "";
  const bool special = tokenizer_.IsSpecial(id);
  if (skip_special_ && special) return "";
  std::string_view piece = tokenizer_.PieceBytes(id);
  // The same rule as Tokenizer::Decode.
  if (may_strip_) {
    if (special) {
      may_strip_ = false;
    } else if (!piece.empty()) {
      if (piece[0] == ' ') piece.remove_prefix(1);
      may_strip_ = false;
    }
  }
  pending_.append(piece);
  std::string out;
  const size_t consumed = AppendUtf8Lossy(pending_, /*final=*/false, &out);
  pending_.erase(0, consumed);
  return out;
}

std::string IncrementalDetokenizer::Finish() {
  std::string out;
  AppendUtf8Lossy(pending_, /*final=*/true, &out);
  pending_.clear();
  may_strip_ = tokenizer_.decode_strips_leading_space() && !continues_text_;
  return out;
}

}  // namespace tokenfab
