/// \file
/// The model's hyper-parameters, read from GGUF metadata (`ARCH.block_count`,
/// `ARCH.attention.head_count`, ...), and what each supported architecture
/// does differently, as data: the layer loop (llama_forward.hpp) is one
/// function for every family.
#pragma once

#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/backend/rope_params.hpp"
#include "tessera/core/error.hpp"
#include "tessera/io/gguf.hpp"

namespace tessera::models {

/// The model families tessera runs, one per GGUF `general.architecture`
/// (llama and mistral share one): decoders, and BERT, an encoder.
enum class Family : uint8_t {
  llama,   ///< llama, mistral: RMSNorm, SwiGLU, interleaved RoPE (GGUF permutes Q/K)
  gemma3,  ///< Gemma 3: scaled embeddings, QK-norm, pre- and post-norms, GeGLU, local/global layers
  qwen2,   ///< Qwen2: llama with Q/K/V biases and neox RoPE
  qwen3,   ///< Qwen3: llama with QK-norm and neox RoPE
  phi3,    ///< Phi-3: fused QKV and gate/up tensors, neox RoPE
  gpt2,    ///< GPT-2: learned positions, LayerNorm with biases, GELU MLP, fused QKV, biases everywhere
  qwen2moe,  ///< Qwen2-MoE: Qwen2 with routed experts (weights not renormalised) and a gated shared expert
  qwen3moe,  ///< Qwen3-MoE: Qwen3 with routed experts, top-k weights renormalised
  bert,      ///< BERT: encoder (bidirectional), learned positions and token types, LayerNorm after each residual add
};

/// Printable name of a family (its GGUF architecture name).
inline const char* family_name(Family f) {
  switch (f) {
    case Family::llama: return "llama";
    case Family::gemma3: return "gemma3";
    case Family::qwen2: return "qwen2";
    case Family::qwen3: return "qwen3";
    case Family::phi3: return "phi3";
    case Family::gpt2: return "gpt2";
    case Family::qwen2moe: return "qwen2moe";
    case Family::qwen3moe: return "qwen3moe";
    case Family::bert: return "bert";
  }
  return "?";
}

/// The supported `general.architecture` values, for error messages.
inline constexpr std::string_view kSupportedArchitectures =
    "llama, mistral, gemma3, qwen2, qwen3, phi3, gpt2, qwen2moe, qwen3moe, bert";

/// Which normalisation every norm of the model is.
enum class NormKind : uint8_t {
  rms,    ///< x / rms(x) * w
  layer,  ///< (x - mean) / std(x) * w + b
};

/// The feed-forward block: gated (two input projections) or not.
enum class FfnKind : uint8_t {
  swiglu,  ///< down(silu(gate(x)) * up(x))
  geglu,   ///< down(gelu_tanh(gate(x)) * up(x))
  gelu,    ///< down(gelu_tanh(up(x))): no gate
};

/// How an encoder turns its per-token hidden states into one vector (GGUF `ARCH.pooling_type`).
enum class Pooling : uint8_t {
  none,  ///< no pooling: one vector per token
  mean,  ///< the mean over the sequence's tokens
  cls,   ///< the first token's ([CLS])
  last,  ///< the last token's
};

/// Hyper-parameters of a model; see from_gguf().  The name is historical: it
/// describes every Family.
struct LlamaConfig {
  std::string arch;  ///< general.architecture
  Family family = Family::llama;  ///< what the layer loop does differently
  int n_layers = 0;  ///< decoder blocks
  int n_embd = 0;  ///< residual stream width
  int n_heads = 0;  ///< query heads
  int n_kv_heads = 0;  ///< < n_heads: grouped-query attention
  int head_dim = 0;  ///< values per head (attention.key_length, else n_embd / n_heads)
  int n_ff = 0;  ///< feed-forward hidden width
  int n_vocab = 0;  ///< vocabulary size; from_gguf() leaves 0, LlamaModel sets it from the embedding table
  int n_ctx_train = 0;  ///< context length the model was trained for (GPT-2: rows of its position table)
  float rms_eps = 1e-5f;  ///< epsilon of every norm (RMSNorm or LayerNorm)
  RopeParams rope;  ///< rotary embedding of Q and K in global layers (unused with learned positions)

