#include "server/cli/commands.h"

#include <cstdio>
#include <string_view>

namespace tokenfab {
namespace {

struct Command {
  std::string_view name;
  std::string_view summary;
  int (*run)(const std::vector<std::string>&);
};

constexpr Command kCommands[] = {
    {"generate", "generate a completion for one prompt", RunGenerate},
    {"tokenize", "print the token ids of a text", RunTokenize},
    {"bench", "load generator: throughput, TTFT and ITL of a running server", RunBench},
    {"serve", "serve a model over gRPC and the OpenAI HTTP API", RunServe},
    {"router", "route requests across attached workers (disaggregated prefill/decode)", RunRouter},
    {"worker", "run a worker that attaches to a router", RunWorker},
    {"complete", "stream a completion from a running server (gRPC client)", RunComplete},
    {"health", "check a running router, worker or serve: exit 0 when it is serving", RunHealth},
    {"drain", "drain a running worker: no new requests, wait for the ones in flight", RunDrain},
    {"profile", "measure a hardware profile (prefill/decode time and watts) of one worker",
     RunProfile},
    {"plan", "capacity planning: workers, kW, tokens/J and cost for a load, from a profile",
     RunPlan},
};

void PrintUsage(std::FILE* out) {
  std::fprintf(out, "usage: tokenfab <command> [flags]\n\ncommands:\n");
  for (const Command& c : kCommands) {
    std::fprintf(out, "  %-10.*s %.*s\n", static_cast<int>(c.name.size()), c.name.data(),
                 static_cast<int>(c.summary.size()), c.summary.data());
  }
  std::fprintf(out, "\n`tokenfab <command> --help` lists a command's flags.\n");
}

}  // namespace

int RunCli(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    PrintUsage(args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  for (const Command& c : kCommands) {
    if (args[0] == c.name) return c.run(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  std::fprintf(stderr, "tokenfab: unknown command '%s' (see tokenfab --help)\n", args[0].c_str());
  return 2;
}

}  // namespace tokenfab
