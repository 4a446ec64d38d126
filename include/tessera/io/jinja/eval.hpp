/// \file
/// The interpreter: runs a parsed template over a context, with jinja2's scoping (a for loop's body is a
/// fresh scope per iteration, if/set are not), Undefined semantics, and the limits that keep a hostile
/// template (they come from model files) to bounded time, memory and stack: evaluation steps, loop
/// iterations, output size, recursion depth and macro call depth, each an Error naming it.
#pragma once

#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tessera/io/jinja/ast.hpp"
#include "tessera/io/jinja/python.hpp"

namespace tessera::io::jinja {

/// What one render may spend. Real chat templates stay far below each (a few thousand steps, a depth of
/// tens); the defaults bound a hostile one to about a second and tens of MiB.
struct Limits {
  size_t max_source_bytes = 1 << 20;    ///< template length
  size_t max_output_bytes = 32 << 20;   ///< rendered text, and any one string or list built on the way
  int64_t max_steps = 20'000'000;       ///< expressions evaluated, statements run, items copied / 64
  int64_t max_loop_iterations = 1'000'000;  ///< for-loop bodies run, over the whole render
  int64_t max_range = 100'000;          ///< range() length (jinja2's sandbox refuses more, too)
  int max_depth = 400;                  ///< nested evaluation: expressions in statements in macro calls
  int max_call_depth = 64;              ///< macro calls in progress
};

/// Variables of one scope (the render's root, a loop iteration, a macro call), chained to the enclosing one.
struct Scope {
  Scope* parent = nullptr;  ///< Where lookups continue; null at the root.
  std::vector<std::pair<std::string, Value>> vars;  ///< Small: a linear scan beats hashing here.
  /// The variable in this scope or an enclosing one, or nullptr.
  const Value* find(std::string_view name) const {
    for (const Scope* s = this; s; s = s->parent)
      for (const auto& [k, v] : s->vars)
        if (k == name) return &v;
    return nullptr;
  }
  /// Sets name in this scope.
  void set(const std::string& name, Value v) {
    for (auto& [k, old] : vars)
      if (k == name) {
        old = std::move(v);
        return;
      }
    vars.emplace_back(name, std::move(v));
  }
};

namespace detail {
// An Error that already names its line:column, so enclosing nodes pass it on unchanged.
struct LocatedError : Error {
  using Error::Error;
};
}  // namespace detail

class Evaluator;
/// Applies filter `name` (filters.hpp). Error for an unknown filter.
inline Value apply_filter(Evaluator& ev, const std::string& name, Value subject, Args& args);
/// Runs test `name` (filters.hpp). Error for an unknown test.
inline bool apply_test(Evaluator& ev, const std::string& name, const Value& subject, Args& args);
/// obj.name: a dict's key or method, a str's or list's method, a namespace's attribute (methods.hpp).
inline Value get_attr(Evaluator& ev, const Value& obj, const std::string& name);
/// A global function (range, namespace, dict, raise_exception, strftime_now), or Undefined (methods.hpp).
inline Value get_global(const std::string& name);

/// Runs one render. Not reusable: make one per render.
class Evaluator {
 public:
  /// now: the time strftime_now formats.
  Evaluator(const Limits& limits, std::function<std::tm()> now) : lim_(limits), now_(std::move(now)) {}

  /// Renders body with root's variables into out.
  void run(const std::vector<Stmt>& body, Scope& root, std::string& out) {
    scope_ = &root;
    out_ = &out;
    exec_all(body);
  }

  const Limits& limits() const { return lim_; }  ///< The limits in force.
  std::tm now() const { return now_(); }          ///< The time strftime_now formats.

  /// Counts n steps of work; Error past Limits::max_steps.
  void charge(int64_t n) {
    steps_ += n;
    if (steps_ > lim_.max_steps) fail("evaluation step limit (", lim_.max_steps, ") exceeded");
  }
  /// A string result, checked against the size limit and charged for its copy.
  Value str(std::string s) {
    check(s.size() <= lim_.max_output_bytes, "string of ", s.size(), " bytes exceeds the output size limit (",
          lim_.max_output_bytes, ")");
    charge(static_cast<int64_t>(s.size() / 64));
    return Value(std::move(s));
  }
  /// A list result, checked and charged like str().
  Value list(std::vector<Value> xs, bool tuple = false) {
    check(xs.size() <= lim_.max_output_bytes / 16, "list of ", xs.size(), " items exceeds the size limit");
    charge(static_cast<int64_t>(xs.size()));
    return Value::list(std::move(xs), tuple);
  }

