/// \file
/// Every KV cache, and a factory from a short text spec:
///   "static" | "growing" | "sliding:W" | "paged:B"   with a type f32 | f16 | q8_0.
#pragma once

#include <charconv>
#include <optional>
#include <string_view>

#include "tessera/kv/contiguous.hpp"
#include "tessera/kv/hybrid.hpp"
#include "tessera/kv/kv_cache.hpp"
#include "tessera/kv/paged.hpp"
#include "tessera/kv/sliding.hpp"

namespace tessera::kv {

/// A parsed cache spec: which cache make_kv_cache builds, its size parameter and storage type.
struct KvSpec {
  /// The cache class: StaticKvCache, GrowingKvCache, SlidingKvCache or PagedKvCache.
  enum class Kind : uint8_t { static_, growing, sliding, paged };
  Kind kind = Kind::static_;  ///< Which cache to build.
  int64_t param = 0;  ///< sliding: window; paged: block size
  /// Storage type.  Unset: the layout's type (make_kv_cache) or f32 (LlamaContext).
  std::optional<KvType> type;
};

/// Parses a storage type name: "f32", "f16" or "q8_0". Throws Error for any other.
inline KvType parse_kv_type(std::string_view s) {
  if (s == "f32") return KvType::f32;
  if (s == "f16") return KvType::f16;
  if (s == "q8_0") return KvType::q8_0;
  throw Error("unknown KV type '" + std::string(s) + "' (expected f32, f16 or q8_0)");
}

/// Parses "static", "growing", "sliding:W" or "paged:B" (W, B > 0).
inline KvSpec parse_kv_spec(std::string_view s, std::optional<KvType> type = std::nullopt) {
  KvSpec spec;
  spec.type = type;
  const auto colon = s.find(':');
  const std::string_view kind = s.substr(0, colon);
  auto number = [&]() {
    check(colon != std::string_view::npos, "KV spec '", s, "': ", kind, " needs a size, as in ", kind, ":256");
    const std::string_view num = s.substr(colon + 1);
    int64_t v = 0;
    const auto r = std::from_chars(num.data(), num.data() + num.size(), v);
    check(r.ec == std::errc() && r.ptr == num.data() + num.size() && v > 0, "KV spec '", s, "': bad size '", num, "'");
    return v;
  };
  if (kind == "static" || kind == "growing") {
    check(colon == std::string_view::npos, "KV spec '", s, "': ", kind, " takes no size");
    spec.kind = kind == "static" ? KvSpec::Kind::static_ : KvSpec::Kind::growing;
  } else if (kind == "sliding") {
    spec.kind = KvSpec::Kind::sliding;
    spec.param = number();
  } else if (kind == "paged") {
    spec.kind = KvSpec::Kind::paged;
    spec.param = number();
  } else {
    throw Error("unknown KV cache '" + std::string(s) + "' (expected static, growing, sliding:W or paged:B)");
  }
  return spec;
}

/// A cache for one sequence of at most max_positions, appended max_batch at a
/// time.  A paged spec gets a pool of its own sized for max_positions; share a
/// pool between sequences by building PagedKvCache directly.  The storage type
/// is layout.type; a spec that names another type is an error, not an override.
inline std::unique_ptr<KvCache> make_kv_cache(const KvSpec& spec, KvLayout layout, int64_t max_positions,
                                              int64_t max_batch) {
  check(!spec.type || *spec.type == layout.type, "make_kv_cache: the spec asks for ", kv_type_name(*spec.type),
        " storage but the layout says ", kv_type_name(layout.type),
        "; set KvLayout::type (or leave KvSpec::type unset, or make them equal)");
  check(max_positions > 0 && max_batch > 0, "make_kv_cache: ", max_positions, " positions appended ", max_batch,
        " at a time");
  switch (spec.kind) {
    case KvSpec::Kind::static_: return std::make_unique<StaticKvCache>(layout, max_positions);
    case KvSpec::Kind::growing: return std::make_unique<GrowingKvCache>(layout, max_positions);
    case KvSpec::Kind::sliding: return std::make_unique<SlidingKvCache>(layout, spec.param, max_batch, max_positions);
    case KvSpec::Kind::paged: {
      const int64_t blocks = (max_positions + spec.param - 1) / spec.param;
      return std::make_unique<PagedKvCache>(std::make_shared<KvBlockPool>(layout, spec.param, blocks), max_positions);
    }
  }
  throw Error("bad KV spec");
}

}  // namespace tessera::kv
