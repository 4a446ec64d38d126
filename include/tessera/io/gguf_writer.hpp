/// \file
/// GgufWriter: builds a GGUF v2/v3 file from metadata and tensors (tests make
/// small models with it; io/quantize.hpp streams its output through it, each
/// tensor made only when written: add_tensor_deferred). Layout:
/// header, metadata, tensor infos, then the data, each tensor padded to
/// general.alignment.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdio>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/quant_blocks.hpp"
#include "tessera/io/gguf_reader.hpp"
#include "tessera/io/gguf_value.hpp"

namespace tessera::io {

inline constexpr size_t kGgmlMaxNameBytes = 63;  ///< Longest tensor name in bytes; ggml's readers refuse longer ones.

/// Collects metadata and tensors (copied, or made at write time), then writes them as one GGUF file (to_bytes, write).
class GgufWriter {
 public:
  /// Sets key, replacing an existing value in place. value converts from scalars (keeping their C++ type:
  /// uint32_t is u32), strings and std::vectors of them.
  void set(std::string key, GgufValue value) { meta_.set(std::move(key), std::move(value)); }
  /// Copies every entry of meta, in its order (e.g. from a file being requantized).
  void set_all(const GgufMetadata& meta) {
    for (const auto& [k, v] : meta.entries()) meta_.set(k, v);
  }
  void erase(std::string_view key) { meta_.erase(key); }  ///< Removes key if present.
  const GgufMetadata& meta() const { return meta_; }  ///< The metadata set so far, in the order it is written.

  /// Adds a tensor of ggml type id `type`, shape in GGUF order ([row_length, rows, ...], 1 to 4 dims). The
  /// bytes are copied. Error naming the tensor for an unknown type, a bad shape, a row length that is not a
  /// multiple of the block size, a data size other than the shape's, or a duplicate name.
  void add_tensor(std::string name, uint32_t type, std::vector<int64_t> shape, std::span<const std::byte> data) {
    const size_t n_bytes = checked_bytes(name, type, shape);
    check(data.size() == n_bytes, "tensor '", name, "': ", data.size(), " bytes given, its shape and type need ",
          n_bytes);
    tensors_.push_back({std::move(name), type, std::move(shape), {data.begin(), data.end()}, {}, n_bytes});
  }
  /// Adds a tensor whose bytes are made only when the file is written: fill
  /// gets a buffer of exactly the shape's size, just before the tensor's data
  /// is written, and the buffer is freed right after. A quantizer streams a
  /// model through this with about one tensor in memory. Same checks as
  /// add_tensor; an Error from fill aborts the write (no file is left).
  void add_tensor_deferred(std::string name, uint32_t type, std::vector<int64_t> shape,
                           std::function<void(std::span<std::byte>)> fill) {
    const size_t n_bytes = checked_bytes(name, type, shape);
    check(static_cast<bool>(fill), "tensor '", name, "': no fill function");
    tensors_.push_back({std::move(name), type, std::move(shape), {}, std::move(fill), n_bytes});
  }
  /// Typed form: the ggml type is T's (float, f16, bf16 or a block type).
  template <class T>
  void add_tensor(std::string name, std::vector<int64_t> shape, std::span<const T> data) {
    add_tensor(std::move(name), static_cast<uint32_t>(quant_traits<T>::type), std::move(shape), std::as_bytes(data));
  }

  /// general.alignment when set (it must be a u32 power of two), else 32.
  size_t alignment() const {
    const GgufValue* v = meta_.find("general.alignment");
    if (!v) return kGgufDefaultAlignment;
    const uint32_t* a = v->get_if<uint32_t>();
    check(a != nullptr && std::has_single_bit(*a), "general.alignment must be a u32 power of two, not ",
          to_string(*v));
    return *a;
  }

  /// The file's bytes. version: 2 or 3 (the same layout).
  std::vector<std::byte> to_bytes(uint32_t version = 3) const {
    std::vector<std::byte> out;
    emit(version, [&](const void* p, size_t n) {
      const auto* b = static_cast<const std::byte*>(p);
      out.insert(out.end(), b, b + n);
    });
    return out;
  }
  /// Writes the file to path (streamed; the tensors are not copied again). Error naming path on I/O failure.
  void write(const std::string& path, uint32_t version = 3) const {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    check(f != nullptr, "cannot create '", path, "'");
    bool ok = true;
    try {
      emit(version, [&](const void* p, size_t n) { ok = ok && (n == 0 || std::fwrite(p, 1, n, f) == n); });
    } catch (...) {
      std::fclose(f);
      std::remove(path.c_str());
      throw;
    }
    ok = std::fclose(f) == 0 && ok;
    if (!ok) std::remove(path.c_str());
    check(ok, "cannot write '", path, "' (disk full?)");
  }

 private:
  struct PendingTensor {
    std::string name;
    uint32_t type;
    std::vector<int64_t> shape;
    std::vector<std::byte> data;                       // the bytes, or empty with fill set
    std::function<void(std::span<std::byte>)> fill;  // makes the bytes at write time
    size_t n_bytes = 0;
  };

