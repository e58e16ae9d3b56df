#include "server/router_set.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "absl/time/time.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace tokenfab {

absl::StatusOr<std::vector<RouterEndpoint>> ParseRouterList(std::string_view list) {
  std::vector<RouterEndpoint> out;
  while (true) {
    const size_t comma = list.find(',');
    std::string_view entry = list.substr(0, comma);
    while (!entry.empty() && (entry.front() == ' ' || entry.front() == '\t'))
      entry.remove_prefix(1);
    while (!entry.empty() && (entry.back() == ' ' || entry.back() == '\t')) entry.remove_suffix(1);
    const auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(
          StrCat("--router: '", entry, "' is not HOST:PORT (", why, ")"));
    };
    if (entry.empty()) return absl::InvalidArgumentError("--router: an empty entry in the list");
    const size_t colon = entry.rfind(':');
    if (colon == std::string_view::npos) return bad("no port");
    std::string_view host = entry.substr(0, colon);
    if (host.starts_with('[')) {
      if (!host.ends_with(']')) return bad("unclosed '['");
      host = host.substr(1, host.size() - 2);
    } else if (host.find(':') != std::string_view::npos) {
      return bad("write an IPv6 address as [ADDRESS]:PORT");
    }
    if (host.empty()) return bad("no host");
    if (host.find_first_of("[]/ \t") != std::string_view::npos) return bad("not a host name");
    if (entry.front() == '[' && host.find(':') == std::string_view::npos) {
      return bad("brackets are for an IPv6 address");
    }
    const std::string_view digits = entry.substr(colon + 1);
    uint32_t port = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || port < 1 ||
        port > 65535) {
      return bad("the port must be 1 to 65535");
    }
    out.push_back({std::string(host), static_cast<uint16_t>(port)});
    if (comma == std::string_view::npos) return out;
    list.remove_prefix(comma + 1);
  }
}

absl::StatusOr<std::vector<std::string>> ResolveRouter(const RouterEndpoint& endpoint) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(endpoint.host.c_str(), nullptr, &hints, &found);
  if (rc != 0) {
    return absl::UnavailableError(
        StrCat("cannot resolve '", endpoint.host, "': ", gai_strerror(rc)));
  }
  std::vector<std::string> v4, v6;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    if (a->ai_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
      if (inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) != nullptr) {
        v4.push_back(StrCat(text, ":", endpoint.port));
      }
    } else if (a->ai_family == AF_INET6) {
      const auto* in = reinterpret_cast<const sockaddr_in6*>(a->ai_addr);
      if (inet_ntop(AF_INET6, &in->sin6_addr, text, sizeof(text)) != nullptr) {
        v6.push_back(StrCat("[", text, "]:", endpoint.port));
      }
    }
  }
  freeaddrinfo(found);
  std::vector<std::string>& out = v4.empty() ? v6 : v4;
  if (out.empty()) {
    return absl::UnavailableError(StrCat("'", endpoint.host, "' has no IPv4 or IPv6 address"));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

absl::StatusOr<std::unique_ptr<RouterSet>> RouterSet::Start(RouterSetOptions options,
                                                            internal::v1::WorkerHello hello,
                                                            AttachCallbacks callbacks) {
  if (options.routers.empty()) return absl::InvalidArgumentError("--router HOST:PORT is required");
  ASSIGN_OR_RETURN(std::vector<RouterEndpoint> endpoints, ParseRouterList(options.routers));
  std::unique_ptr<RouterSet> set(new RouterSet(std::move(options), std::move(endpoints),
                                               std::move(hello), std::move(callbacks)));
  set->Update();
  set->resolver_ = std::thread([raw = set.get()] { raw->ResolveLoop(); });
  return set;
}

RouterSet::RouterSet(RouterSetOptions options, std::vector<RouterEndpoint> endpoints,
                     internal::v1::WorkerHello hello, AttachCallbacks callbacks)
    : options_(std::move(options)),
      endpoints_(std::move(endpoints)),
      hello_(std::move(hello)),
      callbacks_(std::move(callbacks)),
      role_(hello_.role()),
      resolved_(endpoints_.size()) {}

RouterSet::~RouterSet() {
  std::map<std::string, Attachment> clients;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    clients.swap(clients_);
  }
  if (resolver_.joinable()) resolver_.join();
  clients.clear();  // outside the lock: their threads call back into this
}

void RouterSet::ResolveLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](RouterSet* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                 return s->stop_ || s->update_now_;
                               },
                               this),
                           absl::FromChrono(options_.resolve_interval));
      if (stop_) return;
      update_now_ = false;
    }
    Update();
  }
}

AttachCallbacks RouterSet::CallbacksFor(const std::string& target) {
  AttachCallbacks c = callbacks_;
  c.on_role = [this](internal::v1::WorkerRole role) { OnRole(role); };
  c.on_welcome = [this, target](uint64_t router_id) { OnWelcome(target, router_id); };
  c.on_refused = [this, target](absl::Status why) { OnRefused(target, std::move(why)); };
  return c;
}

