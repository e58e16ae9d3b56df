// Keeps a process's key files (auth.h) and TLS certificate (tls.h) current
// while it runs: every `interval` it re-reads each key set that came from a
// file and the certificate and key files (a mounted Kubernetes Secret is
// updated in place, without a signal) and takes a change once two reads
// agree (ReloadWhen::kSettled); ReloadNow takes the files as they are
// (SIGHUP). Each change, and each changed file refused, is logged to stderr
// naming the file, never a key; a refused file leaves the old content in
// force.
#ifndef TOKENFAB_SERVER_KEY_RELOADER_H_
#define TOKENFAB_SERVER_KEY_RELOADER_H_

#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/auth.h"
#include "server/tls.h"

namespace tokenfab {

// What a KeyReloader keeps current.
using Reloadable = std::variant<KeySet, TlsIdentity>;

class KeyReloader {
 public:
  // `who` prefixes the log lines ("tokenfab router"). Sets that are not
  // from a file, and a TlsIdentity that is not enabled, are left alone;
  // with none left, no thread runs.
  KeyReloader(std::string who, std::vector<Reloadable> files,
              absl::Duration interval = absl::Seconds(2));
  ~KeyReloader();  // stops and joins the thread
  KeyReloader(const KeyReloader&) = delete;
  KeyReloader& operator=(const KeyReloader&) = delete;

  // Re-reads every file now and takes what it holds; any thread.
  void ReloadNow() { Reload(ReloadWhen::kNow); }

 private:
  void Reload(ReloadWhen when);
  void Run();

  const std::string who_;
  std::vector<Reloadable> files_;
  const absl::Duration interval_;
  absl::Mutex mu_;  // one reload at a time; guards stop_
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_KEY_RELOADER_H_
