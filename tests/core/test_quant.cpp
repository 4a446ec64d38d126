// Quant codecs: round-trip error bounds per format (each bound derived beside
// its check), exact round trips on values already on a format's grid, nibble
// and bit layouts, and dequantization of blocks assembled byte by byte from
// the GGUF block definitions.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <vector>

#include "tessera/core/quant.hpp"

using namespace tessera;

namespace {

std::mt19937_64& rng() {
  static std::mt19937_64 g(7031);
  return g;
}

/// Rows of n_blocks * bs values: Gaussian blocks whose scale varies over four
/// decades, plus the awkward blocks (all zero, one non-zero value, constant
/// positive, constant negative, all positive, a lone outlier).
std::vector<float> test_row(int n_blocks, int bs) {
  std::normal_distribution<float> g;
  std::uniform_real_distribution<float> u(-4.f, 0.f);
  std::vector<float> x(static_cast<size_t>(n_blocks) * bs);
  for (int b = 0; b < n_blocks; ++b) {
    float* xb = x.data() + static_cast<size_t>(b) * bs;
    const float scale = std::pow(10.f, u(rng()));
    for (int i = 0; i < bs; ++i) xb[i] = g(rng()) * scale;
    switch (b % 8) {
      case 1: std::fill(xb, xb + bs, 0.f); break;
      case 2: std::fill(xb, xb + bs, 0.f); xb[bs / 3] = -scale; break;
      case 3: std::fill(xb, xb + bs, 0.75f * scale); break;
      case 4: std::fill(xb, xb + bs, -0.75f * scale); break;
      case 5: for (int i = 0; i < bs; ++i) xb[i] = std::fabs(xb[i]) + scale; break;
      case 6: xb[bs - 1] = 40.f * scale; break;
      default: break;
    }
  }
  return x;
}

template <class B>
std::vector<float> round_trip(const std::vector<float>& x, std::vector<B>& blocks) {
  blocks.assign(x.size() / quant_traits<B>::block_size, B{});
  quantize_row(std::span<const float>(x), std::span<B>(blocks));
  std::vector<float> y(x.size());
  dequantize_row(std::span<const B>(blocks), std::span<float>(y));
  return y;
}

double amax_of(const float* x, int n) {
  double a = 0;
  for (int i = 0; i < n; ++i) a = std::max(a, std::fabs(static_cast<double>(x[i])));
  return a;
}

constexpr int kBlocks = 40;

}  // namespace

TEST_CASE("quant: sizes that are not whole blocks or disagree throw", "[quant]") {
  std::vector<float> x(64), out(64);
  std::vector<block_q8_0> q8(2);
  std::vector<block_q4_K> q4k(1);
  CHECK_THROWS_AS(quantize_row(std::span<const float>(x.data(), 33), std::span<block_q8_0>(q8.data(), 1)), Error);
  CHECK_THROWS_AS(quantize_row(std::span<const float>(x.data(), 64), std::span<block_q8_0>(q8.data(), 1)), Error);
  CHECK_THROWS_AS(quantize_row(std::span<const float>(x), std::span<block_q4_K>(q4k)), Error);  // 64 < 256
  CHECK_THROWS_AS(dequantize_row(std::span<const block_q8_0>(q8), std::span<float>(out.data(), 63)), Error);
  CHECK_THROWS_WITH(dequantize_row(std::span<const block_q8_0>(q8), std::span<float>(out.data(), 32)),
                    Catch::Contains("q8_0"));
  CHECK_NOTHROW(quantize_row(std::span<const float>(x), std::span<block_q8_0>(q8)));
}

