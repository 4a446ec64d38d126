// The blocks as a public API: weights from tensors, the typed and run-time
// typed linear agree, workspaces grow, strided views reach the span kernels only
// through checked paths, attention over a cache takes its positions from it,
// and the defaults and errors are the documented ones. (tests/consumer/
// block_test.cpp assembles a whole block from outside the build.)
#include <catch2/catch.hpp>

#include <cmath>
#include <stdexcept>

#include "tessera/core/quant.hpp"
#include "tessera/kv/kv.hpp"
#include "tessera/nn/attention.hpp"
#include "tessera/nn/blocks.hpp"
#include "tessera/nn/linear.hpp"
#include "../test_util.hpp"

using namespace tessera;
using Catch::Contains;

TEST_CASE("Weight::from: float and block tensors, typed linear equals the Weight dispatch bit for bit", "[nn][api]") {
  const int64_t n_out = 37, n_in = 64;
  const auto wf = test::random_tensor<float, 2>({n_out, n_in});
  Tensor<block_q4_0, 2> wq({n_out, n_in / 32});
  for (int64_t r = 0; r < n_out; ++r)
    quantize_row(std::span<const float>(&wf(r, 0), n_in), std::span<block_q4_0>(&wq(r, 0), n_in / 32));
  for (int64_t n_tok : {1, 5}) {
    const auto x = test::random_tensor<float, 2>({n_tok, n_in});
    Tensor<float, 2> a({n_tok, n_out}), b({n_tok, n_out}), c({n_tok, n_out}), d({n_tok, n_out});
    nn::LinearWorkspace ws;  // empty: grows on the first call
    const nn::Weight w = nn::Weight::from(wf);
    REQUIRE((w.type == GgmlType::f32 && w.n_out == n_out && w.n_in == n_in));
    nn::linear(w, x, a.view(), ws);
    nn::linear(wf.view(), x, b.view(), ws);
    REQUIRE(test::max_abs_diff(a.span(), b.span()) == 0);
    const nn::Weight w4 = nn::Weight::from(wq);
    REQUIRE((w4.type == GgmlType::q4_0 && w4.n_out == n_out && w4.n_in == n_in));
    nn::linear(w4, x, c.view(), ws);
    nn::linear(wq.view(), x, d.view(), ws);
    REQUIRE(test::max_abs_diff(c.span(), d.span()) == 0);
    // q4_0 against the f32 product: 4-bit rounding of uniform weights has an rms
    // error of step / sqrt(12) = (1/8) / 3.46, 6.3% of their rms (0.577); a
    // wrong kernel errs by ~100%.
    double num = 0, den = 0;
    for (size_t i = 0; i < a.span().size(); ++i) {
      num += (a.span()[i] - c.span()[i]) * (a.span()[i] - c.span()[i]);
      den += a.span()[i] * a.span()[i];
    }
    REQUIRE(std::sqrt(num / den) < 0.1);
    REQUIRE(ws.max_tokens() >= n_tok);
  }
  Tensor<float, 2> wide({4, 128});
  REQUIRE_THROWS_WITH(nn::Weight::from(wide.narrow(1, 0, 64)), Contains("is not packed"));
}

TEST_CASE("linear: rows of a wider buffer work, shape errors name weight, x and y", "[nn][api]") {
  const auto wf = test::random_tensor<float, 2>({16, 32});
  const auto xw = test::random_tensor<float, 2>({3, 48});
  Tensor<float, 2> y1({3, 16}), y2({3, 16});
  nn::LinearWorkspace ws;
  nn::linear(nn::Weight::from(wf), xw.narrow(1, 8, 40), y1.view(), ws);
  const auto packed = xw.narrow(1, 8, 40).contiguous();
  nn::linear(nn::Weight::from(wf), packed, y2.view(), ws);
  REQUIRE(test::max_abs_diff(y1.span(), y2.span()) == 0);
  REQUIRE_THROWS_WITH(nn::linear(nn::Weight::from(wf), xw, y1.view(), ws),
                      Contains("f32 weight [16, 32] takes rows of 32 features, x is [3, 48]"));
  Tensor<float, 2> bad({3, 15});
  REQUIRE_THROWS_WITH(nn::linear(nn::Weight::from(wf), packed, bad.view(), ws), Contains("writes y [3, 16], got [3, 15]"));
  const auto xbig = test::random_tensor<float, 2>({3, 64});
  const TensorView<const float, 2> every_other(xbig.data(), {3, 32}, {64, 2});
  REQUIRE_THROWS_WITH(nn::linear(nn::Weight::from(wf), every_other, y1.view(), ws), Contains("must be packed"));
}