  // Validates a new tensor; returns its data size in bytes.
  size_t checked_bytes(const std::string& name, uint32_t type, const std::vector<int64_t>& shape) const {
    check(!name.empty() && name.size() <= kGgmlMaxNameBytes, "GGUF tensor name '", name, "' must have 1 to ",
          kGgmlMaxNameBytes, " bytes");
    for (const auto& t : tensors_) check(t.name != name, "duplicate GGUF tensor name '", name, "'");
    const TypeInfo ti = type_info(type);
    check(ti.name != nullptr, "tensor '", name, "': unknown ggml type id ", type);
    check(!shape.empty() && shape.size() <= kGgufMaxDims, "tensor '", name, "': ", shape.size(),
          " dimensions (1 to ", kGgufMaxDims, " supported)");
    uint64_t n_elements = 1;
    for (const int64_t e : shape)
      check(e >= 0 && !__builtin_mul_overflow(n_elements, static_cast<uint64_t>(e), &n_elements) &&
                n_elements <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
            "tensor '", name, "': invalid or overflowing dimension ", e);
    check(shape[0] % ti.block_size == 0, "tensor '", name, "': row length ", shape[0], " is not a multiple of the ",
          ti.name, " block size ", ti.block_size);
    return static_cast<size_t>(n_elements / static_cast<uint64_t>(ti.block_size) * ti.type_size);
  }

  template <class Put>
  void emit(uint32_t version, Put&& put) const {
    check(version == 2 || version == 3, "GGUF version ", version, " cannot be written (2 or 3)");
    const size_t align = alignment();
    auto raw = [&](const auto& v) { put(&v, sizeof(v)); };
    raw(kGgufMagic);
    raw(version);
    raw(static_cast<uint64_t>(tensors_.size()));
    raw(static_cast<uint64_t>(meta_.size()));
    size_t pos = 24;
    auto counted = [&](const void* p, size_t n) { put(p, n); pos += n; };
    for (const auto& [key, value] : meta_.entries()) {
      put_string(counted, key);
      put_u32(counted, static_cast<uint32_t>(value.type()));
      put_value(counted, value);
    }
    uint64_t offset = 0;
    for (const PendingTensor& t : tensors_) {
      put_string(counted, t.name);
      put_u32(counted, static_cast<uint32_t>(t.shape.size()));
      counted(t.shape.data(), t.shape.size() * sizeof(int64_t));
      put_u32(counted, t.type);
      counted(&offset, sizeof(offset));
      offset += padded(t.n_bytes, align);
    }
    pad(counted, pos, align);
    for (const PendingTensor& t : tensors_) {
      if (t.fill) {
        std::vector<std::byte> buf(t.n_bytes);
        t.fill(buf);
        counted(buf.data(), buf.size());
      } else {
        counted(t.data.data(), t.data.size());
      }
      pad(counted, pos, align);
    }
  }

  static size_t padded(size_t n, size_t align) { return (n + align - 1) / align * align; }
  template <class Put>
  static void pad(Put& put, size_t pos, size_t align) {
    static constexpr std::byte zeros[256] = {};
    for (size_t n = padded(pos, align) - pos; n > 0;) {
      const size_t k = std::min(n, sizeof(zeros));
      put(zeros, k);
      n -= k;
    }
  }
  template <class Put>
  static void put_u32(Put& put, uint32_t v) { put(&v, sizeof(v)); }
  template <class Put>
  static void put_bool(Put& put, bool b) {
    const uint8_t byte = b ? 1 : 0;
    put(&byte, 1);
  }
  template <class Put>
  static void put_string(Put& put, const std::string& s) {
    const uint64_t n = s.size();
    put(&n, sizeof(n));
    put(s.data(), s.size());
  }
  template <class Put>
  static void put_value(Put& put, const GgufValue& v) {
    std::visit(
        [&](const auto& x) {
          using X = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<X, std::string>) put_string(put, x);
          else if constexpr (std::is_same_v<X, GgufArray>) put_array(put, x);
          else if constexpr (std::is_same_v<X, bool>) put_bool(put, x);
          else put(&x, sizeof(x));
        },
        v.storage());
  }
  // An array body: element type, length, elements (nested arrays are bodies again, without a type tag).
  template <class Put>
  static void put_array(Put& put, const GgufArray& a) {
    put_u32(put, static_cast<uint32_t>(a.elem_type()));
    const uint64_t n = a.size();
    put(&n, sizeof(n));
    std::visit(
        [&](const auto& items) {
          using E = typename std::decay_t<decltype(items)>::value_type;
          if constexpr (std::is_same_v<E, std::string>) {
            for (const auto& s : items) put_string(put, s);
          } else if constexpr (std::is_same_v<E, GgufValue>) {
            for (const auto& v : items) put_array(put, v.array());
          } else if constexpr (std::is_same_v<E, bool>) {
            for (const bool b : items) put_bool(put, b);
          } else {
            put(items.data(), items.size() * sizeof(E));
          }
        },
        a.storage());
  }

  GgufMetadata meta_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace tessera::io