  /// The items a for loop or a filter iterates: a list's items, a dict's keys, a str's characters, nothing
  /// for Undefined. Error for other types.
  std::vector<Value> iterate(const Value& v) {
    switch (v.kind()) {
      case Value::Kind::list: charge(static_cast<int64_t>(v.items().size())); return v.items();
      case Value::Kind::dict: {
        std::vector<Value> keys;
        for (const auto& kv : v.dict_data().items) keys.push_back(kv.first);
        charge(static_cast<int64_t>(keys.size()));
        return keys;
      }
      case Value::Kind::string: charge(static_cast<int64_t>(v.str().size() / 8)); return chars_of(v.str());
      case Value::Kind::undefined: return {};
      default: fail("'", type_name(v), "' object is not iterable");
    }
  }

  /// Calls a callable. Error for anything else (Undefined names what was undefined).
  Value call(const Value& fn, Args& args) {
    if (fn.kind() == Value::Kind::function) return fn.fn().call(*this, args);
    undefined_check(fn);
    fail("'", type_name(fn), "' object is not callable");
  }
  /// obj[key] as jinja2's getitem does it: Undefined where Python raises a lookup or type error.
  Value get_item(const Value& obj, const Value& key) {
    undefined_check(obj);
    if (obj.is_dict()) {
      if (const Value* v = obj.dict_data().find(key)) return *v;
      if (key.is_string()) return get_attr(*this, obj, key.str());
      return Undefined{"key " + repr(key)};
    }
    if ((obj.is_list() || obj.is_string()) && key.is_int()) {
      int64_t i = key.as_int();
      if (obj.is_list()) {
        const auto n = static_cast<int64_t>(obj.items().size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Undefined{"index " + std::to_string(key.as_int())};
        return obj.items()[static_cast<size_t>(i)];
      }
      const auto cps = decode_utf8(obj.str());
      const auto n = static_cast<int64_t>(cps.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Undefined{"index " + std::to_string(key.as_int())};
      const auto& c = cps[static_cast<size_t>(i)];
      return obj.str().substr(c.offset, c.length);
    }
    if (key.is_string()) return get_attr(*this, obj, key.str());
    return Undefined{"item " + repr(key)};
  }
  /// Error "'name' is undefined" when v is Undefined: what jinja2 raises on using one beyond printing,
  /// testing and iterating.
  static void undefined_check(const Value& v) {
    if (!v.is_undefined()) return;
    const std::string& n = v.undefined().name;  // a variable's name, or a whole message
    if (n.find(' ') == std::string::npos) fail("'", n, "' is undefined");
    fail(n);
  }

  /// Evaluates an expression.
  Value eval(const Expr& e) {
    Depth d(*this);
    charge(1);
    try {
      return eval_node(e);
    } catch (const detail::LocatedError&) {
      throw;
    } catch (const Error& err) {
      throw detail::LocatedError(concat_location(e.line, e.col, err.what()));
    }
  }

  /// Calls a macro (or a call block's caller): binds args to its parameters in a scope over `defined_in`,
  /// renders its body and returns the text. A `caller` keyword (from {% call %}) becomes a variable.
  Value call_macro(const Stmt& m, Scope* defined_in, Args& args) {
    check(++calls_ <= lim_.max_call_depth, "macro call depth limit (", lim_.max_call_depth, ") exceeded");
    Scope s{defined_in, {}};
    const std::string name = m.kind == Stmt::Kind::macro ? m.name : "caller";
    check(args.pos.size() <= m.params.size(), "macro '", name, "' takes not more than ", m.params.size(),
          " argument(s)");
    std::vector<bool> bound(m.params.size(), false);
    for (size_t i = 0; i < args.pos.size(); ++i) s.set(m.params[i].first, args.pos[i]), bound[i] = true;
    for (auto& [k, v] : args.kw) {
      size_t i = 0;
      while (i < m.params.size() && m.params[i].first != k) ++i;
      if (k == "caller" && i == m.params.size()) {  // from {% call %}: the macro sees it as a variable
        s.set("caller", v);
        continue;
      }
      check(i < m.params.size(), "macro '", name, "' takes no keyword argument '", k, "'");
      s.set(k, v);
      bound[i] = true;
    }
    Scope* const outer_scope = std::exchange(scope_, &s);
    for (size_t i = 0; i < m.params.size(); ++i)
      if (!bound[i]) s.set(m.params[i].first, m.params[i].second ? eval(*m.params[i].second) : Value(Undefined{m.params[i].first}));
    std::string text;
    std::string* const outer_out = std::exchange(out_, &text);
    exec_all(m.body);
    out_ = outer_out;
    scope_ = outer_scope;
    --calls_;
    return Value(std::move(text));
  }

 private:
  enum class Flow { normal, break_, continue_ };

  struct Depth {
    Evaluator& ev;
    explicit Depth(Evaluator& e) : ev(e) {
      if (++ev.depth_ > ev.lim_.max_depth) fail("recursion depth limit (", ev.lim_.max_depth, ") exceeded");
    }
    ~Depth() { --ev.depth_; }
  };
  static std::string concat_location(int line, int col, const char* what) {
    return "chat template line " + std::to_string(line) + ":" + std::to_string(col) + ": " + what;
  }

  void emit(std::string_view s) {
    out_->append(s);
    if (out_->size() > lim_.max_output_bytes) fail("output size limit (", lim_.max_output_bytes, " bytes) exceeded");
  }

  Flow exec_all(const std::vector<Stmt>& body) {
    for (const Stmt& s : body)
      if (const Flow f = exec(s); f != Flow::normal) return f;
    return Flow::normal;
  }

  Flow exec(const Stmt& s) {
    Depth d(*this);
    charge(1);
    try {
      return exec_node(s);
    } catch (const detail::LocatedError&) {
      throw;
    } catch (const Error& err) {
      throw detail::LocatedError(concat_location(s.line, s.col, err.what()));
    }
  }

  Flow exec_node(const Stmt& s) {
    switch (s.kind) {
      case Stmt::Kind::text: emit(s.text); return Flow::normal;
      case Stmt::Kind::output: emit(to_str(eval(*s.expr))); return Flow::normal;
      case Stmt::Kind::if_:
        if (truthy(eval(*s.expr))) return exec_all(s.body);
        for (const Stmt& e : s.elifs)
          if (truthy(eval(*e.expr))) return exec_all(e.body);
        return exec_all(s.else_body);
      case Stmt::Kind::for_: return exec_for(s);
      case Stmt::Kind::set:
        if (!s.attr.empty()) {
          const Value* ns = scope_->find(s.targets[0]);
          check(ns && ns->kind() == Value::Kind::ns, "cannot assign attribute on non-namespace object '",
                s.targets[0], "'");
          ns->ns().set(s.attr, eval(*s.expr));
        } else {
          assign(s, eval(*s.expr), *scope_);
        }
        return Flow::normal;
      case Stmt::Kind::set_block: scope_->set(s.targets[0], render_body(s)); return Flow::normal;
      case Stmt::Kind::macro: {
        const Stmt* m = &s;
        Scope* where = scope_;
        scope_->set(s.name, Value::function(s.name, [m, where](Evaluator& ev, Args& a) {
                      return ev.call_macro(*m, where, a);
                    }));
        return Flow::normal;
      }
      case Stmt::Kind::call_block: {
        const Stmt* body = &s;
        Scope* where = scope_;
        const Value caller = Value::function("caller", [body, where](Evaluator& ev, Args& a) {
          return ev.call_macro(*body, where, a);
        });
        const Expr& c = *s.expr;
        const Value fn = eval(*c.args[0]);
        Args a = eval_args(c);
        a.kw.emplace_back("caller", caller);
        emit(to_str(call(fn, a)));
        return Flow::normal;
      }
      case Stmt::Kind::filter_block: emit(to_str(render_body(s))); return Flow::normal;
      case Stmt::Kind::scope: {  // HF runs {% generation %} bodies as a call block: a scope of their own
        Scope inner{scope_, {}};
        Scope* const outer = std::exchange(scope_, &inner);
        const Flow f = exec_all(s.body);
        scope_ = outer;
        return f;
      }
      case Stmt::Kind::break_: return Flow::break_;
      case Stmt::Kind::continue_: return Flow::continue_;
    }
    return Flow::normal;
  }

  // A block set's or filter block's body, rendered and passed through its filter chain.
  Value render_body(const Stmt& s) {
    std::string text;
    std::string* const outer = std::exchange(out_, &text);
    exec_all(s.body);
    out_ = outer;
    Value v(std::move(text));
    return s.expr ? apply_chain(*s.expr, std::move(v)) : v;
  }
  Value apply_chain(const Expr& f, Value subject) {
    if (f.args[0]) subject = apply_chain(*f.args[0], std::move(subject));
    Args a = eval_args(f);
    return apply_filter(*this, f.name, std::move(subject), a);
  }

  void assign(const Stmt& s, Value v, Scope& into) {
    if (!s.tuple_target) {
      into.set(s.targets[0], std::move(v));
      return;
    }
    check(v.is_list() || v.is_string() || v.is_dict(), "cannot unpack non-iterable ", type_name(v), " object");
    std::vector<Value> xs = v.is_list() ? v.items() : iterate(v);
    check(xs.size() == s.targets.size(), xs.size() < s.targets.size() ? "not enough" : "too many",
          " values to unpack (expected ", s.targets.size(), ", got ", xs.size(), ")");
    for (size_t i = 0; i < xs.size(); ++i) into.set(s.targets[i], std::move(xs[i]));
  }

  Flow exec_for(const Stmt& s) {
    std::vector<Value> items = iterate(eval(*s.expr));
    if (s.cond) {  // `for x in xs if c`: jinja2 filters first, so loop.length counts what passed
      std::vector<Value> kept;
      for (Value& x : items) {
        Scope probe{scope_, {}};
        assign(s, x, probe);
        Scope* const outer = std::exchange(scope_, &probe);
        const bool keep = truthy(eval(*s.cond));
        scope_ = outer;
        if (keep) kept.push_back(std::move(x));
      }
      items = std::move(kept);
    }
    const auto n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      check(++iterations_ <= lim_.max_loop_iterations, "loop iteration limit (", lim_.max_loop_iterations,
            ") exceeded");
      Scope it{scope_, {}};
      assign(s, items[static_cast<size_t>(i)], it);
      it.set("loop", loop_object(items, i));
      Scope* const outer = std::exchange(scope_, &it);
      const Flow f = exec_all(s.body);
      scope_ = outer;
      if (f == Flow::break_) break;
    }
    if (n == 0) return exec_all(s.else_body);
    return Flow::normal;
  }

  static Value loop_object(const std::vector<Value>& items, int64_t i) {
    const auto n = static_cast<int64_t>(items.size());
    auto cycle = Value::function("loop.cycle", [i](Evaluator&, Args& a) -> Value {
      check(!a.pos.empty(), "no items for cycling given");
      return a.pos[static_cast<size_t>(i) % a.pos.size()];
    });
    return Value::dict({{"index", i + 1},
                        {"index0", i},
                        {"revindex", n - i},
                        {"revindex0", n - i - 1},
                        {"first", i == 0},
                        {"last", i == n - 1},
                        {"length", n},
                        {"depth", 1},
                        {"depth0", 0},
                        {"previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value(Undefined{"loop.previtem"})},
                        {"nextitem", i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value(Undefined{"loop.nextitem"})},
                        {"cycle", cycle}});
  }

  Args eval_args(const Expr& e) {
    Args a;
    for (size_t i = 1; i < e.args.size(); ++i) a.pos.push_back(eval(*e.args[i]));
    for (const auto& [k, x] : e.kwargs) a.kw.emplace_back(k, eval(*x));
    return a;
  }

  Value eval_node(const Expr& e);  // below, with the operators
  Value binary(const std::string& op, const Value& a, const Value& b);
  Value slice(const Value& obj, const Expr& e);
  bool contains(const Value& container, const Value& item);

  const Limits& lim_;
  std::function<std::tm()> now_;
  Scope* scope_ = nullptr;
  std::string* out_ = nullptr;
  int64_t steps_ = 0, iterations_ = 0;
  int depth_ = 0, calls_ = 0;
};

}  // namespace tessera::io::jinja

#include "tessera/io/jinja/operators.hpp"
#include "tessera/io/jinja/filters.hpp"
#include "tessera/io/jinja/methods.hpp"
