/// \file
/// The front door of expressions: tessera::eval(dst, e), softmax, log_softmax
/// and argmax_last, on the default backend or on the one named by a tag. The
/// tag is a parameter of evaluation, never of the expression.
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include <utility>

#include "tessera/backend/backend.hpp"
#include "tessera/backend/scalar/eval.hpp"
#include "tessera/backend/simd/eval.hpp"
#include "tessera/expr/elementwise.hpp"
#include "tessera/expr/expr.hpp"
#include "tessera/expr/reduce.hpp"

namespace tessera {

/// dst = e on the scalar reference backend. dst [shape of e]; Error if not.
template <expr::Destination D, expr::Tensorish X>
void eval(backend::scalar::Tag, D&& dst, X&& e) { backend::scalar::eval(std::forward<D>(dst), std::forward<X>(e)); }
/// dst = e on the SIMD backend (xsimd batches, OpenMP over rows).
template <expr::Destination D, expr::Tensorish X>
void eval(backend::simd::Tag, D&& dst, X&& e) { backend::simd::eval(std::forward<D>(dst), std::forward<X>(e)); }
/// dst = e on backend::Default: `eval(out, silu(gate) * up)`.
template <expr::Destination D, expr::Tensorish X>
void eval(D&& dst, X&& e) { eval(backend::Default{}, std::forward<D>(dst), std::forward<X>(e)); }

/// Row-wise softmax over the last axis. x, dst [..., n]; dst may be x.
template <expr::Destination D, expr::Tensorish X>
void softmax(backend::scalar::Tag, D&& dst, X&& x) {
  backend::scalar::softmax(std::forward<D>(dst), std::forward<X>(x));
}
/// Softmax on the SIMD backend, as the scalar overload.
template <expr::Destination D, expr::Tensorish X>
void softmax(backend::simd::Tag, D&& dst, X&& x) {
  backend::simd::softmax(std::forward<D>(dst), std::forward<X>(x));
}
/// Softmax on backend::Default.
template <expr::Destination D, expr::Tensorish X>
void softmax(D&& dst, X&& x) { softmax(backend::Default{}, std::forward<D>(dst), std::forward<X>(x)); }

/// Row-wise log-softmax over the last axis. x, dst [..., n]; dst may be x.
template <expr::Destination D, expr::Tensorish X>
void log_softmax(backend::scalar::Tag, D&& dst, X&& x) {
  backend::scalar::log_softmax(std::forward<D>(dst), std::forward<X>(x));
}
/// Log-softmax on the SIMD backend, as the scalar overload.
template <expr::Destination D, expr::Tensorish X>
void log_softmax(backend::simd::Tag, D&& dst, X&& x) {
  backend::simd::log_softmax(std::forward<D>(dst), std::forward<X>(x));
}
/// Log-softmax on backend::Default.
template <expr::Destination D, expr::Tensorish X>
void log_softmax(D&& dst, X&& x) { log_softmax(backend::Default{}, std::forward<D>(dst), std::forward<X>(x)); }

/// Index of the first maximum of each row. x [..., n] -> dst [..., 1], int64_t or int32_t.
template <class Dst, expr::Tensorish X>
void argmax_last(backend::scalar::Tag, Dst&& dst, X&& x) {
  backend::scalar::argmax_last(std::forward<Dst>(dst), std::forward<X>(x));
}
/// argmax_last on the SIMD backend, as the scalar overload.
template <class Dst, expr::Tensorish X>
void argmax_last(backend::simd::Tag, Dst&& dst, X&& x) {
  backend::simd::argmax_last(std::forward<Dst>(dst), std::forward<X>(x));
}
/// argmax_last on backend::Default.
template <class Dst, expr::Tensorish X>
void argmax_last(Dst&& dst, X&& x) { argmax_last(backend::Default{}, std::forward<Dst>(dst), std::forward<X>(x)); }

}  // namespace tessera

TESSERA_SIMD_WARNINGS_ON
