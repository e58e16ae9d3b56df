// tokenfab: one binary, one subcommand per process role or tool.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "server/cli/commands.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  // Errors travel as absl::Status; this is the last resort for what escapes
  // as an exception (out of memory), so it still ends in one line.
  try {
    return tokenfab::RunCli(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenfab: internal error: %s\n", e.what());
    return 1;
  }
}
