// LoadClient over OpenAI HTTP: a streamed POST /v1/completions per request on
// its own connection (Boost.Beast, blocking, on the driver's thread), parsed
// as Server-Sent Events as bytes arrive. A chunk's time is when the read that
// completed it returned.
#ifndef TOKENFAB_SERVER_LOADGEN_HTTP_CLIENT_H_
#define TOKENFAB_SERVER_LOADGEN_HTTP_CLIENT_H_

#include <memory>

#include "server/loadgen/load_client.h"

namespace tokenfab::loadgen {

std::unique_ptr<LoadClient> NewHttpLoadClient(const Target& target, const ClientOptions& options);

}  // namespace tokenfab::loadgen

#endif  // TOKENFAB_SERVER_LOADGEN_HTTP_CLIENT_H_
