// kv/: every cache stores what was written (per storage type), serves the
// positions a query may see, truncates, forks, grows and accounts memory as
// documented; attention over any cache equals attention over plain tensors.
#include <catch2/catch.hpp>

#include <map>

#include "../test_util.hpp"
#include "tessera/kv/kv.hpp"
#include "tessera/nn/attention.hpp"

using namespace tessera;
using namespace tessera::kv;

namespace {

constexpr KvLayout kLayout{3, 2, 32, KvType::f32};

// The expected contents: every written row, by position, per layer.
struct Shadow {
  std::map<int64_t, std::vector<float>> k[3], v[3];
};

// Appends n random positions to c (and the shadow).
void append(KvCache& c, Shadow& s, int64_t n) {
  c.begin_append(n);
  for (int l = 0; l < kLayout.n_layers; ++l) {
    auto k = test::random_tensor<float, 2>({n, kLayout.kv_dim()});
    auto v = test::random_tensor<float, 2>({n, kLayout.kv_dim()});
    c.write(l, k.view(), v.view());
    for (int64_t i = 0; i < n; ++i) {
      s.k[l][c.size() + i].assign(&k(i, 0), &k(i, 0) + kLayout.kv_dim());
      s.v[l][c.size() + i].assign(&v(i, 0), &v(i, 0) + kLayout.kv_dim());
    }
  }
  c.end_append();
}

// Stored row as the storage type rounds it: what the cache must hand back.
std::vector<float> rounded(KvType t, const std::vector<float>& x) {
  std::vector<std::byte> buf(kv_bytes(t, static_cast<int64_t>(x.size())));
  store_row(t, x.data(), static_cast<int64_t>(x.size()), buf.data());
  std::vector<float> out(x.size());
  for (int64_t g = 0; g < kLayout.n_kv_heads; ++g)
    backend::scalar::load_kv_row(t, buf.data() + g * kv_bytes(t, kLayout.head_dim), kLayout.head_dim,
                                 out.data() + g * kLayout.head_dim);
  return out;
}

// The cache serves exactly positions [lo, size) of every layer, with the written values.
void check_contents(const KvCache& c, const Shadow& s, int64_t lo) {
  std::vector<KvSegment> segs;
  for (int l = 0; l < kLayout.n_layers; ++l) {
    const KvSource src = c.source(l, segs);
    REQUIRE(segs.size() <= c.max_segments());
    std::vector<int64_t> seen;
    std::vector<float> row(static_cast<size_t>(kLayout.kv_dim()));
    for (const KvSegment& seg : src.segments)
      for (int64_t j = 0; j < seg.n; ++j) {
        const int64_t pos = seg.pos0 + j;
        seen.push_back(pos);
        for (bool is_v : {false, true}) {
          for (int64_t g = 0; g < src.n_kv_heads; ++g)
            backend::scalar::load_kv_row(src.type, is_v ? src.v_row(seg, j, g) : src.k_row(seg, j, g), src.head_dim,
                                         row.data() + g * src.head_dim);
          const auto& want = (is_v ? s.v[l] : s.k[l]).at(pos);
          REQUIRE(test::max_abs_diff(row, rounded(src.type, want)) == 0.0);  // same bytes, same decoding
        }
      }
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> want(static_cast<size_t>(c.size() - lo));
    std::iota(want.begin(), want.end(), lo);
    REQUIRE(seen == want);
  }
}

std::vector<std::unique_ptr<KvCache>> all_caches(KvType t, int64_t max_pos, std::shared_ptr<KvBlockPool>& pool) {
  KvLayout L = kLayout;
  L.type = t;
  pool = std::make_shared<KvBlockPool>(L, 5, 64);
  std::vector<std::unique_ptr<KvCache>> v;
  v.push_back(std::make_unique<StaticKvCache>(L, max_pos));
  v.push_back(std::make_unique<GrowingKvCache>(L, max_pos, 4));
  v.push_back(std::make_unique<SlidingKvCache>(L, max_pos, 16, max_pos));  // window >= everything: keeps all
  v.push_back(std::make_unique<PagedKvCache>(pool, max_pos));
  return v;
}

}  // namespace

