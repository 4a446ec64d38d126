// nn::attention: the SIMD naive and flash paths against the scalar reference
// over head layouts, head dims, lengths, masks, KV storage types and segment
// layouts; the reference against an independent double-precision formula;
// the mask and permutation properties; the QKV and padded-batch helpers; the
// automatic algorithm choice, scratch sizes and the default scale.
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>

#include "../test_util.hpp"
#include "tessera/kv/kv_cache.hpp"
#include "tessera/nn/attention.hpp"

using namespace tessera;
namespace scalar = tessera::backend::scalar;
namespace simd = tessera::backend::simd;

namespace {

// Keys/values stored in a KV type, plus a KvSource over them cut into segments.
struct StoredKv {
  KvType type;
  int64_t n, n_kv_heads, d;
  std::vector<std::byte> k, v;
  std::vector<KvSegment> segs;

  StoredKv(const Tensor<float, 3>& kf, const Tensor<float, 3>& vf, KvType t, int64_t pos0 = 0)
      : type(t), n(kf.dim(0)), n_kv_heads(kf.dim(1)), d(kf.dim(2)) {
    const int64_t row = n_kv_heads * d;
    const size_t rb = kv_bytes(t, row);
    k.resize(rb * static_cast<size_t>(n) + 64);
    v.resize(k.size());
    for (int64_t j = 0; j < n; ++j) {
      kv::store_row(t, &kf.view()(j, 0, 0), row, k.data() + static_cast<size_t>(j) * rb);
      kv::store_row(t, &vf.view()(j, 0, 0), row, v.data() + static_cast<size_t>(j) * rb);
    }
    if (n) segs.push_back({k.data(), v.data(), pos0, n, rb});
  }
  /// Cuts the rows into segments at random points, in shuffled order (position sets unchanged).
  void scatter() {
    const KvSegment whole = segs.at(0);
    segs.clear();
    for (int64_t a = 0; a < n;) {
      const int64_t len = std::min<int64_t>(n - a, 1 + static_cast<int64_t>(test::rng()() % 40));
      const size_t off = static_cast<size_t>(a) * whole.row_bytes;
      segs.push_back({whole.k + off, whole.v + off, whole.pos0 + a, len, whole.row_bytes});
      a += len;
    }
    std::shuffle(segs.begin(), segs.end(), test::rng());
  }
  KvSource source() const { return {type, n_kv_heads, d, segs}; }
};

struct Outputs {
  Tensor<float, 3> ref, naive, flash;
};

Outputs run_all(const Tensor<float, 3>& q, const KvSource& kv, AttentionParams p) {
  Outputs o{Tensor<float, 3>(q.shape()), Tensor<float, 3>(q.shape()), Tensor<float, 3>(q.shape())};
  scalar::attention(q.view(), kv, p, o.ref.view());
  nn::AttentionWorkspace ws;
  p.algo = AttentionAlgo::naive;
  nn::attention(q.view(), kv, p, o.naive.view(), ws);
  p.algo = AttentionAlgo::flash;
  nn::attention(q.view(), kv, p, o.flash.view(), ws);
  return o;
}

// Outputs are convex combinations of values in [-1, 1].  Scores differ from the
// double reference by float dot-product rounding (|s| <= sqrt(d), ~1e-6) and the
// flash path adds one exp rounding per key tile (<= 33 tiles at 2049 keys):
// together under 1e-5 of the output.  A wrong head/group mapping, mask edge or
// rescaling step errs by 1e-2 or more.
constexpr double kTol = 2e-5;

void check_all(const Tensor<float, 3>& q, const KvSource& kv, const AttentionParams& p) {
  const Outputs o = run_all(q, kv, p);
  REQUIRE(test::max_abs_diff(o.naive.span(), o.ref.span()) <= kTol);
  REQUIRE(test::max_abs_diff(o.flash.span(), o.ref.span()) <= kTol);
  if (q.dim(0) == 1) {  // the decode path: flash's tiles, split over key ranges, partials merged (one more exp each)
    Tensor<float, 3> dec(q.shape());
    nn::AttentionWorkspace ws;
    AttentionParams pd = p;
    pd.algo = AttentionAlgo::decode;
    nn::attention(q.view(), kv, pd, dec.view(), ws);
    REQUIRE(test::max_abs_diff(dec.span(), o.ref.span()) <= kTol);
  }
}

AttentionParams params(int64_t d, AttentionMask m, int64_t q_pos0) {
  AttentionParams p;
  p.scale = 1.f / std::sqrt(static_cast<float>(d));
  p.mask = m;
  p.q_pos0 = q_pos0;
  return p;
}

}  // namespace

