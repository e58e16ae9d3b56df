// Finds stop strings in generated text as it streams. Text that could still
// be the start of a stop string is held back, so no part of a stop string is
// ever emitted, and the output ends right before the first stop string.
#ifndef TOKENFAB_SERVER_STOP_MATCHER_H_
#define TOKENFAB_SERVER_STOP_MATCHER_H_

#include <string>
#include <string_view>
#include <vector>

namespace tokenfab {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Appends `text`; returns what is now safe to emit. When a stop string
  // completes, sets *stopped and returns the text up to it; later calls
  // return nothing.
  std::string Push(std::string_view text, bool* stopped);

  // The held-back rest, at the end of generation.
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  std::string pending_;  // text not yet emitted
  bool stopped_ = false;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_STOP_MATCHER_H_
