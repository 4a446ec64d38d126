/// \file
/// tessera::sample::Rng — the library's one random-number generator:
/// xoshiro256** seeded through splitmix64. Every value it returns is computed
/// from integer bits alone, so a seed replays the same stream on any platform.
#pragma once

#include <array>
#include <cstdint>

#include "tessera/core/error.hpp"

namespace tessera::sample {

namespace detail {

constexpr uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/// splitmix64: one step of a Weyl sequence through a 64-bit mixer. Used only to
/// spread a user's seed (often 0, 1, 42) over the 256-bit xoshiro state, which
/// must not be all zero.
constexpr uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace detail

/// xoshiro256** (Blackman & Vigna, 2018): 256 bits of state, period 2^256 - 1,
/// about 1 ns per draw, and it passes BigCrush. Copy it to fork a stream
/// (beams, speculative drafts); a copy continues exactly where the original is.
class Rng {
 public:
  using State = std::array<uint64_t, 4>;  ///< The 256-bit xoshiro state, as four words.

  explicit constexpr Rng(uint64_t seed = 0) { reseed(seed); }  ///< The stream that seed names (as reseed).

  /// Restarts the stream that `seed` names.
  constexpr void reseed(uint64_t seed) {
    uint64_t x = seed;
    for (auto& word : s_) word = detail::splitmix64(x);
  }

  /// The next 64 random bits.
  constexpr uint64_t next() {
    const uint64_t result = detail::rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = detail::rotl(s_[3], 45);
    return result;
  }

  /// Uniform on [0, 1) with 24 random bits: the top 24 bits scaled by 2^-24.
  /// Every product is exact in float, so the value is the same everywhere and
  /// 1.0f is never returned (unlike std::uniform_real_distribution, whose
  /// algorithm each standard library picks for itself).
  constexpr float uniform() { return static_cast<float>(next() >> 40) * 0x1.0p-24f; }

  /// Uniform on [0, 1) with 53 random bits, exact in double for the same reason.
  constexpr double uniform_double() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  /// The raw state, to save and later restore a stream position. An all-zero
  /// state is the one fixed point of xoshiro (it would return 0 forever), so
  /// set_state refuses it.
  constexpr const State& state() const { return s_; }
  /// Restores a state from state(); Error for the all-zero state.
  void set_state(const State& s) {
    check(s[0] | s[1] | s[2] | s[3], "Rng::set_state: the all-zero state is not a valid xoshiro256** state");
    s_ = s;
  }

  /// Same state: the two streams continue with the same draws.
  friend constexpr bool operator==(const Rng&, const Rng&) = default;

 private:
  State s_{};
};

}  // namespace tessera::sample
