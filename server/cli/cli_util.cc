#include "server/cli/cli_util.h"

#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/strings.h"

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

absl::StatusOr<std::vector<int32_t>> ParseIntList(const std::string& name,
                                                  const std::string& text) {
  std::vector<int32_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int32_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 1) {
      return absl::InvalidArgumentError(
          StrCat("--", name, " must be positive integers separated by commas, got '", text, "'"));
    }
    if (!out.empty() && v <= out.back()) {
      return absl::InvalidArgumentError(StrCat("--", name, " must ascend, got '", text, "'"));
    }
    out.push_back(v);
  }
  if (out.empty() || out.size() > 64) {
    return absl::InvalidArgumentError(StrCat("--", name, " needs 1 to 64 values"));
  }
  return out;
}

}  // namespace tokenfab
