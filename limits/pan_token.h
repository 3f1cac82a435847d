#pragma once
// Card data protection (DESIGN.md section 5): a PAN is never stored, logged or used as a Redis
// key in clear. Redis keys carry a PanToken, the keyed HMAC-SHA256 of the PAN digits; log lines
// carry mask_pan's output (first 6 and last 4 digits).
//
// CardDataCrypto is the seam a hardware security module can implement. SoftwareCardCrypto
// implements it with OpenSSL's libcrypto and a TokenKey loaded once at startup from a file or
// the environment (never from the repository). OpenSSL stays behind this header: nothing here
// includes it.
//
// Ownership and thread-safety: TokenKey is a move-only secret that wipes its bytes when it is
// destroyed or moved from. A CardDataCrypto is used by one thread at a time (tokenize reuses a
// MAC context): each I/O thread constructs its own SoftwareCardCrypto from the shared key, which
// it may then drop. PanToken is a value; the free functions are pure.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "base/result.h"

namespace authswitch::limits {

enum class CardDataErrc : std::uint8_t {
  kOk = 0,
  kPanTooShort,     // fewer than kPanDigitsMin characters
  kPanTooLong,      // more than kPanDigitsMax characters
  kPanNotNumeric,   // a character other than '0'..'9' (spaces and dashes included)
  kBufferTooSmall,  // mask_pan: the output buffer is shorter than the PAN
  kCryptoFailure,   // the crypto provider failed (an OpenSSL error, an unavailable HSM)
};

// Name of an error code, e.g. "pan-not-numeric". Static storage.
[[nodiscard]] std::string_view card_data_errc_name(CardDataErrc e) noexcept;

// Errors carry only the code: never the PAN nor any part of it.
template <typename T>
using CardDataResult = base::Result<T, CardDataErrc>;

// ISO/IEC 7812-1 allows PANs of up to 19 digits; 12 is the shortest in circulation. The Luhn
// check digit is not checked here: a token must exist for whatever PAN the network sends.
inline constexpr std::size_t kPanDigitsMin = 12;
inline constexpr std::size_t kPanDigitsMax = 19;

// Succeeds when `pan` is kPanDigitsMin..kPanDigitsMax ASCII digits.
[[nodiscard]] CardDataResult<void> validate_pan(std::string_view pan) noexcept;

// Writes `pan` with every digit but the first 6 and the last 4 replaced by '*'
// ("411111******1111") into `out` and returns a view of it. A malformed PAN is rejected, not
// masked, so a log line never echoes a value that may be a PAN with a stray character in it.
// Errors: kPanTooShort, kPanTooLong, kPanNotNumeric, kBufferTooSmall (out.size() < pan.size()).
[[nodiscard]] CardDataResult<std::string_view> mask_pan(std::string_view pan,
                                                        std::span<char> out) noexcept;

// A PAN token: lowercase hex of the first 16 bytes (128 bits) of HMAC-SHA256(key, PAN digits),
// 32 characters. The same PAN under the same key always gives the same token, so it can name
// Redis keys; without the key it can be neither reversed nor brute-forced over a BIN's range.
class PanToken {
 public:
  static constexpr std::size_t kMacBytes = 32;    // HMAC-SHA256 output
  static constexpr std::size_t kTokenBytes = 16;  // the prefix of the MAC a token keeps
  static constexpr std::size_t kChars = 2 * kTokenBytes;

  // 32 '0' characters: a placeholder for slots that hold no token yet.
  constexpr PanToken() noexcept { chars_.fill('0'); }

  // Renders the first kTokenBytes bytes of `mac` as lowercase hex. For CardDataCrypto
  // implementations (software or HSM), so every one renders tokens the same way.
  [[nodiscard]] static PanToken from_mac(std::span<const std::byte, kMacBytes> mac) noexcept;
  // A token as rendered (kChars lowercase hex digits, e.g. taken from a card directory key), or
  // nullopt for anything else.
  [[nodiscard]] static std::optional<PanToken> parse(std::string_view text) noexcept;

  [[nodiscard]] constexpr std::string_view view() const noexcept {
    return {chars_.data(), chars_.size()};
  }

  friend constexpr bool operator==(const PanToken&, const PanToken&) noexcept = default;

 private:
  std::array<char, kChars> chars_{};
};

static_assert(sizeof(PanToken) == PanToken::kChars, "a token is its characters, nothing more");
static_assert(std::is_trivially_copyable_v<PanToken>);
static_assert(std::is_trivially_destructible_v<PanToken>);

// The secret key of PAN tokens: 32 to 64 bytes (HMAC-SHA256 gains nothing from keys longer
// than its 64-byte block). Move-only; the bytes are wiped (OPENSSL_cleanse) on destruction and
// when moved from. Nothing renders it: no stream operator, no hex accessor.
class TokenKey {
 public:
  static constexpr std::size_t kBytesMin = 32;
  static constexpr std::size_t kBytesMax = 64;

