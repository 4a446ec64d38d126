/// \file
/// Python's view of jinja::Value, which templates print and test: truthiness, str() and repr(), JSON as
/// `json.dumps(ensure_ascii=False)` writes it, equality and ordering, len(), and the str helpers
/// (white space, code-point indexing) the filters and methods share.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/io/jinja/value.hpp"
#include "tessera/io/unicode.hpp"

namespace tessera::io::jinja {

/// str.isspace(): the white space Python's strip(), split() and jinja2's `-` / lstrip_blocks remove:
/// Unicode's White_Space (io::is_space) and the information separators U+001C..U+001F.
inline bool python_space(uint32_t cp) { return is_space(cp) || (cp >= 0x1C && cp <= 0x1F); }

/// The type's name as Python spells it, for error messages.
inline std::string type_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::undefined: return "undefined";
    case Value::Kind::none: return "NoneType";
    case Value::Kind::boolean: return "bool";
    case Value::Kind::integer: return "int";
    case Value::Kind::floating: return "float";
    case Value::Kind::string: return "str";
    case Value::Kind::list: return v.is_tuple() ? "tuple" : "list";
    case Value::Kind::dict: return "dict";
    case Value::Kind::function: return "function";
    case Value::Kind::ns: return "Namespace";
  }
  return "?";
}

/// Python's bool(v); Undefined is false.
inline bool truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::undefined:
    case Value::Kind::none: return false;
    case Value::Kind::boolean: return v.as_bool();
    case Value::Kind::integer: return v.as_int() != 0;
    case Value::Kind::floating: return v.as_double() != 0.0;
    case Value::Kind::string: return !v.str().empty();
    case Value::Kind::list: return !v.items().empty();
    case Value::Kind::dict: return !v.dict_data().items.empty();
    default: return true;
  }
}

