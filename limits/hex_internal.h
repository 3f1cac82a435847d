#pragma once
// One hex digit's value, for the few places limits/ reads hex text (token keys, PAN tokens).
// Internal to limits/. Thread-safety: a pure function.

namespace authswitch::limits::internal {

// 0..15, or -1 when `c` is not a hex digit (either case).
[[nodiscard]] constexpr int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

}  // namespace authswitch::limits::internal
