// NCCL for the CUDA emulator (libtokenfab_nccl_emu.so, loaded with dlopen as
// the real libnccl.so.2 is): communicators of one or two ranks with
// point-to-point ncclSend / ncclRecv, groups, non-blocking set-up, abort and
// asynchronous errors, across threads or processes of one machine.
//
// ncclGetUniqueId opens a root: a loopback TCP listener whose address and a
// random nonce are the id. Each rank connects to it and says its rank and
// device; when all have come the root answers (refusing two ranks on one
// device of one process, as NCCL refuses two ranks on one GPU) and, for two
// ranks, relays bytes between them from then on. Operations run on the
// emulator's streams: a send writes its bytes and completes when the peer's
// matching receive has taken them (NCCL's sends block the GPU until then),
// a receive waits for the next message from its peer and checks that its
// size matches. Errors (the peer gone, a size mismatch, an abort) are the
// communicator's asynchronous error, never the device's; a buffer that is
// not device memory of the right size faults the device, as it would.
#include <arpa/inet.h>
#include <nccl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "tests/cuda_emu/emu_runtime.h"

using namespace tokenfab::cuda_emu;  // NOLINT: the C API is global

namespace {

constexpr char kIdMagic[8] = {'T', 'F', 'N', 'C', 'E', 'M', 'U', '1'};
constexpr uint32_t kHelloMagic = 0x48454c4f, kFrameMagic = 0x46524d45;
constexpr auto kRootPatience = std::chrono::minutes(10);

// What a unique id holds.
struct IdBody {
  char magic[8];
  uint32_t ip;    // network order
  uint16_t port;  // network order
  uint8_t nonce[16];
};
static_assert(sizeof(IdBody) <= NCCL_UNIQUE_ID_BYTES);

struct Hello {
  uint32_t magic = kHelloMagic;
  int32_t nranks = 0;
  int32_t rank = 0;
  int32_t device = 0;
  uint64_t process = 0;  // random per process: (process, device) names a "GPU"
  uint8_t nonce[16] = {};
};

struct Verdict {
  int32_t result = ncclSuccess;
  char message[240] = {};
};

struct FrameHeader {
  uint32_t magic = kFrameMagic;
  uint32_t kind = 0;  // 0: data, 1: the receiver took a message
  uint64_t bytes = 0;
};

uint64_t ProcessIdentity() {
  static const uint64_t id = std::random_device{}() * 0x9e3779b97f4a7c15ull ^ getpid();
  return id;
}

bool WriteAll(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::send(fd, c, n, MSG_NOSIGNAL);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      return false;
    }
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, void* p, size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t r = ::recv(fd, c, n, 0);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return false;
    }
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void NoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// ---- the root of one unique id ----

void Relay(int a, int b) {
  std::vector<char> buf(1 << 16);
  pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    bool done = false;
    for (int i = 0; i < 2 && !done; ++i) {
      if (fds[i].revents == 0) continue;
      const ssize_t r = ::recv(fds[i].fd, buf.data(), buf.size(), 0);
      if (r <= 0 || !WriteAll(fds[1 - i].fd, buf.data(), static_cast<size_t>(r))) done = true;
    }
    if (done) break;
  }
  ::shutdown(a, SHUT_RDWR);
  ::shutdown(b, SHUT_RDWR);
}

