// The KV wire format's NCCL frames and the assembly offsets both transports
// share: every frame round-trips, every malformed frame is refused, and a
// piece's K and V land where the documented layout says.
#include "worker/transport/kv_wire.h"

#include "gtest/gtest.h"

namespace tokenfab {
namespace {

KvTransferSpec Spec() {
  KvTransferSpec s;
  s.transfer_id = 0x1122334455667788ULL;
  s.layout = {4, 2, 8, KvDType::kBF16};
  s.first_position = 16;
  s.end_position = 48;
  return s;
}

TEST(KvWireTest, FramesRoundTrip) {
  const KvTransferSpec spec = Spec();
  auto open = DecodeFrame(EncodeOpenFrame(spec).data());
  ASSERT_TRUE(open.ok()) << open.status();
  EXPECT_EQ(open->kind, FrameKind::kOpen);
  EXPECT_EQ(open->transfer_id, spec.transfer_id);
  EXPECT_TRUE(CheckStreamHeader(open->body.data(), spec).ok());

  const PieceHeader piece{3, 16, 5, static_cast<uint64_t>(spec.layout.PositionBytes() * 5)};
  auto p = DecodeFrame(EncodePieceFrame(spec.transfer_id, piece).data());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->kind, FrameKind::kPiece);
  const PieceHeader back = DecodePieceHeader(p->body.data());
  EXPECT_EQ(back.layer, 3);
  EXPECT_EQ(back.first_position, 16);
  EXPECT_EQ(back.count, 5);
  EXPECT_EQ(back.payload_bytes, piece.payload_bytes);

  for (FrameKind k : {FrameKind::kEnd, FrameKind::kAbort}) {
    auto f = DecodeFrame(EncodeFrame(k, 7).data());
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->kind, k);
    EXPECT_EQ(f->transfer_id, 7u);
  }
}

TEST(KvWireTest, MalformedFramesAreRefused) {
  const KvTransferSpec spec = Spec();
  auto bad_kind = EncodeFrame(FrameKind::kEnd, 1);
  bad_kind[0] = 9;
  EXPECT_EQ(DecodeFrame(bad_kind.data()).status().code(), absl::StatusCode::kInvalidArgument);

  auto reserved = EncodeFrame(FrameKind::kEnd, 1);
  reserved[4] = 1;
  EXPECT_FALSE(DecodeFrame(reserved.data()).ok());

  auto piece_reserved = EncodePieceFrame(1, {0, 0, 1, 64});
  piece_reserved[16 + 12] = 1;
  EXPECT_FALSE(DecodeFrame(piece_reserved.data()).ok());

  auto padding = EncodePieceFrame(1, {0, 0, 1, 64});
  padding[kFrameBytes - 1] = 1;
  EXPECT_FALSE(DecodeFrame(padding.data()).ok());

  auto other_id = EncodeOpenFrame(spec);
  other_id[8] ^= 1;  // the frame's id, not the header's
  EXPECT_FALSE(DecodeFrame(other_id.data()).ok());

  auto magic = EncodeOpenFrame(spec);
  magic[16] ^= 1;
  EXPECT_FALSE(DecodeFrame(magic.data()).ok());

  auto version = EncodeOpenFrame(spec);
  version[20] += 1;
  EXPECT_EQ(DecodeFrame(version.data()).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(KvWireTest, OffsetsFollowTheLayoutWithoutHostBytes) {
  const KvTransferSpec spec = Spec();
  KvAssembly host(spec), device(spec, /*host_bytes=*/false);
  const int64_t row = spec.layout.PositionBytes() / 2;  // K or V of one position
  const PieceHeader first{2, 16, 10, static_cast<uint64_t>(2 * row * 10)};
  const PieceHeader second{2, 26, 22, static_cast<uint64_t>(2 * row * 22)};
  for (KvAssembly* a : {&host, &device}) {
    ASSERT_TRUE(a->Accept(first).ok());
    EXPECT_EQ(a->KOffset(first), 2 * spec.LayerBytes());
    EXPECT_EQ(a->VOffset(first), 2 * spec.LayerBytes() + spec.LayerBytes() / 2);
    ASSERT_TRUE(a->Accept(second).ok());
    EXPECT_EQ(a->KOffset(second), 2 * spec.LayerBytes() + 10 * row);
    EXPECT_FALSE(a->Complete());  // layers 0, 1 and 3 are missing
  }
  EXPECT_EQ(host.KDestination(second) - host.KDestination(first), 10 * row);
  // A piece that skips ahead, repeats, or carries the wrong size is refused.
  EXPECT_FALSE(device.Accept({1, 17, 1, static_cast<uint64_t>(2 * row)}).ok());
  EXPECT_FALSE(device.Accept({2, 40, 1, static_cast<uint64_t>(2 * row)}).ok());
  EXPECT_FALSE(device.Accept({0, 16, 1, static_cast<uint64_t>(row)}).ok());
}

}  // namespace
}  // namespace tokenfab
