// What every benchmark reports against: this machine's STREAM-triad memory
// bandwidth and its FMA peak, both measured in the same process (these
// machines are shared, so a figure is only meaningful beside one taken in the
// same run).
#pragma once

#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "tessera/core/storage.hpp"

namespace tessera::bench {

/// STREAM triad a[i] = b[i] + s c[i] over three 64 MiB float arrays, best of 5,
/// counting 12 bytes per element (STREAM's convention: write-allocate traffic
/// is not counted). Bytes per second; cached per thread count.
inline double stream_triad_bytes_per_s(int n_threads) {
  static std::map<int, double> cache;
  if (auto it = cache.find(n_threads); it != cache.end()) return it->second;
  const size_t n = size_t{16} << 20;
  AlignedBuffer ab(n * 4), bb(n * 4), cb(n * 4);
  auto* a = reinterpret_cast<float*>(ab.data());
  auto* b = reinterpret_cast<float*>(bb.data());
  auto* c = reinterpret_cast<float*>(cb.data());
  const auto len = static_cast<int64_t>(n);
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (int64_t i = 0; i < len; ++i) { a[i] = 0.f; b[i] = 1.f; c[i] = 2.f; }  // first touch by the owning thread
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t i = 0; i < len; ++i) a[i] = b[i] + 3.f * c[i];
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    benchmark::DoNotOptimize(a);
  }
  return cache[n_threads] = 12.0 * static_cast<double>(n) / best;
}

/// Measured FMA peak in FLOP/s: 10 independent FMA chains per thread (enough to
/// cover latency x throughput on current x86 and Arm cores), 2 FLOPs per lane.
inline double fma_peak_flops(int n_threads) {
  static std::map<int, double> cache;
  if (auto it = cache.find(n_threads); it != cache.end()) return it->second;
  using B = xsimd::batch<float>;
  constexpr int kChains = 10;
  const int64_t iters = 20'000'000;
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(n_threads)
    {
      B acc[kChains];
      for (int c = 0; c < kChains; ++c) acc[c] = B(static_cast<float>(c));
      const B m(0.9999999f), a(1e-7f);
      for (int64_t i = 0; i < iters; ++i)
        for (int c = 0; c < kChains; ++c) acc[c] = xsimd::fma(acc[c], m, a);
      float s = 0;
      for (int c = 0; c < kChains; ++c) s += xsimd::hadd(acc[c]);
      benchmark::DoNotOptimize(s);
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return cache[n_threads] = 2.0 * B::size * kChains * static_cast<double>(iters) * n_threads / best;
}

/// Sets GB/s and % of STREAM bandwidth for a memory-bound kernel that moved `bytes` per iteration.
inline void report_bandwidth(benchmark::State& state, double bytes, int n_threads) {
  const double total = bytes * static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(total));
  state.counters["stream_GBps"] = stream_triad_bytes_per_s(n_threads) / 1e9;
  state.counters["pct_stream"] =
      benchmark::Counter(total / stream_triad_bytes_per_s(n_threads) * 100.0, benchmark::Counter::kIsRate);
}

/// Sets GFLOP/s and % of the measured FMA peak for a compute-bound kernel.
inline void report_flops(benchmark::State& state, double flops, int n_threads) {
  const double total = flops * static_cast<double>(state.iterations());
  state.counters["GFLOPs"] = benchmark::Counter(total / 1e9, benchmark::Counter::kIsRate);
  state.counters["peak_GFLOPs"] = fma_peak_flops(n_threads) / 1e9;
  state.counters["pct_peak"] =
      benchmark::Counter(total / fma_peak_flops(n_threads) * 100.0, benchmark::Counter::kIsRate);
}

/// How many copies of a `bytes`-sized operand to cycle through so that each
/// iteration reads from DRAM, not from the last-level cache: decode streams a
/// whole model per token, far more than any cache holds. Total >= 256 MiB.
inline int cold_copies(double bytes) {
  return std::max(1, static_cast<int>((256.0 * (1 << 20) + bytes - 1) / bytes));
}

/// Thread counts to run: 1 and every power of two up to the machine's cores.
inline void thread_args(benchmark::internal::Benchmark* b) {
  for (int t = 1; t <= omp_get_num_procs(); t *= 2) b->Arg(t);
}

}  // namespace tessera::bench
