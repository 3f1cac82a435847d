#pragma once
// Heap allocation counters for allocs/op in benchmarks and zero-allocation tests (STYLE.md, Memory:
// "benchmarks report allocs/op").
//
// alloc_counter.cc replaces the global operator new and delete (every form: plain, array,
// sized, aligned and nothrow) in the executable that links it, and counts each call to an
// operator new made by the calling thread. Calls to malloc() that bypass operator new are not
// seen; when jemalloc is linked (AS_HAVE_JEMALLOC), jemalloc_thread_allocated_bytes() reads
// jemalloc's per-thread counter `thread.allocatedp`, which sees every allocation.
//
// Thread-safety: the counters are thread_local; each thread reads its own. Link this into
// benchmark and test executables only: it changes operator new for the whole program.

#include <cstdint>

namespace authswitch::support {

// Calls to any operator new made by the calling thread so far.
[[nodiscard]] std::uint64_t thread_allocations() noexcept;

// Calls to any operator new made by any thread so far (for tests that watch threads they do
// not run on, such as a server's shards; quiesce the others first).
[[nodiscard]] std::uint64_t process_allocations() noexcept;

// True when jemalloc is linked and its per-thread byte counter could be read.
[[nodiscard]] bool jemalloc_counter_available() noexcept;

// Bytes jemalloc has allocated for the calling thread so far (monotonic), or 0 without
// jemalloc.
[[nodiscard]] std::uint64_t jemalloc_thread_allocated_bytes() noexcept;

// Both counters at one moment, for a before/after difference around a timed loop.
struct AllocSnapshot {
  std::uint64_t allocations = 0;
  std::uint64_t jemalloc_bytes = 0;
};

[[nodiscard]] inline AllocSnapshot alloc_snapshot() noexcept {
  return {thread_allocations(), jemalloc_thread_allocated_bytes()};
}

}  // namespace authswitch::support
