// Devices, streams, timers, allocation and copies: the host side of the API
// that the typed buffers and every kernel launch stand on.
#include <memory>
#include <mutex>
#include <vector>

#include "common.cuh"
#include "tessera/backend/cuda/device.hpp"

namespace tessera::cuda {

int device_count() noexcept {
  int n = 0;
  if (gpuGetDeviceCount(&n) != gpuSuccess) {
    (void)gpuGetLastError();  // clear the sticky "no device" so later calls start clean
    return 0;
  }
  return n;
}

DeviceInfo device_info(int device) {
  gpuDeviceProp p{};
  detail::check_gpu(gpuGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  DeviceInfo info;
  info.name = p.name;
  info.sm_count = p.multiProcessorCount;
  info.cc_major = p.major;
  info.cc_minor = p.minor;
  info.total_bytes = p.totalGlobalMem;
  info.l2_bytes = static_cast<size_t>(p.l2CacheSize);
  info.smem_per_block_optin = gpuSmemOptin(p);
  return info;
}

MemoryInfo memory_info(int device) {
  detail::check_gpu(gpuSetDevice(device), "cudaSetDevice");
  MemoryInfo m;
  detail::check_gpu(gpuMemGetInfo(&m.free_bytes, &m.total_bytes), "cudaMemGetInfo");
  return m;
}

Stream::Stream(int device) : device_(device) {
  detail::check_gpu(gpuSetDevice(device), "cudaSetDevice");
  gpuStream_t s{};
  detail::check_gpu(gpuStreamCreateWithFlags(&s, gpuStreamNonBlocking), "cudaStreamCreate");
  handle_ = s;
}

Stream::~Stream() {
  if (handle_) (void)gpuStreamDestroy(static_cast<gpuStream_t>(handle_));
}

Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    if (handle_) (void)gpuStreamDestroy(static_cast<gpuStream_t>(handle_));
    handle_ = std::exchange(o.handle_, nullptr);
    device_ = o.device_;
  }
  return *this;
}

void Stream::synchronize() const { detail::check_gpu(gpuStreamSynchronize(detail::native(*this)), "cudaStreamSynchronize"); }

Timer::Timer(const Stream& s) : stream_(&s) {
  gpuEvent_t a{}, b{};
  detail::check_gpu(gpuEventCreate(&a), "cudaEventCreate");
  detail::check_gpu(gpuEventCreate(&b), "cudaEventCreate");
  begin_ = a;
  end_ = b;
}
Timer::~Timer() {
  (void)gpuEventDestroy(static_cast<gpuEvent_t>(begin_));
  (void)gpuEventDestroy(static_cast<gpuEvent_t>(end_));
}
void Timer::start() {
  detail::check_gpu(gpuEventRecord(static_cast<gpuEvent_t>(begin_), detail::native(*stream_)), "cudaEventRecord");
}
double Timer::stop_ms() {
  detail::check_gpu(gpuEventRecord(static_cast<gpuEvent_t>(end_), detail::native(*stream_)), "cudaEventRecord");
  detail::check_gpu(gpuEventSynchronize(static_cast<gpuEvent_t>(end_)), "cudaEventSynchronize");
  float ms = 0.f;
  detail::check_gpu(gpuEventElapsedTime(&ms, static_cast<gpuEvent_t>(begin_), static_cast<gpuEvent_t>(end_)),
                    "cudaEventElapsedTime");
  return ms;
}

Graph::~Graph() { reset(); }

Graph& Graph::operator=(Graph&& o) noexcept {
  if (this != &o) {
    reset();
    graph_ = std::exchange(o.graph_, nullptr);
    exec_ = std::exchange(o.exec_, nullptr);
  }
  return *this;
}

void Graph::reset() noexcept {
  if (exec_) (void)gpuGraphExecDestroy(static_cast<gpuGraphExec_t>(exec_));
  if (graph_) (void)gpuGraphDestroy(static_cast<gpuGraph_t>(graph_));
  exec_ = graph_ = nullptr;
}

void Graph::begin(const Stream& s) {
  reset();
  detail::check_gpu(gpuStreamBeginCapture(detail::native(s)), "cudaStreamBeginCapture");
}

void Graph::end(const Stream& s) {
  gpuGraph_t g{};
  detail::check_gpu(gpuStreamEndCapture(detail::native(s), &g), "cudaStreamEndCapture");
  graph_ = g;
  gpuGraphExec_t e{};
  detail::check_gpu(gpuGraphInstantiate(&e, g), "cudaGraphInstantiate");
  exec_ = e;
}

void Graph::launch(const Stream& s) const {
  check(exec_ != nullptr, "cuda::Graph::launch: nothing captured");
  detail::check_gpu(gpuGraphLaunch(static_cast<gpuGraphExec_t>(exec_), detail::native(s)), "cudaGraphLaunch");
}

namespace detail {

void* host_alloc_pinned(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  check_gpu(gpuMallocHost(&p, bytes), "cudaMallocHost");
  return p;
}
void host_free_pinned(void* p) noexcept {
  if (p) (void)gpuFreeHost(p);
}
void copy_to_device_async(const Stream& s, void* dst, const void* pinned_src, size_t bytes) {
  if (bytes == 0) return;
  check_gpu(gpuMemcpyAsync(dst, pinned_src, bytes, gpuMemcpyHostToDevice, native(s)), "cudaMemcpyAsync (to device)");
}
void copy_to_host_async(const Stream& s, void* pinned_dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check_gpu(gpuMemcpyAsync(pinned_dst, src, bytes, gpuMemcpyDeviceToHost, native(s)), "cudaMemcpyAsync (to host)");
}

const DeviceInfo& cached_info(int device) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<DeviceInfo>> infos;
  std::lock_guard lock(mu);
  check(device >= 0, "tessera::cuda: device ", device);
  if (device >= static_cast<int>(infos.size())) infos.resize(static_cast<size_t>(device) + 1);
  auto& p = infos[static_cast<size_t>(device)];
  if (!p) p = std::make_unique<DeviceInfo>(device_info(device));
  return *p;
}

int sm_count(int device) { return cached_info(device).sm_count; }

void* device_alloc(size_t bytes, const char* what) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  const gpuError_t e = gpuMalloc(&p, bytes);
  if (e == gpuErrorMemoryAllocation) {
    (void)gpuGetLastError();
    fail("tessera::cuda: out of device memory: ", what, " asked for ", bytes, " bytes (", bytes >> 20, " MiB)");
  }
  check_gpu(e, "cudaMalloc");
  return p;
}

void device_free(void* p) noexcept {
  if (p) (void)gpuFree(p);
}

void copy_to_device(const Stream& s, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check_gpu(gpuMemcpyAsync(dst, src, bytes, gpuMemcpyHostToDevice, native(s)), "cudaMemcpyAsync (to device)");
  s.synchronize();  // the host buffer may go away when we return
}
void copy_to_host(const Stream& s, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check_gpu(gpuMemcpyAsync(dst, src, bytes, gpuMemcpyDeviceToHost, native(s)), "cudaMemcpyAsync (to host)");
  s.synchronize();
}
void copy_on_device(const Stream& s, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check_gpu(gpuMemcpyAsync(dst, src, bytes, gpuMemcpyDeviceToDevice, native(s)), "cudaMemcpyAsync (on device)");
}
void fill_bytes(const Stream& s, void* dst, int value, size_t bytes) {
  if (bytes == 0) return;
  check_gpu(gpuMemsetAsync(dst, value, bytes, native(s)), "cudaMemsetAsync");
}

}  // namespace detail
}  // namespace tessera::cuda
