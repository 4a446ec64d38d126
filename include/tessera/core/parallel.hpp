/// \file
/// Work splitting over OpenMP. Kernels call parallel_for; when the caller is
/// already inside a parallel region (a caller that opens one region around
/// several kernels), the loop is shared among that team instead of opening a
/// nested region, since region start-up is visible at batch size 1.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace tessera {

/// Calls body(begin, end) over [0, n) in chunks of at least `grain` items.
/// Inside a parallel region every thread of the team must reach this call.
template <class Body>
void parallel_for(int64_t n, int64_t grain, Body&& body) {
  if (n <= 0) return;
  const int64_t n_chunks_max = std::max<int64_t>(1, n / std::max<int64_t>(1, grain));
  if (omp_get_level() > 0) {  // inside a region (even a team of one): share the loop, open none
    if (omp_get_num_threads() == 1) return body(int64_t{0}, n);
    const int64_t n_chunks = std::min<int64_t>(n_chunks_max, omp_get_num_threads());
#pragma omp for schedule(static)
    for (int64_t c = 0; c < n_chunks; ++c) body(c * n / n_chunks, (c + 1) * n / n_chunks);
    return;
  }
  const int64_t n_chunks = std::min<int64_t>(n_chunks_max, omp_get_max_threads());
  if (n_chunks == 1) return body(int64_t{0}, n);
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(n_chunks))
  for (int64_t c = 0; c < n_chunks; ++c) body(c * n / n_chunks, (c + 1) * n / n_chunks);
}

/// Number of threads kernels will use (from OMP_NUM_THREADS or set_num_threads).
inline int num_threads() { return omp_get_level() > 0 ? omp_get_num_threads() : omp_get_max_threads(); }
/// Sets the thread count for later parallel regions (omp_set_num_threads); values below 1 mean 1.
inline void set_num_threads(int n) { omp_set_num_threads(std::max(1, n)); }

}  // namespace tessera
