// Decode-step attention over a cache of n_kv positions (memory-bound: K and V
// are read once; reported as % of STREAM) and the fused SwiGLU, scalar beside SIMD.
#include <omp.h>

#include "bench_common.hpp"
#include "tessera/backend/scalar/activation.hpp"
#include "tessera/backend/scalar/attention.hpp"
#include "tessera/backend/simd/activation.hpp"
#include "tessera/backend/simd/attention.hpp"

using namespace tessera;

namespace {

// LLaMA-7B-like GQA head layout: 32 query heads over 8 KV heads of 128 dims.
template <bool kScalar>
void BM_attention_decode(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t n_kv = state.range(1), heads = 32, kv_heads = 8, d = 128;
  omp_set_num_threads(threads);
  Tensor<float, 3> q({1, heads, d}), k({n_kv, kv_heads, d}), v({n_kv, kv_heads, d}), out({1, heads, d});
  for (int64_t i = 0; i < k.size(); ++i) k.data()[i] = v.data()[i] = static_cast<float>(i % 17) * 0.01f;
  for (int64_t i = 0; i < q.size(); ++i) q.data()[i] = 0.01f;
  std::vector<float> scratch(backend::scalar::attention_scratch_size(n_kv, threads));
  for (auto _ : state) {
    if constexpr (kScalar) backend::scalar::attention_causal(q.view(), k.view(), v.view(), n_kv - 1, 0.088f, out.view(), scratch);
    else backend::simd::attention_causal(q.view(), k.view(), v.view(), n_kv - 1, 0.088f, out.view(), scratch);
    benchmark::DoNotOptimize(out.data());
  }
  bench::report_bandwidth(state, 2.0 * static_cast<double>(k.size_bytes()), threads);
}

template <bool kScalar>
void BM_swiglu(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  omp_set_num_threads(threads);
  const size_t n = size_t{1} << 22;
  std::vector<float> g(n, 0.5f), u(n, 2.f), out(n);
  for (auto _ : state) {
    if constexpr (kScalar) backend::scalar::swiglu(g, u, out);
    else backend::simd::swiglu(g, u, out);
    benchmark::DoNotOptimize(out.data());
  }
  bench::report_bandwidth(state, 3.0 * static_cast<double>(n * sizeof(float)), threads);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_attention_decode, true)->Args({1, 4096})->UseRealTime();
BENCHMARK_TEMPLATE(BM_attention_decode, false)->Args({1, 4096})->Args({2, 4096})->Args({2, 16384})->UseRealTime();
BENCHMARK_TEMPLATE(BM_swiglu, true)->Arg(1)->UseRealTime();
BENCHMARK_TEMPLATE(BM_swiglu, false)->Apply(bench::thread_args)->UseRealTime();

BENCHMARK_MAIN();
