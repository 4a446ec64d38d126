/// \file
/// Attribute lookup (`x.name`) and the global functions: the Python str, dict and list methods chat templates
/// call (the sandbox's read-only ones: no append or pop), and range, namespace, dict, raise_exception,
/// strftime_now.
#pragma once

#include <ctime>
#include <string>

#include "tessera/io/jinja/eval.hpp"
#include "tessera/io/jinja/strings.hpp"

namespace tessera::io::jinja {

namespace detail {

inline Value string_list(Evaluator& ev, std::vector<std::string> xs) {
  std::vector<Value> out;
  for (auto& x : xs) out.emplace_back(std::move(x));
  return ev.list(std::move(out));
}

// Python's startswith/endswith: a str or a tuple of them.
inline bool affix(const std::string& s, const Value& what, bool prefix) {
  if (what.is_list()) {
    for (const Value& w : what.items())
      if (affix(s, w, prefix)) return true;
    return false;
  }
  check(what.is_string(), prefix ? "startswith" : "endswith", " first arg must be str or a tuple of str, not ",
        type_name(what));
  const std::string& w = what.str();
  return w.size() <= s.size() && (prefix ? s.compare(0, w.size(), w) == 0 : s.compare(s.size() - w.size(), w.size(), w) == 0);
}

inline Value str_method(Evaluator& ev, const std::string& s, const std::string& name, Args& a) {
  auto arg = [&](size_t i) { return i < a.pos.size() ? a.pos[i] : Value(); };
  auto opt_str = [&](size_t i) -> const std::string* {
    const Value& v = i < a.pos.size() ? a.pos[i] : a.kw.empty() ? a.pos.emplace_back(None{}) : a.kw[0].second;
    return v.is_string() ? &v.str() : nullptr;
  };
  auto need_str = [&](size_t i) -> std::string {
    check(arg(i).is_string(), name, "() argument ", i + 1, " must be str, not ", type_name(arg(i)));
    return arg(i).str();
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip")
    return strip(s, opt_str(0), name != "rstrip", name != "lstrip");
  if (name == "split" || name == "rsplit") {
    Value sep = arg(0), maxsplit = arg(1);
    for (const auto& [k, v] : a.kw) (k == "sep" ? sep : maxsplit) = v;
    return string_list(ev, str_split(s, sep.is_string() ? &sep.str() : nullptr, maxsplit.is_int() ? maxsplit.as_int() : -1, name == "rsplit"));
  }
  if (name == "splitlines") return string_list(ev, splitlines(s, truthy(arg(0))));
  if (name == "startswith" || name == "endswith") return affix(s, arg(0), name == "startswith");
  if (name == "upper") return str_upper(s);
  if (name == "lower") return str_lower(s);
  if (name == "title") return py_title(s);
  if (name == "capitalize") return str_capitalize(s);
  if (name == "replace")
    return ev.str(str_replace(s, need_str(0), need_str(1), arg(2).is_int() ? arg(2).as_int() : -1, ev.limits().max_output_bytes));
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
    const std::string w = need_str(0);
    const size_t p = name[0] == 'r' ? s.rfind(w) : s.find(w);
    if (p == std::string::npos) {
      check(name == "find" || name == "rfind", "substring not found");
      return -1;
    }
    return static_cast<int64_t>(utf8_count(std::string_view(s).substr(0, p)));
  }
  if (name == "count") {
    const std::string w = need_str(0);
    if (w.empty()) return static_cast<int64_t>(utf8_count(s) + 1);
    int64_t n = 0;
    for (size_t p = s.find(w); p != std::string::npos; p = s.find(w, p + w.size())) ++n;
    return n;
  }
  if (name == "join") {
    std::string out;
    bool first = true;
    for (const Value& x : ev.iterate(arg(0))) {
      check(x.is_string(), "join: expected str instance, ", type_name(x), " found");
      if (!first) out += s;
      first = false;
      out += x.str();
      check(out.size() <= ev.limits().max_output_bytes, "join: result exceeds the output size limit");
    }
    return ev.str(std::move(out));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    const std::string w = need_str(0);
    if (!affix(s, Value(w), name == "removeprefix")) return s;
    return name == "removeprefix" ? s.substr(w.size()) : s.substr(0, s.size() - w.size());
  }
  auto all = [&](auto pred) {
    const auto cps = decode_utf8(s);
    return !cps.empty() && std::all_of(cps.begin(), cps.end(), [&](const CodePoint& c) { return pred(c.cp); });
  };
  if (name == "isdigit") return all([](uint32_t c) { return c >= '0' && c <= '9'; });
  if (name == "isalpha") return all([](uint32_t c) { return is_letter(c); });
  if (name == "isalnum") return all([](uint32_t c) { return is_letter(c) || is_number(c); });
  if (name == "isspace") return all([](uint32_t c) { return python_space(c); });
  if (name == "islower") return s == str_lower(s) && s != str_upper(s);
  if (name == "isupper") return s == str_upper(s) && s != str_lower(s);
  fail("str method '", name, "' is not supported");
}

inline bool is_str_method(const std::string& n) {
  static const char* const names[] = {"strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith",
                                      "endswith", "upper", "lower", "title", "capitalize", "replace", "find",
                                      "rfind", "index", "rindex", "count", "join", "removeprefix", "removesuffix",
                                      "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper"};
  return std::find(std::begin(names), std::end(names), n) != std::end(names);
}

inline Value dict_method(Evaluator& ev, const Value& d, const std::string& name, Args& a) {
  const auto& items = d.dict_data().items;
  if (name == "get") {
    check(!a.pos.empty(), "get expected at least 1 argument");
    const Value* v = d.dict_data().find(a.pos[0]);
    return v ? *v : a.pos.size() > 1 ? a.pos[1] : Value(None{});
  }
  std::vector<Value> out;
  for (const auto& [k, v] : items)
    out.push_back(name == "keys" ? k : name == "values" ? v : Value::list({k, v}, true));
  return ev.list(std::move(out));
}

inline Value list_method(const Value& l, const std::string& name, Args& a) {
  check(!a.pos.empty(), name, "() takes exactly one argument");
  int64_t n = 0;
  const auto& xs = l.items();
  for (size_t i = 0; i < xs.size(); ++i) {
    if (!equals(xs[i], a.pos[0])) continue;
    if (name == "index") return static_cast<int64_t>(i);
    ++n;
  }
  check(name == "count", repr(a.pos[0]), " is not in list");
  return n;
}

inline Value bound(const Value& self, const std::string& name) {
  return Value::function(name, [self, name](Evaluator& ev, Args& a) -> Value {
    if (self.is_string()) return str_method(ev, self.str(), name, a);
    if (self.is_dict()) return dict_method(ev, self, name, a);
    return list_method(self, name, a);
  }, self.depth() + 1);
}

inline Value range(Evaluator& ev, Args& a) {
  check(!a.pos.empty() && a.pos.size() <= 3 && a.kw.empty(), "range expects 1 to 3 integer arguments");
  for (const Value& v : a.pos) check(v.is_int(), "range: '", type_name(v), "' object cannot be interpreted as an integer");
  const int64_t start = a.pos.size() > 1 ? a.pos[0].as_int() : 0;
  const int64_t stop = a.pos.size() > 1 ? a.pos[1].as_int() : a.pos[0].as_int();
  const int64_t step = a.pos.size() > 2 ? a.pos[2].as_int() : 1;
  check(step != 0, "range() arg 3 must not be zero");
  const double n = std::max(0.0, std::ceil((static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step)));
  check(n <= static_cast<double>(ev.limits().max_range), "range of ", n, " items exceeds the limit (",
        ev.limits().max_range, ")");
  std::vector<Value> out;
  for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) out.emplace_back(start + i * step);
  return ev.list(std::move(out));
}

inline Value strftime_now(Evaluator& ev, Args& a) {
  check(a.pos.size() == 1 && a.pos[0].is_string(), "strftime_now expects a format string");
  const std::string& fmt = a.pos[0].str();
  check(fmt.size() <= 4096, "strftime_now: format too long");
  const std::tm t = ev.now();
  if (fmt.empty()) return std::string();
  std::string buf(fmt.size() * 8 + 64, '\0');
  const size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &t);
  buf.resize(n);
  return buf;
}

}  // namespace detail

