// Quantized gemv (decode: memory-bound, reported in GB/s of weights and as %
// of this run's STREAM-triad bandwidth) against q8-quantized activations and,
// at 4096 x 4096, against f32 activations (gemv_f32, the path without the
// integer dot products), and gemm at M = 128 (prefill: reported in GOP/s, two
// per multiply-add), for q8_0, q4_0, q4_1, q5_0, q5_1, q4_K and q6_K; the
// scalar reference runs beside the SIMD path so their ratio shows.
// Shapes: 4096 x 4096 and SmolLM2-135M's 576 x 576, 1536 x 576, 576 x 1536
// ([N, K]; the k-quants need K % 256 == 0, so they skip K = 576).
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "tessera/backend/scalar/quant_matmul.hpp"
#include "tessera/backend/simd/quant_matmul.hpp"

using namespace tessera;
using backend::ActBlock;

namespace {

std::vector<float> random_values(int64_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.f, 0.02f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g);
  return v;
}

/// [n, k] weights: 16 rows quantized from Gaussian values, repeated. The
/// k-quants' scale search is slow, and the values do not change the timing.
template <class W>
Tensor<W, 2> weights(int64_t n, int64_t k) {
  const int64_t nb = k / quant_traits<W>::block_size, pool = std::min<int64_t>(16, n);
  Tensor<W, 2> w({n, nb});
  quantize_row(std::span<const float>(random_values(pool * k, 1)), std::span<W>(w.data(), pool * nb));
  for (int64_t r = pool; r < n; ++r) std::memcpy(&w(r, 0), &w(r % pool, 0), nb * sizeof(W));
  return w;
}

template <class W>
double weight_bytes(int64_t n, int64_t k) {
  return static_cast<double>(n * k / quant_traits<W>::block_size * sizeof(W));
}

/// Copies of the [n, k] weights to cycle through so that they come from DRAM, as in decode.
template <class W>
std::vector<Tensor<W, 2>> cold_weights(int64_t n, int64_t k) {
  std::vector<Tensor<W, 2>> ws;
  ws.push_back(weights<W>(n, k));
  for (int c = 1; c < bench::cold_copies(weight_bytes<W>(n, k)); ++c) ws.push_back(ws[0].clone());
  return ws;
}

