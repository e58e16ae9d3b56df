#include "worker/transport/tcp_transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <system_error>
#include <thread>

#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/transport/kv_wire.h"

namespace tokenfab {
namespace {

int64_t MicrosSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

absl::Status Errno(std::string_view what) {
  return absl::UnavailableError(StrCat(what, ": ", std::strerror(errno)));
}

// Counts one kind of event and logs it at most once a minute, with how many
// came since the last line, so a flood of refused connections costs one
// line a minute. Used by one thread.
class MinuteLog {
 public:
  explicit MinuteLog(std::string what) : what_(std::move(what)) {}
  void Count(std::string_view detail) {
    ++unlogged_;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_) return;
    std::fprintf(stderr, "tokenfab worker: KV port %s: %s (%lld since the last such line)\n",
                 what_.c_str(), std::string(detail).c_str(), static_cast<long long>(unlogged_));
    unlogged_ = 0;
    next_ = now + std::chrono::minutes(1);
  }

 private:
  const std::string what_;
  int64_t unlogged_ = 0;
  std::chrono::steady_clock::time_point next_{};
};

void SetTimeouts(int fd, int32_t ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

absl::Status ReadAll(int fd, uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r == 0) return absl::UnavailableError("the KV peer closed the connection");
    if (r < 0) {
      if (errno == EINTR) continue;
      return Errno("KV receive");
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

// As ReadAll, but all `n` bytes by `deadline`, however they trickle in
// (SO_RCVTIMEO bounds each recv, not their sum).
absl::Status ReadAllBy(int fd, uint8_t* p, size_t n,
                       std::chrono::steady_clock::time_point deadline) {
  while (n > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return absl::DeadlineExceededError("no KV stream header in time");
    pollfd pfd{fd, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return Errno("KV receive");
    if (ready == 0) continue;  // the deadline check above ends it
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r == 0) return absl::UnavailableError("the KV peer closed the connection");
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return Errno("KV receive");
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, iovec* iov, int iovcnt) {
  while (iovcnt > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(iovcnt);
    ssize_t w = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Errno("KV send");
    }
    while (iovcnt > 0 && static_cast<size_t>(w) >= iov->iov_len) {
      w -= static_cast<ssize_t>(iov->iov_len);
      ++iov;
      --iovcnt;
    }
    if (iovcnt > 0) {
      iov->iov_base = static_cast<uint8_t*>(iov->iov_base) + w;
      iov->iov_len -= static_cast<size_t>(w);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<std::string, std::string>> SplitHostPort(const std::string& endpoint) {
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == endpoint.size()) {
    return absl::InvalidArgumentError(StrCat("'", endpoint, "' is not host:port"));
  }
  std::string host = endpoint.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return std::make_pair(host, endpoint.substr(colon + 1));
}

absl::StatusOr<int> Connect(const std::string& endpoint, int32_t timeout_ms) {
  auto hp = SplitHostPort(endpoint);
  if (!hp.ok()) return hp.status();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(hp->first.c_str(), hp->second.c_str(), &hints, &res); rc != 0) {
    return absl::UnavailableError(
        StrCat("cannot resolve KV peer ", endpoint, ": ", gai_strerror(rc)));
  }
  absl::Status last = absl::UnavailableError(StrCat("cannot connect to KV peer ", endpoint));
  int fd = -1;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    SetTimeouts(fd, timeout_ms);  // Linux bounds connect() by SO_SNDTIMEO
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    last = Errno(StrCat("connect to KV peer ", endpoint));
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  if (fd < 0) return last;
  return fd;
}

}  // namespace

// A transfer this transport waits for.
struct TcpTransport::Expected : ExpectedKv {
  using ExpectedKv::ExpectedKv;
  bool claimed = false;  // a connection is receiving it (transport mu_)
};

struct TcpTransport::SendState {
  std::string peer;
  KvTransferSpec spec;
  int32_t timeout_ms = 0;
  absl::Mutex mu;
  std::deque<KvPiece> queue ABSL_GUARDED_BY(mu);
  bool finishing ABSL_GUARDED_BY(mu) = false;
  bool aborted ABSL_GUARDED_BY(mu) = false;
  std::function<void(absl::Status)> done ABSL_GUARDED_BY(mu);
  int fd ABSL_GUARDED_BY(mu) = -1;
  bool completed ABSL_GUARDED_BY(mu) = false;  // the thread is done; `result` says how
  absl::Status result ABSL_GUARDED_BY(mu);

  void Abort() {
    absl::MutexLock lock(&mu);
    aborted = true;
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }
};

namespace {

class TcpSendStream : public KvSendStream {
 public:
  explicit TcpSendStream(std::shared_ptr<TcpTransport::SendState> state)
      : state_(std::move(state)) {}
  ~TcpSendStream() override {
    bool done;
    {
      absl::MutexLock lock(&state_->mu);
      done = state_->finishing;
    }
    if (!done) state_->Abort();  // dropped without Finish: the receiver sees a failure
  }
  void Push(KvPiece piece) override {
    absl::MutexLock lock(&state_->mu);
    if (!state_->aborted && !state_->finishing) state_->queue.push_back(std::move(piece));
  }
  void Finish(std::function<void(absl::Status)> done) override {
    absl::Status result;
    {
      absl::MutexLock lock(&state_->mu);
      state_->finishing = true;
      if (!state_->completed) {
        state_->done = std::move(done);
        return;
      }
      result = state_->result;
    }
    done(result);  // the stream failed before Finish
  }
  void Abort() override { state_->Abort(); }

 private:
  std::shared_ptr<TcpTransport::SendState> state_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TcpTransport>> TcpTransport::Create(
    const TcpTransportOptions& options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        StrCat("KV port must be between 0 and 65535, got ", options.port));
  }
  if (options.io_timeout_ms <= 0 || options.header_timeout_ms <= 0)
    return absl::InvalidArgumentError("KV timeouts must be positive");
  if (options.max_connections <= 0)
    return absl::InvalidArgumentError("the KV connection limit must be positive");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(options.port);
  if (int rc = ::getaddrinfo(options.listen_host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return absl::InvalidArgumentError(
        StrCat("cannot resolve '", options.listen_host, "': ", gai_strerror(rc)));
  }
  int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || ::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
    absl::Status s =
        Errno(StrCat("cannot listen for KV on ", options.listen_host, ":", options.port));
    if (fd >= 0) ::close(fd);
    ::freeaddrinfo(res);
    return s;
  }
  ::freeaddrinfo(res);
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int bound =
      ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                       : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  std::string host = options.advertise_host;
  if (host.empty()) {
    host = options.listen_host == "0.0.0.0" || options.listen_host == "::" ? "127.0.0.1"
                                                                           : options.listen_host;
  }
  if (host.find(':') != std::string::npos) host = StrCat("[", host, "]");
  return std::unique_ptr<TcpTransport>(new TcpTransport(options, fd, StrCat(host, ":", bound)));
}

TcpTransport::TcpTransport(const TcpTransportOptions& options, int listen_fd, std::string endpoint)
    : options_(options), listen_fd_(listen_fd), endpoint_(std::move(endpoint)) {
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

TcpTransport::~TcpTransport() {
  std::vector<std::shared_ptr<Expected>> pending;
  std::vector<std::shared_ptr<SendState>> senders;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (int fd : receiving_fds_) ::shutdown(fd, SHUT_RDWR);
    for (auto& [id, e] : expected_) pending.push_back(e);
    expected_.clear();
    for (auto& w : senders_) {
      if (auto s = w.lock()) senders.push_back(std::move(s));
    }
  }
  ::shutdown(listen_fd_, SHUT_RDWR);
  accept_thread_.join();
  ::close(listen_fd_);
  for (auto& s : senders) s->Abort();
  for (auto& e : pending) e->Deliver(absl::CancelledError("the KV transport is shutting down"));
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int32_t* n) { return *n == 0; }, &live_threads_));
}

