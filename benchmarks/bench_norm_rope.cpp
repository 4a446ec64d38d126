// rms_norm, layer_norm and rope (interleaved and neox pairings): memory-bound
// row kernels, reported as % of STREAM bandwidth, with the scalar reference
// beside each.
#include "bench_common.hpp"
#include "tessera/backend/scalar/norm.hpp"
#include "tessera/backend/scalar/rope.hpp"
#include "tessera/backend/simd/norm.hpp"
#include "tessera/backend/simd/rope.hpp"

using namespace tessera;

namespace {

constexpr int64_t kTokens = 512, kEmbd = 4096;

template <bool kScalar, bool kLayer>
void BM_norm(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  omp_set_num_threads(threads);
  Tensor<float, 2> x({kTokens, kEmbd}), out({kTokens, kEmbd});
  for (int64_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i % 13) - 6.f;
  std::vector<float> w(kEmbd, 1.f), b(kEmbd, 0.f);
  for (auto _ : state) {
    if constexpr (kLayer) {
      if constexpr (kScalar) backend::scalar::layer_norm(x.view(), w, b, 1e-5f, out.view());
      else backend::simd::layer_norm(x.view(), w, b, 1e-5f, out.view());
    } else {
      if constexpr (kScalar) backend::scalar::rms_norm(x.view(), w, 1e-5f, out.view());
      else backend::simd::rms_norm(x.view(), w, 1e-5f, out.view());
    }
    benchmark::DoNotOptimize(out.data());
  }
  bench::report_bandwidth(state, 2.0 * static_cast<double>(x.size_bytes()), threads);  // read x, write out
}

template <bool kScalar, RopeStyle kStyle>
void BM_rope(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  omp_set_num_threads(threads);
  Tensor<float, 3> x({kTokens, 32, 128});
  std::vector<int32_t> pos(kTokens);
  for (int64_t t = 0; t < kTokens; ++t) pos[t] = static_cast<int32_t>(t);
  const RopeParams p{128, 10000.f, 1.f, kStyle};
  for (auto _ : state) {
    if constexpr (kScalar) backend::scalar::rope(x.view(), pos, p);
    else backend::simd::rope(x.view(), pos, p);
    benchmark::DoNotOptimize(x.data());
  }
  bench::report_bandwidth(state, 2.0 * static_cast<double>(x.size_bytes()), threads);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_norm, true, false)->Arg(1)->UseRealTime();
BENCHMARK_TEMPLATE(BM_norm, false, false)->Apply(bench::thread_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_norm, true, true)->Arg(1)->UseRealTime();
BENCHMARK_TEMPLATE(BM_norm, false, true)->Apply(bench::thread_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_rope, true, RopeStyle::interleaved)->Arg(1)->UseRealTime();
BENCHMARK_TEMPLATE(BM_rope, false, RopeStyle::interleaved)->Apply(bench::thread_args)->UseRealTime();
// neox pairs i with i + 64: two contiguous half-rows instead of adjacent lanes.
BENCHMARK_TEMPLATE(BM_rope, true, RopeStyle::neox)->Arg(1)->UseRealTime();
BENCHMARK_TEMPLATE(BM_rope, false, RopeStyle::neox)->Apply(bench::thread_args)->UseRealTime();

BENCHMARK_MAIN();
