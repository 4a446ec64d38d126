// Shared by the GPU tests: the skip rule (no GPU: warn and pass), seeded random
// data, and host <-> device helpers.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "tessera/backend/cuda.hpp"

namespace gpu_test {

/// True when a GPU is present. Otherwise the case logs why it did not run and
/// the caller returns: the case still runs and passes, so CTest counts it.
inline bool have_gpu() {
  if (tessera::cuda::device_count() > 0) return true;
  WARN("skipped: no GPU visible (tessera::cuda::device_count() == 0)");
  return false;
}

inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

template <class T, size_t R>
tessera::cuda::DeviceTensor<T, R> to_dev(const tessera::cuda::Stream& s, const std::vector<T>& v,
                                         std::array<int64_t, R> shape) {
  return tessera::cuda::to_device<T, R>(s, std::span<const T>(v), shape);
}

template <class T, size_t R>
std::vector<std::remove_const_t<T>> to_host(const tessera::cuda::Stream& s, tessera::cuda::DeviceView<T, R> v) {
  std::vector<std::remove_const_t<T>> out(static_cast<size_t>(v.numel()));
  tessera::cuda::download<std::remove_const_t<T>, R>(s, v, std::span<std::remove_const_t<T>>(out));
  return out;
}

/// Fills a device buffer with NaN bytes (0xff), so an element the kernel never wrote fails the comparison.
template <class T, size_t R>
void poison(const tessera::cuda::Stream& s, tessera::cuda::DeviceView<T, R> v) {
  tessera::cuda::detail::fill_bytes(s, v.data(), 0xff, v.size_bytes());
}

}  // namespace gpu_test
