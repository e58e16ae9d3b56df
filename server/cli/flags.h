// Per-subcommand command-line flags. Each subcommand declares its flags into
// its own options struct, so a flag of `generate` given to `tokenize` is an
// error rather than silently ignored (one global flag namespace would accept it).
// Accepts `--name=value` and `--name value`; booleans as bare `--name` or
// `--name=true|false` (a bare boolean never takes the next argument).
#ifndef TOKENFAB_SERVER_CLI_FLAGS_H_
#define TOKENFAB_SERVER_CLI_FLAGS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace tokenfab {

class FlagSet {
 public:
  FlagSet(std::string command, std::string summary);

  void AddString(std::string name, std::string* target, std::string help, bool required = false);
  void AddInt(std::string name, int32_t* target, std::string help);
  void AddFloat(std::string name, float* target, std::string help);
  void AddBool(std::string name, bool* target, std::string help);
  void AddOptionalUint64(std::string name, std::optional<uint64_t>* target, std::string help);

  // Parses the arguments that follow the subcommand name. `--help` sets
  // help_requested() and stops. Errors are one line naming the flag.
  absl::Status Parse(const std::vector<std::string>& args);
  bool help_requested() const { return help_requested_; }
  // True if the arguments named the flag (whatever its value).
  bool WasGiven(std::string_view name) const;
  std::string Usage() const;

 private:
  struct Flag {
    std::string name;
    std::string help;
    std::string value_hint;  // empty for booleans
    bool required = false;
    bool seen = false;
    std::function<absl::Status(const std::string&)> set;
  };
  Flag* Find(std::string_view name);

  std::string command_;
  std::string summary_;
  std::vector<Flag> flags_;
  bool help_requested_ = false;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_CLI_FLAGS_H_