void TcpTransport::AcceptLoop() {
  MinuteLog accept_failed("accept failed"), over_limit("refused connections");
  while (true) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;  // the destructor shut the listener down
      }
      if (err == EINTR || err == ECONNABORTED) continue;
      // Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the
      // connection waits in the backlog. A listener that gave up here would
      // never take a transfer again, so it waits a little and tries again.
      accept_failed.Count(std::strerror(err));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    if (receiving_fds_.size() >= static_cast<size_t>(options_.max_connections)) {
      ::close(fd);
      ++counters_->refused_over_limit;
      over_limit.Count(StrCat(options_.max_connections, " connections are being received"));
      continue;
    }
    SetTimeouts(fd, options_.header_timeout_ms);
    try {
      // Receive waits for mu_ before it touches receiving_fds_.
      std::thread([this, fd] { Receive(fd); }).detach();
    } catch (const std::system_error& e) {
      ::close(fd);
      ++counters_->refused_over_limit;
      over_limit.Count(StrCat("no thread for a connection: ", e.what()));
      continue;
    }
    receiving_fds_.push_back(fd);
    ++live_threads_;
  }
}

std::shared_ptr<TcpTransport::Expected> TcpTransport::Claim(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = expected_.find(id);
  if (it == expected_.end() || it->second->claimed) return nullptr;
  it->second->claimed = true;
  return it->second;
}

