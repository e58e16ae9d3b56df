// The KV wire format, shared by every transport (version kKvWireVersion;
// workers whose versions differ are refused when they attach to a router).
// All integers little-endian.
//
// A transfer is one stream (a TCP connection):
//
//   StreamHeader   40 bytes
//     u32 magic 'TFKV' (0x564b4654)   u32 version
//     u64 transfer_id
//     i32 num_layers  i32 num_kv_heads  i32 head_dim  i32 dtype (0 f16, 1 f32)
//     i32 first_position  i32 end_position
//   then pieces, each a PieceHeader and its payload:
//   PieceHeader    24 bytes
//     i32 layer  i32 first_position  i32 count  i32 reserved (0)
//     u64 payload_bytes = count * 2 * num_kv_heads * head_dim * element size
//   payload: K of the `count` positions, then V, each [position][head][dim]
//   the end: a PieceHeader with layer = -1 and everything else 0.
//   The receiver answers one byte: 1 when every layer's positions
//   [first_position, end_position) arrived, in order, exactly once; 0 if not.
//
// Within a layer pieces come in position order with no gap or overlap;
// layers may interleave. A receiver checks every field against the transfer
// it expects before it reads a payload.
//
// Over NCCL the same headers travel in frames, because one communicator
// (one per prefill->decode pair) carries every transfer between the pair,
// interleaved. Each frame is one 64-byte NCCL message:
//
//   Frame          64 bytes
//     u32 kind (1 open, 2 piece, 3 end, 4 abort)  u32 reserved (0)
//     u64 transfer_id
//     open:  the StreamHeader (40 bytes)
//     piece: the PieceHeader (24 bytes), then two NCCL messages: the K half
//            of the payload, then the V half (payload_bytes / 2 each)
//     end, abort: nothing
//     zeros to 64 bytes
//
// There is no acknowledgement: a transfer is done when the receiver has
// every layer's positions by its end frame; an abort frame says the sender
// gave up. A receiver that no longer expects a transfer still reads its
// payloads (into scratch) so the frames after them stay in step.
#ifndef TOKENFAB_WORKER_TRANSPORT_KV_WIRE_H_
#define TOKENFAB_WORKER_TRANSPORT_KV_WIRE_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "worker/transport/kv_transport.h"

namespace tokenfab {

inline constexpr int32_t kKvWireVersion = 1;
inline constexpr uint32_t kKvWireMagic = 0x564b4654;  // "TFKV"
inline constexpr size_t kStreamHeaderBytes = 40;
inline constexpr size_t kPieceHeaderBytes = 24;
inline constexpr int32_t kEndOfTransfer = -1;
inline constexpr size_t kFrameBytes = 64;

struct PieceHeader {
  int32_t layer = 0;
  int32_t first_position = 0;
  int32_t count = 0;
  uint64_t payload_bytes = 0;
};

std::array<uint8_t, kStreamHeaderBytes> EncodeStreamHeader(const KvTransferSpec& spec);
// The transfer id of a header (to find the expected spec), after checking
// magic and version.
absl::StatusOr<uint64_t> StreamHeaderTransferId(const uint8_t* bytes);
// Checks a header against the transfer the receiver expects.
absl::Status CheckStreamHeader(const uint8_t* bytes, const KvTransferSpec& expected);

std::array<uint8_t, kPieceHeaderBytes> EncodePieceHeader(const PieceHeader& piece);
PieceHeader DecodePieceHeader(const uint8_t* bytes);

enum class FrameKind : uint32_t { kOpen = 1, kPiece = 2, kEnd = 3, kAbort = 4 };

struct Frame {
  FrameKind kind = FrameKind::kEnd;
  uint64_t transfer_id = 0;
  // open: the StreamHeader's bytes; piece: the PieceHeader's.
  std::array<uint8_t, kStreamHeaderBytes> body{};
};

std::array<uint8_t, kFrameBytes> EncodeOpenFrame(const KvTransferSpec& spec);
std::array<uint8_t, kFrameBytes> EncodePieceFrame(uint64_t transfer_id, const PieceHeader& piece);
std::array<uint8_t, kFrameBytes> EncodeFrame(FrameKind kind, uint64_t transfer_id);
// InvalidArgument for an unknown kind, a non-zero reserved field or padding,
// or an open frame whose header's transfer id is not the frame's.
absl::StatusOr<Frame> DecodeFrame(const uint8_t* bytes);

// Tracks which positions of each layer have arrived and checks each piece's
// header against the spec before its payload is read. With `host_bytes`
// false it only tracks and computes offsets (a transport that receives into
// device memory) and Take is not called.
class KvAssembly {
 public:
  explicit KvAssembly(const KvTransferSpec& spec, bool host_bytes = true);
  // OK if `piece` is the next run of its layer and its size is right.
  absl::Status Accept(const PieceHeader& piece);
  // Where the payload of the piece just accepted goes, as offsets into the
  // transfer's [layer][K|V][position][head][dim] bytes, and in `bytes`.
  int64_t KOffset(const PieceHeader& piece) const;
  int64_t VOffset(const PieceHeader& piece) const;
  uint8_t* KDestination(const PieceHeader& piece);
  uint8_t* VDestination(const PieceHeader& piece);
  bool Complete() const;
  std::unique_ptr<ReceivedKv> Take();

 private:
  std::unique_ptr<ReceivedKv> kv_;
  std::vector<int32_t> next_;  // per layer, the next position expected
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TRANSPORT_KV_WIRE_H_