  // Copies `bytes`. Throws std::runtime_error if the size is outside [kBytesMin, kBytesMax].
  explicit TokenKey(std::span<const std::byte> bytes);

  // Parses hex digits (either case; ASCII whitespace around them is ignored). `source` names
  // where the text came from, for error messages ("environment variable X"). Throws
  // std::runtime_error; a message states sizes and positions, never a character of the key.
  [[nodiscard]] static TokenKey from_hex(std::string_view hex, std::string_view source);

  TokenKey(TokenKey&& other) noexcept;
  TokenKey& operator=(TokenKey&& other) noexcept;
  TokenKey(const TokenKey&) = delete;
  TokenKey& operator=(const TokenKey&) = delete;
  ~TokenKey();

  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {bytes_.data(), size_}; }

 private:
  TokenKey() noexcept = default;
  void wipe() noexcept;

  std::array<std::byte, kBytesMax> bytes_{};
  std::size_t size_ = 0;
};

// Default environment variable for load_token_key_from_env.
inline constexpr const char* kTokenKeyEnvVar = "AS_PAN_TOKEN_KEY_HEX";

// Startup only. Reads a key file that holds the key as hex text, such as one written by
// `openssl rand -hex 32` or mounted from a secret store (symbolic links are followed). Throws
// std::runtime_error naming the path and the problem (cannot open, not a regular file, too
// large, bad hex, wrong size); never the file's content.
[[nodiscard]] TokenKey load_token_key(const std::string& path);

// Startup only (getenv is not safe against a concurrent setenv). Reads the key as hex from an
// environment variable. Throws std::runtime_error naming the variable (unset, empty, bad hex,
// wrong size); never its value.
[[nodiscard]] TokenKey load_token_key_from_env(const char* variable = kTokenKeyEnvVar);

// Card data operations a hardware security module could take over. Implementations validate
// their input themselves and never put card data into an error.
class CardDataCrypto {
 public:
  virtual ~CardDataCrypto() = default;
  CardDataCrypto(const CardDataCrypto&) = delete;
  CardDataCrypto& operator=(const CardDataCrypto&) = delete;
  CardDataCrypto(CardDataCrypto&&) = delete;
  CardDataCrypto& operator=(CardDataCrypto&&) = delete;

  // Per message. The token of `pan` (validated as in validate_pan). Errors: kPanTooShort,
  // kPanTooLong, kPanNotNumeric, kCryptoFailure.
  [[nodiscard]] virtual CardDataResult<PanToken> tokenize(std::string_view pan) noexcept = 0;

 protected:
  CardDataCrypto() = default;
};

namespace internal {
class HmacSha256;
}  // namespace internal

// CardDataCrypto in software: HMAC-SHA256 through OpenSSL 3's EVP_MAC, with one MAC context
// keyed at construction and re-initialised (same key) for each call.
//
// Allocation: no operator new per call. OpenSSL 3.0 itself (measured on 3.0.22) mallocs and
// frees twice per call: re-initialising and finalising an HMAC duplicates the SHA-256 provider
// context (EVP_MD_CTX_copy_ex). EVP_MAC_CTX_dup per call would cost 11; a digest context reused
// with EVP_DigestInit_ex2 still costs 1. Only the deprecated SHA256_* functions avoid malloc.
// tests/limits/pan_token_test.cc pins the bound, so a change in either direction is noticed.
class SoftwareCardCrypto final : public CardDataCrypto {
 public:
  // Keys the MAC with `key`, which OpenSSL copies: `key` may be destroyed afterwards.
  // Startup only: throws std::runtime_error if OpenSSL cannot provide HMAC-SHA256.
  explicit SoftwareCardCrypto(const TokenKey& key);
  ~SoftwareCardCrypto() override;
  SoftwareCardCrypto(const SoftwareCardCrypto&) = delete;
  SoftwareCardCrypto& operator=(const SoftwareCardCrypto&) = delete;
  SoftwareCardCrypto(SoftwareCardCrypto&&) = delete;
  SoftwareCardCrypto& operator=(SoftwareCardCrypto&&) = delete;

  [[nodiscard]] CardDataResult<PanToken> tokenize(std::string_view pan) noexcept override;

 private:
  std::unique_ptr<internal::HmacSha256> mac_;
};

}  // namespace authswitch::limits
