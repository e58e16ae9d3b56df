#include "server/loadgen/driver.h"

#include <algorithm>
#include <atomic>
#include <thread>

namespace tokenfab::loadgen {

std::vector<RequestRecord> RunLoad(LoadClient& client, const std::vector<LoadRequest>& requests,
                                   const std::vector<double>& arrivals, int max_in_flight) {
  const size_t n = requests.size();
  std::vector<RequestRecord> records(n);
  std::atomic<size_t> next{0};
  const Clock::time_point origin = Clock::now();
  auto slot = [&] {
    for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
      const double due = i < arrivals.size() ? arrivals[i] : 0.0;
      std::this_thread::sleep_until(
          origin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(due)));
      records[i] = client.Send(requests[i], origin);
    }
  };
  const size_t threads = std::min(n, static_cast<size_t>(std::max(1, max_in_flight)));
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (size_t t = 0; t < threads; ++t) pool.emplace_back(slot);
  for (std::thread& t : pool) t.join();
  return records;
}

}  // namespace tokenfab::loadgen
