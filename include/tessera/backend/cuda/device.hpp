// The device side of tessera::cuda: which GPUs exist, a stream to queue work
// on, and the raw allocation and copy calls the typed buffers are built from.
// No CUDA or HIP header is included here, so host code that uses the API
// compiles with any C++20 compiler; the runtime lives in src/cuda.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tessera::cuda {

/// Number of usable GPUs; 0 when there is no driver or no device. Never throws,
/// so tests and programs can ask before touching anything else.
int device_count() noexcept;

/// What the kernels size themselves from, read once per device.
struct DeviceInfo {
  std::string name;
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;     // compute capability (gfx major/minor on HIP)
  size_t total_bytes = 0;             // device memory
  size_t l2_bytes = 0;
  size_t smem_per_block_optin = 0;    // largest dynamic shared memory a block may ask for
};

/// Facts about device `device`. Error if it does not exist.
DeviceInfo device_info(int device = 0);

/// An owned stream on one device. Every call of the API takes one and queues its
/// kernels on it; copies to and from the host synchronise it. Not copyable.
class Stream {
 public:
  explicit Stream(int device = 0);
  ~Stream();
  Stream(Stream&& o) noexcept : handle_(o.handle_), device_(o.device_) { o.handle_ = nullptr; }
  Stream& operator=(Stream&& o) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  /// Waits for all queued work; a kernel's asynchronous fault surfaces here as Error.
  void synchronize() const;
  /// The runtime's handle (cudaStream_t / hipStream_t).
  void* native() const { return handle_; }
  int device() const { return device_; }

 private:
  void* handle_ = nullptr;
  int device_ = 0;
};

/// Times device work between two points of a stream (CUDA events).
class Timer {
 public:
  explicit Timer(const Stream& s);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void start();
  /// Milliseconds from start() to now, once the stream reaches this point (blocks).
  double stop_ms();

 private:
  const Stream* stream_;
  void* begin_ = nullptr;
  void* end_ = nullptr;
};

namespace detail {
/// Device allocation of `bytes`; Error naming `what` and the sizes on failure
/// (out of memory included). Zero bytes gives nullptr.
void* device_alloc(size_t bytes, const char* what);
void device_free(void* p) noexcept;
void copy_to_device(const Stream& s, void* dst, const void* src, size_t bytes);
void copy_to_host(const Stream& s, void* dst, const void* src, size_t bytes);
void copy_on_device(const Stream& s, void* dst, const void* src, size_t bytes);
void fill_bytes(const Stream& s, void* dst, int value, size_t bytes);
}  // namespace detail

}  // namespace tessera::cuda