TEST_CASE("kv caches store every position with the storage type's rounding, across appends and truncates",
          "[kv]") {
  for (KvType t : {KvType::f32, KvType::f16, KvType::q8_0}) {
    std::shared_ptr<KvBlockPool> pool;
    for (auto& c : all_caches(t, 200, pool)) {
      INFO(c->describe());
      Shadow s;
      for (int64_t n : {1, 7, 16, 3, 1, 1, 12}) append(*c, s, n);
      REQUIRE(c->size() == 41);
      check_contents(*c, s, 0);
      c->truncate(30);  // speculation rollback: 11 positions
      check_contents(*c, s, 0);
      append(*c, s, 9);  // overwrites positions 30..38
      check_contents(*c, s, 0);
      c->reset();
      append(*c, s, 2);
      check_contents(*c, s, 0);
    }
    REQUIRE(pool->n_free() == pool->n_blocks());  // paged cache returned its blocks when destroyed
  }
}

TEST_CASE("kv sliding ring keeps the last window + batch positions, absolute", "[kv]") {
  KvLayout L = kLayout;
  SlidingKvCache c(L, 10, 4);
  Shadow s;
  for (int i = 0; i < 13; ++i) append(c, s, 1 + i % 4);  // 31 positions through a ring of 14
  REQUIRE(c.size() == 31);
  check_contents(c, s, 31 - 14);
  REQUIRE(c.window() == 10);
  REQUIRE(c.memory().reserved == 14 * L.bytes_per_token());
  REQUIRE_THROWS_WITH(c.begin_append(5), Catch::Contains("at once"));
  c.truncate(27);  // within the batch margin
  check_contents(c, s, 17);  // the ring held 17..30; 17..26 remain
  REQUIRE_THROWS_WITH(c.truncate(20), Catch::Contains("roll back"));
}

TEST_CASE("kv sliding cache: attention equals full attention with a sliding mask", "[kv][attention]") {
  KvLayout L{1, 2, 64, KvType::f32};
  const int64_t W = 24, n_total = 100, H = 6, d = 64;
  SlidingKvCache ring(L, W, 8);
  StaticKvCache full(L, n_total);
  nn::AttentionWorkspace ws;
  std::vector<KvSegment> sr, sf;
  for (int64_t p = 0; p < n_total;) {
    const int64_t n = std::min<int64_t>(1 + p % 8, n_total - p);
    auto k = test::random_tensor<float, 2>({n, L.kv_dim()}), v = test::random_tensor<float, 2>({n, L.kv_dim()});
    auto q = test::random_tensor<float, 3>({n, H, d});
    for (KvCache* c : {static_cast<KvCache*>(&ring), static_cast<KvCache*>(&full)}) {
      c->begin_append(n);
      c->write(0, k.view(), v.view());
    }
    AttentionParams ap;
    ap.scale = 0.125f;
    ap.mask = AttentionMask::sliding(W);
    ap.q_pos0 = p;
    Tensor<float, 3> a({n, H, d}), b({n, H, d});
    nn::attention(q.view(), ring.source(0, sr), ap, a.view(), ws);
    nn::attention(q.view(), full.source(0, sf), ap, b.view(), ws);
    REQUIRE(test::max_abs_diff(a.span(), b.span()) <= 1e-6);  // same keys, other summation order
    ring.end_append();
    full.end_append();
    p += n;
  }
  REQUIRE(ring.memory().reserved * 3 < full.memory().reserved);
}

