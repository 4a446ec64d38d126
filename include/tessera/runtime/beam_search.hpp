/// \file
/// Beam search with the semantics of Hugging Face transformers'
/// generate(num_beams=N, do_sample=False, length_penalty=a, early_stopping=e)
/// (the vectorised implementation of transformers 4.50+):
///
///   running   N beams, each a sequence and the sum of its tokens' log-probs
///             (the first step expands one beam: the others start at -1e9)
///   a step    every running beam's log_softmax + its sum, flattened over
///             (beam, token); the top K = max(2, 1 + n_eos) N continuations.
///             A continuation "hits" when its token is an EOS or the length
///             limit is reached.  The next running beams: the top N after
///             hitting ones are pushed down by 1e9.  The finished set: the best
///             N of the old finished and the continuations that hit *and* rank
///             among the top N, scored sum / (generated length)^a, the length
///             counting the EOS token.
///   stopping  early_stopping = true: as soon as N finished; false: when the
///             best running sum / (current length)^a cannot beat the worst of
///             N finished; "never": the same bound at the length limit when
///             a > 0.  Also when every continuation hit.
///
/// Arithmetic is float32 where transformers' is, so scripted logits give the
/// same beams (tests/runtime/test_beam_search.cpp, with a Python twin that runs
/// transformers itself).  Over a model, beams fork the context: with a paged
/// KV cache the forks share the prompt's and the common prefix's blocks
/// (copy on write), so N beams do not hold N copies of the prompt.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <numeric>
#include <span>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/models/llama_context.hpp"

namespace tessera::runtime {

/// When the search stops (the "stopping" rules of the file comment): heuristic, on and never are
/// transformers' early_stopping False, True and "never".
enum class EarlyStopping { heuristic, on, never };

/// Parameters of beam search, named as transformers' generate() arguments.
struct BeamSearchConfig {
  int num_beams = 4;  ///< N: beams kept running and hypotheses kept finished
  int max_new_tokens = 32;  ///< length limit: most tokens generated per hypothesis
  float length_penalty = 1.f;  ///< > 0 favours longer sequences, < 0 shorter
  EarlyStopping early_stopping = EarlyStopping::heuristic;  ///< when to stop searching
  int num_return = 1;  ///< hypotheses returned, best first (<= num_beams)
  std::vector<int32_t> eos;  ///< tokens that finish a hypothesis (empty: only the length limit does)
};

/// One finished sequence of a beam search.
struct BeamHypothesis {
  std::vector<int32_t> tokens;  ///< generated tokens, the finishing EOS included
  float score = 0;  ///< sum of log-probs / (tokens.size())^length_penalty
};

/// log_softmax in float32, as torch computes it: x - max - log(sum exp(x - max)).
inline void log_softmax_f32(std::span<const float> x, std::span<float> out) {
  const float mx = *std::max_element(x.begin(), x.end());
  float sum = 0;
  for (float v : x) sum += std::exp(v - mx);
  const float lse = mx + std::log(sum);
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] - lse;
}

