/// \file
/// One running sequence of a decoder model: its KV cache (any kv/ cache: static,
/// growing, sliding ring or paged; f32, f16 or q8_0; with local sliding-window
/// layers, a hybrid that keeps only their window) and every activation
/// buffer, all sized at construction so that eval() allocates nothing (a
/// growing cache reallocates when it doubles; a paged one takes pool blocks).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "tessera/kv/kv.hpp"
#include "tessera/models/llama.hpp"
#include "tessera/models/llama_forward.hpp"
#include "tessera/nn/attention.hpp"
#include "tessera/nn/blocks.hpp"
#include "tessera/nn/embedding.hpp"
#include "tessera/nn/linear.hpp"

namespace tessera::models {

/// One sequence running on a shared LlamaModel: its KV cache, activations and logits.
/// Movable, not copyable (fork() makes an independent copy); not thread-safe.
class LlamaContext {
 public:
  /// n_ctx: most positions (0: the training context, at most 4096); n_batch: tokens per forward pass;
  /// kv: which cache and storage type (default: static; type unset: f32).
  /// n_layers: run only the first n layers, then the output norm and head (0: all) — an early-exit
  /// draft of the same model for self-speculation; its KV cache holds those layers only.
  explicit LlamaContext(std::shared_ptr<const LlamaModel> model, int n_ctx = 0, int n_batch = 512,
                        const kv::KvSpec& kv = {}, int n_layers = 0)
      : model_(std::move(model)), c_(model_->config()) {
    require_decoder(*model_, "LlamaContext");
    n_ctx_ = n_ctx > 0 ? n_ctx : std::min(c_.n_ctx_train, 4096);
    check(!c_.learned_pos || n_ctx_ <= c_.n_ctx_train, "LlamaContext: a context of ", n_ctx_, " positions, but this ",
          c_.arch, " model has ", c_.n_ctx_train, " learned positions");
    n_batch_ = std::max(1, std::min(n_batch, n_ctx_));
    check(n_layers >= 0 && n_layers <= c_.n_layers, "LlamaContext: ", n_layers, " layers of a model with ",
          c_.n_layers);
    n_layers_ = n_layers > 0 ? n_layers : c_.n_layers;
    init(make_cache(kv, kv_layout(c_, kv.type.value_or(KvType::f32), n_layers_)));
  }

  /// A context over a cache you built: a PagedKvCache on a pool shared by many sequences (beams,
  /// serving), or any kv/ cache.  The cache's layout must be the model's (its layer count may be
  /// lower: an early-exit draft); n_ctx is the cache's max_positions().
  LlamaContext(std::shared_ptr<const LlamaModel> model, std::unique_ptr<kv::KvCache> cache, int n_batch = 512)
      : model_(std::move(model)), c_(model_->config()) {
    require_decoder(*model_, "LlamaContext");
    check(cache != nullptr, "LlamaContext: no KV cache");
    const kv::KvLayout& L = cache->layout();
    check(L.n_kv_heads == c_.n_kv_heads && L.head_dim == c_.head_dim && L.n_layers >= 1 && L.n_layers <= c_.n_layers,
          "LlamaContext: a KV cache of ", L.n_layers, " layers x ", L.n_kv_heads, " heads x ", L.head_dim,
          " dims for a model of ", c_.n_layers, " x ", c_.n_kv_heads, " x ", c_.head_dim);
    check(cache->size() == 0, "LlamaContext: the KV cache must start empty");
    n_ctx_ = static_cast<int>(std::min<int64_t>(cache->max_positions(), 1 << 30));
    n_batch_ = std::max(1, std::min(n_batch, n_ctx_));
    n_layers_ = L.n_layers;
    init(std::move(cache));
  }

  /// An independent context continuing from the same cache contents (paged: shared blocks, copy on write).
  LlamaContext fork() const { return LlamaContext(*this, kv_->fork()); }

  /// The model this context runs.
  const LlamaModel& model() const { return *model_; }
  /// Most positions the context holds; eval() past it is an Error.
  int n_ctx() const { return n_ctx_; }
  /// Tokens per forward pass: longer inputs run as several passes.
  int n_batch() const { return n_batch_; }
  /// Layers each forward pass runs (all, unless an early-exit draft).
  int n_layers() const { return n_layers_; }
  /// Tokens already in the cache; the next token goes at this position.
  int n_past() const { return static_cast<int>(kv_->size()); }
  /// Forgets everything after position n (n <= n_past): rollback for speculation or a new turn.
  void truncate(int n) { kv_->truncate(n); }
  /// Forgets every token (truncate(0)); buffers stay allocated.
  void reset() { truncate(0); }
  /// The KV cache, read-only (its size, memory, layout).
  const kv::KvCache& kv_cache() const { return *kv_; }
  /// KV cache bytes reserved (see kv::KvCache::memory for used bytes).
  size_t kv_bytes() const { return kv_->memory().reserved; }

  /// Appends tokens at positions n_past.. and returns the logits after the last one [n_vocab].
  /// Error when the cache cannot hold them.  Prefill runs as batches of n_batch (matrix-matrix).
  std::span<const float> eval(std::span<const int32_t> tokens) {
    check_fits(tokens);
    for (size_t i = 0; i < tokens.size(); i += static_cast<size_t>(n_batch_))
      forward(tokens.subspan(i, std::min(tokens.size() - i, static_cast<size_t>(n_batch_))), {});
    return logits_.span();
  }

