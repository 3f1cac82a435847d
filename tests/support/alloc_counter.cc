#include "tests/support/alloc_counter.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#if defined(AS_HAVE_JEMALLOC) && __has_include(<jemalloc/jemalloc.h>)
#include <jemalloc/jemalloc.h>
#define AS_ALLOC_COUNTER_JEMALLOC 1
#endif

namespace {

// Plain thread_local integer: constant-initialised, so reading it from operator new never
// allocates or recurses.
thread_local std::uint64_t t_allocations = 0;
// Every thread's calls, for tests that watch threads they do not run on (a server's shards).
std::atomic<std::uint64_t> g_allocations{0};

void* allocate(std::size_t size) noexcept {
  ++t_allocations;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);  // NOLINT(cppcoreguidelines-no-malloc)
}

void* allocate_aligned(std::size_t size, std::align_val_t alignment) noexcept {
  ++t_allocations;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  auto align = static_cast<std::size_t>(alignment);
  if (align < sizeof(void*)) {
    align = sizeof(void*);
  }
  void* p = nullptr;
  if (posix_memalign(&p, align, size == 0 ? 1 : size) != 0) {
    return nullptr;
  }
  return p;
}

// The throwing forms retry through the new-handler, as the standard library's do.
void* allocate_or_throw(std::size_t size) {
  for (;;) {
    if (void* p = allocate(size)) {
      return p;
    }
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) {
      throw std::bad_alloc();
    }
    handler();
  }
}

void* allocate_aligned_or_throw(std::size_t size, std::align_val_t alignment) {
  for (;;) {
    if (void* p = allocate_aligned(size, alignment)) {
      return p;
    }
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) {
      throw std::bad_alloc();
    }
    handler();
  }
}

void release(void* p) noexcept { std::free(p); }  // NOLINT(cppcoreguidelines-no-malloc)

#ifdef AS_ALLOC_COUNTER_JEMALLOC
// jemalloc's own per-thread counter; the pointer stays valid for the thread's lifetime.
const std::uint64_t* jemalloc_counter() noexcept {
  thread_local const std::uint64_t* counter = [] {
    std::uint64_t* p = nullptr;
    std::size_t size = sizeof(p);
    if (mallctl("thread.allocatedp", static_cast<void*>(&p), &size, nullptr, 0) != 0) {
      return static_cast<std::uint64_t*>(nullptr);
    }
    return p;
  }();
  return counter;
}
#endif

}  // namespace

namespace authswitch::support {

std::uint64_t thread_allocations() noexcept { return t_allocations; }

std::uint64_t process_allocations() noexcept {
  return g_allocations.load(std::memory_order_relaxed);
}

bool jemalloc_counter_available() noexcept {
#ifdef AS_ALLOC_COUNTER_JEMALLOC
  return jemalloc_counter() != nullptr;
#else
  return false;
#endif
}

std::uint64_t jemalloc_thread_allocated_bytes() noexcept {
#ifdef AS_ALLOC_COUNTER_JEMALLOC
  const std::uint64_t* counter = jemalloc_counter();
  return counter == nullptr ? 0 : *counter;
#else
  return 0;
#endif
}

}  // namespace authswitch::support

// Replacements of the global allocation functions ([replacement.functions]).
void* operator new(std::size_t size) { return allocate_or_throw(size); }
void* operator new[](std::size_t size) { return allocate_or_throw(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return allocate(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return allocate(size); }
void* operator new(std::size_t size, std::align_val_t alignment) {
  return allocate_aligned_or_throw(size, alignment);
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
  return allocate_aligned_or_throw(size, alignment);
}
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return allocate_aligned(size, alignment);
}
void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return allocate_aligned(size, alignment);
}

void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete(void* p, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }
