// Sampler::sample per token for the vocabularies of SmolLM2 (49152) and
// Llama 3 (128256), in µs, beside the time a decode step of a matching model
// needs just to stream its Q8_0 weights at the measured STREAM bandwidth
// (360M and 1.24B parameters at 1.0625 bytes each): the sampler's share of a
// step is pct_of_decode.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <vector>

#include "bench_common.hpp"
#include "tessera/sample/sampler.hpp"

using namespace tessera;

namespace {

enum class Chain { defaults, penalty, no_top_k, min_p_only, greedy };

// Rows shaped like a language model's: most logits N(0, 2.5), a few dozen
// plausible tokens lifted by 6-12, scattered over the vocabulary. Several rows
// are cycled so no single row's branch pattern is learned.
std::vector<std::vector<float>> make_rows(int n_vocab, int n_rows) {
  std::mt19937_64 g(7);
  std::normal_distribution<float> d(0.f, 2.5f);
  std::uniform_int_distribution<int> pick(0, n_vocab - 1);
  std::uniform_real_distribution<float> lift(6.f, 12.f);
  std::vector<std::vector<float>> rows(static_cast<size_t>(n_rows), std::vector<float>(static_cast<size_t>(n_vocab)));
  for (auto& r : rows) {
    for (auto& x : r) x = d(g);
    for (int i = 0; i < 32; ++i) r[static_cast<size_t>(pick(g))] += lift(g);
  }
  return rows;
}

double decode_weight_bytes(int n_vocab) { return (n_vocab < 100000 ? 360e6 : 1.24e9) * 1.0625; }

void BM_sample(benchmark::State& state, Chain chain) {
  const int n_vocab = static_cast<int>(state.range(0));
  sample::SamplerParams p;  // temperature 0.8, top-k 40, top-p 0.95, min-p 0.05
  if (chain == Chain::penalty) p.repeat_penalty = 1.1f;
  if (chain == Chain::no_top_k) p.top_k = 0;
  if (chain == Chain::min_p_only) p.top_k = 0, p.top_p = 1.f;
  if (chain == Chain::greedy) p.temperature = 0.f;
  sample::Sampler s(p, n_vocab);
  const auto rows = make_rows(n_vocab, 8);
  for (int i = 0; i < 64; ++i) s.accept(i * 97 % n_vocab);  // a full penalty window
  size_t r = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const int32_t t = s.sample(rows[r]);
    s.accept(t);
    benchmark::DoNotOptimize(t);
    r = (r + 1) % rows.size();
  }
  const double per_token_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                             static_cast<double>(std::max<benchmark::IterationCount>(1, state.iterations()));
  const double decode_s = decode_weight_bytes(n_vocab) / bench::stream_triad_bytes_per_s(omp_get_num_procs());
  state.counters["us_per_token"] = per_token_s * 1e6;
  state.counters["decode_step_us"] = decode_s * 1e6;
  state.counters["pct_of_decode"] = per_token_s / decode_s * 100.0;
  state.counters["kept"] = static_cast<double>(s.candidates().size);
}

void vocab_args(benchmark::internal::Benchmark* b) { b->Arg(49152)->Arg(128256)->Unit(benchmark::kMicrosecond); }

}  // namespace

BENCHMARK_CAPTURE(BM_sample, defaults, Chain::defaults)->Apply(vocab_args);
BENCHMARK_CAPTURE(BM_sample, penalty, Chain::penalty)->Apply(vocab_args);
BENCHMARK_CAPTURE(BM_sample, no_top_k, Chain::no_top_k)->Apply(vocab_args);
BENCHMARK_CAPTURE(BM_sample, min_p_only, Chain::min_p_only)->Apply(vocab_args);
BENCHMARK_CAPTURE(BM_sample, greedy, Chain::greedy)->Apply(vocab_args);

BENCHMARK_MAIN();