void RunRoot(int listener, std::array<uint8_t, 16> nonce) {
  const auto deadline = std::chrono::steady_clock::now() + kRootPatience;
  std::vector<std::pair<int, Hello>> joined;
  int nranks = 0;
  std::string refusal;
  while (std::chrono::steady_clock::now() < deadline &&
         (nranks == 0 || static_cast<int>(joined.size()) < nranks)) {
    pollfd p{listener, POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) continue;
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) continue;
    NoDelay(fd);
    Hello h;
    if (!ReadAll(fd, &h, sizeof h) || h.magic != kHelloMagic ||
        std::memcmp(h.nonce, nonce.data(), nonce.size()) != 0) {
      ::close(fd);  // not a rank of this id
      continue;
    }
    if (nranks == 0) nranks = h.nranks;
    if (h.nranks != nranks) refusal = "ranks disagree on the communicator's size";
    for (auto& [other_fd, o] : joined) {
      if (o.rank == h.rank) refusal = "rank " + std::to_string(h.rank) + " joined twice";
      if (o.process == h.process && o.device == h.device) {
        refusal = "Duplicate GPU detected: rank " + std::to_string(o.rank) + " and rank " +
                  std::to_string(h.rank) + " both on emulated device " + std::to_string(h.device);
      }
    }
    joined.emplace_back(fd, h);
  }
  ::close(listener);
  Verdict v;
  if (static_cast<int>(joined.size()) < nranks) {
    v.result = ncclSystemError;
    refusal = "not every rank joined within the root's patience";
  }
  if (!refusal.empty()) {
    v.result = v.result == ncclSuccess ? ncclInvalidUsage : v.result;
    std::snprintf(v.message, sizeof v.message, "%s", refusal.c_str());
  }
  for (auto& [fd, h] : joined) WriteAll(fd, &v, sizeof v);
  if (v.result == ncclSuccess && joined.size() == 2) {
    // Rank 0's bytes go to rank 1 and back: the pair's wire from now on.
    const int a = joined[0].first, b = joined[1].first;
    Relay(a, b);
  }
  for (auto& [fd, h] : joined) ::close(fd);
}

// ---- communicators ----

struct Message {
  std::vector<uint8_t> bytes;
};

struct CommState {
  int nranks = 0;
  int rank = 0;
  int device = 0;
  std::mutex mu;
  std::condition_variable cv;
  ncclResult_t state = ncclInProgress;  // under mu
  std::string last_error;               // under mu
  bool aborted = false;                 // under mu
  int fd = -1;                          // under mu (two ranks)
  std::deque<Message> inbox;            // under mu: data from the peer (or oneself)
  uint64_t taken_by_peer = 0;           // under mu: of our sends, how many the peer took
  uint64_t sent = 0;                    // under mu
  std::mutex write_mu;                  // one writer of the socket at a time
  std::thread setup, reader;

  void Fail(ncclResult_t r, const std::string& why) {
    std::lock_guard<std::mutex> l(mu);
    if (state == ncclSuccess || state == ncclInProgress) {
      state = r;
      last_error = why;
    }
    cv.notify_all();
  }
  bool Broken() { return aborted || (state != ncclSuccess && state != ncclInProgress); }
};

struct ncclCommHandle;
std::mutex g_mu;
absl::flat_hash_map<ncclComm_t, std::shared_ptr<CommState>>& Comms() {
  static auto* comms = new absl::flat_hash_map<ncclComm_t, std::shared_ptr<CommState>>();
  return *comms;
}
std::string& GlobalLastError() {
  static auto* s = new std::string();
  return *s;
}

std::shared_ptr<CommState> Find(ncclComm_t comm) {
  std::lock_guard<std::mutex> l(g_mu);
  auto it = Comms().find(comm);
  return it == Comms().end() ? nullptr : it->second;
}

ncclResult_t Refuse(ncclResult_t r, const std::string& why) {
  {
    std::lock_guard<std::mutex> l(g_mu);
    GlobalLastError() = why;
  }
  Complain("nccl: " + why);
  return r;
}

void ReadLoop(std::shared_ptr<CommState> c, int fd) {
  for (;;) {
    FrameHeader h;
    if (!ReadAll(fd, &h, sizeof h) || h.magic != kFrameMagic) break;
    if (h.kind == 1) {
      std::lock_guard<std::mutex> l(c->mu);
      ++c->taken_by_peer;
      c->cv.notify_all();
      continue;
    }
    Message m;
    m.bytes.resize(h.bytes);
    if (h.bytes > (uint64_t{1} << 36) || !ReadAll(fd, m.bytes.data(), m.bytes.size())) break;
    std::lock_guard<std::mutex> l(c->mu);
    c->inbox.push_back(std::move(m));
    c->cv.notify_all();
  }
  std::lock_guard<std::mutex> l(c->mu);
  if (!c->aborted && (c->state == ncclSuccess || c->state == ncclInProgress)) {
    c->state = ncclRemoteError;
    c->last_error = "the peer rank closed the connection (its process exited or aborted)";
  }
  c->cv.notify_all();
}