TEST_CASE("span() and row() check contiguity in every build, extent-1 axes may have any stride", "[core][api]") {
  Tensor<float, 2> t({4, 96});
  REQUIRE_THROWS_WITH(t.narrow(1, 0, 32).span(), Contains("span() of a non-contiguous view"));
  REQUIRE_THROWS_WITH(t.view().transpose().row(0), Contains("needs packed elements"));
  REQUIRE(t.narrow(0, 1, 2).narrow(1, 0, 32).is_contiguous());  // one row of a wider matrix is packed
  REQUIRE(t.narrow(0, 1, 2).narrow(1, 0, 32).span().data() == &t(1, 0));
  REQUIRE(t.narrow(0, 1, 3).is_contiguous());
  REQUIRE_FALSE(t.narrow(0, 1, 3).narrow(1, 0, 95).is_contiguous());
  REQUIRE(t.narrow(0, 0, 0).narrow(1, 0, 5).is_contiguous());  // empty
  REQUIRE_THROWS_WITH(t.unflatten_last(7), Contains("not divisible into 7"));
  REQUIRE(t.unflatten_last(3).shape() == Shape<3>{4, 3, 32});
}

TEST_CASE("add and swiglu over views: strided slices equal the packed spans bit for bit", "[nn][api]") {
  for (int64_t n : {1, 7, 33}) {
    auto a = test::random_tensor<float, 2>({5, n + 6}), b = test::random_tensor<float, 2>({5, n});
    const auto a0 = a.clone();
    auto va = a.narrow(1, 3, 3 + n);
    Tensor<float, 2> want({5, n}), want2({5, n});
    const auto pa = va.contiguous();
    nn::add(pa.span(), b.span(), want.span());
    nn::swiglu(pa.span(), b.span(), want2.span());
    Tensor<float, 2> got2({5, n});
    nn::swiglu(va, b, got2);
    nn::add(va, b, va);
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t j = 0; j < n + 6; ++j) {
        const bool in = j >= 3 && j < 3 + n;
        REQUIRE(a(i, j) == (in ? want(i, j - 3) : a0(i, j)));
      }
    // Row by row, a row's tail takes std::exp where one packed call takes the
    // SIMD exp: both within a few float ulps of silu(g) u, |silu(g) u| <= 1.
    REQUIRE(test::max_abs_diff(got2.span(), want2.span()) <= 1e-6);
  }
  Tensor<float, 2> x({2, 4}), y({2, 5});
  REQUIRE_THROWS_WITH(nn::add(x, y, x), Contains("shapes [2, 4], [2, 5] and out [2, 4] must be equal"));
}

TEST_CASE("rms_norm errors say which size must match which", "[nn][api]") {
  Tensor<float, 2> x({3, 64}), y({3, 64}), z({3, 63});
  REQUIRE_THROWS_WITH(nn::rms_norm(x, std::vector<float>(576, 1.f), 1e-5f, y), Contains("weight has 576 elements"));
  REQUIRE_THROWS_WITH(nn::rms_norm(x, std::vector<float>(64, 1.f), 1e-5f, z), Contains("must have the same shape"));
  REQUIRE_THROWS_WITH(nn::layer_norm(x, std::vector<float>(64, 1.f), std::vector<float>(3, 0.f), 1e-5f, y),
                      Contains("bias has 3 elements"));
}

