#include "tests/support/openssl_alloc_counter.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include <malloc.h>
#include <openssl/crypto.h>

namespace {

// Plain thread_local integers: constant-initialised, so the hooks never allocate or recurse.
thread_local std::uint64_t t_allocations = 0;
thread_local std::uint64_t t_frees = 0;
thread_local std::uint64_t t_usable_bytes = 0;

void count_allocation(void* p) noexcept {
  if (p != nullptr) {
    ++t_allocations;
    t_usable_bytes += malloc_usable_size(p);
  }
}

void* counting_malloc(std::size_t size, const char* /*file*/, int /*line*/) {
  void* p = std::malloc(size);  // NOLINT(cppcoreguidelines-no-malloc): OpenSSL's allocator
  count_allocation(p);
  return p;
}

void* counting_realloc(void* old, std::size_t size, const char* /*file*/, int /*line*/) {
  void* p = std::realloc(old, size);  // NOLINT(cppcoreguidelines-no-malloc)
  if (p != nullptr && old != nullptr) {
    ++t_frees;
  }
  count_allocation(p);
  return p;
}

void counting_free(void* p, const char* /*file*/, int /*line*/) {
  if (p != nullptr) {
    ++t_frees;
  }
  std::free(p);  // NOLINT(cppcoreguidelines-no-malloc)
}

// Runs before main, so before anything in the program could have used OpenSSL.
const bool kHooksInstalled =
    CRYPTO_set_mem_functions(counting_malloc, counting_realloc, counting_free) == 1;

}  // namespace

namespace authswitch::support {

bool openssl_alloc_counter_installed() noexcept { return kHooksInstalled; }

OpenSslAllocSnapshot openssl_alloc_snapshot() noexcept {
  return {t_allocations, t_frees, t_usable_bytes};
}

}  // namespace authswitch::support
