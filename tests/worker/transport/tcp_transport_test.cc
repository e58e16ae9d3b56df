// The tcp KV transport on loopback: pieces arrive intact in the documented
// layout whatever their order across layers, and every malformed or
// abandoned transfer fails on both sides instead of hanging or corrupting.
// Connections that bring no expected transfer are refused, bounded in
// number and time, and leave the listener taking transfers.
#include "worker/transport/tcp_transport.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/worker/transport/kv_test_util.h"
#include "worker/transport/kv_wire.h"

namespace tokenfab {
namespace {

using testing::ExpectInto;
using testing::FinishInto;
using testing::KvSpec;
using testing::PatternPiece;
using Outcome = testing::KvOutcome;

std::unique_ptr<TcpTransport> Transport(TcpTransportOptions o = {}) {
  o.io_timeout_ms = 3000;
  return std::move(*TcpTransport::Create(o));
}

// A plain connection to a transport's port, as a stranger would open it; -1
// if the process has no descriptor left.
int RawConnect(const TcpTransport& t) {
  const std::string ep = t.endpoint();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(ep.substr(ep.rfind(':') + 1))));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// What the transport did with a raw connection within `ms`: "closed" (after
// any bytes it sent, which go to `got`) or "open".
std::string RawFate(int fd, int32_t ms, std::string* got = nullptr) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buf[64];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return "closed";
    if (got != nullptr) got->append(buf, static_cast<size_t>(n));
  }
  return "open";
}

void SendAll(int fd, const void* p, size_t n) {
  ASSERT_EQ(::send(fd, p, n, MSG_NOSIGNAL), static_cast<ssize_t>(n));
}

// A whole transfer of `id` through `tx` into `rx`; true if both sides agree
// it arrived intact.
bool Roundtrip(TcpTransport& rx, TcpTransport& tx, uint64_t id) {
  const KvTransferSpec spec = KvSpec(id, 0, 16);
  Outcome o;
  ExpectInto(rx, spec, &o);
  auto stream = tx.Open({rx.endpoint()}, spec);
  for (int32_t l = 0; l < 3; ++l) stream->Push(PatternPiece(spec, l, 0, 16));
  FinishInto(*stream, &o);
  const bool finished = o.Finished();
  const bool arrived = o.Arrived();
  rx.Forget(id);  // `o` ends here: nothing may call into it after
  stream.reset();
  return finished && arrived && o.sent.ok() && o.kv.ok() &&
         testing::WrongPatternBytes(spec, (*o.kv)->bytes) == 0;
}

int OpenDescriptors() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  return n - 3;  // ".", ".." and the directory's own descriptor
}

TEST(TcpTransportTest, PiecesArriveInTheDocumentedLayout) {
  auto rx = Transport();
  auto tx = Transport();
  const KvTransferSpec spec = KvSpec(42, 16, 53);
  Outcome o;
  ExpectInto(*rx, spec, &o);
  auto stream = tx->Open({rx->endpoint()}, spec);
  // Chunks as a chunked prefill makes them: every layer of [16,40), then of [40,53).
  for (auto [first, count] : {std::pair{16, 24}, std::pair{40, 13}}) {
    for (int32_t l = 0; l < 3; ++l) stream->Push(PatternPiece(spec, l, first, count));
  }
  FinishInto(*stream, &o);
  ASSERT_TRUE(o.Finished());
  ASSERT_TRUE(o.Arrived());
  ASSERT_TRUE(o.sent.ok()) << o.sent;
  ASSERT_TRUE(o.kv.ok()) << o.kv.status();
  EXPECT_EQ(testing::WrongPatternBytes(spec, (*o.kv)->bytes), 0);
  EXPECT_EQ(tx->Stats().bytes_sent, spec.TotalBytes());
  EXPECT_EQ(rx->Stats().bytes_received, spec.TotalBytes());
  EXPECT_EQ(rx->Stats().transfers_received, 1);
}

TEST(TcpTransportTest, AGapInALayerFailsBothSides) {
  auto rx = Transport();
  auto tx = Transport();
  const KvTransferSpec spec = KvSpec(7, 0, 32);
  Outcome o;
  ExpectInto(*rx, spec, &o);
  auto stream = tx->Open({rx->endpoint()}, spec);
  stream->Push(PatternPiece(spec, 0, 0, 16));
  stream->Push(PatternPiece(spec, 0, 20, 12));  // positions 16..19 skipped
  FinishInto(*stream, &o);
  ASSERT_TRUE(o.Finished());
  ASSERT_TRUE(o.Arrived());
  EXPECT_FALSE(o.sent.ok());
  ASSERT_FALSE(o.kv.ok());
  EXPECT_NE(o.kv.status().message().find("position 16 comes next"), std::string::npos)
      << o.kv.status();
}

