// Elementwise expressions: every operator on the scalar backend against std::
// maths in double, the SIMD backend against the scalar one over random ranks,
// shapes, broadcast patterns and strided leaves, and the shape errors.
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <string>

#include "expr_test_util.hpp"
#include "tessera/backend/eval.hpp"

using namespace tessera;
using namespace tessera::expr;
using test::kEps;
using test::kScalar;
using test::kSimd;

namespace {


/// Worst |got - want| / (eps * scale) over a tensor, scale = |want| (or
/// max(|want|, |x|) where the op cancels), never below FLT_MIN.
template <class Ref>
double worst_ulps(const Tensor<float, 2>& got, const Tensor<float, 2>& x, Ref ref, bool scale_by_x) {
  double worst = 0;
  for (int64_t i = 0; i < got.size(); ++i) {
    const double xi = x.data()[i], want = ref(xi);
    const double scale = std::max({std::fabs(want), scale_by_x ? std::fabs(xi) : 0.0, double(FLT_MIN)});
    worst = std::max(worst, std::fabs(got.data()[i] - want) / (kEps * scale));
  }
  return worst;
}

template <class Build, class Ref>
void check_unary(const char* name, Build build, Ref ref, float lo, float hi, bool scale_by_x = false) {
  auto x = test::random_tensor<float, 2>({16, 257}, lo, hi);
  x(0, 0) = lo, x(0, 1) = hi, x(0, 2) = (lo + hi) / 2;
  Tensor<float, 2> ys({16, 257}), yv({16, 257});
  eval(kScalar, ys, build(x.view()));
  eval(kSimd, yv, build(x.view()));
  const double ws = worst_ulps(ys, x, ref, scale_by_x), wv = worst_ulps(yv, x, ref, scale_by_x);
  INFO(name << " on [" << lo << ", " << hi << "]: worst scalar " << ws << ", simd " << wv << " eps");
  // Errors in units of eps * |y|, measured over 2M random inputs: scalar
  // (glibc float functions) <= 1.3 (tanhf), SIMD <= 1.42 (xsimd erf; exp 1.05).
  // The gelu forms cancel in 1 + tanh/erf as x -> -inf, so they are measured
  // against max(|y|, |x|): <= 1.1. A bound of 4 leaves a 2.8x margin; a wrong
  // formula or constant is off by orders of magnitude.
  CHECK(ws <= 4.0);
  CHECK(wv <= 4.0);
}

}  // namespace

TEST_CASE("unary ops match std:: maths in double on both backends", "[expr]") {
  auto v = [](auto f) { return f; };
  check_unary("exp", v([](auto x) { return exp(x); }), [](double x) { return std::exp(x); }, -80.f, 80.f);
  check_unary("log", v([](auto x) { return log(x); }), [](double x) { return std::log(x); }, 1e-3f, 1e3f);
  check_unary("tanh", v([](auto x) { return tanh(x); }), [](double x) { return std::tanh(x); }, -10.f, 10.f);
  check_unary("sqrt", v([](auto x) { return sqrt(x); }), [](double x) { return std::sqrt(x); }, 0.f, 1e4f);
  check_unary("rsqrt", v([](auto x) { return rsqrt(x); }), [](double x) { return 1 / std::sqrt(x); }, 1e-4f, 1e4f);
  check_unary("sigmoid", v([](auto x) { return sigmoid(x); }), [](double x) { return 1 / (1 + std::exp(-x)); },
              -30.f, 30.f);
  check_unary("silu", v([](auto x) { return silu(x); }), [](double x) { return x / (1 + std::exp(-x)); }, -30.f,
              30.f);
  check_unary(
      "gelu", v([](auto x) { return gelu(x); }),
      [](double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }, -10.f,
      10.f, true);
  check_unary("gelu_erf", v([](auto x) { return gelu_erf(x); }),
              [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }, -10.f, 10.f, true);
  check_unary("relu", v([](auto x) { return relu(x); }), [](double x) { return x > 0 ? x : 0; }, -1.f, 1.f);
  check_unary("neg", v([](auto x) { return -x; }), [](double x) { return -x; }, -1.f, 1.f);
  check_unary("abs", v([](auto x) { return abs(x); }), [](double x) { return std::fabs(x); }, -1.f, 1.f);
}