TEST_CASE("attention reference equals softmax(q k^T scale) v in double precision, per mask", "[attention]") {
  const int64_t n_q = 4, n_k = 9, H = 4, Hkv = 2, d = 16, q_pos0 = 5;
  auto q = test::random_tensor<float, 3>({n_q, H, d});
  auto k = test::random_tensor<float, 3>({n_k, Hkv, d});
  auto v = test::random_tensor<float, 3>({n_k, Hkv, d});
  for (AttentionMask m : {AttentionMask::causal(), AttentionMask::sliding(3), AttentionMask::none(),
                          AttentionMask::padding(6)}) {
    const auto p = params(d, m, q_pos0);
    Tensor<float, 3> out({n_q, H, d});
    StoredKv s(k, v, KvType::f32);
    scalar::attention(q.view(), s.source(), p, out.view());
    for (int64_t t = 0; t < n_q; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / (H / Hkv), qp = q_pos0 + t;
        // visible keys written out per mask, independently of AttentionMask::visible
        auto visible = [&](int64_t j) {
          switch (m.kind) {
            case AttentionMask::Kind::causal: return j <= qp;
            case AttentionMask::Kind::sliding: return j <= qp && j > qp - 3;
            default: return j < 6 || m.key_limit > n_k;
          }
        };
        std::vector<double> w(static_cast<size_t>(n_k), 0.0);
        double sum = 0;
        for (int64_t j = 0; j < n_k; ++j) {
          if (!visible(j)) continue;
          double dot = 0;
          for (int64_t i = 0; i < d; ++i) dot += static_cast<double>(q(t, h, i)) * k(j, g, i);
          sum += (w[static_cast<size_t>(j)] = std::exp(dot / 4.0));
        }
        for (int64_t i = 0; i < d; ++i) {
          double o = 0;
          for (int64_t j = 0; j < n_k; ++j) o += w[static_cast<size_t>(j)] / sum * v(j, g, i);
          REQUIRE(out(t, h, i) == Approx(o).margin(1e-6));  // float output of a double computation
        }
      }
  }
}

TEST_CASE("attention: naive and flash equal the reference for heads 1-32 and every KV-head divisor", "[attention]") {
  // Each (H, Hkv) case takes the next mask and head dim in turn: 4 masks and 5
  // dims are coprime, so the 119 cases cover every (mask, dim) pair 5-6 times
  // and every head layout once, at the cost of 119 small calls, not 119 x 20.
  const int64_t dims[] = {32, 64, 80, 96, 128};
  const int64_t n_q = 3, n_k = 70;
  const AttentionMask masks[] = {AttentionMask::causal(), AttentionMask::sliding(20), AttentionMask::none(),
                                 AttentionMask::padding(n_k * 3 / 4)};
  size_t i = 0;
  for (int64_t H = 1; H <= 32; ++H)
    for (int64_t Hkv = 1; Hkv <= H; ++Hkv) {
      if (H % Hkv) continue;
      const AttentionMask m = masks[i % 4];
      const int64_t d = dims[i % 5];
      ++i;
      auto q = test::random_tensor<float, 3>({n_q, H, d});
      auto k = test::random_tensor<float, 3>({n_k, Hkv, d});
      auto v = test::random_tensor<float, 3>({n_k, Hkv, d});
      StoredKv s(k, v, KvType::f32);
      INFO("heads " << H << " / " << Hkv << " d " << d << " mask " << int(m.kind) << " limit " << m.key_limit);
      check_all(q, s.source(), params(d, m, n_k - n_q));
    }
  REQUIRE(i == 119);  // sum of the divisor counts of 1..32
}