inline Value get_attr(Evaluator& ev, const Value& obj, const std::string& name) {
  (void)ev;
  switch (obj.kind()) {
    case Value::Kind::dict:
      if (name == "items" || name == "keys" || name == "values" || name == "get") return detail::bound(obj, name);
      if (const Value* v = obj.dict_data().find(Value(name))) return *v;
      return Undefined{"'dict object' has no attribute '" + name + "'"};
    case Value::Kind::ns:
      if (const Value* v = obj.ns().find(name)) return *v;
      return Undefined{"'Namespace' has no attribute '" + name + "'"};
    case Value::Kind::string:
      if (detail::is_str_method(name)) return detail::bound(obj, name);
      break;
    case Value::Kind::list:
      if (name == "index" || name == "count") return detail::bound(obj, name);
      break;
    default: break;
  }
  return Undefined{"'" + type_name(obj) + " object' has no attribute '" + name + "'"};
}

inline Value get_global(const std::string& name) {
  if (name == "range") return Value::function("range", detail::range);
  if (name == "strftime_now") return Value::function("strftime_now", detail::strftime_now);
  if (name == "raise_exception")
    return Value::function("raise_exception", [](Evaluator&, Args& a) -> Value {
      fail(a.pos.empty() ? std::string("raise_exception") : to_str(a.pos[0]));
    });
  if (name == "namespace" || name == "dict")
    return Value::function(name, [name](Evaluator&, Args& a) -> Value {
      std::vector<std::pair<std::string, Value>> attrs;
      for (const Value& p : a.pos) {
        check(p.is_dict(), name, "() positional argument must be a dict");
        for (const auto& [k, v] : p.dict_data().items) attrs.emplace_back(to_str(k), v);
      }
      for (auto& kv : a.kw) attrs.push_back(kv);
      if (name == "dict") {
        std::vector<std::pair<Value, Value>> kv;
        for (auto& [k, v] : attrs) kv.emplace_back(Value(k), std::move(v));
        return Value::dict(std::move(kv));
      }
      auto ns = std::make_shared<NamespaceData>();
      for (auto& [k, v] : attrs) ns->set(k, std::move(v));
      return Value(std::move(ns));
    });
  return Undefined{name};
}

}  // namespace tessera::io::jinja