/// Two operations per weight: one multiply, one add.
void report_gemv_ops(benchmark::State& state, int64_t n, int64_t k) {
  state.counters["GOPs"] =
      benchmark::Counter(2.0 * static_cast<double>(n * k) * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}

template <class W, bool kScalar>
void BM_quant_gemv(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t n = state.range(1), k = state.range(2);
  omp_set_num_threads(threads);
  const auto ws = cold_weights<W>(n, k);
  std::vector<ActBlock<W>> xq(k / quant_traits<W>::block_size);
  backend::scalar::quantize_activations(std::span<const float>(random_values(k, 2)), std::span<ActBlock<W>>(xq));
  std::vector<float> y(n);
  size_t i = 0;
  for (auto _ : state) {
    const auto& w = ws[i++ % ws.size()];
    if constexpr (kScalar) backend::scalar::gemv<W>(w.view(), xq, y);
    else backend::simd::gemv<W>(w.view(), xq, y);
    benchmark::DoNotOptimize(y.data());
  }
  bench::report_bandwidth(state, weight_bytes<W>(n, k), threads);
  report_gemv_ops(state, n, k);
}

/// As BM_quant_gemv with f32 activations: each block is dequantized to a
/// block-sized float buffer and FMA'd against x, so no activation quantization
/// and no integer dot products. Bytes counted are the weights' only (x is
/// 16 KiB and stays cached).
template <class W, bool kScalar>
void BM_quant_gemv_f32(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t n = state.range(1), k = state.range(2);
  omp_set_num_threads(threads);
  const auto ws = cold_weights<W>(n, k);
  const auto x = random_values(k, 2);
  std::vector<float> y(n);
  size_t i = 0;
  for (auto _ : state) {
    const auto& w = ws[i++ % ws.size()];
    if constexpr (kScalar) backend::scalar::gemv_f32<W>(w.view(), x, y);
    else backend::simd::gemv_f32<W>(w.view(), x, y);
    benchmark::DoNotOptimize(y.data());
  }
  bench::report_bandwidth(state, weight_bytes<W>(n, k), threads);
  report_gemv_ops(state, n, k);
}

template <class W, bool kScalar>
void BM_quant_gemm(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t m = state.range(1), n = state.range(2), k = state.range(3), nb = k / quant_traits<W>::block_size;
  omp_set_num_threads(threads);
  const auto w = weights<W>(n, k);
  Tensor<ActBlock<W>, 2> xq({m, nb});
  backend::scalar::quantize_activations(std::span<const float>(random_values(m * k, 3)), xq.span());
  Tensor<float, 2> y({m, n});
  for (auto _ : state) {
    if constexpr (kScalar) backend::scalar::gemm<W>(w.view(), xq.view(), y.view());
    else backend::simd::gemm<W>(w.view(), xq.view(), y.view());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GOPs"] =
      benchmark::Counter(2.0 * static_cast<double>(m * n * k) * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}

/// Activation quantization of one row (once per matmul on the decode path).
template <class A, bool kScalar>
void BM_quantize_activations(benchmark::State& state) {
  const int64_t k = state.range(0);
  const auto x = random_values(k, 4);
  std::vector<A> xq(k / quant_traits<A>::block_size);
  for (auto _ : state) {
    if constexpr (kScalar) backend::scalar::quantize_activations(std::span<const float>(x), std::span<A>(xq));
    else backend::simd::quantize_activations(std::span<const float>(x), std::span<A>(xq));
    benchmark::DoNotOptimize(xq.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * k * 4);
}

template <class W>
void register_type() {
  const std::string name = quant_traits<W>::name;
  for (const auto& [n, k] : {std::pair<int64_t, int64_t>{4096, 4096}, {576, 576}, {1536, 576}, {576, 1536}}) {
    if (k % quant_traits<W>::block_size != 0) continue;
    for (int t = 1; t <= omp_get_num_procs(); t *= 2) {
      const std::string shape = "/threads:" + std::to_string(t) + "/" + std::to_string(n) + "x" + std::to_string(k);
      benchmark::RegisterBenchmark(("gemv/" + name + "/scalar" + shape).c_str(), BM_quant_gemv<W, true>)
          ->Args({t, n, k})->UseRealTime();
      benchmark::RegisterBenchmark(("gemv/" + name + "/simd" + shape).c_str(), BM_quant_gemv<W, false>)
          ->Args({t, n, k})->UseRealTime();
    }
  }
  for (int t = 1; t <= omp_get_num_procs(); t *= 2) {
    const std::string shape = "/threads:" + std::to_string(t) + "/4096x4096";
    benchmark::RegisterBenchmark(("gemv_f32/" + name + "/scalar" + shape).c_str(), BM_quant_gemv_f32<W, true>)
        ->Args({t, 4096, 4096})->UseRealTime();
    benchmark::RegisterBenchmark(("gemv_f32/" + name + "/simd" + shape).c_str(), BM_quant_gemv_f32<W, false>)
        ->Args({t, 4096, 4096})->UseRealTime();
  }
  for (int t = 1; t <= omp_get_num_procs(); t *= 2) {
    const std::string shape = "/threads:" + std::to_string(t) + "/M128/4096x4096";
    benchmark::RegisterBenchmark(("gemm/" + name + "/scalar" + shape).c_str(), BM_quant_gemm<W, true>)
        ->Args({t, 128, 4096, 4096})->UseRealTime()->Iterations(1);
    benchmark::RegisterBenchmark(("gemm/" + name + "/simd" + shape).c_str(), BM_quant_gemm<W, false>)
        ->Args({t, 128, 4096, 4096})->UseRealTime();
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_type<block_q8_0>();
  register_type<block_q4_0>();
  register_type<block_q4_1>();
  register_type<block_q5_0>();
  register_type<block_q5_1>();
  register_type<block_q4_K>();
  register_type<block_q6_K>();
  benchmark::RegisterBenchmark("quantize_activations/q8_0/scalar/4096", BM_quantize_activations<block_q8_0, true>)
      ->Arg(4096);
  benchmark::RegisterBenchmark("quantize_activations/q8_0/simd/4096", BM_quantize_activations<block_q8_0, false>)
      ->Arg(4096);
  benchmark::RegisterBenchmark("quantize_activations/q8_K/scalar/4096", BM_quantize_activations<block_q8_K, true>)
      ->Arg(4096);
  benchmark::RegisterBenchmark("quantize_activations/q8_K/simd/4096", BM_quantize_activations<block_q8_K, false>)
      ->Arg(4096);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