TEST_CASE("attention: naive and flash equal the reference over head dims, lengths and masks", "[attention]") {
  struct Len {
    int64_t n_q, n_k;
  };
  // Tails of the 64-key and 16-query tiles, decode (n_q = 1), and the longest (2049 keys).
  const Len lens[] = {{1, 1}, {1, 2}, {2, 63}, {1, 64}, {5, 65}, {17, 127}, {16, 300}, {1, 2049}, {33, 2049}};
  for (int64_t d : {32, 64, 80, 96, 128})
    for (const Len& L : lens)
      for (AttentionMask m : {AttentionMask::causal(), AttentionMask::sliding(50), AttentionMask::none(),
                              AttentionMask::padding(L.n_k * 3 / 4)}) {
        if (L.n_k == 2049 && d != 64 && d != 128) continue;  // the long cases on two dims keep the test quick
        const int64_t H = 6, Hkv = 2;
        auto q = test::random_tensor<float, 3>({L.n_q, H, d});
        auto k = test::random_tensor<float, 3>({L.n_k, Hkv, d});
        auto v = test::random_tensor<float, 3>({L.n_k, Hkv, d});
        StoredKv s(k, v, KvType::f32);
        INFO("d " << d << " n_q " << L.n_q << " n_k " << L.n_k << " mask " << int(m.kind) << " limit " << m.key_limit);
        // queries at the end of the keys: causal attention over a cache
        check_all(q, s.source(), params(d, m, L.n_k - L.n_q));
      }
}

TEST_CASE("attention: self-attention 2049 x 2049, flash equals naive", "[attention]") {
  const int64_t n = 2049, H = 2, Hkv = 1, d = 64;
  auto q = test::random_tensor<float, 3>({n, H, d});
  auto k = test::random_tensor<float, 3>({n, Hkv, d});
  auto v = test::random_tensor<float, 3>({n, Hkv, d});
  StoredKv s(k, v, KvType::f32);
  for (AttentionMask m : {AttentionMask::causal(), AttentionMask::none(), AttentionMask::sliding(300),
                          AttentionMask::padding(1500)}) {
    INFO("mask " << int(m.kind) << " window " << m.window << " limit " << m.key_limit);
    Tensor<float, 3> a({n, H, d}), b({n, H, d});
    nn::AttentionWorkspace ws;
    auto p = params(d, m, 0);
    p.algo = AttentionAlgo::naive;
    nn::attention(q.view(), s.source(), p, a.view(), ws);
    p.algo = AttentionAlgo::flash;
    nn::attention(q.view(), s.source(), p, b.view(), ws);
    REQUIRE(test::max_abs_diff(a.span(), b.span()) <= kTol);  // same float dots, summed in another order
  }
}

TEST_CASE("attention: padding on top of causal equals the reference", "[attention]") {
  const int64_t H = 6, Hkv = 2, d = 64, n_q = 40, n_k = 200;
  auto q = test::random_tensor<float, 3>({n_q, H, d});
  auto k = test::random_tensor<float, 3>({n_k, Hkv, d});
  auto v = test::random_tensor<float, 3>({n_k, Hkv, d});
  StoredKv s(k, v, KvType::f32);
  // Queries at 160..199 with keys from 170 on hidden: the limit cuts some
  // queries' causal range and not others'; queries at 0..39 with the limit at
  // 25 likewise, from the other side.
  for (auto [q_pos0, limit] : {std::pair<int64_t, int64_t>{n_k - n_q, 170}, {0, 25}}) {
    AttentionMask m = AttentionMask::causal();
    m.key_limit = limit;
    INFO("q_pos0 " << q_pos0 << " limit " << limit);
    check_all(q, s.source(), params(d, m, q_pos0));
  }
  // attention_padded applies each sequence's key length on top of the causal mask.
  const int64_t B = 2;
  auto qb = test::random_tensor<float, 4>({B, n_q, H, d});
  auto kb = test::random_tensor<float, 4>({B, n_q, Hkv, d});
  auto vb = test::random_tensor<float, 4>({B, n_q, Hkv, d});
  const std::vector<int64_t> lens = {n_q, 23};
  Tensor<float, 4> out({B, n_q, H, d});
  nn::AttentionWorkspace ws;
  nn::attention_padded(qb.view(), kb.view(), vb.view(), lens, params(d, AttentionMask::causal(), 0), out.view(), ws);
  for (int64_t b = 0; b < B; ++b) {
    AttentionMask m = AttentionMask::causal();
    m.key_limit = lens[static_cast<size_t>(b)];
    Tensor<float, 3> ref({n_q, H, d});
    KvSegment seg;
    scalar::attention(qb.view()[b], nn::contiguous_kv(kb.view()[b], vb.view()[b], seg), params(d, m, 0), ref.view());
    INFO("sequence " << b);
    REQUIRE(test::max_abs_diff(out.view()[b].contiguous().span(), ref.span()) <= kTol);
  }
}

