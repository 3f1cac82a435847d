#pragma once
// Assertions that stay on in release builds (AS_ASSERT) and expensive ones for debug and
// sanitizer builds only (AS_DASSERT). Both abort with file and line; neither throws.
// Never assert on network input: bad bytes produce a Result, not a crash.

#include <cstdio>
#include <cstdlib>

namespace authswitch::base {

[[noreturn]] inline void assert_failed(const char* expr, const char* file, int line) noexcept {
  std::fprintf(stderr, "assertion failed: %s at %s:%d\n", expr, file, line);
  std::abort();
}

}  // namespace authswitch::base

#define AS_ASSERT(cond)                                             \
  do {                                                              \
    if (!(cond)) [[unlikely]] {                                     \
      ::authswitch::base::assert_failed(#cond, __FILE__, __LINE__); \
    }                                                               \
  } while (false)

#ifdef NDEBUG
#define AS_DASSERT(cond) \
  do {                   \
  } while (false)
#else
#define AS_DASSERT(cond) AS_ASSERT(cond)
#endif
