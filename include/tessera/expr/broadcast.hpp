/// \file
/// Numpy broadcasting for expression shapes, and the index arithmetic every
/// evaluator shares: binding a leaf's strides to the iteration space (stride 0
/// on broadcast axes) and walking the rows (all axes but the last) of a shape.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::expr {

/// Shape of a op b under numpy rules: shapes are aligned from the right, a
/// missing leading axis counts as extent 1, and an axis of extent 1 stretches
/// to the other's extent. Throws Error naming both shapes when an axis pair
/// differs and neither is 1. O(rank).
template <size_t Ra, size_t Rb>
std::array<int64_t, std::max(Ra, Rb)> broadcast_shape(const std::array<int64_t, Ra>& a,
                                                       const std::array<int64_t, Rb>& b) {
  constexpr size_t R = std::max(Ra, Rb);
  std::array<int64_t, R> out{};
  for (size_t i = 0; i < R; ++i) {  // i counts axes from the right
    const int64_t ea = i < Ra ? a[Ra - 1 - i] : 1;
    const int64_t eb = i < Rb ? b[Rb - 1 - i] : 1;
    TESSERA_CHECK(ea == eb || ea == 1 || eb == 1, "cannot broadcast shapes ", shape_str(a), " and ", shape_str(b),
          ": axis ", R - 1 - i, " of the result would be both ", ea, " and ", eb);
    out[R - 1 - i] = ea == 1 ? eb : ea;
  }
  return out;
}

/// Strides that read a tensor of `shape`/`strides` (rank Rl) as if it had the
/// shape `space` (rank R >= Rl, which `shape` broadcasts to): missing leading
/// axes and extent-1 axes get stride 0, so one offset formula serves both.
template <size_t R, size_t Rl>
std::array<int64_t, R> broadcast_strides(const std::array<int64_t, Rl>& shape, const std::array<int64_t, Rl>& strides,
                                         const std::array<int64_t, R>& space) {
  static_assert(Rl <= R, "an operand cannot have more axes than the space it is read in");
  (void)space;  // read only by the debug check
  std::array<int64_t, R> out{};
  for (size_t d = 0; d < R; ++d) {
    if (d < R - Rl) continue;
    const size_t a = d - (R - Rl);
    TESSERA_DEBUG_CHECK(shape[a] == 1 || shape[a] == space[d], "operand shape ", shape_str(shape),
                        " does not broadcast to ", shape_str(space));
    out[d] = shape[a] == 1 ? 0 : strides[a];
  }
  return out;
}

/// Element offset of the start of the row at multi-index idx (its last entry is ignored).
template <size_t R>
int64_t row_offset(const std::array<int64_t, R>& idx, const std::array<int64_t, R>& strides) {
  int64_t off = 0;
  for (size_t d = 0; d + 1 < R; ++d) off += idx[d] * strides[d];
  return off;
}

/// Number of rows of a shape: the product of all extents but the last (1 for rank 1).
template <size_t R>
int64_t row_count(const std::array<int64_t, R>& shape) {
  int64_t n = 1;
  for (size_t d = 0; d + 1 < R; ++d) n *= shape[d];
  return n;
}

/// Multi-index of row r (row-major over all axes but the last, which is set to 0).
template <size_t R>
std::array<int64_t, R> row_index(int64_t r, const std::array<int64_t, R>& shape) {
  std::array<int64_t, R> idx{};
  for (size_t d = R - 1; d-- > 0;) {
    idx[d] = r % shape[d];
    r /= shape[d];
  }
  return idx;
}

/// Moves idx to the next row in row-major order (odometer carry over the outer axes).
template <size_t R>
void next_row(std::array<int64_t, R>& idx, const std::array<int64_t, R>& shape) {
  for (size_t d = R - 1; d-- > 0;) {
    if (++idx[d] < shape[d]) return;
    idx[d] = 0;
  }
}

/// Checks a destination against the expression's shape; `what` names the call.
template <size_t R>
void check_destination(const std::array<int64_t, R>& dst, const std::array<int64_t, R>& want, const char* what) {
  TESSERA_CHECK(dst == want, what, ": destination shape ", shape_str(dst), " differs from the expression's shape ",
        shape_str(want));
}

/// argmax_last's contract: dst is in's shape with the last axis 1, and a row index fits I.
/// Returns the row length.
template <class I, size_t R>
int64_t check_argmax_destination(const std::array<int64_t, R>& dst, const std::array<int64_t, R>& in) {
  std::array<int64_t, R> want = in;
  want[R - 1] = 1;
  check_destination(dst, want, "argmax_last");
  const int64_t n = in[R - 1];
  check(n <= std::numeric_limits<I>::max(), "argmax_last: row length ", n, " does not fit the index type");
  return n;
}

}  // namespace tessera::expr
