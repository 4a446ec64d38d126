/// \file
/// The values a Jinja template computes with, as jinja2 sees Python's: None, bool, int, float, str, list
/// (and tuple), dict (insertion ordered), plus jinja2's Undefined, callables (macros, builtins, bound
/// methods) and `namespace()` objects. Lists and dicts are immutable once built (the sandbox HF renders in
/// forbids mutating them), so copies share storage; a namespace is the one mutable, shared object.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "tessera/core/error.hpp"

namespace tessera::io::jinja {

class Value;
class Evaluator;

/// Arguments of a call: positional, then keyword in the order written.
struct Args {
  std::vector<Value> pos;  ///< Positional arguments.
  std::vector<std::pair<std::string, Value>> kw;  ///< Keyword arguments.
};

/// A callable: a builtin, a bound method or a macro. It gets the evaluator for the limits and filters.
struct Function {
  std::string name;  ///< For error messages and repr.
  std::function<Value(Evaluator&, Args&)> call;  ///< The body.
  int depth = 1;  ///< 1 + the depth of a value it holds (a bound method's receiver): see kMaxNesting.
};

/// Deepest nesting of lists, dicts and namespaces: values are printed, compared and freed recursively, so a
/// hostile template that nests one list in another in a loop must meet an Error, not a stack overflow.
inline constexpr int kMaxNesting = 128;
/// Most a list or dict may weigh, counting every element as often as it appears (shared ones too) and a
/// string as its bytes: `{% set a = [a, a] %}` forty times nests only 41 deep but holds 2^40 leaves, which
/// printing, tojson and == would walk. Bounding the weight where containers are made bounds all of them.
inline constexpr size_t kMaxWeight = size_t{1} << 26;

struct ListData;
struct DictData;
struct NamespaceData;

/// jinja2's Undefined: the name that was looked up, for the error its misuse raises.
struct Undefined {
  std::string name;  ///< What was looked up ("x", "attribute 'y' of dict"...).
};
/// Python's None.
struct None {};

/// One value of the template language. Cheap to copy (strings aside): containers are shared.
class Value {
 public:
  /// What a Value holds: one alternative per Kind, containers shared.
  using Storage = std::variant<Undefined, None, bool, int64_t, double, std::string, std::shared_ptr<const ListData>,
                               std::shared_ptr<const DictData>, std::shared_ptr<const Function>,
                               std::shared_ptr<NamespaceData>>;
  /// The value's type, in the order of Storage's alternatives.
  enum class Kind : uint8_t { undefined, none, boolean, integer, floating, string, list, dict, function, ns };

  Value() : v_(Undefined{}) {}
  Value(None) : v_(None{}) {}                           ///< None.
  Value(bool b) : v_(b) {}                              ///< A bool.
  Value(int64_t i) : v_(i) {}                           ///< An int.
  Value(int i) : v_(int64_t{i}) {}                      ///< An int.
  Value(double d) : v_(d) {}                            ///< A float.
  Value(std::string s) : v_(std::move(s)) {}            ///< A str (UTF-8).
  Value(const char* s) : v_(std::string(s)) {}          ///< A str (UTF-8).
  Value(std::string_view s) : v_(std::string(s)) {}     ///< A str (UTF-8).
  Value(Undefined u) : v_(std::move(u)) {}              ///< Undefined, naming what was looked up.
  Value(std::shared_ptr<const Function> f) : v_(std::move(f)) {}  ///< A callable.
  Value(std::shared_ptr<NamespaceData> n) : v_(std::move(n)) {}   ///< A namespace.
  /// A list (tuple = written as a tuple, which only its repr shows). Error past kMaxNesting.
  static Value list(std::vector<Value> items, bool tuple = false);
  /// A dict from pairs in order; a repeated key keeps its first place and takes the last value.
  static Value dict(std::vector<std::pair<Value, Value>> items);
  /// A builtin function.
  /// A builtin function; depth as Function::depth. Error past kMaxNesting.
  static Value function(std::string name, std::function<Value(Evaluator&, Args&)> fn, int depth = 1) {
    check(depth <= kMaxNesting, "values nested deeper than ", kMaxNesting, " levels");
    return Value(std::make_shared<const Function>(Function{std::move(name), std::move(fn), depth}));
  }

