// GGUF quantized blocks. Each struct has GGUF's exact byte layout, so weights
// mmap'd from a file are used in place. The traits table gives each format's
// facts (elements per block, bytes per block, GGUF type id).
#pragma once

#include <cstddef>
#include <cstdint>

#include "tessera/core/half.hpp"

namespace tessera {

inline constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32;
inline constexpr int QK_K = 256;           // super-block of the k-quants
inline constexpr int K_SCALE_BYTES = 12;   // q4_K: 8 6-bit scales + 8 6-bit mins, packed

/// 32 weights = d * q, q in int8.
struct block_q8_0 {
  f16 d;
  int8_t qs[QK8_0];
};
/// 32 weights = d * (q - 8), q in 4 bits; element j in the low nibble of qs[j], j+16 in the high.
struct block_q4_0 {
  f16 d;
  uint8_t qs[QK4_0 / 2];
};
/// 32 weights = d * q + m, q in 4 bits; same nibble order as q4_0.
struct block_q4_1 {
  f16 d;
  f16 m;
  uint8_t qs[QK4_1 / 2];
};
/// 32 weights = d * (q - 16), q in 5 bits: the low 4 in qs as q4_0 orders
/// them, bit 4 of element j in bit j of qh (read as a little-endian uint32).
struct block_q5_0 {
  f16 d;
  uint8_t qh[4];
  uint8_t qs[QK5_0 / 2];
};
/// 32 weights = d * q + m, q in 5 bits laid out as in q5_0.
struct block_q5_1 {
  f16 d;
  f16 m;
  uint8_t qh[4];
  uint8_t qs[QK5_1 / 2];
};
/// 256 weights in 8 sub-blocks of 32: w = d*sc[j]*q - dmin*mn[j], 6-bit sc/mn, 4-bit q.
struct block_q4_K {
  f16 d;
  f16 dmin;
  uint8_t scales[K_SCALE_BYTES];
  uint8_t qs[QK_K / 2];
};
/// 256 weights in 16 sub-blocks of 16: w = d * scales[j] * (q - 32), q in 6 bits (4 in ql, 2 in qh).
struct block_q6_K {
  uint8_t ql[QK_K / 2];
  uint8_t qh[QK_K / 4];
  int8_t scales[QK_K / 16];
  f16 d;
};
/// Activations for q4_1 dot products: 32 values = d * q, and s = d * sum(q)
/// (the block sum the weights' offset m multiplies, computed once per block).
struct block_q8_1 {
  f16 d;
  f16 s;
  int8_t qs[QK8_0];
};
/// Activations for k-quant dot products: float scale, int8 values and per-16 sums.
struct block_q8_K {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];
};

static_assert(sizeof(block_q8_0) == 34);
static_assert(sizeof(block_q4_0) == 18);
static_assert(sizeof(block_q4_1) == 20);
static_assert(sizeof(block_q5_0) == 22);
static_assert(sizeof(block_q5_1) == 24);
static_assert(sizeof(block_q4_K) == 144);
static_assert(sizeof(block_q6_K) == 210);
static_assert(sizeof(block_q8_K) == 292);
static_assert(sizeof(block_q8_1) == 36);

/// GGUF tensor type ids (ggml_type), the ones tessera knows by name.
enum class GgmlType : uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
  q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15, bf16 = 30,
};

/// Per-format facts. block_size elements occupy type_size bytes.
template <class Block> struct quant_traits;
template <> struct quant_traits<float> { static constexpr int block_size = 1; static constexpr GgmlType type = GgmlType::f32; static constexpr const char* name = "f32"; };
template <> struct quant_traits<f16> { static constexpr int block_size = 1; static constexpr GgmlType type = GgmlType::f16; static constexpr const char* name = "f16"; };
template <> struct quant_traits<bf16> { static constexpr int block_size = 1; static constexpr GgmlType type = GgmlType::bf16; static constexpr const char* name = "bf16"; };
template <> struct quant_traits<block_q8_0> { static constexpr int block_size = QK8_0; static constexpr GgmlType type = GgmlType::q8_0; static constexpr const char* name = "q8_0"; };
template <> struct quant_traits<block_q4_0> { static constexpr int block_size = QK4_0; static constexpr GgmlType type = GgmlType::q4_0; static constexpr const char* name = "q4_0"; };
template <> struct quant_traits<block_q4_1> { static constexpr int block_size = QK4_1; static constexpr GgmlType type = GgmlType::q4_1; static constexpr const char* name = "q4_1"; };
template <> struct quant_traits<block_q5_0> { static constexpr int block_size = QK5_0; static constexpr GgmlType type = GgmlType::q5_0; static constexpr const char* name = "q5_0"; };
template <> struct quant_traits<block_q5_1> { static constexpr int block_size = QK5_1; static constexpr GgmlType type = GgmlType::q5_1; static constexpr const char* name = "q5_1"; };
template <> struct quant_traits<block_q8_1> { static constexpr int block_size = QK8_0; static constexpr GgmlType type = GgmlType::q8_1; static constexpr const char* name = "q8_1"; };
template <> struct quant_traits<block_q4_K> { static constexpr int block_size = QK_K; static constexpr GgmlType type = GgmlType::q4_K; static constexpr const char* name = "q4_K"; };
template <> struct quant_traits<block_q6_K> { static constexpr int block_size = QK_K; static constexpr GgmlType type = GgmlType::q6_K; static constexpr const char* name = "q6_K"; };
template <> struct quant_traits<block_q8_K> { static constexpr int block_size = QK_K; static constexpr GgmlType type = GgmlType::q8_K; static constexpr const char* name = "q8_K"; };

/// Facts about a type id known only at run time (from a file).
struct TypeInfo {
  const char* name;
  int block_size;  ///< elements per block
  size_t type_size;  ///< bytes per block
  bool supported;  ///< tessera has kernels for it
};

/// Returns the facts for id; unknown ids give {nullptr, 0, 0, false}.
constexpr TypeInfo type_info(uint32_t id) {
  switch (static_cast<GgmlType>(id)) {
    case GgmlType::f32: return {"f32", 1, 4, true};
    case GgmlType::f16: return {"f16", 1, 2, true};
    case GgmlType::bf16: return {"bf16", 1, 2, true};
    case GgmlType::q4_0: return {"q4_0", 32, 18, true};
    case GgmlType::q4_1: return {"q4_1", 32, 20, true};
    case GgmlType::q5_0: return {"q5_0", 32, 22, true};
    case GgmlType::q5_1: return {"q5_1", 32, 24, true};
    case GgmlType::q8_0: return {"q8_0", 32, 34, true};
    case GgmlType::q8_1: return {"q8_1", 32, 36, false};
    case GgmlType::q2_K: return {"q2_K", 256, 84, false};
    case GgmlType::q3_K: return {"q3_K", 256, 110, false};
    case GgmlType::q4_K: return {"q4_K", 256, 144, true};
    case GgmlType::q5_K: return {"q5_K", 256, 176, false};
    case GgmlType::q6_K: return {"q6_K", 256, 210, true};
    case GgmlType::q8_K: return {"q8_K", 256, 292, false};
  }
  return {nullptr, 0, 0, false};
}

}  // namespace tessera