TEST_CASE("kv hybrid cache: local layers in a ring, global ones in full, attention as over one full cache",
          "[kv][attention]") {
  // Layers 0 and 2 local (window W), layer 1 global; K/V appended in uneven batches.
  KvLayout L{3, 2, 32, KvType::f16};
  const int64_t W = 20, batch = 8, n_total = 90, H = 4, d = 32;
  const std::vector<bool> local{true, false, true};
  KvLayout g = L;
  g.n_layers = 1;
  HybridKvCache hybrid(L, local, W, batch, std::make_unique<GrowingKvCache>(g, 128, 4));
  StaticKvCache full(L, 128);
  nn::AttentionWorkspace ws;
  std::vector<KvSegment> sh, sf;
  std::unique_ptr<KvCache> fork_at_40;
  for (int64_t p = 0; p < n_total;) {
    const int64_t n = std::min<int64_t>(1 + p % batch, n_total - p);
    for (KvCache* c : {static_cast<KvCache*>(&hybrid), static_cast<KvCache*>(&full)}) c->begin_append(n);
    for (int l = 0; l < 3; ++l) {
      auto k = test::random_tensor<float, 2>({n, L.kv_dim()}), v = test::random_tensor<float, 2>({n, L.kv_dim()});
      hybrid.write(l, k.view(), v.view());
      full.write(l, k.view(), v.view());
      auto q = test::random_tensor<float, 3>({n, H, d});
      AttentionParams ap;
      ap.mask = local[static_cast<size_t>(l)] ? AttentionMask::sliding(W) : AttentionMask::causal();
      ap.q_pos0 = p;
      Tensor<float, 3> a({n, H, d}), b({n, H, d});
      nn::attention(q.view(), hybrid.source(l, sh), ap, a.view(), ws);
      nn::attention(q.view(), full.source(l, sf), ap, b.view(), ws);
      REQUIRE(test::max_abs_diff(a.span(), b.span()) <= 1e-6);  // same keys, other summation order
      // Local layers serve at most the ring, the global one every position.
      REQUIRE(hybrid.source(l, sh).n_keys() == (local[static_cast<size_t>(l)] ? std::min(p + n, W + batch) : p + n));
    }
    hybrid.end_append();
    full.end_append();
    p += n;
    if (!fork_at_40 && p >= 40) fork_at_40 = hybrid.fork();
  }
  REQUIRE(hybrid.size() == n_total);
  REQUIRE(hybrid.window() == 0);
  REQUIRE(hybrid.describe().find("2 local layers") != std::string::npos);
  // The fork kept its own rows: appending to the original did not reach it.
  REQUIRE(fork_at_40->size() >= 40);
  REQUIRE(fork_at_40->size() < n_total);
  // Rolling back within the window works; past what the ring kept is an error that changes nothing.
  hybrid.truncate(n_total - 5);
  REQUIRE(hybrid.size() == n_total - 5);
  REQUIRE_THROWS_WITH(hybrid.truncate(10), Catch::Contains("cannot roll back"));
  REQUIRE(hybrid.size() == n_total - 5);
  // Memory: two ring layers and one full layer, against three full layers.
  REQUIRE(hybrid.memory().used < full.memory().used);
  // Construction errors name the problem.
  REQUIRE_THROWS_WITH(HybridKvCache(L, {true, true, true}, W, batch, std::make_unique<StaticKvCache>(g, 8)),
                      Catch::Contains("needs local and global layers"));
  REQUIRE_THROWS_WITH(HybridKvCache(L, local, W, batch, std::make_unique<StaticKvCache>(L, 8)),
                      Catch::Contains("global cache must be"));
}

