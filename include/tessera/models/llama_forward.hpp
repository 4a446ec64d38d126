/// \file
/// The decoder's layer loop, written once for every family: LlamaContext (one
/// sequence, one cache) and LlamaBatch (many sequences, one cache each) differ
/// only in where K/V go and which cache attention reads, which they pass in as
/// `attend`.
///
///   x = embed(tokens) * embd_scale (+ pos_embd(pos) + type_embd[0], then embd_norm)
///   for each layer:  x = x + post_norm(Wo · attend(rope(qk_norm(Wq·norm(x) + bq)), rope(qk_norm(Wk·norm(x) + bk)), Wv·norm(x) + bv))
///                    x = x + post_norm(Wdown · act(Wgate·norm(x), Wup·norm(x)))
///
/// or, post-LN (BERT), each block reads x itself and x = norm(x + block(x)).
#pragma once

#include <algorithm>
#include <cmath>
#include <span>

#include "tessera/backend/attention_params.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kv/kv_cache.hpp"
#include "tessera/models/llama.hpp"
#include "tessera/nn/blocks.hpp"
#include "tessera/nn/embedding.hpp"
#include "tessera/nn/linear.hpp"

namespace tessera::models {

/// The KV layout a cache for this model needs: every layer (or the first
/// n_layers of an early-exit draft), its KV heads and head size, stored as type.
inline kv::KvLayout kv_layout(const LlamaConfig& c, KvType type = KvType::f32, int n_layers = 0) {
  return {n_layers > 0 ? n_layers : c.n_layers, c.n_kv_heads, c.head_dim, type};
}

/// The activations of a forward pass over up to `rows` tokens, allocated once.
struct LlamaActivations {
  ///@{
  /// Row buffers [rows, width]: x the residual stream, xn its normed copy and tmp a block's
  /// output (n_embd); q and attn (q_dim); k and v (kv_dim); gate and up, SwiGLU's halves (n_ff).
  Tensor<float, 2> x, xn, tmp, q, k, v, attn, gate, up;
  ///@}
  nn::LinearWorkspace ws;  ///< scratch of every nn::linear call, sized for rows x max(n_embd, q_dim, n_ff) inputs
  nn::MoeWorkspace moe;  ///< scratch of the experts (MoE models only)

