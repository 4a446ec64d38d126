/// \file
/// The model of every supported family (llama, Gemma 3, Qwen2/3, Phi-3,
/// GPT-2, the MoE ones, and the BERT encoder; models::Family): weights bound
/// in place from a GGUF file.
///
///   x = embed(tokens)
///   for each layer:  x = x + Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x))
///                    x = x + Wdown · (silu(Wgate·norm(x)) * Wup·norm(x))
///   logits = Wout · norm(x)
///
/// with the family's variations (llama_config.hpp) applied by the one layer
/// loop in llama_forward.hpp.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "tessera/io/gguf_reader.hpp"
#include "tessera/models/llama_config.hpp"
#include "tessera/models/weights.hpp"
#include "tessera/nn/moe.hpp"
#include "tessera/nn/weight.hpp"

namespace tessera::models {

/// One decoder block's weights, views into the model's mapped file (blk.N.* tensors).
/// Tensors a family does not have are empty (a span of size 0, a Weight with n_out 0).
struct LlamaLayer {
  ///@{
  /// Norm scales before attention and before the feed-forward block, [n_embd] each; with
  /// LlamaConfig::norm_after (BERT), the norms after each block's residual add instead.
  std::span<const float> attn_norm, ffn_norm;
  ///@}
  ///@{
  /// Attention projections: wq [q_dim, n_embd], wk and wv [kv_dim, n_embd], wo [n_embd, q_dim]
  /// (a fused attn_qkv tensor is split into the three by rows, in place).
  nn::Weight wq, wk, wv, wo;
  ///@}
  ///@{
  /// Feed-forward: w_gate and w_up [n_ff, n_embd], w_down [n_embd, n_ff]; w_gate empty for
  /// an ungated MLP (GPT-2); a fused gate/up tensor (Phi-3) split by rows.
  nn::Weight w_gate, w_up, w_down;
  ///@}
  ///@{
  /// LayerNorm biases of attn_norm and ffn_norm [n_embd] (GPT-2, BERT).
  std::span<const float> attn_norm_b, ffn_norm_b;
  ///@}
  ///@{
  /// QK-norm scales [head_dim], shared by every head (Gemma 3, Qwen3).
  std::span<const float> q_norm, k_norm;
  ///@}
  ///@{
  /// Norms of the attention and feed-forward outputs before the residual adds [n_embd] (Gemma 3).
  std::span<const float> post_attn_norm, post_ffn_norm;
  ///@}
  ///@{
  /// Biases of the projections (Qwen2: bq, bk, bv; GPT-2: all), sized like their outputs.
  std::span<const float> bq, bk, bv, bo, b_up, b_down;
  ///@}
  nn::MoeWeights moe;  ///< routed (and shared) experts, in place of w_gate/w_up/w_down when n_expert > 0
};

/// A loaded model: the mapped file, its config and weight views into it. Immutable; share it between contexts.
class LlamaModel {
 public:
  /// Opens and validates path. Error names the file, an unsupported architecture, a missing tensor
  /// or one of the wrong shape or type.
  static std::shared_ptr<const LlamaModel> load(const std::string& path) {
    return std::shared_ptr<const LlamaModel>(new LlamaModel(io::GgufFile::open(path)));
  }
  /// Binds the weights of an opened file (load() does this behind a shared_ptr).
  /// Error names an unsupported config, a missing tensor or one of the wrong shape or type.
  explicit LlamaModel(io::GgufFile file) : file_(std::move(file)), config_(LlamaConfig::from_gguf(file_.meta())) {
    const LlamaConfig& c = config_;
    token_embd_ = weight("token_embd.weight", -1, c.n_embd);
    config_.n_vocab = static_cast<int>(token_embd_.n_out);
    if (c.family == Family::bert) {  // an encoder: its output is the hidden states, normed by the last layer
      token_types_ = file_.find_tensor("token_types.weight") ? weight("token_types.weight", -1, c.n_embd) : nn::Weight{};
      embd_norm_ = norm("token_embd_norm.weight");
      embd_norm_b_ = gguf_vector(file_, "token_embd_norm.bias", c.n_embd);
    } else {
      output_norm_ = norm("output_norm.weight");
      output_norm_b_ = optional_vector("output_norm.bias", c.n_embd);
      output_ = file_.find_tensor("output.weight") ? weight("output.weight", c.n_vocab, c.n_embd) : token_embd_;
    }
    if (c.learned_pos) {
      pos_embd_ = weight("position_embd.weight", -1, c.n_embd);
      check(pos_embd_.n_out >= 1, "position_embd.weight has no rows");
      config_.n_ctx_train = static_cast<int>(std::min<int64_t>(pos_embd_.n_out, c.n_ctx_train));
    }
    check(!file_.find_tensor("rope_factors_long.weight") && !file_.find_tensor("blk.0.rope_freqs.weight"),
          "per-frequency RoPE factors (LongRoPE / llama 3.1 scaling) are not supported");
    for (int l = 0; l < c.n_layers; ++l) layers_.push_back(load_layer("blk." + std::to_string(l) + "."));
  }

