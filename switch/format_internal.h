#pragma once
// Fixed-width decimal text for the holds script's arguments (day and month counters, card
// expiry, a hold id's transmission time and STAN), shared by processor.cc and reconciler.cc.
// No allocation: the caller owns the output buffer.
// Thread-safety: a pure function; `out` belongs to the caller.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "base/assert.h"

namespace authswitch::switching {

// `v` as exactly `width` decimal digits (zero-filled; higher digits dropped) into `out`.
// REQUIRES: width <= out.size().
inline std::string_view format_fixed(std::uint64_t v, std::size_t width,
                                     std::span<char> out) noexcept {
  AS_ASSERT(width <= out.size());
  for (std::size_t i = width; i > 0; --i) {
    out[i - 1] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
  return {out.data(), width};
}

}  // namespace authswitch::switching
