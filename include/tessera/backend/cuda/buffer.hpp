/// \file
/// Typed device memory with a shape: DeviceTensor<T, Rank> owns it (RAII),
/// DeviceView<T, Rank> points into it, as Tensor / TensorView do on the host.
/// Device data is always packed row-major, so a view is a pointer and a shape.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "tessera/backend/cuda/device.hpp"
#include "tessera/core/error.hpp"

namespace tessera::cuda {

namespace detail {
template <size_t Rank>
std::string dims_str(const std::array<int64_t, Rank>& s) {
  std::string out = "[";
  for (size_t i = 0; i < Rank; ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}
}  // namespace detail

/// A non-owning packed row-major view of device memory: T elements (or quant
/// blocks) in a [d0, ..., d(Rank-1)] shape. Cheap to copy; never dereferenced on the host.
template <class T, size_t Rank>
class DeviceView {
 public:
  using Shape = std::array<int64_t, Rank>;  ///< extents, outermost first
  DeviceView() = default;
  /// A view of the packed array at device address data with extents shape (not checked).
  DeviceView(T* data, Shape shape) : data_(data), shape_(shape) {}
  /// A view of const T from a view of T.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  DeviceView(const DeviceView<U, Rank>& o) : data_(o.data()), shape_(o.shape()) {}

  /// Device address of the first element.
  T* data() const { return data_; }
  /// Extents, outermost first.
  const Shape& shape() const { return shape_; }
  /// Extent of axis i (unchecked).
  int64_t dim(size_t i) const { return shape_[i]; }
  /// Number of elements (or blocks): the product of the extents.
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape_) n *= d;
    return n;
  }
  /// Bytes spanned: numel() * sizeof(T).
  size_t size_bytes() const { return static_cast<size_t>(numel()) * sizeof(T); }
  /// Whether the view has no elements.
  bool empty() const { return numel() == 0; }
  /// The shape as text, e.g. "[4, 128]", for error messages.
  std::string shape_str() const { return detail::dims_str(shape_); }

  /// Row i of the leading axis: a view of rank Rank-1.
  DeviceView<T, Rank - 1> operator[](int64_t i) const
    requires(Rank > 1)
  {
    typename DeviceView<T, Rank - 1>::Shape s{};
    for (size_t k = 1; k < Rank; ++k) s[k - 1] = shape_[k];
    return {data_ + i * (numel() / shape_[0]), s};
  }
  /// The same elements under another shape of equal size.
  template <size_t R2>
  DeviceView<T, R2> reshape(std::array<int64_t, R2> s) const {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    TESSERA_CHECK(n == numel(), "DeviceView::reshape: ", shape_str(), " to ", detail::dims_str(s));
    return {data_, s};
  }

 private:
  T* data_ = nullptr;
  Shape shape_{};
};

/// Owns device memory for a packed [d0, ..., d(Rank-1)] array of T. Movable,
/// not copyable; freed in the destructor. Contents start undefined.
template <class T, size_t Rank>
class DeviceTensor {
 public:
  using Shape = std::array<int64_t, Rank>;  ///< extents, outermost first
  DeviceTensor() = default;
  /// Allocates an uninitialised array of this shape. Error naming `what` on a negative
  /// extent or a failed allocation (out of memory included); zero elements allocate nothing.
  explicit DeviceTensor(Shape shape, const char* what = "DeviceTensor") : shape_(shape) {
    for (int64_t d : shape) check(d >= 0, what, ": negative extent in ", detail::dims_str(shape));
    data_ = static_cast<T*>(detail::device_alloc(view().size_bytes(), what));
  }
  ~DeviceTensor() { detail::device_free(data_); }
  /// Takes over o's memory; o keeps its shape but no memory.
  DeviceTensor(DeviceTensor&& o) noexcept : data_(std::exchange(o.data_, nullptr)), shape_(o.shape_) {}
  /// Frees this tensor's memory, then takes over o's.
  DeviceTensor& operator=(DeviceTensor&& o) noexcept {
    if (this != &o) {
      detail::device_free(data_);
      data_ = std::exchange(o.data_, nullptr);
      shape_ = o.shape_;
    }
    return *this;
  }
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;

  /// A view of the whole tensor.
  DeviceView<T, Rank> view() { return {data_, shape_}; }
  /// A read-only view of the whole tensor.
  DeviceView<const T, Rank> view() const { return {data_, shape_}; }
  /// Device address of the first element (nullptr when empty or moved from).
  T* data() { return data_; }
  /// Device address of the first element (nullptr when empty or moved from).
  const T* data() const { return data_; }
  /// Extents, outermost first.
  const Shape& shape() const { return shape_; }
  /// Extent of axis i (unchecked).
  int64_t dim(size_t i) const { return shape_[i]; }
  /// Number of elements: the product of the extents.
  int64_t numel() const { return view().numel(); }
  /// Bytes allocated: numel() * sizeof(T).
  size_t size_bytes() const { return view().size_bytes(); }

 private:
  T* data_ = nullptr;
  Shape shape_{};
};

/// Copies host elements into dst (blocking). Error if the sizes differ.
template <class T, size_t Rank>
void upload(const Stream& s, std::span<const T> host, DeviceView<T, Rank> dst) {
  TESSERA_CHECK(host.size() == static_cast<size_t>(dst.numel()), "cuda::upload: ", host.size(),
                " host elements into device ", dst.shape_str());
  detail::copy_to_device(s, dst.data(), host.data(), dst.size_bytes());
}

/// Copies src to host elements (blocking: the stream is synchronised first, so
/// every kernel queued before is finished). Error if the sizes differ.
template <class T, size_t Rank>
void download(const Stream& s, DeviceView<const T, Rank> src, std::span<T> host) {
  TESSERA_CHECK(host.size() == static_cast<size_t>(src.numel()), "cuda::download: device ", src.shape_str(),
                " into ", host.size(), " host elements");
  detail::copy_to_host(s, host.data(), src.data(), src.size_bytes());
}

/// A new device tensor holding a copy of host (blocking).
template <class T, size_t Rank>
DeviceTensor<T, Rank> to_device(const Stream& s, std::span<const T> host, std::array<int64_t, Rank> shape) {
  DeviceTensor<T, Rank> t(shape, "cuda::to_device");
  upload<T, Rank>(s, host, t.view());
  return t;
}

}  // namespace tessera::cuda