TEST_CASE("attention: cross-attention with different query and key lengths", "[attention]") {
  for (auto [n_q, n_k] : {std::pair<int64_t, int64_t>{7, 300}, {300, 7}, {1, 129}, {65, 1}}) {
    const int64_t H = 8, Hkv = 8, d = 64;
    auto q = test::random_tensor<float, 3>({n_q, H, d});
    auto k = test::random_tensor<float, 3>({n_k, Hkv, d});
    auto v = test::random_tensor<float, 3>({n_k, Hkv, d});
    StoredKv s(k, v, KvType::f32);
    INFO("n_q " << n_q << " n_k " << n_k);
    check_all(q, s.source(), params(d, AttentionMask::none(), 0));
  }
}

TEST_CASE("attention: f16 and q8_0 keys, and keys scattered over shuffled segments", "[attention]") {
  for (KvType t : {KvType::f32, KvType::f16, KvType::q8_0})
    for (bool scattered : {false, true}) {
      const int64_t H = 9, Hkv = 3, d = 64, n_q = 20, n_k = 333;
      auto q = test::random_tensor<float, 3>({n_q, H, d});
      auto k = test::random_tensor<float, 3>({n_k, Hkv, d});
      auto v = test::random_tensor<float, 3>({n_k, Hkv, d});
      StoredKv s(k, v, t, 10);
      if (scattered) s.scatter();
      INFO(kv_type_name(t) << (scattered ? " scattered" : ""));
      // The reference reads the same stored values, so only kernel rounding differs.
      check_all(q, s.source(), params(d, AttentionMask::causal(), 10 + n_k - n_q));
      check_all(q, s.source(), params(d, AttentionMask::sliding(37), 10 + n_k - n_q));
    }
}

TEST_CASE("attention: a query that sees no key gets zeros", "[attention]") {
  const int64_t d = 32;
  auto q = test::random_tensor<float, 3>({3, 2, d});
  auto k = test::random_tensor<float, 3>({10, 1, d});
  auto v = test::random_tensor<float, 3>({10, 1, d});
  StoredKv s(k, v, KvType::f32, 100);  // keys at positions 100.., queries at 0..2: causal hides all
  auto p = params(d, AttentionMask::causal(), 0);
  p.allow_unseen_keys = true;
  const Outputs o = run_all(q, s.source(), p);
  for (const auto* t : {&o.ref, &o.naive, &o.flash})
    for (float x : t->span()) REQUIRE(x == 0.f);
}

TEST_CASE("attention property: masked-out keys and values do not change the output", "[attention]") {
  const int64_t n_q = 9, n_k = 150, H = 4, Hkv = 2, d = 64, q_pos0 = 100;
  auto q = test::random_tensor<float, 3>({n_q, H, d});
  auto k = test::random_tensor<float, 3>({n_k, Hkv, d});
  auto v = test::random_tensor<float, 3>({n_k, Hkv, d});
  for (AttentionMask m : {AttentionMask::causal(), AttentionMask::sliding(20), AttentionMask::padding(90)}) {
    for (AttentionAlgo algo : {AttentionAlgo::naive, AttentionAlgo::flash}) {
      auto p = params(d, m, q_pos0);
      p.algo = algo;
      p.allow_unseen_keys = true;  // keys past the queries are part of what this checks
      Tensor<float, 3> a({n_q, H, d}), b({n_q, H, d});
      nn::AttentionWorkspace ws;
      nn::attention(q.view(), k.view(), v.view(), p, a.view(), ws);
      auto k2 = k.clone(), v2 = v.clone();
      int64_t changed = 0;
      for (int64_t j = 0; j < n_k; ++j) {
        bool seen = false;
        for (int64_t t = 0; t < n_q; ++t) seen |= m.visible(q_pos0 + t, j);
        if (seen) continue;
        ++changed;
        for (int64_t g = 0; g < Hkv; ++g)
          for (int64_t i = 0; i < d; ++i) k2(j, g, i) = 1e3f, v2(j, g, i) = -1e3f;
      }
      REQUIRE(changed > 0);
      nn::attention(q.view(), k2.view(), v2.view(), p, b.view(), ws);
      REQUIRE(test::max_abs_diff(a.span(), b.span()) == 0.0);  // masked keys never enter any sum
    }
  }
}

