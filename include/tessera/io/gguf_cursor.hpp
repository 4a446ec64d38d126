/// \file
/// The bounds-checked cursor the GGUF reader parses with, and the reading of
/// metadata values off it (scalars, strings, arrays of arrays to a bounded
/// depth). Every read names the field and its byte offset when it fails.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/io/gguf_value.hpp"

namespace tessera::io {

static_assert(std::endian::native == std::endian::little, "GGUF is read in place, which needs a little-endian host");

inline constexpr uint32_t kGgufMagic = 0x46554747;  ///< "GGUF" read as a little-endian u32
inline constexpr size_t kGgufDefaultAlignment = 32;  ///< Data alignment in bytes when general.alignment is absent.
inline constexpr uint32_t kGgufMaxDims = 4;  ///< Most dimensions a tensor may have (ggml's limit).
inline constexpr int kGgufMaxArrayDepth = 16;  ///< Deepest nesting of arrays read; bounds the parser's recursion.

namespace detail {

// A name from the file, fit for an error message: bounded length, control bytes replaced.
inline std::string printable(std::string_view s) {
  std::string out(s.substr(0, 80));
  for (char& ch : out)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
  return s.size() > 80 ? out + "..." : out;
}

// Reads little-endian fields; every read is checked against the end. Errors read
// "<file>: <field> of <context> at byte <offset>: <problem>".
class GgufCursor {
 public:
  GgufCursor(const std::byte* data, size_t size, std::string where) : data_(data), size_(size), where_(std::move(where)) {}

  size_t offset() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  const std::string& where() const { return where_; }
  /// What is being read ("key 'general.name'", "tensor 'output.weight'"), named in messages after the field.
  void set_context(std::string context) { context_ = std::move(context); }

  template <class... Parts>
  [[noreturn]] void fail_at(size_t at, std::string_view what, Parts&&... parts) const {
    fail(where_, ": ", what, " at byte ", at, ": ", std::forward<Parts>(parts)...);
  }
  /// field, qualified by the context: "value type of key 'general.name'".
  std::string field_name(std::string_view field) const {
    return context_.empty() ? std::string(field) : std::string(field) + " of " + context_;
  }