TEST_CASE("binary ops, with numbers on either side, match double arithmetic", "[expr]") {
  auto a = test::random_tensor<float, 2>({9, 67}, -4.f, 4.f);
  auto b = test::random_tensor<float, 2>({9, 67}, 0.25f, 4.f);
  const float s = 1.75f;
  auto check = [&](const char* name, auto e, auto ref) {
    for (int backend = 0; backend < 2; ++backend) {
      Tensor<float, 2> y({9, 67});
      if (backend == 0) eval(kScalar, y, e);
      else eval(kSimd, y, e);
      double worst = 0;
      for (int64_t i = 0; i < y.size(); ++i) {
        const double want = ref(double(a.data()[i]), double(b.data()[i]));
        worst = std::max(worst, std::fabs(y.data()[i] - want) / std::max(std::fabs(want), double(FLT_MIN)));
      }
      INFO(name << (backend ? " simd" : " scalar") << ": worst " << worst / kEps << " eps");
      // One IEEE operation on float inputs is correctly rounded: <= 0.5 ulp <= eps * |want|.
      CHECK(worst <= kEps);
    }
  };
  const auto av = a.view(), bv = b.view();
  check("a + b", in(av) + bv, [](double x, double y) { return x + y; });
  check("a - b", in(av) - bv, [](double x, double y) { return x - y; });
  check("a * b", in(av) * bv, [](double x, double y) { return x * y; });
  check("a / b", in(av) / bv, [](double x, double y) { return x / y; });
  check("min(a, b)", min(av, bv), [](double x, double y) { return std::min(x, y); });
  check("max(a, b)", max(av, bv), [](double x, double y) { return std::max(x, y); });
  check("a + s", av + s, [&](double x, double) { return x + s; });
  check("s + a", s + av, [&](double x, double) { return s + x; });
  check("a - s", av - s, [&](double x, double) { return x - s; });
  check("s - a", s - av, [&](double x, double) { return s - x; });
  check("a * s", av * s, [&](double x, double) { return x * s; });
  check("s * b", s * bv, [&](double, double y) { return s * y; });
  check("a / s", av / s, [&](double x, double) { return x / double(s); });
  check("s / b", s / bv, [&](double, double y) { return s / y; });
  check("min(a, s)", min(av, s), [&](double x, double) { return std::min(x, double(s)); });
  check("max(s, a)", max(s, av), [&](double x, double) { return std::max(double(s), x); });
  check("a * 2 (int)", av * 2, [](double x, double) { return x * 2; });
  check("0.5 (double) - a", 0.5 - in(av), [](double x, double) { return 0.5 - x; });
}

namespace {

/// a op b for views of any ranks against the broadcast rule applied per index.
template <int Ra, int Rb>
void check_broadcast(const TensorView<const float, Ra>& a, const TensorView<const float, Rb>& b) {
  const auto e = in(a) * b - a;
  constexpr int R = std::remove_cvref_t<decltype(e)>::rank;
  for (int backend = 0; backend < 2; ++backend) {
    for (bool dst_t : {false, true}) {
      auto y = test::make_dest<R>(e.shape(), dst_t);
      if (backend == 0) eval(kScalar, y.view, e);
      else eval(kSimd, y.view, e);
      double worst = 0;
      test::for_each_index<R>(e.shape(), [&](const Shape<R>& idx) {
        const double x = test::bcast_at(a, idx), w = x * test::bcast_at(b, idx) - x;
        // a * b - a: two roundings (or one fused), each <= 0.5 ulp of |a b| or |a|.
        const double tol = 2 * kEps * (std::fabs(x * test::bcast_at(b, idx)) + std::fabs(x));
        worst = std::max(worst, std::fabs(test::at(y.view, idx) - w) - tol);
      });
      INFO(shape_str(a.shape()) << " * " << shape_str(b.shape()) << (backend ? " simd" : " scalar")
                                << (dst_t ? ", transposed dst" : ""));
      CHECK(worst <= 0);
    }
  }
}

}  // namespace

