// The `tokenfab` subcommands. Each returns the process exit code and prints
// errors as one line on stderr.
#ifndef TOKENFAB_SERVER_CLI_COMMANDS_H_
#define TOKENFAB_SERVER_CLI_COMMANDS_H_

#include <string>
#include <vector>

namespace tokenfab {

// Dispatches on args[0] (the subcommand).
int RunCli(const std::vector<std::string>& args);

int RunGenerate(const std::vector<std::string>& args);
int RunTokenize(const std::vector<std::string>& args);
int RunBench(const std::vector<std::string>& args);
int RunServe(const std::vector<std::string>& args);
int RunComplete(const std::vector<std::string>& args);
int RunHealth(const std::vector<std::string>& args);
int RunDrain(const std::vector<std::string>& args);
int RunRouter(const std::vector<std::string>& args);
int RunWorker(const std::vector<std::string>& args);
int RunProfile(const std::vector<std::string>& args);
int RunPlan(const std::vector<std::string>& args);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_CLI_COMMANDS_H_
