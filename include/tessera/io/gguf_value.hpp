/// \file
/// GGUF metadata values: the 13 value types, GgufValue (a scalar, a string or an
/// array), GgufArray (typed element storage, arrays of arrays included) and
/// GgufMetadata, the key -> value table in file order with typed, checked reads.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "tessera/core/error.hpp"

namespace tessera::io {

/// GGUF metadata value types; the numbers are the file's.
enum class GgufValueType : uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9,
  u64 = 10, i64 = 11, f64 = 12,
};
inline constexpr uint32_t kGgufValueTypeCount = 13;  ///< Number of GgufValueType ids (0 to 12).

/// "u8", "string", "array", ...; "unknown" for ids outside the 13 types.
constexpr const char* type_name(GgufValueType t) {
  constexpr const char* names[kGgufValueTypeCount] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                                       "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < kGgufValueTypeCount ? names[i] : "unknown";
}

class GgufValue;

namespace detail {

template <class T> struct is_std_vector : std::false_type {};
template <class E> struct is_std_vector<std::vector<E>> : std::true_type {};

template <class T>
inline constexpr bool is_gguf_integer = std::is_integral_v<T> && !std::is_same_v<T, bool>;

template <class T>
inline constexpr bool is_array_element =
    std::is_same_v<T, uint8_t> || std::is_same_v<T, int8_t> || std::is_same_v<T, uint16_t> ||
    std::is_same_v<T, int16_t> || std::is_same_v<T, uint32_t> || std::is_same_v<T, int32_t> ||
    std::is_same_v<T, float> || std::is_same_v<T, bool> || std::is_same_v<T, std::string> ||
    std::is_same_v<T, GgufValue> || std::is_same_v<T, uint64_t> || std::is_same_v<T, int64_t> ||
    std::is_same_v<T, double>;

}  // namespace detail

/// An array: one element type, elements stored contiguously by type (a u8
/// array costs one byte per element). Elements of type `array` are GgufValues,
/// each holding an array. Storage alternative i holds element type i.
class GgufArray {
 public:
  /// One std::vector per element type, in GgufValueType order (vector<GgufValue> for arrays of arrays).
  using Storage = std::variant<std::vector<uint8_t>, std::vector<int8_t>, std::vector<uint16_t>, std::vector<int16_t>,
                               std::vector<uint32_t>, std::vector<int32_t>, std::vector<float>, std::vector<bool>,
                               std::vector<std::string>, std::vector<GgufValue>, std::vector<uint64_t>,
                               std::vector<int64_t>, std::vector<double>>;

  /// An empty array of u8.
  GgufArray() = default;
  /// An array of items: T is a GGUF scalar type, std::string, or GgufValue (then every item must be an array).
  template <class T>
  explicit GgufArray(std::vector<T> items);
  /// An array of the alternative items holds; Error when a nested GgufValue is not an array.
  explicit GgufArray(Storage items);

  GgufValueType elem_type() const { return static_cast<GgufValueType>(items_.index()); }  ///< The element type.
  size_t size() const;  ///< defined below GgufValue: the nested alternative needs it complete
  bool empty() const { return size() == 0; }  ///< Whether the array has no elements.
  /// Element i as a value (copies a string element). Error when i is out of range.
  GgufValue at(size_t i) const;
  /// The elements when T is exactly the element type (no conversion, no copy), else nullptr.
  template <class T>
  const std::vector<T>* get_if() const {
    if constexpr (detail::is_array_element<T>) return std::get_if<std::vector<T>>(&items_);
    else return nullptr;
  }
  /// As get_if, but Error naming both types when the element type differs.
  template <class T>
  const std::vector<T>& items() const;
  const Storage& storage() const { return items_; }  ///< The typed element vector, for std::visit.

  /// Same element type and equal elements.
  friend bool operator==(const GgufArray& a, const GgufArray& b);

 private:
  Storage items_;
};

/// One metadata value. Storage alternative i holds type i, so type() is the variant index.
/// Scalars, strings and std::vectors of them convert implicitly, keeping their C++ type:
/// GgufValue(uint32_t{4}) is a u32, GgufValue(4) an i32, GgufValue(1.f) an f32.
class GgufValue {
 public:
  /// One alternative per GgufValueType, in id order.
  using Storage = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool, std::string,
                               GgufArray, uint64_t, int64_t, double>;

  GgufValue() = default;  ///< u8 0
  /// A scalar of the GGUF type of its C++ type (uint8_t: u8, ..., float: f32, double: f64, bool: bool).
  ///@{
  GgufValue(uint8_t v) : v_(v) {}
  GgufValue(int8_t v) : v_(v) {}
  GgufValue(uint16_t v) : v_(v) {}
  GgufValue(int16_t v) : v_(v) {}
  GgufValue(uint32_t v) : v_(v) {}
  GgufValue(int32_t v) : v_(v) {}
  GgufValue(uint64_t v) : v_(v) {}
  GgufValue(int64_t v) : v_(v) {}
  GgufValue(float v) : v_(v) {}
  GgufValue(double v) : v_(v) {}
  GgufValue(bool v) : v_(v) {}
  ///@}
  /// A string value (the text is copied).
  ///@{
  GgufValue(std::string v) : v_(std::move(v)) {}
  GgufValue(std::string_view v) : v_(std::string(v)) {}
  GgufValue(const char* v) : v_(std::string(v)) {}
  ///@}
  GgufValue(GgufArray a) : v_(std::move(a)) {}  ///< An array value.
  /// An array of items, as `GgufArray(std::vector<T>)` builds it.
  template <class T>
  GgufValue(std::vector<T> items) : v_(GgufArray(std::move(items))) {}

