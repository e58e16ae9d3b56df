// A server stream's writer for messages produced on another thread (the
// engine's or a worker call's): queues them and keeps one gRPC write in
// flight, as the callback API requires. The final message (IsFinal) is
// written with the call's OK status. If a write fails the client is gone:
// nothing more is written, and the call is finished with CANCELLED once the
// final message comes (so the server can always shut down).
//
// Writes start outside the lock: gRPC may run the completion inline.
#ifndef TOKENFAB_SERVER_QUEUED_STREAM_WRITER_H_
#define TOKENFAB_SERVER_QUEUED_STREAM_WRITER_H_

#include <algorithm>
#include <deque>
#include <functional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"

namespace tokenfab {

template <typename Message, typename Wire>
class QueuedStreamWriter {
 public:
  using Reactor = grpc::ServerWriteReactor<Wire>;

  QueuedStreamWriter(Reactor* reactor, std::function<bool(const Message&)> is_final,
                     std::function<Wire(const Message&)> to_wire)
      : reactor_(reactor), is_final_(std::move(is_final)), to_wire_(std::move(to_wire)) {}

  // Any thread. Messages after the final one are dropped.
  void Push(const Message& m) {
    Reactor* reactor;
    bool last = false;
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      if (reactor_ == nullptr) return;
      if (broken_) {
        if (!is_final_(m)) return;
        finish = true;
        reactor = std::exchange(reactor_, nullptr);
      } else {
        queue_.push_back(m);
        reactor = NextLocked(&last);
      }
    }
    if (finish) {
      reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    } else {
      Write(reactor, last);
    }
  }

  // From the reactor's OnWriteDone.
  void WriteDone(bool ok) {
    Reactor* reactor = nullptr;
    bool last = false;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (ok) {
        reactor = NextLocked(&last);
      } else {
        broken_ = true;
        const bool final_queued = std::any_of(queue_.begin(), queue_.end(), is_final_);
        queue_.clear();
        if (!final_queued || reactor_ == nullptr) return;
        reactor = std::exchange(reactor_, nullptr);
      }
    }
    if (ok) {
      Write(reactor, last);
    } else {
      reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    }
  }

  // From the reactor's OnDone, or when the call was finished otherwise:
  // nothing is written after this.
  void Detach() {
    absl::MutexLock lock(&mu_);
    reactor_ = nullptr;
  }

 private:
  Reactor* NextLocked(bool* last) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || queue_.empty() || reactor_ == nullptr) return nullptr;
    *last = is_final_(queue_.front());
    current_ = to_wire_(queue_.front());
    queue_.pop_front();
    writing_ = true;
    Reactor* r = reactor_;
    if (*last) reactor_ = nullptr;  // the call ends with this write
    return r;
  }

  void Write(Reactor* reactor, bool last) {
    if (reactor == nullptr) return;
    if (last) {
      reactor->StartWriteAndFinish(&current_, grpc::WriteOptions(), grpc::Status::OK);
    } else {
      reactor->StartWrite(&current_);
    }
  }

  absl::Mutex mu_;
  Reactor* reactor_ ABSL_GUARDED_BY(mu_);
  const std::function<bool(const Message&)> is_final_;
  const std::function<Wire(const Message&)> to_wire_;
  std::deque<Message> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  Wire current_;  // the message in flight; replaced only between writes
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_QUEUED_STREAM_WRITER_H_
