/// \file
/// Speculative decoding: a cheap drafter proposes the next k tokens, the target
/// model scores all of them in one forward pass (its weights read once for k + 1
/// positions), and a verifier keeps the longest prefix the target agrees with,
/// plus one token of the target's own. Three drafters share one interface:
///
///   LookupDrafter   the continuation of the last earlier occurrence of the
///                   trailing n-gram (prompt lookup: no second model)
///   ModelDrafter    a smaller model with the same vocabulary, or the target's
///                   own first L layers and output head (self-speculation)
///
/// Verification (Leviathan et al. 2023; Chen et al. 2023). For a draft token x
/// drawn from q, with p the target's distribution after the sampler's
/// processors: accept with probability min(1, p(x) / q(x)); on rejection draw
/// from norm(max(0, p - q)). The token that comes out has distribution p
/// exactly: P(x) = q(x) min(1, p/q) + (1 - sum_y min(p, q)) (p(x) - min(p, q)(x)) / (1 - sum_y min(p, q))
///             = min(p, q)(x) + p(x) - min(p, q)(x) = p(x).
/// Greedy is the limit p, q one-hot: accept iff x is the target's argmax, so
/// the output is the plain greedy output token for token (the verification pass
/// of <= 16 rows computes decode's exact bits: backend::kDecodeExactRows).
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/io/tokenizer.hpp"
#include "tessera/models/llama_context.hpp"
#include "tessera/runtime/generator.hpp"
#include "tessera/sample/sampler.hpp"

namespace tessera::runtime {

/// Proposed tokens and the distribution each was drawn from (empty q: the
/// drafter is deterministic, q is one-hot at the token).
struct Draft {
  std::vector<int32_t> tokens;  ///< the proposed tokens, in order
  std::vector<std::vector<sample::Candidate>> q;  ///< per token: kept ids and probabilities sorted by id, or empty
  /// Empties both lists (keeping their capacity).
  void clear() {
    tokens.clear();
    q.clear();
  }
};

/// What proposes drafts.  history is everything the target has seen or will
/// see: the prompt and every token generated so far (the last one not yet
/// evaluated by the target).
class Drafter {
 public:
  virtual ~Drafter() = default;
  /// Up to k tokens that may follow history (fewer, or none, when it has no guess).
  virtual void propose(std::span<const int32_t> history, int k, Draft& out) = 0;
  /// A one-line description for logs, e.g. "prompt lookup (n-grams 1..3)".
  virtual std::string describe() const = 0;
};

/// Prompt lookup: finds the latest earlier occurrence of the last n tokens of
/// history (n from max_ngram down to min_ngram) and proposes what followed it.
/// O(history * max_ngram) per call; no model, no state.
class LookupDrafter final : public Drafter {
 public:
  /// Matches n-grams of max_ngram down to min_ngram tokens; Error unless 1 <= min_ngram <= max_ngram.
  explicit LookupDrafter(int max_ngram = 3, int min_ngram = 1) : max_n_(max_ngram), min_n_(min_ngram) {
    check(min_ngram >= 1 && max_ngram >= min_ngram, "LookupDrafter: n-grams of ", min_ngram, "..", max_ngram);
  }
  void propose(std::span<const int32_t> h, int k, Draft& out) override {
    out.clear();
    const auto L = static_cast<int64_t>(h.size());
    for (int64_t n = std::min<int64_t>(max_n_, L - 1); n >= min_n_; --n) {
      const auto tail = h.subspan(static_cast<size_t>(L - n));
      for (int64_t start = L - n - 1; start >= 0; --start) {  // latest match first
        if (!std::equal(tail.begin(), tail.end(), h.begin() + start)) continue;
        for (int64_t j = start + n; j < L && static_cast<int>(out.tokens.size()) < k; ++j)
          out.tokens.push_back(h[static_cast<size_t>(j)]);
        return;
      }
    }
  }
  std::string describe() const override {
    return "prompt lookup (n-grams " + std::to_string(min_n_) + ".." + std::to_string(max_n_) + ")";
  }

