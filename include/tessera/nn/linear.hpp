/// \file
/// Linear layers over weights of any supported GGUF type, used in place.
/// `Weight` is a typed-at-run-time view of a [n_out, n_in] matrix (one output
/// feature per row, as GGUF stores it); linear() picks the kernel for its type:
/// float-like weights multiply f32 activations directly, quantized weights
/// quantize the activations once per call and use integer dot products.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>

#include "tessera/backend/backend.hpp"
#include "tessera/backend/scalar/matmul.hpp"
#include "tessera/backend/scalar/quant_matmul.hpp"
#include "tessera/backend/simd/matmul.hpp"
#include "tessera/backend/simd/quant_matmul.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/quant_blocks.hpp"
#include "tessera/core/storage.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/weight.hpp"

namespace tessera::nn {

/// Whether T is an unquantized element type (float, f16, bf16): linear() then runs a float gemm on x as it is,
/// where block types first quantize x.
template <class T>
inline constexpr bool is_float_like = std::is_same_v<T, float> || std::is_same_v<T, f16> || std::is_same_v<T, bf16>;

/// Scratch of linear(): quantized activations and gemm tiles.  Grows on demand
/// (like AttentionWorkspace); construct it with the largest shapes, or call
/// reserve(), so that the decode loop never allocates.
class LinearWorkspace {
 public:
  LinearWorkspace() = default;
  /// Sized for up to max_tokens rows of up to max_in features.
  LinearWorkspace(int64_t max_tokens, int64_t max_in) { reserve(max_tokens, max_in); }

  /// Grows (never shrinks) to hold a call with n_tokens rows of n_in features.
  void reserve(int64_t n_tokens, int64_t n_in) {
    if (n_tokens <= max_tokens_ && n_in <= max_in_) return;
    max_tokens_ = std::max(max_tokens_, n_tokens);
    max_in_ = std::max(max_in_, n_in);
    // Room for the largest activation format: q8_1 (36 bytes / 32) or q8_K (292 bytes / 256), rounded up per row.
    act_ = AlignedBuffer(static_cast<size_t>(max_tokens_) * std::max<size_t>(static_cast<size_t>(max_in_ / 32 + 1) * 36,
                                                                            static_cast<size_t>(max_in_ / 256 + 1) * 292));
    floats_ = AlignedBuffer(static_cast<size_t>(backend::simd::gemm_scratch_size<f16>(max_in_)) * sizeof(float));
  }

  /// The activation buffer as n_blocks blocks of A (x quantized for a block-type weight). Error when they
  /// exceed what reserve() sized.
  template <class A>
  std::span<A> activations(int64_t n_blocks) {
    check(static_cast<size_t>(n_blocks) * sizeof(A) <= act_.size(), "linear workspace: ", n_blocks, " ",
          quant_traits<A>::name, " activation blocks (", static_cast<size_t>(n_blocks) * sizeof(A),
          " bytes) exceed its ", act_.size(), " bytes; reserve(n_tokens, n_in) first");
    return {reinterpret_cast<A*>(act_.data()), static_cast<size_t>(n_blocks)};
  }
  std::span<float> floats() { return {reinterpret_cast<float*>(floats_.data()), floats_.size() / sizeof(float)}; }  ///< Float scratch of the f16 and bf16 gemm (weight tiles widened to float).
  int64_t max_tokens() const { return max_tokens_; }  ///< Most rows a call may have without growing.
  int64_t max_in() const { return max_in_; }  ///< Most input features a call may have without growing.

