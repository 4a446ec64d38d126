/// \file
/// The candidate list every sampling processor works on: (token id, logit,
/// probability) triples built from one row of logits, with the selection that
/// fills it (all tokens, or the top k in one pass) and the softmax over it.
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "tessera/core/error.hpp"

namespace tessera::sample {

/// One token still in the running. `prob` is meaningful only after softmax().
struct Candidate {
  int32_t id;  ///< Token id
  float logit;  ///< The token's logit, as the processors so far have changed it
  float prob;  ///< Probability among the kept candidates, set by softmax()
};

/// The one order used everywhere: higher logit first, then lower id. It is a
/// total order, so every sort and selection below has exactly one answer on
/// every standard library, which is what makes a seeded run reproducible.
constexpr bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

/// The tokens still in the running: data[0, size). `data` is scratch sized once
/// to n_vocab and reused every step, so the decode loop allocates nothing.
/// `sorted` says the logits of data[0, size) do not increase (a sort leaves
/// them in ranks_before order; temperature may round two of them equal after
/// that). Unsorted lists are in ascending id order (every processor keeps it),
/// so either way the order is defined and the categorical draw reproducible.
struct Candidates {
  std::vector<Candidate> data;  ///< Scratch of n_vocab entries; only data[0, size) is meaningful
  size_t size = 0;  ///< Number of kept candidates
  bool sorted = false;  ///< Whether data[0, size) is in non-increasing logit order (see above)

  Candidates() = default;
  explicit Candidates(size_t n_vocab) : data(n_vocab) {}  ///< Scratch for a vocabulary of n_vocab; none kept yet.

  /// The kept candidates, data[0, size).
  ///@{
  std::span<Candidate> kept() { return {data.data(), size}; }
  std::span<const Candidate> kept() const { return {data.data(), size}; }
  ///@}
};

namespace detail {

inline constexpr float kPosInf = std::numeric_limits<float>::infinity();
inline constexpr float kNegInf = -kPosInf;

using Batch = xsimd::batch<float>;
inline constexpr size_t kWidth = Batch::size;

/// NaN and +inf have no probability; -inf is the usual "banned" mark and is
/// simply left out. Called only on the rare values that pass a threshold.
inline void check_logit(float logit, size_t i) {
  check(!std::isnan(logit) && logit != kPosInf, "sampler: logit of token ", i,
        " is ", logit, "; logits must be finite or -inf");
}

inline void check_vocab(size_t n) {
  check(n > 0, "sampler: the logits row is empty");
  check(n <= static_cast<size_t>(std::numeric_limits<int32_t>::max()), "sampler: n_vocab = ", n,
        " does not fit a token id");
}

/// Calls visit(i, logits[i]) for every i whose logit is above `threshold` or
/// NaN, in increasing i; visit returns the new threshold. Blocks of two SIMD
/// batches are tested first, so a row where almost nothing passes (the usual
/// case once a top-k heap or a running max has settled) costs two vector
/// compares per 16 logits (AVX2) instead of a branch per logit. Explicit
/// batches because GCC's -O3 vectoriser turns the scalar form of this test
/// into code 5x slower than its own -O2 output.
template <class Visit>
inline void scan_above(std::span<const float> logits, float threshold, Visit&& visit) {
  constexpr size_t kBlock = 2 * kWidth;
  const float* p = logits.data();
  const size_t n = logits.size();
  size_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    const Batch t(threshold);
    const auto pass = !(Batch::load_unaligned(p + i) <= t) || !(Batch::load_unaligned(p + i + kWidth) <= t);
    if (!xsimd::any(pass)) [[likely]] continue;
    for (size_t j = i; j < i + kBlock; ++j)
      if (!(p[j] <= threshold)) threshold = visit(j, p[j]);
  }
  for (; i < n; ++i)
    if (!(p[i] <= threshold)) threshold = visit(i, p[i]);
}

/// Loads the logits of W consecutive candidates, a stride of sizeof(Candidate)
/// apart, into one batch (one gather instruction on AVX2/AVX-512).
class LogitGather {
 public:
  LogitGather() {
    static_assert(sizeof(Candidate) % sizeof(float) == 0 && offsetof(Candidate, logit) % sizeof(float) == 0);
    alignas(64) int32_t offsets[kWidth];
    for (size_t j = 0; j < kWidth; ++j) offsets[j] = static_cast<int32_t>(j * sizeof(Candidate) / sizeof(float));
    index_ = Index::load_aligned(offsets);
  }
  Batch operator()(const Candidate* first) const { return Batch::gather(&first->logit, index_); }

