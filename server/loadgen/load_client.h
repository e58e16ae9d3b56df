// The seam between the load driver and a protocol: a LoadClient sends one
// generation request and blocks until its stream ends, timing every chunk.
// Implementations: gRPC (tokenfab.v1.Generation) and OpenAI HTTP
// (/v1/completions with SSE); tests use a fake.
//
// Send() is called from many driver threads at once; implementations are
// thread-safe.
#ifndef TOKENFAB_SERVER_LOADGEN_LOAD_CLIENT_H_
#define TOKENFAB_SERVER_LOADGEN_LOAD_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/auth.h"
#include "server/loadgen/stats.h"

namespace tokenfab::loadgen {

using Clock = std::chrono::steady_clock;

struct LoadRequest {
  std::string prompt;
  int32_t max_tokens = 0;  // generate exactly this many: end-of-sequence is ignored
  std::string model_id;    // empty: the server's default
};

class LoadClient {
 public:
  virtual ~LoadClient() = default;
  // Sends `request` and returns its record, times in seconds since `origin`.
  // Failures (connection refused, HTTP or gRPC error, malformed stream) are
  // a record with ok = false and the error, never an exception.
  virtual RequestRecord Send(const LoadRequest& request, Clock::time_point origin) = 0;
  // The id of the model the server serves (for requests and the report).
  virtual absl::StatusOr<std::string> ServedModelId() = 0;
};

enum class Protocol { kGrpc, kHttp };

struct Target {
  Protocol protocol = Protocol::kHttp;
  std::string host;
  uint16_t port = 0;
  bool tls = false;  // https:// or grpcs://
};

// "grpc://HOST:PORT" or "http://HOST:PORT", or over TLS "grpcs://" and
// "https://" (a trailing '/' is allowed; HOST may be a bracketed IPv6
// literal). InvalidArgument otherwise.
absl::StatusOr<Target> ParseTarget(const std::string& url);

// Extra fields merged into every HTTP request body (a JSON object, e.g.
// {"logit_bias": {"2": -100}}); ignored over gRPC.
struct ClientOptions {
  std::string extra_body_json;
  KeySet api_key;  // its first key is sent as "authorization: Bearer KEY" (auth.h)
  // With a TLS target: the PEM CA certificates to trust (else the system's).
  std::string tls_ca_file;
};

absl::StatusOr<std::unique_ptr<LoadClient>> CreateLoadClient(const Target& target,
                                                             const ClientOptions& options);

// Seconds from `origin` to now.
inline double SecondsSince(Clock::time_point origin) {
  return std::chrono::duration<double>(Clock::now() - origin).count();
}

}  // namespace tokenfab::loadgen

#endif  // TOKENFAB_SERVER_LOADGEN_LOAD_CLIENT_H_
