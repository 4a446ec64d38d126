// gemv (decode: memory-bound, reported as % of STREAM bandwidth) and gemm
// (prefill: compute-bound, reported as % of the measured FMA peak) with f32,
// f16 and bf16 weights; the scalar reference and Eigen beside them.
#include <Eigen/Core>

#include "bench_common.hpp"
#include "tessera/backend/scalar/matmul.hpp"
#include "tessera/backend/simd/matmul.hpp"

using namespace tessera;

namespace {

template <class W>
Tensor<W, 2> filled(int64_t n, int64_t k) {
  Tensor<W, 2> t({n, k});
  for (int64_t i = 0; i < t.size(); ++i) t.data()[i] = W(static_cast<float>(i % 7) * 0.01f);
  return t;
}

template <class W, bool kScalar>
void BM_gemv(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t n = 4096, k = 4096;
  omp_set_num_threads(threads);
  std::vector<Tensor<W, 2>> ws;  // cycled so the weights come from DRAM, as in decode
  for (int c = 0; c < bench::cold_copies(static_cast<double>(n * k * sizeof(W))); ++c) ws.push_back(filled<W>(n, k));
  std::vector<float> x(k, 0.5f), y(n);
  size_t i = 0;
  for (auto _ : state) {
    const auto& w = ws[i++ % ws.size()];
    if constexpr (kScalar) backend::scalar::gemv<W>(w.view(), x, y);
    else backend::simd::gemv<W>(w.view(), x, y);
    benchmark::DoNotOptimize(y.data());
  }
  bench::report_bandwidth(state, static_cast<double>(n * k * sizeof(W)), threads);
}

void BM_gemv_eigen_f32(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  omp_set_num_threads(threads);
  Eigen::setNbThreads(threads);
  using M = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  std::vector<M> ws(static_cast<size_t>(bench::cold_copies(4096.0 * 4096.0 * 4.0)), M::Constant(4096, 4096, 0.01f));
  Eigen::VectorXf x = Eigen::VectorXf::Constant(4096, 0.5f), y(4096);
  size_t i = 0;
  for (auto _ : state) {
    y.noalias() = ws[i++ % ws.size()] * x;
    benchmark::DoNotOptimize(y.data());
  }
  bench::report_bandwidth(state, 4096.0 * 4096.0 * 4.0, threads);
}

template <class W, bool kScalar>
void BM_gemm(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t s = state.range(1);
  omp_set_num_threads(threads);
  Eigen::setNbThreads(threads);
  auto w = filled<W>(s, s);
  auto x = filled<float>(s, s);
  Tensor<float, 2> y({s, s});
  std::vector<float> scratch(backend::simd::gemm_scratch_size<W>(s));
  for (auto _ : state) {
    if constexpr (kScalar) backend::scalar::gemm<W>(w.view(), x.view(), y.view());
    else backend::simd::gemm<W>(w.view(), x.view(), y.view(), scratch);
    benchmark::DoNotOptimize(y.data());
  }
  bench::report_flops(state, 2.0 * static_cast<double>(s * s * s), threads);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_gemv, float, true)->Apply(bench::thread_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemv, float, false)->Apply(bench::thread_args)->UseRealTime();
BENCHMARK(BM_gemv_eigen_f32)->Apply(bench::thread_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemv, f16, true)->Apply(bench::thread_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemv, f16, false)->Apply(bench::thread_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemv, bf16, false)->Apply(bench::thread_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm, float, true)->Args({1, 256})->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm, float, false)->Args({1, 256})->Args({1, 1024})->Args({2, 1024})->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm, f16, false)->Args({1, 1024})->Args({2, 1024})->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm, bf16, false)->Args({2, 1024})->UseRealTime();

BENCHMARK_MAIN();
