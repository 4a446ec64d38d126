/// \file
/// Expression evaluation for jinja::Evaluator: Python's arithmetic (int overflow is an Error where Python
/// would grow a big int), comparisons, `in`, slicing with negative steps, and printf-style `%` formatting
/// (shared with the format filter).
#pragma once

#include <cctype>
#include <cmath>
#include <optional>
#include <cstdio>
#include <string>

#include "tessera/io/jinja/eval.hpp"

namespace tessera::io::jinja {

namespace detail {

// One printf conversion of Python's `str % args` (flags, width, precision; s r d i f F e E g G x X o c %).
inline std::string percent_one(char conv, const std::string& flags, int width, int prec, const Value& v) {
  std::string body;
  auto num = [&]() -> const Value& {
    check(v.is_number(), "%", conv, " format: a real number is required, not ", type_name(v));
    return v;
  };
  char fmt[32], buf[512];
  if (conv == 's' || conv == 'r') {
    body = conv == 's' ? to_str(v) : repr(v);
    if (prec >= 0 && static_cast<size_t>(prec) < utf8_count(body)) {
      const auto cps = decode_utf8(body);
      body = body.substr(0, cps[static_cast<size_t>(prec)].offset);
    }
  } else if (conv == 'd' || conv == 'i' || conv == 'x' || conv == 'X' || conv == 'o') {
    const Value& n = num();
    const long long x = n.is_int() ? n.as_int() : static_cast<long long>(std::trunc(n.as_double()));
    std::snprintf(fmt, sizeof fmt, "%%%s%s%s", flags.c_str(), prec >= 0 ? ".*" : "", conv == 'i' ? "lld" : conv == 'd' ? "lld" : conv == 'x' ? "llx" : conv == 'X' ? "llX" : "llo");
    if (conv != 'd' && conv != 'i' && x < 0) {  // Python prints -0x.., C would print the two's complement
      std::string s = percent_one(conv, flags, 0, prec, Value(static_cast<int64_t>(-x)));
      body = "-" + s;
    } else if (prec >= 0) {
      std::snprintf(buf, sizeof buf, fmt, std::min(prec, 100), x);
      body = buf;
    } else {
      std::snprintf(buf, sizeof buf, fmt, x);
      body = buf;
    }
  } else if (std::string_view("fFeEgG").find(conv) != std::string_view::npos) {
    const double x = num().as_double();
    std::snprintf(fmt, sizeof fmt, "%%%s.%d%c", flags.c_str(), prec >= 0 ? std::min(prec, 100) : 6, conv);
    std::snprintf(buf, sizeof buf, fmt, x);
    body = buf;
  } else if (conv == 'c') {
    if (v.is_string()) body = v.str();
    else append_utf8(body, static_cast<uint32_t>(num().as_int()));
  } else {
    fail("unsupported format character '", conv, "'");
  }
  const size_t n = utf8_count(body);
  if (width > 0 && n < static_cast<size_t>(width)) {
    const size_t pad = static_cast<size_t>(width) - n;
    if (flags.find('-') != std::string::npos) body += std::string(pad, ' ');
    else if (flags.find('0') != std::string::npos && conv != 's' && conv != 'r' && conv != 'c') {
      const size_t sign = !body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ');
      body.insert(sign, std::string(pad, '0'));
    } else body = std::string(pad, ' ') + body;
  }
  return body;
}

}  // namespace detail

/// Python's `fmt % args`: args a tuple (one value each), a dict (`%(key)s`), or one value.
inline std::string percent_format(const std::string& fmt, const Value& args) {
  std::string out;
  size_t next = 0;
  const bool many = args.is_tuple();
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    check(++i < fmt.size(), "incomplete format");
    const Value* v = nullptr;
    Value keyed;
    if (fmt[i] == '(') {
      const size_t close = fmt.find(')', i);
      check(close != std::string::npos && args.is_dict(), "format requires a mapping");
      const Value* found = args.dict_data().find(Value(fmt.substr(i + 1, close - i - 1)));
      check(found != nullptr, "format: key '", fmt.substr(i + 1, close - i - 1), "' missing");
      keyed = *found;
      v = &keyed;
      i = close + 1;
    }
    std::string flags;
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos) flags += fmt[i++];
    int width = 0, prec = -1;
    while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i])) && width < 10000) width = width * 10 + (fmt[i++] - '0');
    if (i < fmt.size() && fmt[i] == '.') {
      prec = 0;
      ++i;
      while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i])) && prec < 10000) prec = prec * 10 + (fmt[i++] - '0');
    }
    check(i < fmt.size(), "incomplete format");
    const char conv = fmt[i];
    if (conv == '%') {
      out += '%';
      continue;
    }
    if (!v) {
      if (many) {
        check(next < args.items().size(), "not enough arguments for format string");
        v = &args.items()[next++];
      } else {
        check(next++ == 0, "not enough arguments for format string");
        v = &args;
      }
    }
    check(width <= 4096, "format width too large");
    out += detail::percent_one(conv, flags, width, prec, *v);
  }
  check(!many || next == args.items().size() || args.items().empty(), "not all arguments converted during string formatting");
  return out;
}

