#include "server/cli/auth_flags.h"

namespace tokenfab {

void AddApiKeyFlag(FlagSet& flags, std::string* file, bool serving) {
  flags.AddString("api-key-file", file,
                  serving ? "file of API keys, one a line, that gRPC and HTTP /v1/* require as "
                            "'authorization: Bearer KEY' (else $TOKENFAB_API_KEY; else none)"
                          : "file whose first key is sent as the API key (else $TOKENFAB_API_KEY)");
}

void AddClusterKeyFlag(FlagSet& flags, std::string* file, bool serving) {
  flags.AddString("cluster-key-file", file,
                  serving ? "file of cluster keys, one a line, that the internal gRPC services "
                            "require; the first is sent to the others (else "
                            "$TOKENFAB_CLUSTER_KEY; else none)"
                          : "file whose first key is sent as the cluster key (else "
                            "$TOKENFAB_CLUSTER_KEY)");
}

absl::StatusOr<KeySet> LoadApiKeys(const std::string& file) {
  return KeySet::Load(file, "api-key-file", "TOKENFAB_API_KEY");
}

absl::StatusOr<KeySet> LoadClusterKey(const std::string& file) {
  return KeySet::Load(file, "cluster-key-file", "TOKENFAB_CLUSTER_KEY");
}

void AddTlsServerFlags(FlagSet& flags, TlsFiles* files) {
  flags.AddString("tls-cert-file", &files->cert_file,
                  "PEM certificate chain (the server's first): gRPC and HTTP speak TLS only "
                  "(metrics stay plain); re-read when it changes");
  flags.AddString("tls-key-file", &files->key_file,
                  "PEM private key of --tls-cert-file (both or neither)");
}

absl::Status LoadTls(const TlsFiles& files, TlsIdentity* tls) {
  absl::StatusOr<TlsIdentity> loaded = TlsIdentity::Load(files.cert_file, files.key_file);
  if (!loaded.ok()) return loaded.status();
  *tls = *std::move(loaded);
  return absl::OkStatus();
}

void AddTlsClientFlags(FlagSet& flags, TlsClientFlags* out) {
  flags.AddBool("tls", &out->tls, "connect over TLS, trusting the system's CA certificates");
  flags.AddString("tls-ca-file", &out->ca_file,
                  "connect over TLS, trusting the PEM CA certificates in this file");
}

}  // namespace tokenfab
