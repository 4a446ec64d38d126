/// \file
/// Sampler: the default chain of processors — repetition penalty, temperature,
/// top-k, top-p, min-p, then a seeded categorical draw — with its parameters
/// and the scratch it owns, so a decode step allocates nothing.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/sample/candidates.hpp"
#include "tessera/sample/penalty.hpp"
#include "tessera/sample/processors.hpp"
#include "tessera/sample/rng.hpp"

namespace tessera::sample {

/// The chain's knobs, with llama.cpp's defaults. Each has an "off" value.
struct SamplerParams {
  float temperature = 0.8f;  ///< 0 = greedy (argmax); must be >= 0
  int top_k = 40;               ///< 0 = off; must be >= 0 (negative is an error, not "off")
  float top_p = 0.95f;  ///< 1 = off; in (0, 1]
  float min_p = 0.05f;  ///< 0 = off; in [0, 1]
  float repeat_penalty = 1.0f;  ///< 1 = off; > 0
  int repeat_last_n = 64;  ///< 0 = off; how many accepted tokens the penalty looks back over, >= 0
  uint64_t seed = 42;  ///< the Rng stream; fixed by default so runs reproduce
};

/// Throws Error naming the first parameter out of range and its value.
inline void validate(const SamplerParams& p) {
  check(p.temperature >= 0.f && std::isfinite(p.temperature), "SamplerParams: temperature = ", p.temperature,
        " must be finite and >= 0 (0 = greedy)");
  check(p.top_k >= 0, "SamplerParams: top_k = ", p.top_k, " must be >= 0 (0 = off)");
  check(p.top_p > 0.f && p.top_p <= 1.f, "SamplerParams: top_p = ", p.top_p, " must be in (0, 1] (1 = off)");
  check(p.min_p >= 0.f && p.min_p <= 1.f, "SamplerParams: min_p = ", p.min_p, " must be in [0, 1] (0 = off)");
  check(p.repeat_penalty > 0.f && std::isfinite(p.repeat_penalty), "SamplerParams: repeat_penalty = ",
        p.repeat_penalty, " must be finite and > 0 (1 = off)");
  check(p.repeat_last_n >= 0, "SamplerParams: repeat_last_n = ", p.repeat_last_n, " must be >= 0 (0 = off)");
}

/// Turns a row of logits into a token. The chain, in HF transformers' order:
///   1. repetition penalty over the last repeat_last_n accepted tokens,
///   2. temperature (0 stops here with greedy argmax, lowest id on ties),
///   3. top-k, 4. top-p, 5. min-p, each on what the previous one kept,
///   6. renormalise and draw with the seeded Rng.
/// llama.cpp's default chain applies temperature last instead, so its top-p
/// and min-p see the untempered distribution: at t < 1 they keep more tokens
/// than here, at t > 1 fewer; top-k keeps the same set either way. Top-k is
/// selected straight from the logits row before temperature is applied:
/// dividing by a positive temperature keeps the order, so the set is the same.
///
/// Deterministic: the same seed, logits and accepted tokens give the same
/// tokens. The Rng is consumed once per non-greedy sample() and never by a
/// greedy one. Not thread-safe; use one Sampler per sequence.
class Sampler {
 public:
  /// Allocates all scratch for a vocabulary of n_vocab: the candidate list,
  /// a row for the penalised logits, the penalty window. Throws Error on bad
  /// params or n_vocab <= 0.
  explicit Sampler(SamplerParams params, int n_vocab) : params_(params), n_vocab_(n_vocab), rng_(params.seed) {
    validate(params_);
    check(n_vocab > 0, "Sampler: n_vocab = ", n_vocab, " must be > 0");
    const auto n = static_cast<size_t>(n_vocab);
    candidates_ = Candidates(n);
    if (penalty_enabled()) {
      penalised_.resize(n);
      window_ = PenaltyWindow(n, static_cast<size_t>(params_.repeat_last_n));
    }
  }

