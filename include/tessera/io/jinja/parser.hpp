/// \file
/// Tokens to a syntax tree: the statements (if, for, set, macro, call, filter, generation, break,
/// continue) over expr_parser.hpp's expressions. Statement nesting counts toward kMaxParseDepth, so a
/// thousand nested ifs are an Error, not a stack overflow. O(tokens).
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/io/jinja/expr_parser.hpp"

namespace tessera::io::jinja {

namespace detail {

class Parser : public ExprParser {
 public:
  explicit Parser(std::vector<Token> tokens) : ExprParser(std::move(tokens)) {}

  std::vector<Stmt> run() {
    auto body = subparse({});
    if (cur().kind != Token::Kind::eof) error("unexpected '" + cur().text + "'");
    return body;
  }

 private:
  static Stmt stmt(Stmt::Kind k, const Token& at) {
    Stmt s;
    s.kind = k;
    s.line = at.line;
    s.col = at.col;
    return s;
  }
  // ---- statements ----
  std::vector<Stmt> subparse(std::initializer_list<std::string_view> ends) {
    std::vector<Stmt> body;
    while (cur().kind != K::eof) {
      const Token& t = cur();
      if (t.kind == K::text) {
        Stmt s = stmt(Stmt::Kind::text, t);
        s.text = t.text;
        body.push_back(std::move(s));
        next();
      } else if (t.kind == K::var_begin) {
        Stmt s = stmt(Stmt::Kind::output, t);
        next();
        s.expr = parse_tuple(true, false, {});
        expect(K::var_end, "'}}'");
        body.push_back(std::move(s));
      } else if (t.kind == K::block_begin) {
        next();
        for (auto e : ends)
          if (is_name(e)) return body;
        body.push_back(parse_statement());
      } else {
        error("unexpected " + describe(t));
      }
    }
    if (ends.size()) error("unexpected end of template, expected '" + std::string(*ends.begin()) + "'");
    return body;
  }

  Stmt parse_statement() {
    DepthGuard g(*this);
    const Token tag = cur();
    if (tag.kind != K::name) error("expected a statement name, got " + describe(tag));
    Stmt s = stmt(Stmt::Kind::text, tag);
    const std::string& n = tag.text;
    next();
    if (n == "if") parse_if(s);
    else if (n == "for") parse_for(s);
    else if (n == "set") parse_set(s);
    else if (n == "macro") parse_macro(s);
    else if (n == "call") parse_call_block(s);
    else if (n == "filter") {
      s.kind = Stmt::Kind::filter_block;
      s.expr = parse_filter_chain(nullptr);
      expect(K::block_end, "'%}'");
      s.body = subparse({"endfilter"});
      close_tag();
    } else if (n == "generation") {
      s.kind = Stmt::Kind::scope;
      expect(K::block_end, "'%}'");
      s.body = subparse({"endgeneration"});
      close_tag();
    } else if (n == "break" || n == "continue") {
      if (loops_ == 0) error("'" + n + "' outside a loop", &tag);
      s.kind = n == "break" ? Stmt::Kind::break_ : Stmt::Kind::continue_;
      expect(K::block_end, "'%}'");
    } else {
      error("unknown or unsupported tag '" + n + "'", &tag);
    }
    return s;
  }
  void close_tag() {  // at the end tag's name
    next();
    expect(K::block_end, "'%}'");
  }

  void parse_if(Stmt& s) {
    s.kind = Stmt::Kind::if_;
    s.expr = parse_tuple(false, false, {});
    expect(K::block_end, "'%}'");
    s.body = subparse({"elif", "else", "endif"});
    while (true) {
      if (skip_name("elif")) {
        Stmt e = stmt(Stmt::Kind::if_, cur());
        e.expr = parse_tuple(false, false, {});
        expect(K::block_end, "'%}'");
        e.body = subparse({"elif", "else", "endif"});
        s.elifs.push_back(std::move(e));
      } else if (skip_name("else")) {
        expect(K::block_end, "'%}'");
        s.else_body = subparse({"endif"});
      } else {
        close_tag();
        return;
      }
    }
  }

  void parse_targets(Stmt& s, std::string_view end) {
    const bool paren = skip_op("(");
    do {
      if (paren && is_op(")")) break;
      s.targets.push_back(expect_name());
      if (is_op(",")) s.tuple_target = true;
    } while (skip_op(",") && !is_name(end));
    if (paren) {
      expect_op(")");
      s.tuple_target = true;
    }
  }

  void parse_for(Stmt& s) {
    s.kind = Stmt::Kind::for_;
    parse_targets(s, "in");
    if (!skip_name("in")) error("expected 'in', got " + describe(cur()));
    s.expr = parse_tuple(false, false, {"recursive"});
    if (skip_name("if")) s.cond = parse_expression(true);
    if (is_name("recursive")) error("recursive loops are not supported");
    expect(K::block_end, "'%}'");
    ++loops_;
    s.body = subparse({"endfor", "else"});
    --loops_;
    if (skip_name("else")) {
      expect(K::block_end, "'%}'");
      s.else_body = subparse({"endfor"});
    }
    close_tag();
  }

  void parse_set(Stmt& s) {
    s.kind = Stmt::Kind::set;
    if (cur().kind == K::name && peek().kind == K::op && peek().text == "." && peek(2).kind == K::name) {
      s.targets.push_back(cur().text);
      s.attr = peek(2).text;
      i_ += 3;
    } else {
      parse_targets(s, "");
    }
    if (skip_op("=")) {
      s.expr = parse_tuple(true, false, {});
      expect(K::block_end, "'%}'");
      return;
    }
    if (s.targets.size() != 1 || s.tuple_target || !s.attr.empty()) error("a block set assigns one name");
    s.kind = Stmt::Kind::set_block;
    if (skip_op("|")) s.expr = parse_filter_chain(nullptr);
    expect(K::block_end, "'%}'");
    s.body = subparse({"endset"});
    close_tag();
  }

  void parse_params(Stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      if (!s.params.empty()) expect_op(",");
      if (is_op(")")) break;
      std::string name = expect_name();
      ExprPtr def;
      if (skip_op("=")) def = parse_expression(true);
      s.params.emplace_back(std::move(name), std::move(def));
    }
    next();
  }

  void parse_macro(Stmt& s) {
    s.kind = Stmt::Kind::macro;
    s.name = expect_name();
    parse_params(s);
    expect(K::block_end, "'%}'");
    const int outer_loops = loops_;
    loops_ = 0;
    s.body = subparse({"endmacro"});
    loops_ = outer_loops;
    close_tag();
  }

  void parse_call_block(Stmt& s) {
    s.kind = Stmt::Kind::call_block;
    if (is_op("(")) parse_params(s);
    s.expr = parse_expression(true);
    if (s.expr->kind != Expr::Kind::call) error("expected a call after {% call %}");
    expect(K::block_end, "'%}'");
    const int outer_loops = loops_;
    loops_ = 0;
    s.body = subparse({"endcall"});
    loops_ = outer_loops;
    close_tag();
  }

  int loops_ = 0;
};

}  // namespace detail

/// Parses template source to its statements. Error "chat template line L:C: syntax error: ..." at the first
/// problem.
inline std::vector<Stmt> parse(std::string_view src) { return detail::Parser(tokenize(src)).run(); }

}  // namespace tessera::io::jinja
