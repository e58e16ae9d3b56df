#include "worker/transport/kv_wire.h"

#include <bit>
#include <cstring>

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

KvAssembly::KvAssembly(const KvTransferSpec& spec)
    : kv_(std::make_unique<ReceivedKv>()), next_(spec.layout.num_layers, spec.first_position) {
  kv_->spec = spec;
  kv_->bytes.resize(static_cast<size_t>(spec.TotalBytes()));
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

uint8_t* KvAssembly::KDestination(const PieceHeader& p) {
  const KvTransferSpec& s = kv_->spec;
  const int64_t row = s.layout.PositionBytes() / 2;
  return kv_->bytes.data() + p.layer * s.LayerBytes() + (p.first_position - s.first_position) * row;
}

uint8_t* KvAssembly::VDestination(const PieceHeader& p) {
  return KDestination(p) + kv_->spec.LayerBytes() / 2;
}

bool KvAssembly::Complete() const {
  for (int32_t n : next_) {
    if (n != kv_->spec.end_position) return false;
  }
  return true;
}

std::unique_ptr<ReceivedKv> KvAssembly::Take() { return std::move(kv_); }

}  // namespace tokenfab
