// Positional encodings side by side: sinusoidal and learned positions added to
// token embeddings, and rotary embedding (RoPE) in both pair layouts
// (interleaved, neox) and with the three context-extension scalings (linear,
// NTK-aware, YaRN).  Each shows the property that makes it useful, checked:
// sinusoidal PE(p).PE(p + k) depends only on k; a learned table is a lookup;
// RoPE's q.k depends only on the distance between query and key; the scalings
// stretch the lowest frequency by the extension factor.
#include <cmath>
#include <cstdio>
#include <random>

#include "tessera/nn/blocks.hpp"
#include "tessera/nn/positional.hpp"

using namespace tessera;

namespace {
double dot(const float* a, const float* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(a[i]) * b[i];
  return s;
}

// q.k after rotating q to position m and k to position n (one head of head_dim).
double rope_score(const Tensor<float, 3>& q, const Tensor<float, 3>& k, int32_t m, int32_t n, const RopeParams& p) {
  auto qm = q.clone(), kn = k.clone();
  nn::rope(qm.view(), std::vector<int32_t>{m}, p);
  nn::rope(kn.view(), std::vector<int32_t>{n}, p);
  return dot(qm.data(), kn.data(), q.dim(2));
}
}  // namespace

int main() {
  bool ok = true;
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> u(-1.f, 1.f);

  // Sinusoidal: PE(p, 2i) = sin(p w_i), PE(p, 2i+1) = cos(p w_i), w_i = 10000^(-2i/D), added to embeddings.
  const int64_t D = 16;
  Tensor<float, 2> pe({4, D});  // zeros: the encoding alone
  const std::vector<int32_t> pos = {10, 13, 500, 503};
  nn::add_sinusoidal(pe.view(), pos);
  std::printf("sinusoidal, D = %lld: PE(10)[0..5] =", (long long)D);
  for (int64_t i = 0; i < 6; ++i) std::printf(" %+.3f", pe(0, i));
  // sum_i sin(p w) sin(q w) + cos(p w) cos(q w) = sum_i cos((p - q) w): only the distance counts
  const double d_near = dot(&pe(0, 0), &pe(1, 0), D), d_far = dot(&pe(2, 0), &pe(3, 0), D);
  std::printf("\n  PE(10).PE(13) = %.5f, PE(500).PE(503) = %.5f (same distance, same product)\n", d_near, d_far);
  ok &= std::fabs(d_near - d_far) < 1e-4;

  // Learned: a trained [n_pos, D] table (GPT-2, BERT); x[t] += table[pos[t]], nothing beyond the table.
  Tensor<float, 2> table({8, D}), x({2, D});
  for (auto& v : table.span()) v = u(rng);
  for (auto& v : x.span()) v = u(rng);
  const auto x0 = x.clone();
  nn::add_learned(x.view(), table.view(), std::vector<int32_t>{5, 2});
  std::printf("learned, table of 8 positions: x[0][0] %.3f + table[5][0] %.3f = %.3f\n", x0(0, 0), table(5, 0),
              x(0, 0));
  ok &= x(0, 0) == x0(0, 0) + table(5, 0);
  try {
    nn::add_learned(x.view(), table.view(), std::vector<int32_t>{0, 8});
    ok = false;
  } catch (const Error& e) {
    std::printf("  position 8: Error \"%s\"\n", e.what());
  }

  // RoPE: rotate the pair (a, b) of q and k by p * freq(i); q.k then depends on m - n only.
  const int64_t hd = 64;
  Tensor<float, 3> q({1, 1, hd}), k({1, 1, hd});
  for (auto& v : q.span()) v = u(rng);
  for (auto& v : k.span()) v = u(rng);
  for (RopeStyle style : {RopeStyle::interleaved, RopeStyle::neox}) {
    const RopeParams p{static_cast<int>(hd), 10000.f, 1.f, style};
    // Which dims form pair 0: rotate e_0 and see where it goes.
    Tensor<float, 3> e({1, 1, hd});
    e(0, 0, 0) = 1.f;
    nn::rope(e.view(), std::vector<int32_t>{1}, p);
    int64_t partner = -1;
    for (int64_t i = 1; i < hd; ++i)
      if (e(0, 0, i) != 0.f) partner = i;
    const double s1 = rope_score(q, k, 5, 2, p), s2 = rope_score(q, k, 1005, 1002, p);
    std::printf("rope %-11s pair 0 = dims (0, %lld); q.k at positions (5, 2) %.5f, (1005, 1002) %.5f\n",
                style == RopeStyle::neox ? "neox:" : "interleaved:", (long long)partner, s1, s2);
    ok &= std::fabs(s1 - s2) < 1e-4 && partner == (style == RopeStyle::neox ? hd / 2 : 1);
  }

  // Longer contexts than trained: slow the rotations so new positions land on angles the model has seen.
  const int n_ctx_orig = 2048;
  const float s = 4.f;
  const RopeParams plain{static_cast<int>(hd), 10000.f, 1.f, RopeStyle::neox};
  const RopeParams lin = rope_linear(static_cast<int>(hd), 10000.f, s), ntk = rope_ntk(static_cast<int>(hd), 10000.f, s),
                   yarn = rope_yarn(static_cast<int>(hd), 10000.f, s, n_ctx_orig);
  std::printf("rope scalings, head_dim %lld, factor %.0f (YaRN trained on %d positions): freq(i) / plain freq(i)\n",
              (long long)hd, s, n_ctx_orig);
  std::printf("  %5s %10s %8s %8s %8s\n", "pair", "plain", "linear", "NTK", "YaRN");
  for (int i : {0, 4, 8, 16, 24, 31}) {
    const float f = plain.freq(i);
    std::printf("  %5d %10.3g %8.3f %8.3f %8.3f\n", i, f, lin.freq(i) / f, ntk.freq(i) / f, yarn.freq(i) / f);
  }
  std::printf("  linear slows every pair by %.0f; NTK keeps pair 0 and slows the last by %.0f; YaRN keeps the\n"
              "  fast pairs, slows the slow ones by %.0f, and scales cos/sin by mscale %.3f\n",
              s, s, s, yarn.mscale());
  const int last = static_cast<int>(hd / 2 - 1);
  for (const RopeParams* r : {&lin, &ntk, &yarn}) ok &= std::fabs(r->freq(last) * s / plain.freq(last) - 1.f) < 1e-3f;
  ok &= ntk.freq(0) == plain.freq(0) && yarn.freq(0) == plain.freq(0);

  std::printf("%s\n", ok ? "all checks hold" : "CHECK FAILED");
  return ok ? 0 : 1;
}
