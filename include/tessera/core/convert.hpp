/// \file
/// Rows of float-like elements (f32, f16, bf16) to f32. The quantized block
/// formats add their own dequantize_row overloads in core/quant.hpp, so
/// `dequantize_row(row, out)` works for every weight type.
#pragma once

#include <span>

#include "tessera/core/error.hpp"
#include "tessera/core/half.hpp"

namespace tessera {

/// out[i] = float(row[i]). Sizes must match (debug-checked).
template <class T>
  requires(std::is_same_v<T, float> || std::is_same_v<T, f16> || std::is_same_v<T, bf16>)
void dequantize_row(std::span<const T> row, std::span<float> out) {
  TESSERA_DEBUG_CHECK(row.size() == out.size(), "dequantize_row: ", row.size(), " elements into ", out.size());
  for (size_t i = 0; i < row.size(); ++i) out[i] = static_cast<float>(row[i]);
}

}  // namespace tessera