  /// Hyper-parameters, n_vocab taken from the embedding table.
  const LlamaConfig& config() const { return config_; }
  /// The mapped GGUF file every weight points into (metadata, tokenizer).
  const io::GgufFile& file() const { return file_; }
  /// Token embedding table [n_vocab, n_embd].
  const nn::Weight& token_embd() const { return token_embd_; }
  /// Output projection to logits [n_vocab, n_embd]; the embedding table when the file has no output.weight
  /// (tied); empty (n_out 0) for an encoder.
  const nn::Weight& output() const { return output_; }
  /// Final norm scale [n_embd], applied before the output projection.
  std::span<const float> output_norm() const { return output_norm_; }
  /// Final LayerNorm bias [n_embd] (GPT-2); empty otherwise.
  std::span<const float> output_norm_b() const { return output_norm_b_; }
  /// Learned position table [n_ctx_train, n_embd] (GPT-2, BERT); empty (n_out 0) otherwise.
  const nn::Weight& pos_embd() const { return pos_embd_; }
  /// Token-type (segment) table [n_types, n_embd] (BERT; row 0 is added to every token); empty otherwise.
  const nn::Weight& token_types() const { return token_types_; }
  ///@{
  /// LayerNorm of the embeddings, scale and bias [n_embd] (BERT); empty otherwise.
  std::span<const float> embd_norm() const { return embd_norm_; }
  std::span<const float> embd_norm_b() const { return embd_norm_b_; }
  ///@}
  /// The n_layers decoder blocks, in order.
  const std::vector<LlamaLayer>& layers() const { return layers_; }
  /// Bytes of weights one decode step reads (every matrix once, plus the norms; of a MoE layer, k experts).
  size_t weight_bytes_per_token() const {
    size_t n = output_.n_bytes() + token_embd_.row_bytes() + output_norm_.size_bytes();
    for (const auto& l : layers_)
      for (const nn::Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down, &l.moe.router,
                                  &l.moe.sh_gate, &l.moe.sh_up, &l.moe.sh_down})
        n += w->n_bytes();
    for (const auto& l : layers_)  // a token reads k of the E experts
      if (l.moe.n_expert > 0)
        n += (l.moe.gate.n_bytes() + l.moe.up.n_bytes() + l.moe.down.n_bytes()) / static_cast<size_t>(l.moe.n_expert) *
             static_cast<size_t>(l.moe.n_used);
    return n;
  }

 private:
  nn::Weight weight(const std::string& name, int64_t n_out, int64_t n_in) const {
    return gguf_weight(file_, name, n_out, n_in);
  }
  std::span<const float> norm(const std::string& name) const { return gguf_vector(file_, name, config_.n_embd); }
  std::span<const float> optional_vector(const std::string& name, int64_t n) const {
    return file_.find_tensor(name) ? gguf_vector(file_, name, n) : std::span<const float>{};
  }

