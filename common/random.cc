#include "common/random.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace tokenfab {

uint64_t RandomU64() {
  uint64_t v = 0;
  // Reads of up to 256 bytes return whole once the pool is initialised
  // (which it is long before a server starts); only a signal interrupts.
  while (true) {
    const ssize_t n = ::getrandom(&v, sizeof v, 0);
    if (n == static_cast<ssize_t>(sizeof v)) return v;
    if (n < 0 && errno == EINTR) continue;
    // getrandom exists since Linux 3.17; without it there is no safe
    // fallback for ids that guard a port.
    std::perror("tokenfab: getrandom");
    std::abort();
  }
}

}  // namespace tokenfab
