// KvTransport: how a prefill worker's KV reaches a decode worker's blocks.
//
// The decode worker registers a transfer (Expect) with the positions it
// wants and gets all of them at once when the last piece has arrived, in a
// staging buffer it then copies into its own blocks on the engine thread (so
// a transfer that outlives its request never writes into reused blocks). The
// prefill worker opens a send stream per transfer and pushes pieces (one
// layer, a run of positions) as its prefill chunks complete, so the transfer
// of early chunks overlaps the compute of later ones.
//
// Implementations: tcp (tcp_transport.h, CPU workers); nccl (GPU workers,
// loaded with the CUDA backend). Thread-safe: any method from any thread.
#ifndef TOKENFAB_WORKER_TRANSPORT_KV_TRANSPORT_H_
#define TOKENFAB_WORKER_TRANSPORT_KV_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/kv_cache.h"

namespace tokenfab {

// One transfer: the KV of positions [first_position, end_position) of one
// sequence, every layer.
struct KvTransferSpec {
  uint64_t transfer_id = 0;
  KvLayout layout;
  int32_t first_position = 0;
  int32_t end_position = 0;

  int32_t positions() const { return end_position - first_position; }
  int64_t LayerBytes() const { return layout.PositionBytes() * positions(); }
  int64_t TotalBytes() const { return LayerBytes() * layout.num_layers; }
};

// A piece on its way: one layer's K and V for `count` positions from
// `first_position`, packed [K|V][position][head][dim].
struct KvPiece {
  int32_t layer = 0;
  int32_t first_position = 0;
  int32_t count = 0;
  std::vector<uint8_t> bytes;
};

// A completed transfer, [layer][K|V][position][head][dim] for the spec's
// positions: layer l's run starts at l * spec.LayerBytes() and is packed as
// one KvPiece over all the positions.
struct ReceivedKv {
  KvTransferSpec spec;
  std::vector<uint8_t> bytes;
};

// The sending half of one transfer. Push never blocks (pieces queue); Finish
// reports, on a transport thread, whether every piece was delivered and the
// receiver confirmed the transfer complete. Abort gives up (the receiver sees
// a failed transfer).
class KvSendStream {
 public:
  virtual ~KvSendStream() = default;
  virtual void Push(KvPiece piece) = 0;
  virtual void Finish(std::function<void(absl::Status)> done) = 0;
  virtual void Abort() = 0;
};

struct KvTransportStats {
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;
  int64_t transfers_sent = 0;
  int64_t transfers_received = 0;
  int64_t transfers_failed = 0;  // either side
  // Wall time of completed transfers, from the stream's start to its
  // acknowledgement. A sender streams while its prefill computes, so its
  // time includes waiting for layers.
  double seconds_sent = 0;
  double seconds_received = 0;
};

class KvTransport {
 public:
  using Arrival = std::function<void(absl::StatusOr<std::unique_ptr<ReceivedKv>>)>;

  virtual ~KvTransport() = default;

  virtual std::string_view kind() const = 0;
  // What a sender passes to Open to reach this transport.
  virtual std::string endpoint() const = 0;

  // Receiving side: `on_arrival` runs once, on a transport thread, with the
  // whole transfer or the reason it failed. AlreadyExists for an id in use.
  virtual absl::Status Expect(const KvTransferSpec& spec, Arrival on_arrival) = 0;
  // The transfer is no longer wanted; on_arrival is not called after this
  // returns (unless it is running now).
  virtual void Forget(uint64_t transfer_id) = 0;

  // Sending side: a stream to `peer_endpoint` for `spec`. Connecting happens
  // in the background; a failure shows in Finish.
  virtual std::unique_ptr<KvSendStream> Open(const std::string& peer_endpoint,
                                             const KvTransferSpec& spec) = 0;

  virtual KvTransportStats Stats() const = 0;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TRANSPORT_KV_TRANSPORT_H_
