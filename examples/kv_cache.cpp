// KV caches side by side: the same 300 positions of keys and values appended
// to a static, a growing, a sliding-ring and a paged cache (f32, f16, q8_0),
// attention over each, their memory, and a paged fork sharing its prefix.
#include <cmath>
#include <cstdio>
#include <random>

#include "tessera/kv/kv.hpp"
#include "tessera/nn/attention.hpp"

using namespace tessera;

int main() {
  // One layer of a small GQA model: 2 KV heads of 64 dims, 8 query heads.
  const kv::KvLayout layout{1, 2, 64, KvType::f32};
  const int64_t n = 300, heads = 8;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Tensor<float, 2> k({n, layout.kv_dim()}), v({n, layout.kv_dim()});
  Tensor<float, 3> q({1, heads, layout.head_dim});
  for (auto& x : k.span()) x = u(rng);
  for (auto& x : v.span()) x = u(rng);
  for (auto& x : q.span()) x = u(rng);

  AttentionParams p;
  p.scale = 0.125f;
  p.q_pos0 = n - 1;  // the newest token attends over the cache
  nn::AttentionWorkspace ws;
  std::vector<KvSegment> segs;
  Tensor<float, 3> ref({1, heads, layout.head_dim}), out(ref.shape());

  std::printf("%-48s %10s %10s %9s\n", "cache", "used KiB", "reserved", "max diff");
  for (const char* type : {"f32", "f16", "q8_0"})
    for (const char* spec : {"static", "growing", "sliding:256", "paged:16"}) {
      auto cache = kv::make_kv_cache(kv::parse_kv_spec(spec), layout.with_type(kv::parse_kv_type(type)), 1024, 64);
      for (int64_t p0 = 0; p0 < n; p0 += 64) {  // appended 64 positions at a time, as a prefill would
        const int64_t m = std::min<int64_t>(64, n - p0);
        cache->begin_append(m);
        cache->write(0, k.view().narrow(0, p0, p0 + m), v.view().narrow(0, p0, p0 + m));
        cache->end_append();
      }
      p.mask = cache->window() ? AttentionMask::sliding(cache->window()) : AttentionMask::causal();
      nn::attention(q.view(), cache->source(0, segs), p, out.view(), ws);
      if (std::string(spec) == "static" && std::string(type) == "f32") ref = out.clone();
      double d = 0;
      for (int64_t i = 0; i < out.size(); ++i) d = std::max(d, double(std::fabs(out.data()[i] - ref.data()[i])));
      const auto mem = cache->memory();
      std::printf("%-48s %10.1f %10.1f %9.1e\n", cache->describe().c_str(), mem.used / 1024.0, mem.reserved / 1024.0,
                  d);
    }

  // A paged fork: both sequences share the 300-position prefix until one writes.
  auto pool = std::make_shared<kv::KvBlockPool>(layout, 16, 64);
  kv::PagedKvCache a(pool, 1024);
  a.begin_append(n);
  a.write(0, k.view(), v.view());
  a.end_append();
  const int64_t before = pool->n_free();
  auto b = a.fork();
  const int64_t after_fork = pool->n_free();
  b->begin_append(1);
  b->write(0, k.view().narrow(0, 0, 1), v.view().narrow(0, 0, 1));
  b->end_append();
  std::printf("paged fork: blocks in use %lld -> %lld after fork -> %lld after the fork's first write "
              "(its partly filled last block copied)\n",
              (long long)(pool->n_blocks() - before), (long long)(pool->n_blocks() - after_fork),
              (long long)(pool->n_blocks() - pool->n_free()));
  std::printf("bytes per token: 2 * layers * kv_heads * head_dim * bytes = %zu (f32, this layout); "
              "LLaMA-2-7B f16: %zu KiB\n",
              layout.bytes_per_token(), kv::KvLayout{32, 32, 128, KvType::f16}.bytes_per_token() / 1024);
  return 0;
}
