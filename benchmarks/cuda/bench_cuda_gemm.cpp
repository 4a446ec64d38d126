// Prefill GEMM y = x W^T (W dequantized to bf16, then one tensor-core product):
// TFLOP/s, with the dequantization inside the timing. torch_reference.py
// times cuBLAS bf16 on the same shapes for the ratio.
#include "bench_cuda_common.hpp"

#include "tessera/core/quant_blocks.hpp"

using namespace tessera;
namespace tc = tessera::cuda;

namespace {

template <class W>
void BM_gemm(benchmark::State& st) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  constexpr int bs = quant_traits<W>::block_size;
  tc::Stream s;
  tc::DeviceTensor<W, 2> w({n, k / bs});
  bench_cuda::fill_random(s, w.data(), w.size_bytes(), 3);
  if constexpr (std::is_same_v<W, bf16>) {  // finite weights: random bits include NaN
    std::vector<bf16> h(static_cast<size_t>(n * k));
    for (size_t i = 0; i < h.size(); ++i) h[i] = bf16(static_cast<float>(static_cast<int>(i * 2654435761u >> 20) % 200 - 100) / 100.f);
    tc::upload<bf16, 2>(s, std::span<const bf16>(h), w.view());
  }
  const auto x = bench_cuda::normal_activations(s, m, k);
  tc::DeviceTensor<float, 2> y({m, n});
  tc::DeviceTensor<std::byte, 1> ws({static_cast<int64_t>(tc::gemm_workspace_bytes(m, n, k))});
  tc::gemm<W>(s, w.view(), x.view(), y.view(), ws.view());
  s.synchronize();
  tc::Timer t(s);
  double total = 0;
  for (auto _ : st) {
    t.start();
    tc::gemm<W>(s, w.view(), x.view(), y.view(), ws.view());
    const double sec = t.stop_ms() * 1e-3;
    st.SetIterationTime(sec);
    total += sec;
  }
  st.counters["TFLOP/s"] = 2.0 * m * n * static_cast<double>(k) * static_cast<double>(st.iterations()) / total / 1e12;
  st.SetLabel(quant_traits<W>::name);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->Args({512, 14336, 4096})->Args({512, 4096, 14336})->Args({2048, 14336, 4096})->Args({8192, 8192, 8192})
      ->UseManualTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_gemm<bf16>)->Apply(shapes);
BENCHMARK(BM_gemm<block_q8_0>)->Apply(shapes);
BENCHMARK(BM_gemm<block_q4_0>)->Apply(shapes);
BENCHMARK(BM_gemm<block_q4_K>)->Apply(shapes);

BENCHMARK_MAIN();