TEST_CASE("quant: block layouts match GGUF offsets", "[quant]") {
  CHECK(offsetof(block_q8_0, qs) == 2);
  CHECK(offsetof(block_q8_1, s) == 2);
  CHECK(offsetof(block_q8_1, qs) == 4);
  CHECK(offsetof(block_q4_1, m) == 2);
  CHECK(offsetof(block_q4_1, qs) == 4);
  CHECK(offsetof(block_q5_0, qh) == 2);
  CHECK(offsetof(block_q5_0, qs) == 6);
  CHECK(offsetof(block_q5_1, m) == 2);
  CHECK(offsetof(block_q5_1, qh) == 4);
  CHECK(offsetof(block_q5_1, qs) == 8);
  CHECK(offsetof(block_q4_K, dmin) == 2);
  CHECK(offsetof(block_q4_K, scales) == 4);
  CHECK(offsetof(block_q4_K, qs) == 16);
  CHECK(offsetof(block_q5_K, qh) == 16);
  CHECK(offsetof(block_q5_K, qs) == 48);
  CHECK(offsetof(block_q6_K, qh) == 128);
  CHECK(offsetof(block_q6_K, scales) == 192);
  CHECK(offsetof(block_q6_K, d) == 208);
  CHECK(offsetof(block_q8_K, qs) == 4);
  CHECK(offsetof(block_q8_K, bsums) == 260);
}

TEST_CASE("quant q8_0/q8_1: round-trip error <= d/2 plus the f16 rounding of d", "[quant]") {
  const auto x = test_row(kBlocks, 32);
  std::vector<block_q8_0> b0;
  std::vector<block_q8_1> b1;
  const auto y0 = round_trip(x, b0);
  const auto y1 = round_trip(x, b1);
  for (int b = 0; b < kBlocks; ++b) {
    const double d = amax_of(&x[32 * b], 32) / 127.0, d16 = static_cast<float>(b0[b].d);
    // q = round(x * 127/amax): |x - q d| <= d/2 (+2e-5 d for the float product
    // x * (127/amax)); storing d as f16 moves q d by |q| |d - d16| <= 127 |d - d16|.
    const double bound = d * (0.5 + 2e-5) + 127.0 * std::fabs(d - d16);
    int sum_q = 0;
    for (int i = 0; i < 32; ++i) {
      INFO("block " << b << " element " << i << " x=" << x[32 * b + i]);
      REQUIRE(std::fabs(x[32 * b + i] - y0[32 * b + i]) <= bound);
      REQUIRE(y1[32 * b + i] == y0[32 * b + i]);  // q8_1 quantizes exactly as q8_0
      sum_q += b1[b].qs[i];
    }
    // s = f16(d * sum q): f16 keeps 11 significant bits, so relative error <= 2^-11.
    const double s_exact = static_cast<double>(static_cast<float>(d)) * sum_q;
    REQUIRE(std::fabs(static_cast<float>(b1[b].s) - s_exact) <= std::ldexp(std::fabs(s_exact), -11) + 1e-30);
  }
}

TEST_CASE("quant q8_K: round-trip error <= d/2, bsums are the sums of 16", "[quant]") {
  const auto x = test_row(kBlocks / 4, 256);
  std::vector<block_q8_K> b;
  const auto y = round_trip(x, b);
  for (size_t k = 0; k < b.size(); ++k) {
    // d is a float here: only the rounding of x * (127/amax) adds to d/2.
    const double bound = amax_of(&x[256 * k], 256) / 127.0 * (0.5 + 2e-5);
    for (int i = 0; i < 256; ++i) REQUIRE(std::fabs(x[256 * k + i] - y[256 * k + i]) <= bound);
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += b[k].qs[16 * j + i];
      REQUIRE(b[k].bsums[j] == s);
    }
  }
}

