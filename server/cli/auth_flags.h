// The secrets' flags (auth.h), shared by the commands that serve or call:
// --api-key-file (else $TOKENFAB_API_KEY) and --cluster-key-file (else
// $TOKENFAB_CLUSTER_KEY). A key never comes as a flag's value: command lines
// are visible to every local user (ps, /proc/PID/cmdline).
#ifndef TOKENFAB_SERVER_CLI_AUTH_FLAGS_H_
#define TOKENFAB_SERVER_CLI_AUTH_FLAGS_H_

#include <string>

#include "absl/status/statusor.h"
#include "server/auth.h"
#include "server/cli/flags.h"

namespace tokenfab {

// `serving`: the command admits these keys (else it sends the first).
void AddApiKeyFlag(FlagSet& flags, std::string* file, bool serving);
void AddClusterKeyFlag(FlagSet& flags, std::string* file, bool serving);
absl::StatusOr<KeySet> LoadApiKeys(const std::string& file);
absl::StatusOr<KeySet> LoadClusterKey(const std::string& file);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_CLI_AUTH_FLAGS_H_
