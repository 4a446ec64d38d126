/// \file
/// The GGUF reader: GgufFile parses a file (mapped, or a buffer in memory) with
/// every read bounds-checked, validates each tensor (type, shape, alignment,
/// extent, overlap) and hands out zero-copy typed views of tensor data.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/quant_blocks.hpp"
#include "tessera/core/storage.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/io/gguf_cursor.hpp"
#include "tessera/io/gguf_value.hpp"

namespace tessera::io {

/// One tensor of the file. data points into the file's bytes; it lives as long as the GgufFile (or a copy of it).
struct GgufTensorInfo {
  std::string name;  ///< The tensor's name, unique in the file
  uint32_t type = 0;  ///< ggml type id (GgmlType)
  std::vector<int64_t> shape;  ///< GGUF order: shape[0] is the row length (innermost), 1 to 4 dims
  uint64_t offset = 0;  ///< bytes from the start of the data section
  size_t n_bytes = 0;  ///< Size of the data: n_elements / block size * bytes per block
  const std::byte* data = nullptr;  ///< First byte of the data, in the file's bytes

  /// Product of the shape's extents.
  int64_t n_elements() const {
    return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
  }
  std::span<const std::byte> bytes() const { return {data, n_bytes}; }  ///< The data, [n_bytes].
  const char* type_name() const { return type_info(type).name; }  ///< Name of the ggml type ("q4_K"), or nullptr for an unknown id.
};

namespace detail {

// Header facts and the tensors' layout, as parsed and validated.
struct GgufLayout {
  uint32_t version = 0;
  size_t alignment = kGgufDefaultAlignment;
  size_t data_offset = 0;  // start of the data section, in file bytes
  GgufMetadata meta;
  std::vector<GgufTensorInfo> tensors;
  std::unordered_map<std::string, size_t, StringHash, std::equal_to<>> index;
};

// Parses and validates the whole file in [data, data + size).
class GgufParser {
 public:
  GgufParser(const std::byte* data, size_t size, std::string where) : data_(data), size_(size), c_(data, size, std::move(where)) {}

  GgufLayout parse() {
    const auto [n_tensors, n_kv] = parse_header();
    parse_metadata(n_kv);
    parse_alignment();
    parse_tensor_infos(n_tensors);
    place_tensor_data();
    return std::move(out_);
  }

 private:
  std::pair<uint64_t, uint64_t> parse_header() {
    const auto magic = c_.read<uint32_t>("magic");
    if (magic != kGgufMagic) c_.fail_at(0, "magic", "not a GGUF file (expected \"GGUF\", found 0x", std::hex, magic, ")");
    const auto version = c_.read<uint32_t>("version");
    if (version == 1) c_.fail_at(4, "version", "GGUF v1 (32-bit counts) is not supported; v2 and v3 are");
    if (version != 2 && version != 3)
      c_.fail_at(4, "version", "unsupported GGUF version ", version,
                 (version & 0xffff) == 0 ? " (a big-endian file?)" : "", "; v2 and v3 are supported");
    out_.version = version;
    const auto n_tensors = c_.read<uint64_t>("tensor count");
    const auto n_kv = c_.read<uint64_t>("metadata count");
    // The smallest entry is 13 bytes (key length, type, a u8) and the smallest tensor info 32 (name length,
    // dimension count, one dimension, type, offset): counts past what the bytes left can hold are corrupt.
    if (n_kv > c_.remaining() / 13)
      c_.fail_at(16, "metadata count", n_kv, " entries cannot fit in the ", c_.remaining(), " bytes left");
    if (n_tensors > (c_.remaining() - 13 * n_kv) / 32)
      c_.fail_at(8, "tensor count", n_tensors, " tensor infos cannot fit in the ", c_.remaining(),
                 " bytes left after the metadata");
    return {n_tensors, n_kv};
  }

  void parse_metadata(uint64_t n_kv) {
    for (uint64_t i = 0; i < n_kv; ++i) {
      const size_t at = c_.offset();
      c_.set_context("entry #" + std::to_string(i));
      std::string key = c_.read_string("metadata key");
      c_.set_context("key '" + printable(key) + "'");
      if (out_.meta.has(key)) c_.fail_at(at, "key '" + printable(key) + "'", "duplicate metadata key");
      const GgufValueType t = read_value_type(c_, "value type");
      if (key == "general.alignment") alignment_at_ = c_.offset();
      out_.meta.add(std::move(key), read_value(c_, t, 0));
    }
    c_.set_context("");
  }

  void parse_alignment() {
    const GgufValue* v = out_.meta.find("general.alignment");
    if (!v) return;
    const auto a = v->to<uint32_t>();
    if (!a || *a == 0 || !std::has_single_bit(*a))
      c_.fail_at(alignment_at_, "general.alignment", to_string(*v), " is not a power of two");
    out_.alignment = *a;
  }