TEST_CASE("RopeParams: n_dims 0 is the whole head, the factories share the interleaved default", "[nn][api][rope]") {
  REQUIRE(RopeParams{}.style == RopeStyle::interleaved);
  REQUIRE(rope_linear(64, 1e4f, 2.f).style == RopeStyle::interleaved);
  REQUIRE(rope_ntk(64, 1e4f, 2.f).style == RopeStyle::interleaved);
  REQUIRE(rope_yarn(64, 1e4f, 2.f, 2048).style == RopeStyle::interleaved);
  for (RopeStyle style : {RopeStyle::interleaved, RopeStyle::neox}) {
    auto a = test::random_tensor<float, 3>({3, 2, 64});
    auto b = a.clone();
    const std::vector<int32_t> pos{0, 5, 9};
    nn::rope(a.view(), pos, RopeParams{0, 1e4f, 1.f, style});
    nn::rope(b.view(), pos, RopeParams{64, 1e4f, 1.f, style});
    REQUIRE(test::max_abs_diff(a.span(), b.span()) == 0);
  }
}

namespace {
// q, k, v rows for n positions of a layer: [n, H*d], [n, Hkv*d] x2.
struct Step {
  Tensor<float, 2> q, k, v;
};
Step random_step(int64_t n, int64_t H, int64_t Hkv, int64_t d) {
  return {test::random_tensor<float, 2>({n, H * d}), test::random_tensor<float, 2>({n, Hkv * d}),
          test::random_tensor<float, 2>({n, Hkv * d})};
}
}  // namespace

TEST_CASE("attention over a cache equals the KvSource call with q_pos0 set by hand, for every cache", "[nn][api][kv]") {
  const int64_t H = 4, Hkv = 2, d = 32;
  for (const char* spec : {"static", "growing", "sliding:5", "paged:3"}) {
    INFO(spec);
    const kv::KvLayout layout{2, Hkv, d, KvType::f16};
    auto a = kv::make_kv_cache(kv::parse_kv_spec(spec), layout, 64, 8);
    auto b = a->fork();
    nn::AttentionWorkspace ws;
    std::vector<KvSegment> segs;
    for (int64_t n : {6, 1, 1, 3, 1}) {
      const Step s = random_step(n, H, Hkv, d);
      kv::Append app(*a, n);
      b->begin_append(n);
      REQUIRE(app.pos0() == b->size());
      for (int64_t i = 0; i < n; ++i) REQUIRE(app.positions()[static_cast<size_t>(i)] == b->size() + i);
      Tensor<float, 2> o1({n, H * d}), o2({n, H * d});
      for (int l = 0; l < 2; ++l) {
        a->write(l, s.k, s.v);
        b->write(l, s.k, s.v);
        nn::attention(s.q.unflatten_last(H), *a, l, {}, o1.unflatten_last(H), ws);
        AttentionParams p;
        p.q_pos0 = b->size();
        p.mask = b->window() ? AttentionMask::sliding(b->window()) : AttentionMask::causal();
        nn::attention(s.q.unflatten_last(H), b->source(l, segs), p, o2.unflatten_last(H), ws);
        REQUIRE(test::max_abs_diff(o1.span(), o2.span()) == 0);
      }
      app.commit();
      b->end_append();
    }
    REQUIRE(a->size() == 12);
  }
}