// Joins the communicator: connect, hello, the root's verdict.
void SetUp(std::shared_ptr<CommState> c, IdBody id, Hello hello) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  {
    std::lock_guard<std::mutex> l(c->mu);
    c->fd = fd;
    if (c->aborted) return;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = id.ip;
  addr.sin_port = id.port;
  Verdict v;
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    c->Fail(ncclSystemError, std::string("cannot reach the unique id's root: ") + strerror(errno));
    return;
  }
  NoDelay(fd);
  {
    // An abort from now on shuts the connected socket down, which ends the
    // wait for the verdict below.
    std::lock_guard<std::mutex> l(c->mu);
    if (c->aborted) return;
  }
  if (!WriteAll(fd, &hello, sizeof hello) || !ReadAll(fd, &v, sizeof v)) {
    c->Fail(ncclSystemError, "the unique id's root went away during set-up");
    return;
  }
  if (v.result != ncclSuccess) {
    c->Fail(static_cast<ncclResult_t>(v.result), v.message);
    return;
  }
  std::lock_guard<std::mutex> l(c->mu);
  if (c->aborted) return;
  if (c->nranks == 2) c->reader = std::thread(ReadLoop, c, fd);
  c->state = ncclSuccess;
  c->cv.notify_all();
}

struct Op {
  bool send = false;
  void* buf = nullptr;
  size_t bytes = 0;
  std::shared_ptr<CommState> comm;
  cudaStream_t stream = nullptr;
};

thread_local int t_group_depth = 0;
thread_local std::vector<Op> t_group;

size_t TypeBytes(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
    case ncclFloat8e4m3:
    case ncclFloat8e5m2:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
    default:
      return 0;
  }
}

// Writes one send's message (or queues it for oneself); false if the
// communicator broke.
bool Post(CommState& c, const Op& op) {
  if (c.nranks == 1) {
    std::lock_guard<std::mutex> l(c.mu);
    if (c.Broken()) return false;
    c.inbox.push_back({std::vector<uint8_t>(static_cast<uint8_t*>(op.buf),
                                            static_cast<uint8_t*>(op.buf) + op.bytes)});
    ++c.sent;
    c.cv.notify_all();
    return true;
  }
  int fd;
  {
    std::lock_guard<std::mutex> l(c.mu);
    if (c.Broken()) return false;
    fd = c.fd;
    ++c.sent;
  }
  FrameHeader h;
  h.bytes = op.bytes;
  std::lock_guard<std::mutex> w(c.write_mu);
  if (!WriteAll(fd, &h, sizeof h) || !WriteAll(fd, op.buf, op.bytes)) {
    c.Fail(ncclSystemError, "the connection to the peer rank broke during a send");
    return false;
  }
  return true;
}

// Takes the next message for a receive; false if the communicator broke.
bool Take(CommState& c, const Op& op) {
  Message m;
  {
    std::unique_lock<std::mutex> l(c.mu);
    c.cv.wait(l, [&c] { return !c.inbox.empty() || c.Broken(); });
    if (c.inbox.empty()) return false;
    m = std::move(c.inbox.front());
    c.inbox.pop_front();
  }
  if (m.bytes.size() != op.bytes) {
    c.Fail(ncclInvalidUsage, "a receive of " + std::to_string(op.bytes) + " bytes met a send of " +
                                 std::to_string(m.bytes.size()));
    return false;
  }
  std::memcpy(op.buf, m.bytes.data(), op.bytes);
  if (c.nranks == 1) {
    std::lock_guard<std::mutex> l(c.mu);
    ++c.taken_by_peer;
    c.cv.notify_all();
    return true;
  }
  FrameHeader ack;
  ack.kind = 1;
  std::lock_guard<std::mutex> w(c.write_mu);
  int fd;
  {
    std::lock_guard<std::mutex> l(c.mu);
    fd = c.fd;
  }
  if (!WriteAll(fd, &ack, sizeof ack)) {
    c.Fail(ncclSystemError, "the connection to the peer rank broke during a receive");
    return false;
  }
  return true;
}

