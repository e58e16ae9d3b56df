// Which token ids end generation, decided as llama.cpp's vocabulary loader
// decides it: the ids the metadata names (eos, eot, eom, FIM pad/repo/file
// separator) plus every token whose text is one of the known end-of-turn
// markers (<|im_end|>, <|eot_id|>, <|eom_id|>, <|endoftext|>, <|end|>, ...).
// llama.cpp also promotes those tokens to control type, which changes how they
// are split out of text and skipped in decoding; the caller applies that.
// Pure function; any thread.
#ifndef TOKENFAB_WORKER_TOKENIZER_END_OF_GENERATION_H_
#define TOKENFAB_WORKER_TOKENIZER_END_OF_GENERATION_H_

#include <cstdint>
#include <vector>

#include "worker/tokenizer/vocab.h"

namespace tokenfab {

// Ids from the metadata; -1 where absent (then found by text, as llama.cpp does).
struct SpecialIds {
  int32_t eos = -1;
  int32_t eot = -1;
  int32_t eom = -1;
  int32_t fim_pre = -1;
  int32_t fim_suf = -1;
  int32_t fim_mid = -1;
  int32_t fim_pad = -1;
  int32_t fim_rep = -1;
  int32_t fim_sep = -1;
};

struct EndOfGenerationResult {
  std::vector<int32_t> eog_ids;            // sorted, unique
  std::vector<int32_t> make_control;       // tokens llama.cpp turns into control tokens
  std::vector<int32_t> make_user_defined;  // gpt-oss channel markers
  std::vector<int32_t> make_normal;        // "</s>" and "<|end|>" demoted by the workarounds
};

EndOfGenerationResult FindEndOfGeneration(const Vocab& vocab, SpecialIds ids);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_END_OF_GENERATION_H_
