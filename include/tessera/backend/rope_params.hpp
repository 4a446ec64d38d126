/// \file
/// Parameters of rotary position embedding, shared by every backend's rope().
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace tessera {

/// Which dimensions form a rotated pair.
enum class RopeStyle {
  interleaved,  ///< (2i, 2i+1): GGUF llama weights (the converter permutes Q/K into this order)
  neox,         ///< (i, i + n_dims/2): GPT-NeoX, Qwen, Phi, HF llama without the permutation
};

/// How frequencies are stretched for contexts longer than the training one.
enum class RopeScaling {
  none,    ///< frequencies as trained
  linear,  ///< position interpolation: every frequency / factor (freq_scale = 1 / factor)
  ntk,     ///< NTK-aware: base * factor^(n/(n-2)); high frequencies kept, the lowest / factor
  yarn,    ///< YaRN: per pair, blend of kept (high freq) and interpolated (low freq) by
           ///< wavelength vs the original context, plus attention temperature mscale
};

/// theta(pos, i) = pos * freq(i), for pairs i < n_dims/2, with
/// freq(i) = base^(-2i / n_dims) before scaling.  Rotated pairs are scaled by
/// mscale() (YaRN; 1 otherwise), so q.k logits scale by mscale^2.
///
/// Defaults, the same here and in rope_linear / rope_ntk / rope_yarn: pairs are
/// interleaved (GGUF's llama order; pass RopeStyle::neox for GPT-NeoX, Qwen,
/// Phi and HF checkpoints), and n_dims = 0 rotates the whole head (nn::rope
/// reads head_dim from the view).
struct RopeParams {
  int n_dims = 0;  ///< rotated dims per head (<= head_dim; the rest pass through); 0: all of head_dim
  float base = 10000.f;  ///< frequency base: freq(i) = base^(-2i / n_dims) before scaling
  float freq_scale = 1.f;  ///< linear: 1 / factor
  RopeStyle style = RopeStyle::interleaved;  ///< which dimensions form a rotated pair
  RopeScaling scaling = RopeScaling::none;  ///< linear needs only freq_scale
  float factor = 1.f;  ///< ntk / yarn: context extension factor s
  int n_ctx_orig = 0;  ///< yarn: training context length
  ///@{
  /// yarn: ramp ends, in rotations over n_ctx_orig (pairs turning more than beta_fast times keep
  /// their frequency, fewer than beta_slow are interpolated by 1 / factor).
  float beta_fast = 32.f, beta_slow = 1.f;
  ///@}

  /// The same parameters with n_dims = 0 resolved to head_dim.
  RopeParams for_head_dim(int64_t head_dim) const {
    RopeParams p = *this;
    if (p.n_dims == 0) p.n_dims = static_cast<int>(head_dim);
    return p;
  }

  /// The unscaled frequency of pair i: base^(-2i / n_dims). Needs n_dims resolved (for_head_dim).
  float inv_freq(int i) const { return std::pow(base, -2.f * static_cast<float>(i) / static_cast<float>(n_dims)); }

  /// The frequency pair i rotates at, scaling applied.
  float freq(int i) const {
    switch (scaling) {
      case RopeScaling::ntk: {
        const float b = base * std::pow(factor, static_cast<float>(n_dims) / static_cast<float>(n_dims - 2));
        return std::pow(b, -2.f * static_cast<float>(i) / static_cast<float>(n_dims));
      }
      case RopeScaling::yarn: {
        // Pair d turns n_ctx_orig * freq / 2pi times over the original context: many turns (> beta_fast)
        // keep their frequency, few (< beta_slow) are interpolated by 1/factor, a linear ramp between.
        const float extrap = inv_freq(i), interp = extrap / factor;
        const float lo = yarn_dim(beta_fast), hi = std::max(yarn_dim(beta_slow), lo + 1e-3f);
        const float ramp = std::clamp((static_cast<float>(i) - lo) / (hi - lo), 0.f, 1.f);  // 0: keep, 1: interp
        return interp * ramp + extrap * (1.f - ramp);
      }
      default: return freq_scale * inv_freq(i);
    }
  }
  /// YaRN's attention temperature: 0.1 ln(factor) + 1 on cos and sin; 1 otherwise.
  float mscale() const {
    return scaling == RopeScaling::yarn && factor > 1.f ? 0.1f * std::log(factor) + 1.f : 1.f;
  }

 private:
  // The pair index whose wavelength fits `turns` times in n_ctx_orig, clamped to the pairs.
  float yarn_dim(float turns) const {
    const float two_pi = 6.283185307f;
    const float d = static_cast<float>(n_dims) * std::log(static_cast<float>(n_ctx_orig) / (turns * two_pi)) /
                    (2.f * std::log(base));
    return std::clamp(d, 0.f, static_cast<float>(n_dims / 2 - 1));
  }
};

/// RoPE with linear position interpolation by factor.
inline RopeParams rope_linear(int n_dims, float base, float factor, RopeStyle style = RopeStyle::interleaved) {
  RopeParams p{n_dims, base, 1.f / factor, style};
  p.scaling = RopeScaling::linear;
  p.factor = factor;
  return p;
}
/// NTK-aware RoPE: the base grows so the lowest frequency is divided by factor.
inline RopeParams rope_ntk(int n_dims, float base, float factor, RopeStyle style = RopeStyle::interleaved) {
  RopeParams p{n_dims, base, 1.f, style};
  p.scaling = RopeScaling::ntk;
  p.factor = factor;
  return p;
}
/// YaRN for a model trained on n_ctx_orig positions, extended by factor.
inline RopeParams rope_yarn(int n_dims, float base, float factor, int n_ctx_orig, RopeStyle style = RopeStyle::interleaved) {
  RopeParams p{n_dims, base, 1.f, style};
  p.scaling = RopeScaling::yarn;
  p.factor = factor;
  p.n_ctx_orig = n_ctx_orig;
  return p;
}

}  // namespace tessera