// One group's operations of one communicator on one stream: sends posted,
// receives taken, then the sends' completion (the peer took them).
cudaError_t RunGroup(const std::vector<Op>& ops) {
  for (const Op& op : ops) {
    if (std::string why = CheckRange(op.buf, op.bytes, MemoryKind::kDevice); !why.empty()) {
      Complain(std::string("nccl: ") + (op.send ? "ncclSend" : "ncclRecv") + " buffer: " + why);
      return cudaErrorIllegalAddress;
    }
  }
  CommState& c = *ops.front().comm;
  uint64_t target = 0;
  for (const Op& op : ops) {
    if (!op.send) continue;
    if (!Post(c, op)) return cudaSuccess;
    std::lock_guard<std::mutex> l(c.mu);
    target = c.sent;
  }
  for (const Op& op : ops) {
    if (!op.send && !Take(c, op)) return cudaSuccess;
  }
  std::unique_lock<std::mutex> l(c.mu);
  c.cv.wait(l, [&c, target] { return c.taken_by_peer >= target || c.Broken(); });
  return cudaSuccess;
}

ncclResult_t Submit(std::vector<Op> ops) {
  // One task per (communicator, stream), in the order of their first op.
  std::vector<std::vector<Op>> groups;
  for (Op& op : ops) {
    auto it = std::find_if(groups.begin(), groups.end(), [&op](const std::vector<Op>& g) {
      return g.front().comm == op.comm && g.front().stream == op.stream;
    });
    if (it == groups.end()) {
      groups.push_back({std::move(op)});
    } else {
      it->push_back(std::move(op));
    }
  }
  for (auto& g : groups) {
    auto shared = std::make_shared<std::vector<Op>>(std::move(g));
    const cudaError_t e =
        Enqueue(shared->front().stream, "nccl send/recv", [shared] { return RunGroup(*shared); });
    if (e != cudaSuccess) {
      return Refuse(ncclUnhandledCudaError,
                    std::string("enqueueing on the stream: ") + cudaGetErrorName(e));
    }
  }
  return ncclSuccess;
}

ncclResult_t AddOp(bool send, const void* buf, size_t count, ncclDataType_t type, int peer,
                   ncclComm_t comm, cudaStream_t stream) {
  std::shared_ptr<CommState> c = Find(comm);
  if (c == nullptr)
    return Refuse(ncclInvalidArgument, "an operation on a communicator that is not live");
  {
    std::lock_guard<std::mutex> l(c->mu);
    if (c->state == ncclInProgress) {
      return Refuse(ncclInvalidUsage, "an operation before the communicator's set-up finished");
    }
  }
  const size_t size = TypeBytes(type);
  if (size == 0 || peer < 0 || peer >= c->nranks) {
    return Refuse(ncclInvalidArgument, "a bad data type or peer " + std::to_string(peer));
  }
  int device = -1;
  if (StreamDevice(stream, &device) != cudaSuccess || device != c->device) {
    return Refuse(ncclInvalidUsage, "the stream is not on the communicator's device");
  }
  Op op{send, const_cast<void*>(buf), count * size, c, stream};
  if (t_group_depth > 0) {
    t_group.push_back(std::move(op));
    return ncclSuccess;
  }
  return Submit({std::move(op)});
}

ncclResult_t Init(ncclComm_t* out, int nranks, ncclUniqueId id, int rank, bool blocking) {
  if (out == nullptr) return Refuse(ncclInvalidArgument, "a null communicator pointer");
  *out = nullptr;
  IdBody body;
  std::memcpy(&body, id.internal, sizeof body);
  if (std::memcmp(body.magic, kIdMagic, sizeof kIdMagic) != 0) {
    return Refuse(ncclInvalidArgument,
                  "a unique id that ncclGetUniqueId of this library did not make");
  }
  if (nranks < 1 || nranks > 2 || rank < 0 || rank >= nranks) {
    return Refuse(ncclInvalidArgument, "the emulator has communicators of 1 or 2 ranks; rank " +
                                           std::to_string(rank) + " of " + std::to_string(nranks));
  }
  auto c = std::make_shared<CommState>();
  c->nranks = nranks;
  c->rank = rank;
  c->device = CurrentDevice();
  Hello hello;
  hello.nranks = nranks;
  hello.rank = rank;
  hello.device = c->device;
  hello.process = ProcessIdentity();
  std::memcpy(hello.nonce, body.nonce, sizeof hello.nonce);
  auto* handle = reinterpret_cast<ncclComm_t>(new char);  // a unique address per communicator
  {
    std::lock_guard<std::mutex> l(g_mu);
    Comms()[handle] = c;
  }
  *out = handle;
  if (blocking) {
    SetUp(c, body, hello);
    std::lock_guard<std::mutex> l(c->mu);
    return c->state;
  }
  c->setup = std::thread(SetUp, c, body, hello);
  return ncclInProgress;
}

}  // namespace