  /// The next token for one row of logits [n_vocab]. Does not accept it:
  /// call accept() with the token actually used (it may be replaced, e.g. by
  /// a stop sequence or a speculative verifier). Throws Error on a row of the
  /// wrong length, NaN/+inf logits, or every logit -inf.
  /// Cost: with top-k on, one vectorised pass over the row (plus a copy with
  /// the penalty on) and work on k tokens: ~20 µs at n_vocab 49152, ~40 µs
  /// at 128256 on one Zen 3 core. With top-k off, a few passes over the whole
  /// vocabulary (softmax, nucleus bound): ~0.4 ms and ~1.1 ms.
  int32_t sample(std::span<const float> logits) {
    distribution(logits);
    return params_.temperature == 0.f ? candidates_.data[0].id : draw(candidates_, rng_);
  }

  /// The distribution sample() draws from, without drawing (the Rng is not
  /// touched): the kept tokens with their final probabilities, one token of
  /// probability 1 when greedy.  What a speculative verifier needs as p.
  /// Valid until the next call.  Same errors as sample().
  const Candidates& distribution(std::span<const float> logits) {
    check(logits.size() == static_cast<size_t>(n_vocab_), "Sampler::sample: got ", logits.size(),
          " logits for a vocabulary of ", n_vocab_);
    std::span<const float> row = penalised_row(logits);
    if (params_.temperature == 0.f) {
      const int32_t id = greedy(row);
      candidates_.data[0] = {id, row[static_cast<size_t>(id)], 1.f};
      candidates_.size = 1;
      candidates_.sorted = true;
      return candidates_;
    }
    if (params_.top_k > 0 && params_.top_k < n_vocab_) {
      select_top_k(row, static_cast<size_t>(params_.top_k), candidates_);
    } else {
      fill_candidates(row, candidates_);
    }
    temperature(candidates_, params_.temperature);
    top_p(candidates_, params_.top_p);
    min_p(candidates_, params_.min_p);
    softmax(candidates_);
    return candidates_;
  }

  /// Adds a token to the repetition-penalty history. Throws Error for an id
  /// outside [0, n_vocab). Prompt tokens may be accepted too, to penalise
  /// repeating the prompt.
  void accept(int32_t token) {
    check(token >= 0 && token < n_vocab_, "Sampler::accept: token ", token, " is outside the vocabulary [0, ",
          n_vocab_, ")");
    if (penalty_enabled()) window_.push(token);
  }

  /// Back to the state right after construction: empty history, Rng reseeded.
  void reset() {
    window_.clear();
    rng_.reseed(params_.seed);
    candidates_.size = 0;
  }

  /// The distribution of the last sample(): the kept tokens with their final
  /// probabilities (one token of probability 1 after a greedy step).
  const Candidates& candidates() const { return candidates_; }

  const SamplerParams& params() const { return params_; }  ///< The parameters the sampler was built with.
  /// sample() is the plain argmax of the logits (temperature 0, no penalty):
  /// a GPU context may pick the token on the device and skip the download.
  bool is_argmax() const { return params_.temperature == 0.f && !penalty_enabled(); }
  int n_vocab() const { return n_vocab_; }  ///< Length of the logit rows sample() takes.
  /// The stream the draws come from; copy or restore it to fork or rewind a run.
  Rng& rng() { return rng_; }

 private:
  bool penalty_enabled() const { return params_.repeat_penalty != 1.f && params_.repeat_last_n > 0; }

  // The logits the rest of the chain sees: the input itself unless the penalty
  // has something to change, else a penalised copy (the input is read-only).
  std::span<const float> penalised_row(std::span<const float> logits) {
    if (!penalty_enabled() || window_.size() == 0) return logits;
    std::copy(logits.begin(), logits.end(), penalised_.begin());
    repetition_penalty(penalised_, window_, params_.repeat_penalty);
    return penalised_;
  }

  SamplerParams params_;
  int n_vocab_;
  Rng rng_;
  Candidates candidates_;
  std::vector<float> penalised_;  // [n_vocab], only with the penalty on
  PenaltyWindow window_;
};

}  // namespace tessera::sample