  GgufValueType type() const { return static_cast<GgufValueType>(v_.index()); }  ///< The value's GGUF type.
  bool is_array() const { return type() == GgufValueType::array; }  ///< Whether the type is array.
  /// The array; Error when this is not one.
  const GgufArray& array() const {
    const GgufArray* a = std::get_if<GgufArray>(&v_);
    check(a != nullptr, "GGUF value of type ", type_name(type()), " is not an array");
    return *a;
  }
  /// The stored value when T is exactly its type (uint32_t for u32, std::string, GgufArray...), else nullptr.
  template <class T>
  const T* get_if() const {
    if constexpr ((detail::is_array_element<T> && !std::is_same_v<T, GgufValue>) || std::is_same_v<T, GgufArray>)
      return std::get_if<T>(&v_);
    else
      return nullptr;
  }
  /// The value converted to T, or nullopt: integers convert to any integer type that holds them, f32/f64 to
  /// float/double, arrays to std::vector<E> when every element converts to E.
  template <class T>
  std::optional<T> to() const;
  const Storage& storage() const { return v_; }  ///< The stored alternative, for std::visit.

  /// Same type and equal value (arrays compare element by element).
  friend bool operator==(const GgufValue& a, const GgufValue& b) { return a.v_ == b.v_; }

 private:
  Storage v_;
};

/// Same element type and equal elements.
inline bool operator==(const GgufArray& a, const GgufArray& b) { return a.items_ == b.items_; }

namespace detail {

/// The C++ name of a type metadata can be read as, for error messages.
template <class T>
std::string cpp_type_name() {
  if constexpr (std::is_same_v<T, bool>) return "bool";
  else if constexpr (is_gguf_integer<T>) return (std::is_signed_v<T> ? "int" : "uint") + std::to_string(8 * sizeof(T)) + "_t";
  else if constexpr (std::is_same_v<T, float>) return "float";
  else if constexpr (std::is_same_v<T, double>) return "double";
  else if constexpr (std::is_same_v<T, std::string>) return "std::string";
  else if constexpr (std::is_same_v<T, GgufValue>) return "GgufValue";
  else if constexpr (std::is_same_v<T, GgufArray>) return "GgufArray";
  else if constexpr (is_std_vector<T>::value) return "std::vector<" + cpp_type_name<typename T::value_type>() + ">";
  else return "?";
}

template <class T>
bool convert_array(const GgufArray& a, T& out);

// One stored item X (a scalar, a string, an array or a nested GgufValue) converted to T.
template <class T, class X>
bool convert_item(const X& x, T& out) {
  if constexpr (std::is_same_v<X, GgufValue>) {
    return std::visit([&](const auto& y) { return convert_item(y, out); }, x.storage());
  } else if constexpr (std::is_same_v<T, GgufValue>) {
    out = GgufValue(x);
    return true;
  } else if constexpr (std::is_same_v<T, X>) {
    out = x;
    return true;
  } else if constexpr (is_gguf_integer<T> && is_gguf_integer<X>) {
    if (!std::in_range<T>(x)) return false;
    out = static_cast<T>(x);
    return true;
  } else if constexpr (std::is_floating_point_v<T> && std::is_floating_point_v<X>) {
    out = static_cast<T>(x);
    return true;
  } else if constexpr (is_std_vector<T>::value && std::is_same_v<X, GgufArray>) {
    return convert_array(x, out);
  } else {
    return false;
  }
}

template <class T>
bool convert_array(const GgufArray& a, T& out) {
  using E = typename T::value_type;
  if (const auto* exact = a.get_if<E>()) {
    out = *exact;
    return true;
  }
  return std::visit(
      [&](const auto& items) {
        T result;
        result.reserve(items.size());
        using X = typename std::decay_t<decltype(items)>::value_type;
        for (const X& x : items) {  // vector<bool> yields bools by value; the reference binds to them
          E e{};
          if (!convert_item<E, X>(x, e)) return false;
          result.push_back(std::move(e));
        }
        out = std::move(result);
        return true;
      },
      a.storage());
}

}  // namespace detail

template <class T>
GgufArray::GgufArray(std::vector<T> items) : items_(std::move(items)) {
  static_assert(detail::is_array_element<T>, "GGUF array elements are GGUF scalars, std::string or GgufValue");
  if constexpr (std::is_same_v<T, GgufValue>)
    for (const GgufValue& v : std::get<std::vector<GgufValue>>(items_))
      check(v.is_array(), "a GGUF array of arrays holds an element of type ", type_name(v.type()));
}

