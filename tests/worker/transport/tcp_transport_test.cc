// The tcp KV transport on loopback: pieces arrive intact in the documented
// layout whatever their order across layers, and every malformed or
// abandoned transfer fails on both sides instead of hanging or corrupting.
#include "worker/transport/tcp_transport.h"

#include <random>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "worker/transport/kv_wire.h"

namespace tokenfab {
namespace {

KvTransferSpec Spec(uint64_t id, int32_t first, int32_t end) {
  KvTransferSpec s;
  s.transfer_id = id;
  s.layout = {3, 2, 8, KvDType::kF16};
  s.first_position = first;
  s.end_position = end;
  return s;
}

// Byte b of (layer, position, K/V half) is a function of all three, so any
// misplaced byte shows.
uint8_t Pattern(int32_t layer, int32_t pos, int32_t half, int64_t i) {
  return static_cast<uint8_t>(layer * 31 + pos * 7 + half * 101 + i * 3);
}

KvPiece Piece(const KvTransferSpec& s, int32_t layer, int32_t first, int32_t count) {
  KvPiece p{layer, first, count, {}};
  const int64_t row = s.layout.PositionBytes() / 2;
  p.bytes.resize(static_cast<size_t>(2 * row * count));
  for (int32_t half = 0; half < 2; ++half) {
    for (int32_t i = 0; i < count; ++i) {
      for (int64_t b = 0; b < row; ++b) {
        p.bytes[half * row * count + i * row + b] = Pattern(layer, first + i, half, b);
      }
    }
  }
  return p;
}

struct Outcome {
  absl::Notification arrived, finished;
  absl::StatusOr<std::unique_ptr<ReceivedKv>> kv = absl::UnknownError("none");
  absl::Status sent = absl::UnknownError("none");
};

void Expect(TcpTransport& t, const KvTransferSpec& s, Outcome* o) {
  ASSERT_TRUE(t.Expect(s, [o](absl::StatusOr<std::unique_ptr<ReceivedKv>> kv) {
                 o->kv = std::move(kv);
                 o->arrived.Notify();
               }).ok());
}

void FinishInto(KvSendStream& stream, Outcome* o) {
  stream.Finish([o](absl::Status s) {
    o->sent = s;
    o->finished.Notify();
  });
}

std::unique_ptr<TcpTransport> Transport() {
  TcpTransportOptions o;
  o.io_timeout_ms = 3000;
  return std::move(*TcpTransport::Create(o));
}

TEST(TcpTransportTest, PiecesArriveInTheDocumentedLayout) {
  auto rx = Transport();
  auto tx = Transport();
  const KvTransferSpec spec = Spec(42, 16, 53);
  Outcome o;
  Expect(*rx, spec, &o);
  auto stream = tx->Open(rx->endpoint(), spec);
  // Chunks as a chunked prefill makes them: every layer of [16,40), then of [40,53).
  for (auto [first, count] : {std::pair{16, 24}, std::pair{40, 13}}) {
    for (int32_t l = 0; l < 3; ++l) stream->Push(Piece(spec, l, first, count));
  }
  FinishInto(*stream, &o);
  ASSERT_TRUE(o.finished.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(o.arrived.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(o.sent.ok()) << o.sent;
  ASSERT_TRUE(o.kv.ok()) << o.kv.status();
  const ReceivedKv& kv = **o.kv;
  ASSERT_EQ(static_cast<int64_t>(kv.bytes.size()), spec.TotalBytes());
  const int64_t row = spec.layout.PositionBytes() / 2;
  const int32_t n = spec.positions();
  for (int32_t l = 0; l < 3; ++l) {
    for (int32_t half = 0; half < 2; ++half) {
      for (int32_t i = 0; i < n; ++i) {
        for (int64_t b = 0; b < row; ++b) {
          ASSERT_EQ(kv.bytes[l * spec.LayerBytes() + half * row * n + i * row + b],
                    Pattern(l, spec.first_position + i, half, b))
              << "layer " << l << " half " << half << " position " << i;
        }
      }
    }
  }
  EXPECT_EQ(tx->Stats().bytes_sent, spec.TotalBytes());
  EXPECT_EQ(rx->Stats().bytes_received, spec.TotalBytes());
  EXPECT_EQ(rx->Stats().transfers_received, 1);
}

TEST(TcpTransportTest, AGapInALayerFailsBothSides) {
  auto rx = Transport();
  auto tx = Transport();
  const KvTransferSpec spec = Spec(7, 0, 32);
  Outcome o;
  Expect(*rx, spec, &o);
  auto stream = tx->Open(rx->endpoint(), spec);
  stream->Push(Piece(spec, 0, 0, 16));
  stream->Push(Piece(spec, 0, 20, 12));  // positions 16..19 skipped
  FinishInto(*stream, &o);
  ASSERT_TRUE(o.finished.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(o.arrived.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(o.sent.ok());
  ASSERT_FALSE(o.kv.ok());
  EXPECT_NE(o.kv.status().message().find("position 16 comes next"), std::string::npos)
      << o.kv.status();
}

TEST(TcpTransportTest, AnIncompleteTransferIsRefused) {
  auto rx = Transport();
  auto tx = Transport();
  const KvTransferSpec spec = Spec(8, 0, 32);
  Outcome o;
  Expect(*rx, spec, &o);
  auto stream = tx->Open(rx->endpoint(), spec);
  for (int32_t l = 0; l < 2; ++l) stream->Push(Piece(spec, l, 0, 32));  // layer 2 missing
  FinishInto(*stream, &o);
  ASSERT_TRUE(o.finished.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(o.arrived.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(o.sent.code(), absl::StatusCode::kDataLoss) << o.sent;
  EXPECT_FALSE(o.kv.ok());
}

TEST(TcpTransportTest, OtherLayoutOrUnknownTransferIsRefused) {
  auto rx = Transport();
  auto tx = Transport();
  Outcome o;
  Expect(*rx, Spec(9, 0, 16), &o);
  KvTransferSpec other = Spec(9, 0, 16);
  other.layout.head_dim = 16;
  auto stream = tx->Open(rx->endpoint(), other);
  FinishInto(*stream, &o);
  ASSERT_TRUE(o.arrived.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(o.kv.status().code(), absl::StatusCode::kFailedPrecondition) << o.kv.status();
  ASSERT_TRUE(o.finished.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(o.sent.ok());

  Outcome unknown;
  auto stray = tx->Open(rx->endpoint(), Spec(12345, 0, 16));
  stray->Push(Piece(Spec(12345, 0, 16), 0, 0, 16));
  FinishInto(*stray, &unknown);
  ASSERT_TRUE(unknown.finished.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(unknown.sent.ok());
}

TEST(TcpTransportTest, AnAbortedSenderFailsTheReceiverAndForgetSilencesIt) {
  auto rx = Transport();
  auto tx = Transport();
  const KvTransferSpec spec = Spec(10, 0, 32);
  Outcome o;
  Expect(*rx, spec, &o);
  {
    auto stream = tx->Open(rx->endpoint(), spec);
    stream->Push(Piece(spec, 0, 0, 32));
    for (int i = 0; i < 1000 && rx->Stats().bytes_received == 0; ++i)
      absl::SleepFor(absl::Milliseconds(5));
    ASSERT_GT(rx->Stats().bytes_received, 0);
    // Dropped halfway without Finish: the connection is cut.
  }
  ASSERT_TRUE(o.arrived.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(o.kv.ok());

  // A forgotten transfer never calls back, even when its data comes.
  bool called = false;
  ASSERT_TRUE(rx->Expect(Spec(11, 0, 16), [&](auto) { called = true; }).ok());
  rx->Forget(11);
  Outcome late;
  auto stream = tx->Open(rx->endpoint(), Spec(11, 0, 16));
  for (int32_t l = 0; l < 3; ++l) stream->Push(Piece(Spec(11, 0, 16), l, 0, 16));
  FinishInto(*stream, &late);
  ASSERT_TRUE(late.finished.WaitForNotificationWithTimeout(absl::Seconds(10)));
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
  auto stream = tx->Open("127.0.0.1:" + std::to_string(port), Spec(1, 0, 16));
  FinishInto(*stream, &o);
  ASSERT_TRUE(o.finished.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(o.sent.code(), absl::StatusCode::kUnavailable) << o.sent;
}

}  // namespace
}  // namespace tokenfab