TEST(TcpTransportTest, AnIncompleteTransferIsRefused) {
  auto rx = Transport();
  auto tx = Transport();
  const KvTransferSpec spec = KvSpec(8, 0, 32);
  Outcome o;
  ExpectInto(*rx, spec, &o);
  auto stream = tx->Open({rx->endpoint()}, spec);
  for (int32_t l = 0; l < 2; ++l) stream->Push(PatternPiece(spec, l, 0, 32));  // layer 2 missing
  FinishInto(*stream, &o);
  ASSERT_TRUE(o.Finished());
  ASSERT_TRUE(o.Arrived());
  EXPECT_EQ(o.sent.code(), absl::StatusCode::kDataLoss) << o.sent;
  EXPECT_FALSE(o.kv.ok());
}

TEST(TcpTransportTest, OtherLayoutOrUnknownTransferIsRefused) {
  auto rx = Transport();
  auto tx = Transport();
  Outcome o;
  ExpectInto(*rx, KvSpec(9, 0, 16), &o);
  KvTransferSpec other = KvSpec(9, 0, 16);
  other.layout.head_dim = 16;
  auto stream = tx->Open({rx->endpoint()}, other);
  FinishInto(*stream, &o);
  ASSERT_TRUE(o.Arrived());
  EXPECT_EQ(o.kv.status().code(), absl::StatusCode::kFailedPrecondition) << o.kv.status();
  ASSERT_TRUE(o.Finished());
  EXPECT_FALSE(o.sent.ok());

  Outcome unknown;
  auto stray = tx->Open({rx->endpoint()}, KvSpec(12345, 0, 16));
  stray->Push(PatternPiece(KvSpec(12345, 0, 16), 0, 0, 16));
  FinishInto(*stray, &unknown);
  ASSERT_TRUE(unknown.Finished());
  EXPECT_FALSE(unknown.sent.ok());
}

TEST(TcpTransportTest, AnAbortedSenderFailsTheReceiverAndForgetSilencesIt) {
  auto rx = Transport();
  auto tx = Transport();
  const KvTransferSpec spec = KvSpec(10, 0, 32);
  Outcome o;
  ExpectInto(*rx, spec, &o);
  {
    auto stream = tx->Open({rx->endpoint()}, spec);
    stream->Push(PatternPiece(spec, 0, 0, 32));
    for (int i = 0; i < 1000 && rx->Stats().bytes_received == 0; ++i)
      absl::SleepFor(absl::Milliseconds(5));
    ASSERT_GT(rx->Stats().bytes_received, 0);
    // Dropped halfway without Finish: the connection is cut.
  }
  ASSERT_TRUE(o.Arrived());
  EXPECT_FALSE(o.kv.ok());

  // A forgotten transfer never calls back, even when its data comes.
  bool called = false;
  ASSERT_TRUE(rx->Expect(KvSpec(11, 0, 16), [&](auto) { called = true; }).ok());
  rx->Forget(11);
  Outcome late;
  auto stream = tx->Open({rx->endpoint()}, KvSpec(11, 0, 16));
  for (int32_t l = 0; l < 3; ++l) stream->Push(PatternPiece(KvSpec(11, 0, 16), l, 0, 16));
  FinishInto(*stream, &late);
  ASSERT_TRUE(late.Finished());
  EXPECT_FALSE(late.sent.ok());
  EXPECT_FALSE(called);
}

TEST(TcpTransportTest, AnUnreachablePeerFailsTheSender) {
  auto tx = Transport();
  int port;
  {
    auto gone = Transport();
    port = std::stoi(gone->endpoint().substr(gone->endpoint().rfind(':') + 1));
  }
  Outcome o;
  auto stream = tx->Open({"127.0.0.1:" + std::to_string(port)}, KvSpec(1, 0, 16));
  FinishInto(*stream, &o);
  ASSERT_TRUE(o.Finished());
  EXPECT_EQ(o.sent.code(), absl::StatusCode::kUnavailable) << o.sent;
}

TEST(TcpTransportTest, ConnectionsBeyondTheLimitAreClosedAtOnce) {
  TcpTransportOptions o;
  o.max_connections = 4;
  o.header_timeout_ms = 60000;  // the idle ones stay while this test looks
  auto rx = Transport(o);
  auto tx = Transport();
  std::vector<int> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(RawConnect(*rx));
  // The accept thread takes them in order; wait until all four are held.
  for (int i = 0; i < 200 && rx->Stats().refused_over_limit == 0; ++i) {
    const int extra = RawConnect(*rx);
    const std::string what = RawFate(extra, 100);
    ::close(extra);
    if (what == "closed") break;
  }
  EXPECT_GE(rx->Stats().refused_over_limit, 1);
  for (int fd : idle) EXPECT_EQ(RawFate(fd, 50), "open");
  // A transfer while the limit is taken fails, as a refused connection
  // (the decode worker then computes the prompt itself) ...
  const KvTransferSpec spec = KvSpec(77, 0, 16);
  Outcome refused;
  ExpectInto(*rx, spec, &refused);
  auto stream = tx->Open({rx->endpoint()}, spec);
  for (int32_t l = 0; l < 3; ++l) stream->Push(PatternPiece(spec, l, 0, 16));
  FinishInto(*stream, &refused);
  EXPECT_TRUE(refused.Finished());
  EXPECT_FALSE(refused.sent.ok());
  rx->Forget(77);
  // ... and once they go, transfers arrive again.
  for (int fd : idle) ::close(fd);
  bool arrived = false;
  for (int i = 0; i < 50 && !arrived; ++i) arrived = Roundtrip(*rx, *tx, 1000 + i);
  EXPECT_TRUE(arrived);
  EXPECT_EQ(rx->Stats().transfers_failed, 0) << "a refused connection is not a transfer";
}

