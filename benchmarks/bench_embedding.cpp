// Embedding-row gather (nn::embedding): a batch of token ids picks rows of a
// [n_vocab, 4096] table of each weight type and writes them as f32. Memory-
// bound: reported in GB/s of rows read plus floats written, and as % of this
// run's single-thread STREAM triad (the gather runs on one thread).
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "tessera/core/quant.hpp"
#include "tessera/nn/embedding.hpp"

using namespace tessera;

namespace {

constexpr int64_t kEmbd = 4096;     // a 7B-class hidden size
constexpr int64_t kTokens = 512;    // one prefill batch of ids
constexpr double kTableBytes = 256.0 * (1 << 20);  // far past the LLC: rows come from DRAM, as for a real vocabulary

/// A table of ~256 MiB of T: 16 rows from Gaussian values, repeated (the
/// k-quants' scale search is slow, and the values do not change the timing).
template <class T>
std::vector<T> table_of(int64_t n_vocab) {
  constexpr int64_t bs = quant_traits<T>::block_size, nb = kEmbd / bs, pool = 16;
  std::mt19937_64 g(1);
  std::normal_distribution<float> d(0.f, 0.02f);
  std::vector<float> x(static_cast<size_t>(pool * kEmbd));
  for (auto& v : x) v = d(g);
  std::vector<T> table(static_cast<size_t>(n_vocab * nb));
  if constexpr (nn::is_float_like<T>) {
    for (size_t i = 0; i < x.size(); ++i) table[i] = T(x[i]);
  } else {
    quantize_row(std::span<const float>(x), std::span<T>(table.data(), static_cast<size_t>(pool * nb)));
  }
  for (int64_t r = pool; r < n_vocab; ++r) std::memcpy(&table[r * nb], &table[(r % pool) * nb], nb * sizeof(T));
  return table;
}

template <class T>
void BM_embedding(benchmark::State& state) {
  constexpr int64_t bs = quant_traits<T>::block_size;
  const double row_bytes = static_cast<double>(kEmbd / bs * sizeof(T));
  const auto n_vocab = static_cast<int64_t>(kTableBytes / row_bytes);
  const auto table = table_of<T>(n_vocab);
  const nn::Weight w{quant_traits<T>::type, reinterpret_cast<const std::byte*>(table.data()), n_vocab, kEmbd};
  // Uniform ids over the whole table: no two batches share their rows in cache.
  std::mt19937_64 g(2);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(n_vocab - 1));
  std::vector<int32_t> ids(static_cast<size_t>(kTokens) * 64);
  for (auto& id : ids) id = pick(g);
  Tensor<float, 2> out({kTokens, kEmbd});
  size_t batch = 0;
  for (auto _ : state) {
    const std::span<const int32_t> b(ids.data() + (batch++ % 64) * kTokens, static_cast<size_t>(kTokens));
    nn::embedding(w, b, out.view());
    benchmark::DoNotOptimize(out.data());
  }
  bench::report_bandwidth(state, static_cast<double>(kTokens) * (row_bytes + 4.0 * kEmbd), 1);  // rows in, f32 out
}

}  // namespace

BENCHMARK_TEMPLATE(BM_embedding, float)->Name("embedding/f32/512x4096")->UseRealTime();
BENCHMARK_TEMPLATE(BM_embedding, f16)->Name("embedding/f16/512x4096")->UseRealTime();
BENCHMARK_TEMPLATE(BM_embedding, bf16)->Name("embedding/bf16/512x4096")->UseRealTime();
BENCHMARK_TEMPLATE(BM_embedding, block_q8_0)->Name("embedding/q8_0/512x4096")->UseRealTime();
BENCHMARK_TEMPLATE(BM_embedding, block_q4_0)->Name("embedding/q4_0/512x4096")->UseRealTime();
BENCHMARK_TEMPLATE(BM_embedding, block_q4_1)->Name("embedding/q4_1/512x4096")->UseRealTime();
BENCHMARK_TEMPLATE(BM_embedding, block_q5_0)->Name("embedding/q5_0/512x4096")->UseRealTime();
BENCHMARK_TEMPLATE(BM_embedding, block_q5_1)->Name("embedding/q5_1/512x4096")->UseRealTime();
BENCHMARK_TEMPLATE(BM_embedding, block_q4_K)->Name("embedding/q4_K/512x4096")->UseRealTime();
BENCHMARK_TEMPLATE(BM_embedding, block_q6_K)->Name("embedding/q6_K/512x4096")->UseRealTime();

BENCHMARK_MAIN();
