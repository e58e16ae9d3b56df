// tokenfab: one binary, one subcommand per process role or tool.
#include <cstdio>
#include <string>
#include <vector>

#include "server/cli/commands.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return tokenfab::RunCli(args);
}
