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

}  // namespace tokenfab
