/// \file
/// Scoring whole texts: perplexity by llama-perplexity's method, and KL
/// divergence against another model's (or another program's) log-probabilities.
///
/// The method: the tokens are cut into chunks of n_ctx; each chunk is evaluated
/// from an empty cache with its first token replaced by BOS (when the vocabulary
/// adds one), and only the second half is scored, so every scored token has at
/// least n_ctx/2 tokens of context: position j in [n_ctx/2, n_ctx - 1) scores
/// token j + 1 under the logits at j.
///
///   nll_j = log sum_i e^(l_i) - l_(token)          PPL = exp(mean nll)
///   error of PPL = PPL * sqrt((mean nll^2 - mean(nll)^2) / (count - 1))
///   KL_j = sum_i p_base(i) (log p_base(i) - log p(i))   over log p_base(i) > -16
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <span>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/io/logprob_file.hpp"
#include "tessera/models/llama_context.hpp"

namespace tessera::runtime {

/// log sum_i exp(l_i) of one row of logits, summed in double.
inline double log_sum_exp(std::span<const float> logits) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v - mx));
  return static_cast<double>(mx) + std::log(sum);
}

/// Mean and standard error of a running sum (llama.cpp's estimator: 0 for 10
/// values or fewer).
struct MeanError {
  ///@{
  /// The mean, and its standard error.
  double mean = 0, error = 0;
  ///@}
};
/// Mean and standard error of count values given their sum and sum of squares
/// (zeros for no values; error 0 for 10 values or fewer, as llama.cpp).
inline MeanError mean_and_error(double sum, double sum2, int64_t count) {
  if (count < 1) return {};
  const double m = sum / static_cast<double>(count), var = sum2 / static_cast<double>(count) - m * m;
  return {m, var > 0 && count > 10 ? std::sqrt(var / static_cast<double>(count - 1)) : 0.0};
}

/// Negative log-likelihoods of scored tokens.
struct NllStats {
  ///@{
  /// Sum of the NLLs, and of their squares (nats).
  double sum = 0, sum2 = 0;
  ///@}
  int64_t count = 0;  ///< tokens scored
  /// Adds one token's NLL.
  void add(double nll) {
    sum += nll;
    sum2 += nll * nll;
    ++count;
  }
  /// Perplexity: exp(mean NLL); 1 when nothing was scored.
  double ppl() const { return std::exp(mean_and_error(sum, sum2, count).mean); }
  /// Standard error of ppl() (first order: d exp(x) = exp(x) dx).
  double ppl_error() const { return ppl() * mean_and_error(sum, sum2, count).error; }
};

/// How a text is cut and scored.
struct ScoreConfig {
  int n_ctx = 512;  ///< tokens per chunk (the context each chunk is evaluated in)
  int max_chunks = -1;  ///< -1: every whole chunk of the text
  int32_t bos = -1;  ///< < 0: the first token of each chunk is kept (vocabularies without BOS)
};

/// The second-half rows of one chunk: logits [n_ctx - 1 - n_ctx/2, n_vocab]
/// and the tokens they score [same].
struct ScoredChunk {
  int chunk = 0;  ///< index of the chunk in the text, from 0
  TensorView<const float, 2> logits;  ///< [n_ctx - 1 - n_ctx/2, n_vocab]: row r scores targets[r]; valid during the callback
  std::span<const int32_t> targets;  ///< the token that followed each logits row
};

