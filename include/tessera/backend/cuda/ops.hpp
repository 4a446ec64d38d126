/// \file
/// The per-token kernels of tessera::cuda: quantized GEMV and prefill GEMM,
/// norms, rope, gated activations, residual add, embedding gather, softmax and
/// on-device argmax / top-k. One function per kernel; every one queues work on
/// the given stream and returns at once (errors in arguments throw before).
/// Shapes are in elements (for quantized types, in blocks along the last axis).
#pragma once

#include <cstdint>
#include <cstring>

#include "tessera/backend/cuda/buffer.hpp"
#include "tessera/backend/rope_params.hpp"
#include "tessera/core/quant_blocks.hpp"

namespace tessera::cuda {

/// Weight element types the GEMV, GEMM and embedding kernels take: f32, f16,
/// bf16 and the GGUF blocks q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q6_K.
template <class W>
concept DeviceWeight =
    std::is_same_v<W, float> || std::is_same_v<W, f16> || std::is_same_v<W, bf16> || std::is_same_v<W, block_q8_0> ||
    std::is_same_v<W, block_q4_0> || std::is_same_v<W, block_q4_1> || std::is_same_v<W, block_q5_0> ||
    std::is_same_v<W, block_q5_1> || std::is_same_v<W, block_q4_K> || std::is_same_v<W, block_q6_K>;

/// Elements in one W (32 or 256 for quant blocks, 1 otherwise).
template <DeviceWeight W>
inline constexpr int block_elems = quant_traits<W>::block_size;

/// Bytes of the scratch gemv() needs for K activations (their 8-bit quantized
/// copy, for quantized W; 0 for f32/f16/bf16).
template <DeviceWeight W>
size_t gemv_workspace_bytes(int64_t k);

/// y = W x.  w [N, K / block_elems<W>] (GGUF layout, rows packed), x [M, K],
/// y [M, N], M <= 8 (decode batches).  Quantized W: x is first quantized per
/// 32 (or 256) values to the int8 block the format pairs with (q8_0 / q8_1 /
/// q8_K, identical to the CPU's quantize_row), then integer dot products per
/// block; f32/f16/bf16 W: float dot products.  workspace: gemv_workspace_bytes<W>(M*K).
/// Reads W once: bandwidth-bound, O(N K) bytes.
template <DeviceWeight W>
void gemv(const Stream& s, DeviceView<const W, 2> w, DeviceView<const float, 2> x, DeviceView<float, 2> y,
          DeviceView<std::byte, 1> workspace);

/// A q4_0 or q8_0 matrix [n, k] repacked for the decode GEMV ("split"
/// layout): every block's quants in one array, qs [n, k/32, 16 or 32 bytes],
/// its f16 scales in another, d [n, k/32].  A lane then reads a block's quants
/// with one or two 16-byte loads straight from memory, which GGUF's 18- and
/// 34-byte blocks (2-byte aligned) do not allow.  Rows are packed in both
/// arrays, so rows [r0, r1) of a split matrix are a split matrix.
struct SplitWeight {
  GgmlType type = GgmlType::q4_0;  ///< block format: q4_0 or q8_0 (see supports())
  const std::byte* qs = nullptr;  ///< device
  const f16* d = nullptr;  ///< device
  ///@{
  /// Rows, and values per row (a multiple of 32).
  int64_t n = 0, k = 0;
  ///@}
  /// Rows [r0, r0 + rows).
  SplitWeight rows(int64_t r0, int64_t rows) const {
    return {type, qs + r0 * (k / 32) * quant_bytes(type), d + r0 * (k / 32), rows, k};
  }
  /// Whether blocks of type t can be split (q4_0 and q8_0 only).
  static bool supports(GgmlType t) { return t == GgmlType::q4_0 || t == GgmlType::q8_0; }
  /// Bytes of one block's quants.
  static int64_t quant_bytes(GgmlType t) { return t == GgmlType::q4_0 ? 16 : 32; }
};

/// Host side of the repack: n GGUF rows of k values (q4_0 or q8_0 blocks) into
/// qs [n * k/32 * quant_bytes] and d [n * k/32].  O(n k) bytes.
inline void split_rows(GgmlType t, const std::byte* gguf, int64_t n, int64_t k, std::byte* qs, f16* d) {
  check(SplitWeight::supports(t), "cuda::split_rows: only q4_0 and q8_0 split");
  const int64_t nb = n * (k / 32), qb = SplitWeight::quant_bytes(t), bb = qb + 2;
  for (int64_t b = 0; b < nb; ++b) {
    const std::byte* src = gguf + b * bb;
    std::memcpy(&d[b], src, 2);
    std::memcpy(qs + b * qb, src + 2, static_cast<size_t>(qb));
  }
}

/// y = W x over a split matrix: as gemv<block_q4_0 / block_q8_0> (the same
/// int8 activations, the same integer block sums), each warp a row, each lane
/// four blocks in flight per step.  x [M, k], y [M, n], M <= 8;
/// workspace gemv_workspace_bytes<block_q8_0>(M * k).  O(n k) bytes.
void gemv_split(const Stream& s, const SplitWeight& w, DeviceView<const float, 2> x, DeviceView<float, 2> y,
                DeviceView<std::byte, 1> workspace);

/// y = x W^T over a split matrix, as gemm(): W dequantized to bf16, one cuBLAS product.
void gemm_split(const Stream& s, const SplitWeight& w, DeviceView<const float, 2> x, DeviceView<float, 2> y,
                DeviceView<std::byte, 1> workspace);

/// Bytes of the scratch gemm() needs: W dequantized to bf16 ([N, K]) and x as bf16 ([M, K]).
size_t gemm_workspace_bytes(int64_t m, int64_t n, int64_t k);

/// y = x W^T for prefill.  w [N, K / block_elems<W>], x [M, K] f32, y [M, N] f32.
/// W is dequantized to bf16 once, x rounded to bf16, then one tensor-core GEMM
/// (cuBLAS where the build has it, else tessera's tiled kernel) accumulating in f32.
/// O(M N K) flops + O(N K) bytes of dequantization.
template <DeviceWeight W>
void gemm(const Stream& s, DeviceView<const W, 2> w, DeviceView<const float, 2> x, DeviceView<float, 2> y,
          DeviceView<std::byte, 1> workspace);

/// out[t, :] = dequantize(table[ids[t], :]).  table [n_vocab, n_embd / block_elems<W>],
/// ids [T] int32 on the device, out [T, n_embd].  An id outside [0, n_vocab)
/// gives a row of NaN (the device cannot throw; the host checks ids it knows).  O(T n_embd).
template <DeviceWeight W>
void embedding(const Stream& s, DeviceView<const W, 2> table, DeviceView<const int32_t, 1> ids,
               DeviceView<float, 2> out);

/// out[t, i] = x[t, i] / sqrt(mean_i x[t, i]^2 + eps) * w[i].  x, out [T, n]; w [n]; out may be x.  O(T n).
void rms_norm(const Stream& s, DeviceView<const float, 2> x, DeviceView<const float, 1> w, float eps,
              DeviceView<float, 2> out);

/// out[t, i] = (x[t, i] - mean) / sqrt(var + eps) * w[i] + b[i]; b may be an
/// empty view (no bias).  x, out [T, n]; w, b [n]; out may be x.  O(T n).
void layer_norm(const Stream& s, DeviceView<const float, 2> x, DeviceView<const float, 1> w,
                DeviceView<const float, 1> b, float eps, DeviceView<float, 2> out);

/// Rotates x in place as backend::scalar::rope does (interleaved or neox pairs,
/// linear / NTK / YaRN scaling).  x [T, n_heads, head_dim], pos [T] int32 on the device.  O(T n_heads n_dims).
void rope(const Stream& s, DeviceView<float, 3> x, DeviceView<const int32_t, 1> pos, const RopeParams& p);

///@{
/// Gated activations: out = silu(gate) * up (SwiGLU) or gelu(gate) * up with
/// gelu's tanh form (GeGLU).  All [T, n]; out may alias an input.  O(T n).
void swiglu(const Stream& s, DeviceView<const float, 2> gate, DeviceView<const float, 2> up, DeviceView<float, 2> out);
void geglu(const Stream& s, DeviceView<const float, 2> gate, DeviceView<const float, 2> up, DeviceView<float, 2> out);
///@}

/// out = a + b (the residual add).  All [T, n]; out may alias an input.  O(T n).
void add(const Stream& s, DeviceView<const float, 2> a, DeviceView<const float, 2> b, DeviceView<float, 2> out);

/// Row-wise softmax: out[r, i] = exp(x[r, i] - max_r) / sum_i exp(x[r, i] - max_r).  x, out [R, n].  O(R n).
void softmax(const Stream& s, DeviceView<const float, 2> x, DeviceView<float, 2> out);

/// out[r] = the first index of the largest x[r, :] (NaN never wins).  x [R, n], out [R].  O(R n).
void argmax(const Stream& s, DeviceView<const float, 2> x, DeviceView<int32_t, 1> out);

/// The k largest values of each row, largest first (ties: lower index first).
/// x [R, n], idx / val [R, k], 1 <= k <= 64 and k <= n.  k passes over each row: O(R n k).
void top_k(const Stream& s, DeviceView<const float, 2> x, DeviceView<int32_t, 2> idx, DeviceView<float, 2> val);

///@{
/// out[i] = in[i] rounded to nearest f16 / bf16, or widened back to f32.  n values, O(n).
template <class H>
  requires std::is_same_v<H, f16> || std::is_same_v<H, bf16>
void convert(const Stream& s, DeviceView<const float, 1> in, DeviceView<H, 1> out);
template <class H>
  requires std::is_same_v<H, f16> || std::is_same_v<H, bf16>
void convert(const Stream& s, DeviceView<const H, 1> in, DeviceView<float, 1> out);
///@}

}  // namespace tessera::cuda
