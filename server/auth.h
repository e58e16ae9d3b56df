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
// Keys from a file are re-read while the process runs (Reload: SIGHUP, and a
// poll of the file, key_reloader.h), so a rotation needs no restart.
//
// A KeySet is a handle: copies share the keys and the counts, so a reload is
// seen at once by every service checking the secret and every channel
// sending it. Every member may be called from any thread.
#ifndef TOKENFAB_SERVER_AUTH_H_
#define TOKENFAB_SERVER_AUTH_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "server/reloaded_file.h"

namespace tokenfab {

// The two secrets, as errors name them.
inline constexpr std::string_view kApiKey = "API key";
inline constexpr std::string_view kClusterKey = "cluster key";

// What a presented "authorization" value got (KeySet::Check).
enum class KeyCheck { kAdmitted, kMissing, kInvalid };

// A secret's counts since the process started, for its metrics.
struct KeyStats {
  int32_t keys = 0;  // admitted now; 0: the set is open
  int64_t refused_missing = 0;
  int64_t refused_invalid = 0;
  int64_t reloads = 0;        // times a changed file's keys replaced the old ones
  int64_t reload_errors = 0;  // times a changed file was refused (the old keys stayed)
  bool file_refused = false;  // the file holds what was refused; older keys are in force
};

class KeySet {
 public:
  KeySet() = default;  // admits everyone

  // Keys from `text`: one a line; blank lines and lines starting with '#'
  // are skipped, and spaces around a key are dropped. A key is 1 to 1024
  // characters of visible ASCII. Errors name `source` and the line, never a key.
  static absl::StatusOr<KeySet> Parse(std::string_view text, std::string_view source);
  // The keys in `file` if it is given (and then Reload re-reads it), else
  // in the environment variable `env` if set, else none. `flag` names the
  // file's flag in errors.
  static absl::StatusOr<KeySet> Load(const std::string& file, std::string_view flag,
                                     const char* env);
  // A fresh random key (32 bytes, hex): `serve` guards its in-process
  // workers' loopback ports with one.
  static KeySet Random();

  // Open sets stay open and keyed ones keyed: a reload never empties a set.
  bool open() const { return state_ == nullptr; }
  // The key this process presents now; empty if the set is open.
  std::string first() const;
  // True if the set is open, or `authorization` is "Bearer <key>" (the
  // scheme in any case) for one of its keys, compared in a time that does
  // not depend on where a wrong key differs.
  bool Admits(std::string_view authorization) const;
  // Admits, counting refusals: an empty `authorization` is a missing key.
  KeyCheck Check(std::string_view authorization) const;

  // Re-reads the file the keys came from. True: it changed and its keys
  // now replace the old ones. False: no file, the keys in force, text
  // already refused, or (kSettled) a change not yet read twice. An error:
  // it changed but cannot be read or holds no valid key; the old keys stay,
  // and the same bad text is not reported again.
  absl::StatusOr<bool> Reload(ReloadWhen when = ReloadWhen::kNow) const;
  // Where the keys came from ("--api-key-file PATH", "$TOKENFAB_API_KEY"),
  // empty for an open or random set.
  std::string source() const;
  bool reloadable() const;
  KeyStats stats() const;

 private:
  struct State;
  static KeySet Of(std::vector<std::string> keys, std::string source);
  std::shared_ptr<State> state_;  // null: open
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

// A channel whose calls carry "authorization: Bearer <key>" with the first
// key `keys` holds when each call starts (no key when the set is open), as
// every client of a keyed service uses. `credentials`: the transport's
// (tls.h's ClientChannelCredentials); null is plain TCP.
std::shared_ptr<grpc::Channel> KeyedChannel(
    const std::string& target, const KeySet& keys, const grpc::ChannelArguments& args = {},
    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_AUTH_H_
