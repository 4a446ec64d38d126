// What every GPU benchmark reports against: the device-to-device copy
// bandwidth measured in the same process (bytes read + written per second),
// and helpers to fill device memory with random bytes and to time a batch of
// launches with CUDA events.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "tessera/backend/cuda.hpp"

namespace bench_cuda {

namespace tc = tessera::cuda;

/// Fills n bytes at dst with pseudo-random bytes (never zeros: they can run faster than real data).
inline void fill_random(const tc::Stream& s, void* dst, size_t n, uint64_t seed) {
  constexpr size_t chunk = size_t{64} << 20;
  std::vector<uint64_t> host(chunk / 8);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& v : host) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    v = x;
  }
  for (size_t off = 0; off < n; off += chunk)
    tc::detail::copy_to_device(s, static_cast<char*>(dst) + off, host.data(), std::min(chunk, n - off));
}

/// Activations [m, k] of normal values: finite, so the quantizer and the
/// products take their usual paths (random bits would include NaN and Inf).
inline tc::DeviceTensor<float, 2> normal_activations(const tc::Stream& s, int64_t m, int64_t k) {
  std::vector<float> xs(static_cast<size_t>(m * k));
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (auto& v : xs) v = nd(rng);
  return tc::to_device<float, 2>(s, std::span<const float>(xs), {m, k});
}

/// A contiguous cache description: keys and values [n_seqs, max_keys, n_kv_heads, head_dim].
inline tc::DeviceKv contiguous_kv(tc::KvElem elem, int64_t n_kv_heads, int64_t head_dim, const void* k, const void* v,
                                  const int32_t* seq_lens, int64_t max_keys) {
  tc::DeviceKv kv;
  kv.elem = elem;
  kv.n_kv_heads = n_kv_heads;
  kv.head_dim = head_dim;
  kv.k = k;
  kv.v = v;
  kv.seq_lens = seq_lens;
  kv.max_keys = max_keys;
  return kv;
}

/// Device-to-device copy of 1 GiB, best of 10, in GB/s counting read + write.
inline double copy_gbps() {
  static const double gbps = [] {
    tc::Stream s;
    const size_t n = size_t{1} << 30;
    tc::DeviceTensor<std::byte, 1> a({static_cast<int64_t>(n)}), b({static_cast<int64_t>(n)});
    fill_random(s, a.data(), n, 1);
    tc::Timer t(s);
    double best = 1e30;
    for (int i = 0; i < 12; ++i) {
      t.start();
      tc::detail::copy_on_device(s, b.data(), a.data(), n);
      const double ms = t.stop_ms();
      if (i >= 2) best = std::min(best, ms);
    }
    const double v = 2.0 * static_cast<double>(n) / (best * 1e-3) / 1e9;
    std::printf("device-to-device copy: %.0f GB/s (read + write, 1 GiB, best of 10)\n", v);
    return v;
  }();
  return gbps;
}

/// After the loop (iteration times set by hand from CUDA events): GB/s of the
/// bytes that must be read, and that over the copy bandwidth measured beside it.
inline void report_bandwidth(benchmark::State& st, double bytes_per_iter, double seconds_total) {
  const double gbps = bytes_per_iter * static_cast<double>(st.iterations()) / seconds_total / 1e9;
  st.counters["GB/s"] = gbps;
  st.counters["copy_GB/s"] = copy_gbps();
  st.counters["of_copy"] = gbps / copy_gbps();
}

}  // namespace bench_cuda