/// The search itself over any source of logits.  next(parents, tokens) must
/// return the logits [n_vocab] after each running beam i, which continues
/// beam parents[i] of the previous step by tokens[i] (first call: one beam,
/// the prompt, parents and tokens empty).  Spans stay valid until the next call.
/// O(steps * N * n_vocab) besides the model.
inline std::vector<BeamHypothesis> beam_search(
    int n_vocab, const BeamSearchConfig& cfg,
    const std::function<std::vector<std::span<const float>>(std::span<const int>, std::span<const int32_t>)>& next) {
  const int N = cfg.num_beams;
  check(N >= 1 && cfg.max_new_tokens >= 1 && cfg.num_return >= 1 && cfg.num_return <= N, "beam search: ", N,
        " beams, ", cfg.max_new_tokens, " new tokens, ", cfg.num_return, " returned (1 <= returned <= beams)");
  check(n_vocab > 0, "beam search: empty vocabulary");
  const int K = std::max(2, 1 + static_cast<int>(cfg.eos.size())) * N;
  check(static_cast<int64_t>(K) <= static_cast<int64_t>(N) * n_vocab, "beam search: ", N,
        " beams need a vocabulary of at least ", K / N, " tokens");
  struct Running {
    std::vector<int32_t> seq;
    float sum;
  };
  struct Finished {
    std::vector<int32_t> seq;
    float score;
    bool done;
  };
  std::vector<Running> running(static_cast<size_t>(N), Running{{}, -1e9f});
  running[0].sum = 0.f;
  std::vector<Finished> finished(static_cast<size_t>(N), Finished{{}, -1e9f, false});
  bool unsatisfied = true;
  const auto V = static_cast<size_t>(n_vocab);
  std::vector<float> acc(static_cast<size_t>(N) * V), lp(V);
  std::vector<int> parents;
  std::vector<int32_t> tokens;
  std::vector<size_t> order(acc.size());
  // Descending by value, lower index first on ties (a total order: the search is reproducible).
  auto top = [](std::span<const float> v, size_t k, std::vector<size_t>& idx) {
    idx.resize(v.size());
    std::iota(idx.begin(), idx.end(), size_t{0});
    std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k), idx.end(),
                      [&](size_t a, size_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
    idx.resize(k);
  };

  std::vector<std::span<const float>> logits = next({}, {});
  check(logits.size() == 1 && logits[0].size() == V, "beam search: the first step must give one row of ", n_vocab,
        " logits");
  logits.assign(static_cast<size_t>(N), logits[0]);  // N identical beams; only beam 0 counts (the rest are at -1e9)
  for (int t = 0; t < cfg.max_new_tokens; ++t) {
    check(logits.size() == static_cast<size_t>(N), "beam search: ", logits.size(), " rows of logits for ", N,
          " beams");
    for (int b = 0; b < N; ++b) {
      check(logits[static_cast<size_t>(b)].size() == V, "beam search: a row of ", logits[static_cast<size_t>(b)].size(),
            " logits for a vocabulary of ", n_vocab);
      log_softmax_f32(logits[static_cast<size_t>(b)], lp);
      for (size_t v = 0; v < V; ++v) acc[static_cast<size_t>(b) * V + v] = lp[v] + running[static_cast<size_t>(b)].sum;
    }
    top(acc, static_cast<size_t>(K), order);
    // The K continuations, best first.
    std::vector<Running> cand(static_cast<size_t>(K));
    std::vector<char> hits(static_cast<size_t>(K));
    std::vector<float> cand_sum(static_cast<size_t>(K));
    for (int r = 0; r < K; ++r) {
      const size_t i = order[static_cast<size_t>(r)];
      const auto parent = static_cast<int>(i / V);
      const auto token = static_cast<int32_t>(i % V);
      cand[static_cast<size_t>(r)].seq = running[static_cast<size_t>(parent)].seq;
      cand[static_cast<size_t>(r)].seq.push_back(token);
      cand[static_cast<size_t>(r)].sum = acc[i];
      cand_sum[static_cast<size_t>(r)] = acc[i];
      hits[static_cast<size_t>(r)] = std::find(cfg.eos.begin(), cfg.eos.end(), token) != cfg.eos.end() ||
                                     t + 1 >= cfg.max_new_tokens;
    }
    // Next running beams: hitting continuations pushed down by 1e9 (float32, as transformers adds it).
    std::vector<float> run_scores(static_cast<size_t>(K));
    for (int r = 0; r < K; ++r) run_scores[static_cast<size_t>(r)] = cand_sum[static_cast<size_t>(r)] + (hits[static_cast<size_t>(r)] ? -1.0e9f : 0.f);
    std::vector<size_t> pick;
    top(run_scores, static_cast<size_t>(N), pick);
    // Finished: old N then the K new, the best N.
    const auto len = static_cast<float>(std::pow(static_cast<double>(t + 1), static_cast<double>(cfg.length_penalty)));
    const bool all_done = std::all_of(finished.begin(), finished.end(), [](const Finished& f) { return f.done; });
    std::vector<float> merged(static_cast<size_t>(N + K));
    for (int j = 0; j < N; ++j) merged[static_cast<size_t>(j)] = finished[static_cast<size_t>(j)].score;
    for (int r = 0; r < K; ++r) {
      float s = cand_sum[static_cast<size_t>(r)] / len;
      if (all_done && cfg.early_stopping == EarlyStopping::on) s += -1.0e9f;
      if (!unsatisfied) s += -1.0e9f;
      if (!(hits[static_cast<size_t>(r)] && r < N)) s += -1.0e9f;
      merged[static_cast<size_t>(N + r)] = s;
    }
    std::vector<size_t> keep;
    top(merged, static_cast<size_t>(N), keep);
    std::vector<Finished> next_finished;
    for (size_t j : keep) {
      if (j < static_cast<size_t>(N)) {
        next_finished.push_back(finished[j]);
      } else {
        const size_t r = j - static_cast<size_t>(N);
        next_finished.push_back({cand[r].seq, merged[j], hits[r] != 0 && r < static_cast<size_t>(N)});
      }
    }
    finished = std::move(next_finished);
    std::vector<Running> next_running;
    parents.clear();
    tokens.clear();
    for (size_t r : pick) {
      next_running.push_back({cand[r].seq, run_scores[r]});
      parents.push_back(t == 0 ? 0 : static_cast<int>(order[r] / V));  // step 0: the N beams are one
      tokens.push_back(cand[r].seq.back());
    }
    running = std::move(next_running);
    // Could a running beam still beat the worst finished one?
    const int best_len = cfg.early_stopping == EarlyStopping::never && cfg.length_penalty > 0 ? cfg.max_new_tokens : t + 1;
    const float best_possible =
        running[0].sum / static_cast<float>(std::pow(static_cast<double>(best_len), static_cast<double>(cfg.length_penalty)));
    float worst = finished[0].score;
    for (const auto& f : finished) worst = std::min(worst, f.score);
    bool any_better = false;
    for (const auto& f : finished) any_better |= best_possible > (f.done ? worst : -1.0e9f);
    unsatisfied = unsatisfied && any_better;
    const bool all_finished = std::all_of(finished.begin(), finished.end(), [](const Finished& f) { return f.done; });
    const bool all_hit = std::all_of(hits.begin(), hits.end(), [](char h) { return h != 0; });
    if (!unsatisfied || (all_finished && cfg.early_stopping == EarlyStopping::on) || all_hit) break;
    logits = next(parents, tokens);
  }
  std::vector<BeamHypothesis> out;
  for (int j = 0; j < cfg.num_return; ++j)
    out.push_back({finished[static_cast<size_t>(j)].seq, finished[static_cast<size_t>(j)].score});
  return out;
}

