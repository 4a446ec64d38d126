/// \file
/// The llama-family decoder's hyper-parameters, read from GGUF metadata
/// (`<arch>.block_count`, `<arch>.attention.head_count`, ...).
#pragma once

#include <string>

#include "tessera/backend/rope_params.hpp"
#include "tessera/core/error.hpp"
#include "tessera/io/gguf.hpp"

namespace tessera::models {

/// Hyper-parameters of a llama-family decoder (llama, mistral); see from_gguf().
struct LlamaConfig {
  std::string arch;  ///< general.architecture
  int n_layers = 0;  ///< decoder blocks
  int n_embd = 0;  ///< residual stream width
  int n_heads = 0;  ///< query heads
  int n_kv_heads = 0;  ///< < n_heads: grouped-query attention
  int head_dim = 0;  ///< values per head (attention.key_length, else n_embd / n_heads)
  int n_ff = 0;  ///< SwiGLU hidden width
  int n_vocab = 0;  ///< vocabulary size; from_gguf() leaves 0, LlamaModel sets it from the embedding table
  int n_ctx_train = 0;  ///< context length the model was trained for
  float rms_eps = 1e-5f;  ///< epsilon of every RMSNorm
  RopeParams rope;  ///< rotary embedding of Q and K (interleaved pairs, optional linear / YaRN scaling)

  /// Width of all query heads together: n_heads * head_dim.
  int q_dim() const { return n_heads * head_dim; }
  /// Width of all KV heads together: n_kv_heads * head_dim.
  int kv_dim() const { return n_kv_heads * head_dim; }

  /// Reads and validates the config. Error names an unsupported architecture or a missing/invalid key.
  static LlamaConfig from_gguf(const io::GgufMetadata& m) {
    LlamaConfig c;
    c.arch = m.get<std::string>("general.architecture");
    check(c.arch == "llama" || c.arch == "mistral", "unsupported architecture '", c.arch,
          "' (tessera runs llama-family models: llama, mistral)");
    const std::string p = c.arch + ".";
    c.n_layers = static_cast<int>(m.get<uint32_t>(p + "block_count"));
    c.n_embd = static_cast<int>(m.get<uint32_t>(p + "embedding_length"));
    c.n_heads = static_cast<int>(m.get<uint32_t>(p + "attention.head_count"));
    c.n_kv_heads = static_cast<int>(m.get_or<uint32_t>(p + "attention.head_count_kv", static_cast<uint32_t>(c.n_heads)));
    c.n_ff = static_cast<int>(m.get<uint32_t>(p + "feed_forward_length"));
    c.n_ctx_train = static_cast<int>(m.get_or<uint32_t>(p + "context_length", 2048));
    c.rms_eps = m.get_or<float>(p + "attention.layer_norm_rms_epsilon", 1e-5f);
    check(c.n_layers > 0 && c.n_embd > 0 && c.n_heads > 0 && c.n_ff > 0, "invalid llama config: block_count ",
          c.n_layers, ", embedding_length ", c.n_embd, ", head_count ", c.n_heads, ", feed_forward_length ", c.n_ff);
    check(c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0, "head_count ", c.n_heads,
          " is not a multiple of head_count_kv ", c.n_kv_heads);
    c.head_dim = static_cast<int>(m.get_or<uint32_t>(p + "attention.key_length", static_cast<uint32_t>(c.n_embd / c.n_heads)));
    check(c.head_dim > 0 && c.head_dim % 2 == 0, "invalid head dim ", c.head_dim);
    c.rope.n_dims = static_cast<int>(m.get_or<uint32_t>(p + "rope.dimension_count", static_cast<uint32_t>(c.head_dim)));
    c.rope.base = m.get_or<float>(p + "rope.freq_base", 10000.f);
    c.rope.style = RopeStyle::interleaved;  // GGUF llama: Q/K rows permuted at conversion
    const auto scaling = m.get_or<std::string>(p + "rope.scaling.type", "none");
    if (scaling == "linear") {
      c.rope.scaling = RopeScaling::linear;
      c.rope.factor = m.get<float>(p + "rope.scaling.factor");
      c.rope.freq_scale = 1.f / c.rope.factor;
    } else if (scaling == "yarn") {
      c.rope.scaling = RopeScaling::yarn;
      c.rope.factor = m.get<float>(p + "rope.scaling.factor");
      c.rope.n_ctx_orig = static_cast<int>(m.get_or<uint32_t>(p + "rope.scaling.original_context_length",
                                                              static_cast<uint32_t>(c.n_ctx_train)));
    } else {
      check(scaling == "none", "unsupported rope.scaling.type '", scaling, "' (none, linear or yarn)");
    }
    check(c.rope.factor > 0.f, "invalid rope.scaling.factor ", c.rope.factor);
    check(c.rope.n_dims > 0 && c.rope.n_dims <= c.head_dim && c.rope.n_dims % 2 == 0, "invalid rope.dimension_count ",
          c.rope.n_dims, " for head dim ", c.head_dim);
    return c;
  }
};

}  // namespace tessera::models
