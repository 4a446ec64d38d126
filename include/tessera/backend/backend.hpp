/// \file
/// Backend tags, chosen at compile time. backend::scalar is the reference of
/// every kernel; backend::simd uses xsimd batches for the compiler's target
/// (AVX2, AVX-512, NEON, or SSE2 when built without -march=native) plus OpenMP.
/// Every kernel exists in both namespaces with the same shapes and contract (the
/// SIMD attention and float gemm also take scratch, docs/backend.md); model code
/// calls backend::active, which is simd unless TESSERA_BACKEND_SCALAR is defined.
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

namespace tessera::backend {

namespace scalar {
/// Selects the scalar reference kernels in overloads that take a backend tag.
struct Tag { static constexpr const char* name = "scalar"; };
/// \var Tag::name
/// The backend's name ("scalar"), for logs and benchmark labels.
}  // namespace scalar

namespace simd {
/// Selects the xsimd + OpenMP kernels in overloads that take a backend tag.
struct Tag { static constexpr const char* name = "simd"; };
/// \var Tag::name
/// The backend's name ("simd"), for logs and benchmark labels.
}  // namespace simd

#if defined(TESSERA_BACKEND_SCALAR)
namespace active = scalar;
#else
namespace active = simd;
#endif

/// The tag of backend::active: what overloads without a tag argument use.
using Default = active::Tag;

/// Batches of at most this many rows (a speculative draft of up to 15 tokens
/// under verification, a short prompt) are computed row by row with decode's own kernels in the
/// SIMD backend, weights still read once: their results carry the exact bits
/// that one-token-at-a-time decoding gives, so greedy speculative decoding
/// reproduces plain greedy decoding token for token.
inline constexpr long kDecodeExactRows = 16;

/// Storage of exact_rows() for this thread (ExactRowsScope sets it).
inline long& exact_rows_slot() noexcept {
  thread_local long rows = kDecodeExactRows;
  return rows;
}
/// Batches of at most this many rows take the exact path above on this thread:
/// kDecodeExactRows unless an ExactRowsScope here says otherwise.
inline long exact_rows() noexcept { return exact_rows_slot(); }

/// Sets exact_rows() on this thread while alive. ExactRowsScope(1) sends every
/// batch of two rows or more to the fastest kernels: a serving step that wants
/// throughput rather than decode's exact bits (measured on the default model,
/// 2 cores, 16 sequences decoding together: 1.9-2.3x the tokens/s).
class ExactRowsScope {
 public:
  /// Sets exact_rows() to `rows` on this thread until the scope ends.
  explicit ExactRowsScope(long rows) noexcept : saved_(exact_rows_slot()) { exact_rows_slot() = rows; }
  /// Restores the value exact_rows() had before.
  ~ExactRowsScope() { exact_rows_slot() = saved_; }
  ExactRowsScope(const ExactRowsScope&) = delete;
  ExactRowsScope& operator=(const ExactRowsScope&) = delete;

 private:
  long saved_;
};

}  // namespace tessera::backend

TESSERA_SIMD_WARNINGS_ON
