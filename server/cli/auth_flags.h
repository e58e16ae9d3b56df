// The secrets' flags (auth.h, tls.h), shared by the commands that serve or
// call: --api-key-file (else $TOKENFAB_API_KEY), --cluster-key-file (else
// $TOKENFAB_CLUSTER_KEY), and TLS's certificate, key and CA files. A key
// never comes as a flag's value: command lines are visible to every local
// user (ps, /proc/PID/cmdline).
#ifndef TOKENFAB_SERVER_CLI_AUTH_FLAGS_H_
#define TOKENFAB_SERVER_CLI_AUTH_FLAGS_H_

#include <string>

#include "absl/status/statusor.h"
#include "server/auth.h"
#include "server/cli/flags.h"
#include "server/tls.h"

namespace tokenfab {

// `serving`: the command admits these keys (else it sends the first).
void AddApiKeyFlag(FlagSet& flags, std::string* file, bool serving);
void AddClusterKeyFlag(FlagSet& flags, std::string* file, bool serving);
absl::StatusOr<KeySet> LoadApiKeys(const std::string& file);
absl::StatusOr<KeySet> LoadClusterKey(const std::string& file);

// TLS on the public faces (tls.h): --tls-cert-file and --tls-key-file.
struct TlsFiles {
  std::string cert_file, key_file;
};
void AddTlsServerFlags(FlagSet& flags, TlsFiles* files);
absl::Status LoadTls(const TlsFiles& files, TlsIdentity* tls);

// A client's side: --tls (the system's roots) or --tls-ca-file (those).
struct TlsClientFlags {
  bool tls = false;
  std::string ca_file;
  bool enabled() const { return tls || !ca_file.empty(); }
};
void AddTlsClientFlags(FlagSet& flags, TlsClientFlags* flags_out);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_CLI_AUTH_FLAGS_H_