inline Value Evaluator::eval_node(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::constant: return e.value;
    case Expr::Kind::name: {
      if (const Value* v = scope_->find(e.name)) return *v;
      Value g = get_global(e.name);
      if (g.is_undefined()) return Undefined{e.name};
      return g;
    }
    case Expr::Kind::list:
    case Expr::Kind::tuple: {
      std::vector<Value> xs;
      for (const auto& a : e.args) xs.push_back(eval(*a));
      return list(std::move(xs), e.kind == Expr::Kind::tuple);
    }
    case Expr::Kind::dict: {
      std::vector<std::pair<Value, Value>> kv;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) kv.emplace_back(eval(*e.args[i]), eval(*e.args[i + 1]));
      charge(static_cast<int64_t>(kv.size()));
      return Value::dict(std::move(kv));
    }
    case Expr::Kind::attr: {
      const Value obj = eval(*e.args[0]);
      undefined_check(obj);
      return get_attr(*this, obj, e.name);
    }
    case Expr::Kind::item: {
      const Value obj = eval(*e.args[0]);
      return get_item(obj, eval(*e.args[1]));
    }
    case Expr::Kind::slice: return slice(eval(*e.args[0]), e);
    case Expr::Kind::call: {
      const Value fn = eval(*e.args[0]);
      Args a = eval_args(e);
      return call(fn, a);
    }
    case Expr::Kind::filter: {
      Value subject = eval(*e.args[0]);
      Args a = eval_args(e);
      return apply_filter(*this, e.name, std::move(subject), a);
    }
    case Expr::Kind::test: {
      const Value subject = eval(*e.args[0]);
      Args a = eval_args(e);
      return apply_test(*this, e.name, subject, a) != e.negated;
    }
    case Expr::Kind::neg: {
      const Value v = eval(*e.args[0]);
      undefined_check(v);
      if (v.is_int()) {
        int64_t r;
        check(!__builtin_sub_overflow(int64_t{0}, v.as_int(), &r), "integer overflow");
        return r;
      }
      check(v.is_number(), "bad operand type for unary -: '", type_name(v), "'");
      return -v.as_double();
    }
    case Expr::Kind::pos: {
      const Value v = eval(*e.args[0]);
      undefined_check(v);
      check(v.is_number(), "bad operand type for unary +: '", type_name(v), "'");
      return v.kind() == Value::Kind::boolean ? Value(v.as_int()) : v;
    }
    case Expr::Kind::not_: return !truthy(eval(*e.args[0]));
    case Expr::Kind::and_: {
      Value a = eval(*e.args[0]);
      return truthy(a) ? eval(*e.args[1]) : a;
    }
    case Expr::Kind::or_: {
      Value a = eval(*e.args[0]);
      return truthy(a) ? a : eval(*e.args[1]);
    }
    case Expr::Kind::binary: {
      const Value a = eval(*e.args[0]);
      return binary(e.name, a, eval(*e.args[1]));
    }
    case Expr::Kind::compare: {
      Value left = eval(*e.args[0]);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value right = eval(*e.args[i + 1]);
        const std::string& op = e.ops[i];
        bool ok;
        if (op == "==") ok = equals(left, right);
        else if (op == "!=") ok = !equals(left, right);
        else if (op == "in") ok = contains(right, left);
        else if (op == "notin") ok = !contains(right, left);
        else {
          undefined_check(left);
          undefined_check(right);
          const int c = compare(left, right);
          ok = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
        }
        if (!ok) return false;
        left = std::move(right);
      }
      return true;
    }
    case Expr::Kind::cond:
      if (truthy(eval(*e.args[0]))) return eval(*e.args[1]);
      return e.args[2] ? eval(*e.args[2]) : Value(Undefined{"conditional expression"});
  }
  return {};
}

inline bool Evaluator::contains(const Value& c, const Value& x) {
  switch (c.kind()) {
    case Value::Kind::string:
      check(x.is_string(), "'in <string>' requires string as left operand, not ", type_name(x));
      return c.str().find(x.str()) != std::string::npos;
    case Value::Kind::list:
      charge(static_cast<int64_t>(c.items().size()));
      for (const Value& v : c.items())
        if (equals(v, x)) return true;
      return false;
    case Value::Kind::dict: return c.dict_data().find(x) != nullptr;
    case Value::Kind::ns: return x.is_string() && c.ns().find(x.str()) != nullptr;
    case Value::Kind::undefined: return false;
    default: fail("argument of type '", type_name(c), "' is not iterable");
  }
}

