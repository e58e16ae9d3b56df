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
// The receiving side also names the route a sender takes (Route): an
// address for tcp; for nccl, the pair's communicator and, while it is being
// set up, its bootstrap id. The KV itself never has to leave the backend's
// memory: a send stream reads each slice from the backend (PushSlice) and a
// received transfer writes itself into the backend's blocks (WriteTo), so a
// GPU transport packs, moves and unpacks in device memory.
//
// Implementations: tcp (tcp_transport.h, CPU workers); nccl
// (worker/cuda/nccl_transport.h, GPU workers, in the CUDA module).
// Thread-safe: any method from any thread.
#ifndef TOKENFAB_WORKER_TRANSPORT_KV_TRANSPORT_H_
#define TOKENFAB_WORKER_TRANSPORT_KV_TRANSPORT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "worker/engine/kv_cache.h"

namespace tokenfab {

class Backend;

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

// Where a piece comes from: `count` positions from `first_position` of one
// layer of the sequence with `block_table`, in the sending engine's backend.
struct KvSlice {
  int32_t layer = 0;
  std::span<const int32_t> block_table;
  int32_t first_position = 0;
  int32_t count = 0;
};

// A completed transfer. In host memory (`bytes`), it is
// [layer][K|V][position][head][dim] for the spec's positions: layer l's run
// starts at l * spec.LayerBytes() and is packed as one KvPiece over all the
// positions. A transport that receives into device memory leaves `bytes`
// empty and overrides WriteTo.
struct ReceivedKv {
  virtual ~ReceivedKv() = default;
  // Writes the transfer into the blocks of a sequence with `block_table` in
  // `backend` (on the engine thread). The default writes `bytes` layer by
  // layer with Backend::WriteKv.
  virtual absl::Status WriteTo(Backend& backend, std::span<const int32_t> block_table) const;

  KvTransferSpec spec;
  std::vector<uint8_t> bytes;
};

// What a sender needs to reach the receiving transport for one transfer;
// the Prefill RPC carries it (KvTarget's endpoint and nccl_unique_id).
struct KvRoute {
  std::string endpoint;   // tcp: host:port; nccl: the pair communicator's id
  std::string bootstrap;  // nccl: the ncclUniqueId while the pair is being set up
};

// The sending half of one transfer. Push never blocks (pieces queue); Finish
// reports, on a transport thread, whether every piece was delivered and the
// receiver confirmed the transfer complete. Abort gives up (the receiver sees
// a failed transfer).
class KvSendStream {
 public:
  virtual ~KvSendStream() = default;
  // Queues one slice of `backend`'s cache. Called on the engine thread right
  // after the slice's layer is computed; the blocks hold it only until the
  // step returns, so the stream takes its copy before returning (or, in the
  // backend's own device memory, orders it before the backend's next step).
  // The default reads the slice to host memory with Backend::ReadKv and
  // Pushes it. An error queues nothing; the engine then aborts the stream.
  virtual absl::Status PushSlice(const Backend& backend, const KvSlice& slice);
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
  // Connections the receiving side closed before they named a transfer it
  // expects (tcp), by reason: over its connection limit; no valid stream
  // header in time; a header for a transfer not expected here (unknown,
  // given up or already received). None of them counts as a transfer.
  int64_t refused_over_limit = 0;
  int64_t refused_bad_header = 0;
  int64_t refused_unexpected = 0;
};

class KvTransport {
 public:
  using Arrival = std::function<void(absl::StatusOr<std::unique_ptr<ReceivedKv>>)>;

  virtual ~KvTransport() = default;

  virtual std::string_view kind() const = 0;
  // Where this transport listens, for the start-up log (tcp: host:port).
  virtual std::string endpoint() const = 0;

  // Receiving side: `on_arrival` runs once, on a transport thread, with the
  // whole transfer or the reason it failed. AlreadyExists for an id in use.
  virtual absl::Status Expect(const KvTransferSpec& spec, Arrival on_arrival) = 0;
  // The route for an expected transfer that worker `sender` (its Worker
  // service address) will send. The default is {endpoint(), ""}.
  virtual absl::StatusOr<KvRoute> Route(const std::string& sender, uint64_t transfer_id);
  // The transfer is no longer wanted; on_arrival is not called after this
  // returns (unless it is running now).
  virtual void Forget(uint64_t transfer_id) = 0;
  // As Forget, after the transfer failed on the way (the sender refused or
  // vanished, or the transfer timed out). A transport with per-peer state
  // drops it when `why` is Aborted, the code its senders give when their
  // side of the pair is gone. The default is Forget.
  virtual void Failed(uint64_t transfer_id, const absl::Status& why);

  // Sending side: a stream along `route` for `spec`. Connecting happens in
  // the background; a failure shows in Finish.
  virtual std::unique_ptr<KvSendStream> Open(const KvRoute& route, const KvTransferSpec& spec) = 0;

  virtual KvTransportStats Stats() const = 0;
};

// Shared by the implementations.

// Checks a transfer a receiver is asked to expect: InvalidArgument when it
// is empty or malformed.
absl::Status CheckTransferSpec(const KvTransferSpec& spec);

// A transfer a receiving transport waits for. Its callback runs at most
// once (Deliver), and not after Silence returns, unless running then.
class ExpectedKv {
 public:
  ExpectedKv(const KvTransferSpec& spec, KvTransport::Arrival on_arrival);
  void Deliver(absl::StatusOr<std::unique_ptr<ReceivedKv>> kv);
  void Silence();

  const KvTransferSpec spec;

 private:
  absl::Mutex mu_;
  KvTransport::Arrival on_arrival_ ABSL_GUARDED_BY(mu_);
};

// Adds `e` to a receiving transport's expected transfers (by transfer id),
// under the transport's lock: Unavailable while it stops, AlreadyExists for
// an id in use.
template <typename Map, typename ExpectedPtr>
absl::Status AddExpected(Map& expected, bool stopping, ExpectedPtr e) {
  if (stopping) return absl::UnavailableError("the KV transport is shutting down");
  const uint64_t id = e->spec.transfer_id;
  if (!expected.emplace(id, std::move(e)).second) {
    return absl::AlreadyExistsError("the KV transfer is already expected");
  }
  return absl::OkStatus();
}

// A transport's counters, shared with its threads; Snapshot is its Stats().
struct KvTransportCounters {
  std::atomic<int64_t> bytes_sent{0}, bytes_received{0}, transfers_sent{0}, transfers_received{0},
      transfers_failed{0};
  std::atomic<int64_t> micros_sent{0}, micros_received{0};
  std::atomic<int64_t> refused_over_limit{0}, refused_bad_header{0}, refused_unexpected{0};
  KvTransportStats Snapshot() const;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TRANSPORT_KV_TRANSPORT_H_