  Kind kind() const { return static_cast<Kind>(v_.index()); }  ///< Which alternative it holds.
  bool is_undefined() const { return kind() == Kind::undefined; }  ///< jinja2's Undefined.
  bool is_none() const { return kind() == Kind::none; }            ///< None.
  bool is_string() const { return kind() == Kind::string; }        ///< str.
  bool is_list() const { return kind() == Kind::list; }            ///< list or tuple.
  bool is_dict() const { return kind() == Kind::dict; }            ///< dict.
  /// int or bool (Python's bool is an int).
  bool is_int() const { return kind() == Kind::integer || kind() == Kind::boolean; }
  bool is_number() const { return is_int() || kind() == Kind::floating; }  ///< int, bool or float.

  bool as_bool() const { return std::get<bool>(v_); }  ///< Precondition: a bool.
  /// An int (bools as 0/1). Precondition: is_int().
  int64_t as_int() const { return kind() == Kind::boolean ? int64_t{as_bool()} : std::get<int64_t>(v_); }
  /// A number as double. Precondition: is_number().
  double as_double() const { return kind() == Kind::floating ? std::get<double>(v_) : double(as_int()); }
  const std::string& str() const { return std::get<std::string>(v_); }  ///< Precondition: a str.
  const std::vector<Value>& items() const;                              ///< Precondition: a list.
  const DictData& dict_data() const { return *std::get<std::shared_ptr<const DictData>>(v_); }  ///< Precondition: a dict.
  const Function& fn() const { return *std::get<std::shared_ptr<const Function>>(v_); }  ///< Precondition: callable.
  NamespaceData& ns() const { return *std::get<std::shared_ptr<NamespaceData>>(v_); }  ///< Precondition: namespace.
  bool is_tuple() const;  ///< A list written as a tuple.
  /// Nesting depth (1 for a scalar) and whether a namespace is inside: kept so that limits cost O(1).
  int depth() const;
  /// 1 for a scalar, 1 + bytes for a string, 1 + its elements' weights for a list or dict (kMaxWeight).
  size_t weight() const;
  bool holds_ns() const;  ///< Whether it is or contains a namespace (see NamespaceData).
  const Undefined& undefined() const { return std::get<Undefined>(v_); }  ///< Precondition: undefined.

