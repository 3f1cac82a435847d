#pragma once
// HMAC-SHA256 (RFC 2104, FIPS 198-1) over OpenSSL 3's EVP_MAC: the primitive behind
// SoftwareCardCrypto. Internal to limits/; tests/limits/pan_token_test.cc proves it against the
// RFC 4231 test vectors through this class, the same code path tokens take.
//
// Ownership: owns one OpenSSL MAC context, keyed at construction; OpenSSL keeps its own copy of
// the key and wipes it when the context is freed. Thread-safety: compute mutates the context, so
// one thread at a time.

#include <cstddef>
#include <span>

#include <openssl/types.h>

namespace authswitch::limits::internal {

class HmacSha256 {
 public:
  static constexpr std::size_t kMacBytes = 32;

  // REQUIRES: !key.empty(). Any length is accepted (RFC 2104); TokenKey sets the policy.
  // Startup only: throws std::runtime_error if OpenSSL cannot provide HMAC-SHA256.
  explicit HmacSha256(std::span<const std::byte> key);
  ~HmacSha256();
  HmacSha256(const HmacSha256&) = delete;
  HmacSha256& operator=(const HmacSha256&) = delete;
  HmacSha256(HmacSha256&&) = delete;
  HmacSha256& operator=(HmacSha256&&) = delete;

  // Writes HMAC-SHA256(key, data) to `mac`. Returns false if OpenSSL fails (its error queue is
  // cleared, so failures do not pile up in it); not expected once construction succeeded.
  [[nodiscard]] bool compute(std::span<const std::byte> data,
                             std::span<std::byte, kMacBytes> mac) noexcept;

 private:
  EVP_MAC_CTX* ctx_ = nullptr;
};

}  // namespace authswitch::limits::internal
