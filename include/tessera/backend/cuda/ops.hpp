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

/// The 8-bit blocks a GEMV quantizes its activations to: none (f32, f16,
/// bf16 weights take float x), q8_0 (q8_0, q4_0, q5_0 weights), q8_1 (q4_1,
/// q5_1), q8_K (q4_K, q6_K); split matrices as their GGUF type.  Weights whose
/// formats agree can share one quantized copy of x (x_quantized below).
enum class ActQuant : uint8_t { none, q8_0, q8_1, q8_K };
/// The activation format of weights of type t (an Error for types the GEMV does not take).
ActQuant act_quant(GgmlType t);
/// Bytes of mk activations quantized to q (gemv_workspace_bytes of a W of that format); 0 for none.
size_t act_quant_bytes(ActQuant q, int64_t mk);

/// y = W x.  w [N, K / block_elems<W>] (GGUF layout, rows packed), x [M, K],
/// y [M, N], M <= 8 (decode batches).  Quantized W: x is first quantized per
/// 32 (or 256) values to the int8 block the format pairs with (q8_0 / q8_1 /
/// q8_K, identical to the CPU's quantize_row), then integer dot products per
/// block; f32/f16/bf16 W: float dot products.  workspace: gemv_workspace_bytes<W>(M*K).
/// x_quantized: the workspace already holds x quantized to act_quant(W's type)
/// (add_rms_norm or swiglu_quant wrote it, for the same M*K values), so the
/// quantizer's launch is skipped and x gives only the shape (float W still read x).
/// Reads W once: bandwidth-bound, O(N K) bytes.
template <DeviceWeight W>
void gemv(const Stream& s, DeviceView<const W, 2> w, DeviceView<const float, 2> x, DeviceView<float, 2> y,
          DeviceView<std::byte, 1> workspace, bool x_quantized = false);

