// f16/bf16: every one of the 65,536 bit patterns round-trips through the
// reference and the (possibly hardware) conversion identically, scalar and
// SIMD (backend/simd/load.hpp), and float -> half rounds to nearest even on
// hand-picked and random inputs.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "tessera/backend/simd/load.hpp"
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

// The SIMD widening path (F16C / AVX-512 vcvtph2ps for f16, a 16-bit shift for
// bf16, a scalar loop elsewhere) against the scalar reference for every
// pattern. Bit-for-bit, NaNs included: vcvtph2ps quiets a signalling NaN and
// keeps its payload, which is what f16_to_f32_ref does; bf16 widening is a
// pure shift on both sides, so NaN payloads (quiet or not) pass unchanged.
// There is no vectorised float -> f16/bf16 path in the library (narrowing goes
// through f16::from_float / the bf16 constructor, checked above), so only the
// widening direction is tested here.
TEMPLATE_TEST_CASE("simd::to_float: all 65536 patterns equal the scalar reference", "[half][simd]", f16, bf16) {
  namespace simd = backend::simd;
  std::vector<TestType> src(65536);
  for (uint32_t b = 0; b < 65536; ++b) src[b] = TestType::from_bits(static_cast<uint16_t>(b));
  const auto ref = [](uint16_t h) {
    if constexpr (std::is_same_v<TestType, f16>) return detail::f16_to_f32_ref(h);
    else return detail::bf16_to_f32_ref(h);
  };
  const auto check_all = [&](const std::vector<float>& got, size_t first) {
    for (size_t i = 0; i < got.size(); ++i) {
      const uint32_t b = static_cast<uint32_t>(first + i);
      const float want = ref(static_cast<uint16_t>(b));
      if (bits(got[i]) != bits(want)) {  // one REQUIRE per mismatch keeps the 65,536-iteration loop fast
        INFO("bits 0x" << std::hex << b << ": simd 0x" << bits(got[i]) << ", reference 0x" << bits(want));
        REQUIRE(std::isnan(got[i]) == std::isnan(want));
        REQUIRE(bits(got[i]) == bits(want));
      }
    }
  };

  // 65,536 is a multiple of every vector width: all of it goes through load().
  std::vector<float> out(65536);
  simd::to_float(src.data(), out.data(), out.size());
  check_all(out, 0);

  // Off by one element: unaligned vector loads, then the scalar tail.
  std::vector<float> shifted(65535 - 2);
  simd::to_float(src.data() + 1, shifted.data(), shifted.size());
  check_all(shifted, 1);

  // One batch through load() directly, at an odd offset.
  alignas(64) float lane[simd::kWidth];
  simd::load(src.data() + 0x7c01).store_aligned(lane);
  for (size_t i = 0; i < simd::kWidth; ++i) REQUIRE(bits(lane[i]) == bits(ref(static_cast<uint16_t>(0x7c01 + i))));
}
