/// \file
/// Tensor<T, Rank> owns 64-byte aligned storage; TensorView<T, Rank> is a
/// non-owning strided view (like std::mdspan) that every kernel takes. Strides
/// are in elements; T may be float, f16, bf16 or a quantized block type, in
/// which case one "element" is one block.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <ostream>
#include <span>
#include <string>
#include <type_traits>

#include "tessera/core/error.hpp"
#include "tessera/core/storage.hpp"

namespace tessera {

/// Extents of the Rank axes, outermost first (row-major).
template <int Rank>
using Shape = std::array<int64_t, Rank>;

/// A shape (or strides) for messages: "[2, 3, 4]".
template <size_t Rank>
std::string shape_str(const std::array<int64_t, Rank>& s) {
  std::string out = "[";
  for (size_t i = 0; i < Rank; ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

/// Row-major strides of a contiguous tensor of this shape.
template <size_t Rank>
constexpr std::array<int64_t, Rank> contiguous_strides(const std::array<int64_t, Rank>& shape) {
  std::array<int64_t, Rank> st{};
  int64_t s = 1;
  for (int i = static_cast<int>(Rank) - 1; i >= 0; --i) { st[i] = s; s *= shape[i]; }
  return st;
}

template <class T, int Rank> class Tensor;

/// Non-owning strided view. Cheap to copy; const-ness of T is the view's access.
template <class T, int Rank>
class TensorView {
  static_assert(Rank >= 1, "rank-0 views are not supported");

 public:
  using value_type = T;              ///< Element type (const for a read-only view).
  static constexpr int rank = Rank;  ///< Number of axes.

  TensorView() = default;
  /// Contiguous row-major view of shape over data.
  TensorView(T* data, const Shape<Rank>& shape) : data_(data), shape_(shape), strides_(contiguous_strides(shape)) {}
  /// View of shape over data with the given strides (in elements; not checked).
  TensorView(T* data, const Shape<Rank>& shape, const Shape<Rank>& strides) : data_(data), shape_(shape), strides_(strides) {}
  /// A mutable view converts to a read-only one.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
  TensorView(const TensorView<U, Rank>& o) : data_(o.data()), shape_(o.shape()), strides_(o.strides()) {}

  T* data() const { return data_; }                          ///< Element (0, ..., 0); nullptr for a default view.
  const Shape<Rank>& shape() const { return shape_; }        ///< Extent of each axis.
  const Shape<Rank>& strides() const { return strides_; }    ///< Step of each axis, in elements.
  int64_t dim(int d) const { return shape_[d]; }             ///< Extent of axis d (not range-checked).
  int64_t stride(int d) const { return strides_[d]; }        ///< Stride of axis d in elements (not range-checked).
  int64_t size() const { return std::accumulate(shape_.begin(), shape_.end(), int64_t{1}, std::multiplies<>()); }  ///< Number of elements (product of the extents).
  bool empty() const { return size() == 0; }                 ///< True when some extent is 0.

  /// True when the elements are packed row-major with no gaps (axes of extent
  /// 1 may have any stride: one row of a wider matrix is packed).
  bool is_contiguous() const {
    if (empty()) return true;
    int64_t want = 1;
    for (int d = Rank - 1; d >= 0; --d) {
      if (shape_[d] != 1 && strides_[d] != want) return false;
      want *= shape_[d];
    }
    return true;
  }
  /// True when the last axis is packed (stride 1): rows can be streamed.
  bool rows_contiguous() const { return shape_[Rank - 1] <= 1 || strides_[Rank - 1] == 1; }

  /// Element access; bounds-checked in debug builds.
  template <class... I>
  T& operator()(I... idx) const {
    static_assert(sizeof...(I) == Rank, "wrong number of indices");
    const std::array<int64_t, Rank> ix{static_cast<int64_t>(idx)...};
    int64_t off = 0;
    for (int d = 0; d < Rank; ++d) {
      TESSERA_DEBUG_CHECK(ix[d] >= 0 && ix[d] < shape_[d], "index ", ix[d], " out of range for axis ", d,
                          " of shape ", shape_str(shape_));
      off += ix[d] * strides_[d];
    }
    return data_[off];
  }

  /// Sub-view at index i of the first axis (rank drops by one).
  auto operator[](int64_t i) const requires(Rank > 1) {
    TESSERA_DEBUG_CHECK(i >= 0 && i < shape_[0], "row ", i, " out of range for shape ", shape_str(shape_));
    Shape<Rank - 1> sh{}, st{};
    std::copy(shape_.begin() + 1, shape_.end(), sh.begin());
    std::copy(strides_.begin() + 1, strides_.end(), st.begin());
    return TensorView<T, Rank - 1>(data_ + i * strides_[0], sh, st);
  }

  /// Row i of a matrix view as a span.  Error (in every build) unless the last
  /// axis is packed: a span cannot carry a stride.
  std::span<T> row(int64_t i) const requires(Rank == 2) {
    TESSERA_CHECK(rows_contiguous(), "row(", i, ") of a view of shape ", shape_str(shape_), " whose last axis has stride ",
                  strides_[1], ": a span needs packed elements (use operator() or contiguous())");
    TESSERA_DEBUG_CHECK(i >= 0 && i < shape_[0], "row ", i, " out of range for shape ", shape_str(shape_));
    return {data_ + i * strides_[0], static_cast<size_t>(shape_[1])};
  }
  /// All elements as one span.  Error (in every build) unless the view is
  /// contiguous: a slice of a wider tensor has gaps a span would read through.
  std::span<T> span() const {
    TESSERA_CHECK(is_contiguous(), "span() of a non-contiguous view: shape ", shape_str(shape_), ", strides ",
                  shape_str(strides_), " (packed would be ", shape_str(contiguous_strides(shape_)),
                  "); pass the view to a block that takes views, or copy it with contiguous()");
    return {data_, static_cast<size_t>(size())};
  }

  /// Elements [begin, end) along axis d; same rank. Throws on a bad range.
  TensorView narrow(int d, int64_t begin, int64_t end) const {
    TESSERA_CHECK(d >= 0 && d < Rank && begin >= 0 && begin <= end && end <= shape_[d], "narrow(", d, ", ", begin, ", ",
          end, ") out of range for shape ", shape_str(shape_));
    TensorView v = *this;
    v.data_ = data_ + begin * strides_[d];
    v.shape_[d] = end - begin;
    return v;
  }
  /// Alias of narrow on the first axis.
  TensorView slice(int64_t begin, int64_t end) const { return narrow(0, begin, end); }

  /// The packed last axis split into [n, last / n] (no copy; other axes keep their
  /// strides): [T, H * D] rows of a wider matrix become [T, H, D] heads.
  TensorView<T, Rank + 1> unflatten_last(int64_t n) const {
    TESSERA_CHECK(n > 0 && shape_[Rank - 1] % n == 0, "unflatten_last(", n, ") of shape ", shape_str(shape_),
                  ": the last axis (", shape_[Rank - 1], ") is not divisible into ", n, " equal parts");
    TESSERA_CHECK(strides_[Rank - 1] == 1 || shape_[Rank - 1] <= 1, "unflatten_last(", n, ") of shape ",
                  shape_str(shape_), ": the last axis has stride ", strides_[Rank - 1], ", it must be packed (stride 1)");
    Shape<Rank + 1> sh{}, st{};
    for (int a = 0; a < Rank - 1; ++a) { sh[a] = shape_[a]; st[a] = strides_[a]; }
    sh[Rank - 1] = n;
    sh[Rank] = shape_[Rank - 1] / n;
    st[Rank - 1] = sh[Rank];
    st[Rank] = 1;
    return TensorView<T, Rank + 1>(data_, sh, st);
  }

  /// Swaps two axes (no copy).
  TensorView transpose(int a = 0, int b = 1) const {
    check(a >= 0 && a < Rank && b >= 0 && b < Rank, "transpose(", a, ", ", b, ") on rank ", Rank);
    TensorView v = *this;
    std::swap(v.shape_[a], v.shape_[b]);
    std::swap(v.strides_[a], v.strides_[b]);
    return v;
  }
  /// New axis order: result axis i is this axis perm[i] (no copy).
  TensorView permute(const std::array<int, Rank>& perm) const {
    std::array<bool, Rank> seen{};
    TensorView v = *this;
    for (int i = 0; i < Rank; ++i) {
      check(perm[i] >= 0 && perm[i] < Rank && !seen[perm[i]], "permute: not a permutation of ", Rank, " axes");
      seen[perm[i]] = true;
      v.shape_[i] = shape_[perm[i]];
      v.strides_[i] = strides_[perm[i]];
    }
    return v;
  }
  /// Same elements with another shape; the view must be contiguous and sizes equal.
  template <int R2>
  TensorView<T, R2> reshape(const Shape<R2>& shape) const {
    const int64_t n = std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
    TESSERA_CHECK(is_contiguous(), "reshape of a non-contiguous view of shape ", shape_str(shape_), " (call contiguous())");
    TESSERA_CHECK(n == size(), "reshape ", shape_str(shape_), " -> ", shape_str(shape), ": element counts differ");
    return TensorView<T, R2>(data_, shape);
  }

  /// A packed copy (owning).
  Tensor<std::remove_const_t<T>, Rank> contiguous() const;

 private:
  T* data_ = nullptr;
  Shape<Rank> shape_{};
  Shape<Rank> strides_{};
};

/// Owning tensor, 64-byte aligned, zero-initialised, row-major. Move-only: copies are explicit (clone()).
template <class T, int Rank>
class Tensor {
  static_assert(std::is_trivially_copyable_v<T>, "tensor elements are raw bytes (float, f16, bf16, blocks)");

 public:
  Tensor() = default;
  /// Allocates a zero-filled tensor of this shape. Throws Error on a negative extent.
  explicit Tensor(const Shape<Rank>& shape) : shape_(shape) {
    for (int64_t d : shape) TESSERA_CHECK(d >= 0, "negative extent in shape ", shape_str(shape));
    buf_ = AlignedBuffer(static_cast<size_t>(size()) * sizeof(T));
    if (buf_.data()) std::memset(buf_.data(), 0, buf_.size());
  }
  Tensor(Tensor&&) noexcept = default;             ///< Takes the storage; the source is left empty.
  Tensor& operator=(Tensor&&) noexcept = default;  ///< Frees the current storage and takes the source's.

  /// A deep copy (new storage, same shape and elements).
  Tensor clone() const {
    Tensor t(shape_);
    if (size()) std::memcpy(t.buf_.data(), buf_.data(), buf_.size());
    return t;
  }

  T* data() { return reinterpret_cast<T*>(buf_.data()); }                    ///< First element, 64-byte aligned; nullptr when empty.
  const T* data() const { return reinterpret_cast<const T*>(buf_.data()); }  ///< First element, 64-byte aligned; nullptr when empty.
  const Shape<Rank>& shape() const { return shape_; }                        ///< Extent of each axis.
  int64_t dim(int d) const { return shape_[d]; }                             ///< Extent of axis d (not range-checked).
  int64_t size() const { return std::accumulate(shape_.begin(), shape_.end(), int64_t{1}, std::multiplies<>()); }  ///< Number of elements.
  size_t size_bytes() const { return static_cast<size_t>(size()) * sizeof(T); }  ///< Bytes of the elements: size() * sizeof(T).

  TensorView<T, Rank> view() { return {data(), shape_}; }               ///< Contiguous view of the whole tensor.
  TensorView<const T, Rank> view() const { return {data(), shape_}; }   ///< Read-only contiguous view of the whole tensor.
  operator TensorView<T, Rank>() { return view(); }                     ///< Implicit view(), so kernels taking views take tensors.
  operator TensorView<const T, Rank>() const { return view(); }         ///< Implicit read-only view().

  /// Element access as TensorView::operator(); bounds-checked in debug builds.
  template <class... I>
  T& operator()(I... idx) { return view()(idx...); }
  /// Read-only element access; bounds-checked in debug builds.
  template <class... I>
  const T& operator()(I... idx) const { return view()(idx...); }
  auto operator[](int64_t i) requires(Rank > 1) { return view()[i]; }        ///< Sub-view at index i of the first axis.
  auto operator[](int64_t i) const requires(Rank > 1) { return view()[i]; }  ///< Read-only sub-view at index i of the first axis.
  std::span<T> span() { return {data(), static_cast<size_t>(size())}; }                    ///< All elements (always contiguous).
  std::span<const T> span() const { return {data(), static_cast<size_t>(size())}; }        ///< All elements, read-only.

  /// @{
  /// The view operations, so a tensor needs no .view() first (each returns a
  /// view; see TensorView for the checks and errors).
  TensorView<T, Rank + 1> unflatten_last(int64_t n) { return view().unflatten_last(n); }
  TensorView<const T, Rank + 1> unflatten_last(int64_t n) const { return view().unflatten_last(n); }
  TensorView<T, Rank> narrow(int d, int64_t begin, int64_t end) { return view().narrow(d, begin, end); }
  TensorView<const T, Rank> narrow(int d, int64_t begin, int64_t end) const { return view().narrow(d, begin, end); }
  TensorView<T, Rank> slice(int64_t begin, int64_t end) { return view().slice(begin, end); }
  TensorView<const T, Rank> slice(int64_t begin, int64_t end) const { return view().slice(begin, end); }
  template <int R2>
  TensorView<T, R2> reshape(const Shape<R2>& shape) { return view().template reshape<R2>(shape); }
  template <int R2>
  TensorView<const T, R2> reshape(const Shape<R2>& shape) const { return view().template reshape<R2>(shape); }
  /// @}

 private:
  AlignedBuffer buf_;
  Shape<Rank> shape_{};
};

namespace detail {
template <class T, int Rank, int D>
void copy_axis(const TensorView<const T, Rank>& src, T* dst, const Shape<Rank>& dst_strides, int64_t src_off,
               int64_t dst_off) {
  if constexpr (D == Rank - 1) {
    for (int64_t i = 0; i < src.dim(D); ++i) dst[dst_off + i] = src.data()[src_off + i * src.stride(D)];
  } else {
    for (int64_t i = 0; i < src.dim(D); ++i)
      copy_axis<T, Rank, D + 1>(src, dst, dst_strides, src_off + i * src.stride(D), dst_off + i * dst_strides[D]);
  }
}
}  // namespace detail

template <class T, int Rank>
Tensor<std::remove_const_t<T>, Rank> TensorView<T, Rank>::contiguous() const {
  using U = std::remove_const_t<T>;
  Tensor<U, Rank> out(shape_);
  if (out.size() == 0) return out;
  detail::copy_axis<U, Rank, 0>(TensorView<const U, Rank>(data_, shape_, strides_), out.data(),
                                contiguous_strides(shape_), 0, 0);
  return out;
}

/// Views over raw memory (e.g. mmap'd weights).
template <class T, int Rank>
TensorView<T, Rank> make_view(T* data, const Shape<Rank>& shape) { return {data, shape}; }

/// Checks that a view has the expected shape; names the tensor on mismatch.
template <class T, int Rank>
void check_shape(const TensorView<T, Rank>& v, const Shape<Rank>& want, const char* what) {
  TESSERA_CHECK(v.shape() == want, what, ": expected shape ", shape_str(want), ", got ", shape_str(v.shape()));
}

}  // namespace tessera