  NormKind norm = NormKind::rms;  ///< kind of every norm
  FfnKind ffn = FfnKind::swiglu;  ///< feed-forward block
  bool qk_norm = false;  ///< RMSNorm of every Q and K head (weights [head_dim]) before RoPE
  bool post_norms = false;  ///< a norm of the attention and FFN outputs before each residual add
  bool learned_pos = false;  ///< absolute positions from a table added to the embeddings, no RoPE
  float embd_scale = 1.f;  ///< the embeddings times this (Gemma: sqrt(n_embd))
  float attn_scale = 0.f;  ///< q.k multiplier; 0: 1 / sqrt(head_dim)
  float logit_softcap = 0.f;  ///< > 0: logits = c * tanh(logits / c)
  int64_t n_swa = 0;  ///< sliding-window length of local layers (0: none)
  std::vector<bool> swa_layers;  ///< which layers are local (sliding); empty: none
  RopeParams rope_swa;  ///< rotary embedding of local layers (their own base)
  int n_expert = 0;  ///< routed experts per layer (0: a dense FFN); llama with experts is Mixtral
  int n_expert_used = 0;  ///< experts each token goes to (top-k of the router's softmax)
  int n_ff_exp = 0;  ///< hidden width of one routed expert
  int n_ff_shexp = 0;  ///< hidden width of the shared expert (Qwen2-MoE), 0 when none
  bool moe_norm_topk = true;  ///< renormalise the k chosen weights to sum to 1 (Mixtral, Qwen3-MoE)
  bool causal = true;  ///< a position attends to earlier ones only; false: to the whole sequence (encoders)
  bool norm_after = false;  ///< post-LN (BERT): blocks read x as it is and x = norm(x + block(x)); else pre-norm
  Pooling pooling = Pooling::none;  ///< the file's pooling (encoders); an embedding caller may choose another

  /// Width of all query heads together: n_heads * head_dim.
  int q_dim() const { return n_heads * head_dim; }
  /// Width of all KV heads together: n_kv_heads * head_dim.
  int kv_dim() const { return n_kv_heads * head_dim; }
  /// Whether layer l attends only over the last n_swa positions.
  bool is_swa(int l) const { return n_swa > 0 && l >= 0 && static_cast<size_t>(l) < swa_layers.size() && swa_layers[static_cast<size_t>(l)]; }
  /// The rotary embedding of layer l (local layers may have their own base).
  const RopeParams& rope_for(int l) const { return is_swa(l) ? rope_swa : rope; }