TEST_CASE("attention property: without mask or positions, permuting the sequence permutes the output",
          "[attention]") {
  const int64_t n = 97, H = 4, Hkv = 1, d = 32;
  auto q = test::random_tensor<float, 3>({n, H, d});
  auto k = test::random_tensor<float, 3>({n, Hkv, d});
  auto v = test::random_tensor<float, 3>({n, Hkv, d});
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), test::rng());
  Tensor<float, 3> qp(q.shape()), kp(k.shape()), vp(v.shape());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = perm[static_cast<size_t>(i)];
    for (int64_t h = 0; h < H; ++h)
      for (int64_t c = 0; c < d; ++c) qp(i, h, c) = q(s, h, c);
    for (int64_t c = 0; c < d; ++c) kp(i, 0, c) = k(s, 0, c), vp(i, 0, c) = v(s, 0, c);
  }
  for (AttentionAlgo algo : {AttentionAlgo::naive, AttentionAlgo::flash}) {
    auto p = params(d, AttentionMask::none(), 0);
    p.algo = algo;
    Tensor<float, 3> a(q.shape()), b(q.shape());
    nn::AttentionWorkspace ws;
    nn::attention(q.view(), k.view(), v.view(), p, a.view(), ws);
    nn::attention(qp.view(), kp.view(), vp.view(), p, b.view(), ws);
    double err = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t c = 0; c < d; ++c)
          err = std::max(err, static_cast<double>(std::fabs(b(i, h, c) - a(perm[static_cast<size_t>(i)], h, c))));
    REQUIRE(err <= 1e-6);  // the same terms summed in another order: a few ulp of values <= 1
  }
}

TEST_CASE("split_qkv: one combined projection gives the Q, K, V views of three", "[attention]") {
  const int64_t n = 5, H = 4, Hkv = 2, d = 8;
  Tensor<float, 2> qkv({n, (H + 2 * Hkv) * d});
  for (int64_t i = 0; i < qkv.size(); ++i) qkv.data()[i] = static_cast<float>(i);
  const auto v = nn::split_qkv(qkv.view(), H, Hkv, d);
  REQUIRE(v.q.shape() == Shape<3>{n, H, d});
  REQUIRE(v.k.shape() == Shape<3>{n, Hkv, d});
  REQUIRE(v.v.shape() == Shape<3>{n, Hkv, d});
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < d; ++c) {
      REQUIRE(v.q(t, 3, c) == qkv(t, 3 * d + c));
      REQUIRE(v.k(t, 1, c) == qkv(t, H * d + d + c));
      REQUIRE(v.v(t, 0, c) == qkv(t, (H + Hkv) * d + c));
    }
  REQUIRE(v.k.data() == qkv.data() + H * d);  // views, not copies
  REQUIRE_THROWS_AS(nn::split_qkv(qkv.view(), H, Hkv + 1, d), Error);
}

TEST_CASE("attention_padded: each padded sequence equals its unpadded attention", "[attention]") {
  const int64_t B = 3, n_q = 6, n_k = 40, H = 4, Hkv = 2, d = 32;
  auto q = test::random_tensor<float, 4>({B, n_q, H, d});
  auto k = test::random_tensor<float, 4>({B, n_k, Hkv, d});
  auto v = test::random_tensor<float, 4>({B, n_k, Hkv, d});
  const std::vector<int64_t> lens = {40, 17, 1};
  Tensor<float, 4> out({B, n_q, H, d});
  nn::AttentionWorkspace ws;
  nn::attention_padded(q.view(), k.view(), v.view(), lens, params(d, AttentionMask::none(), 0), out.view(), ws);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = lens[static_cast<size_t>(b)];
    Tensor<float, 3> ref({n_q, H, d});
    nn::attention(q.view()[b], k.view()[b].narrow(0, 0, L), v.view()[b].narrow(0, 0, L),
                  params(d, AttentionMask::none(), 0), ref.view(), ws);
    REQUIRE(test::max_abs_diff(out.view()[b].contiguous().span(), ref.span()) <= 1e-6);
  }
  const std::vector<int64_t> bad = {40, 41, 1};
  REQUIRE_THROWS_AS(nn::attention_padded(q.view(), k.view(), v.view(), bad, params(d, AttentionMask::none(), 0),
                                         out.view(), ws),
                    Error);
}

