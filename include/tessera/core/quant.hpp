/// \file
/// Scalar reference codecs of the GGUF blocks: quantize_row(x, blocks) and
/// dequantize_row(blocks, out) for q8_0, q8_1, q8_K, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K.
/// Dequantization is bit-exact to GGUF; k-quant scales come from a least-squares search.
#pragma once

#include "tessera/core/convert.hpp"
#include "tessera/core/quant/common.hpp"
#include "tessera/core/quant/k_quants.hpp"
#include "tessera/core/quant/q4.hpp"
#include "tessera/core/quant/q5.hpp"
#include "tessera/core/quant/q8.hpp"