TEST_CASE("numpy broadcasting: [n,1]*[1,m], [m]*[n,m], missing and extent-1 axes, strided leaves", "[expr]") {
  auto col = test::make_operand<2>({5, 1}, false);
  auto row = test::make_operand<2>({1, 17}, false);
  check_broadcast(col.view, row.view);
  auto vec = test::make_operand<1>({33}, false);
  auto mat = test::make_operand<2>({4, 33}, false);
  check_broadcast(vec.view, mat.view);
  check_broadcast(mat.view, vec.view);
  auto vec_t = test::make_operand<1>({33}, true);
  auto mat_t = test::make_operand<2>({4, 33}, true);
  check_broadcast(vec_t.view, mat_t.view);
  check_broadcast(mat_t.view, mat.view);
  auto a4 = test::make_operand<4>({2, 1, 3, 1}, false);
  auto b3 = test::make_operand<3>({5, 1, 9}, true);
  check_broadcast(a4.view, b3.view);
  auto one = test::make_operand<1>({1}, false);
  auto c3 = test::make_operand<3>({3, 4, 7}, false);
  check_broadcast(one.view, c3.view);
  auto p = test::make_operand<3>({4, 1, 7}, false);
  auto q = test::make_operand<3>({4, 6, 1}, true);
  check_broadcast(p.view, q.view);
  auto tall = test::make_operand<2>({1000, 1}, false);
  auto tall2 = test::make_operand<2>({1000, 1}, false);
  check_broadcast(tall.view, tall2.view);  // merged into one row of 1000
  auto big = test::make_operand<1>({50001}, false);
  auto big2 = test::make_operand<1>({50001}, true);
  check_broadcast(big.view, big2.view);  // one row cut in chunks across threads
}

TEST_CASE("broadcast errors name both shapes, destinations must match the expression", "[expr]") {
  Tensor<float, 2> a({2, 3}), c({3, 2});
  Tensor<float, 1> b({4});
  try {
    (void)(in(a) + b);
    FAIL("no error for [2, 3] + [4]");
  } catch (const Error& err) {
    const std::string msg = err.what();
    CHECK(msg.find("[2, 3]") != std::string::npos);
    CHECK(msg.find("[4]") != std::string::npos);
  }
  CHECK_THROWS_AS(max(in(a), c), Error);
  CHECK_THROWS_AS(in(a) * in(a) - c, Error);
  CHECK_NOTHROW(in(a) * b.view().narrow(0, 0, 3));
  Tensor<float, 2> wrong({3, 2});
  CHECK_THROWS_WITH(eval(kScalar, wrong, in(a) * 2.f), Catch::Contains("[3, 2]") && Catch::Contains("[2, 3]"));
  CHECK_THROWS_AS(eval(kSimd, wrong, in(a) * 2.f), Error);
  Tensor<float, 2> row({1, 3});
  CHECK_THROWS_AS(eval(kSimd, row, in(a) + 1.f), Error);  // no broadcast into the destination
}

namespace {

// Two trees over three operands that use every op between them.
template <class A, class B, class C>
auto tree_one(const A& a, const B& b, const C& c) {
  return silu(a) * b + gelu(c) / (abs(b) + 1.f) - max(a, c) * 0.5f;
}
template <class A, class B, class C>
auto tree_two(const A& a, const B& b, const C& c) {
  return exp(min(a, 2.f)) - log(abs(c) + 0.5f) * tanh(b) + sqrt(abs(a)) * rsqrt(abs(b) + 0.25f) + sigmoid(-in(c)) -
         gelu_erf(b) + relu(in(a) - c) / 3.f + 1.5f / (2.f + in(b));
}

/// simd vs scalar on a random R-axis shape; b has one axis fewer (a missing
/// leading axis) when R > 1; each operand may broadcast on random axes and be
/// read through a transposed view; the destination may be transposed too.
template <int R>
void simd_vs_scalar_once() {
  constexpr int Rb = R > 1 ? R - 1 : 1;
  const Shape<R> full = test::random_shape<R>();
  Shape<Rb> fb{};
  for (int d = 0; d < Rb; ++d) fb[d] = full[d + (R - Rb)];
  std::bernoulli_distribution coin(0.3);
  auto a = test::make_operand<R>(test::knock_out<R>(full, 0.25), coin(test::rng()), -3.f, 3.f);
  auto b = test::make_operand<Rb>(test::knock_out<Rb>(fb, 0.25), coin(test::rng()), -3.f, 3.f);
  auto c = test::make_operand<R>(test::knock_out<R>(full, 0.25), coin(test::rng()), -3.f, 3.f);
  const bool dst_t = coin(test::rng());
  auto check_tree = [&](const auto& e, const char* name) {
    auto ys = test::make_dest<R>(e.shape(), false), yv = test::make_dest<R>(e.shape(), dst_t);
    eval(kScalar, ys.view, e);
    eval(kSimd, yv.view, e);
    double worst = 0;
    test::for_each_index<R>(e.shape(), [&](const Shape<R>& idx) {
      const double s = test::at(ys.view, idx), v = test::at(yv.view, idx);
      worst = std::max(worst, std::fabs(s - v) / (1 + std::fabs(s)));
    });
    INFO(name << ": a " << shape_str(a.view.shape()) << " b " << shape_str(b.view.shape()) << " c "
              << shape_str(c.view.shape()) << (dst_t ? ", transposed dst" : "") << ": worst " << worst / kEps);
    // Each term differs between the backends by <= ~2.5 eps of its size (xsimd
    // vs glibc maths, see the unary test, and FMA contraction); the trees add
    // < 10 terms, most below 1 + |y|. Measured worst: 2.7 eps. A misplaced
    // element (wrong stride, tail or broadcast) gives O(1).
    CHECK(worst <= 32 * kEps);
  };
  check_tree(tree_one(a.view, b.view, c.view), "tree one");
  check_tree(tree_two(a.view, b.view, c.view), "tree two");
}

}  // namespace