/// A q4_0, q8_0, q4_K or q6_K matrix [n, k] repacked for the decode GEMV
/// ("split" layout): per 32-value sub-block, its quants in one array and its
/// scales in others, so a lane reads a sub-block with one 16-byte load
/// straight from memory, which the GGUF blocks (18 to 210 bytes, 2-byte
/// aligned) do not allow.  The arrays, rows packed in each:
///
/// - q4_0: qs [n, k/32, 16] (byte t: value t in the low nibble, t + 16 in the
///   high one, as in GGUF), d [n, k/32] f16.
/// - q8_0: qs [n, k/32, 32] int8, d [n, k/32] f16.
/// - q4_K: qs [n, k/32, 16] nibbles ordered as q4_0, aux [n, k/256, 16] the
///   GGUF block header (d, dmin, the 12 bytes of 6-bit scales and mins).
/// - q6_K: qs [n, k/32, 16] low nibbles ordered as q4_0, aux [n, k/32, 8] the
///   top 2 bits (two words of 16 values; value 4i + j of a word at bit 8j + 2i),
///   sc [n, k/32, 2] the int8 scales, d [n, k/256] f16.
///
/// Every format keeps its GGUF size.  Rows [r0, r1) of a split matrix are a split matrix.
struct SplitWeight {
  GgmlType type = GgmlType::q4_0;  ///< block format (see supports())
  const std::byte* qs = nullptr;  ///< device: quants
  const f16* d = nullptr;  ///< device: f16 scales (q4_0, q8_0, q6_K)
  ///@{
  /// Rows, and values per row (a multiple of 32; of 256 for q4_K / q6_K).
  int64_t n = 0, k = 0;
  ///@}
  const std::byte* aux = nullptr;  ///< device: q4_K headers, q6_K top bits
  const int8_t* sc = nullptr;  ///< device: q6_K scales
  /// Rows [r0, r0 + rows).
  SplitWeight rows(int64_t r0, int64_t rows) const {
    const int64_t nb = k / 32;
    SplitWeight w = *this;
    w.n = rows;
    w.qs = qs + r0 * nb * quant_bytes(type);
    if (d) w.d = d + r0 * (type == GgmlType::q6_K ? nb / 8 : nb);
    if (aux) w.aux = aux + r0 * (type == GgmlType::q4_K ? nb / 8 * 16 : nb * 8);
    if (sc) w.sc = sc + r0 * nb * 2;
    return w;
  }
  /// Whether blocks of type t can be split (q4_0, q8_0, q4_K, q6_K).
  static bool supports(GgmlType t) {
    return t == GgmlType::q4_0 || t == GgmlType::q8_0 || t == GgmlType::q4_K || t == GgmlType::q6_K;
  }
  /// Bytes of one 32-value sub-block's quants.
  static int64_t quant_bytes(GgmlType t) { return t == GgmlType::q8_0 ? 32 : 16; }
  /// Bytes of one buffer holding every array of an [n, k] matrix (each 16-byte aligned); see at().
  static int64_t bytes(GgmlType t, int64_t n, int64_t k) {
    const int64_t a[4] = {plane(t, 0, n, k), plane(t, 1, n, k), plane(t, 2, n, k), plane(t, 3, n, k)};
    return a[0] + a[1] + a[2] + a[3];
  }
  /// The arrays of an [n, k] matrix in buf (bytes(t, n, k) bytes): qs, aux, sc, d, in that order.
  static SplitWeight at(GgmlType t, const std::byte* buf, int64_t n, int64_t k) {
    const int64_t o1 = plane(t, 0, n, k), o2 = o1 + plane(t, 1, n, k), o3 = o2 + plane(t, 2, n, k);
    SplitWeight w{t, buf, nullptr, n, k};
    if (t != GgmlType::q4_K) w.d = reinterpret_cast<const f16*>(buf + o3);
    if (t == GgmlType::q4_K || t == GgmlType::q6_K) w.aux = buf + o1;
    if (t == GgmlType::q6_K) w.sc = reinterpret_cast<const int8_t*>(buf + o2);
    return w;
  }
  /// Bytes of array i (0 qs, 1 aux, 2 sc, 3 d), rounded up to 16.
  static int64_t plane(GgmlType t, int i, int64_t n, int64_t k) {
    const int64_t nb = n * (k / 32);
    int64_t b = 0;
    if (i == 0) b = nb * quant_bytes(t);
    else if (i == 1) b = t == GgmlType::q4_K ? nb / 8 * 16 : t == GgmlType::q6_K ? nb * 8 : 0;
    else if (i == 2) b = t == GgmlType::q6_K ? nb * 2 : 0;
    else b = t == GgmlType::q4_K ? 0 : t == GgmlType::q6_K ? nb / 8 * 2 : nb * 2;
    return (b + 15) / 16 * 16;
  }
};