 private:
  int max_n_, min_n_;
};

/// A draft model: any LlamaContext whose vocabulary is the target's (a smaller
/// model, or LlamaContext(model, ..., n_layers = L) for self-speculation).  It
/// keeps its cache in step with history (truncating what was rejected), then
/// decodes k tokens with its own sampler of the target's settings (greedy when
/// they are greedy), keeping each token's distribution as q.
class ModelDrafter final : public Drafter {
 public:
  /// Drafts with ctx (owned) and a sampler of the target's params with its own seed and no
  /// repetition penalty; what is the text describe() returns.
  ModelDrafter(std::unique_ptr<models::LlamaContext> ctx, const sample::SamplerParams& params, std::string what)
      : ctx_(std::move(ctx)), sampler_(draft_params(params), ctx_->model().config().n_vocab), what_(std::move(what)) {}

  void propose(std::span<const int32_t> h, int k, Draft& out) override {
    out.clear();
    // Reuse what the draft cache already holds of history.
    const auto common = static_cast<size_t>(
        std::mismatch(seen_.begin(), seen_.end(), h.begin(), h.end()).first - seen_.begin());
    size_t keep = std::min(common, h.size() - 1);  // at least one new token to get logits from
    ctx_->truncate(static_cast<int>(keep));
    seen_.resize(keep);
    k = std::min(k, ctx_->n_ctx() - static_cast<int>(h.size()));
    if (k <= 0) return;
    std::span<const float> logits = ctx_->eval(h.subspan(keep));
    seen_.assign(h.begin(), h.end());
    const bool greedy = sampler_.params().temperature == 0.f;
    for (int i = 0; i < k; ++i) {
      const int32_t t = sampler_.sample(logits);
      out.tokens.push_back(t);
      if (!greedy) {  // sorted by id: the verifier looks probabilities up by binary search
        const auto kept = sampler_.candidates().kept();
        auto& q = out.q.emplace_back(kept.begin(), kept.end());
        std::sort(q.begin(), q.end(), [](const sample::Candidate& a, const sample::Candidate& b) { return a.id < b.id; });
      }
      if (i + 1 == k) break;
      logits = ctx_->eval(std::span<const int32_t>(&t, 1));
      seen_.push_back(t);
    }
  }
  std::string describe() const override { return what_; }

