// Runs a program to completion and captures its exit code, stdout and stderr;
// for black-box tests of the `tokenfab` binary.
#ifndef TOKENFAB_TESTS_SUPPORT_SUBPROCESS_H_
#define TOKENFAB_TESTS_SUPPORT_SUBPROCESS_H_

#include <string>
#include <vector>

namespace tokenfab::testing {

struct ProcessResult {
  int exit_code = -1;  // -1 if it did not exit normally (signal, timeout)
  std::string out;
  std::string err;
};

// argv[0] is the program path. Kills the program after `timeout_seconds`.
ProcessResult RunProcess(const std::vector<std::string>& argv, int timeout_seconds = 300);

}  // namespace tokenfab::testing

#endif  // TOKENFAB_TESTS_SUPPORT_SUBPROCESS_H_
