/// \file
/// Logits processors over a candidate list — temperature, top-k, top-p, min-p —
/// and the two ways to pick a token: greedy argmax and a seeded categorical
/// draw. Each is a plain function; sample/sampler.hpp chains them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "tessera/core/error.hpp"
#include "tessera/sample/candidates.hpp"
#include "tessera/sample/rng.hpp"

namespace tessera::sample {

/// Greedy decoding: the id of the largest logit, the lowest id on ties.
/// logits: [n_vocab]. Throws Error on NaN/+inf or when every logit is -inf.
/// O(n_vocab), one compare per entry.
inline int32_t greedy(std::span<const float> logits) {
  detail::check_vocab(logits.size());
  int64_t best_id = -1;
  // Only a strictly larger logit takes over, so a tie keeps the lower id. NaN
  // fails the compare and so is visited, and rejected.
  detail::scan_above(logits, detail::kNegInf, [&](size_t i, float l) {
    detail::check_logit(l, i);
    best_id = static_cast<int64_t>(i);
    return l;
  });
  check(best_id >= 0, "sampler: every logit is -inf, no token can be chosen");
  return static_cast<int32_t>(best_id);
}

/// Divides every kept logit by `temp` (> 1 flattens, < 1 sharpens). The logits
/// are shifted by their max first — softmax does not see a shift — so a tiny
/// temp sends the others to -inf instead of the top one to +inf (inf - inf
/// would be NaN). temp = 0 keeps only the best candidate: greedy. Order is
/// preserved. Throws Error for temp < 0 or NaN. O(size).
inline void temperature(Candidates& c, float temp) {
  check(temp >= 0.f && !std::isnan(temp), "temperature = ", temp, " must be >= 0 (0 = greedy)");
  detail::check_candidates(c, "temperature");
  if (temp == 0.f) {
    c.data[0] = *std::min_element(c.data.begin(), c.data.begin() + static_cast<ptrdiff_t>(c.size), ranks_before);
    c.size = 1;
    c.sorted = true;
    return;
  }
  const float m = max_logit(c);
  for (auto& cand : c.kept()) cand.logit = (cand.logit - m) / temp;
}

/// Keeps the k best candidates in ranks_before order: exactly k, never more —
/// ties at the boundary go to the lower ids, as in llama.cpp (HF transformers
/// keeps every token tied with the k-th instead). k = 0 or k >= size changes
/// nothing. O(size) via nth_element plus O(k log k) to sort the k kept; a
/// sorted list is just cut. Sampler selects straight from the logits row with
/// select_top_k instead, which gives the same list without filling it first.
inline void top_k(Candidates& c, size_t k) {
  if (k == 0 || k >= c.size) return;
  detail::check_candidates(c, "top_k");
  if (!c.sorted) {
    auto* first = c.data.data();
    std::nth_element(first, first + k, first + c.size, ranks_before);
    std::sort(first, first + k, ranks_before);
    c.sorted = true;
  }
  c.size = k;
}

namespace detail {

/// For a long unsorted list with probs: moves to the front every candidate
/// that can be in the nucleus and returns how many. Tokens are bucketed by
/// how far their logit lies below the max (1/4 wide, the last bucket open);
/// the buckets up to the first where the mass reaches p hold a prefix of the
/// ranking with mass >= p, so the nucleus lies inside them. Buckets preserve
/// rank (a lower bucket means a strictly larger logit), hence the front
/// ranks before the rest. O(size), against the O(size) nth_element per chunk
/// that would otherwise sort a 10^5 vocabulary down to its nucleus.
inline size_t nucleus_bound(Candidates& c, float p) {
  constexpr int kBuckets = 128;
  constexpr float kPerLogit = 4.f;
  const float m = max_logit(c);
  auto bucket = [m](const Candidate& cand) {
    const float d = (m - cand.logit) * kPerLogit;
    return d < static_cast<float>(kBuckets - 1) ? static_cast<int>(d) : kBuckets - 1;
  };
  double mass[kBuckets] = {};
  for (const auto& cand : c.kept()) mass[bucket(cand)] += cand.prob;
  int last = 0;
  for (double cum = mass[0]; cum < p && last < kBuckets - 1;) cum += mass[++last];
  const auto kept = c.kept();
  return static_cast<size_t>(
      std::partition(kept.begin(), kept.end(), [&](const Candidate& cand) { return bucket(cand) <= last; }) -
      kept.begin());
}

/// Extends the sorted prefix data[0, done) of a list in which [0, done) ranks
/// before [done, size) and [0, limit) before [limit, size): nth_element the
/// next chunk out of [done, limit) and sort it. Chunks double from 256, so a
/// nucleus of m tokens costs O(limit log m) at worst, not a full sort.
inline size_t extend_sorted_prefix(Candidates& c, size_t done, size_t limit) {
  const size_t end = std::min(limit, done + std::max<size_t>(256, done));
  auto* first = c.data.data();
  std::nth_element(first + done, first + end, first + limit, ranks_before);
  std::sort(first + done, first + end, ranks_before);
  return end;
}

}  // namespace detail

/// Nucleus sampling (Holtzman et al. 2020): softmax over the kept candidates,
/// then keep the smallest most-probable prefix whose mass is >= p, and at least
/// min_keep tokens. The cumulative sum runs in double from the most probable
/// token down, as in llama.cpp; HF removes tokens whose cumulative mass from
/// the least probable end is <= 1 - p, the same set up to rounding. p = 1
/// changes nothing. Leaves probs as computed before the cut (unnormalised) and
/// the list sorted. Throws Error unless 0 < p <= 1.
/// O(size) for the softmax; an unsorted list also pays for nucleus_bound and
/// a partial sort of what it keeps.
inline void top_p(Candidates& c, float p, size_t min_keep = 1) {
  check(p > 0.f && p <= 1.f, "top_p = ", p, " must be in (0, 1]");
  if (p == 1.f) return;
  softmax(c);
  size_t done = c.sorted ? c.size : 0;
  // Past a few chunks of sorting, bounding the nucleus first is cheaper.
  size_t bound = c.sorted || c.size <= 2048 ? c.size : detail::nucleus_bound(c, p);
  size_t keep = c.size;
  double mass = 0;
  for (size_t i = 0; i < c.size; ++i) {
    if (i == done) {
      if (done == bound) bound = c.size;  // the bound fell short by rounding, or min_keep exceeds it
      done = detail::extend_sorted_prefix(c, done, bound);
    }
    mass += c.data[i].prob;
    if (mass >= p && i + 1 >= min_keep) {
      keep = i + 1;
      break;
    }
  }
  c.size = keep;
  c.sorted = true;
}

/// Min-p (Nguyen et al. 2024): keeps candidates whose probability is at least
/// p times the largest, and at least min_keep. Compared as logits —
/// logit_i >= max_logit + ln p — which is the same test without a softmax (the
/// normaliser cancels in the ratio). p = 0 changes nothing; p = 1 keeps the
/// tokens tied for the top. Keeps the list's order. Throws Error unless
/// 0 <= p <= 1. O(size).
inline void min_p(Candidates& c, float p, size_t min_keep = 1) {
  check(p >= 0.f && p <= 1.f, "min_p = ", p, " must be in [0, 1]");
  if (p == 0.f) return;
  // max + ln p <= max after rounding too, so the top token always passes.
  const float threshold = max_logit(c) + std::log(p);
  const auto passes = [threshold](const Candidate& cand) { return cand.logit >= threshold; };
  const auto kept = c.kept();
  // Moves the passing tokens to the front, keeping their (id) order.
  const auto compact = [&] {
    const auto end = std::remove_if(kept.begin(), kept.end(), [&](const Candidate& cand) { return !passes(cand); });
    c.size = static_cast<size_t>(end - kept.begin());
  };
  if (!c.sorted && min_keep <= 1) return compact();  // the top always passes: one pass suffices
  const auto n_pass = static_cast<size_t>(
      c.sorted ? std::partition_point(kept.begin(), kept.end(), passes) - kept.begin()  // a prefix
               : std::count_if(kept.begin(), kept.end(), passes));
  if (n_pass < min_keep) top_k(c, min_keep);  // the threshold keeps too few: the min_keep best instead
  else if (c.sorted) c.size = n_pass;
  else compact();
}

/// Draws one token from the kept candidates with probability prob_i / sum(prob),
/// so it needs softmax() (or top_p) first and does not need the probs to sum to
/// 1. One 53-bit uniform u from `rng`, then the first candidate in list order
/// whose cumulative mass exceeds u * sum — inverse-CDF sampling. A token of
/// probability 0 is never drawn. O(size).
inline int32_t draw(const Candidates& c, Rng& rng) {
  detail::check_candidates(c, "draw");
  const auto kept = c.kept();
  double total = 0;
  for (const auto& cand : kept) total += cand.prob;
  const double target = rng.uniform_double() * total;
  double mass = 0;
  int32_t last_positive = kept[0].id;
  for (const auto& cand : kept) {
    if (cand.prob <= 0.f) continue;
    mass += cand.prob;
    last_positive = cand.id;
    if (target < mass) return cand.id;
  }
  return last_positive;  // u * total rounded up to total: the last token that has mass
}

}  // namespace tessera::sample