inline Value Evaluator::slice(const Value& obj, const Expr& e) {
  undefined_check(obj);
  auto bound = [&](const ExprPtr& x) -> std::optional<int64_t> {
    if (!x) return std::nullopt;
    const Value v = eval(*x);
    if (v.is_none()) return std::nullopt;
    check(v.is_int(), "slice indices must be integers or None");
    return v.as_int();
  };
  const auto start = bound(e.args[1]), stop = bound(e.args[2]), stepv = bound(e.args[3]);
  const int64_t step = stepv.value_or(1);
  check(step != 0, "slice step cannot be zero");
  std::vector<Value> src;
  std::vector<CodePoint> cps;
  int64_t n;
  if (obj.is_list()) n = static_cast<int64_t>(obj.items().size());
  else if (obj.is_string()) cps = decode_utf8(obj.str()), n = static_cast<int64_t>(cps.size());
  else return Undefined{"slice of " + type_name(obj)};
  // Python's PySlice_AdjustIndices.
  auto adjust = [&](std::optional<int64_t> v, int64_t def) {
    if (!v) return def;
    int64_t i = *v;
    if (i < 0) i = std::max<int64_t>(i + n, step < 0 ? -1 : 0);
    else i = std::min(i, step < 0 ? n - 1 : n);
    return i;
  };
  const int64_t b = adjust(start, step < 0 ? n - 1 : 0), end = adjust(stop, step < 0 ? -1 : n);
  std::vector<int64_t> idx;
  for (int64_t i = b; step > 0 ? i < end : i > end; i += step) idx.push_back(i);
  charge(static_cast<int64_t>(idx.size()));
  if (obj.is_list()) {
    std::vector<Value> xs;
    for (int64_t i : idx) xs.push_back(obj.items()[static_cast<size_t>(i)]);
    return list(std::move(xs), obj.is_tuple());
  }
  std::string s;
  for (int64_t i : idx) s += obj.str().substr(cps[static_cast<size_t>(i)].offset, cps[static_cast<size_t>(i)].length);
  return Value(std::move(s));
}

inline Value Evaluator::binary(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return str(to_str(a) + to_str(b));
  undefined_check(a);
  undefined_check(b);
  auto type_error = [&]() -> Value {
    fail("unsupported operand type(s) for ", op, ": '", type_name(a), "' and '", type_name(b), "'");
  };
  const bool ints = a.is_int() && b.is_int(), nums = a.is_number() && b.is_number();
  int64_t r = 0;
  if (op == "+") {
    if (ints) return __builtin_add_overflow(a.as_int(), b.as_int(), &r) ? fail("integer overflow"), Value() : Value(r);
    if (nums) return a.as_double() + b.as_double();
    if (a.is_string() && b.is_string()) return str(a.str() + b.str());
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      check(a.items().size() + b.items().size() <= lim_.max_output_bytes / 16, "list exceeds the size limit");
      std::vector<Value> xs = a.items();
      xs.insert(xs.end(), b.items().begin(), b.items().end());
      return list(std::move(xs), a.is_tuple());
    }
    return type_error();
  }
  if (op == "-") {
    if (ints) return __builtin_sub_overflow(a.as_int(), b.as_int(), &r) ? fail("integer overflow"), Value() : Value(r);
    if (nums) return a.as_double() - b.as_double();
    return type_error();
  }
  if (op == "*") {
    if (ints) return __builtin_mul_overflow(a.as_int(), b.as_int(), &r) ? fail("integer overflow"), Value() : Value(r);
    if (nums) return a.as_double() * b.as_double();
    const Value& seq = a.is_int() ? b : a;
    const Value& times = a.is_int() ? a : b;
    if (!times.is_int() || !(seq.is_string() || seq.is_list())) return type_error();
    const int64_t k = std::max<int64_t>(0, times.as_int());
    const size_t unit = seq.is_string() ? seq.str().size() : seq.items().size();
    check(unit == 0 || static_cast<uint64_t>(k) <= lim_.max_output_bytes / unit, "repetition exceeds the size limit");
    if (seq.is_string()) {
      std::string s;
      for (int64_t i = 0; i < k; ++i) s += seq.str();
      return str(std::move(s));
    }
    std::vector<Value> xs;
    for (int64_t i = 0; i < k; ++i) xs.insert(xs.end(), seq.items().begin(), seq.items().end());
    return list(std::move(xs), seq.is_tuple());
  }
  if (op == "%" && a.is_string()) return str(percent_format(a.str(), b));
  if (!nums) return type_error();
  if (op == "/") {
    check(b.as_double() != 0.0, "division by zero");
    return a.as_double() / b.as_double();
  }
  if (op == "//" || op == "%") {
    if (ints) {
      const int64_t x = a.as_int(), y = b.as_int();
      check(y != 0, "integer division or modulo by zero");
      check(!(x == INT64_MIN && y == -1), "integer overflow");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) --q, m += y;  // Python floors
      return op == "//" ? q : m;
    }
    const double x = a.as_double(), y = b.as_double();
    check(y != 0.0, "float division or modulo by zero");
    if (op == "//") return std::floor(x / y);
    double m = std::fmod(x, y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    return m;
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) {
      int64_t base = a.as_int(), result = 1;
      for (int64_t e = b.as_int(); e > 0; e >>= 1) {
        if (e & 1) check(!__builtin_mul_overflow(result, base, &result), "integer overflow");
        if (e > 1) check(!__builtin_mul_overflow(base, base, &base), "integer overflow");
      }
      return result;
    }
    return std::pow(a.as_double(), b.as_double());
  }
  return type_error();
}

}  // namespace tessera::io::jinja
