#include "risk/authorization.h"

#include <array>
#include <charconv>
#include <cstdint>

namespace authswitch::risk {
namespace {

// ISO 8583:1993 DE 22 position 7 (card data input mode) as the 1987 PAN entry mode code.
std::uint8_t pan_entry_from_pos_data(char mode) noexcept {
  switch (mode) {
    case '1':
    case '6':
      return 1;  // manual, key entered
    case '2':
      return 2;  // magnetic stripe
    case '5':
      return 5;  // integrated circuit card
    case 'A':
    case 'M':
      return 7;  // contactless chip
    case 'S':
    case 'T':
    case 'U':
    case 'V':
      return 81;  // electronic commerce
    case '7':
      return 80;  // chip fallback to magnetic stripe
    default:
      return 0;
  }
}

std::string_view trim_right(std::string_view s) noexcept {
  while (!s.empty() && s.back() == ' ') {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

EntryMode entry_mode_from_code(std::uint8_t code) noexcept {
  switch (code) {
    case 1:
      return EntryMode::kManual;
    case 2:
    case 90:
      return EntryMode::kMagstripe;
    case 5:
      return EntryMode::kChip;
    case 7:
      return EntryMode::kContactless;
    case 10:
      return EntryMode::kCredentialOnFile;
    case 80:
      return EntryMode::kFallback;
    case 81:
      return EntryMode::kEcommerce;
    case 91:
      return EntryMode::kContactlessMagstripe;
    default:
      return EntryMode::kUnknown;
  }
}

Channel channel_of(const Authorization& a) noexcept {
  if (a.transaction_type == 1 || a.mcc == 6011) {
    return Channel::kAtm;
  }
  const bool not_present_condition =
      a.condition_code == 1 || a.condition_code == 8 || a.condition_code == 59;
  if (a.entry_mode == EntryMode::kEcommerce || a.entry_mode == EntryMode::kCredentialOnFile ||
      not_present_condition) {
    return Channel::kCnp;
  }
  return Channel::kPos;
}

bool from_texts(const FieldTexts& f, Authorization& out) noexcept {
  // A decimal field's value; absent is 0. False on a non-digit or a value above `max`.
  const auto number = [](std::string_view s, std::uint64_t max, std::uint64_t& v) {
    v = 0;
    if (s.empty()) {
      return true;
    }
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    return r.ec == std::errc() && r.ptr == s.data() + s.size() && v <= max;
  };
  std::uint64_t mti = 0;
  std::uint64_t proc = 0;
  std::uint64_t amount = 0;
  std::uint64_t expiry = 0;
  std::uint64_t mcc = 0;
  std::uint64_t country = 0;
  std::uint64_t entry = 0;
  std::uint64_t condition = 0;
  std::uint64_t currency = 0;
  // ISO 8583:1993 and later (MTI 1xxx): DE 22 is the 12-character point-of-service data code
  // (position 7: card data input mode) and DE 25 a message reason code, not a condition code.
  const bool iso93 = !f.mti.empty() && f.mti[0] != '0';
  if (f.mti.size() != 4 || !number(f.mti, 9999, mti) || !number(f.de3, 999'999, proc) ||
      !number(f.de4, static_cast<std::uint64_t>(INT64_MAX), amount) ||
      !number(f.de14, 9999, expiry) || !number(f.de18, 9999, mcc) ||
      !number(f.de19, 999, country) || !number(f.de49, 999, currency)) {
    return false;
  }
  if (iso93) {
    entry = f.de22.size() == 12 ? 10 * pan_entry_from_pos_data(f.de22[6]) : 0;
  } else if (!number(f.de22, 999, entry) || !number(f.de25, 99, condition)) {
    return false;
  }
  out.mti = static_cast<std::uint16_t>(mti);
  out.transaction_type = static_cast<std::uint8_t>(proc / 10'000);
  out.amount_minor = static_cast<std::int64_t>(amount);
  out.currency = static_cast<std::uint16_t>(currency);
  out.mcc = static_cast<std::uint16_t>(mcc);
  out.acquirer_country = static_cast<std::uint16_t>(country);
  out.presented_expiry_yymm = static_cast<std::uint16_t>(expiry);
  // DE 22 is n3: positions 1-2 the PAN entry mode, position 3 the PIN capability.
  out.pan_entry_code = static_cast<std::uint8_t>(entry / 10);
  out.entry_mode = entry_mode_from_code(out.pan_entry_code);
  out.condition_code = static_cast<std::uint8_t>(condition);
  out.terminal_id.assign(trim_right(f.de41));
  out.merchant_id.assign(trim_right(f.de42));
  // ISO 8583:1987 DE 43 (40 characters): name 1-23, city 24-36, state 37-38, country 39-40.
  out.merchant_country.assign(f.de43.size() == 40 ? trim_right(f.de43.substr(38, 2)) : "");
  out.channel = channel_of(out);
  out.card_present = out.channel != Channel::kCnp;
  return true;
}

bool from_message(const iso8583::MessageView& m, Authorization& out) noexcept {
  // Each text field gets its own scratch (EBCDIC and BCD values are translated into it); the
  // longest read here is DE 43, 40 characters.
  std::array<std::array<char, 48>, 12> scratch{};
  std::size_t next = 0;
  const auto text = [&](int de) -> std::string_view {
    return m.has(de) ? iso8583::text_value(m.field(de), scratch[next++]) : std::string_view();
  };
  const std::array<char, 4> mti = m.mti_text();
  FieldTexts f;
  f.mti = std::string_view(mti.data(), mti.size());
  f.de3 = text(3);
  f.de4 = text(4);
  f.de14 = text(14);
  f.de18 = text(18);
  f.de19 = text(19);
  f.de22 = text(22);
  f.de25 = text(25);
  f.de41 = text(41);
  f.de42 = text(42);
  f.de43 = text(43);
  f.de49 = text(49);
  return from_texts(f, out);
}

}  // namespace authswitch::risk