TEST_CASE("attention rejects bad shapes and short scratch with Error", "[attention]") {
  auto q = test::random_tensor<float, 3>({2, 3, 32});
  auto k = test::random_tensor<float, 3>({4, 2, 32});
  auto v = test::random_tensor<float, 3>({4, 2, 32});
  Tensor<float, 3> out({2, 3, 32});
  nn::AttentionWorkspace ws;
  const auto p = params(32, AttentionMask::causal(), 2);  // 2 queries at positions 2, 3 over keys 0..3
  REQUIRE_THROWS_WITH(nn::attention(q.view(), k.view(), v.view(), p, out.view(), ws),
                      Catch::Contains("not a multiple of 2 KV heads"));
  auto k1 = test::random_tensor<float, 3>({4, 1, 16});
  REQUIRE_THROWS_WITH(nn::attention(q.view(), k1.view(), k1.view(), p, out.view(), ws), Catch::Contains("head_dim"));
  Tensor<float, 3> out2({2, 3, 16});
  auto kq = test::random_tensor<float, 3>({4, 1, 16});
  StoredKv s(kq, kq, KvType::f16);
  s.type = KvType::q8_0;  // 16 dims cannot be q8_0 blocks
  auto q16 = test::random_tensor<float, 3>({2, 3, 16});
  REQUIRE_THROWS_WITH(nn::attention(q16.view(), s.source(), p, out2.view(), ws), Catch::Contains("q8_0"));
  std::vector<float> tiny(3);
  StoredKv s3(test::random_tensor<float, 3>({4, 3, 32}), test::random_tensor<float, 3>({4, 3, 32}), KvType::f32);
  REQUIRE_THROWS_WITH(simd::attention(q.view(), s3.source(), p, out.view(), tiny), Catch::Contains("scratch"));
}

TEST_CASE("attention: automatic takes naive up to kNaiveMaxScores scores, flash beyond", "[attention]") {
  const int64_t H = 4, Hkv = 2, d = 32, n_q = 2;
  const int64_t at = static_cast<int64_t>(simd::kNaiveMaxScores) / n_q;  // n_q * at == kNaiveMaxScores
  auto q = test::random_tensor<float, 3>({n_q, H, d});
  for (int64_t n_k : {at, at + 1}) {
    auto k = test::random_tensor<float, 3>({n_k, Hkv, d});
    auto v = test::random_tensor<float, 3>({n_k, Hkv, d});
    StoredKv s(k, v, KvType::f32);
    const auto p = params(d, AttentionMask::none(), 0);
    const Outputs o = run_all(q, s.source(), p);
    Tensor<float, 3> autom(q.shape());
    nn::AttentionWorkspace ws;
    nn::attention(q.view(), s.source(), p, autom.view(), ws);
    // The two paths sum in different orders, so the bits tell which one ran.
    REQUIRE(test::max_abs_diff(o.naive.span(), o.flash.span()) > 0.0);
    const bool naive = n_k == at;
    INFO("n_k " << n_k << (naive ? " (naive expected)" : " (flash expected)"));
    REQUIRE(test::max_abs_diff(autom.span(), (naive ? o.naive : o.flash).span()) == 0.0);
    const int t = num_threads();
    const AttentionAlgo want = naive ? AttentionAlgo::naive : AttentionAlgo::flash;
    REQUIRE(simd::attention_scratch_floats(n_q, H, Hkv, d, n_k, AttentionAlgo::automatic, t) ==
            simd::attention_scratch_floats(n_q, H, Hkv, d, n_k, want, t));
  }
}

TEST_CASE("attention scratch: flash stays flat in the number of keys, naive grows with it", "[attention]") {
  const int64_t H = 4, Hkv = 1, d = 32;
  auto q = test::random_tensor<float, 3>({1, H, d});
  size_t flash_bytes[2] = {}, naive_bytes[2] = {};
  int i = 0;
  for (int64_t n_k : {1000, 100000}) {
    auto k = test::random_tensor<float, 3>({n_k, Hkv, d});
    auto v = test::random_tensor<float, 3>({n_k, Hkv, d});
    Tensor<float, 3> out({1, H, d});
    auto p = params(d, AttentionMask::causal(), n_k - 1);
    nn::AttentionWorkspace fw, nw;  // each grows to what its calls needed
    p.algo = AttentionAlgo::flash;
    nn::attention(q.view(), k.view(), v.view(), p, out.view(), fw);
    p.algo = AttentionAlgo::naive;
    nn::attention(q.view(), k.view(), v.view(), p, out.view(), nw);
    flash_bytes[i] = fw.bytes(), naive_bytes[i] = nw.bytes();
    ++i;
  }
  REQUIRE(flash_bytes[0] == flash_bytes[1]);
  REQUIRE(naive_bytes[1] >= naive_bytes[0] + 99000 * sizeof(float));  // one score per key (and running thread)
  REQUIRE(simd::attention_scratch_floats(16, H, Hkv, d, 1000, AttentionAlgo::flash, 2) ==
          simd::attention_scratch_floats(16, H, Hkv, d, 100000, AttentionAlgo::flash, 2));
}