TEST_CASE("simd equals scalar on random ranks 1-4, tails, broadcasts and transposed leaves", "[expr]") {
  for (int rep = 0; rep < 12; ++rep) {
    simd_vs_scalar_once<1>();
    simd_vs_scalar_once<2>();
    simd_vs_scalar_once<3>();
    simd_vs_scalar_once<4>();
  }
}

TEST_CASE("every last-axis extent: leaf layouts [n,m], [n,1], [m], scalar on both backends", "[expr]") {
  for (int64_t m : test::kLastExtents) {
    const int64_t n = 3;
    auto x = test::make_operand<2>({n, m}, false);
    auto xt = test::make_operand<2>({n, m}, true);
    auto col = test::make_operand<2>({n, 1}, false);
    auto vec = test::make_operand<1>({m}, true);
    const auto e = silu(x.view) * xt.view + col.view / (vec.view + 3.f) - 0.25f;
    Tensor<float, 2> ys({n, m}), yv({n, m});
    eval(kScalar, ys, e);
    eval(kSimd, yv, e);
    double worst = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < m; ++j) {
        const double xv = x.view(i, j), want = xv / (1 + std::exp(-xv)) * xt.view(i, j) +
                                                   col.view(i, 0) / (vec.view(j) + 3.0) - 0.25;
        worst = std::max({worst, std::fabs(ys(i, j) - want), std::fabs(yv(i, j) - want)});
      }
    INFO("m = " << m << ": worst " << worst / kEps << " eps");
    // Terms are <= 1 in size with ~4 roundings each (silu 2.4 ulp): 16 eps bound.
    CHECK(worst <= 16 * kEps);
  }
}

TEST_CASE("a reduction as an operand: rms norm in one expression", "[expr][reduce]") {
  for (int64_t m : {1, 7, 33, 1000}) {
    auto x = test::make_operand<2>({5, m}, false, -2.f, 2.f);
    auto w = test::make_operand<1>({m}, false);
    const float eps = 1e-5f;
    for (int backend = 0; backend < 2; ++backend) {
      Tensor<float, 2> y({5, m});
      const auto xv = x.view;
      if (backend == 0) eval(kScalar, y, xv * rsqrt(mean_last(xv * xv) + eps) * w.view);
      else eval(kSimd, y, xv * rsqrt(mean_last(xv * xv) + eps) * w.view);
      double worst = 0;
      for (int64_t i = 0; i < 5; ++i) {
        double ms = 0;
        for (int64_t j = 0; j < m; ++j) ms += double(xv(i, j)) * xv(i, j);
        const double r = 1 / std::sqrt(ms / m + eps);
        for (int64_t j = 0; j < m; ++j)
          worst = std::max(worst, std::fabs(y(i, j) - xv(i, j) * r * w.view(j)) / (std::fabs(xv(i, j) * r) + 1e-30));
      }
      INFO("m = " << m << (backend ? " simd" : " scalar") << ": worst " << worst / kEps << " eps");
      // Relative to |x r|: the float sum of squares is off by <= (m/8 + 40) eps
      // (two SIMD accumulators), halved by the square root, plus ~4 roundings.
      CHECK(worst <= (double(m) / 16 + 30) * kEps);
    }
  }
}

TEST_CASE("in-place evaluation and empty tensors", "[expr]") {
  auto x = test::random_tensor<float, 2>({4, 37});
  auto y = x.clone();
  eval(kSimd, x, in(x) * 2.f + 1.f);
  for (int64_t i = 0; i < x.size(); ++i) CHECK(x.data()[i] == y.data()[i] * 2.f + 1.f);
  Tensor<float, 2> e({0, 5}), ez({0, 5});
  eval(kSimd, ez, exp(e));
  eval(kScalar, ez, exp(e));
  CHECK(ez.size() == 0);
}