 private:
  using Index = xsimd::batch<int32_t, Batch::arch_type>;
  Index index_;
};

/// prob = exp(logit - m) for every kept candidate; returns their sum in double.
/// Gathered batches through xsimd's vector exp: several times faster than a
/// libm call per token, which would dominate softmax over a whole vocabulary.
/// The last partial batch goes through a buffer padded with -inf (exp = 0), so
/// every token meets the same exp.
inline double exp_shifted(std::span<Candidate> kept, float m) {
  const LogitGather gather;
  const Batch shift(m);
  alignas(64) float buf[kWidth];
  double sum = 0;
  size_t i = 0;
  auto emit = [&](const Batch& e, size_t n) {
    e.store_aligned(buf);
    for (size_t j = 0; j < n; ++j) kept[i + j].prob = buf[j];
    sum += xsimd::hadd(e);  // <= 16 terms in float, then one double add
  };
  for (; i + kWidth <= kept.size(); i += kWidth) emit(xsimd::exp(gather(&kept[i]) - shift), kWidth);
  if (i < kept.size()) {
    const size_t n = kept.size() - i;
    for (size_t j = 0; j < kWidth; ++j) buf[j] = j < n ? kept[i + j].logit : kNegInf;
    emit(xsimd::exp(Batch::load_aligned(buf) - shift), n);
  }
  return sum;
}

/// Processors need at least one candidate; fill_candidates and select_top_k
/// always leave one, so this fires only on a hand-built list.
inline void check_candidates(const Candidates& c, const char* who) {
  check(c.size > 0 && c.size <= c.data.size(), who, ": the candidate list holds ", c.size, " of ", c.data.size(),
        " entries; it needs at least 1");
}

inline void ensure_capacity(Candidates& c, size_t n) {
  if (c.data.size() < n) c.data.resize(n);  // the first call only, when built with Candidates{}
}

}  // namespace detail

/// Fills `c` with every token of `logits` [n_vocab] whose logit is finite, in
/// id order (-inf tokens are banned and left out). Throws Error on NaN or +inf,
/// or when every logit is -inf. O(n_vocab).
inline void fill_candidates(std::span<const float> logits, Candidates& c) {
  detail::check_vocab(logits.size());
  detail::ensure_capacity(c, logits.size());
  size_t n = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float l = logits[i];
    if (!(l < detail::kPosInf)) [[unlikely]] detail::check_logit(l, i);  // NaN or +inf
    if (l == detail::kNegInf) continue;
    c.data[n++] = {static_cast<int32_t>(i), l, 0.f};
  }
  check(n > 0, "sampler: every logit is -inf, no token can be chosen");
  c.size = n;
  c.sorted = false;
}

/// Fills `c` with the min(k, n_finite) best tokens of `logits` [n_vocab] in
/// ranks_before order: top-k selection straight from the row, so the other
/// n_vocab - k tokens are never copied. One pass keeps a heap of the best k
/// seen; a value at or below the heap's worst logit costs one compare (an equal
/// logit loses the tie, its id being higher). O(n_vocab + r log k), where r,
/// the number of heap replacements, is about k ln(n_vocab / k) for logits in
/// no particular id order. NaN/+inf checks ride on the same compare.
/// Requires k >= 1.
inline void select_top_k(std::span<const float> logits, size_t k, Candidates& c) {
  detail::check_vocab(logits.size());
  check(k >= 1, "select_top_k: k = ", k, " must be at least 1");
  k = std::min(k, logits.size());
  detail::ensure_capacity(c, k);
  Candidate* heap = c.data.data();  // heap order: the worst kept token on top
  size_t n = 0;
  // The threshold is -inf until the heap is full (skips banned tokens, admits
  // the rest), then the heap's worst logit. NaN passes it and meets the check.
  detail::scan_above(logits, detail::kNegInf, [&](size_t i, float l) {
    detail::check_logit(l, i);
    const Candidate cand{static_cast<int32_t>(i), l, 0.f};
    if (n < k) {
      heap[n++] = cand;
      std::push_heap(heap, heap + n, ranks_before);
      return n == k ? heap[0].logit : detail::kNegInf;
    }
    std::pop_heap(heap, heap + k, ranks_before);
    heap[k - 1] = cand;
    std::push_heap(heap, heap + k, ranks_before);
    return heap[0].logit;
  });
  check(n > 0, "sampler: every logit is -inf, no token can be chosen");
  std::sort_heap(heap, heap + n, ranks_before);
  c.size = n;
  c.sorted = true;
}

/// The largest logit among the kept candidates. O(1) when sorted, else O(size)
/// in batches.
inline float max_logit(const Candidates& c) {
  detail::check_candidates(c, "max_logit");
  if (c.sorted) return c.data[0].logit;
  const auto kept = c.kept();
  const detail::LogitGather gather;
  detail::Batch acc(detail::kNegInf);
  size_t i = 0;
  for (; i + detail::kWidth <= kept.size(); i += detail::kWidth) acc = xsimd::max(acc, gather(&kept[i]));
  alignas(64) float lanes[detail::kWidth];
  acc.store_aligned(lanes);
  float m = *std::max_element(lanes, lanes + detail::kWidth);
  for (; i < kept.size(); ++i) m = std::max(m, kept[i].logit);
  return m;
}

/// prob_i = exp(logit_i - max) / sum_j exp(logit_j - max) over the kept
/// candidates. Subtracting the max keeps every exponent <= 0 (no overflow) and
/// the largest term exactly 1 (the sum cannot underflow). Sums of batches are
/// accumulated in double: a float running sum of 10^5 terms would lose ~3
/// digits. O(size).
inline void softmax(Candidates& c) {
  const double sum = detail::exp_shifted(c.kept(), max_logit(c));
  const auto inv = static_cast<float>(1.0 / sum);
  for (auto& cand : c.kept()) cand.prob *= inv;
}

}  // namespace tessera::sample

TESSERA_SIMD_WARNINGS_ON
