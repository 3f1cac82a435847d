#include "risk/authorization.h"

#include <array>

namespace authswitch::risk {
namespace {

// A numeric field's value, or `fallback` when absent; false when present but unreadable.
bool number(const iso8583::MessageView& m, int de, std::uint64_t& out) noexcept {
  if (!m.has(de)) {
    return true;
  }
  const auto v = iso8583::number_value(m.field(de));
  if (!v) {
    return false;
  }
  out = *v;
  return true;
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

bool from_message(const iso8583::MessageView& m, Authorization& out) noexcept {
  std::uint64_t proc = 0;
  std::uint64_t amount = 0;
  std::uint64_t expiry = 0;
  std::uint64_t mcc = 0;
  std::uint64_t country = 0;
  std::uint64_t entry = 0;
  std::uint64_t condition = 0;
  std::uint64_t currency = 0;
  if (!number(m, 3, proc) || !number(m, 4, amount) || !number(m, 14, expiry) ||
      !number(m, 18, mcc) || !number(m, 19, country) || !number(m, 22, entry) ||
      !number(m, 25, condition) || !number(m, 49, currency)) {
    return false;
  }
  if (amount > static_cast<std::uint64_t>(INT64_MAX) || mcc > 9999 || country > 999 ||
      entry > 999 || condition > 99 || currency > 999 || expiry > 9999) {
    return false;
  }
  out.mti = m.mti();
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
  std::array<char, 64> scratch{};
  if (m.has(41)) {
    out.terminal_id.assign(trim_right(iso8583::text_value(m.field(41), scratch)));
  }
  if (m.has(42)) {
    out.merchant_id.assign(trim_right(iso8583::text_value(m.field(42), scratch)));
  }
  if (m.has(43)) {
    const std::string_view name_location = iso8583::text_value(m.field(43), scratch);
    // ISO 8583:1987 DE 43 (40 characters): name 1-23, city 24-36, state 37-38, country 39-40.
    if (name_location.size() == 40) {
      out.merchant_country.assign(trim_right(name_location.substr(38, 2)));
    }
  }
  out.channel = channel_of(out);
  out.card_present = out.channel != Channel::kCnp;
  return true;
}

}  // namespace authswitch::risk
