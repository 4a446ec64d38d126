/// \file
/// The repetition penalty: the window of recently accepted tokens it looks at
/// (PenaltyWindow) and the CTRL-style rescaling of their logits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "tessera/core/error.hpp"

namespace tessera::sample {

/// The last `last_n` accepted tokens, with each distinct token's count, kept
/// up to date in O(1) per token so the penalty never rescans the window.
/// Memory: two int32 per vocabulary entry plus the window itself, which grows
/// to last_n entries as tokens arrive and is then reused as a ring.
class PenaltyWindow {
 public:
  PenaltyWindow() = default;
  /// An empty window over the last last_n tokens of a vocabulary of n_vocab (last_n = 0: push keeps nothing).
  PenaltyWindow(size_t n_vocab, size_t last_n) : last_n_(last_n), count_(n_vocab, 0), slot_(n_vocab, 0) {
    distinct_.reserve(std::min(last_n, n_vocab));
  }

  size_t n_vocab() const { return count_.size(); }  ///< Vocabulary size: tokens are ids in [0, n_vocab).
  size_t last_n() const { return last_n_; }  ///< Most tokens the window holds.
  /// Tokens in the window now: min(tokens pushed since clear(), last_n).
  size_t size() const { return ring_.size(); }
  /// Each token in the window once, in no particular order.
  std::span<const int32_t> distinct() const { return distinct_; }
  /// How often `token` occurs in the window.
  int32_t count(int32_t token) const { return in_vocab(token) ? count_[static_cast<size_t>(token)] : 0; }

  /// Appends `token`, evicting the oldest once the window holds last_n. O(1)
  /// (amortised while the window first fills). Throws Error for an id outside
  /// [0, n_vocab).
  void push(int32_t token) {
    check(in_vocab(token), "PenaltyWindow: token ", token, " is outside the vocabulary [0, ", n_vocab(), ")");
    if (last_n_ == 0) return;
    if (ring_.size() < last_n_) {
      ring_.push_back(token);
    } else {
      forget(ring_[head_]);
      ring_[head_] = token;
      head_ = (head_ + 1) % last_n_;
    }
    if (count_[static_cast<size_t>(token)]++ == 0) {
      slot_[static_cast<size_t>(token)] = static_cast<int32_t>(distinct_.size());
      distinct_.push_back(token);
    }
  }

  /// Empties the window. O(distinct tokens), keeping the allocations.
  void clear() {
    for (int32_t t : distinct_) count_[static_cast<size_t>(t)] = 0;
    distinct_.clear();
    ring_.clear();
    head_ = 0;
  }

 private:
  bool in_vocab(int32_t token) const { return token >= 0 && static_cast<size_t>(token) < count_.size(); }

  // Drops one occurrence; a token whose count reaches 0 leaves distinct_ by
  // swapping the last entry into its slot.
  void forget(int32_t token) {
    const auto t = static_cast<size_t>(token);
    if (--count_[t] > 0) return;
    const int32_t moved = distinct_.back();
    distinct_[static_cast<size_t>(slot_[t])] = moved;
    slot_[static_cast<size_t>(moved)] = slot_[t];
    distinct_.pop_back();
  }

  size_t last_n_ = 0;
  size_t head_ = 0;              // oldest entry once the ring is full
  std::vector<int32_t> ring_;    // [<= last_n] the window, oldest at head_
  std::vector<int32_t> count_;   // [n_vocab] occurrences in the window
  std::vector<int32_t> slot_;    // [n_vocab] index in distinct_ where count_ > 0
  std::vector<int32_t> distinct_;
};

/// CTRL's repetition penalty (Keskar et al. 2019) with the sign fix used by
/// HF transformers and llama.cpp: for each distinct token t in the window,
/// logit_t / penalty if logit_t > 0, else logit_t * penalty. Applied once per
/// token however often it repeats. penalty > 1 discourages repeats, < 1
/// encourages them, 1 does nothing. Plain division would *raise* a negative
/// logit, hence the two branches.
/// logits: [n_vocab], n_vocab = window.n_vocab(). O(distinct tokens).
inline void repetition_penalty(std::span<float> logits, const PenaltyWindow& window, float penalty) {
  check(penalty > 0.f && std::isfinite(penalty), "repetition_penalty: penalty = ", penalty,
        " must be finite and > 0");
  check(logits.size() == window.n_vocab(), "repetition_penalty: logits hold ", logits.size(),
        " entries but the window's vocabulary is ", window.n_vocab());
  for (int32_t t : window.distinct()) {
    float& l = logits[static_cast<size_t>(t)];
    l = l > 0.f ? l / penalty : l * penalty;
  }
}

}  // namespace tessera::sample
