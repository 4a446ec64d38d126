// KV caches: first a table of bytes per token, measured from each cache's
// memory() after 1000 appended positions, beside the formula
// 2 * layers * kv_heads * head_dim * bytes (plus LLaMA-2-7B's, as a sanity
// line); then the cost of appending a decode step (all layers) to each cache.
#include <cstdio>

#include "bench_common.hpp"
#include "tessera/kv/kv.hpp"

using namespace tessera;

namespace {

// SmolLM2-135M: 30 layers, 3 KV heads of 64 dims.
constexpr kv::KvLayout kSmol{30, 3, 64, KvType::f32};

void fill(kv::KvCache& c, int64_t n, int64_t batch) {
  Tensor<float, 2> rows({batch, kSmol.kv_dim()});
  for (int64_t i = 0; i < rows.size(); ++i) rows.data()[i] = static_cast<float>(i % 13) * 0.1f;
  for (int64_t p = 0; p < n; p += batch) {
    const int64_t m = std::min(batch, n - p);
    c.begin_append(m);
    for (int l = 0; l < c.layout().n_layers; ++l) c.write(l, rows.view().narrow(0, 0, m), rows.view().narrow(0, 0, m));
    c.end_append();
  }
}

void print_bytes_per_token() {
  std::printf("\nKV bytes per token (SmolLM2-135M layout: 30 layers x 3 KV heads x 64 dims), 1000 positions stored\n");
  std::printf("| cache | type | measured B/token (used) | formula B/token | reserved MiB |\n|---|---|---|---|---|\n");
  for (const char* type : {"f32", "f16", "q8_0"})
    for (const char* spec : {"static", "growing", "sliding:4096", "paged:16"}) {
      auto c = kv::make_kv_cache(kv::parse_kv_spec(spec, kv::parse_kv_type(type)), kSmol, 4096, 512);
      fill(*c, 1000, 512);
      const auto m = c->memory();
      std::printf("| %s | %s | %zu | %zu | %.2f |\n", spec, type, m.used / 1000, c->layout().bytes_per_token(),
                  static_cast<double>(m.reserved) / (1 << 20));
    }
  const kv::KvLayout l2{32, 32, 128, KvType::f16}, l2_gqa{32, 8, 128, KvType::f16};
  std::printf("LLaMA-2-7B f16 (32 layers, 32 KV heads, 128 dims): %zu KiB/token; with 8 KV heads (GQA): %zu KiB/token\n\n",
              l2.bytes_per_token() / 1024, l2_gqa.bytes_per_token() / 1024);
}

// One decode step's append (30 layers of one position) to a cache holding 1000-4000.
void BM_kv_append(benchmark::State& state) {
  static const char* specs[] = {"static", "growing", "sliding:4096", "paged:16"};
  static const char* types[] = {"f32", "f16", "q8_0"};
  auto c = kv::make_kv_cache(kv::parse_kv_spec(specs[state.range(0)], kv::parse_kv_type(types[state.range(1)])),
                             kSmol, 8192, 512);
  fill(*c, 4000, 512);  // touch every page the loop will write (first-touch faults are not the append's cost)
  c->truncate(1000);
  Tensor<float, 2> row({1, kSmol.kv_dim()});
  for (auto _ : state) {
    if (c->size() >= 4000) c->truncate(1000);  // stay in the same regime
    c->begin_append(1);
    for (int l = 0; l < kSmol.n_layers; ++l) c->write(l, row.view(), row.view());
    c->end_append();
  }
  state.SetLabel(c->describe());
}

}  // namespace

BENCHMARK(BM_kv_append)->ArgsProduct({{0, 1, 2, 3}, {0, 1, 2}});

int main(int argc, char** argv) {
  print_bytes_per_token();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
