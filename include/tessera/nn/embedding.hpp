/// \file
/// Token embedding lookup: gathers rows of a [n_vocab, n_embd] table of any
/// supported type, dequantized to f32.
#pragma once

#include <span>

#include "tessera/core/convert.hpp"
#include "tessera/core/quant.hpp"
#include "tessera/nn/linear.hpp"

namespace tessera::nn {

/// out[t, :] = table[ids[t], :].  table [n_vocab, n_embd], ids [n_tokens], out [n_tokens, n_embd].  O(n_tokens n_embd).
/// Error for an id outside [0, n_vocab).
inline void embedding(const Weight& table, std::span<const int32_t> ids, TensorView<float, 2> out) {
  TESSERA_CHECK(out.dim(0) == static_cast<int64_t>(ids.size()) && out.dim(1) == table.n_in && out.rows_contiguous(),
        "embedding: ", ids.size(), " ids into out ", shape_str(out.shape()), " from a table of width ", table.n_in);
  visit_type(table.type, [&]<class T>() {
    const auto tv = table.view<T>();
    for (size_t t = 0; t < ids.size(); ++t) {
      check(ids[t] >= 0 && ids[t] < table.n_out, "token id ", ids[t], " outside the vocabulary [0, ", table.n_out, ")");
      dequantize_row(std::span<const T>(&tv(ids[t], 0), static_cast<size_t>(tv.dim(1))),
                     std::span<float>(out.data() + static_cast<int64_t>(t) * out.stride(0), static_cast<size_t>(table.n_in)));
    }
  });
}

}  // namespace tessera::nn