 private:
  Storage v_;
};

/// A list's items and the bookkeeping of Value::depth.
struct ListData {
  std::vector<Value> items;  ///< The elements.
  bool tuple = false;        ///< Written as a tuple.
  int depth = 1;             ///< 1 + deepest element.
  size_t weight = 1;         ///< 1 + the elements' weights.
  bool holds_ns = false;     ///< Some element is or holds a namespace.
};

/// A dict in insertion order, with an index by key (see dict_key).
struct DictData {
  std::vector<std::pair<Value, Value>> items;     ///< Key, value pairs in insertion order.
  std::unordered_map<std::string, size_t> index;  ///< dict_key(key) -> position in items.
  int depth = 1;                                  ///< 1 + deepest key or value.
  size_t weight = 1;                              ///< 1 + the keys' and values' weights.
  bool holds_ns = false;                          ///< Some value is or holds a namespace.
  /// The value for key, or nullptr. O(1) expected.
  const Value* find(const Value& key) const;
};

/// jinja2's namespace(): attributes assignable with `{% set ns.x = ... %}` from any scope. It may not hold
/// another namespace (nor a list or dict that does), so that no reference cycle (a leak) can be built.
struct NamespaceData {
  std::vector<std::pair<std::string, Value>> attrs;  ///< In order of first assignment.
  /// The attribute, or nullptr.
  const Value* find(std::string_view name) const {
    for (const auto& [k, v] : attrs)
      if (k == name) return &v;
    return nullptr;
  }
  /// Sets (or adds) an attribute. Error for a namespace value (see above).
  void set(const std::string& name, Value v) {
    check(!v.holds_ns(), "a namespace cannot hold another namespace");
    for (auto& [k, old] : attrs)
      if (k == name) {
        old = std::move(v);
        return;
      }
    attrs.emplace_back(name, std::move(v));
  }
};

inline const std::vector<Value>& Value::items() const { return std::get<std::shared_ptr<const ListData>>(v_)->items; }
inline bool Value::is_tuple() const { return is_list() && std::get<std::shared_ptr<const ListData>>(v_)->tuple; }
inline int Value::depth() const {
  if (is_list()) return std::get<std::shared_ptr<const ListData>>(v_)->depth;
  if (is_dict()) return dict_data().depth;
  if (kind() == Kind::function) return fn().depth;
  return 1;
}
inline size_t Value::weight() const {
  if (is_list()) return std::get<std::shared_ptr<const ListData>>(v_)->weight;
  if (is_dict()) return dict_data().weight;
  if (kind() == Kind::string) return 1 + str().size();
  return 1;
}
inline bool Value::holds_ns() const {
  if (kind() == Kind::ns) return true;
  if (is_list()) return std::get<std::shared_ptr<const ListData>>(v_)->holds_ns;
  if (is_dict()) return dict_data().holds_ns;
  // A bound method holds its receiver, which may hold a namespace; refuse them all rather than track it.
  return kind() == Kind::function;
}

inline Value Value::list(std::vector<Value> items, bool tuple) {
  auto d = std::make_shared<ListData>();
  for (const Value& v : items) {
    d->depth = std::max(d->depth, v.depth() + 1);
    d->weight += std::min(v.weight(), kMaxWeight);  // no overflow: each term is capped, the sum checked below
    d->holds_ns = d->holds_ns || v.holds_ns();
    check(d->weight <= kMaxWeight, "a list of more than ", kMaxWeight, " elements and bytes (shared ones counted each time)");
  }
  check(d->depth <= kMaxNesting, "values nested deeper than ", kMaxNesting, " levels");
  d->items = std::move(items);
  d->tuple = tuple;
  Value out;
  out.v_ = std::shared_ptr<const ListData>(std::move(d));
  return out;
}

namespace detail {
// The key a dict indexes by: Python's hash equality (1 == 1.0 == True), or Error for unhashable keys.
inline std::string dict_key(const Value& k);  // python.hpp
}  // namespace detail

inline Value Value::dict(std::vector<std::pair<Value, Value>> items) {
  auto d = std::make_shared<DictData>();
  d->items.reserve(items.size());
  for (auto& [k, v] : items) {
    d->depth = std::max({d->depth, k.depth() + 1, v.depth() + 1});
    d->weight += std::min(k.weight(), kMaxWeight) + std::min(v.weight(), kMaxWeight);
    check(d->weight <= kMaxWeight, "a dict of more than ", kMaxWeight, " elements and bytes (shared ones counted each time)");
    d->holds_ns = d->holds_ns || v.holds_ns() || k.holds_ns();
    auto [it, fresh] = d->index.emplace(detail::dict_key(k), d->items.size());
    if (fresh) d->items.emplace_back(std::move(k), std::move(v));
    else d->items[it->second].second = std::move(v);
  }
  check(d->depth <= kMaxNesting, "values nested deeper than ", kMaxNesting, " levels");
  Value out;
  out.v_ = std::shared_ptr<const DictData>(std::move(d));
  return out;
}

inline const Value* DictData::find(const Value& key) const {
  const auto k = key.kind();
  if (k != Value::Kind::string && k != Value::Kind::integer && k != Value::Kind::boolean &&
      k != Value::Kind::none && k != Value::Kind::floating && !key.is_tuple())
    return nullptr;
  const auto it = index.find(detail::dict_key(key));
  return it == index.end() ? nullptr : &items[it->second].second;
}

}  // namespace tessera::io::jinja

#include "tessera/io/jinja/python.hpp"  // dict_key, which Value::dict needs
