/// \file
/// GGUF quantized blocks. Each struct has GGUF's exact byte layout, so weights
/// mmap'd from a file are used in place. The traits table gives each format's
/// facts (elements per block, bytes per block, GGUF type id).
#pragma once

#include <cstddef>
#include <cstdint>

#include "tessera/core/half.hpp"

namespace tessera {

/// @{
/// Elements per block of the 32-value formats (q4_0, q4_1, q5_0, q5_1, q8_0; q8_1 uses QK8_0).
inline constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32;
/// @}
inline constexpr int QK_K = 256;           ///< Elements per super-block of the k-quants (q4_K, q6_K, q8_K).
inline constexpr int K_SCALE_BYTES = 12;   ///< q4_K: 8 6-bit scales + 8 6-bit mins, packed into 12 bytes.

/// 32 weights = d * q, q in int8.
struct block_q8_0 {
  f16 d;              ///< Scale.
  int8_t qs[QK8_0];   ///< Quantized values, element i in qs[i].
};
/// 32 weights = d * (q - 8), q in 4 bits; element j in the low nibble of qs[j], j+16 in the high.
struct block_q4_0 {
  f16 d;                  ///< Scale.
  uint8_t qs[QK4_0 / 2];  ///< 4-bit values, two per byte (j low, j + 16 high).
};
/// 32 weights = d * q + m, q in 4 bits; same nibble order as q4_0.
struct block_q4_1 {
  f16 d;                  ///< Scale.
  f16 m;                  ///< Offset added to every element (the block minimum).
  uint8_t qs[QK4_1 / 2];  ///< 4-bit values, two per byte (j low, j + 16 high).
};
/// 32 weights = d * (q - 16), q in 5 bits: the low 4 in qs as q4_0 orders
/// them, bit 4 of element j in bit j of qh (read as a little-endian uint32).
struct block_q5_0 {
  f16 d;                  ///< Scale.
  uint8_t qh[4];          ///< Bit 4 of each value: element j at bit j of this little-endian uint32.
  uint8_t qs[QK5_0 / 2];  ///< Low 4 bits of each value, ordered as in q4_0.
};
/// 32 weights = d * q + m, q in 5 bits laid out as in q5_0.
struct block_q5_1 {
  f16 d;                  ///< Scale.
  f16 m;                  ///< Offset added to every element (the block minimum).
  uint8_t qh[4];          ///< Bit 4 of each value: element j at bit j of this little-endian uint32.
  uint8_t qs[QK5_1 / 2];  ///< Low 4 bits of each value, ordered as in q4_0.
};
/// 256 weights in 8 sub-blocks of 32: w = d*sc[j]*q - dmin*mn[j], 6-bit sc/mn, 4-bit q.
struct block_q4_K {
  f16 d;                          ///< Super-block scale of the sub-block scales sc[j].
  f16 dmin;                       ///< Super-block scale of the sub-block mins mn[j].
  uint8_t scales[K_SCALE_BYTES];  ///< sc[0..7] and mn[0..7], 6 bits each, packed (see detail::unpack_q4_K_scales).
  uint8_t qs[QK_K / 2];           ///< 4-bit values: qs[32c + l] holds element 64c + l (low nibble) and 64c + 32 + l (high).
};
/// 256 weights as q4_K with 5-bit q: the low 4 bits as q4_K's qs, bit 4 of element 64c + l (c = 0..3,
/// l < 32) at bit 2c of qh[l], of element 64c + 32 + l at bit 2c + 1.
struct block_q5_K {
  f16 d;                          ///< Super-block scale of the sub-block scales sc[j].
  f16 dmin;                       ///< Super-block scale of the sub-block mins mn[j].
  uint8_t scales[K_SCALE_BYTES];  ///< sc[0..7] and mn[0..7], packed as q4_K's.
  uint8_t qh[QK_K / 8];           ///< Bit 4 of every value (see above).
  uint8_t qs[QK_K / 2];           ///< Low 4 bits, ordered as q4_K's.
};
/// 256 weights in 16 sub-blocks of 16: w = d * scales[j] * (q - 32), q in 6 bits (4 in ql, 2 in qh).
struct block_q6_K {
  uint8_t ql[QK_K / 2];      ///< Low 4 bits of the values, two per byte (see detail::q6_K_value for the order).
  uint8_t qh[QK_K / 4];      ///< Top 2 bits of the values, four per byte.
  int8_t scales[QK_K / 16];  ///< Signed 8-bit scale of each 16-element sub-block.
  f16 d;                     ///< Super-block scale multiplying scales[j].
};
/// Activations for q4_1 dot products: 32 values = d * q, and s = d * sum(q)
/// (the block sum the weights' offset m multiplies, computed once per block).
struct block_q8_1 {
  f16 d;             ///< Scale.
  f16 s;             ///< d * sum(qs), from the unrounded float d.
  int8_t qs[QK8_0];  ///< Quantized values, element i in qs[i].
};
/// Activations for k-quant dot products: float scale, int8 values and per-16 sums.
struct block_q8_K {
  float d;                   ///< Scale (a float, unlike the other blocks).
  int8_t qs[QK_K];           ///< Quantized values, element i in qs[i].
  int16_t bsums[QK_K / 16];  ///< bsums[j] = sum of qs[16j .. 16j + 15], for the k-quants' min terms.
};

static_assert(sizeof(block_q8_0) == 34);
static_assert(sizeof(block_q4_0) == 18);
static_assert(sizeof(block_q4_1) == 20);
static_assert(sizeof(block_q5_0) == 22);
static_assert(sizeof(block_q5_1) == 24);
static_assert(sizeof(block_q4_K) == 144);
static_assert(sizeof(block_q5_K) == 176);
static_assert(sizeof(block_q6_K) == 210);
static_assert(sizeof(block_q8_K) == 292);
static_assert(sizeof(block_q8_1) == 36);

/// GGUF tensor type ids (ggml_type), the ones tessera knows by name.
enum class GgmlType : uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
  q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15, bf16 = 30,
};

