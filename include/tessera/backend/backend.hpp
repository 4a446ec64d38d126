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

}  // namespace tessera::backend

TESSERA_SIMD_WARNINGS_ON