/// Runs every chunk of tokens through ctx (reset before each) and hands each
/// chunk's scored rows to `on_chunk`.  Error when the text is shorter than a
/// chunk or n_ctx exceeds the context.  Returns the number of chunks.
inline int score_chunks(models::LlamaContext& ctx, std::span<const int32_t> tokens, const ScoreConfig& cfg,
                        const std::function<void(const ScoredChunk&)>& on_chunk) {
  check(cfg.n_ctx >= 4, "perplexity: chunk size ", cfg.n_ctx, " is too small");
  check(cfg.n_ctx <= ctx.n_ctx(), "perplexity: chunks of ", cfg.n_ctx, " tokens do not fit the context of ",
        ctx.n_ctx(), " (raise -c of the context)");
  check(static_cast<int64_t>(tokens.size()) >= cfg.n_ctx, "perplexity: the text has ", tokens.size(),
        " tokens, less than one chunk of ", cfg.n_ctx);
  int n_chunk = static_cast<int>(tokens.size() / static_cast<size_t>(cfg.n_ctx));
  if (cfg.max_chunks >= 0) n_chunk = std::min(n_chunk, cfg.max_chunks);
  const int first = cfg.n_ctx / 2;
  std::vector<int32_t> chunk(static_cast<size_t>(cfg.n_ctx));
  for (int c = 0; c < n_chunk; ++c) {
    const auto src = tokens.subspan(static_cast<size_t>(c) * static_cast<size_t>(cfg.n_ctx),
                                    static_cast<size_t>(cfg.n_ctx));
    std::copy(src.begin(), src.end(), chunk.begin());
    if (cfg.bos >= 0) chunk[0] = cfg.bos;
    ctx.reset();
    const auto logits = ctx.eval_all(chunk);
    on_chunk({c, logits.narrow(0, first, cfg.n_ctx - 1), src.subspan(static_cast<size_t>(first) + 1)});
  }
  ctx.reset();
  return n_chunk;
}

/// Perplexity of tokens; on_chunk (optional) sees the running statistics after
/// each chunk; base_out (optional) receives every scored row, making the file
/// llama-perplexity --kl-divergence reads.  Error for a text shorter than two
/// chunks (llama-perplexity's rule).
inline NllStats perplexity(models::LlamaContext& ctx, std::span<const int32_t> tokens, const ScoreConfig& cfg,
                           const std::function<void(int chunk, const NllStats&)>& on_chunk = {},
                           io::LogProbWriter* base_out = nullptr) {
  check(static_cast<int64_t>(tokens.size()) >= 2 * static_cast<int64_t>(cfg.n_ctx), "perplexity: the text has ",
        tokens.size(), " tokens, at least ", 2 * cfg.n_ctx, " are needed for chunks of ", cfg.n_ctx);
  NllStats s;
  score_chunks(ctx, tokens, cfg, [&](const ScoredChunk& sc) {
    for (int64_t r = 0; r < sc.logits.dim(0); ++r) {
      const std::span<const float> row(&sc.logits(r, 0), static_cast<size_t>(sc.logits.dim(1)));
      s.add(log_sum_exp(row) - row[static_cast<size_t>(sc.targets[static_cast<size_t>(r)])]);
      if (base_out) base_out->write_row(row);
    }
    if (on_chunk) on_chunk(sc.chunk, s);
  });
  return s;
}

/// Token-by-token comparison of a model's distributions with base ones.
struct KlStats {
  ///@{
  /// NLLs of the following token under the model, and under the base.
  NllStats nll, nll_base;
  ///@}
  double sum_nll_nll_base = 0;  ///< sum over positions of nll * nll_base (for their covariance)
  ///@{
  /// Sum of KL(base || model) per position, and of its squares.
  double sum_kld = 0, sum_kld2 = 0;
  ///@}
  ///@{
  /// Sums of the 1st, 2nd and 4th powers of dp = p(token) - p_base(token).
  double sum_p_diff = 0, sum_p_diff2 = 0, sum_p_diff4 = 0;
  ///@}
  int64_t same_top = 0;  ///< positions where the model's and the base's most likely tokens agree
  ///@{
  /// KL and dp of every position, for the percentiles.
  std::vector<float> kld, p_diff;
  ///@}