  /// Reads and validates the config. Error names an unsupported architecture or a missing/invalid key.
  static LlamaConfig from_gguf(const io::GgufMetadata& m) {
    LlamaConfig c;
    c.arch = m.get<std::string>("general.architecture");
    if (c.arch == "llama" || c.arch == "mistral") c.family = Family::llama;
    else if (c.arch == "gemma3") c.family = Family::gemma3;
    else if (c.arch == "qwen2") c.family = Family::qwen2;
    else if (c.arch == "qwen3") c.family = Family::qwen3;
    else if (c.arch == "phi3") c.family = Family::phi3;
    else if (c.arch == "gpt2") c.family = Family::gpt2;
    else if (c.arch == "qwen2moe") c.family = Family::qwen2moe;
    else if (c.arch == "qwen3moe") c.family = Family::qwen3moe;
    else if (c.arch == "bert") c.family = Family::bert;
    else
      fail("unsupported architecture '", c.arch, "' (tessera runs ", kSupportedArchitectures, ")");
    const std::string p = c.arch + ".";
    c.n_layers = static_cast<int>(m.get<uint32_t>(p + "block_count"));
    c.n_embd = static_cast<int>(m.get<uint32_t>(p + "embedding_length"));
    c.n_heads = static_cast<int>(m.get<uint32_t>(p + "attention.head_count"));
    c.n_kv_heads = static_cast<int>(m.get_or<uint32_t>(p + "attention.head_count_kv", static_cast<uint32_t>(c.n_heads)));
    c.n_ff = static_cast<int>(m.get<uint32_t>(p + "feed_forward_length"));
    c.n_ctx_train = static_cast<int>(m.get_or<uint32_t>(p + "context_length", 2048));
    c.norm = c.family == Family::gpt2 || c.family == Family::bert ? NormKind::layer : NormKind::rms;
    c.rms_eps = c.norm == NormKind::layer ? m.get_or<float>(p + "attention.layer_norm_epsilon", 1e-5f)
                                          : m.get_or<float>(p + "attention.layer_norm_rms_epsilon", 1e-5f);
    check(c.n_layers > 0 && c.n_embd > 0 && c.n_heads > 0 && c.n_ff > 0, "invalid ", c.arch, " config: block_count ",
          c.n_layers, ", embedding_length ", c.n_embd, ", head_count ", c.n_heads, ", feed_forward_length ", c.n_ff);
    check(c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0, "head_count ", c.n_heads,
          " is not a multiple of head_count_kv ", c.n_kv_heads);
    c.head_dim = static_cast<int>(m.get_or<uint32_t>(p + "attention.key_length", static_cast<uint32_t>(c.n_embd / c.n_heads)));
    check(c.head_dim > 0 && c.head_dim % 2 == 0, "invalid head dim ", c.head_dim);
    const auto value_length = m.get_or<uint32_t>(p + "attention.value_length", static_cast<uint32_t>(c.head_dim));
    check(static_cast<int>(value_length) == c.head_dim, "attention.value_length ", value_length,
          " differs from key_length ", c.head_dim, " (not supported)");
    c.rope.n_dims = static_cast<int>(m.get_or<uint32_t>(p + "rope.dimension_count", static_cast<uint32_t>(c.head_dim)));
    c.rope.base = m.get_or<float>(p + "rope.freq_base", 10000.f);
    // GGUF's llama converter permutes Q/K rows into interleaved pairs; the
    // other families keep the checkpoint's halves (neox).
    c.rope.style = c.family == Family::llama ? RopeStyle::interleaved : RopeStyle::neox;
    read_rope_scaling(m, p, c);
    check(c.rope.n_dims > 0 && c.rope.n_dims <= c.head_dim && c.rope.n_dims % 2 == 0, "invalid rope.dimension_count ",
          c.rope.n_dims, " for head dim ", c.head_dim);
    c.logit_softcap = m.get_or<float>(p + "final_logit_softcapping", 0.f);
    // Only Gemma 3's local layers slide; other families' windows are not applied.
    c.n_swa = c.family == Family::gemma3 ? static_cast<int64_t>(m.get_or<uint32_t>(p + "attention.sliding_window", 0)) : 0;
    switch (c.family) {
      case Family::llama: break;
      case Family::qwen2: break;
      case Family::qwen3: c.qk_norm = true; break;
      case Family::qwen2moe: c.moe_norm_topk = false; break;
      case Family::qwen3moe: c.qk_norm = true; break;
      case Family::phi3: break;  // its sliding_window (2047 of a 4k context) is ignored, as llama.cpp does
      case Family::gpt2:
        c.learned_pos = true;
        c.ffn = FfnKind::gelu;
        break;
      case Family::bert: {
        c.learned_pos = c.norm_after = true;
        c.ffn = FfnKind::gelu;
        c.causal = m.get_or<bool>(p + "attention.causal", false);
        const auto pooling = m.get_or<uint32_t>(p + "pooling_type", 0);  // llama.cpp's numbering
        check(pooling <= 3, c.arch, ".pooling_type ", pooling, " is not supported (0 none, 1 mean, 2 cls, 3 last)");
        c.pooling = static_cast<Pooling>(pooling);
        break;
      }
      case Family::gemma3: {
        c.ffn = FfnKind::geglu;
        c.qk_norm = c.post_norms = true;
        c.embd_scale = std::sqrt(static_cast<float>(c.n_embd));
        // Every sixth layer is global, the others slide over n_swa positions
        // with RoPE base 10000 and no scaling; the global ones take the file's
        // base and scaling.  27B (62 layers) was trained with q scaled by
        // 1/sqrt(n_embd / n_heads), the other sizes by 1/sqrt(head_dim); the
        // file does not say, so depth tells.
        c.swa_layers.resize(static_cast<size_t>(c.n_layers));
        for (int l = 0; l < c.n_layers; ++l) c.swa_layers[static_cast<size_t>(l)] = l % 6 < 5;
        c.rope_swa = RopeParams{};
        c.rope_swa.n_dims = c.rope.n_dims;
        c.rope_swa.style = c.rope.style;
        c.rope_swa.base = 10000.f;
        if (c.n_layers == 62) c.attn_scale = 1.f / std::sqrt(static_cast<float>(c.n_embd / c.n_heads));
        break;
      }
    }
    c.n_expert = static_cast<int>(m.get_or<uint32_t>(p + "expert_count", 0));
    c.n_expert_used = static_cast<int>(m.get_or<uint32_t>(p + "expert_used_count", 0));
    const bool moe_family = c.family == Family::qwen2moe || c.family == Family::qwen3moe;
    check(!moe_family || c.n_expert > 0, c.arch, ": expert_count is missing or 0");
    if (c.n_expert > 0) {
      check(c.family == Family::llama || moe_family, c.arch, " models with experts are not supported");
      check(c.n_expert_used > 0 && c.n_expert_used <= c.n_expert, c.arch, ": expert_used_count ", c.n_expert_used,
            " of ", c.n_expert, " experts");
      c.n_ff_exp = static_cast<int>(m.get_or<uint32_t>(p + "expert_feed_forward_length", static_cast<uint32_t>(c.n_ff)));
      c.n_ff_shexp = static_cast<int>(m.get_or<uint32_t>(p + "expert_shared_feed_forward_length", 0));
      if (c.family == Family::qwen2moe && c.n_ff_shexp == 0) c.n_ff_shexp = c.n_ff;
      check(c.n_ff_exp > 0, c.arch, ": expert_feed_forward_length ", c.n_ff_exp);
    }
    if (c.family != Family::gemma3) c.rope_swa = c.rope;
    if (c.n_swa <= 0) c.swa_layers.clear();
    check(c.n_swa >= 0, "invalid attention.sliding_window ", c.n_swa);
    return c;
  }

 private:
  static void read_rope_scaling(const io::GgufMetadata& m, const std::string& p, LlamaConfig& c) {
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
  }
};

}  // namespace tessera::models
