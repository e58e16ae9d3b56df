// The two ways to build TokenizerParts. Internal to worker/tokenizer; users
// call Tokenizer::FromGguf / Tokenizer::FromHfDirectory.
#ifndef TOKENFAB_WORKER_TOKENIZER_TOKENIZER_LOADERS_H_
#define TOKENFAB_WORKER_TOKENIZER_TOKENIZER_LOADERS_H_

#include <string>

#include "absl/status/statusor.h"
#include "worker/model/gguf_file.h"
#include "worker/tokenizer/tokenizer_parts.h"

namespace tokenfab {

// tokenizer.ggml.* metadata, validated; errors name the file and key.
absl::StatusOr<TokenizerParts> LoadGgufTokenizerParts(const GgufFile& gguf);

// tokenizer.json (+ tokenizer_config.json, generation_config.json) in `dir`.
absl::StatusOr<TokenizerParts> LoadHfTokenizerParts(const std::string& dir);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_TOKENIZER_LOADERS_H_
