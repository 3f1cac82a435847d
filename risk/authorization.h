#pragma once
// What the fraud rules see of one authorization (issue 4): the request's fields as values,
// already parsed by the switch from the decoded message (DE 3, 4, 14, 18, 19, 22, 25, 41, 42,
// 43, 49) and the card record, plus the issuer's clock. A value (short strings are copied into
// fixed arrays), used by one thread.
//
// from_message() fills one from a decoded ISO 8583 message of any shipped dialect.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "iso8583/message.h"

namespace authswitch::risk {

// Channel of a transaction, as limit profiles count it.
enum class Channel : std::uint8_t { kPos = 0, kCnp = 1, kAtm = 2 };

// How the card was read (DE 22 positions 1-2, ISO 8583:1987 usage).
enum class EntryMode : std::uint8_t {
  kUnknown = 0,           // 00 or absent
  kManual,                // 01 key entry
  kMagstripe,             // 02, 90 (full track)
  kChip,                  // 05
  kContactless,           // 07 (EMV contactless)
  kContactlessMagstripe,  // 91
  kFallback,              // 80 chip read failed, magstripe used
  kEcommerce,             // 81
  kCredentialOnFile,      // 10
};

enum class CardStatus : std::uint8_t {
  kActive = 0,
  kBlocked,
  kLost,
  kStolen,
  kClosed,
  kInactive,
  kUnknown,
};

// Up to N characters, stored inline.
template <std::size_t N>
class ShortText {
 public:
  // Keeps the first N characters of `s`.
  constexpr void assign(std::string_view s) noexcept {
    size_ = s.size() < N ? s.size() : N;
    for (std::size_t i = 0; i < size_; ++i) {
      chars_[i] = s[i];
    }
  }
  [[nodiscard]] constexpr std::string_view view() const noexcept { return {chars_.data(), size_}; }

 private:
  std::array<char, N> chars_{};
  std::size_t size_ = 0;
};

struct Authorization {
  std::uint16_t mti = 0;  // 100 for 0100, 200 for 0200
  std::uint8_t transaction_type =
      0;  // DE 3 positions 1-2: 0 purchase, 1 cash, 9 cashback, 20 refund, 30/31 inquiry
  std::int64_t amount_minor = 0;       // DE 4
  std::uint16_t currency = 0;          // DE 49, ISO 4217 numeric
  std::uint16_t mcc = 0;               // DE 18
  std::uint16_t acquirer_country = 0;  // DE 19, ISO 3166 numeric (0: absent)
  ShortText<3> merchant_country;       // DE 43 positions 39-40 (alpha-2), or empty
  std::uint8_t pan_entry_code = 0;     // DE 22 positions 1-2 as a number
  EntryMode entry_mode = EntryMode::kUnknown;
  std::uint8_t condition_code = 0;  // DE 25
  Channel channel = Channel::kPos;
  bool card_present = true;
  ShortText<8> terminal_id;   // DE 41, trailing spaces removed
  ShortText<15> merchant_id;  // DE 42, trailing spaces removed
  CardStatus card_status = CardStatus::kUnknown;
  std::uint16_t card_expiry_yymm = 0;       // from the card record (0: unknown)
  std::uint16_t presented_expiry_yymm = 0;  // DE 14 (0: absent)
  std::int64_t now_ms = 0;                  // issuer's clock, ms since the Unix epoch (UTC)
};

// DE 22 positions 1-2 to an entry mode.
[[nodiscard]] EntryMode entry_mode_from_code(std::uint8_t code) noexcept;

// The channel a limit profile counts: ATM for cash (DE 3 "01") or MCC 6011; card-not-present
// for e-commerce, credential on file, manual key entry with DE 25 "01"/"08"/"59", or DE 25
// "59"; else POS.
[[nodiscard]] Channel channel_of(const Authorization& a) noexcept;

// The texts of the fields an Authorization is read from, as the iso8583 CLI prints them
// (empty: absent). Views; they must outlive the call that reads them.
struct FieldTexts {
  std::string_view mti;  // "0100"
  std::string_view de3, de4, de14, de18, de19, de22, de25, de41, de42, de43, de49;
};

// Fills the request fields of `out` from field texts (see from_message). False when a present
// field is not what its definition says (a number field with a non-digit, an MTI that is not
// 4 digits, a value out of range).
[[nodiscard]] bool from_texts(const FieldTexts& f, Authorization& out) noexcept;

// Fills the request fields of `out` from `m` (fields absent from the message stay at their
// defaults; card_status, card_expiry_yymm and now_ms are the caller's). False when a field
// that is present cannot be read as a number (the switch answers 30 before this point, so this
// is a bug guard).
[[nodiscard]] bool from_message(const iso8583::MessageView& m, Authorization& out) noexcept;

}  // namespace authswitch::risk
