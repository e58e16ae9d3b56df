// Owning handles of GPU memory (cudaMalloc) and pinned host memory
// (cudaMallocHost), freed on destruction. Sizes are in elements of T.
#ifndef TOKENFAB_WORKER_CUDA_DEVICE_BUFFER_H_
#define TOKENFAB_WORKER_CUDA_DEVICE_BUFFER_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "absl/status/statusor.h"
#include "worker/cuda/cuda_status.h"

namespace tokenfab::cuda {

template <typename T, bool kPinnedHost = false>
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      Free();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~Buffer() { Free(); }

  static absl::StatusOr<Buffer> Allocate(size_t count, const char* what) {
    Buffer b;
    if (count == 0) return b;
    void* p = nullptr;
    const cudaError_t e =
        kPinnedHost ? cudaMallocHost(&p, count * sizeof(T)) : cudaMalloc(&p, count * sizeof(T));
    if (e != cudaSuccess) {
      return CudaStatus(e, what);
    }
    b.data_ = static_cast<T*>(p);
    b.size_ = count;
    return b;
  }

  // Grows (without keeping contents) to at least `count` elements.
  absl::Status Reserve(size_t count, const char* what) {
    if (count <= size_) return absl::OkStatus();
    Free();
    ASSIGN_OR_RETURN(*this, Allocate(count, what));
    return absl::OkStatus();
  }

  T* get() const { return data_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }

 private:
  void Free() {
    if (data_ == nullptr) return;
    if (kPinnedHost) {
      cudaFreeHost(data_);
    } else {
      cudaFree(data_);
    }
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  size_t size_ = 0;
};

template <typename T>
using DeviceBuffer = Buffer<T, false>;
template <typename T>
using PinnedBuffer = Buffer<T, true>;

}  // namespace tokenfab::cuda

#endif  // TOKENFAB_WORKER_CUDA_DEVICE_BUFFER_H_
