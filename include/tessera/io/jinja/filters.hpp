/// \file
/// jinja2's builtin filters and tests that chat templates use, with jinja2's argument names and defaults
/// (HF's tojson: json.dumps with ensure_ascii=False, keys in insertion order). Case mapping is ASCII for
/// upper/title/capitalize and Unicode's simple lowercase for lower.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "tessera/io/jinja/eval.hpp"
#include "tessera/io/jinja/strings.hpp"

namespace tessera::io::jinja {

namespace detail {

// Binds a call's arguments to parameter names, as Python does for a builtin's signature.
class Params {
 public:
  Params(Args& a, std::string_view fn, std::initializer_list<std::string_view> names) : a_(a) {
    check(a.pos.size() <= names.size(), fn, "() takes at most ", names.size(), " argument(s), got ", a.pos.size());
    names_.assign(names.begin(), names.end());
    for (const auto& [k, v] : a.kw)
      check(std::find(names_.begin(), names_.end(), k) != names_.end(), fn, "() got an unexpected keyword argument '", k, "'");
  }
  // The argument of parameter i, or def.
  Value get(size_t i, Value def = Value()) const {
    if (i < a_.pos.size()) return a_.pos[i];
    for (const auto& [k, v] : a_.kw)
      if (k == names_[i]) return v;
    return def;
  }
  bool has(size_t i) const { return !get(i).is_undefined(); }

