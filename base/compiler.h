#pragma once
// Compiler hints used on hot paths, each with a measured reason at its use.

// Forces inlining where GCC's heuristics stop (e.g. a per-field lambda in a message loop).
#define AS_ALWAYS_INLINE __attribute__((always_inline))