  void parse_tensor_infos(uint64_t n_tensors) {
    out_.tensors.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
      const size_t at = c_.offset();
      c_.set_context("tensor info #" + std::to_string(i));
      GgufTensorInfo t;
      t.name = c_.read_string("tensor name");
      const std::string what = "tensor '" + printable(t.name) + "'";
      c_.set_context(what);
      if (!out_.index.emplace(t.name, out_.tensors.size()).second) c_.fail_at(at, what, "duplicate tensor name");
      read_shape_and_type(t, what);
      offset_at_.push_back(c_.offset());
      t.offset = c_.read<uint64_t>("data offset");
      out_.tensors.push_back(std::move(t));
    }
    c_.set_context("");
  }

  void read_shape_and_type(GgufTensorInfo& t, const std::string& what) {
    const size_t dims_at = c_.offset();
    const auto n_dims = c_.read<uint32_t>("dimension count");
    if (n_dims < 1 || n_dims > kGgufMaxDims)
      c_.fail_at(dims_at, "dimension count of " + what, n_dims, " dimensions (1 to ", kGgufMaxDims, " supported)");
    int64_t n_nonzero = 1;  // product of the non-zero extents: if it fits, every partial product does
    for (uint32_t d = 0; d < n_dims; ++d) {
      const auto e = c_.read<int64_t>("shape");
      if (e < 0) c_.fail_at(dims_at, "shape of " + what, "dimension ", d, " is negative (", e, ")");
      if (e > 0 && __builtin_mul_overflow(n_nonzero, e, &n_nonzero))
        c_.fail_at(dims_at, "shape of " + what, "element count overflows int64 at dimension ", d, " (", e, ")");
      t.shape.push_back(e);
    }
    const size_t type_at = c_.offset();
    t.type = c_.read<uint32_t>("type");
    const TypeInfo ti = type_info(t.type);
    if (!ti.name) c_.fail_at(type_at, "type of " + what, "unknown ggml type id ", t.type);
    if (t.shape[0] % ti.block_size != 0)
      c_.fail_at(dims_at, "shape of " + what, "row length ", t.shape[0], " is not a multiple of the ", ti.name,
                 " block size ", ti.block_size);
    uint64_t n_bytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(t.n_elements() / ti.block_size), ti.type_size, &n_bytes) ||
        n_bytes > std::numeric_limits<size_t>::max())
      c_.fail_at(dims_at, "shape of " + what, "byte size overflows");
    t.n_bytes = static_cast<size_t>(n_bytes);
  }

  // Data section: right after the infos, padded to the alignment. Each tensor must be aligned, inside the
  // file, and apart from the others.
  void place_tensor_data() {
    const size_t a = out_.alignment, end_of_infos = c_.offset();
    out_.data_offset = end_of_infos + (a - end_of_infos % a) % a;  // end_of_infos <= size_, a <= 2^32: no overflow
    auto& ts = out_.tensors;
    if (!ts.empty() && out_.data_offset > size_)
      c_.fail_at(end_of_infos, "tensor data section", "starts at byte ", out_.data_offset,
                 ", past the end of the file (", size_, " bytes; truncated?)");
    for (size_t i = 0; i < ts.size(); ++i) {
      GgufTensorInfo& t = ts[i];
      const std::string what = "data offset of tensor '" + printable(t.name) + "'";
      if (t.offset % a != 0) c_.fail_at(offset_at_[i], what, t.offset, " is not a multiple of general.alignment ", a);
      const size_t room = size_ - out_.data_offset;
      if (t.offset > room || t.n_bytes > room - t.offset)
        c_.fail_at(offset_at_[i], what, t.n_bytes, " bytes at data offset ", t.offset, " (data section at byte ",
                   out_.data_offset, ") reach past the end of the file (", size_, " bytes; truncated?)");
      t.data = data_ + out_.data_offset + t.offset;
    }
    std::vector<size_t> order(ts.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return ts[x].offset < ts[y].offset; });
    for (size_t k = 1; k < order.size(); ++k) {
      const GgufTensorInfo &prev = ts[order[k - 1]], &cur = ts[order[k]];
      if (prev.offset + prev.n_bytes > cur.offset)  // both within the file: no overflow
        c_.fail_at(offset_at_[order[k]], "data offset of tensor '" + printable(cur.name) + "'", cur.offset,
                   " overlaps tensor '", printable(prev.name), "' (data offset ", prev.offset, ", ", prev.n_bytes,
                   " bytes)");
    }
  }

  const std::byte* data_;
  size_t size_;
  GgufCursor c_;
  GgufLayout out_;
  size_t alignment_at_ = 0;
  std::vector<size_t> offset_at_;  // file byte of each tensor's data offset field
};

}  // namespace detail

