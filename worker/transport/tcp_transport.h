// The tcp KvTransport, for CPU workers: a listener that receives transfers
// (one connection each, handled on its own thread) and send streams that
// each own a connection and a thread. The wire format is kv_wire.h.
//
// Every read and write has a timeout, so a peer that stops halfway fails its
// transfer instead of holding a thread; the decode worker then recomputes.
//
// The port takes anything that connects, so what a connection may cost is
// bounded before it says which transfer it brings: at most max_connections
// are received at once (more are closed at accept), a stream header must
// come within header_timeout_ms, and only a header naming a transfer this
// transport expects gets further. Transfer ids are 64 random bits that the
// decode worker hands the prefill worker over the (keyed) Prefill RPC, so a
// stranger cannot name one. Refused connections are counted by reason
// (KvTransportStats) and never as transfers.
#ifndef TOKENFAB_WORKER_TRANSPORT_TCP_TRANSPORT_H_
#define TOKENFAB_WORKER_TRANSPORT_TCP_TRANSPORT_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "worker/transport/kv_transport.h"

namespace tokenfab {

struct TcpTransportOptions {
  std::string listen_host = "127.0.0.1";
  int32_t port = 0;  // 0 picks a free one
  // The host peers connect to (default: listen_host, or 127.0.0.1 when it is
  // a wildcard address).
  std::string advertise_host;
  int32_t io_timeout_ms = 30000;
  // Connections received at once. A decode worker expects at most one
  // transfer per running sequence, so the worker sets this from
  // --max-num-seqs with room to spare.
  int32_t max_connections = 256;
  // A sender writes its stream header right after connecting.
  int32_t header_timeout_ms = 5000;
};

class TcpTransport : public KvTransport {
 public:
  static absl::StatusOr<std::unique_ptr<TcpTransport>> Create(const TcpTransportOptions& options);
  ~TcpTransport() override;  // fails transfers in flight, joins every thread

  std::string_view kind() const override { return "tcp"; }
  std::string endpoint() const override { return endpoint_; }
  absl::Status Expect(const KvTransferSpec& spec, Arrival on_arrival) override;
  void Forget(uint64_t transfer_id) override;
  std::unique_ptr<KvSendStream> Open(const KvRoute& route, const KvTransferSpec& spec) override;
  KvTransportStats Stats() const override;

  struct Expected;
  struct SendState;

 private:
  TcpTransport(const TcpTransportOptions& options, int listen_fd, std::string endpoint);
  void AcceptLoop();
  void Receive(int fd);
  // A send stream's thread: the transfer, then its outcome reported.
  absl::Status Send(SendState& state);
  void SendDone(SendState& state, absl::Status status,
                std::chrono::steady_clock::time_point started);
  std::shared_ptr<Expected> Claim(uint64_t transfer_id);

  const TcpTransportOptions options_;
  const int listen_fd_;
  const std::string endpoint_;
  std::shared_ptr<KvTransportCounters> counters_ = std::make_shared<KvTransportCounters>();

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Expected>> expected_ ABSL_GUARDED_BY(mu_);
  std::vector<int> receiving_fds_ ABSL_GUARDED_BY(mu_);
  int32_t live_threads_ ABSL_GUARDED_BY(mu_) = 0;  // receivers and senders
  std::vector<std::weak_ptr<SendState>> senders_ ABSL_GUARDED_BY(mu_);
  std::thread accept_thread_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TRANSPORT_TCP_TRANSPORT_H_