 private:
  // The draft's own stream and no repetition penalty: q only has to be known, not equal to p.
  static sample::SamplerParams draft_params(sample::SamplerParams p) {
    p.seed ^= 0x9E3779B97F4A7C15ull;
    p.repeat_penalty = 1.f;
    return p;
  }
  std::unique_ptr<models::LlamaContext> ctx_;
  sample::Sampler sampler_;
  std::string what_;
  std::vector<int32_t> seen_;  // tokens in the draft cache
};

/// Error unless the draft's vocabulary is the target's: same size, same token
/// texts, same BOS/EOS (drafts are token ids, so ids must mean the same text).
inline void check_same_vocabulary(const io::Tokenizer& target, const io::Tokenizer& draft) {
  check(target.n_vocab() == draft.n_vocab(), "draft model: its vocabulary has ", draft.n_vocab(),
        " tokens, the target's ", target.n_vocab(), "; a draft must share the target's tokenizer");
  for (int32_t i = 0; i < target.n_vocab(); ++i)
    check(target.spec().tokens[static_cast<size_t>(i)] == draft.spec().tokens[static_cast<size_t>(i)],
          "draft model: token ", i, " is '", draft.spec().tokens[static_cast<size_t>(i)], "', the target's is '",
          target.spec().tokens[static_cast<size_t>(i)], "'; a draft must share the target's tokenizer");
  check(target.bos() == draft.bos() && target.eos() == draft.eos(), "draft model: BOS/EOS ids ", draft.bos(), "/",
        draft.eos(), " differ from the target's ", target.bos(), "/", target.eos());
}

/// One verification step's outcome for one position: the token that comes out
/// and whether it was the draft's.
struct Verdict {
  int32_t token;  ///< the token that comes out: the draft's, or the replacement drawn on rejection
  bool accepted;  ///< whether the draft token was kept
};

/// The acceptance rule for draft token x drawn from q (empty q: one-hot at x;
/// else sorted by id) against the target's distribution p (the sampler's kept
/// candidates, any order).  On rejection the replacement is drawn from
/// norm(max(0, p - q)).  Consumes at most two uniforms of rng.
/// O(|p| log |q|): a top-k-off vocabulary on both sides stays cheap.
inline Verdict verify_token(std::span<const sample::Candidate> p, int32_t x, std::span<const sample::Candidate> q,
                            sample::Rng& rng) {
  auto q_of = [&](int32_t id) {
    if (q.empty()) return id == x ? 1.0 : 0.0;
    const auto it = std::lower_bound(q.begin(), q.end(), id,
                                     [](const sample::Candidate& c, int32_t v) { return c.id < v; });
    return it != q.end() && it->id == id ? static_cast<double>(it->prob) : 0.0;
  };
  double px = 0;
  for (const auto& c : p)
    if (c.id == x) px = c.prob;
  const double qx = q_of(x);
  if (px > 0 && (px >= qx || rng.uniform_double() * qx < px)) return {x, true};
  // Residual: max(0, p - q) over p's support (where p = 0 the residual is 0).
  double total = 0;
  for (const auto& c : p) total += std::max(0.0, c.prob - q_of(c.id));
  if (total <= 0) return {p.front().id, false};  // p <= q everywhere yet x rejected: only by rounding
  const double target = rng.uniform_double() * total;
  double mass = 0;
  int32_t last = p.front().id;
  for (const auto& c : p) {
    const double r = std::max(0.0, c.prob - q_of(c.id));
    if (r <= 0) continue;
    last = c.id;
    mass += r;
    if (target < mass) return {c.id, false};
  }
  return {last, false};
}

/// Draft lengths of speculative_generate().
struct SpeculativeConfig {
  int draft_max = 8;  ///< most tokens per draft (<= 15: the verification pass stays decode-exact)
  int draft_min = 1;  ///< the adaptive length never goes below this
};

/// generate()'s result plus the speculation's counts.
struct SpeculativeResult : GenerationResult {
  ///@{
  /// Draft tokens proposed, draft tokens the target accepted, and forward passes of the target
  /// after the prompt's (one per draft verified).
  int64_t drafted = 0, accepted = 0, target_passes = 0;
  ///@}
  /// Fraction of drafted tokens accepted (0 when nothing was drafted).
  double acceptance() const { return drafted ? static_cast<double>(accepted) / static_cast<double>(drafted) : 0; }
  /// Tokens generated per forward pass of the target (1 without speculation).
  double tokens_per_pass() const {
    return target_passes ? static_cast<double>(tokens.size()) / static_cast<double>(target_passes) : 0;
  }
};

/// generate() with a drafter: same stops, streaming and figures, plus the
/// acceptance rate.  The draft length adapts: doubled after a fully accepted
/// draft, else the accepted length + 1.  Rejected positions are truncated from
/// the target's cache.  Greedy output equals generate()'s token for token.
inline SpeculativeResult speculative_generate(models::LlamaContext& ctx, const io::Tokenizer& tok,
                                              sample::Sampler& sampler, Drafter& drafter,
                                              std::span<const int32_t> prompt, const GenerationConfig& cfg,
                                              const SpeculativeConfig& spec, const OnText& on_text) {
  using clock = std::chrono::steady_clock;
  auto seconds = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  check(!prompt.empty(), "generate: empty prompt");
  check(spec.draft_max >= 1 && spec.draft_max < backend::kDecodeExactRows && spec.draft_min >= 1 &&
            spec.draft_min <= spec.draft_max,
        "speculative: draft lengths ", spec.draft_min, "..", spec.draft_max, " (1 <= min <= max <= ",
        backend::kDecodeExactRows - 1, ")");
  check(ctx.n_past() + static_cast<int64_t>(prompt.size()) <= ctx.n_ctx(), "prompt of ", prompt.size(),
        " tokens (after ", ctx.n_past(), " in the cache) is longer than the context of ", ctx.n_ctx(), " tokens");
  SpeculativeResult r;
  r.n_prompt = static_cast<int>(prompt.size());
  for (int32_t t : prompt) sampler.accept(t);
  std::vector<int32_t> history(prompt.begin(), prompt.end());

  const auto t0 = clock::now();
  std::span<const float> logits = ctx.eval(prompt);
  const auto t1 = clock::now();
  r.prefill_s = seconds(t0, t1);
  r.target_passes = 0;

  io::StreamDecoder decoder(tok);
  StopStringMatcher stops(cfg.stop_strings);
  bool done = false;
  // Emits one generated token: true when generation must stop after it.
  auto emit = [&](int32_t token) {
    sampler.accept(token);
    r.tokens.push_back(token);
    history.push_back(token);
    if (r.tokens.size() == 1) r.ttft_s = seconds(t0, clock::now());
    if (cfg.stop_at_eog && tok.is_eog(token)) { r.stop = StopReason::end_of_generation; return true; }
    const std::string text = stops.push(decoder.push(token));
    r.text += text;
    if (!text.empty() && on_text && !on_text(text)) { r.stop = StopReason::callback; return true; }
    if (stops.stopped()) { r.stop = StopReason::stop_string; return true; }
    if (static_cast<int>(r.tokens.size()) >= cfg.max_new_tokens) { r.stop = StopReason::max_tokens; return true; }
    return false;
  };
  r.stop = StopReason::max_tokens;
  if (cfg.max_new_tokens <= 0) done = true;
  else done = emit(sampler.sample(logits));

  Draft draft;
  std::vector<int32_t> batch;
  int k = std::max(spec.draft_min, spec.draft_max / 2);
  while (!done) {
    // The target holds history minus its last token (pending); room for it and the draft.
    const int room = ctx.n_ctx() - ctx.n_past() - 1;
    if (room < 0) { r.stop = StopReason::context_full; break; }
    const int want = std::min({k, room, cfg.max_new_tokens - static_cast<int>(r.tokens.size())});
    draft.clear();
    if (want > 0) drafter.propose(history, want, draft);
    if (static_cast<int>(draft.tokens.size()) > want) draft.tokens.resize(static_cast<size_t>(want));
    batch.assign(1, history.back());
    batch.insert(batch.end(), draft.tokens.begin(), draft.tokens.end());
    const int64_t base = ctx.n_past();
    const auto rows = ctx.eval_all(batch);
    ++r.target_passes;
    r.drafted += static_cast<int64_t>(draft.tokens.size());
    size_t i = 0;
    for (; i < draft.tokens.size() && !done; ++i) {
      const auto& p = sampler.distribution({&rows(static_cast<int64_t>(i), 0), static_cast<size_t>(rows.dim(1))});
      const std::span<const sample::Candidate> q =
          i < draft.q.size() ? std::span<const sample::Candidate>(draft.q[i]) : std::span<const sample::Candidate>();
      const Verdict v = verify_token(std::span<const sample::Candidate>(p.data.data(), p.size),
                                     draft.tokens[i], q, sampler.rng());
      if (!v.accepted) {
        ctx.truncate(static_cast<int>(base + 1 + static_cast<int64_t>(i)));
        done = emit(v.token);
        break;
      }
      ++r.accepted;
      done = emit(v.token);
    }
    if (i == draft.tokens.size() && !done) {  // all accepted: the target's own next token comes free
      done = emit(sampler.sample({&rows(static_cast<int64_t>(i), 0), static_cast<size_t>(rows.dim(1))}));
    } else if (done) {
      ctx.truncate(static_cast<int>(std::min<int64_t>(ctx.n_past(), base + 1 + static_cast<int64_t>(i))));
    }
    if (!draft.tokens.empty())  // no proposal says nothing about how long the next may be
      k = std::clamp(i == draft.tokens.size() ? 2 * k : static_cast<int>(i) + 1, spec.draft_min, spec.draft_max);
  }
  if (r.stop != StopReason::stop_string && r.stop != StopReason::callback) {
    const std::string rest = stops.push(decoder.flush()) + stops.flush();
    r.text += rest;
    if (!rest.empty() && on_text) on_text(rest);
  }
  r.decode_s = seconds(t1, clock::now());
  return r;
}

}  // namespace tessera::runtime
