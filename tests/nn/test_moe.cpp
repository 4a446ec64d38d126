// nn::moe against a dense reference written out here in double: every expert
// evaluated for every token, the router's softmax, top-k and (re)normalised
// weights applied by the definition, plus the sigmoid-gated shared expert.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "../test_util.hpp"
#include "tessera/nn/moe.hpp"

using namespace tessera;

namespace {

// y = W x in double, W [n_out, n_in] f32.
std::vector<double> matvec(const Tensor<float, 2>& W, const std::vector<double>& x) {
  std::vector<double> y(static_cast<size_t>(W.dim(0)));
  for (int64_t o = 0; o < W.dim(0); ++o)
    for (int64_t i = 0; i < W.dim(1); ++i) y[static_cast<size_t>(o)] += double(W(o, i)) * x[static_cast<size_t>(i)];
  return y;
}

// down(silu(gate x) * up x) for rows [r0, r0 + F) of the stacked gate/up and [d0, d0 + D) of down.
std::vector<double> expert(const Tensor<float, 2>& G, const Tensor<float, 2>& U, const Tensor<float, 2>& Dn, int64_t r0,
                           int64_t F, int64_t d0, int64_t D, const std::vector<double>& x) {
  std::vector<double> h(static_cast<size_t>(F));
  for (int64_t f = 0; f < F; ++f) {
    double g = 0, u = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      g += double(G(r0 + f, static_cast<int64_t>(i))) * x[i];
      u += double(U(r0 + f, static_cast<int64_t>(i))) * x[i];
    }
    h[static_cast<size_t>(f)] = g / (1 + std::exp(-g)) * u;
  }
  std::vector<double> y(static_cast<size_t>(D));
  for (int64_t d = 0; d < D; ++d)
    for (int64_t f = 0; f < F; ++f) y[static_cast<size_t>(d)] += double(Dn(d0 + d, f)) * h[static_cast<size_t>(f)];
  return y;
}

}  // namespace

TEST_CASE("moe equals the dense definition: routing, top-k, weights, shared expert", "[nn][moe]") {
  const int64_t D = 48, F = 40, Fs = 56;
  for (const int E : {1, 5}) {
    for (const int k : {1, 2, 5}) {
      if (k > E) continue;
      for (const bool norm : {true, false}) {
        for (const bool shared : {false, true}) {
          for (const int64_t T : {1, 3, 17}) {
            INFO("E " << E << " k " << k << " norm " << norm << " shared " << shared << " T " << T);
            auto Wr = test::random_tensor<float, 2>({E, D}, -2.f, 2.f);  // spread: distinct routing probabilities
            auto G = test::random_tensor<float, 2>({E * F, D}), U = test::random_tensor<float, 2>({E * F, D});
            auto Dn = test::random_tensor<float, 2>({E * D, F});
            auto Gs = test::random_tensor<float, 2>({Fs, D}), Us = test::random_tensor<float, 2>({Fs, D});
            auto Ds = test::random_tensor<float, 2>({D, Fs});
            auto ws_router = test::random_vector(static_cast<size_t>(D));
            nn::MoeWeights w;
            w.router = nn::Weight::from(Wr), w.gate = nn::Weight::from(G), w.up = nn::Weight::from(U);
            w.down = nn::Weight::from(Dn);
            w.n_expert = E, w.n_used = k, w.norm_topk = norm;
            if (shared) {
              w.sh_gate = nn::Weight::from(Gs), w.sh_up = nn::Weight::from(Us), w.sh_down = nn::Weight::from(Ds);
              w.sh_router = ws_router;
            }
            auto x = test::random_tensor<float, 2>({T, D});
            Tensor<float, 2> out({T, D});
            nn::MoeWorkspace mws(T, D, E, k, F, shared ? Fs : 0);
            nn::moe(w, x.view(), out.view(), mws);
            for (int64_t t = 0; t < T; ++t) {
              std::vector<double> xd(static_cast<size_t>(D));
              for (int64_t i = 0; i < D; ++i) xd[static_cast<size_t>(i)] = x(t, i);
              auto logits = matvec(Wr, xd);
              const double mx = *std::max_element(logits.begin(), logits.end());
              double sum = 0;
              for (double& v : logits) sum += (v = std::exp(v - mx));
              for (double& v : logits) v /= sum;
              std::vector<int> order(static_cast<size_t>(E));
              std::iota(order.begin(), order.end(), 0);
              std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
              double chosen = 0;
              for (int j = 0; j < k; ++j) chosen += logits[static_cast<size_t>(order[j])];
              std::vector<double> want(static_cast<size_t>(D));
              for (int j = 0; j < k; ++j) {
                const int e = order[static_cast<size_t>(j)];
                const double g = logits[static_cast<size_t>(e)] / (norm ? chosen : 1.0);
                const auto y = expert(G, U, Dn, e * F, F, e * D, D, xd);
                for (int64_t d = 0; d < D; ++d) want[static_cast<size_t>(d)] += g * y[static_cast<size_t>(d)];
              }
              if (shared) {
                double dot = 0;
                for (int64_t i = 0; i < D; ++i) dot += ws_router[static_cast<size_t>(i)] * xd[static_cast<size_t>(i)];
                const auto y = expert(Gs, Us, Ds, 0, Fs, 0, D, xd);
                for (int64_t d = 0; d < D; ++d) want[static_cast<size_t>(d)] += y[static_cast<size_t>(d)] / (1 + std::exp(-dot));
              }
              // f32 products of sums of ~50 terms of O(1): 1e-4 relative to the row's scale.
              double scale = 1e-3;
              for (double v : want) scale = std::max(scale, std::fabs(v));
              for (int64_t d = 0; d < D; ++d) REQUIRE(std::fabs(out(t, d) - want[static_cast<size_t>(d)]) <= 1e-4 * scale);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("moe: top-k takes the lower expert on ties, and bad shapes are errors", "[nn][moe]") {
  const std::vector<float> p{0.1f, 0.3f, 0.3f, 0.2f, 0.3f};
  int32_t idx[3];
  nn::detail::top_k(p, 3, idx);
  CHECK((idx[0] == 1 && idx[1] == 2 && idx[2] == 4));
  nn::detail::top_k(p, 1, idx);
  CHECK(idx[0] == 1);
  auto W = test::random_tensor<float, 2>({8, 16});
  nn::MoeWeights w;
  w.router = w.gate = w.up = w.down = nn::Weight::from(W);
  w.n_expert = 2, w.n_used = 3;  // k > E
  Tensor<float, 2> x({1, 16}), out({1, 16});
  nn::MoeWorkspace mws(1, 16, 2, 3, 4, 0);
  CHECK_THROWS_WITH(nn::moe(w, x.view(), out.view(), mws), Catch::Contains("moe: router"));
}
