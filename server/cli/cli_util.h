// Shared pieces of the subcommands: one-line errors and flag parsing.
#ifndef TOKENFAB_SERVER_CLI_CLI_UTIL_H_
#define TOKENFAB_SERVER_CLI_CLI_UTIL_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/cli/flags.h"

namespace tokenfab {

inline constexpr int kExitError = 1;  // the command failed (bad model, bad input)
inline constexpr int kExitUsage = 2;  // bad command line

// Prints "tokenfab <command>: <message>" as one line on stderr; returns kExitError.
int ReportError(std::string_view command, const absl::Status& status);

// Parses `args` into `flags`; prints usage for --help. Returns -1 to go on,
// else the exit code to return.
int ParseFlagsOrExit(FlagSet& flags, std::string_view command, const std::vector<std::string>& args);

// A flag's comma-separated list of 1 to 64 ascending positive integers
// ("1,8,32"); InvalidArgument naming --name otherwise.
absl::StatusOr<std::vector<int32_t>> ParseIntList(const std::string& name, const std::string& text);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_CLI_CLI_UTIL_H_
