// Parses the pipeline sections of a tokenizer.json (normalizer,
// pre_tokenizer, decoder, post_processor) into tokenfab's objects. Components
// tokenfab cannot reproduce exactly are refused with Unimplemented rather than
// approximated. Internal to worker/tokenizer.
#ifndef TOKENFAB_WORKER_TOKENIZER_HF_PIPELINE_JSON_H_
#define TOKENFAB_WORKER_TOKENIZER_HF_PIPELINE_JSON_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/tokenizer/hf_json.h"
#include "worker/tokenizer/normalizer.h"
#include "worker/tokenizer/pre_tokenizer.h"

namespace tokenfab {

// `where` prefixes error messages (the file path).
absl::StatusOr<Normalizer> ParseHfNormalizer(const hf_json::Json& j, const std::string& where);

struct HfPreTokenizer {
  PreTokenizer pre_tokenizer;
  bool byte_level = false;            // contains a ByteLevel step
  std::string metaspace_replacement;  // from a Metaspace step, if any
};
absl::StatusOr<HfPreTokenizer> ParseHfPreTokenizer(const hf_json::Json& j,
                                                   const std::string& where);

struct HfDecoder {
  bool byte_level = false;
  std::string replacement;  // text that decodes to a space ("" if none named)
  bool strip_leading_space = false;
};
absl::StatusOr<HfDecoder> ParseHfDecoder(const hf_json::Json& j, const std::string& where);

// Special tokens the post-processor puts before and after a single sequence.
struct HfPostProcessor {
  std::vector<std::string> leading;
  std::vector<std::string> trailing;
};
absl::StatusOr<HfPostProcessor> ParseHfPostProcessor(const hf_json::Json& j,
                                                     const std::string& where);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_HF_PIPELINE_JSON_H_