// The symmetric 32-value formats: x ~ d (q - half), half = 8 (q4_0) or 16 (q5_0).
template <class B, int kHalf>
void check_symmetric_round_trip() {
  const auto x = test_row(kBlocks, 32);
  std::vector<B> b;
  const auto y = round_trip(x, b);
  for (int k = 0; k < kBlocks; ++k) {
    const float* xb = &x[32 * k];
    double max = 0;
    for (int i = 0; i < 32; ++i)
      if (std::fabs(xb[i]) > std::fabs(max)) max = xb[i];
    const double d = max / -kHalf, d16 = static_cast<float>(b[k].d);
    for (int i = 0; i < 32; ++i) {
      // x/d lies in [-half, half]; levels -half..half-1 cover it to within |d|/2
      // except above half - 0.5, which clamps to half - 1 (error <= |d|). f16(d)
      // moves a level by <= half |d - d16|; 1e-5 |d| covers float rounding of x/d + half + 0.5.
      const double t = d != 0 ? xb[i] / d : 0;
      const double bound = std::fabs(d) * ((t > kHalf - 0.5 ? 1.0 : 0.5) + 1e-5) + kHalf * std::fabs(d - d16);
      INFO(quant_traits<B>::name << " block " << k << " element " << i);
      REQUIRE(std::fabs(xb[i] - y[32 * k + i]) <= bound);
    }
  }
}

// The offset 32-value formats: x ~ d q + m, q = 0..top, top = 15 (q4_1) or 31 (q5_1).
template <class B, int kTop>
void check_offset_round_trip() {
  const auto x = test_row(kBlocks, 32);
  std::vector<B> b;
  const auto y = round_trip(x, b);
  for (int k = 0; k < kBlocks; ++k) {
    const float* xb = &x[32 * k];
    const double lo = *std::min_element(xb, xb + 32), hi = *std::max_element(xb, xb + 32);
    const double d = (hi - lo) / kTop;
    // Levels lo + d q cover [lo, hi] to within d/2. Stored in f16, d moves
    // level q by <= top |d - d16| and m moves all by |lo - m16|.
    const double bound = d * (0.5 + 1e-5) + kTop * std::fabs(d - static_cast<float>(b[k].d)) +
                         std::fabs(lo - static_cast<float>(b[k].m)) + 1e-30;
    INFO(quant_traits<B>::name << " block " << k);
    for (int i = 0; i < 32; ++i) REQUIRE(std::fabs(xb[i] - y[32 * k + i]) <= bound);
  }
}

TEST_CASE("quant q4_0 / q5_0: round-trip error <= d/2, <= d next to the clamped end", "[quant]") {
  check_symmetric_round_trip<block_q4_0, 8>();
  check_symmetric_round_trip<block_q5_0, 16>();
}

TEST_CASE("quant q4_1 / q5_1: round-trip error <= d/2 plus f16 rounding of d and m", "[quant]") {
  check_offset_round_trip<block_q4_1, 15>();
  check_offset_round_trip<block_q5_1, 31>();
}

