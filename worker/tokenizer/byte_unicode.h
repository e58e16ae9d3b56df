// GPT-2's reversible byte <-> Unicode mapping used by byte-level BPE: every
// byte value gets a printable code point so vocabularies can be stored as text
// ("Ġ" is the space byte). Tables are built once; any thread may read them.
#ifndef TOKENFAB_WORKER_TOKENIZER_BYTE_UNICODE_H_
#define TOKENFAB_WORKER_TOKENIZER_BYTE_UNICODE_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace tokenfab {

// The code point standing for `byte`.
uint32_t ByteToCodepoint(uint8_t byte);
// The byte a code point stands for, or -1 if it stands for none.
int CodepointToByte(uint32_t cp);

// Maps raw bytes to their byte-level text (each byte becomes one code point).
std::string BytesToByteLevelText(std::string_view bytes);
// Maps byte-level text back to raw bytes. Code points outside the mapping are
// kept as their own UTF-8 (as Hugging Face's ByteLevel decoder does).
std::string ByteLevelTextToBytes(std::string_view text);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_BYTE_UNICODE_H_