 private:
  Args& a_;
  std::vector<std::string_view> names_;
};

// jinja2's attribute getter: "a.b.0" looks up item a, then b, then index 0.
inline Value attr_path(Evaluator& ev, Value v, const std::string& path) {
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool digits = !part.empty() && part.size() < 18 && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    v = ev.get_item(v, digits ? Value(static_cast<int64_t>(std::stoll(part))) : Value(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

// sort/unique/min/max compare strings lowercased unless case_sensitive.
inline Value sort_key(const Value& v, bool case_sensitive) {
  return v.is_string() && !case_sensitive ? Value(str_lower(v.str())) : v;
}

inline std::vector<Value> select_items(Evaluator& ev, const Value& seq, Args& a, bool by_attr, bool keep) {
  std::vector<Value> out;
  Args rest;
  size_t first = by_attr ? 1 : 0;
  check(!by_attr || !a.pos.empty(), "selectattr/rejectattr need an attribute name");
  std::string test = a.pos.size() > first ? to_str(a.pos[first]) : "";
  for (size_t i = first + 1; i < a.pos.size(); ++i) rest.pos.push_back(a.pos[i]);
  rest.kw = a.kw;
  if (!truthy(seq)) return out;  // jinja2 selects from nothing when the value is falsy (None included)
  for (const Value& x : ev.iterate(seq)) {
    const Value probe = by_attr ? attr_path(ev, x, to_str(a.pos[0])) : x;
    Args t = rest;
    const bool pass = test.empty() ? truthy(probe) : apply_test(ev, test, probe, t);
    if (pass == keep) out.push_back(x);
  }
  return out;
}

inline Value filter_sort(Evaluator& ev, const Value& v, Args& a) {
  Params p(a, "sort", {"reverse", "case_sensitive", "attribute"});
  const bool rev = truthy(p.get(0)), cs = truthy(p.get(1));
  const Value attr = p.get(2);
  std::vector<std::pair<Value, Value>> keyed;
  for (const Value& x : ev.iterate(v)) keyed.emplace_back(sort_key(attr.is_undefined() ? x : attr_path(ev, x, to_str(attr)), cs), x);
  ev.charge(static_cast<int64_t>(keyed.size()) * 8);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return rev ? compare(y.first, x.first) < 0 : compare(x.first, y.first) < 0;
  });
  std::vector<Value> out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return ev.list(std::move(out));
}

inline Value filter_minmax(Evaluator& ev, const Value& v, Args& a, bool want_max) {
  Params p(a, want_max ? "max" : "min", {"case_sensitive", "attribute"});
  const bool cs = truthy(p.get(0));
  const Value attr = p.get(1);
  Value best, best_key;
  for (const Value& x : ev.iterate(v)) {
    const Value k = sort_key(attr.is_undefined() ? x : attr_path(ev, x, to_str(attr)), cs);
    if (best.is_undefined() || (want_max ? compare(k, best_key) > 0 : compare(k, best_key) < 0)) best = x, best_key = k;
  }
  return best.is_undefined() ? Value(Undefined{"No aggregated item, sequence was empty."}) : best;
}

inline Value filter_indent(Evaluator& ev, const Value& v, Args& a) {
  Params p(a, "indent", {"width", "first", "blank"});
  const Value w = p.get(0, 4);
  const std::string pad = w.is_string() ? w.str() : std::string(static_cast<size_t>(std::clamp<int64_t>(w.as_int(), 0, 1 << 16)), ' ');
  std::vector<std::string> lines = splitlines(to_str(v) + "\n");
  // The pad goes on every line: check the result's size before building it, not after.
  check(lines.size() * (pad.size() + 1) <= ev.limits().max_output_bytes, "indent: ", lines.size(), " lines padded by ",
        pad.size(), " exceed the output size limit (", ev.limits().max_output_bytes, ")");
  std::string out;
  if (truthy(p.get(2))) {
    for (size_t i = 0; i < lines.size(); ++i) out += (i ? "\n" + pad : "") + lines[i];
  } else {
    out = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) out += "\n" + (lines[i].empty() ? "" : pad + lines[i]);
  }
  if (truthy(p.get(1))) out = pad + out;
  return ev.str(std::move(out));
}

inline Value filter_truncate(Evaluator& ev, const Value& v, Args& a) {
  Params p(a, "truncate", {"length", "killwords", "end", "leeway"});
  const std::string s = to_str(v);
  const int64_t len = p.get(0, 255).as_int(), leeway = p.get(3, 5).as_int();
  const std::string end = to_str(p.get(2, "..."));
  const auto cps = decode_utf8(s);
  auto prefix = [&](int64_t n) {
    n = std::clamp<int64_t>(n, 0, static_cast<int64_t>(cps.size()));
    return n == static_cast<int64_t>(cps.size()) ? s : s.substr(0, cps[static_cast<size_t>(n)].offset);
  };
  if (static_cast<int64_t>(cps.size()) <= len + leeway) return v.is_string() ? v : Value(s);
  const int64_t keep = len - static_cast<int64_t>(utf8_count(end));
  if (truthy(p.get(1))) return ev.str(prefix(keep) + end);
  std::string head = prefix(keep);
  const size_t sp = head.rfind(' ');
  if (sp != std::string::npos) head.resize(sp);
  return ev.str(head + end);
}

inline Value filter_round(const Value& v, Args& a) {
  Params p(a, "round", {"precision", "method"});
  check(v.is_number(), "round: a number is required, not ", type_name(v));
  const int64_t prec = p.get(0, 0).as_int();
  const std::string method = to_str(p.get(1, "common"));
  if (method == "common" && v.is_int() && prec >= 0) return v.as_int();
  const double scale = std::pow(10.0, static_cast<double>(prec)), x = v.as_double() * scale;
  double r;
  if (method == "common") r = std::nearbyint(x);  // Python's round: half to even
  else if (method == "ceil") r = std::ceil(x);
  else if (method == "floor") r = std::floor(x);
  else fail("round: method must be 'common', 'ceil' or 'floor'");
  return r / scale;
}

inline Value filter_int(const Value& v, Args& a) {
  Params p(a, "int", {"default", "base"});
  const Value def = p.get(0, 0);
  if (v.is_int()) return v.as_int();
  if (v.kind() == Value::Kind::floating) {
    const double d = v.as_double();
    return std::isfinite(d) && std::abs(d) < 9.2e18 ? Value(static_cast<int64_t>(d)) : def;
  }
  if (!v.is_string()) return def;
  const std::string s = strip(v.str(), nullptr, true, true);
  int64_t base = p.get(1, 10).as_int(), r = 0;
  size_t i = s[0] == '-' || s[0] == '+' ? 1 : 0;
  bool ok = i < s.size() && base >= 2 && base <= 36;
  for (size_t k = i; ok && k < s.size(); ++k) {
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(s[k])));
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'z' ? c - 'a' + 10 : 99;
    ok = d < base && !__builtin_mul_overflow(r, base, &r) && !__builtin_add_overflow(r, d, &r);
  }
  if (ok) return s[0] == '-' ? -r : r;
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);  // jinja2 falls back to int(float(s))
  if (!s.empty() && end == s.c_str() + s.size() && std::isfinite(d) && std::abs(d) < 9.2e18) return static_cast<int64_t>(d);
  return def;
}

