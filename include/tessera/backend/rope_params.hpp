// Parameters of rotary position embedding, shared by every backend's rope().
#pragma once

#include <cmath>
#include <cstdint>

namespace tessera {

/// Which dimensions form a rotated pair.
enum class RopeStyle {
  interleaved,  // (2i, 2i+1): GGUF llama weights (the converter permutes Q/K into this order)
  neox,         // (i, i + n_dims/2): GPT-NeoX, Qwen, Phi, HF llama without the permutation
};

/// theta(pos, i) = pos * freq_scale * base^(-2i / n_dims), for pairs i < n_dims/2.
struct RopeParams {
  int n_dims = 0;          // rotated dims per head (<= head_dim; the rest pass through)
  float base = 10000.f;
  float freq_scale = 1.f;  // linear position interpolation: 1 / scaling factor
  RopeStyle style = RopeStyle::interleaved;

  float inv_freq(int i) const { return std::pow(base, -2.f * static_cast<float>(i) / static_cast<float>(n_dims)); }
};

}  // namespace tessera