// q4_K and q5_K: 8 sub-blocks of 32 on levels 0..nmax of a stored (scale, offset) grid.
template <class B, int nmax>
void check_affine_K_round_trip() {
  const auto x = test_row(kBlocks / 2, 256);
  std::vector<B> b;
  const auto y = round_trip(x, b);
  for (size_t k = 0; k < b.size(); ++k) {
    const double d = static_cast<float>(b[k].d), dmin = static_cast<float>(b[k].dmin);
    uint8_t sc[8], mn[8];
    detail::unpack_q4_K_scales(b[k].scales, sc, mn);
    for (int j = 0; j < 8; ++j) {
      const float* xs = &x[256 * k + 32 * j];
      const float* ys = &y[256 * k + 32 * j];
      const double s = d * sc[j], off = dmin * mn[j];
      double lo = 0, hi = xs[0], err2 = 0;
      for (int i = 0; i < 32; ++i) {
        lo = std::min<double>(lo, xs[i]);
        hi = std::max<double>(hi, xs[i]);
        // Given the stored grid {s q - off : q = 0..nmax}, each value is rounded
        // to its nearest level: within s/2 inside the grid, else at the nearer
        // end. 1e-5 (s + off + |x|) covers float rounding of (x + off) / s.
        const double below = std::max(0.0, -off - xs[i]), above = std::max(0.0, xs[i] - (nmax * s - off));
        const double nearest = s > 0 ? std::max(s / 2, below + above) : std::fabs(xs[i] + off);
        INFO("super-block " << k << " sub-block " << j << " element " << i << " s=" << s << " off=" << off);
        REQUIRE(std::fabs(xs[i] - ys[i]) <= nearest + 1e-5 * (s + off + std::fabs(xs[i])) + 1e-30);
        err2 += (xs[i] - ys[i]) * (xs[i] - ys[i]);
      }
      // The search starts from the min-max grid over [min(0, lo), hi], whose
      // error is <= step/2 per value, and keeps only fits with smaller squared
      // error. Rounding the scale and offset to 6-bit multiples of the stored
      // d and dmin moves a level by <= nmax d/2 + dmin/2, and re-rounding each
      // value on the stored grid can only do better. 1e-4 step for float noise.
      const double step = (hi - lo) / nmax;
      const double rms_bound = step * (0.5 + 1e-4) + 0.5 * nmax * d + 0.5 * dmin + 1e-30;
      INFO("super-block " << k << " sub-block " << j);
      REQUIRE(std::sqrt(err2 / 32) <= rms_bound);
    }
  }
}

TEST_CASE("quant q4_K / q5_K: levels are nearest on the stored grid, RMS per sub-block bounded", "[quant]") {
  check_affine_K_round_trip<block_q4_K, 15>();
  check_affine_K_round_trip<block_q5_K, 31>();
}

TEST_CASE("quant q6_K: levels are nearest on the stored grid, RMS per sub-block bounded", "[quant]") {
  const auto x = test_row(kBlocks / 2, 256);
  std::vector<block_q6_K> b;
  const auto y = round_trip(x, b);
  for (size_t k = 0; k < b.size(); ++k) {
    const double d = static_cast<float>(b[k].d);
    for (int j = 0; j < 16; ++j) {
      const float* xs = &x[256 * k + 16 * j];
      const float* ys = &y[256 * k + 16 * j];
      const double s = d * b[k].scales[j];
      const double amax = amax_of(xs, 16);
      double err2 = 0;
      for (int i = 0; i < 16; ++i) {
        // Nearest of the levels s (q - 32), q = 0..63, i.e. s * [-32, 31].
        const double t = s != 0 ? xs[i] / s : 0;
        const double outside = std::fabs(s) * std::max({0.0, -32 - t, t - 31});
        const double nearest = s != 0 ? std::max(std::fabs(s) / 2, outside) : std::fabs(xs[i]);
        INFO("super-block " << k << " sub-block " << j << " element " << i);
        REQUIRE(std::fabs(xs[i] - ys[i]) <= nearest + 1e-5 * (std::fabs(s) + std::fabs(xs[i])) + 1e-30);
        err2 += (xs[i] - ys[i]) * (xs[i] - ys[i]);
      }
      // The search starts from scale amax/32 (max value on -32, every other
      // value within one step, the far end clamping at +31) and keeps only
      // better fits: RMS <= amax/32. Rounding the scale to an int8 multiple of
      // the stored d moves it by <= |d|/2, or by <= 1.5 |d| where a positive
      // scale as large as the -128 one clamps to +127 (the codec keeps
      // |largest / d| <= 128.5 even when d is an f16 subnormal); levels
      // |q - 32| <= 32 turn that into <= 48 |d|.
      const double rms_bound = amax / 32 * (1 + 1e-4) + 48 * std::fabs(d) + 1e-30;
      INFO("super-block " << k << " sub-block " << j);
      REQUIRE(std::sqrt(err2 / 16) <= rms_bound);
    }
  }
}

