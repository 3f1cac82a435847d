#pragma once
// FNV-1a, 32-bit: a stable hash of short identifiers that two modules must agree on without
// sharing a table (e.g. a fraud rule's id, stored with a card's override by limits and matched
// by risk); 64-bit: request fingerprints (the switch's replay check). Not for hash tables
// facing untrusted input.
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

// The 64-bit variant, resumable: pass the previous result as `h` to hash several parts.
inline constexpr std::uint64_t kFnv1a64Basis = 14'695'981'039'346'656'037ULL;
[[nodiscard]] constexpr std::uint64_t fnv1a64(std::string_view s,
                                              std::uint64_t h = kFnv1a64Basis) noexcept {
  for (const char c : s) {
    h = (h ^ static_cast<unsigned char>(c)) * 1'099'511'628'211ULL;
  }
  return h;
}

static_assert(fnv1a32("") == 2'166'136'261U);
static_assert(fnv1a64("") == kFnv1a64Basis);
static_assert(fnv1a64("a") == 0xAF63DC4C8601EC8CULL);
static_assert(fnv1a32("a") == 0xE40C292CU);

}  // namespace authswitch::base
