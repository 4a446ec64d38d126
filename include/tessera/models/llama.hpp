/// \file
/// The llama-family decoder: weights bound in place from a GGUF file, and a
/// context (KV cache + activations) that runs the forward pass.
///
///   x = embed(tokens)
///   for each layer:  x = x + Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x))
///                    x = x + Wdown · (silu(Wgate·norm(x)) * Wup·norm(x))
///   logits = Wout · norm(x)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tessera/io/gguf_reader.hpp"
#include "tessera/models/llama_config.hpp"
#include "tessera/models/weights.hpp"
#include "tessera/nn/weight.hpp"

namespace tessera::models {

/// One decoder block's weights, views into the model's mapped file (blk.N.* tensors).
struct LlamaLayer {
  ///@{
  /// RMSNorm scales before attention and before the feed-forward block, [n_embd] each.
  std::span<const float> attn_norm, ffn_norm;
  ///@}
  ///@{
  /// Attention projections: wq [q_dim, n_embd], wk and wv [kv_dim, n_embd], wo [n_embd, q_dim].
  nn::Weight wq, wk, wv, wo;
  ///@}
  ///@{
  /// SwiGLU feed-forward: w_gate and w_up [n_ff, n_embd], w_down [n_embd, n_ff].
  nn::Weight w_gate, w_up, w_down;
  ///@}
};

/// A loaded model: the mapped file, its config and weight views into it. Immutable; share it between contexts.
class LlamaModel {
 public:
  /// Opens and validates path. Error names the file, a missing tensor or one of the wrong shape or type.
  static std::shared_ptr<const LlamaModel> load(const std::string& path) {
    return std::shared_ptr<const LlamaModel>(new LlamaModel(io::GgufFile::open(path)));
  }
  /// Binds the weights of an opened file (load() does this behind a shared_ptr).
  /// Error names an unsupported config, a missing tensor or one of the wrong shape or type.
  explicit LlamaModel(io::GgufFile file) : file_(std::move(file)), config_(LlamaConfig::from_gguf(file_.meta())) {
    const LlamaConfig& c = config_;
    token_embd_ = weight("token_embd.weight", -1, c.n_embd);
    config_.n_vocab = static_cast<int>(token_embd_.n_out);
    output_norm_ = norm("output_norm.weight");
    output_ = file_.find_tensor("output.weight") ? weight("output.weight", c.n_vocab, c.n_embd) : token_embd_;
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      layers_.push_back({norm(b + "attn_norm.weight"), norm(b + "ffn_norm.weight"),
                         weight(b + "attn_q.weight", c.q_dim(), c.n_embd), weight(b + "attn_k.weight", c.kv_dim(), c.n_embd),
                         weight(b + "attn_v.weight", c.kv_dim(), c.n_embd), weight(b + "attn_output.weight", c.n_embd, c.q_dim()),
                         weight(b + "ffn_gate.weight", c.n_ff, c.n_embd), weight(b + "ffn_up.weight", c.n_ff, c.n_embd),
                         weight(b + "ffn_down.weight", c.n_embd, c.n_ff)});
    }
  }

  /// Hyper-parameters, n_vocab taken from the embedding table.
  const LlamaConfig& config() const { return config_; }
  /// The mapped GGUF file every weight points into (metadata, tokenizer).
  const io::GgufFile& file() const { return file_; }
  /// Token embedding table [n_vocab, n_embd].
  const nn::Weight& token_embd() const { return token_embd_; }
  /// Output projection to logits [n_vocab, n_embd]; the embedding table when the file has no output.weight (tied).
  const nn::Weight& output() const { return output_; }
  /// Final RMSNorm scale [n_embd], applied before the output projection.
  std::span<const float> output_norm() const { return output_norm_; }
  /// The n_layers decoder blocks, in order.
  const std::vector<LlamaLayer>& layers() const { return layers_; }
  /// Bytes of weights one decode step reads (every matrix once, plus the norms).
  size_t weight_bytes_per_token() const {
    size_t n = output_.n_bytes() + token_embd_.row_bytes() + output_norm_.size_bytes();
    for (const auto& l : layers_)
      for (const nn::Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) n += w->n_bytes();
    return n;
  }

 private:
  nn::Weight weight(const std::string& name, int64_t n_out, int64_t n_in) const {
    return gguf_weight(file_, name, n_out, n_in);
  }
  std::span<const float> norm(const std::string& name) const { return gguf_vector(file_, name, config_.n_embd); }

  io::GgufFile file_;
  LlamaConfig config_;
  nn::Weight token_embd_, output_;
  std::span<const float> output_norm_;
  std::vector<LlamaLayer> layers_;
};

}  // namespace tessera::models