void TcpTransport::Receive(int fd) {
  std::shared_ptr<Expected> expected;
  absl::Status status = [&]() -> absl::Status {
    uint8_t header[kStreamHeaderBytes];
    absl::Status read = ReadAllBy(
        fd, header, sizeof header,
        std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.header_timeout_ms));
    absl::StatusOr<uint64_t> id = read.ok() ? StreamHeaderTransferId(header) : read;
    if (!id.ok()) {
      ++counters_->refused_bad_header;
      return id.status();
    }
    expected = Claim(*id);
    if (expected == nullptr) {
      ++counters_->refused_unexpected;
      return absl::NotFoundError(StrCat("KV transfer ", *id,
                                        " is not expected here (unknown, "
                                        "already received or given up)"));
    }
    SetTimeouts(fd, options_.io_timeout_ms);
    if (absl::Status s = CheckStreamHeader(header, expected->spec); !s.ok()) return s;
    const auto started = std::chrono::steady_clock::now();
    KvAssembly assembly(expected->spec);
    const int64_t row = expected->spec.layout.PositionBytes() / 2;
    while (true) {
      uint8_t ph[kPieceHeaderBytes];
      if (absl::Status s = ReadAll(fd, ph, sizeof ph); !s.ok()) return s;
      const PieceHeader piece = DecodePieceHeader(ph);
      if (piece.layer == kEndOfTransfer) break;
      if (absl::Status s = assembly.Accept(piece); !s.ok()) return s;
      if (absl::Status s = ReadAll(fd, assembly.KDestination(piece), row * piece.count); !s.ok())
        return s;
      if (absl::Status s = ReadAll(fd, assembly.VDestination(piece), row * piece.count); !s.ok())
        return s;
      counters_->bytes_received += static_cast<int64_t>(piece.payload_bytes);
    }
    const uint8_t ack = assembly.Complete() ? 1 : 0;
    (void)::send(fd, &ack, 1, MSG_NOSIGNAL);
    if (!ack) return absl::DataLossError("the KV transfer ended before every position arrived");
    {
      absl::MutexLock lock(&mu_);
      expected_.erase(expected->spec.transfer_id);
    }
    ++counters_->transfers_received;
    counters_->micros_received += MicrosSince(started);
    expected->Deliver(assembly.Take());
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    const uint8_t nak = 0;
    (void)::send(fd, &nak, 1, MSG_NOSIGNAL);
    if (expected != nullptr) {
      ++counters_->transfers_failed;
      {
        absl::MutexLock lock(&mu_);
        expected_.erase(expected->spec.transfer_id);
      }
      expected->Deliver(status);
    }
  }
  absl::MutexLock lock(&mu_);
  std::erase(receiving_fds_, fd);
  ::close(fd);
  --live_threads_;
}

absl::Status TcpTransport::Expect(const KvTransferSpec& spec, Arrival on_arrival) {
  RETURN_IF_ERROR(CheckTransferSpec(spec));
  auto e = std::make_shared<Expected>(spec, std::move(on_arrival));
  absl::MutexLock lock(&mu_);
  return AddExpected(expected_, stopping_, std::move(e));
}