/// Host side of the repack: GGUF rows (`rows` of k values) become rows
/// [r0, r0 + rows) of the n-row split matrix in buf (SplitWeight::at(t, buf, n, k),
/// host memory).  O(rows k) bytes.
inline void split_rows(GgmlType t, const std::byte* gguf, int64_t rows, int64_t k, std::byte* buf, int64_t n,
                       int64_t r0 = 0) {
  check(SplitWeight::supports(t), "cuda::split_rows: q4_0, q8_0, q4_K or q6_K only");
  check(k % (t == GgmlType::q4_K || t == GgmlType::q6_K ? 256 : 32) == 0 && r0 >= 0 && r0 + rows <= n,
        "cuda::split_rows: rows ", r0, "+", rows, " of ", n, ", k = ", k);
  const SplitWeight all = SplitWeight::at(t, buf, n, k), w = all.rows(r0, rows);
  auto* qs = const_cast<std::byte*>(w.qs);
  auto* d = const_cast<f16*>(w.d);
  auto* aux = const_cast<std::byte*>(w.aux);
  auto* sc = const_cast<int8_t*>(w.sc);
  const int64_t nb = rows * (k / 32);
  if (t == GgmlType::q4_0 || t == GgmlType::q8_0) {
    const int64_t qb = SplitWeight::quant_bytes(t), bb = qb + 2;
    for (int64_t b = 0; b < nb; ++b) {
      std::memcpy(&d[b], gguf + b * bb, 2);
      std::memcpy(qs + b * qb, gguf + b * bb + 2, static_cast<size_t>(qb));
    }
    return;
  }
  const int64_t ns = nb / 8;  // super-blocks
  auto* q = reinterpret_cast<uint8_t*>(qs);
  for (int64_t s = 0; s < ns; ++s) {
    uint8_t v[256];  // 4-bit values (q4_K) or low nibbles (q6_K), in element order
    if (t == GgmlType::q4_K) {
      block_q4_K b;
      std::memcpy(&b, gguf + s * 144, 144);
      std::memcpy(aux + s * 16, &b, 16);
      for (int i = 0; i < 256; ++i) {
        const uint8_t byte = b.qs[32 * (i / 64) + i % 32];
        v[i] = (i / 32) % 2 ? byte >> 4 : byte & 15;
      }
    } else {
      block_q6_K b;
      std::memcpy(&b, gguf + s * 210, 210);
      std::memcpy(&d[s], &b.d, 2);
      uint8_t hi[256];
      for (int i = 0; i < 256; ++i) {
        const int h = i / 128, g = (i % 128) / 32, l = i % 32;
        const uint8_t lo = b.ql[64 * h + 32 * (g & 1) + l];
        v[i] = g < 2 ? lo & 15 : lo >> 4;
        hi[i] = (b.qh[32 * h + l] >> (2 * g)) & 3;
      }
      for (int j = 0; j < 8; ++j) {
        uint32_t word[2] = {0, 0};
        for (int e = 0; e < 32; ++e)
          word[e / 16] |= static_cast<uint32_t>(hi[32 * j + e]) << (8 * (e % 4) + 2 * ((e % 16) / 4));
        std::memcpy(aux + (s * 8 + j) * 8, word, 8);
        sc[(s * 8 + j) * 2] = b.scales[2 * j];
        sc[(s * 8 + j) * 2 + 1] = b.scales[2 * j + 1];
      }
    }
    for (int j = 0; j < 8; ++j)
      for (int e = 0; e < 16; ++e)
        q[(s * 8 + j) * 16 + e] = static_cast<uint8_t>(v[32 * j + e] | (v[32 * j + e + 16] << 4));
  }
}

/// y = W x over a split matrix: as gemv<block_q4_0 / q8_0 / q4_K / q6_K> (the
/// same int8 activations, the same integer block sums).  Each warp owns a run
/// of rows and streams them with the next sub-blocks' loads issued before the
/// current ones are used.  x [M, k], y [M, n], M <= 8; workspace
/// gemv_workspace_bytes of the GGUF type (M * k); x_quantized as gemv().  O(n k) bytes.
void gemv_split(const Stream& s, const SplitWeight& w, DeviceView<const float, 2> x, DeviceView<float, 2> y,
                DeviceView<std::byte, 1> workspace, bool x_quantized = false);

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

/// The residual add, rms_norm and the next GEMV's quantizer as one kernel (a
/// block per row): x += dx (skipped when dx is empty), out = rms_norm(x, w)
/// exactly as add() then rms_norm() compute them, and for q != none out
/// quantized into `act` exactly as gemv / gemv_split quantize it for weights
/// with act_quant(type) == q, which are then called with x_quantized.  x, dx,
/// out [T, n]; out may be empty when q != none (nothing reads the floats);
/// n % 32 == 0 for q8_0 / q8_1, n % 256 == 0 for q8_K; act holds at least
/// act_quant_bytes(q, T n) bytes.  O(T n).
void add_rms_norm(const Stream& s, DeviceView<float, 2> x, DeviceView<const float, 2> dx, DeviceView<const float, 1> w,
                  float eps, DeviceView<float, 2> out, ActQuant q, DeviceView<std::byte, 1> act);

/// swiglu() and the next GEMV's quantizer as one kernel: out = silu(gate) * up,
/// and for q != none its values quantized into `act` as add_rms_norm does.
/// gate, up, out [T, n] (out may alias gate; empty when q != none and the
/// floats are not wanted); n as add_rms_norm.  O(T n).
void swiglu_quant(const Stream& s, DeviceView<const float, 2> gate, DeviceView<const float, 2> up,
                  DeviceView<float, 2> out, ActQuant q, DeviceView<std::byte, 1> act);

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