inline GgufArray::GgufArray(Storage items) : items_(std::move(items)) {
  if (const auto* nested = get_if<GgufValue>())
    for (const GgufValue& v : *nested)
      check(v.is_array(), "a GGUF array of arrays holds an element of type ", type_name(v.type()));
}

inline size_t GgufArray::size() const {
  return std::visit([](const auto& v) { return v.size(); }, items_);
}

inline GgufValue GgufArray::at(size_t i) const {
  check(i < size(), "GGUF array index ", i, " out of range (size ", size(), ")");
  return std::visit([&](const auto& v) { return GgufValue(static_cast<typename std::decay_t<decltype(v)>::value_type>(v[i])); },
                    items_);
}

template <class T>
const std::vector<T>& GgufArray::items() const {
  const auto* v = get_if<T>();
  check(v != nullptr, "GGUF array of ", type_name(elem_type()), " requested as ",
        detail::cpp_type_name<std::vector<T>>());
  return *v;
}

template <class T>
std::optional<T> GgufValue::to() const {
  T out{};
  if (!detail::convert_item(*this, out)) return std::nullopt;
  return out;
}

/// Short text of a value for messages and dumps: `u32 30`, `string "gpt2"`, `array of 49152 string [...]`.
inline std::string to_string(const GgufValue& v, size_t max_items = 4) {
  return std::visit(
      [&](const auto& x) -> std::string {
        using X = std::decay_t<decltype(x)>;
        std::string head = std::string(type_name(v.type())) + " ";
        if constexpr (std::is_same_v<X, std::string>) {
          return head + "\"" + (x.size() > 64 ? x.substr(0, 64) + "..." : x) + "\"";
        } else if constexpr (std::is_same_v<X, GgufArray>) {
          std::string s = "array of " + std::to_string(x.size()) + " " + type_name(x.elem_type()) + " [";
          for (size_t i = 0; i < x.size() && i < max_items; ++i) s += (i ? ", " : "") + to_string(x.at(i), max_items);
          return s + (x.size() > max_items ? ", ...]" : "]");
        } else if constexpr (std::is_same_v<X, bool>) {
          return head + (x ? "true" : "false");
        } else {
          return head + tessera::detail::concat(+x);  // unary + prints 8-bit integers as numbers
        }
      },
      v.storage());
}

namespace detail {
// Lets the maps below be searched by std::string_view without building a std::string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
}  // namespace detail

/// Key -> value, in file order, looked up by hash.
class GgufMetadata {
 public:
  bool has(std::string_view key) const { return find(key) != nullptr; }  ///< Whether key is present.
  /// The value of key, or nullptr.
  const GgufValue* find(std::string_view key) const {
    const auto it = index_.find(key);
    return it == index_.end() ? nullptr : &entries_[it->second].second;
  }
  /// The value of key as T (see GgufValue::to for the conversions). Error naming the key when it is missing or
  /// does not convert. T: an integer type, float, double, bool, std::string, GgufValue, GgufArray, or a
  /// std::vector of any of these (arrays).
  template <class T>
  T get(std::string_view key) const {
    const GgufValue* v = find(key);
    check(v != nullptr, "GGUF metadata key '", key, "' is missing");
    std::optional<T> out = v->to<T>();
    check(out.has_value(), "GGUF metadata key '", key, "' holds ", to_string(*v), ", which does not convert to ",
          detail::cpp_type_name<T>());
    return std::move(*out);
  }
  /// get<T>(key), or fallback when the key is missing. A present key of another type is still an Error.
  template <class T>
  T get_or(std::string_view key, T fallback) const { return has(key) ? get<T>(key) : std::move(fallback); }

  /// The keys in file (or insertion) order.
  std::vector<std::string> keys() const {
    std::vector<std::string> k;
    k.reserve(entries_.size());
    for (const auto& e : entries_) k.push_back(e.first);
    return k;
  }
  const std::vector<std::pair<std::string, GgufValue>>& entries() const { return entries_; }  ///< Key-value pairs in order.
  size_t size() const { return entries_.size(); }  ///< Number of keys.

  /// Appends key; Error on a duplicate key.
  void add(std::string key, GgufValue value) {
    check(!has(key), "duplicate GGUF metadata key '", key, "'");
    index_.emplace(key, entries_.size());
    entries_.emplace_back(std::move(key), std::move(value));
  }
  /// Sets key, replacing an existing value in place (its position is kept).
  void set(std::string key, GgufValue value) {
    if (const auto it = index_.find(key); it != index_.end()) entries_[it->second].second = std::move(value);
    else add(std::move(key), std::move(value));
  }
  /// Removes key if present; later keys keep their order.
  void erase(std::string_view key) {
    const auto it = index_.find(key);
    if (it == index_.end()) return;
    const size_t i = it->second;
    index_.erase(it);
    entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
    for (auto& [k, j] : index_)
      if (j > i) --j;
  }

 private:
  std::vector<std::pair<std::string, GgufValue>> entries_;
  std::unordered_map<std::string, size_t, detail::StringHash, std::equal_to<>> index_;
};

}  // namespace tessera::io