 private:
  int64_t max_tokens_ = 0, max_in_ = 0;
  AlignedBuffer act_, floats_;
};

namespace detail {
inline void check_linear(int64_t n_out, int64_t n_in, const char* type, const TensorView<const float, 2>& x,
                         const TensorView<float, 2>& y) {
  TESSERA_CHECK(x.dim(1) == n_in, "linear: ", type, " weight [", n_out, ", ", n_in, "] takes rows of ", n_in,
                " features, x is ", shape_str(x.shape()));
  TESSERA_CHECK(y.dim(1) == n_out && y.dim(0) == x.dim(0), "linear: ", type, " weight [", n_out, ", ", n_in,
                "] with x ", shape_str(x.shape()), " writes y [", x.dim(0), ", ", n_out, "], got ",
                shape_str(y.shape()));
  TESSERA_CHECK(x.rows_contiguous() && y.rows_contiguous(), "linear: the rows of x ", shape_str(x.shape()),
                " and y ", shape_str(y.shape()), " must be packed (last stride 1), got ", x.stride(1), " and ",
                y.stride(1));
}
}  // namespace detail

/// y = x W^T for a weight of compile-time element type T, w [n_out, n_in / block_size]
/// (instantiates only T's kernels: cheaper to compile than the Weight overload).
template <class Backend = backend::Default, WeightElement T>
void linear(TensorView<const T, 2> w, TensorView<const float, 2> x, TensorView<float, 2> y, LinearWorkspace& ws) {
  const int64_t n_in = w.dim(1) * quant_traits<T>::block_size;
  detail::check_linear(w.dim(0), n_in, quant_traits<T>::name, x, y);
  TESSERA_CHECK(w.stride(1) == 1 || w.dim(1) <= 1, "linear: weight rows must be packed");
  constexpr bool kScalar = std::is_same_v<Backend, backend::scalar::Tag>;
  if constexpr (is_float_like<T>) {
    if constexpr (kScalar) backend::scalar::gemm<T>(w, x, y);
    else {
      ws.reserve(x.dim(0), n_in);
      backend::simd::gemm<T>(w, x, y, ws.floats());
    }
  } else {
    using A = typename backend::act_block_of<T>::type;
    const int64_t n_tok = x.dim(0), kb = n_in / quant_traits<A>::block_size;
    ws.reserve(n_tok, n_in);
    auto xq = ws.activations<A>(n_tok * kb);
    for (int64_t t = 0; t < n_tok; ++t) {
      const std::span<const float> xr(x.data() + t * x.stride(0), static_cast<size_t>(n_in));
      if constexpr (kScalar) backend::scalar::quantize_activations(xr, xq.subspan(t * kb, kb));
      else backend::simd::quantize_activations(xr, xq.subspan(t * kb, kb));
    }
    const TensorView<const A, 2> xqv(xq.data(), {n_tok, kb});
    if constexpr (kScalar) {
      backend::scalar::gemm(w, xqv, y);
    } else if (n_tok == 1) {
      backend::simd::gemv(w, std::span<const A>(xq.data(), kb), std::span<float>(y.data(), w.dim(0)));
    } else {
      backend::simd::gemm(w, xqv, y);
    }
  }
}

/// The same over a mutable view.
template <class Backend = backend::Default, WeightElement T>
void linear(TensorView<T, 2> w, TensorView<const float, 2> x, TensorView<float, 2> y, LinearWorkspace& ws) {
  linear<Backend, T>(TensorView<const T, 2>(w), x, y, ws);
}

/// y = x W^T.  x [n_tokens, n_in], y [n_tokens, n_out] (rows packed, any row
/// stride).  Decode (n_tokens = 1) is a memory-bound gemv; prefill a gemm.
/// Backend is backend::scalar::Tag or backend::simd::Tag.  Dispatches on the
/// weight's run-time type, so every type's kernels are compiled in.
template <class Backend = backend::Default>
void linear(const Weight& w, TensorView<const float, 2> x, TensorView<float, 2> y, LinearWorkspace& ws) {
  const TypeInfo ti = type_info(static_cast<uint32_t>(w.type));
  detail::check_linear(w.n_out, w.n_in, ti.name ? ti.name : "unknown", x, y);
  visit_type(w.type, [&]<class T>() { linear<Backend, T>(w.view<T>(), x, y, ws); });
}

}  // namespace tessera::nn
