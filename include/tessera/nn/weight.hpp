/// \file
/// nn::Weight: a weight matrix [n_out, n_in] of any supported GGUF type, viewed
/// in place (not owned), and visit_type, which turns its run-time type into a
/// compile-time one. Light on purpose: the linear kernels live in nn/linear.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "tessera/core/error.hpp"
#include "tessera/core/half.hpp"
#include "tessera/core/quant_blocks.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::nn {

/// Calls `f.template operator()<T>()` with T the element type of `type`; Error for a type without kernels.
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
    case GgmlType::q5_K: return f.template operator()<block_q5_K>();
    case GgmlType::q6_K: return f.template operator()<block_q6_K>();
    default: break;
  }
  const TypeInfo ti = type_info(static_cast<uint32_t>(type));
  fail("no kernels for weight type ", ti.name ? ti.name : "unknown", " (id ", static_cast<uint32_t>(type), ")");
}

/// Element types linear() has kernels for: float, f16, bf16 and the GGUF blocks.
template <class T>
concept WeightElement = std::is_same_v<T, float> || std::is_same_v<T, f16> || std::is_same_v<T, bf16> ||
                        std::is_same_v<T, block_q8_0> || std::is_same_v<T, block_q4_0> ||
                        std::is_same_v<T, block_q4_1> || std::is_same_v<T, block_q5_0> ||
                        std::is_same_v<T, block_q5_1> || std::is_same_v<T, block_q4_K> ||
                        std::is_same_v<T, block_q5_K> || std::is_same_v<T, block_q6_K>;

/// A weight matrix [n_out, n_in] of element type `type`, viewed in place (not
/// owned): one output feature per row, as GGUF stores it.  Build one with
/// from() (your tensors) or models::gguf_weight() (a GGUF file).
struct Weight {
  GgmlType type = GgmlType::f32;  ///< Element type of the stored matrix
  const std::byte* data = nullptr;  ///< First byte of row 0; rows are packed, row_bytes() apart
  /// Rows (output features) and elements per row (input features; a multiple of the type's block size).
  ///@{
  int64_t n_out = 0, n_in = 0;
  ///@}

  /// The weight over a packed view w [n_out, n_in / block_size] of T (float,
  /// f16, bf16 or a GGUF block type).  The view's memory must outlive the Weight.
  template <WeightElement T>
  static Weight from(TensorView<const T, 2> w) {
    TESSERA_CHECK(w.is_contiguous(), "Weight::from: the ", quant_traits<T>::name, " view of shape ", shape_str(w.shape()),
                  " is not packed (strides ", shape_str(w.strides()), "); copy it with contiguous() first");
    return {quant_traits<T>::type, reinterpret_cast<const std::byte*>(w.data()), w.dim(0),
            w.dim(1) * quant_traits<T>::block_size};
  }
  /// The same over a mutable view.
  template <WeightElement T>
  static Weight from(TensorView<T, 2> w) { return from(TensorView<const T, 2>(w)); }
  /// The weight over a packed tensor, which must outlive the Weight.
  template <WeightElement T>
  static Weight from(const Tensor<T, 2>& w) { return from(w.view()); }
  /// A temporary tensor would leave the Weight dangling.
  template <WeightElement T>
  static Weight from(Tensor<T, 2>&&) = delete;

  /// The matrix as blocks of T: [n_out, n_in / block_size].
  template <class T>
  TensorView<const T, 2> view() const {
    check(quant_traits<T>::type == type, "weight is ", type_info(static_cast<uint32_t>(type)).name, ", viewed as ",
          quant_traits<T>::name);
    return {reinterpret_cast<const T*>(data), {n_out, n_in / quant_traits<T>::block_size}};
  }
  /// Bytes per row: n_in / block size blocks of the type's block bytes.
  size_t row_bytes() const {
    const TypeInfo ti = type_info(static_cast<uint32_t>(type));
    return static_cast<size_t>(n_in / ti.block_size) * ti.type_size;
  }
  size_t n_bytes() const { return row_bytes() * static_cast<size_t>(n_out); }  ///< Bytes of the whole matrix.
  /// Rows [r0, r0 + n) as a weight of their own, in place (the halves of a
  /// fused gate/up tensor, the thirds of a fused QKV).  Error when out of range.
  Weight rows(int64_t r0, int64_t n) const {
    check(r0 >= 0 && n >= 0 && r0 + n <= n_out, "Weight::rows: rows [", r0, ", ", r0 + n, ") of ", n_out);
    return {type, data + static_cast<size_t>(r0) * row_bytes(), n, n_in};
  }
};

}  // namespace tessera::nn
