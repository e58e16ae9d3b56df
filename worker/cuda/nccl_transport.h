// The nccl KvTransport, for GPU workers: KV moves from the prefill worker's
// GPU to the decode worker's without touching host memory.
//
// One NCCL communicator per (prefill worker -> decode worker) pair and
// direction, two ranks: 0 sends, 1 receives. The decode worker owns its set-up:
// the first transfer it routes from a prefill worker creates the
// communicator and an ncclUniqueId that the Prefill RPC carries (KvTarget's
// nccl_unique_id); both sides join it in the background. Every transfer
// between the pair then shares it, interleaved in frames (kv_wire.h).
//
// Sending: each slice the engine pushes (one layer of one prefill chunk,
// right after that layer is computed) is gathered from the KV blocks into a
// device buffer on the backend's KV stream; the communicator's thread sends
// it on its own stream once the gather is done, so the transfer of early
// layers overlaps the compute of later ones. Receiving: the communicator's
// thread receives each piece straight to its place in a device staging
// buffer for the whole transfer; the engine scatters it into the sequence's
// blocks (CudaBackend::UnpackKv) when it takes the arrival.
//
// Each side keeps at most `max_peers` communicators per direction and tears
// down the least recently used idle one for a new peer. A receiving
// communicator posts receives only while frames are due (a transfer routed
// to it has not ended), so an idle pair holds no kernel on the GPU. A
// transfer or a set-up with no progress for io_timeout_ms, or an NCCL
// error, tears the pair's communicator down (ncclCommAbort) and fails its
// transfers: the decode worker recomputes them. Failures of a communicator
// are Aborted errors, and the Prefill call carries them back, so the
// decode worker tears its side down too (Failed); a sender asked for a
// communicator it no longer has answers the same way. The next transfer
// between the pair then sets up a new communicator.
//
// NCCL is loaded with dlopen (nccl_api.h). Thread-safe.
#ifndef TOKENFAB_WORKER_CUDA_NCCL_TRANSPORT_H_
#define TOKENFAB_WORKER_CUDA_NCCL_TRANSPORT_H_

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "worker/cuda/nccl_api.h"
#include "worker/cuda/nccl_channel.h"
#include "worker/engine/cuda_module.h"
#include "worker/transport/kv_transport.h"

namespace tokenfab::cuda {

class NcclTransport : public KvTransport {
 public:
  static absl::StatusOr<std::unique_ptr<NcclTransport>> Create(const NcclTransportOptions& options);
  ~NcclTransport() override;  // fails transfers in flight, aborts every communicator

  std::string_view kind() const override { return "nccl"; }
  // "cuda:0, NCCL 2.28.9" (no address: peers reach it through the Prefill RPC).
  std::string endpoint() const override { return endpoint_; }
  absl::Status Expect(const KvTransferSpec& spec, Arrival on_arrival) override;
  absl::StatusOr<KvRoute> Route(const std::string& sender, uint64_t transfer_id) override;
  void Forget(uint64_t transfer_id) override;
  void Failed(uint64_t transfer_id, const absl::Status& why) override;
  std::unique_ptr<KvSendStream> Open(const KvRoute& route, const KvTransferSpec& spec) override;
  KvTransportStats Stats() const override;

  // Communicators open now, sending and receiving (tests).
  int32_t communicators() const;

  struct Expected;

 private:
  NcclTransport(const NcclTransportOptions& options, const NcclApi* api);
  std::shared_ptr<NcclChannel> StartChannel(bool sender, uint64_t id, const ncclUniqueId& unique_id,
                                            std::string peer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes room for one more channel in `by_key`: false if every one is busy.
  template <typename Map>
  bool MakeRoom(Map& by_key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tears `ch` down: its thread aborts the communicator and exits; its
  // transfers fail with `why`.
  void Break(const std::shared_ptr<NcclChannel>& ch, const absl::Status& why);
  // On the channel's thread: selects the GPU and joins the communicator.
  absl::Status Establish(NcclChannel& ch);
  void SendLoop(const std::shared_ptr<NcclChannel>& ch);
  void ReceiveLoop(const std::shared_ptr<NcclChannel>& ch);
  // Removes the expected transfer and returns it (null if gone).
  std::shared_ptr<Expected> Claim(uint64_t transfer_id);
  void JoinExited() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const NcclTransportOptions options_;
  const NcclApi* const api_;
  const std::string endpoint_;
  std::shared_ptr<KvTransportCounters> counters_ = std::make_shared<KvTransportCounters>();

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t tick_ ABSL_GUARDED_BY(mu_) = 0;  // for least-recently-used order
  std::mt19937_64 ids_ ABSL_GUARDED_BY(mu_){std::random_device{}()};
  absl::flat_hash_map<uint64_t, std::shared_ptr<Expected>> expected_ ABSL_GUARDED_BY(mu_);
  // Receiving channels by the sending worker's address; sending channels by id.
  absl::flat_hash_map<std::string, std::shared_ptr<NcclChannel>> receiving_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::shared_ptr<NcclChannel>> sending_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<NcclChannel>> all_
      ABSL_GUARDED_BY(mu_);  // until their threads are joined
};

}  // namespace tokenfab::cuda

#endif  // TOKENFAB_WORKER_CUDA_NCCL_TRANSPORT_H_