TEST_CASE("quant: values already on a format's grid round-trip exactly", "[quant]") {
  std::uniform_int_distribution<int> level(0, 15), level5(0, 31), level6(-32, 31), level8(-127, 127), scale6(0, 63);
  auto check_exact = [](const std::vector<float>& x, const std::vector<float>& y) {
    for (size_t i = 0; i < x.size(); ++i) {
      INFO("element " << i);
      REQUIRE(y[i] == x[i]);
    }
  };
  // Scales are powers of two, so they are exact in f16 and their reciprocals exact in float.
  SECTION("q8_0 / q8_K") {
    std::vector<float> x(256);
    for (auto& v : x) v = std::ldexp(static_cast<float>(level8(rng())), -6);
    for (int b = 0; b < 8; ++b) x[32 * b + 5] = std::ldexp(b % 2 ? 127.f : -127.f, -6);  // amax on the grid
    std::vector<block_q8_0> b0;
    std::vector<block_q8_K> bk;
    check_exact(x, round_trip(x, b0));
    check_exact(x, round_trip(x, bk));
  }
  SECTION("q4_0") {
    std::vector<float> x(128);
    for (auto& v : x) v = 0.25f * static_cast<float>(level(rng()) - 8);
    for (int b = 0; b < 4; ++b) x[32 * b + 3 * b] = 0.25f * -8.f;  // the largest magnitude sits on -8
    std::vector<block_q4_0> b;
    check_exact(x, round_trip(x, b));
  }
  SECTION("q4_1") {
    std::vector<float> x(128);
    for (auto& v : x) v = -1.5f + 0.125f * static_cast<float>(level(rng()));
    for (int b = 0; b < 4; ++b) { x[32 * b] = -1.5f; x[32 * b + 31] = -1.5f + 0.125f * 15; }
    std::vector<block_q4_1> b;
    check_exact(x, round_trip(x, b));
  }
  SECTION("q5_0") {
    std::vector<float> x(128);
    for (auto& v : x) v = 0.25f * static_cast<float>(level5(rng()) - 16);
    for (int b = 0; b < 4; ++b) x[32 * b + 5 * b] = 0.25f * -16.f;  // the largest magnitude sits on -16
    std::vector<block_q5_0> b;
    check_exact(x, round_trip(x, b));
  }
  SECTION("q5_1") {
    std::vector<float> x(128);
    for (auto& v : x) v = -1.5f + 0.125f * static_cast<float>(level5(rng()));
    for (int b = 0; b < 4; ++b) { x[32 * b + 7] = -1.5f; x[32 * b + 20] = -1.5f + 0.125f * 31; }
    std::vector<block_q5_1> b;
    check_exact(x, round_trip(x, b));
  }
  // q4_K and q5_K: d = 2^-8, dmin = 2^-9; one sub-block has sc = 63 and one
  // m = 63 so the super-scales come out exact; each sub-block reaches levels 0
  // and nmax (15 or 31).
  auto affine_K_grid = [&](int nmax, auto& levels) {
    std::vector<float> x(512);
    for (int k = 0; k < 2; ++k)
      for (int j = 0; j < 8; ++j) {
        const int sc = j == 3 ? 63 : 1 + scale6(rng()) % 63, m = j == 5 ? 63 : scale6(rng());
        for (int i = 0; i < 32; ++i) {
          const int q = i == 0 ? 0 : i == 1 ? nmax : levels(rng());
          x[256 * k + 32 * j + i] = std::ldexp(static_cast<float>(sc * q), -8) - std::ldexp(static_cast<float>(m), -9);
        }
      }
    return x;
  };
  SECTION("q4_K") {
    const auto x = affine_K_grid(15, level);
    std::vector<block_q4_K> b;
    check_exact(x, round_trip(x, b));
  }
  SECTION("q5_K") {
    const auto x = affine_K_grid(31, level5);
    std::vector<block_q5_K> b;
    check_exact(x, round_trip(x, b));
  }
  SECTION("q6_K") {
    // d = 2^-10; one sub-block has sc = -128 so d comes out exact; each
    // sub-block reaches level -32 as its largest magnitude.
    std::vector<float> x(512);
    for (int k = 0; k < 2; ++k)
      for (int j = 0; j < 16; ++j) {
        int sc = j == 7 ? -128 : level8(rng());
        if (sc == 0) sc = 1;
        for (int i = 0; i < 16; ++i) {
          const int q = i == 2 ? -32 : level6(rng());
          x[256 * k + 16 * j + i] = std::ldexp(static_cast<float>(sc * q), -10);
        }
      }
    std::vector<block_q6_K> b;
    check_exact(x, round_trip(x, b));
  }
}

