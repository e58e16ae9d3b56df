// Random numbers that must not be guessed: transfer ids that admit a
// connection to a worker's KV port, a router's id, the seed of a request
// that asked for none. They come straight from the kernel's random source
// (getrandom), never from a seeded generator whose state a few outputs
// would give away. Thread-safe.
#ifndef TOKENFAB_COMMON_RANDOM_H_
#define TOKENFAB_COMMON_RANDOM_H_

#include <cstdint>

namespace tokenfab {

uint64_t RandomU64();

}  // namespace tokenfab

#endif  // TOKENFAB_COMMON_RANDOM_H_
