// Turns a stream of generated token ids into text one id at a time, never
// emitting half a UTF-8 character: bytes of an incomplete character wait for
// the tokens that complete them (an emoji is often split over 2-4 byte
// tokens). The concatenation of every Push() and the final Finish() equals
// Tokenizer::Decode of the whole sequence, including U+FFFD for ill-formed
// bytes and the leading-space rule of SentencePiece models.
//
// One detokenizer per sequence, used by one thread at a time; it borrows the
// Tokenizer, which must outlive it.
#ifndef TOKENFAB_WORKER_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
#define TOKENFAB_WORKER_TOKENIZER_INCREMENTAL_DETOKENIZER_H_

#include <cstdint>
#include <string>

#include "worker/tokenizer/tokenizer.h"

namespace tokenfab {

class IncrementalDetokenizer {
 public:
  // `continues_text`: the ids continue text already shown (a completion after
  // its prompt), so a SentencePiece model's leading space is real and kept.
  // The default reproduces Decode of the ids alone.
  explicit IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special = false,
                                  bool continues_text = false);

  // The text completed by this token (possibly empty).
  std::string Push(int32_t id);
  // Whatever is still pending, ill-formed or incomplete bytes as U+FFFD.
  // The detokenizer may be reused for a new sequence afterwards.
  std::string Finish();

  // Bytes held back waiting for the rest of a character.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer& tokenizer_;
  const bool skip_special_;
  const bool continues_text_;
  bool may_strip_;
  std::string pending_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
