#include "server/key_reloader.h"

#include <cstdio>

#include "common/strings.h"

namespace tokenfab {

namespace {

bool IsReloadable(const KeySet& set) { return set.reloadable(); }
bool IsReloadable(const TlsIdentity& tls) { return tls.enabled(); }

// What a reload took, and what stays when it is refused, for the log.
std::string Taken(const KeySet& set) {
  const int32_t keys = set.stats().keys;
  return StrCat(keys, keys == 1 ? " key" : " keys");
}
std::string Taken(const TlsIdentity& tls) { return tls.Describe(); }
const char* Kept(const KeySet&) { return "the old keys stay"; }
const char* Kept(const TlsIdentity&) { return "the old certificate stays"; }

}  // namespace

KeyReloader::KeyReloader(std::string who, std::vector<Reloadable> files, absl::Duration interval)
    : who_(std::move(who)), interval_(interval) {
  for (Reloadable& file : files) {
    if (std::visit([](const auto& f) { return IsReloadable(f); }, file))
      files_.push_back(std::move(file));
  }
  if (!files_.empty()) thread_ = std::thread([this] { Run(); });
}

KeyReloader::~KeyReloader() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void KeyReloader::Reload(ReloadWhen when) {
  absl::MutexLock lock(&mu_);
  for (const Reloadable& file : files_) {
    std::string line = std::visit(
        [&](const auto& f) -> std::string {
          absl::StatusOr<bool> changed = f.Reload(when);
          if (!changed.ok()) {
            return StrCat(who_, ": ", f.source(), " changed but was not taken; ", Kept(f), ": ",
                          changed.status().message());
          }
          return *changed ? StrCat(who_, ": ", f.source(), " reloaded: ", Taken(f)) : "";
        },
        file);
    if (line.empty()) continue;
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }
}

void KeyReloader::Run() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), interval_)) return;
    }
    Reload(ReloadWhen::kSettled);
  }
}

}  // namespace tokenfab
