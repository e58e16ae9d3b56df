#include "server/cli/cli_util.h"

#include <cstdio>

namespace tokenfab {

int ReportError(std::string_view command, const absl::Status& status) {
  std::string msg(status.message());
  for (char& c : msg) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::fprintf(stderr, "tokenfab %.*s: %s\n", static_cast<int>(command.size()), command.data(),
               msg.c_str());
  return kExitError;
}

int ParseFlagsOrExit(FlagSet& flags, std::string_view command,
                     const std::vector<std::string>& args) {
  if (absl::Status s = flags.Parse(args); !s.ok()) {
    ReportError(command, s);
    return kExitUsage;
  }
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  return -1;
}

}  // namespace tokenfab
