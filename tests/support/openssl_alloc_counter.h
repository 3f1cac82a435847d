#pragma once
// Counts OpenSSL's heap allocations per thread, for tests that state what a crypto call costs
// (tests/limits/pan_token_test.cc). OpenSSL allocates with malloc, which tests/support/
// alloc_counter (operator new) does not see and jemalloc's counter sees only in jemalloc builds.
//
// openssl_alloc_counter.cc installs counting hooks with CRYPTO_set_mem_functions from a static
// initialiser, which OpenSSL accepts only before its first allocation; link it into the test
// executable that uses it (it changes OpenSSL's allocator for the whole program).
// Thread-safety: the counters are thread_local; each thread reads its own.

#include <cstdint>

namespace authswitch::support {

// False if OpenSSL had already allocated when the hooks were installed (nothing is counted).
[[nodiscard]] bool openssl_alloc_counter_installed() noexcept;

struct OpenSslAllocSnapshot {
  std::uint64_t allocations = 0;   // CRYPTO_malloc/zalloc/realloc calls on this thread
  std::uint64_t frees = 0;         // CRYPTO_free (and realloc moves) of non-null pointers
  std::uint64_t usable_bytes = 0;  // malloc_usable_size of each allocation (jemalloc: its usize)
};

[[nodiscard]] OpenSslAllocSnapshot openssl_alloc_snapshot() noexcept;

}  // namespace authswitch::support