inline Value filter_float(const Value& v, Args& a) {
  Params p(a, "float", {"default"});
  if (v.is_number()) return v.as_double();
  if (v.is_string()) {
    const std::string s = strip(v.str(), nullptr, true, true);
    char* end = nullptr;
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end == s.c_str() + s.size() && s.find_first_of("xX") == std::string::npos) return d;
  }
  return p.get(0, 0.0);
}

inline Value filter_map(Evaluator& ev, const Value& v, Args& a) {
  std::vector<Value> out;
  if (!truthy(v)) return ev.list({});  // as select: a falsy value maps to nothing
  for (const auto& [k, x] : a.kw)
    if (k == "attribute") {
      Value def;
      for (const auto& [k2, d] : a.kw)
        if (k2 == "default") def = d;
      for (const Value& item : ev.iterate(v)) {
        Value got = attr_path(ev, item, to_str(x));
        out.push_back(got.is_undefined() && !def.is_undefined() ? def : got);
      }
      return ev.list(std::move(out));
    }
  check(!a.pos.empty(), "map: needs a filter name or attribute=");
  const std::string name = to_str(a.pos[0]);
  for (const Value& item : ev.iterate(v)) {
    Args rest;
    rest.pos.assign(a.pos.begin() + 1, a.pos.end());
    rest.kw = a.kw;
    out.push_back(apply_filter(ev, name, item, rest));
  }
  return ev.list(std::move(out));
}

inline Value filter_dictsort(Evaluator& ev, const Value& v, Args& a) {
  Params p(a, "dictsort", {"case_sensitive", "by", "reverse"});
  check(v.is_dict(), "dictsort: a dict is required, not ", type_name(v));
  const bool cs = truthy(p.get(0)), rev = truthy(p.get(2)), by_value = to_str(p.get(1, "key")) == "value";
  std::vector<std::pair<Value, Value>> kv = v.dict_data().items;
  ev.charge(static_cast<int64_t>(kv.size()) * 8);
  std::stable_sort(kv.begin(), kv.end(), [&](const auto& x, const auto& y) {
    const int c = compare(sort_key(by_value ? x.second : x.first, cs), sort_key(by_value ? y.second : y.first, cs));
    return rev ? c > 0 : c < 0;
  });
  std::vector<Value> out;
  for (auto& [k, x] : kv) out.push_back(Value::list({k, x}, true));
  return ev.list(std::move(out));
}

}  // namespace detail

