/// \file
/// The llama decoder's layer loop, written once: LlamaContext (one sequence,
/// one cache) and LlamaBatch (many sequences, one cache each) differ only in
/// where K/V go and which cache attention reads, which they pass in as `attend`.
///
///   x = embed(tokens)
///   for each layer:  x = x + Wo · attend(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x))
///                    x = x + Wdown · (silu(Wgate·norm(x)) * Wup·norm(x))
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

  LlamaActivations() = default;
  /// Allocates every buffer for up to rows tokens of a model with config c.
  LlamaActivations(const LlamaConfig& c, int64_t rows)
      : x({rows, c.n_embd}), xn({rows, c.n_embd}), tmp({rows, c.n_embd}), q({rows, c.q_dim()}),
        k({rows, c.kv_dim()}), v({rows, c.kv_dim()}), attn({rows, c.q_dim()}), gate({rows, c.n_ff}),
        up({rows, c.n_ff}), ws(rows, std::max({c.n_embd, c.q_dim(), c.n_ff})) {}
};

/// Runs layers [0, n_layers) over tokens at positions pos, leaving the final
/// hidden states in a.x rows [0, T).  attend(layer, q, k, v, out) gets the
/// rotated Q [T, q_dim], K and V [T, kv_dim] and writes attention's output
/// [T, q_dim]: it stores K/V wherever the caller keeps them.
template <class Attend>
void llama_layers(const LlamaModel& model, int n_layers, LlamaActivations& a, std::span<const int32_t> tokens,
                  std::span<const int32_t> pos, Attend&& attend) {
  const LlamaConfig& c = model.config();
  const auto T = static_cast<int64_t>(tokens.size());
  auto rows = [T](Tensor<float, 2>& t) { return t.narrow(0, 0, T); };
  auto x = rows(a.x), xn = rows(a.xn), tmp = rows(a.tmp), q = rows(a.q), k = rows(a.k), v = rows(a.v),
       attn = rows(a.attn), gate = rows(a.gate), up = rows(a.up);
  nn::embedding(model.token_embd(), tokens, x);
  for (int l = 0; l < n_layers; ++l) {
    const LlamaLayer& w = model.layers()[static_cast<size_t>(l)];
    nn::rms_norm(x, w.attn_norm, c.rms_eps, xn);
    nn::linear(w.wq, xn, q, a.ws);
    nn::linear(w.wk, xn, k, a.ws);
    nn::linear(w.wv, xn, v, a.ws);
    nn::rope(q.unflatten_last(c.n_heads), pos, c.rope);
    nn::rope(k.unflatten_last(c.n_kv_heads), pos, c.rope);
    attend(l, TensorView<const float, 2>(q), TensorView<const float, 2>(k), TensorView<const float, 2>(v), attn);
    nn::linear(w.wo, attn, tmp, a.ws);
    nn::add(x, tmp, x);
    nn::rms_norm(x, w.ffn_norm, c.rms_eps, xn);
    nn::linear(w.w_gate, xn, gate, a.ws);
    nn::linear(w.w_up, xn, up, a.ws);
    nn::swiglu(gate, up, gate);
    nn::linear(w.w_down, gate, tmp, a.ws);
    nn::add(x, tmp, x);
  }
}

/// Logits of hidden rows h [m, n_embd] into out [m, n_vocab]: the output norm
/// (into scratch [m, n_embd]) and head.  h may be rows of a.x.
inline void llama_logits(const LlamaModel& model, TensorView<const float, 2> h, TensorView<float, 2> scratch,
                         TensorView<float, 2> out, nn::LinearWorkspace& ws) {
  nn::rms_norm(h, model.output_norm(), model.config().rms_eps, scratch);
  nn::linear(model.output(), scratch, out, ws);
}

/// The attention parameters of the llama family: 1/sqrt(head_dim), causal
/// (positions and a sliding ring's window come from the cache).
inline AttentionParams llama_attention_params(const LlamaConfig& c) {
  AttentionParams ap;
  ap.scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
  ap.mask = AttentionMask::causal();
  return ap;
}

}  // namespace tessera::models
