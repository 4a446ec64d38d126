/// \file
/// Positional encodings as blocks:
///   sinusoidal  x[t] += PE(pos[t]) with PE(p, 2i) = sin(p w_i), PE(p, 2i+1) = cos(p w_i),
///               w_i = base^(-2i/D)  (the original Transformer; added to embeddings)
///   learned     x[t] += table[pos[t]]  (GPT-2, BERT: a trained [n_pos, D] table)
///   rotary      nn::rope (nn/blocks.hpp) with RopeParams: plain, linear
///               interpolation, NTK-aware and YaRN scaling (backend/rope_params.hpp)
#pragma once

#include <cmath>
#include <span>

#include "tessera/backend/rope_params.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/parallel.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::nn {

/// Adds the sinusoidal encoding of pos[t] to row t of x [n_tokens, D] (D even).  O(n D) sin/cos.
inline void add_sinusoidal(TensorView<float, 2> x, std::span<const int32_t> pos, float base = 10000.f) {
  TESSERA_CHECK(x.dim(0) == static_cast<int64_t>(pos.size()) && x.dim(1) % 2 == 0, "add_sinusoidal: x ", shape_str(x.shape()),
        " with ", pos.size(), " positions (D must be even)");
  const int64_t D = x.dim(1);
  parallel_for(x.dim(0), 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t i = 0; i < D / 2; ++i) {
        // angle in double: positions reach 1e5+, where a float angle would lose ~1e-2 rad
        const double a = static_cast<double>(pos[static_cast<size_t>(t)]) *
                         std::pow(static_cast<double>(base), -2.0 * static_cast<double>(i) / static_cast<double>(D));
        x(t, 2 * i) += static_cast<float>(std::sin(a));
        x(t, 2 * i + 1) += static_cast<float>(std::cos(a));
      }
  });
}

/// Adds table[pos[t]] to row t of x [n_tokens, D]; table [n_pos, D].  Error on a position outside the table.
inline void add_learned(TensorView<float, 2> x, TensorView<const float, 2> table, std::span<const int32_t> pos) {
  TESSERA_CHECK(x.dim(0) == static_cast<int64_t>(pos.size()) && x.dim(1) == table.dim(1), "add_learned: x ",
        shape_str(x.shape()), ", table ", shape_str(table.shape()), ", ", pos.size(), " positions");
  for (int32_t p : pos)
    check(p >= 0 && p < table.dim(0), "add_learned: position ", p, " outside the table of ", table.dim(0));
  parallel_for(x.dim(0), 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t i = 0; i < x.dim(1); ++i) x(t, i) += table(pos[static_cast<size_t>(t)], i);
  });
}

}  // namespace tessera::nn
