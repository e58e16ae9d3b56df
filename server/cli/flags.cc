#include "server/cli/flags.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "common/strings.h"

namespace tokenfab {

FlagSet::FlagSet(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

void FlagSet::AddString(std::string name, std::string* target, std::string help, bool required) {
  flags_.push_back({name, std::move(help), "TEXT", required, false, [target](const std::string& v) {
                      *target = std::string(v);
                      return absl::OkStatus();
                    }});
}

void FlagSet::AddInt(std::string name, int32_t* target, std::string help) {
  flags_.push_back({name, std::move(help), "N", false, false, [target, name](const std::string& v) {
                      if (!absl::SimpleAtoi(v, target)) {
                        return absl::InvalidArgumentError(
                            StrCat("--", name, " expects an integer, got '", v, "'"));
                      }
                      return absl::OkStatus();
                    }});
}

void FlagSet::AddFloat(std::string name, float* target, std::string help) {
  flags_.push_back({name, std::move(help), "X", false, false, [target, name](const std::string& v) {
                      if (!absl::SimpleAtof(v, target) || !std::isfinite(*target)) {
                        return absl::InvalidArgumentError(
                            StrCat("--", name, " expects a number, got '", v, "'"));
                      }
                      return absl::OkStatus();
                    }});
}

void FlagSet::AddBool(std::string name, bool* target, std::string help) {
  flags_.push_back({name, std::move(help), "", false, false, [target, name](const std::string& v) {
                      if (!absl::SimpleAtob(v, target)) {
                        return absl::InvalidArgumentError(
                            StrCat("--", name, " expects true or false, got '", v, "'"));
                      }
                      return absl::OkStatus();
                    }});
}

void FlagSet::AddOptionalUint64(std::string name, std::optional<uint64_t>* target,
                                std::string help) {
  flags_.push_back({name, std::move(help), "N", false, false, [target, name](const std::string& v) {
                      uint64_t x;
                      if (!absl::SimpleAtoi(v, &x)) {
                        return absl::InvalidArgumentError(StrCat(
                            "--", name, " expects a non-negative integer, got '", v, "'"));
                      }
                      *target = x;
                      return absl::OkStatus();
                    }});
}

FlagSet::Flag* FlagSet::Find(std::string_view name) {
  for (Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

bool FlagSet::WasGiven(std::string_view name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return f.seen;
  }
  return false;
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      return absl::OkStatus();
    }
    if (arg.size() < 3 || arg.substr(0, 2) != "--") {
      return absl::InvalidArgumentError(
          StrCat("unexpected argument '", arg, "' (see tokenfab ", command_, " --help)"));
    }
    arg.remove_prefix(2);
    std::string_view name = arg;
    std::optional<std::string_view> value;
    if (size_t eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    Flag* flag = Find(name);
    if (!flag) {
      return absl::InvalidArgumentError(StrCat("unknown flag --", name, " for tokenfab ",
                                                     command_, " (see --help)"));
    }
    if (!value) {
      if (flag->value_hint.empty()) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(StrCat("--", name, " needs a value"));
      }
    }
    if (absl::Status s = flag->set(std::string(*value)); !s.ok()) return s;
    flag->seen = true;
  }
  for (const Flag& f : flags_) {
    if (f.required && !f.seen) {
      return absl::InvalidArgumentError(StrCat("tokenfab ", command_, ": --", f.name,
                                                     " is required"));
    }
  }
  return absl::OkStatus();
}

std::string FlagSet::Usage() const {
  std::string out = StrCat("usage: tokenfab ", command_, " [flags]\n", summary_, "\n\nflags:\n");
  for (const Flag& f : flags_) {
    std::string lhs = StrCat("  --", f.name, f.value_hint.empty() ? "" : " ", f.value_hint);
    if (lhs.size() < 26) lhs.resize(26, ' ');
    StrAppend(&out, lhs, " ", f.help, f.required ? " (required)" : "", "\n");
  }
  return out;
}

}  // namespace tokenfab
