// Linear layers over weights of any supported GGUF type, used in place.
// `Weight` is a typed-at-run-time view of a [n_out, n_in] matrix (one output
// feature per row, as GGUF stores it); linear() picks the kernel for its type:
// float-like weights multiply f32 activations directly, quantized weights
// quantize the activations once per call and use integer dot products.
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

namespace tessera::nn {

/// A weight matrix [n_out, n_in] of element type `type`, viewed in place (not owned).
struct Weight {
  GgmlType type = GgmlType::f32;
  const std::byte* data = nullptr;
  int64_t n_out = 0, n_in = 0;

  /// The matrix as blocks of T: [n_out, n_in / block_size].
  template <class T>
  TensorView<const T, 2> view() const {
    check(quant_traits<T>::type == type, "weight is ", type_info(static_cast<uint32_t>(type)).name, ", viewed as ",
          quant_traits<T>::name);
    return {reinterpret_cast<const T*>(data), {n_out, n_in / quant_traits<T>::block_size}};
  }
  size_t row_bytes() const {
    const TypeInfo ti = type_info(static_cast<uint32_t>(type));
    return static_cast<size_t>(n_in / ti.block_size) * ti.type_size;
  }
  size_t n_bytes() const { return row_bytes() * static_cast<size_t>(n_out); }
};

/// Calls f.template operator()<T>() with T the element type of `type`; Error for a type without kernels.
template <class F>
decltype(auto) visit_type(GgmlType type, F&& f) {
  switch (type) {
    case GgmlType::f32: return f.template operator()<float>();
    case GgmlType::f16: return f.template operator()<f16>();
    case GgmlType::bf16: return f.template operator()<bf16>();
    case GgmlType::q8_0: return f.template operator()<block_q8_0>();
    case GgmlType::q4_0: return f.template operator()<block_q4_0>();
    case GgmlType::q4_1: return f.template operator()<block_q4_1>();
    case GgmlType::q5_0: return f.template operator()<block_q5_0>();
    case GgmlType::q5_1: return f.template operator()<block_q5_1>();
    case GgmlType::q4_K: return f.template operator()<block_q4_K>();
    case GgmlType::q6_K: return f.template operator()<block_q6_K>();
    default: break;
  }
  const TypeInfo ti = type_info(static_cast<uint32_t>(type));
  fail("no kernels for weight type ", ti.name ? ti.name : "unknown", " (id ", static_cast<uint32_t>(type), ")");
}

template <class T>
inline constexpr bool is_float_like = std::is_same_v<T, float> || std::is_same_v<T, f16> || std::is_same_v<T, bf16>;

/// Scratch of linear(): quantized activations and gemm tiles, sized once for
/// the largest call so the decode loop allocates nothing.
class LinearWorkspace {
 public:
  LinearWorkspace() = default;
  /// For up to max_tokens rows of up to max_in features.
  LinearWorkspace(int64_t max_tokens, int64_t max_in)
      : max_tokens_(max_tokens), max_in_(max_in),
        // Room for the largest activation format: q8_1 (36 bytes / 32) or q8_K (292 bytes / 256), rounded up per row.
        act_(static_cast<size_t>(max_tokens) *
             std::max<size_t>(static_cast<size_t>(max_in / 32 + 1) * 36, static_cast<size_t>(max_in / 256 + 1) * 292)),
        floats_(static_cast<size_t>(backend::simd::gemm_scratch_size<f16>(max_in)) * sizeof(float)) {}

  template <class A>
  std::span<A> activations(int64_t n_blocks) {
    check(static_cast<size_t>(n_blocks) * sizeof(A) <= act_.size(), "linear workspace too small for ", n_blocks,
          " activation blocks");
    return {reinterpret_cast<A*>(act_.data()), static_cast<size_t>(n_blocks)};
  }
  std::span<float> floats() { return {reinterpret_cast<float*>(floats_.data()), floats_.size() / sizeof(float)}; }
  int64_t max_tokens() const { return max_tokens_; }
  int64_t max_in() const { return max_in_; }

 private:
  int64_t max_tokens_ = 0, max_in_ = 0;
  AlignedBuffer act_, floats_;
};

/// y = x W^T.  x [n_tokens, n_in], y [n_tokens, n_out] (rows packed).  Decode (n_tokens = 1) is a
/// memory-bound gemv; prefill a gemm.  Backend is backend::scalar or backend::simd (the namespace's Tag).
template <class Backend = backend::Default>
void linear(const Weight& w, TensorView<const float, 2> x, TensorView<float, 2> y, LinearWorkspace& ws) {
  TESSERA_CHECK(x.dim(1) == w.n_in && y.dim(1) == w.n_out && x.dim(0) == y.dim(0), "linear: weight [", w.n_out, ", ",
        w.n_in, "] with x ", shape_str(x.shape()), " into y ", shape_str(y.shape()));
  constexpr bool kScalar = std::is_same_v<Backend, backend::scalar::Tag>;
  visit_type(w.type, [&]<class T>() {
    const auto wv = w.view<T>();
    if constexpr (is_float_like<T>) {
      if constexpr (kScalar) backend::scalar::gemm<T>(wv, x, y);
      else backend::simd::gemm<T>(wv, x, y, ws.floats());
    } else {
      using A = typename backend::act_block_of<T>::type;
      const int64_t n_tok = x.dim(0), kb = w.n_in / quant_traits<A>::block_size;
      auto xq = ws.activations<A>(n_tok * kb);
      for (int64_t t = 0; t < n_tok; ++t) {
        const std::span<const float> xr(x.data() + t * x.stride(0), static_cast<size_t>(w.n_in));
        if constexpr (kScalar) backend::scalar::quantize_activations(xr, xq.subspan(t * kb, kb));
        else backend::simd::quantize_activations(xr, xq.subspan(t * kb, kb));
      }
      const TensorView<const A, 2> xqv(xq.data(), {n_tok, kb});
      if constexpr (kScalar) {
        backend::scalar::gemm(wv, xqv, y);
      } else if (n_tok == 1) {
        backend::simd::gemv(wv, std::span<const A>(xq.data(), kb), std::span<float>(y.data(), w.n_out));
      } else {
        backend::simd::gemm(wv, xqv, y);
      }
    }
  });
}

}  // namespace tessera::nn
