#include "limits/pan_token.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/assert.h"
#include "limits/hex_internal.h"
#include "limits/pan_token_internal.h"

namespace authswitch::limits {
namespace {

// Digits shown by mask_pan (DESIGN.md section 5: first 6, last 4).
constexpr std::size_t kMaskShownFirst = 6;
constexpr std::size_t kMaskShownLast = 4;
static_assert(kMaskShownFirst + kMaskShownLast < kPanDigitsMin, "a mask must hide a digit");

static_assert(internal::HmacSha256::kMacBytes == PanToken::kMacBytes);

// A key file holds at most 128 hex digits; the rest of this allowance is for whitespace.
constexpr std::size_t kKeyFileBytesMax = 1024;

const unsigned char* as_uchars(const std::byte* p) noexcept {
  return reinterpret_cast<const unsigned char*>(p);  // NOLINT: OpenSSL takes unsigned char
}

unsigned char* as_uchars(std::byte* p) noexcept {
  return reinterpret_cast<unsigned char*>(p);  // NOLINT: OpenSSL takes unsigned char
}

// Takes OpenSSL's oldest queued error for a startup exception and clears the queue.
[[noreturn]] void throw_openssl_error(const char* what) {
  std::array<char, 256> reason{};
  ERR_error_string_n(ERR_get_error(), reason.data(), reason.size());
  ERR_clear_error();
  throw std::runtime_error(std::string("OpenSSL: ") + what + " failed: " + reason.data());
}

struct MacCtxFree {
  void operator()(EVP_MAC_CTX* ctx) const noexcept { EVP_MAC_CTX_free(ctx); }
};

struct MacFree {
  void operator()(EVP_MAC* mac) const noexcept { EVP_MAC_free(mac); }
};

// Wipes a buffer that held key text when it goes out of scope, exceptions included.
class ScopedWipe {
 public:
  explicit ScopedWipe(std::span<char> bytes) noexcept : bytes_(bytes) {}
  ~ScopedWipe() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }
  ScopedWipe(const ScopedWipe&) = delete;
  ScopedWipe& operator=(const ScopedWipe&) = delete;
  ScopedWipe(ScopedWipe&&) = delete;
  ScopedWipe& operator=(ScopedWipe&&) = delete;

 private:
  std::span<char> bytes_;
};

class FdCloser {
 public:
  explicit FdCloser(int fd) noexcept : fd_(fd) {}
  ~FdCloser() { ::close(fd_); }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  FdCloser(FdCloser&&) = delete;
  FdCloser& operator=(FdCloser&&) = delete;

