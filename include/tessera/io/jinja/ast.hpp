/// \file
/// The syntax tree of a template: expressions (Expr) and statements (Stmt), each with its source line and
/// column for error messages. One node struct per category keeps the evaluator a plain switch.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tessera/io/jinja/value.hpp"

namespace tessera::io::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;  ///< An owned expression node (null where a part is omitted).

/// An expression node. Which fields matter depends on kind (see each enumerator).
struct Expr {
  /// What the node computes, and so which fields it uses.
  enum class Kind {
    constant,  ///< value
    name,      ///< name
    list,      ///< args = items
    tuple,     ///< args = items
    dict,      ///< args = key, value, key, value...
    attr,      ///< args[0].name
    item,      ///< args[0][args[1]]
    slice,     ///< args[0][args[1]:args[2]:args[3]] (null = omitted)
    call,      ///< args[0](args[1:], kwargs)
    filter,    ///< args[0] | name(args[1:], kwargs); args[0] null in a filter block
    test,      ///< args[0] is [not] name(args[1:]); negated for `is not`
    neg,       ///< -args[0]
    pos,       ///< +args[0]
    not_,      ///< not args[0]
    binary,    ///< args[0] name args[1], name one of + - * / // % ** ~
    and_,      ///< args[0] and args[1]
    or_,       ///< args[0] or args[1]
    compare,   ///< args[0] ops[0] args[1] ops[1] args[2]... (== != < <= > >= in notin)
    cond,      ///< args[1] if args[0] else args[2] (args[2] null: Undefined)
  };
  Kind kind;  ///< What the node computes.
  ///@{
  /// Where the node starts in the source (1-based, bytes), for error messages.
  int line = 0, col = 0;
  ///@}
  Value value;  ///< constant: the literal.
  std::string name;  ///< name, attr, filter, test, binary: the name, attribute, filter, test or operator.
  std::vector<ExprPtr> args;  ///< The operands (see each Kind).
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  ///< call, filter: keyword arguments in source order.
  std::vector<std::string> ops;  ///< compare: the operators between args.
  bool negated = false;  ///< test: `is not`.
  int depth = 1;  ///< 1 + deepest child: the parser bounds it, so evaluating and freeing cannot overflow the stack
};

/// A statement node. Which fields matter depends on kind (see each enumerator).
struct Stmt {
  /// What the statement does, and so which fields it uses.
  enum class Kind {
    text,          ///< text
    output,        ///< {{ expr }}
    if_,           ///< if expr: body, then elifs (each an if_ without else), else: else_body
    for_,          ///< for targets in expr [if cond]: body, else: else_body
    set,           ///< set targets = expr; with attr: set targets[0].attr = expr
    set_block,     ///< set targets[0] [| filter] ... endset: body (filter: expr, its args[0] null)
    macro,         ///< macro name(params): body
    call_block,    ///< call(params) expr: body (the body is `caller`)
    filter_block,  ///< filter expr (args[0] null): body
    scope,         ///< body run as it is ({% generation %}, {% with %})
    break_,        ///< {% break %}
    continue_,     ///< {% continue %}
  };
  Kind kind;  ///< What the statement does.
  ///@{
  /// Where the statement starts in the source (1-based, bytes), for error messages.
  int line = 0, col = 0;
  ///@}
  std::string text;  ///< text: the literal text, white-space control applied.
  ///@{
  /// The statement's expression (output, if, for's iterable, set's value, call, filter) and a for loop's filter.
  ExprPtr expr, cond;
  ///@}
  std::vector<std::string> targets;  ///< for, set: the names assigned.
  bool tuple_target = false;  ///< for, set: targets written as a tuple (`a, b`), so the value is unpacked.
  std::string attr;  ///< set: the namespace attribute assigned (`ns.attr`).
  std::string name;  ///< macro: its name.
  std::vector<std::pair<std::string, ExprPtr>> params;  ///< macro / caller parameters, default or null
  ///@{
  /// The statements inside: the block, the else branch, and an if's elif branches (each an if_).
  std::vector<Stmt> body, else_body, elifs;
  ///@}
};

}  // namespace tessera::io::jinja
