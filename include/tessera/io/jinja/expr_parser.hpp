/// \file
/// The expression half of the parser (parser.hpp adds statements): jinja2's operator precedence, filters
/// binding tighter than unary minus, `x is test arg`, conditional expressions, tuples without parentheses,
/// subscripts and slices, call arguments. Nesting is bounded (kMaxParseDepth) so that hostile input
/// ("((((...", "a+a+a...") is an Error, not a stack overflow.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/io/jinja/ast.hpp"
#include "tessera/io/jinja/lexer.hpp"

namespace tessera::io::jinja {

/// Deepest nesting of expressions and statements the parser accepts.
inline constexpr int kMaxParseDepth = 128;

namespace detail {

class ExprParser {
 public:
  explicit ExprParser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

 protected:
  using K = Token::Kind;
  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t n = 1) const { return t_[std::min(i_ + n, t_.size() - 1)]; }
  void next() {
    if (i_ + 1 < t_.size()) ++i_;
  }
  [[noreturn]] void error(const std::string& msg, const Token* at = nullptr) const {
    const Token& t = at ? *at : cur();
    fail("chat template line ", t.line, ":", t.col, ": syntax error: ", msg);
  }
  bool is_op(std::string_view op) const { return cur().kind == K::op && cur().text == op; }
  bool is_name(std::string_view n) const { return cur().kind == K::name && cur().text == n; }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case K::eof: return "end of template";
      case K::block_end: return "end of statement block";
      case K::var_end: return "end of print statement";
      case K::text: return "template text";
      default: return "'" + t.text + "'";
    }
  }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) error("expected '" + std::string(op) + "', got " + describe(cur()));
  }
  void expect(K k, const char* what) {
    if (cur().kind != k) error(std::string("expected ") + what + ", got " + describe(cur()));
    next();
  }
  std::string expect_name() {
    if (cur().kind != K::name) error("expected a name, got " + describe(cur()));
    std::string n = cur().text;
    next();
    return n;
  }
  struct DepthGuard {
    ExprParser& p;
    explicit DepthGuard(ExprParser& parser) : p(parser) {
      if (++p.depth_ > kMaxParseDepth) p.error("nesting deeper than " + std::to_string(kMaxParseDepth) + " levels (parse depth limit)");
    }
    ~DepthGuard() { --p.depth_; }
  };

  ExprPtr node(Expr::Kind k, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = at.line;
    e->col = at.col;
    return e;
  }
  // Adds a child, keeping depth bounded (a+a+a+... builds a deep tree without deep recursion).
  void add(Expr& e, ExprPtr child) {
    if (child) {
      e.depth = std::max(e.depth, child->depth + 1);
      if (e.depth > 2 * kMaxParseDepth) error("expression nested deeper than " + std::to_string(2 * kMaxParseDepth) + " levels (parse depth limit)");
    }
    e.args.push_back(std::move(child));
  }
  ExprPtr binary(Expr::Kind k, const Token& at, std::string name, ExprPtr l, ExprPtr r) {
    auto e = node(k, at);
    e->name = std::move(name);
    add(*e, std::move(l));
    add(*e, std::move(r));
    return e;
  }

  // ---- expressions ----
  bool is_tuple_end(std::initializer_list<std::string_view> extra) const {
    if (cur().kind == K::var_end || cur().kind == K::block_end || is_op(")")) return true;
    for (auto e : extra)
      if (is_name(e)) return true;
    return false;
  }

  ExprPtr parse_tuple(bool with_cond, bool explicit_parens, std::initializer_list<std::string_view> extra) {
    const Token at = cur();
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra)) break;
      items.push_back(parse_expression(with_cond));
      if (is_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) error("expected an expression, got " + describe(cur()));
    }
    auto e = node(Expr::Kind::tuple, at);
    for (auto& x : items) add(*e, std::move(x));
    return e;
  }

  ExprPtr parse_expression(bool with_cond) {
    DepthGuard g(*this);
    auto e = parse_or();
    if (!with_cond) return e;
    while (is_name("if")) {
      const Token at = cur();
      next();
      auto c = parse_or();
      ExprPtr other;
      if (skip_name("else")) other = parse_expression(true);
      auto n = node(Expr::Kind::cond, at);
      add(*n, std::move(c));
      add(*n, std::move(e));
      add(*n, std::move(other));
      e = std::move(n);
    }
    return e;
  }
  ExprPtr parse_or() {
    auto e = parse_and();
    while (is_name("or")) {
      const Token at = cur();
      next();
      e = binary(Expr::Kind::or_, at, "or", std::move(e), parse_and());
    }
    return e;
  }
  ExprPtr parse_and() {
    auto e = parse_not();
    while (is_name("and")) {
      const Token at = cur();
      next();
      e = binary(Expr::Kind::and_, at, "and", std::move(e), parse_not());
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard g(*this);
      const Token at = cur();
      next();
      auto e = node(Expr::Kind::not_, at);
      add(*e, parse_not());
      return e;
    }
    return parse_compare();
  }
  // An integer literal's value; Error past int64 (Python's are unbounded, ours are not).
  int64_t integer(const Token& t) {
    int64_t v = 0;
    for (char c : t.text)
      if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, c - '0', &v))
        error("integer literal out of range");
    return v;
  }
  ExprPtr parse_compare() {
    const Token at = cur();
    auto first = parse_math1();
    ExprPtr e;
    while (true) {
      std::string op;
      if (cur().kind == K::op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                  cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        op = cur().text;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && peek().kind == K::name && peek().text == "in") {
        op = "notin";
        next();
        next();
      } else {
        break;
      }
      if (!e) {
        e = node(Expr::Kind::compare, at);
        add(*e, std::move(first));
      }
      e->ops.push_back(op);
      add(*e, parse_math1());
    }
    return e ? std::move(e) : std::move(first);
  }
  ExprPtr parse_math1() {
    auto e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token at = cur();
      next();
      e = binary(Expr::Kind::binary, at, at.text, std::move(e), parse_concat());
    }
    return e;
  }
  ExprPtr parse_concat() {
    auto e = parse_math2();
    while (is_op("~")) {
      const Token at = cur();
      next();
      e = binary(Expr::Kind::binary, at, "~", std::move(e), parse_math2());
    }
    return e;
  }
  ExprPtr parse_math2() {
    auto e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token at = cur();
      next();
      e = binary(Expr::Kind::binary, at, at.text, std::move(e), parse_pow());
    }
    return e;
  }
  ExprPtr parse_pow() {
    auto e = parse_unary(true);
    while (is_op("**")) {
      const Token at = cur();
      next();
      e = binary(Expr::Kind::binary, at, "**", std::move(e), parse_unary(true));
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    DepthGuard g(*this);
    const Token at = cur();
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      next();
      e = node(at.text == "-" ? Expr::Kind::neg : Expr::Kind::pos, at);
      add(*e, parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token at = cur();
    auto e = node(Expr::Kind::constant, at);
    switch (at.kind) {
      case K::name:
        next();
        if (at.text == "true" || at.text == "True") e->value = true;
        else if (at.text == "false" || at.text == "False") e->value = false;
        else if (at.text == "none" || at.text == "None") e->value = None{};
        else e->kind = Expr::Kind::name, e->name = at.text;
        return e;
      case K::string: {
        std::string s;
        while (cur().kind == K::string) s += cur().text, next();
        e->value = std::move(s);
        return e;
      }
      case K::integer: {
        e->value = integer(at);
        next();
        return e;
      }
      case K::floating:
        e->value = std::strtod(at.text.c_str(), nullptr);
        next();
        return e;
      default: break;
    }
    if (skip_op("(")) {
      auto t = parse_tuple(true, true, {});
      expect_op(")");
      return t;
    }
    if (skip_op("[")) {
      e->kind = Expr::Kind::list;
      while (!is_op("]")) {
        if (!e->args.empty()) expect_op(",");
        if (is_op("]")) break;
        add(*e, parse_expression(true));
      }
      next();
      return e;
    }
    if (skip_op("{")) {
      e->kind = Expr::Kind::dict;
      while (!is_op("}")) {
        if (!e->args.empty()) expect_op(",");
        if (is_op("}")) break;
        add(*e, parse_expression(true));
        expect_op(":");
        add(*e, parse_expression(true));
      }
      next();
      return e;
    }
    error("unexpected " + describe(at));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      const Token at = cur();
      if (skip_op(".")) {
        if (cur().kind == K::integer) {
          auto n = node(Expr::Kind::item, at);
          add(*n, std::move(e));
          auto idx = node(Expr::Kind::constant, cur());
          idx->value = integer(cur());
          next();
          add(*n, std::move(idx));
          e = std::move(n);
        } else {
          auto n = node(Expr::Kind::attr, at);
          n->name = expect_name();
          add(*n, std::move(e));
          e = std::move(n);
        }
      } else if (skip_op("[")) {
        e = parse_subscript(std::move(e), at);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }
  ExprPtr parse_subscript(ExprPtr obj, const Token& at) {
    DepthGuard g(*this);
    std::vector<ExprPtr> parts;  // a slice: start, stop, step
    bool slice = false;
    auto part = [&]() -> ExprPtr { return is_op(":") || is_op("]") ? nullptr : parse_expression(true); };
    parts.push_back(part());
    if (skip_op(":")) {
      slice = true;
      parts.push_back(part());
      if (skip_op(":")) parts.push_back(part());
    }
    if (!slice && !parts[0]) error("expected an index, got " + describe(cur()));
    if (!slice && is_op(",")) {  // x[a, b]: a tuple index
      auto t = node(Expr::Kind::tuple, at);
      add(*t, std::move(parts[0]));
      while (skip_op(",") && !is_op("]")) add(*t, parse_expression(true));
      parts[0] = std::move(t);
    }
    expect_op("]");
    auto n = node(slice ? Expr::Kind::slice : Expr::Kind::item, at);
    add(*n, std::move(obj));
    for (auto& p : parts) add(*n, std::move(p));
    while (slice && n->args.size() < 4) n->args.push_back(nullptr);
    return n;
  }
  // `(args)` after callee (already the node's args[0]).
  void parse_call_args(Expr& e) {
    expect_op("(");
    while (!is_op(")")) {
      if (e.args.size() > 1 || !e.kwargs.empty()) expect_op(",");
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) error("*args and **kwargs are not supported");
      if (cur().kind == K::name && peek().kind == K::op && peek().text == "=") {
        std::string name = cur().text;
        next();
        next();
        auto v = parse_expression(true);
        e.depth = std::max(e.depth, v->depth + 1);
        e.kwargs.emplace_back(std::move(name), std::move(v));
      } else {
        if (!e.kwargs.empty()) error("positional argument after keyword argument");
        add(e, parse_expression(true));
      }
    }
    next();
  }
  ExprPtr parse_call(ExprPtr callee) {
    DepthGuard g(*this);
    auto n = node(Expr::Kind::call, cur());
    add(*n, std::move(callee));
    parse_call_args(*n);
    return n;
  }
  std::string dotted_name() {
    std::string n = expect_name();
    while (skip_op(".")) {
      n += '.';
      n += expect_name();
    }
    return n;
  }
  ExprPtr parse_filter_chain(ExprPtr subject) {
    bool first = subject == nullptr;
    do {
      if (!first) expect_op("|");
      first = false;
      DepthGuard g(*this);
      auto n = node(Expr::Kind::filter, cur());
      n->name = dotted_name();
      if (subject) add(*n, std::move(subject));
      else n->args.push_back(nullptr);
      if (is_op("(")) parse_call_args(*n);
      subject = std::move(n);
    } while (is_op("|"));
    return subject;
  }
  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        e = parse_filter_chain(std::move(e));
      } else if (is_name("is")) {
        DepthGuard g(*this);
        auto n = node(Expr::Kind::test, cur());
        next();
        n->negated = skip_name("not");
        n->name = dotted_name();
        add(*n, std::move(e));
        if (is_op("(")) {
          parse_call_args(*n);
        } else if ((cur().kind == K::name || cur().kind == K::string || cur().kind == K::integer ||
                    cur().kind == K::floating || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          if (is_name("is")) error("tests cannot be chained with 'is'");
          add(*n, parse_postfix(parse_primary()));
        }
        e = std::move(n);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace detail
}  // namespace tessera::io::jinja
