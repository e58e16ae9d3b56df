#include "worker/transport/kv_transport.h"

#include "common/status_macros.h"
#include "worker/engine/backend.h"

namespace tokenfab {

absl::Status ReceivedKv::WriteTo(Backend& backend, std::span<const int32_t> block_table) const {
  if (bytes.size() != static_cast<size_t>(spec.TotalBytes())) {
    return absl::InternalError("the KV that arrived is not the size of its transfer");
  }
  const size_t layer_bytes = static_cast<size_t>(spec.LayerBytes());
  for (int32_t l = 0; l < spec.layout.num_layers; ++l) {
    RETURN_IF_ERROR(
        backend.WriteKv(l, block_table, spec.first_position, spec.positions(),
                        std::span<const uint8_t>(bytes).subspan(l * layer_bytes, layer_bytes)));
  }
  return absl::OkStatus();
}

absl::Status KvSendStream::PushSlice(const Backend& backend, const KvSlice& slice) {
  KvPiece piece;
  piece.layer = slice.layer;
  piece.first_position = slice.first_position;
  piece.count = slice.count;
  piece.bytes.resize(static_cast<size_t>(backend.kv_layout().PositionBytes() * slice.count));
  RETURN_IF_ERROR(backend.ReadKv(slice.layer, slice.block_table, slice.first_position, slice.count,
                                 piece.bytes));
  Push(std::move(piece));
  return absl::OkStatus();
}

absl::StatusOr<KvRoute> KvTransport::Route(const std::string& /*sender*/,
                                           uint64_t /*transfer_id*/) {
  return KvRoute{endpoint(), ""};
}

void KvTransport::Failed(uint64_t transfer_id, const absl::Status& /*why*/) { Forget(transfer_id); }

absl::Status CheckTransferSpec(const KvTransferSpec& spec) {
  if (spec.positions() <= 0 || spec.first_position < 0 || spec.layout.num_layers <= 0 ||
      spec.layout.PositionBytes() <= 0) {
    return absl::InvalidArgumentError("an empty or malformed KV transfer");
  }
  return absl::OkStatus();
}

ExpectedKv::ExpectedKv(const KvTransferSpec& s, KvTransport::Arrival on_arrival) : spec(s) {
  absl::MutexLock lock(&mu_);
  on_arrival_ = std::move(on_arrival);
}

void ExpectedKv::Deliver(absl::StatusOr<std::unique_ptr<ReceivedKv>> kv) {
  absl::MutexLock lock(&mu_);
  if (on_arrival_) std::exchange(on_arrival_, nullptr)(std::move(kv));
}

void ExpectedKv::Silence() {
  absl::MutexLock lock(&mu_);
  on_arrival_ = nullptr;
}

KvTransportStats KvTransportCounters::Snapshot() const {
  KvTransportStats s;
  s.bytes_sent = bytes_sent.load();
  s.bytes_received = bytes_received.load();
  s.transfers_sent = transfers_sent.load();
  s.transfers_received = transfers_received.load();
  s.transfers_failed = transfers_failed.load();
  s.seconds_sent = static_cast<double>(micros_sent.load()) * 1e-6;
  s.seconds_received = static_cast<double>(micros_received.load()) * 1e-6;
  s.refused_over_limit = refused_over_limit.load();
  s.refused_bad_header = refused_bad_header.load();
  s.refused_unexpected = refused_unexpected.load();
  return s;
}

}  // namespace tokenfab
