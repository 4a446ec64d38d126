/// \file
/// The maths of every elementwise and reduction operator, written once as
/// templates over the value type V: a float for the reference evaluator, a SIMD
/// batch for the vector one (its exp/log/tanh/erf/select are found by ADL).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace tessera::expr::op {

namespace detail {
template <class V>
inline constexpr bool is_scalar_v = std::is_floating_point_v<V>;

/// std::max's contract (returns a unless a < b), for floats and batches alike:
/// a NaN in b is skipped, a NaN in a is kept, in every backend.
template <class V>
V max_of(V a, V b) {
  if constexpr (is_scalar_v<V>) return a < b ? b : a;
  else return select(a < b, b, a);
}
/// std::min's contract (returns a unless b < a).
template <class V>
V min_of(V a, V b) {
  if constexpr (is_scalar_v<V>) return b < a ? b : a;
  else return select(b < a, b, a);
}
}  // namespace detail

// ---- unary -----------------------------------------------------------------

/// Negation: -x.
struct Neg {
  static constexpr const char* name = "neg";  ///< Printable name of the operator.
  template <class V> V operator()(V x) const { return -x; }  ///< The operator applied to x (a float or a SIMD batch).
};
/// Absolute value: |x|.
struct Abs {
  static constexpr const char* name = "abs";  ///< Printable name of the operator.
  template <class V> V operator()(V x) const { using std::abs; return abs(x); }  ///< The operator applied to x (a float or a SIMD batch).
};
/// Natural exponential: e^x.
struct Exp {
  static constexpr const char* name = "exp";  ///< Printable name of the operator.
  template <class V> V operator()(V x) const { using std::exp; return exp(x); }  ///< The operator applied to x (a float or a SIMD batch).
};
/// Natural logarithm: ln x (-inf at 0, NaN below).
struct Log {
  static constexpr const char* name = "log";  ///< Printable name of the operator.
  template <class V> V operator()(V x) const { using std::log; return log(x); }  ///< The operator applied to x (a float or a SIMD batch).
};
/// Hyperbolic tangent.
struct Tanh {
  static constexpr const char* name = "tanh";  ///< Printable name of the operator.
  template <class V> V operator()(V x) const { using std::tanh; return tanh(x); }  ///< The operator applied to x (a float or a SIMD batch).
};
/// Square root (NaN below 0).
struct Sqrt {
  static constexpr const char* name = "sqrt";  ///< Printable name of the operator.
  template <class V> V operator()(V x) const { using std::sqrt; return sqrt(x); }  ///< The operator applied to x (a float or a SIMD batch).
};
/// 1 / sqrt(x), rounded twice: the hardware estimate (12 bits on x86) is too
/// coarse for a norm's scale factor.
struct Rsqrt {
  static constexpr const char* name = "rsqrt";  ///< Printable name of the operator.
  template <class V> V operator()(V x) const { using std::sqrt; return V(1.f) / sqrt(x); }  ///< The operator applied to x (a float or a SIMD batch).
};
/// 1 / (1 + e^-x): e^-x overflows to +inf for x < -88, giving an exact 0.
struct Sigmoid {
  static constexpr const char* name = "sigmoid";  ///< Printable name of the operator.
  template <class V> V operator()(V x) const { using std::exp; return V(1.f) / (V(1.f) + exp(-x)); }  ///< The operator applied to x (a float or a SIMD batch).
};
/// x * sigmoid(x), written as one division so that silu(-100) is -0, not NaN.
struct Silu {
  static constexpr const char* name = "silu";  ///< Printable name of the operator.
  template <class V> V operator()(V x) const { using std::exp; return x / (V(1.f) + exp(-x)); }  ///< The operator applied to x (a float or a SIMD batch).
};
/// GELU, tanh approximation: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
struct Gelu {
  static constexpr const char* name = "gelu";  ///< Printable name of the operator.
  /// The operator applied to x (a float or a SIMD batch).
  template <class V> V operator()(V x) const {
    using std::tanh;
    const V inner = V(0.7978845608028654f) * (x + V(0.044715f) * x * x * x);
    return V(0.5f) * x * (V(1.f) + tanh(inner));
  }
};
/// GELU, exact form: x/2 (1 + erf(x / sqrt 2)).
struct GeluErf {
  static constexpr const char* name = "gelu_erf";  ///< Printable name of the operator.
  /// The operator applied to x (a float or a SIMD batch).
  template <class V> V operator()(V x) const {
    using std::erf;
    return V(0.5f) * x * (V(1.f) + erf(x * V(0.7071067811865476f)));
  }
};
/// max(x, 0); relu(NaN) is 0 in every backend.
struct Relu {
  static constexpr const char* name = "relu";  ///< Printable name of the operator.
  /// The operator applied to x (a float or a SIMD batch).
  template <class V> V operator()(V x) const {
    if constexpr (detail::is_scalar_v<V>) return x > 0.f ? x : 0.f;
    else return select(x > V(0.f), x, V(0.f));
  }
};

