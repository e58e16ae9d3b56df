// TLS for the public faces, gRPC and the OpenAI HTTP API, and for the
// clients that call them.
//
// A TlsIdentity is the certificate chain and private key a server presents,
// from PEM files that are re-read while the process runs (KeyReloader), as
// key files are: a Secret that cert-manager renews is rewritten in place.
// The HTTP face takes each new connection's OpenSSL context from it, so a
// renewed certificate serves new connections and open ones keep theirs.
// gRPC cannot swap a server's credentials and its own file watcher serves
// nothing while the files it reads are bad, so it never reads the operator's
// files: each pair that passed the checks is published into a private
// directory (0700, under $TMPDIR, removed with the last handle), swapped in
// with one rename of a symlink, and gRPC's watcher reads that every 2 s.
//
// Like KeySet, a TlsIdentity is a shared handle: copies see one reload.
// Thread-safe.
#ifndef TOKENFAB_SERVER_TLS_H_
#define TOKENFAB_SERVER_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "boost/asio/ssl/context.hpp"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "server/reloaded_file.h"

namespace tokenfab {

class TlsIdentity {
 public:
  TlsIdentity() = default;  // none: the faces speak plain TCP

  // Reads both files and checks them with OpenSSL: PEM certificates (the
  // server's first, then its chain) and the PEM private key of the first.
  // InvalidArgument naming the file and OpenSSL's reason.
  static absl::StatusOr<TlsIdentity> Load(const std::string& cert_file,
                                          const std::string& key_file);

  bool enabled() const { return state_ != nullptr; }
  // The context for a new HTTP connection; null when not enabled.
  std::shared_ptr<boost::asio::ssl::context> context() const;
  // Server credentials for a gRPC port: TLS from the files when enabled,
  // else insecure.
  std::shared_ptr<grpc::ServerCredentials> GrpcCredentials() const;

  // Re-reads both files. True: they changed, and new HTTP connections get
  // the new pair. False: not enabled, unchanged, already refused, or
  // (kSettled) a change not yet read twice. An error: they changed but do
  // not make a valid pair (a renewal caught between its two files is taken
  // at the next read); the pair in force stays.
  absl::StatusOr<bool> Reload(ReloadWhen when = ReloadWhen::kNow) const;
  // "--tls-cert-file PATH"; empty when not enabled.
  std::string source() const;
  // The certificate in force: "subject CN=..., valid until Mar  7 12:00:00 2027 GMT".
  std::string Describe() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// A client's OpenSSL context for HTTPS: verifies the server's certificate
// against the PEM certificates in `ca_file`, or the system's roots when it
// is empty. InvalidArgument if the file holds none.
absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> ClientSslContext(
    const std::string& ca_file);

// A client's channel credentials: insecure without `tls`; with it, TLS
// trusting the PEM certificates in `ca_file`, or the system's roots when
// `ca_file` is empty. InvalidArgument if the file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientChannelCredentials(
    bool tls, const std::string& ca_file);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_TLS_H_
