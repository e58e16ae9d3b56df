// LoadClient over gRPC: tokenfab.v1.Generation/Generate with the generated
// stub, one blocking stream per request on the driver's thread, all over one
// channel. Requests set stop_at_eos = false so exactly max_tokens come back.
#ifndef TOKENFAB_SERVER_LOADGEN_GRPC_CLIENT_H_
#define TOKENFAB_SERVER_LOADGEN_GRPC_CLIENT_H_

#include <memory>
#include <string>

#include "grpcpp/security/credentials.h"
#include "server/loadgen/load_client.h"

namespace tokenfab::loadgen {

// `api_key`'s first key, if any, goes with every call, over a channel with
// `credentials` (insecure or TLS: tls.h).
std::unique_ptr<LoadClient> NewGrpcLoadClient(
    const Target& target, const KeySet& api_key,
    std::shared_ptr<grpc::ChannelCredentials> credentials);

}  // namespace tokenfab::loadgen

#endif  // TOKENFAB_SERVER_LOADGEN_GRPC_CLIENT_H_