void RouterSet::Update() {
  // Resolving can block for seconds: no lock held. A name that does not
  // resolve now keeps what it gave before: a DNS hiccup must not detach a
  // worker from live routers.
  std::vector<std::pair<std::string, absl::Status>> failed;
  std::vector<std::vector<std::string>> found(endpoints_.size());
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    absl::StatusOr<std::vector<std::string>> r = ResolveRouter(endpoints_[i]);
    if (r.ok()) {
      found[i] = std::move(*r);
    } else {
      failed.emplace_back(endpoints_[i].host, r.status());
    }
  }
  std::vector<Attachment> gone;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    for (const auto& [host, status] : failed) {
      if (unresolved_.insert(host).second) {
        std::fprintf(stderr, "tokenfab worker %s: %s; trying again every %lld ms\n",
                     hello_.worker_id().c_str(), std::string(status.message()).c_str(),
                     static_cast<long long>(options_.resolve_interval.count()));
      }
    }
    absl::flat_hash_set<std::string> targets;
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      if (!found[i].empty()) {
        unresolved_.erase(endpoints_[i].host);
        resolved_[i] = std::move(found[i]);
      }
      targets.insert(resolved_[i].begin(), resolved_[i].end());
    }
    if (targets.size() > kMaxRouters) {
      std::fprintf(stderr, "tokenfab worker %s: --router names %zu addresses; attaching to %zu\n",
                   hello_.worker_id().c_str(), targets.size(), kMaxRouters);
      std::vector<std::string> sorted(targets.begin(), targets.end());
      std::sort(sorted.begin(), sorted.end());
      targets = absl::flat_hash_set<std::string>(sorted.begin(), sorted.begin() + kMaxRouters);
    }
    for (auto it = clients_.begin(); it != clients_.end();) {
      const bool listed = targets.contains(it->first);
      if (listed && !it->second.duplicate) {
        ++it;
        continue;
      }
      if (!listed) {
        std::fprintf(stderr, "tokenfab worker %s: router %s is gone from DNS; detaching\n",
                     hello_.worker_id().c_str(), it->first.c_str());
      }
      gone.push_back(std::move(it->second));
      // A duplicate stays in the map, without a client, while DNS lists it.
      if (listed) {
        it->second = Attachment{.client = nullptr, .duplicate = true};
        ++it;
      } else {
        it = clients_.erase(it);
      }
    }
    for (const std::string& target : targets) {
      if (clients_.contains(target)) continue;
      internal::v1::WorkerHello hello = hello_;
      hello.set_role(role_);
      clients_[target].client =
          std::make_unique<AttachClient>(target, std::move(hello), CallbacksFor(target),
                                         options_.report_interval, cached_, options_.cluster_key);
    }
  }
  gone.clear();  // outside the lock: their threads call back into this
}

void RouterSet::OnWelcome(const std::string& target, uint64_t router_id) {
  absl::MutexLock lock(&mu_);
  auto self = clients_.find(target);
  if (self == clients_.end()) return;
  self->second.router_id = router_id;
  for (const auto& [other, a] : clients_) {
    if (other == target || a.client == nullptr || a.router_id != router_id) continue;
    // Two sessions of one worker on one router replace each other forever:
    // keep the first, drop this one (Update does; this thread is its own).
    std::fprintf(stderr,
                 "tokenfab worker %s: %s is the router already attached at %s; keeping one "
                 "attachment\n",
                 hello_.worker_id().c_str(), target.c_str(), other.c_str());
    self->second.duplicate = true;
    update_now_ = true;
    return;
  }
}

void RouterSet::OnRefused(const std::string& target, absl::Status why) {
  bool all = true;
  {
    absl::MutexLock lock(&mu_);
    auto self = clients_.find(target);
    if (self != clients_.end()) self->second.refused = true;
    for (const auto& [t, a] : clients_) all = all && (a.refused || a.duplicate);
  }
  if (all) {
    callbacks_.on_refused(std::move(why));
    return;
  }
  // Another router may still take this worker (a rollout in progress).
  std::fprintf(stderr, "tokenfab worker %s: router %s refused it (%s); staying with the others\n",
               hello_.worker_id().c_str(), target.c_str(), std::string(why.message()).c_str());
}

void RouterSet::OnRole(internal::v1::WorkerRole role) {
  {
    absl::MutexLock lock(&mu_);
    if (role == role_) return;
    role_ = role;
    for (auto& [target, a] : clients_)
      if (a.client != nullptr) a.client->SetRole(role);
  }
  if (callbacks_.on_role) callbacks_.on_role(role);
}

void RouterSet::OnKvEvents(std::vector<internal::v1::KvEvent> events) {
  absl::MutexLock lock(&mu_);
  ApplyKvEvents(events, &cached_);
  for (auto& [target, a] : clients_)
    if (a.client != nullptr) a.client->OnKvEvents(events);
}

void RouterSet::ReportNow() {
  absl::MutexLock lock(&mu_);
  for (auto& [target, a] : clients_)
    if (a.client != nullptr) a.client->ReportNow();
}

internal::v1::WorkerRole RouterSet::role() const {
  absl::MutexLock lock(&mu_);
  return role_;
}

int RouterSet::attached() const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& [target, a] : clients_) n += a.client != nullptr && a.client->attached();
  return n;
}

std::vector<std::string> RouterSet::targets() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [target, a] : clients_)
    if (a.client != nullptr) out.push_back(target);
  return out;
}

}  // namespace tokenfab