/// Per-format facts, one specialization per element or block type: `block_size`
/// (elements per block), `type` (the GgmlType id) and `name` (ggml's type name).
/// A block's size in bytes is sizeof(Block).
template <class Block> struct quant_traits;
/// f32: plain float, one element per "block" (4 bytes).
template <> struct quant_traits<float> { static constexpr int block_size = 1; static constexpr GgmlType type = GgmlType::f32; static constexpr const char* name = "f32"; };
/// f16: one IEEE binary16 element per "block" (2 bytes).
template <> struct quant_traits<f16> { static constexpr int block_size = 1; static constexpr GgmlType type = GgmlType::f16; static constexpr const char* name = "f16"; };
/// bf16: one bfloat16 element per "block" (2 bytes).
template <> struct quant_traits<bf16> { static constexpr int block_size = 1; static constexpr GgmlType type = GgmlType::bf16; static constexpr const char* name = "bf16"; };
/// q8_0: 32 elements in 34 bytes.
template <> struct quant_traits<block_q8_0> { static constexpr int block_size = QK8_0; static constexpr GgmlType type = GgmlType::q8_0; static constexpr const char* name = "q8_0"; };
/// q4_0: 32 elements in 18 bytes.
template <> struct quant_traits<block_q4_0> { static constexpr int block_size = QK4_0; static constexpr GgmlType type = GgmlType::q4_0; static constexpr const char* name = "q4_0"; };
/// q4_1: 32 elements in 20 bytes.
template <> struct quant_traits<block_q4_1> { static constexpr int block_size = QK4_1; static constexpr GgmlType type = GgmlType::q4_1; static constexpr const char* name = "q4_1"; };
/// q5_0: 32 elements in 22 bytes.
template <> struct quant_traits<block_q5_0> { static constexpr int block_size = QK5_0; static constexpr GgmlType type = GgmlType::q5_0; static constexpr const char* name = "q5_0"; };
/// q5_1: 32 elements in 24 bytes.
template <> struct quant_traits<block_q5_1> { static constexpr int block_size = QK5_1; static constexpr GgmlType type = GgmlType::q5_1; static constexpr const char* name = "q5_1"; };
/// q8_1 (activations): 32 elements in 36 bytes.
template <> struct quant_traits<block_q8_1> { static constexpr int block_size = QK8_0; static constexpr GgmlType type = GgmlType::q8_1; static constexpr const char* name = "q8_1"; };
/// q4_K: 256 elements in 144 bytes.
template <> struct quant_traits<block_q4_K> { static constexpr int block_size = QK_K; static constexpr GgmlType type = GgmlType::q4_K; static constexpr const char* name = "q4_K"; };
/// q5_K: 256 elements in 176 bytes.
template <> struct quant_traits<block_q5_K> { static constexpr int block_size = QK_K; static constexpr GgmlType type = GgmlType::q5_K; static constexpr const char* name = "q5_K"; };
/// q6_K: 256 elements in 210 bytes.
template <> struct quant_traits<block_q6_K> { static constexpr int block_size = QK_K; static constexpr GgmlType type = GgmlType::q6_K; static constexpr const char* name = "q6_K"; };
/// q8_K (activations): 256 elements in 292 bytes.
template <> struct quant_traits<block_q8_K> { static constexpr int block_size = QK_K; static constexpr GgmlType type = GgmlType::q8_K; static constexpr const char* name = "q8_K"; };
/// \var quant_traits<float>::block_size
/// Elements per block: 1.
/// \var quant_traits<float>::type
/// GGUF type id: GgmlType::f32.
/// \var quant_traits<float>::name
/// ggml's name of the type: "f32".
/// \var quant_traits<f16>::block_size
/// Elements per block: 1.
/// \var quant_traits<f16>::type
/// GGUF type id: GgmlType::f16.
/// \var quant_traits<f16>::name
/// ggml's name of the type: "f16".
/// \var quant_traits<bf16>::block_size
/// Elements per block: 1.
/// \var quant_traits<bf16>::type
/// GGUF type id: GgmlType::bf16.
/// \var quant_traits<bf16>::name
/// ggml's name of the type: "bf16".
/// \var quant_traits<block_q8_0>::block_size
/// Elements per block: QK8_0 (32).
/// \var quant_traits<block_q8_0>::type
/// GGUF type id: GgmlType::q8_0.
/// \var quant_traits<block_q8_0>::name
/// ggml's name of the type: "q8_0".
/// \var quant_traits<block_q4_0>::block_size
/// Elements per block: QK4_0 (32).
/// \var quant_traits<block_q4_0>::type
/// GGUF type id: GgmlType::q4_0.
/// \var quant_traits<block_q4_0>::name
/// ggml's name of the type: "q4_0".
/// \var quant_traits<block_q4_1>::block_size
/// Elements per block: QK4_1 (32).
/// \var quant_traits<block_q4_1>::type
/// GGUF type id: GgmlType::q4_1.
/// \var quant_traits<block_q4_1>::name
/// ggml's name of the type: "q4_1".
/// \var quant_traits<block_q5_0>::block_size
/// Elements per block: QK5_0 (32).
/// \var quant_traits<block_q5_0>::type
/// GGUF type id: GgmlType::q5_0.
/// \var quant_traits<block_q5_0>::name
/// ggml's name of the type: "q5_0".
/// \var quant_traits<block_q5_1>::block_size
/// Elements per block: QK5_1 (32).
/// \var quant_traits<block_q5_1>::type
/// GGUF type id: GgmlType::q5_1.
/// \var quant_traits<block_q5_1>::name
/// ggml's name of the type: "q5_1".
/// \var quant_traits<block_q8_1>::block_size
/// Elements per block: QK8_0 (32).
/// \var quant_traits<block_q8_1>::type
/// GGUF type id: GgmlType::q8_1.
/// \var quant_traits<block_q8_1>::name
/// ggml's name of the type: "q8_1".
/// \var quant_traits<block_q4_K>::block_size
/// Elements per block: QK_K (256).
/// \var quant_traits<block_q4_K>::type
/// GGUF type id: GgmlType::q4_K.
/// \var quant_traits<block_q4_K>::name
/// ggml's name of the type: "q4_K".
/// \var quant_traits<block_q5_K>::block_size
/// Elements per block: 256.
/// \var quant_traits<block_q5_K>::type
/// GGUF type id: GgmlType::q5_K.
/// \var quant_traits<block_q5_K>::name
/// ggml's name of the type: "q5_K".
/// \var quant_traits<block_q6_K>::block_size
/// Elements per block: QK_K (256).
/// \var quant_traits<block_q6_K>::type
/// GGUF type id: GgmlType::q6_K.
/// \var quant_traits<block_q6_K>::name
/// ggml's name of the type: "q6_K".
/// \var quant_traits<block_q8_K>::block_size
/// Elements per block: QK_K (256).
/// \var quant_traits<block_q8_K>::type
/// GGUF type id: GgmlType::q8_K.
/// \var quant_traits<block_q8_K>::name
/// ggml's name of the type: "q8_K".

/// Facts about a type id known only at run time (from a file).
struct TypeInfo {
  const char* name;  ///< ggml's type name ("q4_K"); nullptr for an unknown id
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
    case GgmlType::q5_K: return {"q5_K", 256, 176, true};
    case GgmlType::q6_K: return {"q6_K", 256, 210, true};
    case GgmlType::q8_K: return {"q8_K", 256, 292, false};
  }
  return {nullptr, 0, 0, false};
}

}  // namespace tessera