inline Value apply_filter(Evaluator& ev, const std::string& name, Value v, Args& a) {
  using namespace detail;
  const std::string& n = name;
  if (n == "default" || n == "d") {
    Params p(a, "default", {"default_value", "boolean"});
    return v.is_undefined() || (truthy(p.get(1)) && !truthy(v)) ? p.get(0, "") : v;
  }
  if (n == "length" || n == "count") return length(v);
  if (n == "safe" || n == "e" || n == "escape" || n == "string" || n == "trim" || n == "upper" || n == "lower" ||
      n == "capitalize" || n == "title" || n == "wordcount" || n == "center") {
    if (n == "safe") return v.is_string() ? v : Value(to_str(v));
    const std::string s = to_str(v);
    if (n == "string") return s;
    if (n == "e" || n == "escape") return ev.str(html_escape(s));
    if (n == "trim") {
      Params p(a, "trim", {"chars"});
      const Value chars = p.get(0);
      return strip(s, chars.is_string() ? &chars.str() : nullptr, true, true);
    }
    if (n == "upper") return str_upper(s);
    if (n == "lower") return str_lower(s);
    if (n == "capitalize") return str_capitalize(s);
    if (n == "title") return jinja_title(s);
    if (n == "wordcount") return word_count(s);
    Params p(a, "center", {"width"});
    return ev.str(str_center(s, p.get(0, 80).as_int()));
  }
  if (n == "tojson") {
    Params p(a, "tojson", {"indent"});
    const Value ind = p.get(0, None{});
    return ev.str(to_json(v, ind.is_none() ? -1 : static_cast<int>(std::clamp<int64_t>(ind.as_int(), 0, 64))));
  }
  if (n == "join") {
    Params p(a, "join", {"d", "attribute"});
    const std::string sep = to_str(p.get(0, ""));
    const Value attr = p.get(1);
    std::string out;
    bool first = true;
    for (const Value& x : ev.iterate(v)) {
      if (!first) out += sep;
      first = false;
      out += to_str(attr.is_undefined() ? x : attr_path(ev, x, to_str(attr)));
      check(out.size() <= ev.limits().max_output_bytes, "join: result exceeds the output size limit");
    }
    return ev.str(std::move(out));
  }
  if (n == "replace") {
    Params p(a, "replace", {"old", "new", "count"});
    const Value cnt = p.get(2, None{});
    return ev.str(str_replace(to_str(v), to_str(p.get(0)), to_str(p.get(1)), cnt.is_none() ? -1 : cnt.as_int(),
                              ev.limits().max_output_bytes));
  }
  if (n == "first" || n == "last") {
    std::vector<Value> xs = ev.iterate(v);
    if (xs.empty()) return Undefined{"No " + n + " item, sequence was empty."};
    return n == "first" ? xs.front() : xs.back();
  }
  if (n == "list") return ev.list(ev.iterate(v));
  if (n == "reverse") {
    if (v.is_string()) {
      auto cs = chars_of(v.str());
      std::string out;
      for (auto it = cs.rbegin(); it != cs.rend(); ++it) out += it->str();
      return out;
    }
    std::vector<Value> xs = ev.iterate(v);
    std::reverse(xs.begin(), xs.end());
    return ev.list(std::move(xs));
  }
  if (n == "items") {
    if (v.is_undefined()) return Value::list({});
    check(v.is_dict(), "items: a dict is required, not ", type_name(v));
    std::vector<Value> out;
    for (const auto& [k, x] : v.dict_data().items) out.push_back(Value::list({k, x}, true));
    return ev.list(std::move(out));
  }
  if (n == "int") return filter_int(v, a);
  if (n == "float") return filter_float(v, a);
  if (n == "abs") {
    check(v.is_number(), "bad operand type for abs(): '", type_name(v), "'");
    if (v.is_int()) {
      check(v.as_int() != INT64_MIN, "integer overflow");
      return std::abs(v.as_int());
    }
    return std::abs(v.as_double());
  }
  if (n == "round") return filter_round(v, a);
  if (n == "sum") {
    Params p(a, "sum", {"attribute", "start"});
    Value total = p.get(1, 0);
    const Value attr = p.get(0);
    for (const Value& x : ev.iterate(v)) {
      const Value item = attr.is_undefined() ? x : attr_path(ev, x, to_str(attr));
      int64_t r;
      if (total.is_int() && item.is_int() && !__builtin_add_overflow(total.as_int(), item.as_int(), &r)) total = r;
      else if (total.is_number() && item.is_number() && !(total.is_int() && item.is_int())) total = total.as_double() + item.as_double();
      else fail("sum: unsupported operand types '", type_name(total), "' and '", type_name(item), "'");
    }
    return total;
  }
  if (n == "min" || n == "max") return filter_minmax(ev, v, a, n == "max");
  if (n == "sort") return filter_sort(ev, v, a);
  if (n == "dictsort") return filter_dictsort(ev, v, a);
  if (n == "unique") {
    Params p(a, "unique", {"case_sensitive", "attribute"});
    const bool cs = truthy(p.get(0));
    const Value attr = p.get(1);
    std::vector<Value> out, seen;
    for (const Value& x : ev.iterate(v)) {
      const Value k = sort_key(attr.is_undefined() ? x : attr_path(ev, x, to_str(attr)), cs);
      ev.charge(static_cast<int64_t>(seen.size()));
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, k); }))
        seen.push_back(k), out.push_back(x);
    }
    return ev.list(std::move(out));
  }
  if (n == "select" || n == "reject") return ev.list(select_items(ev, v, a, false, n == "select"));
  if (n == "selectattr" || n == "rejectattr") return ev.list(select_items(ev, v, a, true, n == "selectattr"));
  if (n == "map") return filter_map(ev, v, a);
  if (n == "indent") return filter_indent(ev, v, a);
  if (n == "truncate") return filter_truncate(ev, v, a);
  if (n == "format") {
    check(a.pos.empty() || a.kw.empty(), "format: positional and keyword arguments cannot be mixed");
    std::vector<std::pair<Value, Value>> kw;
    for (auto& [k, x] : a.kw) kw.emplace_back(Value(k), x);
    return ev.str(percent_format(to_str(v), a.kw.empty() ? Value::list(a.pos, true) : Value::dict(std::move(kw))));
  }
  fail("no filter named '", name, "'");
}

