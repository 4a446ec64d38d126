// A transformer block assembled from tessera's public pieces by a program that
// is not part of the library's build: RMSNorm, linear layers on f32 weights
// made with nn::Weight::from, neox RoPE, causal GQA attention, SwiGLU through a
// lazy expression, residual adds. Two such layers run over a sequence in one
// pass, then again incrementally through every KV cache kind and storage type
// (prefill chunk, then one token at a time), and the rows must agree. Then the
// ways to misuse the API must throw tessera::Error naming the problem, in this
// release (NDEBUG) build. Exit code 0: all held.
#ifndef NDEBUG
#error "block_test checks release-build behaviour: build it with NDEBUG (CMAKE_BUILD_TYPE=Release)"
#endif

#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <tessera/backend/eval.hpp>
#include <tessera/expr/elementwise.hpp>
#include <tessera/kv/kv.hpp>
#include <tessera/nn/attention.hpp>
#include <tessera/nn/blocks.hpp>
#include <tessera/nn/linear.hpp>

using namespace tessera;

namespace {

int g_failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("FAIL: %s\n", what.c_str());
    ++g_failures;
  }
}

/// f must throw tessera::Error whose message contains `want`.
void expect_error(const char* what, const std::function<void()>& f, const std::string& want) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    expect(msg.find(want) != std::string::npos, std::string(what) + ": message '" + msg + "' lacks '" + want + "'");
    std::printf("  misuse: %-44s -> %s\n", what, msg.substr(0, 110).c_str());
    return;
  }
  expect(false, std::string(what) + ": no tessera::Error");
}

constexpr int64_t kEmbd = 128, kHeads = 4, kKvHeads = 2, kHeadDim = 32, kFf = 192, kLayers = 2;
constexpr float kEps = 1e-5f;

Tensor<float, 2> random_matrix(std::mt19937& rng, int64_t rows, int64_t cols, float scale) {
  Tensor<float, 2> t({rows, cols});
  std::normal_distribution<float> n(0.f, scale);
  for (auto& v : t.span()) v = n(rng);
  return t;
}

struct LayerWeights {
  Tensor<float, 2> wq, wk, wv, wo, gate, up, down;
  std::vector<float> attn_norm, ffn_norm;
};

/// Activations of one forward call over T rows (owned by the caller so the
/// cached path can reuse them).
struct Buffers {
  Tensor<float, 2> xn, q, k, v, attn, tmp, gate, up;
  explicit Buffers(int64_t T)
      : xn({T, kEmbd}), q({T, kHeads * kHeadDim}), k({T, kKvHeads * kHeadDim}), v({T, kKvHeads * kHeadDim}),
        attn({T, kHeads * kHeadDim}), tmp({T, kEmbd}), gate({T, kFf}), up({T, kFf}) {}
};

const RopeParams kRope{0, 10000.f, 1.f, RopeStyle::neox};  // n_dims 0: the whole head

/// One pre-norm layer over x [T, n_embd] in place.  `attend` runs attention
/// from the rotated q, k and the v rows into attn.
void layer(const LayerWeights& w, TensorView<float, 2> x, std::span<const int32_t> pos, Buffers& b,
           nn::LinearWorkspace& ws, const std::function<void(Buffers&)>& attend) {
  const int64_t T = x.dim(0);
  auto rows = [T](Tensor<float, 2>& t) { return t.narrow(0, 0, T); };
  nn::rms_norm(x, w.attn_norm, kEps, rows(b.xn));
  nn::linear(nn::Weight::from(w.wq), rows(b.xn), rows(b.q), ws);
  nn::linear(nn::Weight::from(w.wk), rows(b.xn), rows(b.k), ws);
  nn::linear(nn::Weight::from(w.wv), rows(b.xn), rows(b.v), ws);
  nn::rope(rows(b.q).unflatten_last(kHeads), pos, kRope);
  nn::rope(rows(b.k).unflatten_last(kKvHeads), pos, kRope);
  attend(b);
  nn::linear(nn::Weight::from(w.wo), rows(b.attn), rows(b.tmp), ws);
  nn::add(x, rows(b.tmp), x);
  nn::rms_norm(x, w.ffn_norm, kEps, rows(b.xn));
  nn::linear(nn::Weight::from(w.gate), rows(b.xn), rows(b.gate), ws);
  nn::linear(nn::Weight::from(w.up), rows(b.xn), rows(b.up), ws);
  const auto g = rows(b.gate), u = rows(b.up);
  eval(g, silu(g) * u);  // found without expr:: (argument-dependent lookup)
  nn::linear(nn::Weight::from(w.down), g, rows(b.tmp), ws);
  nn::add(x, rows(b.tmp), x);
}

