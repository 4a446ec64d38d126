// What a parallel region costs on this machine: the start-up of an OpenMP
// region and of parallel_for (inside and outside a region). A decode step of
// a small model runs ~200 kernels, so this cost times 200 must stay small
// next to the step's memory time.
#include <omp.h>

#include "bench_common.hpp"
#include "tessera/core/parallel.hpp"

namespace {

void BM_omp_region(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  int sink = 0;
  for (auto _ : state) {
#pragma omp parallel num_threads(threads)
    {
      benchmark::DoNotOptimize(sink);
    }
  }
}

void BM_parallel_for_outside_region(benchmark::State& state) {
  tessera::set_num_threads(static_cast<int>(state.range(0)));
  std::vector<float> v(1024, 1.f);
  for (auto _ : state) {
    tessera::parallel_for(1024, 1, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) v[i] += 1.f;
    });
    benchmark::DoNotOptimize(v.data());
  }
}

// 100 parallel_for calls inside one region: the per-call cost is one barrier.
void BM_parallel_for_in_region_x100(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  std::vector<float> v(1024, 1.f);
  for (auto _ : state) {
#pragma omp parallel num_threads(threads)
    for (int k = 0; k < 100; ++k)
      tessera::parallel_for(1024, 1, [&](int64_t a, int64_t b) {
        for (int64_t i = a; i < b; ++i) v[i] += 1.f;
      });
    benchmark::DoNotOptimize(v.data());
  }
}

}  // namespace

BENCHMARK(BM_omp_region)->Apply(tessera::bench::thread_args)->UseRealTime();
BENCHMARK(BM_parallel_for_outside_region)->Apply(tessera::bench::thread_args)->UseRealTime();
BENCHMARK(BM_parallel_for_in_region_x100)->Apply(tessera::bench::thread_args)->UseRealTime();

BENCHMARK_MAIN();