void TcpTransport::Forget(uint64_t transfer_id) {
  std::shared_ptr<Expected> e;
  {
    absl::MutexLock lock(&mu_);
    auto it = expected_.find(transfer_id);
    if (it == expected_.end()) return;
    e = std::move(it->second);
    expected_.erase(it);
  }
  e->Silence();
}

std::unique_ptr<KvSendStream> TcpTransport::Open(const KvRoute& route, const KvTransferSpec& spec) {
  auto state = std::make_shared<SendState>();
  state->peer = route.endpoint;
  state->spec = spec;
  state->timeout_ms = options_.io_timeout_ms;
  {
    absl::MutexLock lock(&mu_);
    std::erase_if(senders_, [](const std::weak_ptr<SendState>& w) { return w.expired(); });
    senders_.push_back(state);
    ++live_threads_;
    if (stopping_) state->Abort();
  }
  try {
    std::thread([this, state] {
      const auto started = std::chrono::steady_clock::now();
      SendDone(*state, Send(*state), started);
    }).detach();
  } catch (const std::system_error& e) {
    SendDone(*state, absl::ResourceExhaustedError(StrCat("no thread for a KV send: ", e.what())),
             std::chrono::steady_clock::now());
  }
  return std::make_unique<TcpSendStream>(std::move(state));
}

absl::Status TcpTransport::Send(SendState& state) {
  absl::StatusOr<int> fd = Connect(state.peer, state.timeout_ms);
  if (!fd.ok()) return fd.status();
  {
    absl::MutexLock lock(&state.mu);
    state.fd = *fd;
    if (state.aborted) return absl::CancelledError("the KV transfer was aborted");
  }
  auto header = EncodeStreamHeader(state.spec);
  iovec h{header.data(), header.size()};
  RETURN_IF_ERROR(WriteAll(*fd, &h, 1));
  while (true) {
    KvPiece piece;
    {
      absl::MutexLock lock(&state.mu);
      state.mu.Await(absl::Condition(
          +[](SendState* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return s->aborted || s->finishing || !s->queue.empty();
          },
          &state));
      if (state.aborted) return absl::CancelledError("the KV transfer was aborted");
      if (state.queue.empty()) break;  // finishing, and everything is sent
      piece = std::move(state.queue.front());
      state.queue.pop_front();
    }
    PieceHeader ph{piece.layer, piece.first_position, piece.count, piece.bytes.size()};
    auto encoded = EncodePieceHeader(ph);
    iovec iov[2] = {{encoded.data(), encoded.size()}, {piece.bytes.data(), piece.bytes.size()}};
    RETURN_IF_ERROR(WriteAll(*fd, iov, 2));
    counters_->bytes_sent += static_cast<int64_t>(piece.bytes.size());
  }
  auto end_header = EncodePieceHeader({kEndOfTransfer, 0, 0, 0});
  iovec e{end_header.data(), end_header.size()};
  RETURN_IF_ERROR(WriteAll(*fd, &e, 1));
  uint8_t ack = 0;
  RETURN_IF_ERROR(ReadAll(*fd, &ack, 1));
  if (ack != 1) return absl::DataLossError("the decode worker refused the KV transfer");
  return absl::OkStatus();
}

void TcpTransport::SendDone(SendState& state, absl::Status status,
                            std::chrono::steady_clock::time_point started) {
  std::function<void(absl::Status)> done;
  {
    absl::MutexLock lock(&state.mu);
    if (state.fd >= 0) ::close(state.fd);
    state.fd = -1;
    state.completed = true;
    state.result = status;
    state.queue.clear();
    done = std::move(state.done);  // null if Finish has not come yet: it reads `result`
    state.done = nullptr;
  }
  if (status.ok()) {
    ++counters_->transfers_sent;
    counters_->micros_sent += MicrosSince(started);
  } else {
    ++counters_->transfers_failed;
  }
  if (done) done(status);
  absl::MutexLock lock(&mu_);
  --live_threads_;
}

KvTransportStats TcpTransport::Stats() const { return counters_->Snapshot(); }

}  // namespace tokenfab