double max_abs(std::span<const float> a) {
  double m = 0;
  for (float v : a) m = std::max(m, static_cast<double>(std::fabs(v)));
  return m;
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  std::vector<LayerWeights> layers;
  for (int l = 0; l < kLayers; ++l) {
    const float si = 1.f / std::sqrt(static_cast<float>(kEmbd));
    LayerWeights w{random_matrix(rng, kHeads * kHeadDim, kEmbd, si),
                   random_matrix(rng, kKvHeads * kHeadDim, kEmbd, si),
                   random_matrix(rng, kKvHeads * kHeadDim, kEmbd, si),
                   random_matrix(rng, kEmbd, kHeads * kHeadDim, si),
                   random_matrix(rng, kFf, kEmbd, si),
                   random_matrix(rng, kFf, kEmbd, si),
                   random_matrix(rng, kEmbd, kFf, 1.f / std::sqrt(static_cast<float>(kFf))),
                   std::vector<float>(kEmbd, 1.f),
                   std::vector<float>(kEmbd, 1.f)};
    for (float& v : w.attn_norm) v = 1.f + 0.1f * std::normal_distribution<float>()(rng);
    layers.push_back(std::move(w));
  }
  constexpr int64_t T = 13;
  const Tensor<float, 2> input = random_matrix(rng, T, kEmbd, 1.f);
  std::vector<int32_t> pos(T);
  for (int32_t i = 0; i < T; ++i) pos[static_cast<size_t>(i)] = i;

  // The full pass: attention over this pass's own K/V rows, mask causal or sliding(W).
  nn::LinearWorkspace ws;  // grows on demand
  nn::AttentionWorkspace aws;
  auto full_pass = [&](AttentionMask mask) {
    Tensor<float, 2> x = input.clone();
    Buffers b(T);
    for (const auto& w : layers)
      layer(w, x.view(), pos, b, ws, [&](Buffers& bb) {
        AttentionParams p;
        p.mask = mask;
        nn::attention(bb.q.unflatten_last(kHeads), bb.k.unflatten_last(kKvHeads), bb.v.unflatten_last(kKvHeads), p,
                      bb.attn.unflatten_last(kHeads), aws);
      });
    return x;
  };

  // Incremental: a prefill of 5 rows, then one row per step, through a cache.
  auto cached_pass = [&](kv::KvCache& cache) {
    Tensor<float, 2> out({T, kEmbd});
    Buffers b(T);
    for (int64_t t0 = 0; t0 < T;) {
      const int64_t n = t0 == 0 ? 5 : 1;
      Tensor<float, 2> x({n, kEmbd});
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < kEmbd; ++j) x(i, j) = input(t0 + i, j);
      kv::Append app(cache, n);
      for (int l = 0; l < kLayers; ++l)
        layer(layers[static_cast<size_t>(l)], x.view(), app.positions(), b, ws, [&](Buffers& bb) {
          cache.write(l, bb.k.narrow(0, 0, n), bb.v.narrow(0, 0, n));
          nn::attention(bb.q.narrow(0, 0, n).unflatten_last(kHeads), cache, l, AttentionParams{},
                        bb.attn.narrow(0, 0, n).unflatten_last(kHeads), aws);
        });
      app.commit();
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < kEmbd; ++j) out(t0 + i, j) = x(i, j);
      t0 += n;
    }
    return out;
  };

  // Tolerances, relative to the largest |output| (about 4 here): f32 storage
  // differs from the full pass only by summation order (naive vs decode and
  // flash paths), ~1e-6; f16 rounds each K/V value to 11 bits (2^-11 relative),
  // which moves outputs by a few 1e-4 after two layers; q8_0 rounds to 1/127 of
  // each 32-value block's largest magnitude, ~0.4%, which moves them by ~1e-2.
  const Tensor<float, 2> ref_causal = full_pass(AttentionMask::causal());
  const double scale = max_abs(ref_causal.span());
  const kv::KvLayout base{static_cast<int>(kLayers), kKvHeads, kHeadDim, KvType::f32};
  std::printf("cached decode vs the full pass (%lld rows, %lld layers, %lld/%lld heads, max |out| %.2f):\n",
              static_cast<long long>(T), static_cast<long long>(kLayers), static_cast<long long>(kHeads),
              static_cast<long long>(kKvHeads), scale);
  for (const char* spec : {"static", "growing", "sliding:4", "paged:3"}) {
    for (KvType type : {KvType::f32, KvType::f16, KvType::q8_0}) {
      kv::KvLayout layout = base;
      layout.type = type;
      auto cache = kv::make_kv_cache(kv::parse_kv_spec(spec), layout, 64, 8);
      const bool sliding = std::string(spec).rfind("sliding", 0) == 0;
      const Tensor<float, 2> ref = sliding ? full_pass(AttentionMask::sliding(4)) : ref_causal.clone();
      const Tensor<float, 2> got = cached_pass(*cache);
      double err = 0;
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < kEmbd; ++j) err = std::max(err, static_cast<double>(std::fabs(got(i, j) - ref(i, j))));
      const double tol = (type == KvType::f32 ? 1e-5 : type == KvType::f16 ? 2e-3 : 3e-2) * scale;
      std::printf("  %-10s %-5s max |diff| %.2e (tolerance %.1e)\n", spec, kv_type_name(type), err, tol);
      expect(err <= tol, std::string(spec) + " " + kv_type_name(type) + " cached decode differs from the full pass");
    }
  }

  // Strided views work with the view overloads and agree with a packed copy.
  {
    Tensor<float, 2> wide = random_matrix(rng, 3, 96, 1.f), other = random_matrix(rng, 3, 32, 1.f);
    const Tensor<float, 2> before = wide.clone();
    auto cols = wide.narrow(1, 32, 64);
    nn::add(cols, other, cols);
    bool same = true;
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 96; ++j) {
        const float want = before(i, j) + (j >= 32 && j < 64 ? other(i, j - 32) : 0.f);
        same &= wide(i, j) == want;
      }
    expect(same, "nn::add on a column slice changed exactly the slice");
  }

  std::printf("misuse in a release build:\n");
  Tensor<float, 2> wide({3, 96}), narrow({3, 32}), x({3, 64}), y({3, 64});
  expect_error("span of a column slice", [&] { nn::add(wide.narrow(1, 0, 32).span(), narrow.span(), narrow.span()); },
               "span() of a non-contiguous view");
  expect_error("nn::add on views of different shapes", [&] { nn::add(wide, narrow, narrow); }, "must be equal");
  expect_error("rms_norm weight of the wrong size",
               [&] { nn::rms_norm(x, std::vector<float>(576, 1.f), kEps, y); }, "weight has 576 elements");
  expect_error("linear with x of the wrong width",
               [&] { nn::linear(nn::Weight::from(layers[0].wq), y, wide, ws); }, "takes rows of 128 features");
  expect_error("Weight::from a column slice", [&] { (void)nn::Weight::from(wide.narrow(1, 0, 64)); }, "is not packed");
  expect_error("unflatten_last(7) of 64", [&] { (void)x.unflatten_last(7); }, "not divisible into 7");
  {
    kv::KvLayout layout = base;
    auto cache = kv::make_kv_cache(kv::parse_kv_spec("static"), layout, 16, 4);
    Tensor<float, 2> k({1, kKvHeads * kHeadDim}), v({1, kKvHeads * kHeadDim}), q({1, kHeads * kHeadDim}),
        o({1, kHeads * kHeadDim});
    expect_error("write without begin_append", [&] { cache->write(0, k, v); }, "outside an append");
    {
      kv::Append app(*cache, 1);
      cache->write(0, k, v);
      app.commit();
    }
    kv::Append app(*cache, 1);
    cache->write(0, k, v);
    expect_error("attention over a cache with q_pos0 left at 0", [&] {
      std::vector<KvSegment> segs;
      nn::attention(q.unflatten_last(kHeads), cache->source(0, segs), AttentionParams{}, o.unflatten_last(kHeads), aws);
    }, "keys reach position 1 but the last query row is at position 0");
    expect_error("cache attention with a wrong q_pos0", [&] {
      AttentionParams p;
      p.q_pos0 = 5;
      nn::attention(q.unflatten_last(kHeads), *cache, 0, p, o.unflatten_last(kHeads), aws);
    }, "q_pos0 is 5 but the appended rows start at position 1");
    expect_error("cache attention with more query rows than appended", [&] {
      nn::attention(x.reshape<3>({2, 1, 96}).narrow(2, 0, 32), *cache, 0, {}, y.reshape<3>({2, 1, 96}).narrow(2, 0, 32),
                    aws);
    }, "has 2 rows but the open append has 1 positions");
  }
  expect_error("make_kv_cache with a spec type other than the layout's", [&] {
    (void)kv::make_kv_cache(kv::parse_kv_spec("paged:16", KvType::q8_0), base, 16, 4);
  }, "the spec asks for q8_0 storage but the layout says f32");

  if (g_failures) {
    std::printf("block_test: %d failure(s)\n", g_failures);
    return 1;
  }
  std::printf("block_test: ok\n");
  return 0;
}
