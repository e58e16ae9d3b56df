// KV transfer over the tcp transport on loopback, as disaggregated prefill
// moves it: for a prompt of N tokens (N = 1k, 4k, 16k), the prefill side
// packs each 512-token chunk's KV layer by layer out of its paged cache,
// pushes the pieces to a send stream, and the decode side receives the
// whole transfer and copies it into its own blocks. Printed per size:
// the bytes moved, the transport alone (first push to complete arrival) and
// the whole path (pack + transfer + unpack) as latency and GB/s, next to one
// plain memcpy of the same bytes. Median of --repeats runs.
//
//   build/bench/kv_transfer_bench [--model PATH] [--repeats 5]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <thread>

#include "absl/synchronization/notification.h"
#include "bench/bench_util.h"
#include "server/cli/engine_flags.h"
#include "server/cli/flags.h"
#include "worker/engine/kv_cache.h"
#include "worker/model_loader.h"
#include "worker/transport/tcp_transport.h"

namespace tokenfab {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct Times {
  double transport, total;
};

Times OneTransfer(const ModelConfig& config, KvCache& src, KvCache& dst, TcpTransport& tx,
                  TcpTransport& rx, int32_t tokens, uint64_t id) {
  const KvLayout layout = src.layout();
  std::vector<int32_t> table((tokens + kKvBlockSize - 1) / kKvBlockSize);
  std::iota(table.begin(), table.end(), 0);
  KvTransferSpec spec{id, layout, 0, tokens};
  absl::Notification arrived;
  std::unique_ptr<ReceivedKv> kv;
  Clock::time_point arrival;
  if (!rx.Expect(spec, [&](absl::StatusOr<std::unique_ptr<ReceivedKv>> r) {
           arrival = Clock::now();
           if (r.ok()) kv = std::move(*r);
           arrived.Notify();
         }).ok()) {
    std::abort();
  }
  const auto start = Clock::now();
  auto stream = tx.Open({rx.endpoint()}, spec);
  constexpr int32_t kChunk = 512;  // the engine's default --max-batched-tokens
  Clock::time_point first_push{};
  for (int32_t first = 0; first < tokens; first += kChunk) {
    const int32_t count = std::min(kChunk, tokens - first);
    for (int32_t l = 0; l < layout.num_layers; ++l) {
      KvPiece p{l, first, count, std::vector<uint8_t>(layout.PositionBytes() * count)};
      src.ReadPositions(l, table, first, count, p.bytes.data());
      if (first_push == Clock::time_point{}) first_push = Clock::now();
      stream->Push(std::move(p));
    }
  }
  absl::Notification sent;
  stream->Finish([&](absl::Status s) {
    if (!s.ok()) std::fprintf(stderr, "transfer failed: %s\n", std::string(s.message()).c_str());
    sent.Notify();
  });
  arrived.WaitForNotification();
  sent.WaitForNotification();
  if (kv == nullptr) std::abort();
  for (int32_t l = 0; l < layout.num_layers; ++l) {
    dst.WritePositions(l, table, 0, tokens, kv->bytes.data() + l * spec.LayerBytes());
  }
  const auto end = Clock::now();
  (void)config;
  return {Seconds(arrival - first_push), Seconds(end - start)};
}

}  // namespace
}  // namespace tokenfab

int main(int argc, char** argv) {
  using namespace tokenfab;
  std::string model_path = DefaultModelPath();
  int32_t repeats = 5;
  FlagSet flags("kv_transfer_bench", "KV transfer throughput and latency over the tcp transport.");
  flags.AddString("model", &model_path, "model whose KV layout is moved (default: SmolLM2)");
  flags.AddInt("repeats", &repeats, "runs per size; the median is printed (default 5)");
  bench::ParseOrExit(flags, argc, argv);
  auto model = LoadModel(model_path, {.load_weights = false});
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  const ModelConfig& config = (*model)->config;
  const int32_t max_tokens = 16384;
  const int32_t blocks = max_tokens / kKvBlockSize;
  auto src = KvCache::Create(config, {blocks, KvDType::kF16});
  auto dst = KvCache::Create(config, {blocks, KvDType::kF16});
  auto tx = TcpTransport::Create({});
  auto rx = TcpTransport::Create({});
  if (!src.ok() || !dst.ok() || !tx.ok() || !rx.ok()) return 1;
  // Non-zero KV so nothing is special about the bytes.
  {
    std::vector<float> k(config.kv_dim()), v(config.kv_dim());
    for (size_t i = 0; i < k.size(); ++i) k[i] = 0.001f * static_cast<float>(i % 97), v[i] = -k[i];
    for (int32_t l = 0; l < config.num_layers; ++l) {
      for (int32_t b = 0; b < blocks; ++b) {
        for (int32_t s = 0; s < kKvBlockSize; ++s) (*src)->Write(l, b, s, k.data(), v.data());
      }
    }
  }
  const KvLayout layout = (*src)->layout();
  std::printf(
      "# KV transfer, tcp transport on loopback (one process, sender and receiver threads)\n");
  std::printf(
      "# machine: %s, %u hardware threads; model %s: %d layers x %d KV heads x %d dims, f16 "
      "(%lld bytes per token)\n",
      bench::CpuName().c_str(), std::thread::hardware_concurrency(), config.name.c_str(),
      layout.num_layers, layout.num_kv_heads, layout.head_dim,
      static_cast<long long>(layout.PositionBytes() * layout.num_layers));
  std::printf("# pieces: 512-token chunks, one per layer; median of %d runs\n", repeats);
  std::printf("%8s %10s | %12s %9s | %14s %9s | %12s %9s\n", "tokens", "MiB", "transport ms",
              "GB/s", "pack+send+unpack ms", "GB/s", "memcpy ms", "GB/s");
  uint64_t id = 1;
  for (int32_t tokens : {1024, 4096, 16384}) {
    const double bytes = static_cast<double>(layout.PositionBytes()) * layout.num_layers * tokens;
    std::vector<double> transport, total, copy;
    std::vector<uint8_t> a(static_cast<size_t>(bytes), 1), b(static_cast<size_t>(bytes));
    for (int r = 0; r < repeats; ++r) {
      const Times t = OneTransfer(config, **src, **dst, **tx, **rx, tokens, id++);
      transport.push_back(t.transport);
      total.push_back(t.total);
      const auto c0 = Clock::now();
      std::memcpy(b.data(), a.data(), a.size());
      copy.push_back(Seconds(Clock::now() - c0));
      a[r] = b[a.size() - 1 - r];  // keep the copy observable
    }
    const double tr = bench::Median(transport), to = bench::Median(total), cp = bench::Median(copy);
    std::printf("%8d %10.1f | %12.1f %9.2f | %14.1f %9.2f | %12.2f %9.2f\n", tokens,
                bytes / (1 << 20), tr * 1e3, bytes / tr / 1e9, to * 1e3, bytes / to / 1e9, cp * 1e3,
                bytes / cp / 1e9);
  }
  return 0;
}
