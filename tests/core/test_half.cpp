// f16/bf16: every one of the 65,536 bit patterns round-trips through the
// reference and the (possibly hardware) conversion identically, and float ->
// half rounds to nearest even on hand-picked and random inputs.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>

#include "tessera/core/half.hpp"

using namespace tessera;

namespace {
uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }

// Independent oracle: round x to the nearest representable half by brute
// force over the two neighbours (computed in double), ties to even.
float nearest_f16_by_search(float x) {
  if (std::isnan(x)) return x;
  const double ax = std::fabs(static_cast<double>(x));
  if (ax >= 65520.0) return std::copysign(INFINITY, x);
  const int e = ax < 0x1p-14 ? -14 : std::ilogb(ax);  // subnormal spacing is fixed at 2^-24
  const double ulp = std::ldexp(1.0, e - 10);
  const double lo = std::floor(ax / ulp) * ulp, hi = lo + ulp;
  double r;
  if (ax - lo < hi - ax) r = lo;
  else if (ax - lo > hi - ax) r = hi;
  else r = std::fmod(lo / ulp, 2.0) == 0.0 ? lo : hi;
  return static_cast<float>(std::copysign(r, static_cast<double>(x)));
}
}  // namespace

TEST_CASE("f16: all 65536 patterns, reference vs conversion path", "[half]") {
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto h = static_cast<uint16_t>(b);
    const float ref = detail::f16_to_f32_ref(h);
    const float hw = f16::to_float(h);
    INFO("bits 0x" << std::hex << b);
    if (std::isnan(ref)) {
      REQUIRE(std::isnan(hw));
      REQUIRE(bits(ref) == bits(hw));  // both quiet the NaN the same way
    } else {
      REQUIRE(bits(ref) == bits(hw));
      // back to half is exact for every non-NaN value
      REQUIRE(detail::f32_to_f16_ref(ref) == h);
      REQUIRE(f16::from_float(ref) == h);
    }
  }
}

TEST_CASE("f16: float -> half rounds to nearest even", "[half]") {
  CHECK(detail::f32_to_f16_ref(65504.f) == 0x7bff);
  CHECK(detail::f32_to_f16_ref(65519.99f) == 0x7bff);
  CHECK(detail::f32_to_f16_ref(65520.f) == 0x7c00);    // tie rounds to even = Inf
  CHECK(detail::f32_to_f16_ref(0x1p-24f) == 0x0001);   // smallest subnormal
  CHECK(detail::f32_to_f16_ref(0x1p-25f) == 0x0000);   // tie between 0 and 2^-24 -> even (0)
  CHECK(detail::f32_to_f16_ref(0x1.8p-25f) == 0x0001);
  CHECK(detail::f32_to_f16_ref(-0.0f) == 0x8000);
  CHECK(detail::f32_to_f16_ref(INFINITY) == 0x7c00);
  CHECK((detail::f32_to_f16_ref(NAN) & 0x7e00) == 0x7e00);

  std::mt19937 rng(1234);
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 200000; ++i) {
    float x = std::bit_cast<float>(any(rng));
    if (i % 2) x = std::ldexp(static_cast<float>(any(rng) % 100000) / 1000.f - 50.f, static_cast<int>(any(rng) % 40) - 30);
    if (std::isnan(x)) continue;
    const float want = nearest_f16_by_search(x);
    INFO("x = " << x);
    REQUIRE(bits(detail::f16_to_f32_ref(detail::f32_to_f16_ref(x))) == bits(want));
    REQUIRE(f16::from_float(x) == detail::f32_to_f16_ref(x));
  }
}

TEST_CASE("bf16: all 65536 patterns and rounding", "[half]") {
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto h = static_cast<uint16_t>(b);
    const float f = detail::bf16_to_f32_ref(h);
    INFO("bits 0x" << std::hex << b);
    REQUIRE(bits(f) == b << 16);
    if (!std::isnan(f)) REQUIRE(detail::f32_to_bf16_ref(f) == h);
    else REQUIRE(std::isnan(detail::bf16_to_f32_ref(detail::f32_to_bf16_ref(f))));
  }
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0)
  CHECK(detail::f32_to_bf16_ref(1.0f + 0x1p-8f) == 0x3f80);
  CHECK(detail::f32_to_bf16_ref(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81);
  CHECK(detail::f32_to_bf16_ref(1.0f + 3 * 0x1p-8f) == 0x3f82);   // tie, odd below -> up
  CHECK(detail::f32_to_bf16_ref(3.4028235e38f) == 0x7f80);         // rounds to Inf
  CHECK(detail::f32_to_bf16_ref(std::bit_cast<float>(0x00010000u)) == 0x0001);  // subnormal kept
}