/// A parsed, validated GGUF v2/v3 file: metadata, tensor infos, and the bytes they point into (mapped or owned).
/// Copies share the bytes. Every malformed file raises Error naming the field at fault and its byte offset.
class GgufFile {
 public:
  /// Maps path read-only and parses it; tensor data stays in the mapping (zero-copy). O(metadata + tensor infos).
  static GgufFile open(const std::string& path) {
    auto map = std::make_shared<MappedFile>(path);
    const std::byte* data = map->data();
    const size_t size = map->size();
    return GgufFile(std::move(map), data, size, path);
  }
  /// Parses a file held in memory, taking ownership of the bytes. name appears in error messages.
  static GgufFile from_bytes(std::vector<std::byte> bytes, std::string name = "<memory>") {
    auto owned = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
    const std::byte* data = owned->data();
    const size_t size = owned->size();
    return GgufFile(std::move(owned), data, size, std::move(name));
  }

  const GgufMetadata& meta() const { return layout_.meta; }  ///< The metadata key-value pairs, in file order.
  uint32_t version() const { return layout_.version; }  ///< GGUF format version (2 or 3).
  /// general.alignment, or 32.
  size_t alignment() const { return layout_.alignment; }
  /// File byte where the data section starts; tensor offsets count from here.
  size_t data_offset() const { return layout_.data_offset; }
  size_t size_bytes() const { return size_; }  ///< Size of the whole file in bytes.
  /// The path (or the name given to from_bytes).
  const std::string& name() const { return name_; }

  /// Tensor infos in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return layout_.tensors; }
  /// The tensor called name, or nullptr. O(1) (hashed).
  const GgufTensorInfo* find_tensor(std::string_view name) const {
    const auto it = layout_.index.find(name);
    return it == layout_.index.end() ? nullptr : &layout_.tensors[it->second];
  }
  /// The tensor called name; Error naming it when absent.
  const GgufTensorInfo& tensor(std::string_view name) const {
    const GgufTensorInfo* t = find_tensor(name);
    check(t != nullptr, name_, ": tensor '", name, "' not found");
    return *t;
  }

  /// Zero-copy view [rows, shape[0] / block_size] of a tensor of T (float, f16, bf16 or a block type), where
  /// rows is the product of shape[1..]. Error when the tensor's type is not T's (both named).
  template <class T>
  TensorView<const T, 2> view2d(std::string_view name) const {
    const GgufTensorInfo& t = typed<T>(name);
    const int64_t row_length = t.shape[0];
    const int64_t rows = std::accumulate(t.shape.begin() + 1, t.shape.end(), int64_t{1}, std::multiplies<>());
    return {reinterpret_cast<const T*>(t.data), {rows, row_length / quant_traits<T>::block_size}};
  }
  /// Zero-copy view of all elements, [n_elements / block_size] (blocks for quantized T).
  template <class T>
  TensorView<const T, 1> view1d(std::string_view name) const {
    const GgufTensorInfo& t = typed<T>(name);
    return {reinterpret_cast<const T*>(t.data), {t.n_elements() / quant_traits<T>::block_size}};
  }

 private:
  GgufFile(std::shared_ptr<const void> keep_alive, const std::byte* data, size_t size, std::string name)
      : keep_alive_(std::move(keep_alive)), name_(std::move(name)), size_(size),
        layout_(detail::GgufParser(data, size, name_).parse()) {}

  template <class T>
  const GgufTensorInfo& typed(std::string_view name) const {
    const GgufTensorInfo& t = tensor(name);
    const char* actual = t.type_name();
    check(t.type == static_cast<uint32_t>(quant_traits<T>::type), name_, ": tensor '", name, "' is ",
          actual ? actual : "of an unknown type", ", requested as ", quant_traits<T>::name);
    // Holds for general.alignment >= alignof(T); a file aligned to 1 or 2 may place f32 data oddly.
    check(reinterpret_cast<uintptr_t>(t.data) % alignof(T) == 0, name_, ": tensor '", name, "' data at byte ",
          data_offset() + t.offset, " is not aligned for ", quant_traits<T>::name, " (general.alignment ",
          alignment(), ")");
    check(t.shape[0] % quant_traits<T>::block_size == 0, name_, ": tensor '", name, "' row length ", t.shape[0],
          " is not a multiple of the ", quant_traits<T>::name, " block size");
    return t;
  }

  std::shared_ptr<const void> keep_alive_;  // the MappedFile or the owned buffer
  std::string name_;
  size_t size_ = 0;
  detail::GgufLayout layout_;
};

}  // namespace tessera::io
