#include "worker/transport/kv_wire.h"

#include <bit>
#include <cstring>

#include "common/status_macros.h"
#include "common/strings.h"

namespace tokenfab {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the KV wire format is little-endian; a big-endian host needs byte swaps here");

template <typename T>
void Put(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}
template <typename T>
T Get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

int32_t DTypeCode(KvDType d) {
  switch (d) {
    case KvDType::kF16:
      return 0;
    case KvDType::kF32:
      return 1;
    case KvDType::kBF16:
      return 2;
  }
  return -1;
}

}  // namespace

std::array<uint8_t, kStreamHeaderBytes> EncodeStreamHeader(const KvTransferSpec& spec) {
  std::array<uint8_t, kStreamHeaderBytes> h{};
  Put<uint32_t>(&h[0], kKvWireMagic);
  Put<uint32_t>(&h[4], kKvWireVersion);
  Put<uint64_t>(&h[8], spec.transfer_id);
  Put<int32_t>(&h[16], spec.layout.num_layers);
  Put<int32_t>(&h[20], spec.layout.num_kv_heads);
  Put<int32_t>(&h[24], spec.layout.head_dim);
  Put<int32_t>(&h[28], DTypeCode(spec.layout.dtype));
  Put<int32_t>(&h[32], spec.first_position);
  Put<int32_t>(&h[36], spec.end_position);
  return h;
}

absl::StatusOr<uint64_t> StreamHeaderTransferId(const uint8_t* b) {
  if (Get<uint32_t>(b) != kKvWireMagic) {
    return absl::InvalidArgumentError("not a tokenfab KV stream (bad magic)");
  }
  if (const uint32_t v = Get<uint32_t>(b + 4); v != static_cast<uint32_t>(kKvWireVersion)) {
    return absl::FailedPreconditionError(
        StrCat("KV wire version ", v, " from the sender, this worker speaks ", kKvWireVersion));
  }
  return Get<uint64_t>(b + 8);
}

absl::Status CheckStreamHeader(const uint8_t* b, const KvTransferSpec& e) {
  const int32_t layers = Get<int32_t>(b + 16), heads = Get<int32_t>(b + 20),
                dim = Get<int32_t>(b + 24), dtype = Get<int32_t>(b + 28),
                first = Get<int32_t>(b + 32), end = Get<int32_t>(b + 36);
  if (layers != e.layout.num_layers || heads != e.layout.num_kv_heads || dim != e.layout.head_dim ||
      dtype != DTypeCode(e.layout.dtype)) {
    return absl::FailedPreconditionError(StrCat(
        "KV layout of the sender (", layers, " layers, ", heads, " heads of ", dim, ", dtype ",
        dtype, ") differs from this worker's (", e.layout.num_layers, ", ", e.layout.num_kv_heads,
        ", ", e.layout.head_dim, ", ", DTypeCode(e.layout.dtype), ")"));
  }
  if (first != e.first_position || end != e.end_position) {
    return absl::InvalidArgumentError(StrCat("KV positions [", first, ", ", end, ") sent, [",
                                             e.first_position, ", ", e.end_position, ") expected"));
  }
  return absl::OkStatus();
}

std::array<uint8_t, kPieceHeaderBytes> EncodePieceHeader(const PieceHeader& p) {
  std::array<uint8_t, kPieceHeaderBytes> h{};
  Put<int32_t>(&h[0], p.layer);
  Put<int32_t>(&h[4], p.first_position);
  Put<int32_t>(&h[8], p.count);
  Put<int32_t>(&h[12], 0);
  Put<uint64_t>(&h[16], p.payload_bytes);
  return h;
}

PieceHeader DecodePieceHeader(const uint8_t* b) {
  PieceHeader p;
  p.layer = Get<int32_t>(b);
  p.first_position = Get<int32_t>(b + 4);
  p.count = Get<int32_t>(b + 8);
  p.payload_bytes = Get<uint64_t>(b + 16);
  return p;
}

std::array<uint8_t, kFrameBytes> EncodeFrame(FrameKind kind, uint64_t transfer_id) {
  std::array<uint8_t, kFrameBytes> f{};
  Put<uint32_t>(&f[0], static_cast<uint32_t>(kind));
  Put<uint64_t>(&f[8], transfer_id);
  return f;
}

std::array<uint8_t, kFrameBytes> EncodeOpenFrame(const KvTransferSpec& spec) {
  std::array<uint8_t, kFrameBytes> f = EncodeFrame(FrameKind::kOpen, spec.transfer_id);
  const auto h = EncodeStreamHeader(spec);
  std::memcpy(&f[16], h.data(), h.size());
  return f;
}

