// Attention and the fused SwiGLU:
//   BM_attention_decode   one query token over n_kv cached positions (memory-bound:
//                         K and V read once; % of STREAM), scalar / naive / flash
//   BM_attention_prefill  causal self-attention over n tokens, naive vs flash:
//                         time and the scratch each needs (naive n^2, flash flat)
//   BM_attention_paged    decode over a paged cache vs the same rows contiguous
#include <omp.h>

#include "bench_common.hpp"
#include "tessera/backend/scalar/activation.hpp"
#include "tessera/backend/simd/activation.hpp"
#include "tessera/kv/kv.hpp"
#include "tessera/nn/attention.hpp"

using namespace tessera;

namespace {

void fill(Tensor<float, 3>& t, float step) {
  for (int64_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<float>(i % 17) * step - 0.08f;
}

// LLaMA-7B-like GQA decode: 32 query heads over 8 KV heads of 128 dims.
// range(2): 0 scalar reference, 1 naive, 2 flash.
void BM_attention_decode(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t n_kv = state.range(1), heads = 32, kv_heads = 8, d = 128;
  omp_set_num_threads(threads);
  Tensor<float, 3> q({1, heads, d}), k({n_kv, kv_heads, d}), v({n_kv, kv_heads, d}), out({1, heads, d});
  fill(q, 0.001f), fill(k, 0.01f), fill(v, 0.02f);
  KvSegment seg;
  const KvSource src = nn::contiguous_kv(k.view(), v.view(), seg);
  AttentionParams p{0.088f, AttentionMask::causal(), n_kv - 1,
                    state.range(2) == 1 ? AttentionAlgo::naive : AttentionAlgo::flash};
  nn::AttentionWorkspace ws;
  for (auto _ : state) {
    if (state.range(2) == 0) backend::scalar::attention(q.view(), src, p, out.view());
    else nn::attention(q.view(), src, p, out.view(), ws);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(state.range(2) == 0 ? "scalar" : state.range(2) == 1 ? "naive" : "flash");
  bench::report_bandwidth(state, 2.0 * static_cast<double>(k.size_bytes()), threads);
}

// Causal self-attention of n tokens, 8 query heads over 2 KV heads of 64 dims.
// range(1): 1 naive, 2 flash.  Counters: scratch bytes the call needs.
void BM_attention_prefill(benchmark::State& state) {
  const int64_t n = state.range(0), heads = 8, kv_heads = 2, d = 64;
  const auto algo = state.range(1) == 1 ? AttentionAlgo::naive : AttentionAlgo::flash;
  Tensor<float, 3> q({n, heads, d}), k({n, kv_heads, d}), v({n, kv_heads, d}), out({n, heads, d});
  fill(q, 0.003f), fill(k, 0.01f), fill(v, 0.02f);
  AttentionParams p{0.125f, AttentionMask::causal(), 0, algo};
  nn::AttentionWorkspace ws;
  for (auto _ : state) {
    nn::attention(q.view(), k.view(), v.view(), p, out.view(), ws);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(algo == AttentionAlgo::naive ? "naive" : "flash");
  state.counters["scratch_MiB"] = static_cast<double>(ws.bytes()) / (1 << 20);
  // causal: about n^2 / 2 (query, key) pairs, 4 d FLOPs each (QK^T and PV) per head
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * static_cast<double>(n * n * heads * d) *
                                                    static_cast<double>(state.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
}

// Decode attention, SmolLM2 layout (9 heads over 3 KV heads of 64), over n_kv
// positions stored in a static cache or a paged one of 16-position blocks.
// range(1): 0 static, 1 paged.
void BM_attention_paged(benchmark::State& state) {
  const int64_t n_kv = state.range(0), heads = 9, d = 64;
  const kv::KvLayout layout{1, 3, d, KvType::f32};
  std::unique_ptr<kv::KvCache> cache =
      state.range(1) ? kv::make_kv_cache(kv::parse_kv_spec("paged:16"), layout, n_kv, 512)
                     : kv::make_kv_cache(kv::parse_kv_spec("static"), layout, n_kv, 512);
  Tensor<float, 3> rows({512, 3, d});
  fill(rows, 0.01f);
  for (int64_t p = 0; p < n_kv; p += 512) {
    const int64_t m = std::min<int64_t>(512, n_kv - p);
    cache->begin_append(m);
    auto r = rows.view().narrow(0, 0, m).reshape<2>({m, 3 * d});
    cache->write(0, r, r);
    cache->end_append();
  }
  Tensor<float, 3> q({1, heads, d}), out({1, heads, d});
  fill(q, 0.002f);
  std::vector<KvSegment> segs;
  segs.reserve(cache->max_segments());
  AttentionParams p{0.125f, AttentionMask::causal(), n_kv - 1, AttentionAlgo::flash};
  nn::AttentionWorkspace ws;
  for (auto _ : state) {
    nn::attention(q.view(), cache->source(0, segs), p, out.view(), ws);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(cache->describe());
  bench::report_bandwidth(state, 2.0 * static_cast<double>(n_kv * 3 * d * 4), omp_get_max_threads());
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

void prefill_args(benchmark::internal::Benchmark* b) {
  for (int64_t n = 512; n <= 16384; n *= 2)
    for (int64_t algo : {1, 2}) b->Args({n, algo});
}

}  // namespace

BENCHMARK(BM_attention_decode)->Args({1, 4096, 0})->Args({1, 4096, 1})->Args({1, 4096, 2})->Args({2, 4096, 1})
    ->Args({2, 4096, 2})->Args({2, 16384, 2})->UseRealTime();
BENCHMARK(BM_attention_prefill)->Apply(prefill_args)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_attention_paged)->Args({4096, 0})->Args({4096, 1})->Args({32768, 0})->Args({32768, 1})->UseRealTime();
BENCHMARK_TEMPLATE(BM_swiglu, true)->Arg(1)->UseRealTime();
BENCHMARK_TEMPLATE(BM_swiglu, false)->Apply(bench::thread_args)->UseRealTime();

BENCHMARK_MAIN();
