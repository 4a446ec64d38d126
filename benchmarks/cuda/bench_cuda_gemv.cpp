// Decode GEMV over each weight format: GB/s of weight bytes read, and the
// ratio to the device-to-device copy bandwidth measured in the same process.
// Enough matrices are cycled that together they are 4x the L2, so every
// launch reads from HBM, as a decode step over many layers does.
#include "bench_cuda_common.hpp"

#include "tessera/core/quant_blocks.hpp"

using namespace tessera;
namespace tc = tessera::cuda;

namespace {

// Times launch_all (once untimed) by CUDA events, and reports the bytes it reads per second.
template <class F>
void time_launches(benchmark::State& st, const tc::Stream& s, F&& launch_all, double bytes, const std::string& label) {
  launch_all();
  s.synchronize();
  tc::Timer t(s);
  double total = 0;
  for (auto _ : st) {
    t.start();
    launch_all();
    const double sec = t.stop_ms() * 1e-3;
    st.SetIterationTime(sec);
    total += sec;
  }
  bench_cuda::report_bandwidth(st, bytes, total);
  st.SetLabel(label);
}

template <class W>
void BM_gemv(benchmark::State& st) {
  const int64_t n = st.range(0), k = st.range(1), m = st.range(2);
  constexpr int bs = quant_traits<W>::block_size;
  tc::Stream s;
  const auto info = tc::device_info(0);
  const size_t mat_bytes = static_cast<size_t>(n * k / bs) * sizeof(W);
  const int count = static_cast<int>(std::max<size_t>(2, 4 * info.l2_bytes / mat_bytes + 1));
  tc::DeviceTensor<W, 2> w({count * n, k / bs});
  bench_cuda::fill_random(s, w.data(), w.size_bytes(), 7);
  const auto x = bench_cuda::normal_activations(s, m, k);
  tc::DeviceTensor<float, 2> y({m, n});
  tc::DeviceTensor<std::byte, 1> ws({static_cast<int64_t>(tc::gemv_workspace_bytes<W>(m * k)) + 256});
  auto launch_all = [&] {
    for (int c = 0; c < count; ++c)
      tc::gemv<W>(s, tc::DeviceView<const W, 2>(w.data() + c * (n * k / bs), {n, k / bs}), x.view(), y.view(),
                  ws.view());
  };
  time_launches(st, s, launch_all, static_cast<double>(mat_bytes) * count,
                std::string(quant_traits<W>::name) + ", " + std::to_string(count) + " matrices cycled");
}

// The same over the split layout (cuda::gemv_split): random bytes in every
// array of the repacked matrices (some scales NaN or inf: the time is the
// same), bytes counted as in GGUF (the split layout keeps the size).
template <class W>
void BM_gemv_split(benchmark::State& st) {
  const int64_t n = st.range(0), k = st.range(1), m = st.range(2);
  const GgmlType type = quant_traits<W>::type;
  constexpr int bs = quant_traits<W>::block_size;
  tc::Stream s;
  const auto info = tc::device_info(0);
  const size_t mat_bytes = static_cast<size_t>(n * k / bs) * sizeof(W);
  const int count = static_cast<int>(std::max<size_t>(2, 4 * info.l2_bytes / mat_bytes + 1));
  tc::DeviceTensor<std::byte, 1> buf({tc::SplitWeight::bytes(type, count * n, k)});
  bench_cuda::fill_random(s, buf.data(), buf.size_bytes(), 7);
  const auto x = bench_cuda::normal_activations(s, m, k);
  tc::DeviceTensor<float, 2> y({m, n});
  tc::DeviceTensor<std::byte, 1> ws({static_cast<int64_t>(tc::gemv_workspace_bytes<W>(m * k)) + 256});
  const tc::SplitWeight all = tc::SplitWeight::at(type, buf.data(), count * n, k);
  auto launch_all = [&] {
    for (int c = 0; c < count; ++c) tc::gemv_split(s, all.rows(c * n, n), x.view(), y.view(), ws.view());
  };
  time_launches(st, s, launch_all, static_cast<double>(mat_bytes) * count,
                std::string(quant_traits<W>::name) + " split, " + std::to_string(count) + " matrices cycled");
}

void shapes(benchmark::internal::Benchmark* b) {
  b->Args({14336, 4096, 1})->Args({4096, 14336, 1})->Args({14336, 4096, 4})->UseManualTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(BM_gemv<float>)->Apply(shapes);
BENCHMARK(BM_gemv<f16>)->Apply(shapes);
BENCHMARK(BM_gemv<bf16>)->Apply(shapes);
BENCHMARK(BM_gemv<block_q8_0>)->Apply(shapes);
BENCHMARK(BM_gemv<block_q4_0>)->Apply(shapes);
BENCHMARK(BM_gemv<block_q4_1>)->Apply(shapes);
BENCHMARK(BM_gemv<block_q5_0>)->Apply(shapes);
BENCHMARK(BM_gemv<block_q5_1>)->Apply(shapes);
BENCHMARK(BM_gemv<block_q4_K>)->Apply(shapes);
BENCHMARK(BM_gemv<block_q6_K>)->Apply(shapes);
BENCHMARK(BM_gemv_split<block_q8_0>)->Apply(shapes);
BENCHMARK(BM_gemv_split<block_q4_0>)->Apply(shapes);
BENCHMARK(BM_gemv_split<block_q4_K>)->Apply(shapes);
BENCHMARK(BM_gemv_split<block_q6_K>)->Apply(shapes);

BENCHMARK_MAIN();