TEST(TcpTransportTest, AConnectionWithoutAHeaderInTimeIsClosed) {
  TcpTransportOptions o;
  o.header_timeout_ms = 300;
  auto rx = Transport(o);
  const int silent = RawConnect(*rx);
  const int partial = RawConnect(*rx);
  SendAll(partial, "TFKV", 4);  // a quarter of a header, then nothing
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(RawFate(silent, 5000), "closed");
  EXPECT_EQ(RawFate(partial, 5000), "closed");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_LT(seconds, 2.5) << "closed after the header timeout (0.3 s), not the io timeout (3 s)";
  // A header that trickles in, a byte every 0.1 s, is cut at 0.3 s too:
  // the timeout bounds the whole header, not each read.
  const int drip = RawConnect(*rx);
  const auto dripped = std::chrono::steady_clock::now();
  std::string fate = "open";
  for (int i = 0; i < 20 && fate == "open"; ++i) {
    (void)::send(drip, "T", 1, MSG_NOSIGNAL);
    fate = RawFate(drip, 100);
  }
  EXPECT_EQ(fate, "closed");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - dripped).count(), 1.5);
  ::close(drip);
  ::close(silent);
  ::close(partial);
  EXPECT_EQ(rx->Stats().refused_bad_header, 3);
  EXPECT_EQ(rx->Stats().transfers_failed, 0);
}

TEST(TcpTransportTest, AHeaderForATransferNotExpectedIsRefusedWithoutItsPayload) {
  auto rx = Transport();
  Outcome o;
  ExpectInto(*rx, KvSpec(5, 0, 16), &o);
  // Well formed, but for a transfer nobody handed out.
  const int fd = RawConnect(*rx);
  const auto header = EncodeStreamHeader(KvSpec(6, 0, 16));
  SendAll(fd, header.data(), header.size());
  std::string got;
  EXPECT_EQ(RawFate(fd, 5000, &got), "closed");
  EXPECT_EQ(got, std::string(1, '\0')) << "one refusal byte, then the end";
  ::close(fd);
  // Bad magic: refused as a bad header.
  const int junk = RawConnect(*rx);
  std::array<uint8_t, kStreamHeaderBytes> garbage{};
  garbage.fill(0xab);
  SendAll(junk, garbage.data(), garbage.size());
  EXPECT_EQ(RawFate(junk, 5000), "closed");
  ::close(junk);
  EXPECT_EQ(rx->Stats().refused_unexpected, 1);
  EXPECT_EQ(rx->Stats().refused_bad_header, 1);
  EXPECT_EQ(rx->Stats().transfers_failed, 0);
  EXPECT_FALSE(o.Arrived(absl::Milliseconds(100))) << "the transfer expected is untouched";
  auto tx = Transport();
  auto stream = tx->Open({rx->endpoint()}, KvSpec(5, 0, 16));
  for (int32_t l = 0; l < 3; ++l) stream->Push(PatternPiece(KvSpec(5, 0, 16), l, 0, 16));
  FinishInto(*stream, &o);
  ASSERT_TRUE(o.Arrived());
  EXPECT_TRUE(o.kv.ok()) << o.kv.status();
}

TEST(TcpTransportTest, TheListenerOutlivesRunningOutOfDescriptors) {
  auto rx = Transport();
  auto tx = Transport();
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(OpenDescriptors() + 16);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  // Connect until no descriptor is left. The last connections wait in the
  // listener's backlog, where accept fails with EMFILE.
  std::vector<int> held;
  for (int i = 0; i < 64; ++i) {
    const int fd = RawConnect(*rx);
    if (fd < 0) break;
    held.push_back(fd);
  }
  absl::SleepFor(absl::Milliseconds(500));  // accept runs into the limit
  for (int fd : held) ::close(fd);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_LT(held.size(), 64u) << "the descriptor limit was never reached";
  bool arrived = false;
  for (int i = 0; i < 3 && !arrived; ++i) arrived = Roundtrip(*rx, *tx, 2000 + i);
  EXPECT_TRUE(arrived) << "the listener stopped accepting after EMFILE";
}

}  // namespace
}  // namespace tokenfab