 private:
  int fd_;
};

bool is_ascii_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view trim_ascii_space(std::string_view s) noexcept {
  while (!s.empty() && is_ascii_space(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_ascii_space(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

std::string errno_text(int err) { return std::generic_category().message(err); }

std::span<const std::byte> checked_key_bytes(const TokenKey& key) noexcept {
  // A moved-from key is empty; keying a MAC with it would be a bug.
  AS_ASSERT(key.bytes().size() >= TokenKey::kBytesMin);
  AS_ASSERT(key.bytes().size() <= TokenKey::kBytesMax);
  return key.bytes();
}

}  // namespace

std::string_view card_data_errc_name(CardDataErrc e) noexcept {
  switch (e) {
    case CardDataErrc::kOk:
      return "ok";
    case CardDataErrc::kPanTooShort:
      return "pan-too-short";
    case CardDataErrc::kPanTooLong:
      return "pan-too-long";
    case CardDataErrc::kPanNotNumeric:
      return "pan-not-numeric";
    case CardDataErrc::kBufferTooSmall:
      return "buffer-too-small";
    case CardDataErrc::kCryptoFailure:
      return "crypto-failure";
  }
  return "unknown";
}

CardDataResult<void> validate_pan(std::string_view pan) noexcept {
  if (pan.size() < kPanDigitsMin) {
    return base::unexpected(CardDataErrc::kPanTooShort);
  }
  if (pan.size() > kPanDigitsMax) {
    return base::unexpected(CardDataErrc::kPanTooLong);
  }
  for (const char c : pan) {
    if (c < '0' || c > '9') {
      return base::unexpected(CardDataErrc::kPanNotNumeric);
    }
  }
  return {};
}

CardDataResult<std::string_view> mask_pan(std::string_view pan, std::span<char> out) noexcept {
  if (auto valid = validate_pan(pan); !valid) {
    return base::unexpected(valid.error());
  }
  if (out.size() < pan.size()) {
    return base::unexpected(CardDataErrc::kBufferTooSmall);
  }
  const std::size_t last_start = pan.size() - kMaskShownLast;
  for (std::size_t i = 0; i < pan.size(); ++i) {
    out[i] = (i < kMaskShownFirst || i >= last_start) ? pan[i] : '*';
  }
  return std::string_view(out.data(), pan.size());
}

PanToken PanToken::from_mac(std::span<const std::byte, kMacBytes> mac) noexcept {
  static constexpr std::string_view kDigits = "0123456789abcdef";
  PanToken token;
  for (std::size_t i = 0; i < kTokenBytes; ++i) {
    const auto b = static_cast<unsigned>(mac[i]);
    token.chars_[2 * i] = kDigits[b >> 4U];
    token.chars_[2 * i + 1] = kDigits[b & 0x0FU];
  }
  return token;
}

std::optional<PanToken> PanToken::parse(std::string_view text) noexcept {
  if (text.size() != kChars) {
    return std::nullopt;
  }
  PanToken token;
  for (std::size_t i = 0; i < kChars; ++i) {
    const char c = text[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return std::nullopt;
    }
    token.chars_[i] = c;
  }
  return token;
}

// --- TokenKey ---------------------------------------------------------------------------------

TokenKey::TokenKey(std::span<const std::byte> bytes) {
  if (bytes.size() < kBytesMin || bytes.size() > kBytesMax) {
    throw std::runtime_error("PAN token key has " + std::to_string(bytes.size()) +
                             " bytes; a key has " + std::to_string(kBytesMin) + " to " +
                             std::to_string(kBytesMax) + " bytes");
  }
  std::copy(bytes.begin(), bytes.end(), bytes_.begin());
  size_ = bytes.size();
}

TokenKey TokenKey::from_hex(std::string_view hex, std::string_view source) {
  const std::string where(source);
  hex = trim_ascii_space(hex);
  if (hex.empty()) {
    throw std::runtime_error(where + ": no PAN token key (empty)");
  }
  const std::size_t digits = hex.size();
  if (digits % 2 != 0 || digits < 2 * kBytesMin || digits > 2 * kBytesMax) {
    throw std::runtime_error(
        where + ": " + std::to_string(digits) +
        " characters; a PAN token key is an even number of " + std::to_string(2 * kBytesMin) +
        " to " + std::to_string(2 * kBytesMax) + " hex digits (" + std::to_string(kBytesMin) +
        " to " + std::to_string(kBytesMax) + " bytes)");
  }
  TokenKey key;  // wiped by its destructor if a bad digit throws below
  for (std::size_t i = 0; i < digits; i += 2) {
    const int high = internal::hex_value(hex[i]);
    const int low = internal::hex_value(hex[i + 1]);
    if (high < 0 || low < 0) {
      // Names the position only: the character itself could be part of the key.
      const std::size_t bad = high < 0 ? i : i + 1;
      throw std::runtime_error(where + ": character " + std::to_string(bad + 1) + " of " +
                               std::to_string(digits) + " is not a hex digit");
    }
    key.bytes_[i / 2] = static_cast<std::byte>(high * 16 + low);
  }
  key.size_ = digits / 2;
  return key;
}

TokenKey::TokenKey(TokenKey&& other) noexcept : bytes_(other.bytes_), size_(other.size_) {
  other.wipe();
}

TokenKey& TokenKey::operator=(TokenKey&& other) noexcept {
  if (this != &other) {
    bytes_ = other.bytes_;
    size_ = other.size_;
    other.wipe();
  }
  return *this;
}

TokenKey::~TokenKey() { wipe(); }

void TokenKey::wipe() noexcept {
  OPENSSL_cleanse(bytes_.data(), bytes_.size());
  size_ = 0;
}

TokenKey load_token_key(const std::string& path) {
  const std::string where = "PAN token key file '" + path + "'";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);  // NOLINT: POSIX varargs
  if (fd < 0) {
    const int err = errno;
    throw std::runtime_error(where + ": cannot open: " + errno_text(err));
  }
  const FdCloser closer(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    throw std::runtime_error(where + ": cannot stat: " + errno_text(err));
  }
  if (!S_ISREG(st.st_mode)) {
    throw std::runtime_error(where + ": not a regular file");
  }
  // One byte more than allowed, to notice a file that grew after fstat.
  std::array<char, kKeyFileBytesMax + 1> text{};
  const ScopedWipe wipe_text(text);
  std::size_t size = 0;
  while (size < text.size()) {
    const ssize_t n = ::read(fd, text.data() + size, text.size() - size);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const int err = errno;
      throw std::runtime_error(where + ": cannot read: " + errno_text(err));
    }
    if (n == 0) {
      break;
    }
    size += static_cast<std::size_t>(n);
  }
  if (size > kKeyFileBytesMax) {
    throw std::runtime_error(where + ": larger than " + std::to_string(kKeyFileBytesMax) +
                             " bytes; a key file holds " + std::to_string(2 * TokenKey::kBytesMin) +
                             " to " + std::to_string(2 * TokenKey::kBytesMax) + " hex digits");
  }
  return TokenKey::from_hex(std::string_view(text.data(), size), where);
}

TokenKey load_token_key_from_env(const char* variable) {
  AS_ASSERT(variable != nullptr);
  const std::string where = std::string("environment variable ") + variable;
  // Startup only, before any thread could call setenv.
  const char* value = std::getenv(variable);  // NOLINT(concurrency-mt-unsafe)
  if (value == nullptr) {
    throw std::runtime_error(where + " is not set (it should hold the PAN token key as hex)");
  }
  return TokenKey::from_hex(value, where);
}

// --- HmacSha256 -------------------------------------------------------------------------------

namespace internal {

HmacSha256::HmacSha256(std::span<const std::byte> key) {
  AS_ASSERT(!key.empty());
  const std::unique_ptr<EVP_MAC, MacFree> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  if (!mac) {
    throw_openssl_error("EVP_MAC_fetch(HMAC)");
  }
  // The context holds its own reference to the algorithm, so `mac` can go.
  std::unique_ptr<EVP_MAC_CTX, MacCtxFree> ctx(EVP_MAC_CTX_new(mac.get()));
  if (!ctx) {
    throw_openssl_error("EVP_MAC_CTX_new");
  }
  std::array<char, 7> digest = {'S', 'H', 'A', '2', '5', '6', '\0'};  // OSSL_PARAM wants char*
  const std::array<OSSL_PARAM, 2> params = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest.data(), 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(ctx.get(), as_uchars(key.data()), key.size(), params.data()) != 1) {
    throw_openssl_error("EVP_MAC_init(HMAC-SHA256)");
  }
  if (EVP_MAC_CTX_get_mac_size(ctx.get()) != kMacBytes) {
    throw std::runtime_error("OpenSSL: HMAC-SHA256 does not produce 32 bytes");
  }
  ctx_ = ctx.release();
}

HmacSha256::~HmacSha256() { EVP_MAC_CTX_free(ctx_); }

bool HmacSha256::compute(std::span<const std::byte> data,
                         std::span<std::byte, kMacBytes> mac) noexcept {
  AS_DASSERT(ctx_ != nullptr);
  // A null key re-initialises the MAC with the key given at construction.
  if (EVP_MAC_init(ctx_, nullptr, 0, nullptr) != 1) {
    ERR_clear_error();
    return false;
  }
  if (EVP_MAC_update(ctx_, as_uchars(data.data()), data.size()) != 1) {
    ERR_clear_error();
    return false;
  }
  std::size_t written = 0;
  if (EVP_MAC_final(ctx_, as_uchars(mac.data()), &written, mac.size()) != 1) {
    ERR_clear_error();
    return false;
  }
  return written == kMacBytes;
}

}  // namespace internal

// --- SoftwareCardCrypto -----------------------------------------------------------------------

SoftwareCardCrypto::SoftwareCardCrypto(const TokenKey& key)
    : mac_(std::make_unique<internal::HmacSha256>(checked_key_bytes(key))) {}

SoftwareCardCrypto::~SoftwareCardCrypto() = default;

CardDataResult<PanToken> SoftwareCardCrypto::tokenize(std::string_view pan) noexcept {
  if (auto valid = validate_pan(pan); !valid) {
    return base::unexpected(valid.error());
  }
  std::array<std::byte, PanToken::kMacBytes> mac{};
  if (!mac_->compute(std::as_bytes(std::span<const char>(pan.data(), pan.size())), mac)) {
    return base::unexpected(CardDataErrc::kCryptoFailure);
  }
  return PanToken::from_mac(mac);
}

}  // namespace authswitch::limits