  LlamaActivations() = default;
  /// Allocates every buffer for up to rows tokens of a model with config c.
  LlamaActivations(const LlamaConfig& c, int64_t rows)
      : x({rows, c.n_embd}), xn({rows, c.n_embd}), tmp({rows, c.n_embd}), q({rows, c.q_dim()}),
        k({rows, c.kv_dim()}), v({rows, c.kv_dim()}), attn({rows, c.q_dim()}), gate({rows, c.n_ff}),
        up({rows, c.n_ff}), ws(rows, std::max({c.n_embd, c.q_dim(), c.n_ff})) {
    if (c.n_expert > 0) moe = nn::MoeWorkspace(rows, c.n_embd, c.n_expert, c.n_expert_used, c.n_ff_exp, c.n_ff_shexp);
  }
};

/// Error unless model generates text (has an output head): an encoder (BERT) runs in models::Encoder.
inline void require_decoder(const LlamaModel& model, const char* who) {
  check(model.output().n_out > 0, who, ": ", model.config().arch,
        " is an encoder with no output head; embed with models::Encoder (tessera-llama --embedding)");
}

namespace detail {
// The model's norm (RMSNorm, or LayerNorm with its bias) of x into out.
inline void model_norm(const LlamaConfig& c, TensorView<const float, 2> x, std::span<const float> w,
                       std::span<const float> b, TensorView<float, 2> out) {
  if (c.norm == NormKind::layer) nn::layer_norm(x, w, b, c.rms_eps, out);
  else nn::rms_norm(x, w, c.rms_eps, out);
}
// y = W x (+ b): a projection and its bias, when the family has one.
inline void project(const nn::Weight& w, std::span<const float> b, TensorView<const float, 2> x, TensorView<float, 2> y,
                    nn::LinearWorkspace& ws) {
  nn::linear(w, x, y, ws);
  if (!b.empty()) nn::add_bias(y, b);
}
// RMSNorm of every head of x [T, heads * head_dim] in place, one weight [head_dim] for all heads.
inline void head_norm(const LlamaConfig& c, TensorView<float, 2> x, std::span<const float> w) {
  const auto h = x.reshape<2>({x.dim(0) * x.dim(1) / c.head_dim, c.head_dim});
  nn::rms_norm(h, w, c.rms_eps, h);
}
}  // namespace detail

/// Runs layers [0, n_layers) over tokens at positions pos, leaving the final
/// hidden states in a.x rows [0, T).  attend(layer, q, k, v, out) gets the
/// rotated Q [T, q_dim], K and V [T, kv_dim] and writes attention's output
/// [T, q_dim]: it stores K/V wherever the caller keeps them.  One loop for
/// every Family; what differs is the config's data (norm kind, biases, QK-norm,
/// post-norms, positions, per-layer RoPE, the feed-forward kind).
template <class Attend>
void llama_layers(const LlamaModel& model, int n_layers, LlamaActivations& a, std::span<const int32_t> tokens,
                  std::span<const int32_t> pos, Attend&& attend) {
  const LlamaConfig& c = model.config();
  const auto T = static_cast<int64_t>(tokens.size());
  auto rows = [T](Tensor<float, 2>& t) { return t.narrow(0, 0, T); };
  auto x = rows(a.x), xn = rows(a.xn), tmp = rows(a.tmp), q = rows(a.q), k = rows(a.k), v = rows(a.v),
       attn = rows(a.attn), gate = rows(a.gate), up = rows(a.up);
  nn::embedding(model.token_embd(), tokens, x);
  if (c.embd_scale != 1.f)
    for (int64_t t = 0; t < T; ++t)
      for (float& e : x.row(t)) e *= c.embd_scale;
  if (c.learned_pos) {
    for (int32_t p : pos)
      check(p >= 0 && p < model.pos_embd().n_out, "position ", p, " is past the model's ", model.pos_embd().n_out,
            " learned positions");
    nn::embedding(model.pos_embd(), pos, tmp);
    nn::add(x, tmp, x);
  }
  if (model.token_types().n_out > 0) {  // every token is of type 0 (one segment)
    static constexpr int32_t kType0[] = {0};
    nn::embedding(model.token_types(), kType0, tmp.narrow(0, 0, 1));
    nn::add_bias(x, tmp.row(0));
  }
  if (!model.embd_norm().empty()) nn::layer_norm(x, model.embd_norm(), model.embd_norm_b(), c.rms_eps, x);
  // Pre-norm blocks read norm(x) (in xn); post-norm ones read x and norm it after the add.
  const auto block_input = [&](std::span<const float> w, std::span<const float> b) -> TensorView<float, 2> {
    if (c.norm_after) return x;
    detail::model_norm(c, x, w, b, xn);
    return xn;
  };
  const auto residual = [&](std::span<const float> w, std::span<const float> b) {
    nn::add(x, tmp, x);
    if (c.norm_after) detail::model_norm(c, x, w, b, x);
  };
  for (int l = 0; l < n_layers; ++l) {
    const LlamaLayer& w = model.layers()[static_cast<size_t>(l)];
    const auto in = block_input(w.attn_norm, w.attn_norm_b);
    detail::project(w.wq, w.bq, in, q, a.ws);
    detail::project(w.wk, w.bk, in, k, a.ws);
    detail::project(w.wv, w.bv, in, v, a.ws);
    if (c.qk_norm) {
      detail::head_norm(c, q, w.q_norm);
      detail::head_norm(c, k, w.k_norm);
    }
    if (!c.learned_pos) {
      nn::rope(q.unflatten_last(c.n_heads), pos, c.rope_for(l));
      nn::rope(k.unflatten_last(c.n_kv_heads), pos, c.rope_for(l));
    }
    attend(l, TensorView<const float, 2>(q), TensorView<const float, 2>(k), TensorView<const float, 2>(v), attn);
    detail::project(w.wo, w.bo, attn, tmp, a.ws);
    if (c.post_norms) detail::model_norm(c, tmp, w.post_attn_norm, {}, tmp);
    residual(w.attn_norm, w.attn_norm_b);
    const auto ffn_in = block_input(w.ffn_norm, w.ffn_norm_b);
    if (c.n_expert > 0) {
      nn::moe(w.moe, ffn_in, tmp, a.moe);
    } else {
      detail::project(w.w_up, w.b_up, ffn_in, up, a.ws);
      if (c.ffn == FfnKind::gelu) {
        nn::gelu(up);
        detail::project(w.w_down, w.b_down, up, tmp, a.ws);
      } else {
        nn::linear(w.w_gate, ffn_in, gate, a.ws);
        if (c.ffn == FfnKind::geglu) nn::geglu(gate, up, gate);
        else nn::swiglu(gate, up, gate);
        detail::project(w.w_down, w.b_down, gate, tmp, a.ws);
      }
    }
    if (c.post_norms) detail::model_norm(c, tmp, w.post_ffn_norm, {}, tmp);
    residual(w.ffn_norm, w.ffn_norm_b);
  }
}

/// Logits of hidden rows h [m, n_embd] into out [m, n_vocab]: the output norm
/// (into scratch [m, n_embd]), head and the family's soft-capping.  h may be rows of a.x.
inline void llama_logits(const LlamaModel& model, TensorView<const float, 2> h, TensorView<float, 2> scratch,
                         TensorView<float, 2> out, nn::LinearWorkspace& ws) {
  const LlamaConfig& c = model.config();
  detail::model_norm(c, h, model.output_norm(), model.output_norm_b(), scratch);
  nn::linear(model.output(), scratch, out, ws);
  if (c.logit_softcap > 0.f)
    for (int64_t t = 0; t < out.dim(0); ++t)
      for (float& z : out.row(t)) z = c.logit_softcap * std::tanh(z / c.logit_softcap);
}

/// The attention parameters of layer l: the family's q.k scale (0: 1/sqrt(head_dim)),
/// causal, or sliding over the last n_swa positions in a local layer (positions,
/// and a sliding ring's window, come from the cache).
inline AttentionParams llama_attention_params(const LlamaConfig& c, int l = 0) {
  AttentionParams ap;
  ap.scale = c.attn_scale != 0.f ? c.attn_scale : 1.f / std::sqrt(static_cast<float>(c.head_dim));
  ap.mask = c.is_swa(l) ? AttentionMask::sliding(c.n_swa) : c.causal ? AttentionMask::causal() : AttentionMask::none();
  return ap;
}

}  // namespace tessera::models