TEST_CASE("quant q4_0/q4_1: value j in the low nibble of qs[j], j + 16 in the high", "[quant]") {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>((j * 5) % 16 - 8);  // j=0 gives -8: d = 1
  std::vector<block_q4_0> b0;
  round_trip(x, b0);
  REQUIRE(static_cast<float>(b0[0].d) == 1.f);
  std::vector<float> y(32);
  for (int j = 0; j < 16; ++j) {
    CHECK((b0[0].qs[j] & 0x0f) == (j * 5) % 16);
    CHECK((b0[0].qs[j] >> 4) == ((j + 16) * 5) % 16);
  }
  std::vector<block_q4_1> b1;
  round_trip(x, b1);  // min -8, max 7: d = 1, m = -8, so q = x + 8 again
  for (int j = 0; j < 16; ++j) {
    CHECK((b1[0].qs[j] & 0x0f) == (j * 5) % 16);
    CHECK((b1[0].qs[j] >> 4) == ((j + 16) * 5) % 16);
  }
}

TEST_CASE("quant q4_K: scale packing round-trips every 6-bit value", "[quant]") {
  for (int v = 0; v < 64; ++v) {
    uint8_t sc[8], mn[8], packed[12], sc2[8], mn2[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = static_cast<uint8_t>((v + 7 * j) % 64);
      mn[j] = static_cast<uint8_t>((v * 3 + j) % 64);
    }
    detail::pack_q4_K_scales(sc, mn, packed);
    detail::unpack_q4_K_scales(packed, sc2, mn2);
    REQUIRE(std::memcmp(sc, sc2, 8) == 0);
    REQUIRE(std::memcmp(mn, mn2, 8) == 0);
  }
}

// Blocks written byte by byte from the GGUF definitions (little-endian f16
// scales first unless noted), decoded independently of the library's helpers.
namespace {
template <class B, size_t N>
B from_bytes(const std::array<uint8_t, N>& bytes) {
  static_assert(sizeof(B) == N);
  B b;
  std::memcpy(&b, bytes.data(), N);
  return b;
}
template <class B>
std::vector<float> decode(const B& b) {
  std::vector<float> y(quant_traits<B>::block_size);
  dequantize_row(std::span<const B>(&b, 1), std::span<float>(y));
  return y;
}
}  // namespace

