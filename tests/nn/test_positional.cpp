// Positional encodings: sinusoidal and learned additions, and the RoPE
// scalings (linear, NTK-aware, YaRN): their frequencies against the formulas,
// the SIMD kernel against the scalar one, and the relative-position property.
#include <catch2/catch.hpp>

#include "../test_util.hpp"
#include "tessera/backend/scalar/rope.hpp"
#include "tessera/backend/simd/rope.hpp"
#include "tessera/nn/positional.hpp"

using namespace tessera;

TEST_CASE("sinusoidal: PE(0) is [0 1 0 1 ...], hand values, and PE(p).PE(q) depends only on p - q", "[positional]") {
  const int64_t D = 64;
  Tensor<float, 2> x({4, D});
  const std::vector<int32_t> pos = {0, 1, 1000, 1003};
  nn::add_sinusoidal(x.view(), pos);
  for (int64_t i = 0; i < D; ++i) REQUIRE(x(0, i) == (i % 2 ? 1.f : 0.f));
  REQUIRE(x(1, 0) == Approx(std::sin(1.0)).margin(1e-7));                       // w_0 = 1
  REQUIRE(x(1, 2) == Approx(std::sin(std::pow(1e4, -2.0 / 64))).margin(1e-7));  // w_1
  REQUIRE(x(2, 1) == Approx(std::cos(1000.0)).margin(1e-6));
  // sum_i sin(p w)sin(q w) + cos(p w)cos(q w) = sum_i cos((p - q) w): a function of p - q only
  auto dot = [&](int64_t a, int64_t b) {
    double s = 0;
    for (int64_t i = 0; i < D; ++i) s += double(x(a, i)) * x(b, i);
    return s;
  };
  Tensor<float, 2> y({2, D});
  const std::vector<int32_t> pos2 = {7, 10};  // also 3 apart, like 1000 and 1003
  nn::add_sinusoidal(y.view(), pos2);
  double s2 = 0;
  for (int64_t i = 0; i < D; ++i) s2 += double(y(0, i)) * y(1, i);
  REQUIRE(dot(2, 3) == Approx(s2).margin(1e-5));  // float rounding of 64 unit-size products
  auto bad = Tensor<float, 2>({2, 7});
  REQUIRE_THROWS_AS(nn::add_sinusoidal(bad.view(), std::vector<int32_t>{0, 1}), Error);
}

TEST_CASE("learned positions: x[t] += table[pos[t]] exactly, out-of-table positions rejected", "[positional]") {
  auto table = test::random_tensor<float, 2>({10, 17});
  auto x = test::random_tensor<float, 2>({3, 17});
  const auto x0 = x.clone();
  const std::vector<int32_t> pos = {9, 0, 4};
  nn::add_learned(x.view(), table.view(), pos);
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t i = 0; i < 17; ++i) REQUIRE(x(t, i) == x0(t, i) + table(pos[static_cast<size_t>(t)], i));
  REQUIRE_THROWS_WITH(nn::add_learned(x.view(), table.view(), std::vector<int32_t>{0, 10, 1}),
                      Catch::Contains("position 10 outside the table of 10"));
}

TEST_CASE("rope scalings: frequencies follow linear, NTK-aware and YaRN formulas", "[positional][rope]") {
  const int n = 128;
  const float base = 10000.f, s = 8.f;
  const RopeParams plain{n, base};
  const auto lin = rope_linear(n, base, s), ntk = rope_ntk(n, base, s), yarn = rope_yarn(n, base, s, 4096);
  for (int i = 0; i < n / 2; ++i) REQUIRE(lin.freq(i) == Approx(plain.freq(i) / s).epsilon(1e-6));
  // NTK: the highest frequency is kept, the lowest is divided by exactly s, monotone between
  REQUIRE(ntk.freq(0) == plain.freq(0));
  REQUIRE(ntk.freq(n / 2 - 1) == Approx(plain.freq(n / 2 - 1) / s).epsilon(1e-4));
  for (int i = 1; i < n / 2; ++i) REQUIRE(ntk.freq(i) < plain.freq(i));
  // YaRN: pairs turning > 32 times over 4096 positions are kept, < 1 time interpolated by s
  int kept = 0, interpolated = 0;
  for (int i = 0; i < n / 2; ++i) {
    const double turns = 4096.0 * plain.freq(i) / (2 * M_PI);
    if (turns > 32.5) {
      REQUIRE(yarn.freq(i) == Approx(plain.freq(i)).epsilon(1e-6));
      ++kept;
    }
    if (turns < 0.95) {
      REQUIRE(yarn.freq(i) == Approx(plain.freq(i) / s).epsilon(1e-5));
      ++interpolated;
    }
    REQUIRE(yarn.freq(i) <= plain.freq(i) * (1 + 1e-6));
    REQUIRE(yarn.freq(i) >= plain.freq(i) / s * (1 - 1e-6));
  }
  REQUIRE(kept > 10);
  REQUIRE(interpolated > 10);
  REQUIRE(yarn.mscale() == Approx(0.1 * std::log(8.0) + 1.0));
  REQUIRE(rope_yarn(n, base, 1.f, 4096).mscale() == 1.f);
  REQUIRE(plain.mscale() == 1.f);
}

TEST_CASE("rope scalings: simd equals scalar, and q.k depends only on the relative position", "[positional][rope]") {
  const int d = 64;
  for (const RopeParams& p : {RopeParams{d, 10000.f}, rope_linear(d, 10000.f, 4.f, RopeStyle::neox), rope_ntk(d, 10000.f, 4.f, RopeStyle::neox),
                              rope_yarn(d, 10000.f, 4.f, 2048, RopeStyle::interleaved)}) {
    INFO("scaling " << int(p.scaling));
    auto x = test::random_tensor<float, 3>({5, 3, d});
    auto y = x.clone();
    const std::vector<int32_t> pos = {0, 1, 17, 4000, 9000};
    backend::scalar::rope(x.view(), pos, p);
    backend::simd::rope(y.view(), pos, p);
    // Same float theta in both, then libm vs the same libm: bit-equal up to FMA contraction, 1e-6 of |x| <= 1.
    REQUIRE(test::max_abs_diff(x.span(), y.span()) <= 1e-6);

    // <rope(q, m), rope(k, m')> is a function of m - m' (times mscale^2 for YaRN)
    auto q = test::random_tensor<float, 3>({1, 1, d}), k = test::random_tensor<float, 3>({1, 1, d});
    auto rot_dot = [&](int32_t m, int32_t mk) {
      auto a = q.clone(), b = k.clone();
      backend::simd::rope(a.view(), std::vector<int32_t>{m}, p);
      backend::simd::rope(b.view(), std::vector<int32_t>{mk}, p);
      double s = 0;
      for (int i = 0; i < d; ++i) s += double(a(0, 0, i)) * b(0, 0, i);
      return s;
    };
    // theta = pos * freq is rounded to float: at pos ~1000 that is ~6e-5 rad, a 1e-4 change of the dot
    REQUIRE(rot_dot(10, 3) == Approx(rot_dot(1010, 1003)).margin(1e-3));
    REQUIRE(rot_dot(5, 5) == Approx(rot_dot(0, 0)).margin(1e-5));
  }
}