TEST_CASE("attention scratch: naive takes one slice per thread that has a head to work on", "[attention]") {
  const int64_t n_q = 5, n_k = 40, d = 32;
  const size_t one = simd::attention_scratch_floats(n_q, 1, 1, d, n_k, AttentionAlgo::naive, 1);
  REQUIRE(one == static_cast<size_t>(n_q * n_k + n_q + 2 * d));
  REQUIRE(simd::attention_scratch_floats(n_q, 1, 1, d, n_k, AttentionAlgo::naive, 8) == one);
  REQUIRE(simd::attention_scratch_floats(n_q, 3, 1, d, n_k, AttentionAlgo::naive, 8) == 3 * one);
  REQUIRE(simd::attention_scratch_floats(n_q, 16, 1, d, n_k, AttentionAlgo::naive, 8) == 8 * one);
  // Run with exactly that much scratch on more threads than heads (a sanitizer
  // build catches a slice past the end), and the reserve_bound of a workspace.
  const int saved = num_threads();
  set_num_threads(4);
  for (int64_t H : {1, 2, 6}) {
    auto q = test::random_tensor<float, 3>({n_q, H, d});
    auto k = test::random_tensor<float, 3>({n_k, 1, d});
    auto v = test::random_tensor<float, 3>({n_k, 1, d});
    auto p = params(d, AttentionMask::none(), 0);
    p.algo = AttentionAlgo::naive;
    std::vector<float> scratch(simd::attention_scratch_floats(n_q, H, 1, d, n_k, AttentionAlgo::naive, 4));
    Tensor<float, 3> out(q.shape()), ref(q.shape());
    KvSegment seg;
    const KvSource src = nn::contiguous_kv(k.view(), v.view(), seg);
    simd::attention(q.view(), src, p, out.view(), scratch);
    scalar::attention(q.view(), src, p, ref.view());
    INFO("heads " << H);
    REQUIRE(test::max_abs_diff(out.span(), ref.span()) <= kTol);
    nn::AttentionWorkspace ws;
    ws.reserve_bound(n_q, H, 1, d, n_k, 4);
    REQUIRE(ws.bytes() >= scratch.size() * sizeof(float));
  }
  set_num_threads(saved);
}

TEST_CASE("attention: scale 0 (the default) means 1 / sqrt(head_dim)", "[attention]") {
  REQUIRE(AttentionParams{}.scale_for(64) == 0.125f);
  REQUIRE(AttentionParams{0.3f}.scale_for(64) == 0.3f);
  const int64_t H = 4, Hkv = 2, d = 64, n_q = 20, n_k = 150;
  auto q = test::random_tensor<float, 3>({n_q, H, d});
  auto k = test::random_tensor<float, 3>({n_k, Hkv, d});
  auto v = test::random_tensor<float, 3>({n_k, Hkv, d});
  StoredKv s(k, v, KvType::f32);
  auto p = params(d, AttentionMask::causal(), n_k - n_q);
  const Outputs explicit_scale = run_all(q, s.source(), p);
  p.scale = 0.f;
  const Outputs default_scale = run_all(q, s.source(), p);
  REQUIRE(test::max_abs_diff(default_scale.ref.span(), explicit_scale.ref.span()) == 0.0);
  REQUIRE(test::max_abs_diff(default_scale.naive.span(), explicit_scale.naive.span()) == 0.0);
  REQUIRE(test::max_abs_diff(default_scale.flash.span(), explicit_scale.flash.span()) == 0.0);
}