/// repr(float): the shortest digits that read back to x, fixed between 1e-4 and 1e16, else d.ddde+XX.
inline std::string format_float(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  std::string sci(buf, r.ptr);  // [-]d[.ddd]e[+-]XX
  const bool neg = sci[0] == '-';
  const size_t e = sci.find('e');
  std::string digits;
  for (size_t i = neg ? 1 : 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  const int exp = std::stoi(sci.substr(e + 1));
  std::string out = neg ? "-" : "";
  if (exp >= -5 && exp < 16) {
    if (exp < 0) {
      out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
      out += digits + std::string(static_cast<size_t>(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(exp) + 1) + "." + digits.substr(static_cast<size_t>(exp) + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char ebuf[16];
  std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  return out + ebuf;
}

namespace detail {
inline void repr_to(const Value& v, std::string& out);

inline void repr_string(std::string_view s, std::string& out) {
  const bool dq = s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos;
  const char q = dq ? '"' : '\'';
  out += q;
  for (unsigned char c : s) {
    if (c == q || c == '\\') (out += '\\') += static_cast<char>(c);
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += q;
}

inline void repr_to(const Value& v, std::string& out) {
  switch (v.kind()) {
    case Value::Kind::string: repr_string(v.str(), out); return;
    case Value::Kind::list: {
      out += v.is_tuple() ? '(' : '[';
      const auto& xs = v.items();
      for (size_t i = 0; i < xs.size(); ++i) {
        if (i) out += ", ";
        repr_to(xs[i], out);
      }
      if (v.is_tuple() && xs.size() == 1) out += ',';
      out += v.is_tuple() ? ')' : ']';
      return;
    }
    case Value::Kind::dict: {
      out += '{';
      bool first = true;
      for (const auto& [k, x] : v.dict_data().items) {
        if (!first) out += ", ";
        first = false;
        repr_to(k, out);
        out += ": ";
        repr_to(x, out);
      }
      out += '}';
      return;
    }
    case Value::Kind::ns: {
      out += "<Namespace {";
      bool first = true;
      for (const auto& [k, x] : v.ns().attrs) {
        if (!first) out += ", ";
        first = false;
        repr_string(k, out);
        out += ": ";
        repr_to(x, out);
      }
      out += "}>";
      return;
    }
    case Value::Kind::undefined: return;
    case Value::Kind::none: out += "None"; return;
    case Value::Kind::boolean: out += v.as_bool() ? "True" : "False"; return;
    case Value::Kind::integer: out += std::to_string(v.as_int()); return;
    case Value::Kind::floating: out += format_float(v.as_double()); return;
    case Value::Kind::function: out += "<function " + v.fn().name + ">"; return;
  }
}

inline std::string dict_key(const Value& k) {
  switch (k.kind()) {
    case Value::Kind::string: return "s" + k.str();
    case Value::Kind::none: return "z";
    case Value::Kind::boolean:
    case Value::Kind::integer: return "n" + std::to_string(k.as_int());
    case Value::Kind::floating: {
      const double d = k.as_double();
      if (d == std::floor(d) && std::abs(d) < 9e18) return "n" + std::to_string(static_cast<int64_t>(d));
      return "f" + format_float(d);
    }
    case Value::Kind::list:
      if (k.is_tuple()) {
        std::string s = "t";
        for (const Value& x : k.items()) s += dict_key(x) + '\x1f';
        return s;
      }
      [[fallthrough]];
    default: fail("unhashable type: '", type_name(k), "'");
  }
}
}  // namespace detail

/// repr(v): strings quoted as Python quotes them, True/None, ['a', 1], {'k': 2}.
inline std::string repr(const Value& v) {
  std::string out;
  detail::repr_to(v, out);
  return out;
}

/// str(v): a string as is, Undefined as "", everything else as its repr.
inline std::string to_str(const Value& v) { return v.is_string() ? v.str() : repr(v); }

namespace detail {
inline void json_string(std::string_view s, std::string& out) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          out += b;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

inline void json_to(const Value& v, int indent, int level, std::string& out) {
  auto newline = [&](int lv) {
    out += '\n';
    out.append(static_cast<size_t>(indent * lv), ' ');
  };
  const char* item_sep = indent < 0 ? ", " : ",";
  switch (v.kind()) {
    case Value::Kind::none: out += "null"; return;
    case Value::Kind::boolean: out += v.as_bool() ? "true" : "false"; return;
    case Value::Kind::integer: out += std::to_string(v.as_int()); return;
    case Value::Kind::floating: {
      const double d = v.as_double();
      out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity") : format_float(d);
      return;
    }
    case Value::Kind::string: json_string(v.str(), out); return;
    case Value::Kind::list: {
      const auto& xs = v.items();
      if (xs.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < xs.size(); ++i) {
        if (i) out += item_sep;
        if (indent >= 0) newline(level + 1);
        json_to(xs[i], indent, level + 1, out);
      }
      if (indent >= 0) newline(level);
      out += ']';
      return;
    }
    case Value::Kind::dict: {
      const auto& xs = v.dict_data().items;
      if (xs.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      for (size_t i = 0; i < xs.size(); ++i) {
        if (i) out += item_sep;
        if (indent >= 0) newline(level + 1);
        const Value& k = xs[i].first;
        if (k.is_string()) json_string(k.str(), out);
        else if (k.is_number() || k.is_none()) json_string(k.is_none() ? "null" : k.kind() == Value::Kind::boolean ? (k.as_bool() ? "true" : "false") : repr(k), out);
        else fail("keys must be str, int, float, bool or None, not ", type_name(k));
        out += ": ";
        json_to(xs[i].second, indent, level + 1, out);
      }
      if (indent >= 0) newline(level);
      out += '}';
      return;
    }
    default: fail("Object of type ", type_name(v), " is not JSON serializable");
  }
}
}  // namespace detail

/// json.dumps(v, ensure_ascii=False, indent=indent) (indent < 0: None), as HF's tojson filter writes it:
/// keys in insertion order, separators ", " and ": " (",", ": " when indented).
inline std::string to_json(const Value& v, int indent = -1) {
  std::string out;
  detail::json_to(v, indent, 0, out);
  return out;
}

/// Python's ==: numbers by value across int/float/bool, containers element-wise, Undefined equal to Undefined.
inline bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int()) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::undefined:
    case Value::Kind::none: return true;
    case Value::Kind::string: return a.str() == b.str();
    case Value::Kind::list: {
      const auto &x = a.items(), &y = b.items();
      if (x.size() != y.size() || a.is_tuple() != b.is_tuple()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equals(x[i], y[i])) return false;
      return true;
    }
    case Value::Kind::dict: {
      const auto &x = a.dict_data(), &y = b.dict_data();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, v] : x.items) {
        const Value* w = y.find(k);
        if (!w || !equals(v, *w)) return false;
      }
      return true;
    }
    case Value::Kind::function: return &a.fn() == &b.fn();
    case Value::Kind::ns: return &a.ns() == &b.ns();
    default: return false;
  }
}

/// Python's ordering (<0, 0, >0) of numbers, strings (by code point: UTF-8 bytes sort the same) and lists;
/// Error for other pairs ("'<' not supported between ...").
inline int compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int()) return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int();
    const double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : x > y;
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.str().compare(b.str());
    return c < 0 ? -1 : c > 0;
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const auto &x = a.items(), &y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (!equals(x[i], y[i])) return compare(x[i], y[i]);
    return x.size() < y.size() ? -1 : x.size() > y.size();
  }
  fail("'<' not supported between instances of '", type_name(a), "' and '", type_name(b), "'");
}

/// Code points of s (a malformed byte counts as one).
inline size_t utf8_count(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

/// len(v): code points of a str, items of a list or dict; 0 for Undefined. Error for other types.
inline int64_t length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::string: return static_cast<int64_t>(utf8_count(v.str()));
    case Value::Kind::list: return static_cast<int64_t>(v.items().size());
    case Value::Kind::dict: return static_cast<int64_t>(v.dict_data().items.size());
    case Value::Kind::ns: return static_cast<int64_t>(v.ns().attrs.size());
    case Value::Kind::undefined: return 0;
    default: fail("object of type '", type_name(v), "' has no len()");
  }
}

/// str.strip / lstrip / rstrip: chars = nullptr strips white space, else any code point of *chars.
inline std::string strip(std::string_view s, const std::string* chars, bool left, bool right) {
  const auto cps = decode_utf8(s);
  std::vector<uint32_t> set;
  if (chars)
    for (const auto& c : decode_utf8(*chars)) set.push_back(c.cp);
  auto strippable = [&](uint32_t cp) {
    return chars ? std::find(set.begin(), set.end(), cp) != set.end() : python_space(cp);
  };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strippable(cps[b].cp)) ++b;
  if (right)
    while (e > b && strippable(cps[e - 1].cp)) --e;
  if (b == e) return {};
  return std::string(s.substr(cps[b].offset, cps[e - 1].offset + cps[e - 1].length - cps[b].offset));
}

/// The code points of s as one-character strings (iteration over a str).
inline std::vector<Value> chars_of(std::string_view s) {
  std::vector<Value> out;
  for (const auto& c : decode_utf8(s)) out.emplace_back(std::string(s.substr(c.offset, c.length)));
  return out;
}

}  // namespace tessera::io::jinja