  // What a family lacks stays empty; what its config needs is required.  Fused
  // tensors (attn_qkv; ffn_up holding gate then up) are split by rows in place,
  // so the layer loop sees one shape for every family.
  LlamaLayer load_layer(const std::string& b) const {
    const LlamaConfig& c = config_;
    LlamaLayer L;
    // BERT's norms follow the residual adds and are named for that.
    const std::string an = c.norm_after ? "attn_output_norm" : "attn_norm", fn = c.norm_after ? "layer_output_norm" : "ffn_norm";
    L.attn_norm = norm(b + an + ".weight");
    L.attn_norm_b = optional_vector(b + an + ".bias", c.n_embd);
    L.ffn_norm = norm(b + fn + ".weight");
    L.ffn_norm_b = optional_vector(b + fn + ".bias", c.n_embd);
    const int64_t Q = c.q_dim(), KV = c.kv_dim();
    if (file_.find_tensor(b + "attn_qkv.weight")) {
      const nn::Weight qkv = weight(b + "attn_qkv.weight", Q + 2 * KV, c.n_embd);
      L.wq = qkv.rows(0, Q), L.wk = qkv.rows(Q, KV), L.wv = qkv.rows(Q + KV, KV);
      const auto bias = optional_vector(b + "attn_qkv.bias", Q + 2 * KV);
      if (!bias.empty()) L.bq = bias.subspan(0, Q), L.bk = bias.subspan(Q, KV), L.bv = bias.subspan(Q + KV, KV);
    } else {
      L.wq = weight(b + "attn_q.weight", Q, c.n_embd);
      L.wk = weight(b + "attn_k.weight", KV, c.n_embd);
      L.wv = weight(b + "attn_v.weight", KV, c.n_embd);
      L.bq = optional_vector(b + "attn_q.bias", Q);
      L.bk = optional_vector(b + "attn_k.bias", KV);
      L.bv = optional_vector(b + "attn_v.bias", KV);
    }
    L.wo = weight(b + "attn_output.weight", c.n_embd, Q);
    L.bo = optional_vector(b + "attn_output.bias", c.n_embd);
    if (c.qk_norm) {
      L.q_norm = gguf_vector(file_, b + "attn_q_norm.weight", c.head_dim);
      L.k_norm = gguf_vector(file_, b + "attn_k_norm.weight", c.head_dim);
    }
    if (c.post_norms) {
      L.post_attn_norm = norm(b + "post_attention_norm.weight");
      L.post_ffn_norm = norm(b + "post_ffw_norm.weight");
    }
    if (c.n_expert > 0) {
      nn::MoeWeights& m = L.moe;
      const int64_t E = c.n_expert, F = c.n_ff_exp, D = c.n_embd;
      m.router = weight(b + "ffn_gate_inp.weight", E, D);
      m.gate = gguf_experts(file_, b + "ffn_gate_exps.weight", E, F, D);
      m.up = gguf_experts(file_, b + "ffn_up_exps.weight", E, F, D);
      m.down = gguf_experts(file_, b + "ffn_down_exps.weight", E, D, F);
      m.n_expert = c.n_expert, m.n_used = c.n_expert_used, m.norm_topk = c.moe_norm_topk;
      if (c.n_ff_shexp > 0) {
        m.sh_gate = weight(b + "ffn_gate_shexp.weight", c.n_ff_shexp, D);
        m.sh_up = weight(b + "ffn_up_shexp.weight", c.n_ff_shexp, D);
        m.sh_down = weight(b + "ffn_down_shexp.weight", D, c.n_ff_shexp);
        m.sh_router = gguf_vector(file_, b + "ffn_gate_inp_shexp.weight", D);
      }
      return L;
    }
    if (c.ffn == FfnKind::gelu) {
      L.w_up = weight(b + "ffn_up.weight", c.n_ff, c.n_embd);
    } else if (file_.find_tensor(b + "ffn_gate.weight")) {
      L.w_gate = weight(b + "ffn_gate.weight", c.n_ff, c.n_embd);
      L.w_up = weight(b + "ffn_up.weight", c.n_ff, c.n_embd);
    } else {
      const nn::Weight gate_up = weight(b + "ffn_up.weight", 2 * static_cast<int64_t>(c.n_ff), c.n_embd);
      L.w_gate = gate_up.rows(0, c.n_ff), L.w_up = gate_up.rows(c.n_ff, c.n_ff);
    }
    L.b_up = optional_vector(b + "ffn_up.bias", c.n_ff);
    L.w_down = weight(b + "ffn_down.weight", c.n_embd, c.n_ff);
    L.b_down = optional_vector(b + "ffn_down.bias", c.n_embd);
    return L;
  }

  io::GgufFile file_;
  LlamaConfig config_;
  nn::Weight token_embd_, output_, pos_embd_, token_types_;
  std::span<const float> output_norm_, output_norm_b_, embd_norm_, embd_norm_b_;
  std::vector<LlamaLayer> layers_;
};

}  // namespace tessera::models
