// One running sequence of a llama model: its KV cache (contiguous, f32, per
// layer [n_ctx, n_kv_heads, head_dim]) and every activation buffer, all sized
// at construction so that eval() allocates nothing.
#pragma once

#include <omp.h>

#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include "tessera/models/llama.hpp"
#include "tessera/nn/blocks.hpp"
#include "tessera/nn/embedding.hpp"
#include "tessera/nn/linear.hpp"

namespace tessera::models {

class LlamaContext {
 public:
  /// n_ctx: positions the cache holds (0: the training context, at most 4096); n_batch: tokens per forward pass.
  explicit LlamaContext(std::shared_ptr<const LlamaModel> model, int n_ctx = 0, int n_batch = 512)
      : model_(std::move(model)), c_(model_->config()) {
    n_ctx_ = n_ctx > 0 ? n_ctx : std::min(c_.n_ctx_train, 4096);
    n_batch_ = std::max(1, std::min(n_batch, n_ctx_));
    const int64_t B = n_batch_, widest = std::max({c_.n_embd, c_.q_dim(), c_.n_ff});
    x_ = Tensor<float, 2>({B, c_.n_embd});
    xn_ = Tensor<float, 2>({B, c_.n_embd});
    tmp_ = Tensor<float, 2>({B, c_.n_embd});
    q_ = Tensor<float, 2>({B, c_.q_dim()});
    attn_ = Tensor<float, 2>({B, c_.q_dim()});
    gate_ = Tensor<float, 2>({B, c_.n_ff});
    up_ = Tensor<float, 2>({B, c_.n_ff});
    logits_ = Tensor<float, 2>({1, c_.n_vocab});
    pos_.resize(static_cast<size_t>(B));
    for (int l = 0; l < c_.n_layers; ++l) {
      k_cache_.emplace_back(Shape<2>{n_ctx_, c_.kv_dim()});
      v_cache_.emplace_back(Shape<2>{n_ctx_, c_.kv_dim()});
    }
    ws_ = nn::LinearWorkspace(B, widest);
    scratch_.resize(backend::scalar::attention_scratch_size(n_ctx_, omp_get_max_threads()));
  }

  const LlamaModel& model() const { return *model_; }
  int n_ctx() const { return n_ctx_; }
  int n_batch() const { return n_batch_; }
  /// Tokens already in the cache; the next token goes at this position.
  int n_past() const { return n_past_; }
  /// Forgets everything after position n (n <= n_past): rollback for speculation or a new turn.
  void truncate(int n) {
    check(n >= 0 && n <= n_past_, "truncate(", n, ") with ", n_past_, " tokens in the cache");
    n_past_ = n;
  }
  void reset() { truncate(0); }
  /// KV cache bytes reserved: 2 * layers * n_ctx * kv_dim * 4.
  size_t kv_bytes() const { return 2 * k_cache_.size() * k_cache_[0].size_bytes(); }

  /// Appends tokens at positions n_past.. and returns the logits after the last one [n_vocab].
  /// Error when the cache cannot hold them.  Prefill runs as batches of n_batch (matrix-matrix).
  std::span<const float> eval(std::span<const int32_t> tokens) {
    check(!tokens.empty(), "eval: no tokens");
    check(n_past_ + static_cast<int64_t>(tokens.size()) <= n_ctx_, "context full: ", n_past_, " + ", tokens.size(),
          " tokens exceed the context of ", n_ctx_);
    for (size_t i = 0; i < tokens.size(); i += static_cast<size_t>(n_batch_))
      forward(tokens.subspan(i, std::min(tokens.size() - i, static_cast<size_t>(n_batch_))));
    return logits_.span();
  }

 private:
  static TensorView<float, 2> rows(Tensor<float, 2>& t, int64_t n) { return t.view().narrow(0, 0, n); }
  static TensorView<float, 3> heads(TensorView<float, 2> m, int64_t n_heads) {
    return m.reshape<3>({m.dim(0), n_heads, m.dim(1) / n_heads});
  }

  void forward(std::span<const int32_t> tokens) {
    const auto T = static_cast<int64_t>(tokens.size());
    const int64_t p0 = n_past_;
    std::iota(pos_.begin(), pos_.begin() + T, static_cast<int32_t>(p0));
    const std::span<const int32_t> pos(pos_.data(), static_cast<size_t>(T));
    auto x = rows(x_, T), xn = rows(xn_, T), tmp = rows(tmp_, T), q = rows(q_, T), attn = rows(attn_, T),
         gate = rows(gate_, T), up = rows(up_, T);
    nn::embedding(model_->token_embd(), tokens, x);
    const float scale = 1.f / std::sqrt(static_cast<float>(c_.head_dim));
    for (size_t l = 0; l < model_->layers().size(); ++l) {
      const LlamaLayer& w = model_->layers()[l];
      auto k_new = k_cache_[l].view().narrow(0, p0, p0 + T), v_new = v_cache_[l].view().narrow(0, p0, p0 + T);
      // attention: K and V are written straight into the cache
      nn::rms_norm(x, w.attn_norm, c_.rms_eps, xn);
      nn::linear(w.wq, xn, q, ws_);
      nn::linear(w.wk, xn, k_new, ws_);
      nn::linear(w.wv, xn, v_new, ws_);
      nn::rope(heads(q, c_.n_heads), pos, c_.rope);
      nn::rope(heads(k_new, c_.n_kv_heads), pos, c_.rope);
      const auto k_all = heads(k_cache_[l].view().narrow(0, 0, p0 + T), c_.n_kv_heads);
      const auto v_all = heads(v_cache_[l].view().narrow(0, 0, p0 + T), c_.n_kv_heads);
      nn::attention_causal(heads(q, c_.n_heads), k_all, v_all, p0, scale, heads(attn, c_.n_heads), scratch_);
      nn::linear(w.wo, attn, tmp, ws_);
      nn::add(x.span(), tmp.span(), x.span());
      // feed-forward
      nn::rms_norm(x, w.ffn_norm, c_.rms_eps, xn);
      nn::linear(w.w_gate, xn, gate, ws_);
      nn::linear(w.w_up, xn, up, ws_);
      nn::swiglu(gate.span(), up.span(), gate.span());
      nn::linear(w.w_down, gate, tmp, ws_);
      nn::add(x.span(), tmp.span(), x.span());
    }
    // logits of the last token only: that is all generation needs
    auto last = x.narrow(0, T - 1, T), last_n = xn.narrow(0, 0, 1);
    nn::rms_norm(last, model_->output_norm(), c_.rms_eps, last_n);
    nn::linear(model_->output(), last_n, logits_.view(), ws_);
    n_past_ += static_cast<int>(T);
  }

  std::shared_ptr<const LlamaModel> model_;
  LlamaConfig c_;  // a copy: keeps the context movable
  int n_ctx_ = 0, n_batch_ = 0, n_past_ = 0;
  Tensor<float, 2> x_, xn_, tmp_, q_, attn_, gate_, up_, logits_;
  std::vector<Tensor<float, 2>> k_cache_, v_cache_;  // per layer [n_ctx, kv_dim]
  std::vector<int32_t> pos_;
  nn::LinearWorkspace ws_;
  std::vector<float> scratch_;
};

}  // namespace tessera::models
