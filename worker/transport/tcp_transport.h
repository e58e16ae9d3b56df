// The tcp KvTransport, for CPU workers: a listener that receives transfers
// (one connection each, handled on its own thread) and send streams that
// each own a connection and a thread. The wire format is kv_wire.h.
//
// Every read and write has a timeout, so a peer that stops halfway fails its
// transfer instead of holding a thread; the decode worker then recomputes.
#ifndef TOKENFAB_WORKER_TRANSPORT_TCP_TRANSPORT_H_
#define TOKENFAB_WORKER_TRANSPORT_TCP_TRANSPORT_H_

#include <atomic>
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
