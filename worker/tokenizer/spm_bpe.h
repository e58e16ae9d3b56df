// SentencePiece-style BPE as llama.cpp runs it for GGUF models with
// tokenizer.ggml.model = "llama" (Llama 2, Mistral v0.1): start from UTF-8
// characters, repeatedly merge the adjacent pair whose concatenation is the
// vocabulary token with the highest score (leftmost on ties), and emit
// characters that never formed a token as <0xXX> byte tokens. Mirrors
// llm_tokenizer_spm_session. Stateless; any thread.
#ifndef TOKENFAB_WORKER_TOKENIZER_SPM_BPE_H_
#define TOKENFAB_WORKER_TOKENIZER_SPM_BPE_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "worker/tokenizer/vocab.h"

namespace tokenfab {

// `text` is already whitespace-escaped (spaces as U+2581). Bytes with neither
// a <0xXX> token nor a one-byte token become `unk_id` (dropped if -1).
void EncodeSentencePieceBpe(const Vocab& vocab, std::string_view text, int32_t unk_id,
                            std::vector<int32_t>* out);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_SPM_BPE_H_