TEST_CASE("kv attention over every cache equals attention over the contiguous tensors", "[kv][attention]") {
  const int64_t H = 4, n = 77;
  for (KvType t : {KvType::f32, KvType::q8_0}) {
    std::shared_ptr<KvBlockPool> pool;
    auto caches = all_caches(t, 100, pool);
    auto k = test::random_tensor<float, 2>({n, kLayout.kv_dim()}), v = test::random_tensor<float, 2>({n, kLayout.kv_dim()});
    auto q = test::random_tensor<float, 3>({5, H, kLayout.head_dim});
    AttentionParams ap;
    ap.scale = 0.17f;
    ap.q_pos0 = n - 5;
    Tensor<float, 3> ref({5, H, kLayout.head_dim});
    nn::AttentionWorkspace ws;
    std::vector<KvSegment> segs;
    for (size_t i = 0; i < caches.size(); ++i) {
      KvCache& c = *caches[i];
      for (int64_t p = 0; p < n; p += 11) {
        const int64_t m = std::min<int64_t>(11, n - p);
        c.begin_append(m);
        for (int l = 0; l < kLayout.n_layers; ++l) c.write(l, k.view().narrow(0, p, p + m), v.view().narrow(0, p, p + m));
        c.end_append();
      }
      Tensor<float, 3> out({5, H, kLayout.head_dim});
      nn::attention(q.view(), c.source(1, segs), ap, out.view(), ws);
      if (i == 0) ref = out.clone();
      INFO(c.describe());
      REQUIRE(test::max_abs_diff(out.span(), ref.span()) <= 1e-6);  // identical stored bytes, other segmenting
    }
  }
}

TEST_CASE("kv paged fork shares blocks, copies on write, and behaves like a copy", "[kv]") {
  KvLayout L = kLayout;
  auto pool = std::make_shared<KvBlockPool>(L, 4, 32);
  PagedKvCache a(pool, 100);
  Shadow sa;
  append(a, sa, 10);  // blocks: 4 + 4 + 2 (last block partly filled)
  REQUIRE(pool->n_free() == 29);
  auto b = a.fork();
  REQUIRE(pool->n_free() == 29);  // shared, nothing copied yet
  Shadow sb = sa;
  append(*b, sb, 3);  // writes into the shared partial block: copied first, then one new block
  REQUIRE(pool->n_free() == 27);
  append(a, sa, 1);  // a's partial block is its own again (b took a copy)
  REQUIRE(pool->n_free() == 27);
  check_contents(a, sa, 0);
  check_contents(*b, sb, 0);
  REQUIRE(a.block_table()[0] == static_cast<const PagedKvCache&>(*b).block_table()[0]);  // full blocks still shared
  b->truncate(2);
  append(*b, sb, 5);  // rewrites b's positions 2..6: copies the shared first block, a untouched
  check_contents(a, sa, 0);
  check_contents(*b, sb, 0);
  b.reset();
  a.reset();
  REQUIRE(pool->n_free() == 32);
}

