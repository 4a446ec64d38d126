/// \file
/// tessera::Error — the one exception type of the library — and the checks that
/// raise it. Messages name the thing at fault (file, tensor, shape, offset).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace tessera {

/// Raised for every recoverable failure: bad files, bad shapes, bad flags.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}
}  // namespace detail

/// Throws Error with the parts streamed together: fail("tensor ", name, " is ", n, " bytes").
template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  throw Error(detail::concat(std::forward<Parts>(parts)...));
}

/// Boundary check, kept in every build type.
template <class... Parts>
void check(bool ok, Parts&&... parts) {
  if (!ok) [[unlikely]] fail(std::forward<Parts>(parts)...);
}

}  // namespace tessera

/// A boundary check whose message parts are evaluated only when it fails: for
/// checks on the decode path whose messages build strings (shape_str), which
/// check() would build, and allocate, on every call. Throws tessera::Error.
#define TESSERA_CHECK(cond, ...)                              \
  do {                                                        \
    if (!(cond)) [[unlikely]] ::tessera::fail(__VA_ARGS__);   \
  } while (0)

// Checks inside hot code: shape contracts at block boundaries. They throw in
// debug builds and compile away under NDEBUG, as the design asks.
#ifdef NDEBUG
#define TESSERA_DEBUG_CHECK(cond, ...) ((void)0)
#else
/// Like TESSERA_CHECK, for hot code (shape contracts at block boundaries):
/// throws tessera::Error in debug builds; under NDEBUG it compiles to nothing
/// and neither `cond` nor the message parts are evaluated.
#define TESSERA_DEBUG_CHECK(cond, ...) TESSERA_CHECK(cond, __VA_ARGS__)
#endif
