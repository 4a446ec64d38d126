// End to end on a real model: decode steps (batch 1, as llama-bench's tg) and
// prefill batches (pp128, pp512), reported as tokens/s and, for decode, as a
// fraction of the memory roofline: weight bytes read per token over the
// STREAM-triad bandwidth measured in the same run.
//
// Model: $TESSERA_BENCH_MODEL, else the default model in <repo>/models
// (scripts/fetch-model).  Without one the benchmarks report an error and skip.
#include <cstdlib>
#include <filesystem>

#include "bench_common.hpp"
#include "tessera/kv/kv.hpp"
#include "tessera/models/llama_batch.hpp"
#include "tessera/models/llama_context.hpp"

using namespace tessera;

namespace {

std::shared_ptr<const models::LlamaModel> model() {
  static std::shared_ptr<const models::LlamaModel> m = [] {
    std::string path;
    if (const char* env = std::getenv("TESSERA_BENCH_MODEL"); env && *env) path = env;
    else path = std::string(TESSERA_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    std::error_code ec;
    return std::filesystem::is_regular_file(path, ec) ? models::LlamaModel::load(path)
                                                      : std::shared_ptr<const models::LlamaModel>();
  }();
  return m;
}

// 64 decode steps per iteration after a 16-token prompt; range(0): threads.
void BM_llama_decode(benchmark::State& state) {
  const auto m = model();
  if (!m) return state.SkipWithError("no model: set TESSERA_BENCH_MODEL or run scripts/fetch-model");
  const int threads = static_cast<int>(state.range(0));
  set_num_threads(threads);
  models::LlamaContext ctx(m, 256, 16);
  const std::vector<int32_t> prompt(16, 42);
  for (auto _ : state) {
    state.PauseTiming();  // the prompt is prefill, not decode
    ctx.reset();
    auto logits = ctx.eval(prompt);
    state.ResumeTiming();
    for (int i = 0; i < 64; ++i) {
      const auto t = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      logits = ctx.eval(std::span<const int32_t>(&t, 1));
    }
  }
  const double tokens = 64.0 * static_cast<double>(state.iterations());
  state.counters["tok_per_s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
  const double roofline = bench::stream_triad_bytes_per_s(threads) / static_cast<double>(m->weight_bytes_per_token());
  state.counters["roofline_tok_per_s"] = roofline;
  state.counters["pct_roofline"] = benchmark::Counter(tokens / roofline * 100.0, benchmark::Counter::kIsRate);
}

// One batch of n tokens into an empty cache; range: (n, threads).
void BM_llama_prefill(benchmark::State& state) {
  const auto m = model();
  if (!m) return state.SkipWithError("no model: set TESSERA_BENCH_MODEL or run scripts/fetch-model");
  const auto n = static_cast<int>(state.range(0));
  set_num_threads(static_cast<int>(state.range(1)));
  models::LlamaContext ctx(m, n, n);
  std::vector<int32_t> toks(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) toks[static_cast<size_t>(i)] = (i * 7919) % m->config().n_vocab;
  for (auto _ : state) {
    ctx.reset();
    benchmark::DoNotOptimize(ctx.eval(toks).data());
  }
  state.counters["tok_per_s"] = benchmark::Counter(static_cast<double>(n) * static_cast<double>(state.iterations()),
                                                   benchmark::Counter::kIsRate);
}

// N sequences decoding 32 steps each: in one LlamaBatch pass per step (weights read once for all N)
// or as N separate contexts (N passes per step). range(0): N. Compare the two rows of the same N.
void BM_llama_many_decode(benchmark::State& state, bool batched) {
  const auto m = model();
  if (!m) return state.SkipWithError("no model: set TESSERA_BENCH_MODEL or run scripts/fetch-model");
  const auto N = static_cast<int>(state.range(0));
  const auto& c = m->config();
  const std::vector<int32_t> prompt(16, 42), next(static_cast<size_t>(N), 7);
  auto pool = std::make_shared<kv::KvBlockPool>(models::kv_layout(c), 16,
                                                4 * N);
  models::LlamaBatch batch(m, std::max(16, N));
  std::vector<std::unique_ptr<kv::KvCache>> caches;
  std::vector<std::unique_ptr<models::LlamaContext>> ctxs;
  for (int i = 0; i < N; ++i) {
    caches.push_back(std::make_unique<kv::PagedKvCache>(pool, 64));
    ctxs.push_back(std::make_unique<models::LlamaContext>(m, 64, 16));
  }
  std::vector<models::BatchSeq> step;
  for (int i = 0; i < N; ++i) step.push_back({caches[static_cast<size_t>(i)].get(), {&next[static_cast<size_t>(i)], 1}, true});
  for (auto _ : state) {
    state.PauseTiming();
    for (int i = 0; i < N; ++i) {
      caches[static_cast<size_t>(i)]->reset();
      ctxs[static_cast<size_t>(i)]->reset();
      if (batched) {
        std::vector<models::BatchSeq> p{{caches[static_cast<size_t>(i)].get(), prompt, false}};
        batch.eval(p);
      } else {
        ctxs[static_cast<size_t>(i)]->eval(prompt);
      }
    }
    state.ResumeTiming();
    for (int t = 0; t < 32; ++t) {
      if (batched) benchmark::DoNotOptimize(batch.eval(step).data());
      else
        for (int i = 0; i < N; ++i)
          benchmark::DoNotOptimize(ctxs[static_cast<size_t>(i)]->eval({&next[static_cast<size_t>(i)], 1}).data());
    }
  }
  state.counters["tok_per_s"] = benchmark::Counter(32.0 * N * static_cast<double>(state.iterations()),
                                                   benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_llama_many_decode, batched, true)->Arg(4)->Arg(8)->Arg(16)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_llama_many_decode, separate, false)->Arg(4)->Arg(8)->Arg(16)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_llama_decode)->Apply(bench::thread_args)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_llama_prefill)->ArgsProduct({{128, 512}, {1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