TEST_CASE("kv pool prefix caching: publish, adopt, keep freed blocks findable, evict least recently freed", "[kv]") {
  KvLayout L = kLayout;
  auto pool = std::make_shared<KvBlockPool>(L, 4, 6);
  const std::vector<int32_t> toks = {5, 6, 7, 8, 9, 10, 11, 12, 13};
  const uint64_t k0 = prefix_key(0, std::span(toks).subspan(0, 4));
  const uint64_t k1 = prefix_key(k0, std::span(toks).subspan(4, 4));
  REQUIRE(k0 != k1);
  REQUIRE(prefix_key(0, std::span(toks).subspan(4, 4)) != k1);  // the parent is part of the key
  REQUIRE(pool->find(k0) == -1);

  Shadow sa;
  std::vector<int32_t> shared;
  {
    PagedKvCache a(pool, 64);
    append(a, sa, 9);  // 3 blocks, two full
    pool->publish(a.block_table()[0], k0);
    pool->publish(a.block_table()[1], k1);
    pool->publish(a.block_table()[2], k1);  // a key names one block: the first stays
    REQUIRE(pool->find(k1) == a.block_table()[1]);
    REQUIRE(pool->n_published() == 2);
    shared = {a.block_table()[0], a.block_table()[1]};

    PagedKvCache b(pool, 64);  // a second sequence on the same prefix, while a holds it
    b.adopt(std::vector<int32_t>{pool->find(k0), pool->find(k1)});
    REQUIRE(b.size() == 8);
    REQUIRE(pool->refs(shared[0]) == 2);
    REQUIRE(pool->n_free() == 3);  // adopting took no block
    Shadow sb = sa;
    for (int l = 0; l < 3; ++l) {  // b holds a's first 8 positions only
      sb.k[l].erase(8);
      sb.v[l].erase(8);
    }
    check_contents(b, sb, 0);  // a's rows, seen through b
    append(b, sb, 2);  // b's own block after the shared ones
    check_contents(b, sb, 0);
    check_contents(a, sa, 0);
    CHECK_THROWS_WITH(b.adopt(shared), Catch::Contains("adopt() on a cache holding 10 positions"));
  }
  // Both gone: every block is free, the published ones still findable.
  REQUIRE(pool->n_free() == 6);
  REQUIRE(pool->find(k0) == shared[0]);
  {
    PagedKvCache c(pool, 64);
    c.adopt(std::vector<int32_t>{pool->find(k0)});  // revived from the free list
    REQUIRE(pool->n_free() == 5);
    Shadow sc;
    for (int l = 0; l < 3; ++l)
      for (int64_t p = 0; p < 4; ++p) {
        sc.k[l][p] = sa.k[l].at(p);
        sc.v[l][p] = sa.v[l].at(p);
      }
    check_contents(c, sc, 0);  // the freed block kept its rows
    c.truncate(2);
    append(c, sc, 1);  // rewrites inside the published block: it must stop answering for k0
    REQUIRE(pool->find(k0) == -1);
    REQUIRE(pool->find(k1) == shared[1]);
  }
  // Allocation takes the least recently freed blocks first and evicts their
  // keys: two never-used blocks, then b's own block (b went before a), then a's.
  PagedKvCache d(pool, 64);
  Shadow sd;
  append(d, sd, 12);
  REQUIRE(pool->find(k1) == shared[1]);  // freed after the three taken
  append(d, sd, 4);
  REQUIRE(d.block_table()[3] == shared[1]);
  REQUIRE(pool->find(k1) == -1);
  REQUIRE(pool->n_published() == 0);
}

TEST_CASE("kv growing fork is an independent copy, through growth and truncation", "[kv]") {
  KvLayout L = kLayout;
  GrowingKvCache a(L, 100, 4);
  Shadow sa;
  append(a, sa, 10);  // capacity 16
  auto b = a.fork();
  REQUIRE(b->memory().used == a.memory().used);
  REQUIRE(b->memory().reserved == a.memory().reserved);
  Shadow sb = sa;
  check_contents(*b, sb, 0);
  append(*b, sb, 7);  // 17 positions: b doubles to 32 and copies its rows; a keeps its buffer
  REQUIRE(b->memory().reserved == 2 * a.memory().reserved);
  append(a, sa, 1);
  check_contents(a, sa, 0);
  check_contents(*b, sb, 0);
  b->truncate(2);
  append(*b, sb, 5);  // rewrites b's positions 2..6; a's stay as written
  check_contents(a, sa, 0);
  check_contents(*b, sb, 0);
  b.reset();
  check_contents(a, sa, 0);  // a owns its rows: destroying the fork frees nothing of a's
}

TEST_CASE("kv sliding fork is an independent copy, across the ring's wrap and a rollback", "[kv]") {
  KvLayout L = kLayout;
  SlidingKvCache a(L, 8, 4);  // ring of 12 slots
  Shadow sa;
  append(a, sa, 4);
  append(a, sa, 4);
  append(a, sa, 2);
  auto b = a.fork();
  REQUIRE(b->window() == 8);
  REQUIRE(b->memory().reserved == a.memory().reserved);
  Shadow sb = sa;
  append(*b, sb, 3);  // positions 10..12: position 12 overwrites slot 0 of b's ring only
  append(a, sa, 1);
  check_contents(a, sa, 0);
  check_contents(*b, sb, 1);
  b->truncate(10);  // within the batch margin: b's window after 10 needs positions 3.. (kept from 1)
  append(*b, sb, 4);  // positions 10..13; the ring now holds 2..13
  check_contents(a, sa, 0);
  check_contents(*b, sb, 2);
}

