/// \file
/// The device side of tessera::cuda: which GPUs exist, a stream to queue work
/// on, and the raw allocation and copy calls the typed buffers are built from.
/// No CUDA or HIP header is included here, so host code that uses the API
/// compiles with any C++20 compiler; the runtime lives in src/cuda.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace tessera::cuda {

/// Number of usable GPUs; 0 when there is no driver or no device. Never throws,
/// so tests and programs can ask before touching anything else.
int device_count() noexcept;

/// What the kernels size themselves from, read once per device.
struct DeviceInfo {
  std::string name;  ///< the device's name as the driver reports it, e.g. "NVIDIA H200"
  int sm_count = 0;  ///< streaming multiprocessors (compute units on HIP)
  ///@{
  /// Compute capability (gfx major/minor on HIP).
  int cc_major = 0, cc_minor = 0;
  ///@}
  size_t total_bytes = 0;  ///< device memory
  size_t l2_bytes = 0;  ///< L2 cache size
  size_t smem_per_block_optin = 0;  ///< largest dynamic shared memory a block may ask for
};

/// Facts about device `device`. Error if it does not exist.
DeviceInfo device_info(int device = 0);

/// Free and total bytes of device memory now (cudaMemGetInfo on `device`).
struct MemoryInfo {
  ///@{
  /// Bytes of device memory free now, and in all.
  size_t free_bytes = 0, total_bytes = 0;
  ///@}
};
/// Free and total device memory of `device` now. Error if it does not exist.
MemoryInfo memory_info(int device = 0);

/// An owned stream on one device. Every call of the API takes one and queues its
/// kernels on it; copies to and from the host synchronise it. Not copyable.
class Stream {
 public:
  /// Creates a non-blocking stream on `device`; Error if that fails.
  explicit Stream(int device = 0);
  ~Stream();
  /// Takes over o's stream; o is left without one.
  Stream(Stream&& o) noexcept : handle_(o.handle_), device_(o.device_) { o.handle_ = nullptr; }
  /// Destroys this stream, then takes over o's.
  Stream& operator=(Stream&& o) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  /// Waits for all queued work; a kernel's asynchronous fault surfaces here as Error.
  void synchronize() const;
  /// The runtime's handle (cudaStream_t / hipStream_t).
  void* native() const { return handle_; }
  /// Index of the device the stream runs on.
  int device() const { return device_; }

 private:
  void* handle_ = nullptr;
  int device_ = 0;
};

/// Times device work between two points of a stream (CUDA events).
class Timer {
 public:
  /// A timer over s (which must outlive it); Error if the events cannot be created.
  explicit Timer(const Stream& s);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  /// Marks the start point: the work queued on the stream so far is not timed.
  void start();
  /// Milliseconds from start() to now, once the stream reaches this point (blocks).
  double stop_ms();

 private:
  const Stream* stream_;
  void* begin_ = nullptr;
  void* end_ = nullptr;
};

/// A captured sequence of a stream's work, replayed as one launch (a CUDA /
/// HIP graph).  Capture with begin(s) ... end(); the work queued in between is
/// recorded, not run.  A replay reads whatever device memory the captured
/// kernels point at, so per-step inputs (token ids, positions) live in device
/// buffers that are updated before launch().  Not copyable.
class Graph {
 public:
  Graph() = default;
  ~Graph();
  /// Takes over o's capture; o is left empty.
  Graph(Graph&& o) noexcept : graph_(std::exchange(o.graph_, nullptr)), exec_(std::exchange(o.exec_, nullptr)) {}
  /// Drops this graph, then takes over o's.
  Graph& operator=(Graph&& o) noexcept;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  /// Starts recording s (this thread's work on it only).  Drops an earlier capture.
  void begin(const Stream& s);
  /// Stops recording and instantiates the graph.  Error if a captured call failed.
  void end(const Stream& s);
  /// Queues one replay on s.
  void launch(const Stream& s) const;
  /// Whether a capture has been instantiated (end() succeeded), so launch() may run.
  bool ready() const { return exec_ != nullptr; }

 private:
  void reset() noexcept;
  void* graph_ = nullptr;
  void* exec_ = nullptr;
};

/// Page-locked host memory of n T (cudaMallocHost): the source of copies that
/// must be asynchronous, e.g. per-step inputs of a replayed graph.
template <class T>
class PinnedBuffer;

namespace detail {
void* host_alloc_pinned(size_t bytes);
void host_free_pinned(void* p) noexcept;
/// Queues a copy from pinned host memory; returns at once.
void copy_to_device_async(const Stream& s, void* dst, const void* pinned_src, size_t bytes);
/// Queues a copy into pinned host memory; the caller synchronises before reading.
void copy_to_host_async(const Stream& s, void* pinned_dst, const void* src, size_t bytes);
}  // namespace detail

template <class T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  /// Allocates n uninitialised T; Error if the host allocation fails.
  explicit PinnedBuffer(size_t n) : data_(static_cast<T*>(detail::host_alloc_pinned(n * sizeof(T)))), n_(n) {}
  ~PinnedBuffer() { detail::host_free_pinned(data_); }
  /// Takes over o's memory; o is left empty.
  PinnedBuffer(PinnedBuffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  /// Frees this buffer, then takes over o's memory.
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    if (this != &o) {
      detail::host_free_pinned(data_);
      data_ = std::exchange(o.data_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  /// First element (host address; nullptr when empty).
  T* data() { return data_; }
  /// First element (host address; nullptr when empty).
  const T* data() const { return data_; }
  /// Number of elements.
  size_t size() const { return n_; }
  /// Element i, unchecked. Synchronise the stream before reading what an async copy wrote.
  T& operator[](size_t i) { return data_[i]; }

 private:
  T* data_ = nullptr;
  size_t n_ = 0;
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