TEST_CASE("attention: a wrong q_pos0 is an Error, on a cache and on plain K/V, padding keys are not", "[nn][api]") {
  const int64_t H = 2, d = 32;
  const kv::KvLayout layout{1, H, d, KvType::f32};
  auto cache = kv::make_kv_cache(kv::parse_kv_spec("static"), layout, 16, 4);
  nn::AttentionWorkspace ws;
  const Step s = random_step(3, H, H, d);
  Tensor<float, 2> o({1, H * d});
  {
    kv::Append app(*cache, 3);
    cache->write(0, s.k, s.v);
    app.commit();
  }
  kv::Append app(*cache, 1);
  const Step t = random_step(1, H, H, d);
  cache->write(0, t.k, t.v);
  AttentionParams wrong;
  wrong.q_pos0 = 2;
  REQUIRE_THROWS_WITH(nn::attention(t.q.unflatten_last(H), *cache, 0, wrong, o.unflatten_last(H), ws),
                      Contains("q_pos0 is 2 but the appended rows start at position 3"));
  REQUIRE_THROWS_WITH(nn::attention(t.q.unflatten_last(H), cache->source(0), AttentionParams{}, o.unflatten_last(H), ws),
                      Contains("keys reach position 3 but the last query row is at position 0"));
  Tensor<float, 2> o3({3, H * d});
  REQUIRE_THROWS_WITH(nn::attention(s.q.unflatten_last(H), *cache, 0, {}, o3.unflatten_last(H), ws),
                      Contains("has 3 rows but the open append has 1 positions"));
  // plain K/V: 3 keys, 1 query row at position 0 under a causal mask
  REQUIRE_THROWS_WITH(nn::attention(t.q.unflatten_last(H), s.k.unflatten_last(H), s.v.unflatten_last(H),
                                    AttentionParams{}, o.unflatten_last(H), ws),
                      Contains("keys reach position 2"));
  AttentionParams chunk;  // queries split into chunks over the full K/V: meant, so allowed when said
  chunk.allow_unseen_keys = true;
  REQUIRE_NOTHROW(nn::attention(t.q.unflatten_last(H), s.k.unflatten_last(H), s.v.unflatten_last(H), chunk,
                                o.unflatten_last(H), ws));
  AttentionParams pad;
  pad.mask.key_limit = 1;  // keys 1 and 2 are padding: allowed
  REQUIRE_NOTHROW(nn::attention(t.q.unflatten_last(H), s.k.unflatten_last(H), s.v.unflatten_last(H), pad,
                                o.unflatten_last(H), ws));
  AttentionParams none;
  none.mask = AttentionMask::none();
  REQUIRE_NOTHROW(nn::attention(t.q.unflatten_last(H), s.k.unflatten_last(H), s.v.unflatten_last(H), none,
                                o.unflatten_last(H), ws));
}

TEST_CASE("kv::Append cancels on an exception, write outside an append is an Error", "[kv][api]") {
  const kv::KvLayout layout{1, 1, 32, KvType::q8_0};
  for (const char* spec : {"static", "growing", "sliding:4", "paged:2"}) {
    INFO(spec);
    auto cache = kv::make_kv_cache(kv::parse_kv_spec(spec), layout, 16, 4);
    const Step s = random_step(3, 1, 1, 32);
    REQUIRE_THROWS_WITH(cache->write(0, s.k, s.v), Contains("outside an append"));
    {
      kv::Append app(*cache, 3);
      cache->write(0, s.k, s.v);
      app.commit();
    }
    REQUIRE(cache->size() == 3);
    REQUIRE_THROWS_AS(([&] {
                        kv::Append app(*cache, 2);
                        throw std::runtime_error("mid-forward");
                      }()),
                      std::runtime_error);
    REQUIRE(cache->size() == 3);
    REQUIRE(cache->pending() == 0);
  }
}

TEST_CASE("make_kv_cache: the layout's type unless the spec names another (an Error)", "[kv][api]") {
  const kv::KvLayout f16{2, 2, 32, KvType::f16};
  REQUIRE(kv::make_kv_cache(kv::parse_kv_spec("paged:4"), f16, 16, 4)->layout().type == KvType::f16);
  REQUIRE(kv::make_kv_cache(kv::parse_kv_spec("static", KvType::f16), f16, 16, 4)->layout().type == KvType::f16);
  REQUIRE_THROWS_WITH(kv::make_kv_cache(kv::parse_kv_spec("static", KvType::q8_0), f16, 16, 4),
                      Contains("the spec asks for q8_0 storage but the layout says f16"));
}
