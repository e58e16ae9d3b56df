// The bookkeeping of a file that a process re-reads while it runs (key
// files, TLS certificates): what it held when its content was taken, what
// it held when a change was refused (reported once), and a polled change
// not yet read twice. Its owner reads the file, asks Look what to do with
// what it saw, and reports back with Took or Refused. Not thread-safe: the
// owner serialises its reloads.
#ifndef TOKENFAB_SERVER_RELOADED_FILE_H_
#define TOKENFAB_SERVER_RELOADED_FILE_H_

#include <optional>
#include <string>
#include <utility>

namespace tokenfab {

// When a changed file is taken: at once (SIGHUP: the operator says it is
// written), or once two reads in a row agree (a poll: a file written in
// place may be caught half-way, and a cut-off file can still be valid).
enum class ReloadWhen { kNow, kSettled };

class ReloadedFile {
 public:
  enum class Look {
    kTaken,    // what is in force (unchanged, or back to it)
    kRefused,  // what was refused last time: nothing to report again
    kWait,     // a polled change seen once: wait for the next read
    kTry,      // a change to parse; then Took or Refused
  };

  explicit ReloadedFile(std::string taken = "") : taken_(std::move(taken)) {}

  // `seen`: what a read found, its text, or for a failed read something no
  // text can be (e.g. "\n" + the error), so a lasting error is seen once.
  Look LookAt(const std::string& seen, ReloadWhen when) {
    if (seen == taken_) {
      pending_.reset();
      return Look::kTaken;
    }
    if (seen == refused_) return Look::kRefused;
    if (when == ReloadWhen::kSettled && seen != pending_) {
      pending_ = seen;
      return Look::kWait;
    }
    pending_.reset();
    return Look::kTry;
  }
  void Took(std::string seen) {
    taken_ = std::move(seen);
    refused_.reset();
  }
  void Refused(std::string seen) { refused_ = std::move(seen); }

 private:
  std::string taken_;
  std::optional<std::string> refused_;
  std::optional<std::string> pending_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_RELOADED_FILE_H_