std::array<uint8_t, kFrameBytes> EncodePieceFrame(uint64_t transfer_id, const PieceHeader& piece) {
  std::array<uint8_t, kFrameBytes> f = EncodeFrame(FrameKind::kPiece, transfer_id);
  const auto h = EncodePieceHeader(piece);
  std::memcpy(&f[16], h.data(), h.size());
  return f;
}

absl::StatusOr<Frame> DecodeFrame(const uint8_t* b) {
  Frame f;
  const uint32_t kind = Get<uint32_t>(b);
  if (kind < static_cast<uint32_t>(FrameKind::kOpen) ||
      kind > static_cast<uint32_t>(FrameKind::kAbort)) {
    return absl::InvalidArgumentError(StrCat("KV frame of unknown kind ", kind));
  }
  f.kind = static_cast<FrameKind>(kind);
  f.transfer_id = Get<uint64_t>(b + 8);
  const size_t body = f.kind == FrameKind::kOpen    ? kStreamHeaderBytes
                      : f.kind == FrameKind::kPiece ? kPieceHeaderBytes
                                                    : 0;
  bool zeros = Get<uint32_t>(b + 4) == 0;
  if (f.kind == FrameKind::kPiece) zeros = zeros && Get<int32_t>(b + 16 + 12) == 0;
  for (size_t i = 16 + body; i < kFrameBytes; ++i) zeros = zeros && b[i] == 0;
  if (!zeros) return absl::InvalidArgumentError("KV frame with non-zero reserved bytes");
  std::memcpy(f.body.data(), b + 16, body);
  if (f.kind == FrameKind::kOpen) {
    ASSIGN_OR_RETURN(const uint64_t id, StreamHeaderTransferId(f.body.data()));
    if (id != f.transfer_id) {
      return absl::InvalidArgumentError(
          StrCat("KV open frame of transfer ", f.transfer_id, " carries the header of ", id));
    }
  }
  return f;
}

KvAssembly::KvAssembly(const KvTransferSpec& spec, bool host_bytes)
    : kv_(std::make_unique<ReceivedKv>()), next_(spec.layout.num_layers, spec.first_position) {
  kv_->spec = spec;
  if (host_bytes) kv_->bytes.resize(static_cast<size_t>(spec.TotalBytes()));
}

absl::Status KvAssembly::Accept(const PieceHeader& p) {
  const KvTransferSpec& s = kv_->spec;
  if (p.layer < 0 || p.layer >= s.layout.num_layers) {
    return absl::InvalidArgumentError(
        StrCat("KV piece for layer ", p.layer, " of ", s.layout.num_layers));
  }
  if (p.count <= 0 || p.first_position != next_[p.layer] ||
      static_cast<int64_t>(p.first_position) + p.count > s.end_position) {
    return absl::InvalidArgumentError(StrCat("KV piece of layer ", p.layer, " for positions [",
                                             p.first_position, ", +", p.count, ") where position ",
                                             next_[p.layer], " comes next (transfer ends at ",
                                             s.end_position, ")"));
  }
  if (p.payload_bytes !=
      static_cast<uint64_t>(s.layout.PositionBytes()) * static_cast<uint64_t>(p.count)) {
    return absl::InvalidArgumentError(StrCat("KV piece of ", p.count, " positions carries ",
                                             p.payload_bytes, " bytes, not ",
                                             s.layout.PositionBytes() * p.count));
  }
  next_[p.layer] += p.count;
  return absl::OkStatus();
}

int64_t KvAssembly::KOffset(const PieceHeader& p) const {
  const KvTransferSpec& s = kv_->spec;
  const int64_t row = s.layout.PositionBytes() / 2;
  return p.layer * s.LayerBytes() + (p.first_position - s.first_position) * row;
}

int64_t KvAssembly::VOffset(const PieceHeader& p) const {
  return KOffset(p) + kv_->spec.LayerBytes() / 2;
}

uint8_t* KvAssembly::KDestination(const PieceHeader& p) { return kv_->bytes.data() + KOffset(p); }

uint8_t* KvAssembly::VDestination(const PieceHeader& p) { return kv_->bytes.data() + VOffset(p); }

bool KvAssembly::Complete() const {
  for (int32_t n : next_) {
    if (n != kv_->spec.end_position) return false;
  }
  return true;
}

std::unique_ptr<ReceivedKv> KvAssembly::Take() { return std::move(kv_); }

}  // namespace tokenfab