  template <class T>
  T read(std::string_view field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  /// n items of trivially copyable T, appended in one copy.
  template <class T>
  void read_items(std::vector<T>& out, size_t n, std::string_view field) {
    need(n * sizeof(T), field);  // the caller bounded n by remaining() / sizeof(T): no overflow
    out.resize(n);
    if (n) std::memcpy(out.data(), data_ + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
  }
  /// A GGUF string: u64 length, then that many bytes (no terminator).
  std::string read_string(std::string_view field) {
    const size_t at = pos_;
    const uint64_t n = read<uint64_t>(field);
    if (n > remaining())
      fail_at(at, field_name(field), "string length ", n, " exceeds the ", remaining(),
              " bytes left in the file (truncated or corrupt)");
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }

 private:
  void need(size_t n, std::string_view field) const {
    if (n > remaining())
      fail_at(pos_, field_name(field), "truncated file: needs ", n, " bytes, ", remaining(), " left");
  }

  const std::byte* data_;
  size_t size_, pos_ = 0;
  std::string where_, context_;
};

// Fewest bytes one element of type t takes in the file; bounds array lengths by the bytes left.
inline size_t min_encoded_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::u8: case GgufValueType::i8: case GgufValueType::boolean: return 1;
    case GgufValueType::u16: case GgufValueType::i16: return 2;
    case GgufValueType::u32: case GgufValueType::i32: case GgufValueType::f32: return 4;
    case GgufValueType::string: return 8;   // u64 length
    case GgufValueType::array: return 12;   // u32 type + u64 length
    default: return 8;                      // u64, i64, f64
  }
}

inline GgufValueType read_value_type(GgufCursor& c, std::string_view field) {
  const size_t at = c.offset();
  const auto t = c.read<uint32_t>(field);
  if (t >= kGgufValueTypeCount)
    c.fail_at(at, c.field_name(field), "unknown value type ", t, " (0 to ", kGgufValueTypeCount - 1, " are defined)");
  return static_cast<GgufValueType>(t);
}

inline GgufArray read_array(GgufCursor& c, int depth);

inline bool read_bool(GgufCursor& c, std::string_view field) {
  const size_t at = c.offset();
  const auto b = c.read<uint8_t>(field);
  if (b > 1) c.fail_at(at, c.field_name(field), "bool byte is ", int{b}, " (0 or 1 expected)");
  return b == 1;
}

inline GgufValue read_value(GgufCursor& c, GgufValueType t, int depth) {
  switch (t) {
    case GgufValueType::u8: return c.read<uint8_t>("value");
    case GgufValueType::i8: return c.read<int8_t>("value");
    case GgufValueType::u16: return c.read<uint16_t>("value");
    case GgufValueType::i16: return c.read<int16_t>("value");
    case GgufValueType::u32: return c.read<uint32_t>("value");
    case GgufValueType::i32: return c.read<int32_t>("value");
    case GgufValueType::u64: return c.read<uint64_t>("value");
    case GgufValueType::i64: return c.read<int64_t>("value");
    case GgufValueType::f32: return c.read<float>("value");
    case GgufValueType::f64: return c.read<double>("value");
    case GgufValueType::boolean: return read_bool(c, "value");
    case GgufValueType::string: return c.read_string("value");
    case GgufValueType::array: return read_array(c, depth);
  }
  fail("unreachable: GGUF value type ", static_cast<uint32_t>(t));  // read_value_type admits only the 13 types
}

template <class T>
GgufArray read_scalar_items(GgufCursor& c, size_t n) {
  std::vector<T> items;
  c.read_items(items, n, "array element");
  return GgufArray(std::move(items));
}

inline GgufArray read_array_items(GgufCursor& c, GgufValueType t, size_t n, int depth) {
  switch (t) {
    case GgufValueType::u8: return read_scalar_items<uint8_t>(c, n);
    case GgufValueType::i8: return read_scalar_items<int8_t>(c, n);
    case GgufValueType::u16: return read_scalar_items<uint16_t>(c, n);
    case GgufValueType::i16: return read_scalar_items<int16_t>(c, n);
    case GgufValueType::u32: return read_scalar_items<uint32_t>(c, n);
    case GgufValueType::i32: return read_scalar_items<int32_t>(c, n);
    case GgufValueType::u64: return read_scalar_items<uint64_t>(c, n);
    case GgufValueType::i64: return read_scalar_items<int64_t>(c, n);
    case GgufValueType::f32: return read_scalar_items<float>(c, n);
    case GgufValueType::f64: return read_scalar_items<double>(c, n);
    default: break;
  }
  if (t == GgufValueType::boolean) {
    std::vector<bool> items(n);
    for (size_t i = 0; i < n; ++i) items[i] = read_bool(c, "array element");
    return GgufArray(std::move(items));
  }
  if (t == GgufValueType::string) {
    std::vector<std::string> items(n);
    for (auto& s : items) s = c.read_string("array element");
    return GgufArray(std::move(items));
  }
  std::vector<GgufValue> items;  // arrays of arrays: each element is (type, length, items)
  items.reserve(n);
  for (size_t i = 0; i < n; ++i) items.emplace_back(read_array(c, depth + 1));
  return GgufArray(std::move(items));
}

// An array body: u32 element type, u64 length, the elements.
inline GgufArray read_array(GgufCursor& c, int depth) {
  if (depth >= kGgufMaxArrayDepth)
    c.fail_at(c.offset(), c.field_name("array"), "arrays nested deeper than ", kGgufMaxArrayDepth, " levels");
  const GgufValueType t = read_value_type(c, "array element type");
  const size_t at = c.offset();
  const uint64_t n = c.read<uint64_t>("array length");
  const size_t min_size = min_encoded_size(t);
  if (n > c.remaining() / min_size)
    c.fail_at(at, c.field_name("array length"), n, " elements of ", type_name(t), " (at least ", min_size,
              " bytes each) cannot fit in the ", c.remaining(), " bytes left");
  return read_array_items(c, t, static_cast<size_t>(n), depth);
}

}  // namespace detail

}  // namespace tessera::io