  /// Appends tokens like eval() and returns the logits at every one of them,
  /// [n_tokens, n_vocab]: row i scores the token that follows tokens[i] (scoring
  /// a text, verifying a draft).  Opt-in: its buffer is allocated on first use
  /// and grows to the longest call, so eval() stays as it was.  The output
  /// projection runs over all rows: O(n_tokens n_vocab n_embd) more than eval().
  /// The view is valid until the next eval or eval_all.
  TensorView<const float, 2> eval_all(std::span<const int32_t> tokens) {
    check_fits(tokens);
    const auto n = static_cast<int64_t>(tokens.size());
    if (all_logits_.dim(0) < n) all_logits_ = Tensor<float, 2>({n, c_.n_vocab});
    for (size_t i = 0; i < tokens.size(); i += static_cast<size_t>(n_batch_)) {
      const size_t m = std::min(tokens.size() - i, static_cast<size_t>(n_batch_));
      forward(tokens.subspan(i, m), all_logits_.narrow(0, static_cast<int64_t>(i), static_cast<int64_t>(i + m)));
    }
    const auto rows = all_logits_.narrow(0, 0, n);
    std::copy_n(&rows(n - 1, 0), c_.n_vocab, logits_.data());  // eval()'s logits stay the last row's
    return rows;
  }

 private:
  LlamaContext(const LlamaContext& o, std::unique_ptr<kv::KvCache> kv)
      : model_(o.model_), c_(o.c_), n_ctx_(o.n_ctx_), n_batch_(o.n_batch_), n_layers_(o.n_layers_) {
    init(std::move(kv));
  }
  void init(std::unique_ptr<kv::KvCache> kv) {
    act_ = LlamaActivations(c_, n_batch_);
    logits_ = Tensor<float, 2>({1, c_.n_vocab});
    kv_ = std::move(kv);
    const int64_t max_keys = kv_->window() ? kv_->window() + n_batch_ : n_ctx_;
    attn_ws_.reserve_bound(n_batch_, c_.n_heads, c_.n_kv_heads, c_.head_dim, max_keys);
  }

  // The spec's cache; for a model with local (sliding-window) and global layers
  // a HybridKvCache, whose local layers keep only their window, unless the
  // spec is itself a ring or the window is no shorter than the context.
  std::unique_ptr<kv::KvCache> make_cache(const kv::KvSpec& spec, const kv::KvLayout& layout) const {
    std::vector<bool> local(static_cast<size_t>(n_layers_));
    for (int l = 0; l < n_layers_; ++l) local[static_cast<size_t>(l)] = c_.is_swa(l);
    const auto n_local = static_cast<int>(std::count(local.begin(), local.end(), true));
    if (spec.kind == kv::KvSpec::Kind::sliding || n_local == 0 || n_local == n_layers_ ||
        c_.n_swa + n_batch_ >= n_ctx_)
      return kv::make_kv_cache(spec, layout, n_ctx_, n_batch_);
    kv::KvLayout global = layout;
    global.n_layers = n_layers_ - n_local;
    return std::make_unique<kv::HybridKvCache>(layout, std::move(local), c_.n_swa, n_batch_,
                                               kv::make_kv_cache(spec, global, n_ctx_, n_batch_));
  }

  void check_fits(std::span<const int32_t> tokens) const {
    check(!tokens.empty(), "eval: no tokens");
    check(n_past() + static_cast<int64_t>(tokens.size()) <= n_ctx_, "context full: ", n_past(), " + ",
          tokens.size(), " tokens exceed the context of ", n_ctx_);
  }

  // all: logits of every row (eval_all), else only the last row's into logits_.
  void forward(std::span<const int32_t> tokens, TensorView<float, 2> all) {
    const auto T = static_cast<int64_t>(tokens.size());
    kv::Append append(*kv_, T);  // on an exception the cache keeps exactly the positions it had
    forward_layers(tokens, append.positions(), all);
    append.commit();
  }

  void forward_layers(std::span<const int32_t> tokens, std::span<const int32_t> pos, TensorView<float, 2> all) {
    const auto T = static_cast<int64_t>(tokens.size());
    const auto ap = [&](int l) { return llama_attention_params(c_, l); };
    // K/V rows into the cache, then attention reads the cache (positions from its open append).
    llama_layers(*model_, n_layers_, act_, tokens, pos,
                 [&](int l, TensorView<const float, 2> q, TensorView<const float, 2> k, TensorView<const float, 2> v,
                     TensorView<float, 2> out) {
                   kv_->write(l, k, v);
                   nn::attention(q.unflatten_last(c_.n_heads), *kv_, l, ap(l), out.unflatten_last(c_.n_heads), attn_ws_);
                 });
    const auto x = act_.x.narrow(0, 0, T), xn = act_.xn.narrow(0, 0, T);
    if (!all.empty()) return llama_logits(*model_, x, xn, all, act_.ws);
    llama_logits(*model_, x.narrow(0, T - 1, T), xn.narrow(0, 0, 1), logits_.view(), act_.ws);  // generation needs no more
  }

  std::shared_ptr<const LlamaModel> model_;
  LlamaConfig c_;  // a copy: keeps the context movable
  int n_ctx_ = 0, n_batch_ = 0, n_layers_ = 0;
  LlamaActivations act_;
  Tensor<float, 2> logits_;
  Tensor<float, 2> all_logits_;  // eval_all only, grown on use
  std::unique_ptr<kv::KvCache> kv_;
  nn::AttentionWorkspace attn_ws_;
};

}  // namespace tessera::models
