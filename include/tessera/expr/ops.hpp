// The maths of every elementwise and reduction operator, written once as
// templates over the value type V: a float for the reference evaluator, a SIMD
// batch for the vector one (its exp/log/tanh/erf/select are found by ADL).
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

struct Neg {
  static constexpr const char* name = "neg";
  template <class V> V operator()(V x) const { return -x; }
};
struct Abs {
  static constexpr const char* name = "abs";
  template <class V> V operator()(V x) const { using std::abs; return abs(x); }
};
struct Exp {
  static constexpr const char* name = "exp";
  template <class V> V operator()(V x) const { using std::exp; return exp(x); }
};
struct Log {
  static constexpr const char* name = "log";
  template <class V> V operator()(V x) const { using std::log; return log(x); }
};
struct Tanh {
  static constexpr const char* name = "tanh";
  template <class V> V operator()(V x) const { using std::tanh; return tanh(x); }
};
struct Sqrt {
  static constexpr const char* name = "sqrt";
  template <class V> V operator()(V x) const { using std::sqrt; return sqrt(x); }
};
/// 1 / sqrt(x), rounded twice: the hardware estimate (12 bits on x86) is too
/// coarse for a norm's scale factor.
struct Rsqrt {
  static constexpr const char* name = "rsqrt";
  template <class V> V operator()(V x) const { using std::sqrt; return V(1.f) / sqrt(x); }
};
/// 1 / (1 + e^-x): e^-x overflows to +inf for x < -88, giving an exact 0.
struct Sigmoid {
  static constexpr const char* name = "sigmoid";
  template <class V> V operator()(V x) const { using std::exp; return V(1.f) / (V(1.f) + exp(-x)); }
};
/// x * sigmoid(x), written as one division so that silu(-100) is -0, not NaN.
struct Silu {
  static constexpr const char* name = "silu";
  template <class V> V operator()(V x) const { using std::exp; return x / (V(1.f) + exp(-x)); }
};
/// GELU, tanh approximation: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
struct Gelu {
  static constexpr const char* name = "gelu";
  template <class V> V operator()(V x) const {
    using std::tanh;
    const V inner = V(0.7978845608028654f) * (x + V(0.044715f) * x * x * x);
    return V(0.5f) * x * (V(1.f) + tanh(inner));
  }
};
/// GELU, exact form: x/2 (1 + erf(x / sqrt 2)).
struct GeluErf {
  static constexpr const char* name = "gelu_erf";
  template <class V> V operator()(V x) const {
    using std::erf;
    return V(0.5f) * x * (V(1.f) + erf(x * V(0.7071067811865476f)));
  }
};
/// max(x, 0); relu(NaN) is 0 in every backend.
struct Relu {
  static constexpr const char* name = "relu";
  template <class V> V operator()(V x) const {
    if constexpr (detail::is_scalar_v<V>) return x > 0.f ? x : 0.f;
    else return select(x > V(0.f), x, V(0.f));
  }
};

// ---- binary ----------------------------------------------------------------

struct Add {
  static constexpr const char* name = "+";
  template <class V> V operator()(V a, V b) const { return a + b; }
};
struct Sub {
  static constexpr const char* name = "-";
  template <class V> V operator()(V a, V b) const { return a - b; }
};
struct Mul {
  static constexpr const char* name = "*";
  template <class V> V operator()(V a, V b) const { return a * b; }
};
struct Div {
  static constexpr const char* name = "/";
  template <class V> V operator()(V a, V b) const { return a / b; }
};
struct Min {
  static constexpr const char* name = "min";
  template <class V> V operator()(V a, V b) const { return detail::min_of(a, b); }
};
struct Max {
  static constexpr const char* name = "max";
  template <class V> V operator()(V a, V b) const { return detail::max_of(a, b); }
};

// ---- reductions along the last axis -----------------------------------------
// identity: the start value; combine: fold one more value (or lane) in;
// finish: turn the fold of n values into the result. An evaluator may fold in
// any order and in any precision, so combine must be associative up to rounding.

struct SumReduce {
  static constexpr const char* name = "sum";
  static constexpr float identity = 0.f;
  template <class V> static V combine(V a, V b) { return a + b; }
  template <class V> static V finish(V acc, int64_t) { return acc; }
};
/// Mean of an empty row is 0/0 = NaN, as in numpy.
struct MeanReduce {
  static constexpr const char* name = "mean";
  static constexpr float identity = 0.f;
  template <class V> static V combine(V a, V b) { return a + b; }
  template <class V> static V finish(V acc, int64_t n) { return acc / static_cast<V>(n); }
};
/// NaNs are skipped (max_of keeps the accumulator); an empty row gives -inf.
struct MaxReduce {
  static constexpr const char* name = "max";
  static constexpr float identity = -std::numeric_limits<float>::infinity();
  template <class V> static V combine(V a, V b) { return detail::max_of(a, b); }
  template <class V> static V finish(V acc, int64_t) { return acc; }
};
/// NaNs are skipped; an empty row gives +inf.
struct MinReduce {
  static constexpr const char* name = "min";
  static constexpr float identity = std::numeric_limits<float>::infinity();
  template <class V> static V combine(V a, V b) { return detail::min_of(a, b); }
  template <class V> static V finish(V acc, int64_t) { return acc; }
};

}  // namespace tessera::expr::op