inline bool apply_test(Evaluator& ev, const std::string& name, const Value& v, Args& a) {
  const std::string& n = name;
  using K = Value::Kind;
  auto arg = [&]() -> const Value& {
    check(!a.pos.empty(), "test '", n, "' needs an argument");
    return a.pos[0];
  };
  if (n == "defined") return !v.is_undefined();
  if (n == "undefined") return v.is_undefined();
  if (n == "none") return v.is_none();
  if (n == "string") return v.is_string();
  if (n == "number") return v.is_number();
  if (n == "integer") return v.kind() == K::integer;
  if (n == "float") return v.kind() == K::floating;
  if (n == "boolean") return v.kind() == K::boolean;
  if (n == "true") return v.kind() == K::boolean && v.as_bool();
  if (n == "false") return v.kind() == K::boolean && !v.as_bool();
  if (n == "mapping") return v.is_dict();
  if (n == "iterable") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  if (n == "sequence") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  if (n == "callable") return v.kind() == K::function;
  if (n == "odd" || n == "even") {
    check(v.is_int(), "test '", n, "': an integer is required, not ", type_name(v));
    return (v.as_int() % 2 != 0) == (n == "odd");
  }
  if (n == "divisibleby") {
    check(v.is_int() && arg().is_int() && arg().as_int() != 0, "divisibleby: integers, not zero, are required");
    return v.as_int() % arg().as_int() == 0;
  }
  if (n == "eq" || n == "equalto" || n == "==") return equals(v, arg());
  if (n == "ne" || n == "!=") return !equals(v, arg());
  if (n == "sameas") return equals(v, arg()) && v.kind() == arg().kind();
  if (n == "lt" || n == "lessthan" || n == "<") return compare(v, arg()) < 0;
  if (n == "le" || n == "<=") return compare(v, arg()) <= 0;
  if (n == "gt" || n == "greaterthan" || n == ">") return compare(v, arg()) > 0;
  if (n == "ge" || n == ">=") return compare(v, arg()) >= 0;
  if (n == "in") {
    Args none;
    (void)none;
    const Value& c = arg();
    if (c.is_string()) return v.is_string() && c.str().find(v.str()) != std::string::npos;
    for (const Value& x : ev.iterate(c))
      if (equals(x, v)) return true;
    return false;
  }
  if (n == "lower" || n == "upper") {
    const std::string s = to_str(v);
    return s == (n == "lower" ? str_lower(s) : str_upper(s));
  }
  if (n == "escaped") return false;
  fail("no test named '", name, "'");
}

}  // namespace tessera::io::jinja