TEST_CASE("quant: dequantization of hand-assembled blocks", "[quant]") {
  SECTION("q8_0: f16 d, then 32 int8") {
    std::array<uint8_t, 34> raw{0x00, 0x38};  // d = 0x3800 = 0.5
    for (int i = 0; i < 32; ++i) raw[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(i * 8 - 128));
    const auto y = decode(from_bytes<block_q8_0>(raw));
    for (int i = 0; i < 32; ++i) REQUIRE(y[i] == 0.5f * static_cast<float>(i * 8 - 128));
  }
  SECTION("q4_0: f16 d, 16 bytes; x_j = d (lo(qs_j) - 8), x_{j+16} = d (hi(qs_j) - 8)") {
    std::array<uint8_t, 18> raw{0x00, 0x40};  // d = 2
    for (int j = 0; j < 16; ++j) raw[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    const auto y = decode(from_bytes<block_q4_0>(raw));
    for (int j = 0; j < 16; ++j) {
      REQUIRE(y[j] == 2.f * static_cast<float>(j - 8));
      REQUIRE(y[j + 16] == 2.f * static_cast<float>(7 - j));
    }
  }
  SECTION("q4_1: f16 d, f16 m, 16 bytes; x = d q + m") {
    std::array<uint8_t, 20> raw{0x00, 0x3c, 0x00, 0xbe};  // d = 1, m = -1.5
    for (int j = 0; j < 16; ++j) raw[4 + j] = static_cast<uint8_t>(((3 * j) & 15) | ((j ^ 5) << 4));
    const auto y = decode(from_bytes<block_q4_1>(raw));
    for (int j = 0; j < 16; ++j) {
      REQUIRE(y[j] == static_cast<float>((3 * j) & 15) - 1.5f);
      REQUIRE(y[j + 16] == static_cast<float>(j ^ 5) - 1.5f);
    }
  }
  SECTION("q5_0: f16 d, 4 bytes qh, 16 bytes; x_j = d (q_j - 16), bit 4 of q_j in bit j of qh") {
    std::array<uint8_t, 22> raw{0x00, 0x40, 0x5a, 0xc3, 0x01, 0x80};  // d = 2; qh = 0x8001c35a
    for (int j = 0; j < 16; ++j) raw[6 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    const uint32_t qh = 0x8001c35au;
    const auto y = decode(from_bytes<block_q5_0>(raw));
    for (int j = 0; j < 16; ++j) {
      const int lo = j | static_cast<int>(((qh >> j) & 1) << 4), hi = (15 - j) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
      INFO("element " << j);
      REQUIRE(y[j] == 2.f * static_cast<float>(lo - 16));
      REQUIRE(y[j + 16] == 2.f * static_cast<float>(hi - 16));
    }
  }
  SECTION("q5_1: f16 d, f16 m, 4 bytes qh, 16 bytes; x = d q + m") {
    std::array<uint8_t, 24> raw{0x00, 0x3c, 0x00, 0xbe, 0xff, 0x00, 0x0f, 0xf0};  // d = 1, m = -1.5; qh = 0xf00f00ff
    for (int j = 0; j < 16; ++j) raw[8 + j] = static_cast<uint8_t>(((3 * j) & 15) | ((j ^ 5) << 4));
    const uint32_t qh = 0xf00f00ffu;
    const auto y = decode(from_bytes<block_q5_1>(raw));
    for (int j = 0; j < 16; ++j) {
      const int lo = ((3 * j) & 15) | static_cast<int>(((qh >> j) & 1) << 4);
      const int hi = (j ^ 5) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
      REQUIRE(y[j] == static_cast<float>(lo) - 1.5f);
      REQUIRE(y[j + 16] == static_cast<float>(hi) - 1.5f);
    }
  }
  SECTION("q4_K: f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles") {
    const int sc[8] = {1, 2, 3, 4, 17, 33, 50, 63}, mn[8] = {0, 5, 10, 15, 20, 40, 60, 63};
    std::array<uint8_t, 144> raw{0x00, 0x3c, 0x00, 0x38};  // d = 1, dmin = 0.5
    for (int j = 0; j < 4; ++j) {
      raw[4 + j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));      // sc0-3, top bits of sc4-7
      raw[8 + j] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));      // m0-3, top bits of m4-7
      raw[12 + j] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));  // low bits of sc4-7, m4-7
    }
    for (int i = 0; i < 128; ++i) raw[16 + i] = static_cast<uint8_t>(i * 37 + 11);
    const auto y = decode(from_bytes<block_q4_K>(raw));
    for (int e = 0; e < 256; ++e) {
      // 64 values per 32 bytes: the first 32 in the low nibbles, the next 32 in the high.
      const uint8_t byte = raw[16 + 32 * (e / 64) + e % 32];
      const int q = (e % 64) < 32 ? (byte & 15) : (byte >> 4);
      INFO("element " << e);
      const auto sc_j = static_cast<float>(sc[e / 32]), m_j = static_cast<float>(mn[e / 32]);
      const float want = 1.f * sc_j * static_cast<float>(q) - 0.5f * m_j;
      REQUIRE(y[e] == want);
    }
  }
  SECTION("q5_K: q4_K's header, 32 bytes qh (bit 2c / 2c+1 of byte l: elements 64c+l / 64c+32+l), 128 of nibbles") {
    const int sc[8] = {1, 2, 3, 4, 17, 33, 50, 63}, mn[8] = {0, 5, 10, 15, 20, 40, 60, 63};
    std::array<uint8_t, 176> raw{0x00, 0x3c, 0x00, 0x38};  // d = 1, dmin = 0.5
    for (int j = 0; j < 4; ++j) {
      raw[4 + j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
      raw[8 + j] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
      raw[12 + j] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
    for (int i = 0; i < 32; ++i) raw[16 + i] = static_cast<uint8_t>(i * 73 + 5);
    for (int i = 0; i < 128; ++i) raw[48 + i] = static_cast<uint8_t>(i * 37 + 11);
    const auto y = decode(from_bytes<block_q5_K>(raw));
    for (int e = 0; e < 256; ++e) {
      const int c = e / 64, h = (e % 64) / 32, l = e % 32;
      const uint8_t byte = raw[48 + 32 * c + l];
      const int q = (h ? byte >> 4 : byte & 15) | (((raw[16 + l] >> (2 * c + h)) & 1) << 4);
      INFO("element " << e);
      REQUIRE(y[e] == static_cast<float>(sc[e / 32] * q) - 0.5f * static_cast<float>(mn[e / 32]));
    }
  }
  SECTION("q6_K: 128 bytes ql, 64 bytes qh, 16 int8 scales, f16 d last") {
    std::array<uint8_t, 210> raw{};
    int q[256];
    for (int e = 0; e < 256; ++e) q[e] = (e * 5 + 3) % 64;
    for (int h = 0; h < 2; ++h)  // per 128 values: ql[l] = q[l] | q[l+64] << 4, ql[l+32] = q[l+32] | q[l+96] << 4
      for (int l = 0; l < 32; ++l) {
        const int* qq = q + 128 * h;
        raw[64 * h + l] = static_cast<uint8_t>((qq[l] & 15) | ((qq[l + 64] & 15) << 4));
        raw[64 * h + l + 32] = static_cast<uint8_t>((qq[l + 32] & 15) | ((qq[l + 96] & 15) << 4));
        raw[128 + 32 * h + l] = static_cast<uint8_t>((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) |
                                                     ((qq[l + 64] >> 4) << 4) | ((qq[l + 96] >> 4) << 6));
      }
    int sc[16];
    for (int j = 0; j < 16; ++j) raw[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(sc[j] = j * 9 - 70));
    raw[208] = 0x00;
    raw[209] = 0x34;  // d = 0.25
    const auto y = decode(from_bytes<block_q6_K>(raw));
    for (int e = 0; e < 256; ++e) {
      INFO("element " << e);
      REQUIRE(y[e] == 0.25f * static_cast<float>(sc[e / 16]) * static_cast<float>(q[e] - 32));
    }
  }
  SECTION("q8_K: float d, 256 int8, 16 int16 sums") {
    std::array<uint8_t, 292> raw{};
    const float d = 0.375f;
    std::memcpy(raw.data(), &d, 4);
    for (int i = 0; i < 256; ++i) raw[4 + i] = static_cast<uint8_t>(static_cast<int8_t>((i * 11) % 255 - 127));
    const auto y = decode(from_bytes<block_q8_K>(raw));
    for (int i = 0; i < 256; ++i) REQUIRE(y[i] == 0.375f * static_cast<float>((i * 11) % 255 - 127));
  }
}
