// Who may call tokenfab. Two secrets, each a set of keys a caller presents
// as "authorization: Bearer <key>" (an HTTP header, or gRPC metadata):
//   API keys     the public faces: the OpenAI HTTP API's /v1/* and the gRPC
//                tokenfab.v1.Generation service (--api-key-file, else
//                $TOKENFAB_API_KEY);
//   cluster key  the internal ones: the router's WorkerControl and
//                RouterAdmin, every worker's Worker service, and the calls
//                between them (--cluster-key-file, else $TOKENFAB_CLUSTER_KEY).
// An empty set admits everyone, as before keys existed. /health, the gRPC
// health service and /metrics stay open: probes and Prometheus hold no key.
// Several keys in one file are all admitted and the first is the one sent,
// so a key is rotated by adding the new one everywhere, then removing the old.
//
// KeySet is immutable after Load; Admits may be called from any thread.
#ifndef TOKENFAB_SERVER_AUTH_H_
#define TOKENFAB_SERVER_AUTH_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace tokenfab {

// The two secrets, as errors name them.
inline constexpr std::string_view kApiKey = "API key";
inline constexpr std::string_view kClusterKey = "cluster key";

class KeySet {
 public:
  KeySet() = default;  // admits everyone

  // Keys from `text`: one a line; blank lines and lines starting with '#'
  // are skipped, and spaces around a key are dropped. A key is 1 to 1024
  // characters of visible ASCII. Errors name `source` and the line, never a key.
  static absl::StatusOr<KeySet> Parse(std::string_view text, std::string_view source);
  // The keys in `file` if it is given, else in the environment variable
  // `env` if set, else none. `flag` names the file's flag in errors.
  static absl::StatusOr<KeySet> Load(const std::string& file, std::string_view flag,
                                     const char* env);
  // A fresh random key (32 bytes, hex): `serve` guards its in-process
  // workers' loopback ports with one.
  static KeySet Random();

  bool open() const { return keys_.empty(); }
  // The key this process presents; empty if the set is open.
  const std::string& first() const;
  // True if the set is open, or `authorization` is "Bearer <key>" (the
  // scheme in any case) for one of its keys, compared in a time that does
  // not depend on where a wrong key differs.
  bool Admits(std::string_view authorization) const;

 private:
  std::vector<std::string> keys_;
};

// The gRPC face of a KeySet. Authorize returns UNAUTHENTICATED, saying
// whether the key was missing or wrong, unless `keys` admits the call's
// "authorization" metadata. `what` names the secret ("API key", "cluster key").
grpc::Status Authorize(const KeySet& keys, std::string_view what,
                       const grpc::CallbackServerContext& context);
// A streaming call refused before it starts (by Authorize, say):
//   return new RefusedCall<grpc::ServerWriteReactor<Reply>>(status);
template <typename Reactor>
class RefusedCall final : public Reactor {
 public:
  explicit RefusedCall(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

// A unary call's answer when Authorize refuses it, else null.
grpc::ServerUnaryReactor* RefuseUnary(const KeySet& keys, std::string_view what,
                                      grpc::CallbackServerContext* context);

// A channel whose calls carry "authorization: Bearer <key>" (plain when
// `key` is empty), as every client of a keyed service uses.
std::shared_ptr<grpc::Channel> KeyedChannel(const std::string& target, const std::string& key,
                                            const grpc::ChannelArguments& args = {});

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_AUTH_H_