/// Beam search over a model: prompt appended to ctx (which is left as it
/// was), each beam a fork of its parent's context.  Give ctx a PagedKvCache on
/// a KvBlockPool with room for the beams (the prompt's blocks once, then about
/// 2N sequences' own blocks while a step's candidates exist):
///   auto pool = std::make_shared<kv::KvBlockPool>(layout, 16, blocks_per_seq * (2 * N + 1));
///   models::LlamaContext ctx(model, std::make_unique<kv::PagedKvCache>(pool, n_ctx));
/// Other caches work too but every fork copies them.  O(steps * N)
/// single-token forward passes (batching the N beams into one pass is the
/// batched multi-sequence forward's job).
inline std::vector<BeamHypothesis> beam_search(const models::LlamaContext& ctx, std::span<const int32_t> prompt,
                                               const BeamSearchConfig& cfg) {
  check(!prompt.empty(), "beam search: empty prompt");
  check(ctx.n_past() + static_cast<int64_t>(prompt.size()) + cfg.max_new_tokens <= ctx.n_ctx(),
        "beam search: ", ctx.n_past(), " cached + ", prompt.size(), " prompt + ", cfg.max_new_tokens,
        " new tokens exceed the context of ", ctx.n_ctx());
  std::vector<std::unique_ptr<models::LlamaContext>> beams;
  return beam_search(ctx.model().config().n_vocab, cfg, [&](std::span<const int> parents, std::span<const int32_t> tokens) {
    std::vector<std::span<const float>> rows;
    if (parents.empty()) {
      beams.clear();
      beams.push_back(std::make_unique<models::LlamaContext>(ctx.fork()));
      rows.push_back(beams[0]->eval(prompt));
      return rows;
    }
    // The first child of a parent takes its context; the others fork it (before it is written to).
    std::vector<std::unique_ptr<models::LlamaContext>> next(parents.size());
    std::vector<int> first_child(beams.size(), -1);
    for (size_t i = 0; i < parents.size(); ++i)
      if (first_child[static_cast<size_t>(parents[i])] < 0) first_child[static_cast<size_t>(parents[i])] = static_cast<int>(i);
    for (size_t i = 0; i < parents.size(); ++i)
      if (first_child[static_cast<size_t>(parents[i])] != static_cast<int>(i))
        next[i] = std::make_unique<models::LlamaContext>(beams[static_cast<size_t>(parents[i])]->fork());
    for (size_t i = 0; i < parents.size(); ++i)
      if (!next[i]) next[i] = std::move(beams[static_cast<size_t>(parents[i])]);
    beams = std::move(next);
    for (size_t i = 0; i < beams.size(); ++i) rows.push_back(beams[i]->eval(std::span<const int32_t>(&tokens[i], 1)));
    return rows;
  });
}

}  // namespace tessera::runtime