TEST_CASE("kv memory accounting: bytes per token formula, growth, reservations", "[kv]") {
  // 2 * layers * kv_heads * head_dim * bytes
  REQUIRE(KvLayout{3, 2, 32, KvType::f32}.bytes_per_token() == 2 * 3 * 2 * 32 * 4);
  REQUIRE(KvLayout{3, 2, 32, KvType::f16}.bytes_per_token() == 2 * 3 * 2 * 32 * 2);
  REQUIRE(KvLayout{3, 2, 32, KvType::q8_0}.bytes_per_token() == 2 * 3 * 2 * 34);
  REQUIRE(KvLayout{32, 32, 128, KvType::f16}.bytes_per_token() == 512 * 1024);  // LLaMA-2-7B: 512 KiB per token
  KvLayout L = kLayout;
  GrowingKvCache g(L, 1000, 4);
  Shadow s;
  int64_t last = g.capacity(), doublings = 0;
  for (int i = 0; i < 300; ++i) {
    append(g, s, 1);
    if (g.capacity() != last) ++doublings, last = g.capacity();
    REQUIRE(g.capacity() >= g.size());
    REQUIRE(g.memory().used == static_cast<size_t>(g.size()) * L.bytes_per_token());
  }
  REQUIRE(doublings == 7);  // 4 -> 512: capacity doubles, O(log n) copies in all
  check_contents(g, s, 0);
  StaticKvCache st(L, 300);
  REQUIRE(st.memory().reserved == 300 * L.bytes_per_token());
}

TEST_CASE("kv errors: full contexts, exhausted pools and bad specs leave the cache as it was", "[kv]") {
  KvLayout L = kLayout;
  StaticKvCache st(L, 8);
  Shadow s;
  append(st, s, 6);
  REQUIRE_THROWS_WITH(st.begin_append(3), Catch::Contains("context full"));
  check_contents(st, s, 0);
  auto pool = std::make_shared<KvBlockPool>(L, 4, 2);
  PagedKvCache p(pool, 100);
  Shadow sp;
  append(p, sp, 5);
  REQUIRE_THROWS_WITH(p.begin_append(4), Catch::Contains("pool exhausted"));
  REQUIRE(p.size() == 5);
  check_contents(p, sp, 0);
  append(p, sp, 3);  // still fits in the second block
  check_contents(p, sp, 0);
  REQUIRE_THROWS_WITH(st.truncate(7), Catch::Contains("truncate(7)"));
  REQUIRE_THROWS_WITH(parse_kv_spec("sliding"), Catch::Contains("needs a size"));
  REQUIRE_THROWS_WITH(parse_kv_spec("paged:0"), Catch::Contains("bad size"));
  REQUIRE_THROWS_WITH(parse_kv_spec("ring:4"), Catch::Contains("unknown KV cache"));
  REQUIRE_THROWS_WITH(parse_kv_type("q4_0"), Catch::Contains("unknown KV type"));
  REQUIRE_THROWS_WITH(KvLayout({1, 1, 48, KvType::q8_0}).validate(), Catch::Contains("q8_0"));
  const KvSpec ok = parse_kv_spec("paged:16", KvType::f16);
  REQUIRE((ok.kind == KvSpec::Kind::paged && ok.param == 16 && ok.type == KvType::f16));
  auto k = test::random_tensor<float, 2>({2, L.kv_dim()});
  st.begin_append(1);
  REQUIRE_THROWS_WITH(st.write(0, k.view(), k.view()), Catch::Contains("write of k"));
  st.cancel_append();
  REQUIRE(st.size() == 6);
}
