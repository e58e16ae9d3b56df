// LoadClient over OpenAI HTTP: a streamed POST /v1/completions per request on
// its own connection (Boost.Beast, blocking, on the driver's thread), parsed
// as Server-Sent Events as bytes arrive. A chunk's time is when the read that
// completed it returned. Over TLS with a `tls` context: the connection and
// its handshake, like the TCP connect, come before the request's clock starts.
#ifndef TOKENFAB_SERVER_LOADGEN_HTTP_CLIENT_H_
#define TOKENFAB_SERVER_LOADGEN_HTTP_CLIENT_H_

#include <memory>

#include "boost/asio/ssl/context.hpp"
#include "server/loadgen/load_client.h"

namespace tokenfab::loadgen {

// `tls`: verify and speak TLS with this context; null for plain HTTP.
std::unique_ptr<LoadClient> NewHttpLoadClient(const Target& target, const ClientOptions& options,
                                              std::shared_ptr<boost::asio::ssl::context> tls);

}  // namespace tokenfab::loadgen

#endif  // TOKENFAB_SERVER_LOADGEN_HTTP_CLIENT_H_
