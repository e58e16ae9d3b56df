// The tcp KV transport on loopback: pieces arrive intact in the documented
// layout whatever their order across layers, and every malformed or
// abandoned transfer fails on both sides instead of hanging or corrupting.
#include "worker/transport/tcp_transport.h"

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

std::unique_ptr<TcpTransport> Transport() {
  TcpTransportOptions o;
  o.io_timeout_ms = 3000;
  return std::move(*TcpTransport::Create(o));
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

}  // namespace
}  // namespace tokenfab