ncclResult_t ncclGetVersion(int* version) {
  if (version == nullptr) return ncclInvalidArgument;
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (id == nullptr) return ncclInvalidArgument;
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 8) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (listener >= 0) ::close(listener);
    return Refuse(ncclSystemError, std::string("the root's listener: ") + strerror(errno));
  }
  IdBody body{};
  std::memcpy(body.magic, kIdMagic, sizeof kIdMagic);
  body.ip = addr.sin_addr.s_addr;
  body.port = addr.sin_port;
  std::random_device rd;
  std::array<uint8_t, 16> nonce;
  for (uint8_t& b : nonce) b = static_cast<uint8_t>(rd());
  std::memcpy(body.nonce, nonce.data(), nonce.size());
  std::memset(id->internal, 0, sizeof id->internal);
  std::memcpy(id->internal, &body, sizeof body);
  std::thread(RunRoot, listener, nonce).detach();
  return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank,
                                    ncclConfig_t* config) {
  const bool blocking =
      config == nullptr || config->blocking == NCCL_CONFIG_UNDEF_INT || config->blocking != 0;
  return Init(comm, nranks, id, rank, blocking);
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  return Init(comm, nranks, id, rank, /*blocking=*/true);
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* error) {
  std::shared_ptr<CommState> c = Find(comm);
  if (c == nullptr || error == nullptr) return ncclInvalidArgument;
  std::lock_guard<std::mutex> l(c->mu);
  *error = c->state;
  return ncclSuccess;
}

// Ends operations in flight (they complete without moving data) and frees
// the communicator; the handle is dead afterwards.
ncclResult_t ncclCommAbort(ncclComm_t comm) {
  std::shared_ptr<CommState> c;
  {
    std::lock_guard<std::mutex> l(g_mu);
    auto it = Comms().find(comm);
    if (it == Comms().end()) return ncclInvalidArgument;
    c = std::move(it->second);
    Comms().erase(it);
  }
  {
    std::lock_guard<std::mutex> l(c->mu);
    c->aborted = true;
    if (c->fd >= 0) ::shutdown(c->fd, SHUT_RDWR);
    c->cv.notify_all();
  }
  if (c->setup.joinable()) c->setup.join();
  if (c->reader.joinable()) c->reader.join();
  {
    std::lock_guard<std::mutex> l(c->mu);
    if (c->fd >= 0) ::close(c->fd);
    c->fd = -1;
  }
  delete reinterpret_cast<char*>(comm);
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) { return ncclCommAbort(comm); }

ncclResult_t ncclSend(const void* buf, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  return AddOp(/*send=*/true, buf, count, type, peer, comm, stream);
}

ncclResult_t ncclRecv(void* buf, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  return AddOp(/*send=*/false, buf, count, type, peer, comm, stream);
}

ncclResult_t ncclGroupStart() {
  ++t_group_depth;
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  if (t_group_depth == 0) return Refuse(ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
  if (--t_group_depth > 0) return ncclSuccess;
  std::vector<Op> ops;
  ops.swap(t_group);
  return ops.empty() ? ncclSuccess : Submit(std::move(ops));
}

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess:
      return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error";
    case ncclSystemError:
      return "unhandled system error";
    case ncclInternalError:
      return "internal error";
    case ncclInvalidArgument:
      return "invalid argument";
    case ncclInvalidUsage:
      return "invalid usage";
    case ncclRemoteError:
      return "remote process exited or there was a network error";
    case ncclInProgress:
      return "NCCL operation in progress";
    default:
      return "unknown result code";
  }
}

const char* ncclGetLastError(ncclComm_t comm) {
  thread_local std::string copy;
  if (std::shared_ptr<CommState> c = Find(comm); c != nullptr) {
    std::lock_guard<std::mutex> l(c->mu);
    copy = c->last_error;
  } else {
    std::lock_guard<std::mutex> l(g_mu);
    copy = GlobalLastError();
  }
  return copy.c_str();
}
