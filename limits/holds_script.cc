#include "limits/holds_script.h"

#include <algorithm>
#include <cstring>

namespace authswitch::limits {
namespace {

bool valid_part(std::string_view s, std::size_t max) noexcept {
  if (s.empty() || s.size() > max) {
    return false;
  }
  return std::none_of(s.begin(), s.end(), [](char c) {
    return c == '{' || c == '}' || c == ':' || c == ' ' || c < 0x21 || c > 0x7E;
  });
}

// Appends parts into `out`; returns the length.
std::size_t build(std::array<char, kKeyMax>& out,
                  std::initializer_list<std::string_view> parts) noexcept {
  std::size_t n = 0;
  for (const std::string_view p : parts) {
    std::memcpy(out.data() + n, p.data(), p.size());
    n += p.size();
  }
  return n;
}

}  // namespace

std::string_view holds_script() noexcept {
  for (const EmbeddedScript& s : embedded_scripts()) {
    if (s.name == "holds") {
      return s.text;
    }
  }
  return {};
}

bool AccountKeys::set(std::string_view account_id, std::string_view card_token,
                      std::string_view txn_key) noexcept {
  if (!valid_part(account_id, kAccountIdMax) || !valid_part(card_token, kCardTokenMax) ||
      !valid_part(txn_key, kTxnKeyMax)) {
    return false;
  }
  // "as:{a:" + id + "}" is the hash tag every key of the account starts with.
  const std::array<std::string_view, 3> tag{"as:{a:", account_id, "}"};
  lengths_[kAccount] = build(keys_[kAccount], {tag[0], tag[1], tag[2]});
  lengths_[kCard] = build(keys_[kCard], {tag[0], tag[1], tag[2], ":c:", card_token});
  lengths_[kHolds] = build(keys_[kHolds], {tag[0], tag[1], tag[2], ":h"});
  lengths_[kExpiry] = build(keys_[kExpiry], {tag[0], tag[1], tag[2], ":hx"});
  lengths_[kReplay] = build(keys_[kReplay], {tag[0], tag[1], tag[2], ":i:", txn_key});
  return true;
}

std::string_view Decision::reason_text() const noexcept {
  const auto* end = std::find(reason.begin(), reason.end(), '\0');
  return {reason.data(), static_cast<std::size_t>(end - reason.begin())};
}

}  // namespace authswitch::limits
