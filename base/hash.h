#pragma once
// FNV-1a, 32-bit: a stable hash of short identifiers that two modules must agree on without
// sharing a table (e.g. a fraud rule's id, stored with a card's override by limits and matched
// by risk). Not for hash tables facing untrusted input.
// Thread-safety: pure functions.

#include <cstdint>
#include <string_view>

namespace authswitch::base {

[[nodiscard]] constexpr std::uint32_t fnv1a32(std::string_view s) noexcept {
  std::uint32_t h = 2'166'136'261U;
  for (const char c : s) {
    h = (h ^ static_cast<unsigned char>(c)) * 16'777'619U;
  }
  return h;
}

static_assert(fnv1a32("") == 2'166'136'261U);
static_assert(fnv1a32("a") == 0xE40C292CU);

}  // namespace authswitch::base
