// Everything a loader (GGUF or tokenizer.json) decides about a tokenizer, as
// one plain value handed to Tokenizer. Internal to worker/tokenizer.
#ifndef TOKENFAB_WORKER_TOKENIZER_TOKENIZER_PARTS_H_
#define TOKENFAB_WORKER_TOKENIZER_TOKENIZER_PARTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "worker/tokenizer/bpe_model.h"
#include "worker/tokenizer/normalizer.h"
#include "worker/tokenizer/pre_tokenizer.h"
#include "worker/tokenizer/special_token_splitter.h"
#include "worker/tokenizer/vocab.h"

namespace tokenfab {

struct TokenizerParts {
  enum class Algorithm {
    kBpe,                 // rank merges (byte or character level), see BpeModel
    kSentencePieceScores  // llama.cpp's score-driven SPM merges
  };

  Vocab vocab;
  Algorithm algorithm = Algorithm::kBpe;
  BpeModel bpe;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  SpecialTokenSplitter splitter;

  // GGUF SentencePiece: a space before text that starts the input or follows
  // a special token (llama.cpp's add_space_prefix), then spaces -> U+2581.
  bool spm_add_space_prefix = false;

  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  bool add_bos = false;
  bool add_eos = false;

  // Decoding: the bytes of each token, whether a token is "special" (skipped
  // by skip_special), and whether one leading space is removed from the
  // first decoded token (undoing a space the encoder added).
  std::vector<std::string> pieces;
  std::vector<uint8_t> special;
  bool decode_strips_leading_space = false;

  std::vector<int32_t> end_of_generation_ids;  // sorted, unique
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_TOKENIZER_PARTS_H_