  /// One position: our logits [n_vocab], the base's compressed row, the token that followed.
  void add(std::span<const float> logits, const io::LogProbRow& base, int32_t token) {
    const size_t n = logits.size();
    const double lse = log_sum_exp(logits);
    size_t top = 0, top_base = 0;
    float best_base = base.log_prob(0);
    double kl = 0;
    for (size_t i = 0; i < n; ++i) {
      if (logits[i] > logits[top]) top = i;
      const float lb = base.log_prob(static_cast<int32_t>(i));
      if (lb > best_base) {
        best_base = lb;
        top_base = i;
      }
      // llama.cpp leaves out base probabilities below e^-16 (its 16-bit rows do not resolve them)
      if (lb > -16.f) kl += std::exp(static_cast<double>(lb)) * (lb - (static_cast<double>(logits[i]) - lse));
    }
    const double nll_q = lse - logits[static_cast<size_t>(token)];
    const double nll_b = -static_cast<double>(base.log_prob(token));
    nll.add(nll_q);
    nll_base.add(nll_b);
    sum_nll_nll_base += nll_q * nll_b;
    sum_kld += kl;
    sum_kld2 += kl * kl;
    kld.push_back(static_cast<float>(kl));
    const double dp = std::exp(-nll_q) - std::exp(-nll_b);
    sum_p_diff += dp;
    sum_p_diff2 += dp * dp;
    sum_p_diff4 += dp * dp * dp * dp;
    p_diff.push_back(static_cast<float>(dp));
    same_top += top == top_base;
  }
  /// Positions compared.
  int64_t count() const { return nll.count; }
  /// Mean KL divergence (nats) and its error.
  MeanError mean_kld() const { return mean_and_error(sum_kld, sum_kld2, count()); }
  /// Mean dp = p(token) - p_base(token) and its error.
  MeanError mean_p_diff() const { return mean_and_error(sum_p_diff, sum_p_diff2, count()); }
  /// RMS of Δp and its error.
  MeanError rms_p_diff() const {
    const MeanError mse = mean_and_error(sum_p_diff2, sum_p_diff4, count());
    const double rms = std::sqrt(mse.mean);
    return {rms, rms > 0 ? 0.5 / rms * mse.error : 0.0};
  }
  /// Fraction of positions whose most likely token is the base's, and its binomial error.
  MeanError same_top_fraction() const {
    const double f = count() ? static_cast<double>(same_top) / static_cast<double>(count()) : 0;
    return {f, count() > 1 ? std::sqrt(f * (1 - f) / static_cast<double>(count() - 1)) : 0.0};
  }
  /// ln(PPL / PPL_base) and its error (the two are correlated: covariance subtracted).
  MeanError log_ppl_ratio() const {
    const MeanError a = mean_and_error(nll.sum, nll.sum2, count()), b = mean_and_error(nll_base.sum, nll_base.sum2, count());
    const double cov = count() < 10 ? 0.0
                                    : (sum_nll_nll_base / static_cast<double>(count()) - a.mean * b.mean) /
                                          static_cast<double>(count() - 1);
    return {a.mean - b.mean, std::sqrt(std::max(0.0, a.error * a.error + b.error * b.error - 2 * cov))};
  }
  /// The value below which `fraction` of values lie, linearly interpolated (values need not be sorted).
  static float percentile(std::vector<float> values, double fraction) {
    check(!values.empty(), "percentile of no values");
    std::sort(values.begin(), values.end());
    if (fraction <= 0) return values.front();
    if (fraction >= 1) return values.back();
    const double p = fraction * static_cast<double>(values.size() - 1);
    const auto ip = static_cast<size_t>(p);
    const double f = p - static_cast<double>(ip);
    return static_cast<float>((1 - f) * values[ip] + f * values[std::min(ip + 1, values.size() - 1)]);
  }
};

/// Compares ctx's distributions with the base file's, chunk by chunk, on the
/// file's own tokens and chunk size.  Error when the vocabularies differ.
inline KlStats kl_divergence(models::LlamaContext& ctx, const io::LogProbReader& base, int32_t bos,
                             const std::function<void(int chunk, const KlStats&)>& on_chunk = {}) {
  const io::LogProbLayout& L = base.layout();
  check(L.n_vocab == ctx.model().config().n_vocab, "KL divergence: the base file's vocabulary has ", L.n_vocab,
        " tokens, the model's ", ctx.model().config().n_vocab);
  KlStats s;
  ScoreConfig cfg;
  cfg.n_ctx = L.n_ctx;
  cfg.bos = bos;
  cfg.max_chunks = L.n_chunk;
  score_chunks(ctx, base.tokens(), cfg, [&](const ScoredChunk& sc) {
    for (int64_t r = 0; r < sc.logits.dim(0); ++r)
      s.add({&sc.logits(r, 0), static_cast<size_t>(sc.logits.dim(1))}, base.row(sc.chunk, r),
            sc.targets[static_cast<size_t>(r)]);
    if (on_chunk) on_chunk(sc.chunk, s);
  });
  return s;
}

}  // namespace tessera::runtime
