#include "server/key_reloader.h"

#include <cstdio>

#include "common/strings.h"

namespace tokenfab {

KeyReloader::KeyReloader(std::string who, std::vector<KeySet> sets, absl::Duration interval)
    : who_(std::move(who)), interval_(interval) {
  for (KeySet& set : sets) {
    if (set.reloadable()) sets_.push_back(std::move(set));
  }
  if (!sets_.empty()) thread_ = std::thread([this] { Run(); });
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
  for (const KeySet& set : sets_) {
    absl::StatusOr<bool> changed = set.Reload(when);
    std::string line;
    if (!changed.ok()) {
      line = StrCat(who_, ": ", set.source(),
                    " changed but was not taken; the old keys stay: ", changed.status().message());
    } else if (*changed) {
      const int32_t keys = set.stats().keys;
      line = StrCat(who_, ": ", set.source(), " reloaded: ", keys, keys == 1 ? " key" : " keys");
    } else {
      continue;
    }
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
