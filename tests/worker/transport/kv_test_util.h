// Shared by the KV transport tests (tcp here, nccl in tests/worker/cuda):
// transfers of a small layout, pieces whose every byte depends on (layer,
// position, K or V, offset), and the outcome of a transfer on both sides.
#ifndef TOKENFAB_TESTS_WORKER_TRANSPORT_KV_TEST_UTIL_H_
#define TOKENFAB_TESTS_WORKER_TRANSPORT_KV_TEST_UTIL_H_

#include <memory>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "worker/transport/kv_transport.h"

namespace tokenfab::testing {

inline KvTransferSpec KvSpec(uint64_t id, int32_t first, int32_t end,
                             KvDType dtype = KvDType::kF16) {
  KvTransferSpec s;
  s.transfer_id = id;
  s.layout = {3, 2, 8, dtype};
  s.first_position = first;
  s.end_position = end;
  return s;
}

// Byte i of (layer, position, K/V half) is a function of all four, so any
// misplaced byte shows.
inline uint8_t KvPattern(int32_t layer, int32_t pos, int32_t half, int64_t i) {
  return static_cast<uint8_t>(layer * 31 + pos * 7 + half * 101 + i * 3);
}

inline KvPiece PatternPiece(const KvTransferSpec& s, int32_t layer, int32_t first, int32_t count) {
  KvPiece p{layer, first, count, {}};
  const int64_t row = s.layout.PositionBytes() / 2;
  p.bytes.resize(static_cast<size_t>(2 * row * count));
  for (int32_t half = 0; half < 2; ++half) {
    for (int32_t i = 0; i < count; ++i) {
      for (int64_t b = 0; b < row; ++b) {
        p.bytes[half * row * count + i * row + b] = KvPattern(layer, first + i, half, b);
      }
    }
  }
  return p;
}

// Bytes of a whole transfer ([layer][K|V][position][head][dim]) that differ
// from the pattern; -1 if the size is wrong.
inline int64_t WrongPatternBytes(const KvTransferSpec& spec, const std::vector<uint8_t>& bytes) {
  if (static_cast<int64_t>(bytes.size()) != spec.TotalBytes()) return -1;
  const int64_t row = spec.layout.PositionBytes() / 2;
  const int32_t n = spec.positions();
  int64_t wrong = 0;
  for (int32_t l = 0; l < spec.layout.num_layers; ++l) {
    for (int32_t half = 0; half < 2; ++half) {
      for (int32_t i = 0; i < n; ++i) {
        for (int64_t b = 0; b < row; ++b) {
          wrong += bytes[l * spec.LayerBytes() + half * row * n + i * row + b] !=
                   KvPattern(l, spec.first_position + i, half, b);
        }
      }
    }
  }
  return wrong;
}

struct KvOutcome {
  absl::Notification arrived, finished;
  absl::StatusOr<std::unique_ptr<ReceivedKv>> kv = absl::UnknownError("none");
  absl::Status sent = absl::UnknownError("none");

  bool Arrived(absl::Duration timeout = absl::Seconds(10)) {
    return arrived.WaitForNotificationWithTimeout(timeout);
  }
  bool Finished(absl::Duration timeout = absl::Seconds(10)) {
    return finished.WaitForNotificationWithTimeout(timeout);
  }
};

inline void ExpectInto(KvTransport& t, const KvTransferSpec& s, KvOutcome* o) {
  ASSERT_TRUE(t.Expect(s, [o](absl::StatusOr<std::unique_ptr<ReceivedKv>> kv) {
                 o->kv = std::move(kv);
                 o->arrived.Notify();
               }).ok());
}

inline void FinishInto(KvSendStream& stream, KvOutcome* o) {
  stream.Finish([o](absl::Status s) {
    o->sent = s;
    o->finished.Notify();
  });
}

}  // namespace tokenfab::testing

#endif  // TOKENFAB_TESTS_WORKER_TRANSPORT_KV_TEST_UTIL_H_