// ---- binary ----------------------------------------------------------------

/// a + b.
struct Add {
  static constexpr const char* name = "+";  ///< Printable name of the operator.
  template <class V> V operator()(V a, V b) const { return a + b; }  ///< The operator applied to a and b (floats or SIMD batches).
};
/// a - b.
struct Sub {
  static constexpr const char* name = "-";  ///< Printable name of the operator.
  template <class V> V operator()(V a, V b) const { return a - b; }  ///< The operator applied to a and b (floats or SIMD batches).
};
/// a * b.
struct Mul {
  static constexpr const char* name = "*";  ///< Printable name of the operator.
  template <class V> V operator()(V a, V b) const { return a * b; }  ///< The operator applied to a and b (floats or SIMD batches).
};
/// a / b (IEEE: x/0 is +-inf or NaN).
struct Div {
  static constexpr const char* name = "/";  ///< Printable name of the operator.
  template <class V> V operator()(V a, V b) const { return a / b; }  ///< The operator applied to a and b (floats or SIMD batches).
};
/// std::min(a, b): a unless b < a, so a NaN in b is skipped and a NaN in a kept.
struct Min {
  static constexpr const char* name = "min";  ///< Printable name of the operator.
  template <class V> V operator()(V a, V b) const { return detail::min_of(a, b); }  ///< The operator applied to a and b (floats or SIMD batches).
};
/// std::max(a, b): a unless a < b, so a NaN in b is skipped and a NaN in a kept.
struct Max {
  static constexpr const char* name = "max";  ///< Printable name of the operator.
  template <class V> V operator()(V a, V b) const { return detail::max_of(a, b); }  ///< The operator applied to a and b (floats or SIMD batches).
};

// ---- reductions along the last axis -----------------------------------------
// identity: the start value; combine: fold one more value (or lane) in;
// finish: turn the fold of n values into the result. An evaluator may fold in
// any order and in any precision, so combine must be associative up to rounding.

/// Row sum; an empty row gives 0.
struct SumReduce {
  static constexpr const char* name = "sum";  ///< Printable name of the operator.
  static constexpr float identity = 0.f;  ///< Start value of the fold.
  template <class V> static V combine(V a, V b) { return a + b; }  ///< Folds b into the accumulator a.
  template <class V> static V finish(V acc, int64_t) { return acc; }  ///< Turns the fold of n values into the result.
};
/// Row mean (sum / n). Mean of an empty row is 0/0 = NaN, as in numpy.
struct MeanReduce {
  static constexpr const char* name = "mean";  ///< Printable name of the operator.
  static constexpr float identity = 0.f;  ///< Start value of the fold.
  template <class V> static V combine(V a, V b) { return a + b; }  ///< Folds b into the accumulator a.
  template <class V> static V finish(V acc, int64_t n) { return acc / static_cast<V>(n); }  ///< Turns the fold of n values into the result.
};
/// Row maximum. NaNs are skipped (max_of keeps the accumulator); an empty row gives -inf.
struct MaxReduce {
  static constexpr const char* name = "max";  ///< Printable name of the operator.
  static constexpr float identity = -std::numeric_limits<float>::infinity();  ///< Start value of the fold.
  template <class V> static V combine(V a, V b) { return detail::max_of(a, b); }  ///< Folds b into the accumulator a.
  template <class V> static V finish(V acc, int64_t) { return acc; }  ///< Turns the fold of n values into the result.
};
/// Row minimum. NaNs are skipped; an empty row gives +inf.
struct MinReduce {
  static constexpr const char* name = "min";  ///< Printable name of the operator.
  static constexpr float identity = std::numeric_limits<float>::infinity();  ///< Start value of the fold.
  template <class V> static V combine(V a, V b) { return detail::min_of(a, b); }  ///< Folds b into the accumulator a.
  template <class V> static V finish(V acc, int64_t) { return acc; }  ///< Turns the fold of n values into the result.
};

}  // namespace tessera::expr::op
