// KV caches: first a table of bytes per token, the formula
// 2 * layers * kv_heads * head_dim * bytes written out here, against the heap
// bytes each cache really allocated (counted by the aligned operator new
// below) and against its own memory() after 1000 appended positions (plus
// LLaMA-2-7B's formula, as a sanity line); then the cost of appending a
// decode step (all layers) to each cache.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string_view>
#include <utility>

#include "bench_common.hpp"
#include "tessera/kv/kv.hpp"

using namespace tessera;

// Cache storage is AlignedBuffer, which allocates with the aligned operator
// new: counting live bytes here measures what a cache holds without asking
// the cache.  The request size sits in a header of `align` bytes before the
// block, since the unsized aligned delete AlignedBuffer calls does not pass it.
namespace {
std::atomic<size_t> g_aligned_live{0};
}  // namespace

// (noinline: inlined into AlignedBuffer, g++ reads the pair as new + free and warns)
[[gnu::noinline]] void* operator new(std::size_t n, std::align_val_t al) {
  const auto a = static_cast<size_t>(al);
  const size_t total = (n + a + a - 1) / a * a;
  auto* base = static_cast<std::byte*>(std::aligned_alloc(a, total));
  if (!base) throw std::bad_alloc();
  *reinterpret_cast<size_t*>(base) = n;
  g_aligned_live += n;
  return base + a;
}
[[gnu::noinline]] void operator delete(void* p, std::align_val_t al) noexcept {
  if (!p) return;
  auto* base = static_cast<std::byte*>(p) - static_cast<size_t>(al);
  g_aligned_live -= *reinterpret_cast<size_t*>(base);
  std::free(base);
}
void operator delete(void* p, std::size_t, std::align_val_t al) noexcept { operator delete(p, al); }

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

// 2 (K and V) * layers * kv_heads * head_dim * bytes per value; q8_0 stores
// each 32 values as 34 bytes (an f16 scale and 32 int8).
size_t formula_bytes_per_token(int64_t layers, int64_t kv_heads, int64_t head_dim, const char* type) {
  const size_t values = 2 * static_cast<size_t>(layers * kv_heads * head_dim);
  if (std::string_view(type) == "q8_0") return values / 32 * 34;
  return values * (std::string_view(type) == "f16" ? 2 : 4);
}

// Positions the cache's heap buffer holds and positions its reservation covers
// (the same but for paged, whose pool holds every sequence's blocks).
std::pair<int64_t, int64_t> positions_held(const kv::KvCache& c, int64_t ring) {
  if (const auto* k = dynamic_cast<const kv::ContiguousKvCache*>(&c)) return {k->capacity(), k->capacity()};
  if (const auto* p = dynamic_cast<const kv::PagedKvCache*>(&c)) {
    const int64_t B = p->pool().block_size();
    return {p->pool().n_blocks() * B, static_cast<int64_t>(p->block_table().size()) * B};
  }
  return {ring, ring};  // sliding: window + batch slots
}

// False when some cache's memory disagrees with the formula.
bool print_bytes_per_token() {
  constexpr int64_t kN = 1000, kMax = 4096, kBatch = 512, kWindow = 4096;
  std::printf("\nKV bytes per token (SmolLM2-135M layout: 30 layers x 3 KV heads x 64 dims), %lld positions stored\n",
              static_cast<long long>(kN));
  std::printf("allocated = heap bytes the cache allocated / positions that buffer holds (paged: its own pool of %lld "
              "positions, of which it reserved whole blocks); used/n and reserved from its memory()\n",
              static_cast<long long>(kMax));
  std::printf("| cache | type | formula B/token | allocated B/token | used/n B/token | reserved MiB | allocated MiB | "
              "agree |\n|---|---|---|---|---|---|---|---|\n");
  int bad = 0;
  for (const char* type : {"f32", "f16", "q8_0"})
    for (const char* spec : {"static", "growing", "sliding:4096", "paged:16"}) {
      const size_t before = g_aligned_live;
      auto c = kv::make_kv_cache(kv::parse_kv_spec(spec), kSmol.with_type(kv::parse_kv_type(type)), kMax, kBatch);
      fill(*c, kN, kBatch);
      const size_t heap = g_aligned_live - before;
      const auto [held, covered] = positions_held(*c, kWindow + kBatch);
      const size_t formula = formula_bytes_per_token(kSmol.n_layers, kSmol.n_kv_heads, kSmol.head_dim, type);
      const size_t per_pos = heap / static_cast<size_t>(held);  // AlignedBuffer pads to 64 bytes: < 1 per position
      const auto m = c->memory();
      const bool ok = per_pos == formula && m.used == static_cast<size_t>(kN) * formula &&
                      m.reserved == static_cast<size_t>(covered) * per_pos;
      bad += !ok;
      std::printf("| %s | %s | %zu | %zu | %zu | %.2f | %.2f | %s |\n", spec, type, formula, per_pos,
                  m.used / static_cast<size_t>(kN), static_cast<double>(m.reserved) / (1 << 20),
                  static_cast<double>(heap) / (1 << 20), ok ? "yes" : "NO");
    }
  std::printf("%s\n", bad ? "MISMATCH: some cache's memory differs from the formula" : "every cache matches the formula");
  std::printf("LLaMA-2-7B f16 (32 layers, 32 KV heads, 128 dims): %zu KiB/token; with 8 KV heads (GQA): %zu KiB/token\n\n",
              formula_bytes_per_token(32, 32, 128, "f16") / 1024, formula_bytes_per_token(32, 8, 128, "f16") / 1024);
  return bad == 0;
}

// One decode step's append (30 layers of one position) to a cache holding 1000-4000.
void BM_kv_append(benchmark::State& state) {
  static const char* specs[] = {"static", "growing", "sliding:4096", "paged:16"};
  static const char* types[] = {"f32", "f16", "q8_0"};
  auto c = kv::make_kv_cache(kv::parse_kv_spec(specs[state.range(0)]),
                             kSmol.with_type(kv::parse_kv_type(types[state.range(1)])), 8192, 512);
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
  const bool ok = print_bytes_per_token();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return ok ? 0 : 1;
}
