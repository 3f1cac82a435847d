#pragma once
// Hex for the few places limits/ reads or writes it: one hex digit's value (token keys, PAN
// tokens), and a text's SHA-1 in hex (what Redis names a script by; the holds library's
// version). Internal to limits/. Thread-safety: pure functions.

#include <array>
#include <cstddef>
#include <string_view>

#include <openssl/sha.h>

namespace authswitch::limits::internal {

// SHA-1 of `text`, 40 lowercase hex digits (Redis's script sha). Startup only.
[[nodiscard]] inline std::array<char, 2 * SHA_DIGEST_LENGTH> sha1_hex(std::string_view text) {
  std::array<unsigned char, SHA_DIGEST_LENGTH> digest{};
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  static constexpr char kHex[] = "0123456789abcdef";
  std::array<char, 2 * SHA_DIGEST_LENGTH> out{};
  for (std::size_t i = 0; i < digest.size(); ++i) {
    out[2 * i] = kHex[digest[i] >> 4U];
    out[2 * i + 1] = kHex[digest[i] & 0xFU];
  }
  return out;
}

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
