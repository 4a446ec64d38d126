/// \file
/// One forward pass over the tokens of many sequences: the batched step of a
/// serving loop or of beam search. Every sequence brings its own KV cache
/// (its own, or PagedKvCaches on one shared KvBlockPool) and its tokens (a
/// prompt chunk or one decode token; mixed freely). The linear layers run once
/// over all rows, so the weights are read once per step for every sequence;
/// attention runs per sequence over its own cache.
///
///   rows      the sequences' tokens, concatenated in order: [T, n_embd]
///   per layer rms_norm, Q/K/V over all T rows, RoPE at each row's own position,
///             each sequence's K/V rows into its cache, attention per sequence,
///             Wo, residual, the feed-forward over all rows
///   logits    only for the sequences that ask (their last row)
///
/// A step of at most backend::exact_rows() rows (16 unless a
/// backend::ExactRowsScope lowers it) carries decode's exact bits: N sequences
/// decoding together give exactly the logits each would alone. The single
/// decode rows of all sequences share one batched attention call
/// (nn::attention_decode_batch), which keeps those bits.
#pragma once

#include <algorithm>
#include <memory>
#include <span>
#include <vector>

#include "tessera/kv/kv_cache.hpp"
#include "tessera/models/llama.hpp"
#include "tessera/models/llama_forward.hpp"
#include "tessera/nn/attention.hpp"

namespace tessera::models {

/// One sequence's part of a batched step: tokens appended to its cache at cache->size().
struct BatchSeq {
  kv::KvCache* cache = nullptr;  ///< the sequence's cache (not owned); at most one entry per cache in a step
  std::span<const int32_t> tokens;  ///< tokens to append (a prompt chunk or one decode token); not empty
  bool logits = true;  ///< the logits after its last token are wanted
};

/// Buffers for steps of up to max_tokens rows over one model, allocated once.
class LlamaBatch {
 public:
  /// Allocates activations and logits for steps of up to max_tokens rows; Error unless max_tokens > 0.
  LlamaBatch(std::shared_ptr<const LlamaModel> model, int max_tokens)
      : model_(std::move(model)), c_(model_->config()), max_tokens_(max_tokens) {
    require_decoder(*model_, "LlamaBatch");
    check(max_tokens > 0, "LlamaBatch: max_tokens ", max_tokens);
    act_ = LlamaActivations(c_, max_tokens);
    last_ = Tensor<float, 2>({max_tokens, c_.n_embd});
    logits_ = Tensor<float, 2>({max_tokens, c_.n_vocab});
    tokens_.reserve(static_cast<size_t>(max_tokens));
    pos_.reserve(static_cast<size_t>(max_tokens));
    jobs_.reserve(static_cast<size_t>(max_tokens));
  }

  /// The model every step runs.
  const LlamaModel& model() const { return *model_; }
  /// Most rows (tokens over all sequences) one eval() takes.
  int max_tokens() const { return max_tokens_; }

  /// One forward pass over every sequence's tokens.  Returns the logits
  /// [number of sequences with logits = true, n_vocab], in their order.  Error
  /// (and every cache keeps what it had) when the rows exceed max_tokens, a
  /// cache is missing, shared by two entries, of another layout, or full.
  /// O(T weights) for the linear layers, read once for all T rows.
  TensorView<const float, 2> eval(std::span<const BatchSeq> seqs) {
    int64_t T = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const BatchSeq& s = seqs[i];
      check(s.cache != nullptr && !s.tokens.empty(), "LlamaBatch: sequence ", i, " has no cache or no tokens");
      const kv::KvLayout& L = s.cache->layout();
      check(L.n_layers == c_.n_layers && L.n_kv_heads == c_.n_kv_heads && L.head_dim == c_.head_dim,
            "LlamaBatch: sequence ", i, "'s cache is ", L.n_layers, " x ", L.n_kv_heads, " x ", L.head_dim,
            ", the model needs ", c_.n_layers, " x ", c_.n_kv_heads, " x ", c_.head_dim);
      for (size_t j = 0; j < i; ++j)
        check(seqs[j].cache != s.cache, "LlamaBatch: sequences ", j, " and ", i, " share one cache");
      T += static_cast<int64_t>(s.tokens.size());
    }
    check(T > 0 && T <= max_tokens_, "LlamaBatch: ", T, " rows in one step, at most ", max_tokens_);
    // Open every sequence's append; if anything throws, cancel those opened: each cache keeps what it had.
    // (No per-step allocation: tokens_ and pos_ are reserved for max_tokens.)
    size_t opened = 0;
    try {
      tokens_.clear();
      pos_.clear();
      for (; opened < seqs.size(); ++opened) {
        const BatchSeq& s = seqs[opened];
        s.cache->begin_append(static_cast<int64_t>(s.tokens.size()));
        tokens_.insert(tokens_.end(), s.tokens.begin(), s.tokens.end());
        const auto p = s.cache->positions();
        pos_.insert(pos_.end(), p.begin(), p.end());
      }
      forward(seqs);
    } catch (...) {
      for (size_t i = 0; i < opened; ++i) seqs[i].cache->cancel_append();
      throw;
    }
    for (const BatchSeq& s : seqs) s.cache->end_append();
    int64_t m = 0;
    for (const BatchSeq& s : seqs) m += s.logits;
    return logits_.narrow(0, 0, m);
  }

 private:
  void forward(std::span<const BatchSeq> seqs) {
    const auto ap = [&](int l) { return llama_attention_params(c_, l); };
    llama_layers(*model_, c_.n_layers, act_, tokens_, pos_,
                 [&](int l, TensorView<const float, 2> q, TensorView<const float, 2> k, TensorView<const float, 2> v,
                     TensorView<float, 2> out) {
                   // Each sequence attends over its own cache: the single decode rows all
                   // together (two parallel regions for the lot), prompt chunks one by one.
                   jobs_.clear();
                   int64_t r0 = 0;
                   for (const BatchSeq& s : seqs) {
                     const int64_t r1 = r0 + static_cast<int64_t>(s.tokens.size());
                     s.cache->write(l, k.narrow(0, r0, r1), v.narrow(0, r0, r1));
                     const auto qs = q.narrow(0, r0, r1).unflatten_last(c_.n_heads);
                     const auto os = out.narrow(0, r0, r1).unflatten_last(c_.n_heads);
                     if (r1 - r0 == 1)
                       jobs_.push_back({qs, s.cache->source(l), nn::params_over_cache(*s.cache, ap(l)), os});
                     else
                       nn::attention(qs, *s.cache, l, ap(l), os, attn_ws_);
                     r0 = r1;
                   }
                   nn::attention_decode_batch(jobs_, attn_ws_);
                 });
    // The last row of each sequence that wants logits, gathered, then one output projection.
    int64_t m = 0, r = 0;
    for (const BatchSeq& s : seqs) {
      r += static_cast<int64_t>(s.tokens.size());
      if (s.logits) std::copy_n(&act_.x(r - 1, 0), c_.n_embd, &last_(m++, 0));
    }
    if (m > 0)
      llama_logits(*model_, last_.narrow(0, 0, m), act_.xn.narrow(0, 0, m), logits_.narrow(0, 0, m), act_.ws);
  }

  std::shared_ptr<const LlamaModel> model_;
  LlamaConfig c_;
  int max_tokens_;
  LlamaActivations act_;
  Tensor<float, 2> last_, logits_;
  std::vector<int32_t> tokens_, pos_;
  nn::AttentionWorkspace attn_ws_;
  std::vector<DecodeJob> jobs_;  // this layer's single-row attentions
};

}  // namespace tessera::models
