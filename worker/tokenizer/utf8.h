// UTF-8 helpers shared by the tokenizers and the detokenizer.
//
// Two replacement policies live here on purpose: llama.cpp's (every byte that
// does not start a well-formed sequence becomes one U+FFFD, so tokenization of
// invalid input matches llama.cpp) and the standard "maximal subpart" policy of
// Unicode / Rust's from_utf8_lossy (used for decoded output, so that streaming
// and whole-sequence decoding agree byte for byte). Pure functions; any thread.
#ifndef TOKENFAB_WORKER_TOKENIZER_UTF8_H_
#define TOKENFAB_WORKER_TOKENIZER_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tokenfab {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Length of the sequence a lead byte announces (1 for ASCII and for stray
// continuation bytes), as llama.cpp's unicode_len_utf8 computes it.
size_t Utf8LeadLength(uint8_t lead);

void AppendUtf8(uint32_t cp, std::string* out);

// Decodes one well-formed code point at `pos` (shortest form, no surrogates,
// at most U+10FFFF). Returns its length, or 0 if the bytes there are not a
// complete well-formed sequence.
size_t DecodeUtf8(std::string_view s, size_t pos, uint32_t* cp);

// Rewrites text the way llama.cpp's unicode_cpts_from_utf8 followed by
// unicode_cpt_to_utf8 does before its BPE pre-tokenizer: a byte that does not
// begin a sequence whose continuation bytes are present becomes U+FFFD and
// decoding resumes at the next byte; overlong forms come out in shortest form.
// Surrogates (ED A0..BF xx) are kept, as llama.cpp keeps them, so the result
// is valid UTF-8 apart from those (RegexSplitter accepts them); code points
// above U+10FFFF, on which llama.cpp throws, become U+FFFD.
std::string SanitizeUtf8LlamaStyle(std::string_view s);

// True if `s` is entirely well-formed UTF-8.
bool IsValidUtf8(std::string_view s);

// Converts bytes to valid UTF-8, each maximal ill-formed subpart becoming one
// U+FFFD (Unicode 15 §3.9, the policy of Rust's String::from_utf8_lossy).
// When `final` is false, an incomplete but so-far valid sequence at the end is
// left unconsumed; the return value is the number of bytes consumed.
size_t AppendUtf8Lossy(std::string_view bytes, bool final, std::string* out);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_UTF8_H_