TEST_CASE("attention decode: key ranges split over 1-4 threads merge to the reference", "[attention]") {
  // decode_splits gives up to 2 threads / n_kv_heads ranges per KV head: with
  // 1-4 threads, 1-3 KV heads and 700-3000 keys every split count 1..8 occurs,
  // sliding windows leave whole ranges without a visible key, and shuffled
  // segments put the ranges across segment edges.
  const int saved = num_threads();
  for (int threads : {1, 2, 3, 4})
    for (int64_t hkv : {1, 3})
      for (int64_t n_k : {700, 3001})
        for (AttentionMask m : {AttentionMask::causal(), AttentionMask::sliding(40), AttentionMask::padding(n_k / 3)}) {
          set_num_threads(threads);
          const int64_t H = 3 * hkv, d = 64;
          auto q = test::random_tensor<float, 3>({1, H, d});
          StoredKv s(test::random_tensor<float, 3>({n_k, hkv, d}), test::random_tensor<float, 3>({n_k, hkv, d}),
                     KvType::f32);
          s.scatter();
          INFO("threads " << threads << " kv heads " << hkv << " keys " << n_k << " mask " << int(m.kind));
          const auto p = params(d, m, n_k - 1);
          Tensor<float, 3> ref(q.shape()), dec(q.shape());
          scalar::attention(q.view(), s.source(), p, ref.view());
          nn::AttentionWorkspace ws;
          AttentionParams pd = p;
          pd.algo = AttentionAlgo::decode;
          nn::attention(q.view(), s.source(), pd, dec.view(), ws);
          REQUIRE(test::max_abs_diff(dec.span(), ref.span()) <= kTol);  // kTol: see check_all
        }
  set_num_threads(saved);
}

TEST_CASE("attention_decode_batch: each job gets the bits of its own decode call, and the reference", "[attention]") {
  // Jobs of different lengths (one with no visible key), KV types, masks and
  // segmentings in one call, over 1-3 threads: every output must equal the
  // single decode call bit for bit (the batched step's exactness rests on it)
  // and the scalar reference within kTol (see check_all).
  const int saved = num_threads();
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    const int64_t H = 6, Hkv = 2, d = 64;
    std::vector<StoredKv> stores;
    std::vector<Tensor<float, 3>> qs, outs;
    std::vector<AttentionParams> ps;
    const int64_t lengths[] = {1, 17, 300, 1000, 64, 5};
    for (size_t i = 0; i < std::size(lengths); ++i) {
      const int64_t n = lengths[i];
      const KvType t = i % 3 == 0 ? KvType::f32 : i % 3 == 1 ? KvType::f16 : KvType::q8_0;
      stores.emplace_back(test::random_tensor<float, 3>({n, Hkv, d}), test::random_tensor<float, 3>({n, Hkv, d}), t);
      if (i % 2) stores.back().scatter();
      qs.push_back(test::random_tensor<float, 3>({1, H, d}));
      outs.emplace_back(std::array<int64_t, 3>{1, H, d});
      ps.push_back(params(d, i == 4 ? AttentionMask::sliding(9) : i == 5 ? AttentionMask::padding(0)
                                                                           : AttentionMask::causal(),
                          n - 1));
    }
    std::vector<DecodeJob> jobs;
    for (size_t i = 0; i < stores.size(); ++i) jobs.push_back({qs[i].view(), stores[i].source(), ps[i], outs[i].view()});
    nn::AttentionWorkspace ws;
    nn::attention_decode_batch(jobs, ws);
    for (size_t i = 0; i < stores.size(); ++i) {
      INFO("threads " << threads << ", job " << i << " of " << lengths[i] << " keys");
      Tensor<float, 3> alone(qs[i].shape()), ref(qs[i].shape());
      nn::AttentionWorkspace ws1;
      nn::attention(qs[i].view(), stores[i].source(), ps[i], alone.view(), ws1);
      scalar::attention(qs[i].view(), stores[i].source(), ps[i], ref.view());
      REQUIRE(test::max_abs_diff(outs[i].span(), alone.span()) == 0.0);
      REQUIRE(test::max_abs_diff(outs[i].span(), ref.span()) <= kTol);
    }
  }
  set_num_threads(saved);
  nn::AttentionWorkspace ws;
  nn::attention_decode_batch({}, ws);  // nothing to do is fine
  auto q2 = test::random_tensor<float, 3>({2, 6, 64});
  Tensor<float, 3> o2(q2.shape());
  StoredKv s(test::random_tensor<float, 3>({8, 2, 64}), test::random_tensor<float, 3>({8, 2, 64}), KvType::f32);
  const DecodeJob two_rows{q2.view(), s.source(), params(64, AttentionMask::causal(), 7), o2.view()};
  CHECK_THROWS_WITH(nn::attention_decode_batch(std::span(&two_rows, 1), ws), Catch::Contains("one query row"));
}
