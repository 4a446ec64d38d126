// Expression evaluation, scalar beside SIMD: silu(a) * b and a * b + c
// (memory-bound once the operands leave the cache: reported as % of STREAM),
// gelu in both forms (tanh- and erf-bound), row softmax (exp-bound), and rms
// norm written as one expression.
// Args: {elements, threads}. 1M floats (4 MiB per operand) sit in this
// machine's last-level cache; 16M (64 MiB) stream from DRAM.
#include <omp.h>

#include "bench_common.hpp"
#include "tessera/backend/eval.hpp"

using namespace tessera;
using namespace tessera::expr;

namespace {

constexpr int64_t kRowLength = 1024;  // softmax / rms norm rows: a vocabulary slice or a hidden size

Tensor<float, 2> filled(int64_t n, float v) {
  Tensor<float, 2> t({n / kRowLength, kRowLength});
  for (auto& x : t.span()) x = v;
  return t;
}

template <class Tag>
void setup(benchmark::State& state, int64_t& n, int& threads) {
  n = state.range(0);
  threads = static_cast<int>(state.range(1));
  omp_set_num_threads(threads);
  state.SetLabel(Tag::name);
}

template <class Tag>
void BM_silu_mul(benchmark::State& state) {
  int64_t n;
  int threads;
  setup<Tag>(state, n, threads);
  auto a = filled(n, 0.5f), b = filled(n, 2.f), out = filled(n, 0.f);
  for (auto _ : state) {
    eval(Tag{}, out, silu(a) * b);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
  bench::report_bandwidth(state, 3.0 * 4.0 * static_cast<double>(n), threads);  // read a, b; write out
}

/// gelu (tanh form) or gelu_erf over x in [-4, 4), where both curves bend; the
/// polynomial ranges of tanh and erf are all taken, not one constant's branch.
template <class Tag, bool kErf>
void BM_gelu(benchmark::State& state) {
  int64_t n;
  int threads;
  setup<Tag>(state, n, threads);
  auto a = filled(n, 0.f), out = filled(n, 0.f);
  for (int64_t i = 0; i < n; ++i) a.data()[i] = static_cast<float>(i % 97) * (8.f / 97.f) - 4.f;
  for (auto _ : state) {
    if constexpr (kErf) eval(Tag{}, out, gelu_erf(a));
    else eval(Tag{}, out, gelu(a));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
  bench::report_bandwidth(state, 2.0 * 4.0 * static_cast<double>(n), threads);  // read a, write out
}

template <class Tag>
void BM_mul_add(benchmark::State& state) {
  int64_t n;
  int threads;
  setup<Tag>(state, n, threads);
  auto a = filled(n, 0.5f), b = filled(n, 2.f), c = filled(n, 1.f), out = filled(n, 0.f);
  for (auto _ : state) {
    eval(Tag{}, out, in(a) * b + c);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
  bench::report_bandwidth(state, 4.0 * 4.0 * static_cast<double>(n), threads);
}

template <class Tag>
void BM_softmax_rows(benchmark::State& state) {
  int64_t n;
  int threads;
  setup<Tag>(state, n, threads);
  auto x = filled(n, 0.f), out = filled(n, 0.f);
  for (int64_t i = 0; i < n; ++i) x.data()[i] = static_cast<float>(i % 97) * 0.1f;
  for (auto _ : state) {
    softmax(Tag{}, out, x);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
  bench::report_bandwidth(state, 2.0 * 4.0 * static_cast<double>(n), threads);  // least traffic: x in, p out
}

template <class Tag>
void BM_rms_norm_expr(benchmark::State& state) {
  int64_t n;
  int threads;
  setup<Tag>(state, n, threads);
  auto x = filled(n, 0.5f), out = filled(n, 0.f);
  Tensor<float, 1> w({kRowLength});
  for (auto& v : w.span()) v = 1.5f;
  const auto xv = in(x);
  for (auto _ : state) {
    eval(Tag{}, out, xv * rsqrt(mean_last(xv * xv) + 1e-5f) * w);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
  bench::report_bandwidth(state, 2.0 * 4.0 * static_cast<double>(n), threads);
}

void scalar_args(benchmark::internal::Benchmark* b) {
  for (int64_t n : {int64_t{1} << 20, int64_t{1} << 24}) b->Args({n, 1});
}
void simd_args(benchmark::internal::Benchmark* b) {
  for (int64_t n : {int64_t{1} << 20, int64_t{1} << 24})
    for (int t = 1; t <= omp_get_num_procs(); t *= 2) b->Args({n, t});
}

using Scalar = backend::scalar::Tag;
using Simd = backend::simd::Tag;

}  // namespace

BENCHMARK_TEMPLATE(BM_silu_mul, Scalar)->Apply(scalar_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_silu_mul, Simd)->Apply(simd_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gelu, Scalar, false)->Apply(scalar_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gelu, Simd, false)->Apply(simd_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gelu, Scalar, true)->Apply(scalar_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gelu, Simd, true)->Apply(simd_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_mul_add, Scalar)->Apply(scalar_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_mul_add, Simd)->Apply(simd_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_softmax_rows, Scalar)->Apply(scalar_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_softmax_rows, Simd)->Apply(simd_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_rms_norm_expr, Scalar)->Apply(scalar_args)->UseRealTime();
BENCHMARK_TEMPLATE(BM_rms_norm_expr, Simd)->Apply(simd_args)->UseRealTime();

BENCHMARK_MAIN();
