#include "limits/holds_script.h"

#include <algorithm>
#include <charconv>
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

std::string_view embedded_script(std::string_view name) noexcept {
  for (const EmbeddedScript& s : embedded_scripts()) {
    if (s.name == name) {
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

std::string_view HoldsCall::number(std::size_t slot, std::int64_t v) noexcept {
  auto& buf = numbers_[slot];
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  return {buf.data(), static_cast<std::size_t>(r.ptr - buf.data())};
}

bool HoldsCall::set_auth(std::string_view sha, std::string_view op, std::string_view account_id,
                         std::string_view card_token, const AuthRequest& r, std::int64_t now_ms,
                         std::int64_t replay_window_ms, std::string_view fingerprint) noexcept {
  count_ = 0;
  if (!keys_.set(account_id, card_token, r.txn_key)) {
    return false;
  }
  std::size_t i = 0;
  args_[i++] = "EVALSHA";
  args_[i++] = sha;
  args_[i++] = "5";
  for (std::size_t k = 0; k < AccountKeys::kCount; ++k) {
    args_[i++] = keys_.key(static_cast<AccountKeys::Index>(k));
  }
  // The order of holds.lua: op now window fingerprint, then auth's arguments.
  const ChannelLimits& l = r.limits;
  for (const std::string_view a : {op,
                                   number(0, now_ms),
                                   number(1, replay_window_ms),
                                   fingerprint,
                                   r.txn_key,
                                   number(2, r.amount_minor),
                                   r.currency,
                                   r.channel,
                                   r.mcc,
                                   r.presented_expiry,
                                   r.day,
                                   r.month,
                                   r.current_yymm,
                                   std::string_view(r.partial_ok ? "1" : "0"),
                                   number(3, r.hold_ttl_ms),
                                   number(4, l.per_transaction_max_minor),
                                   number(5, l.day_amount_max_minor),
                                   number(6, l.day_count_max),
                                   number(7, l.month_amount_max_minor),
                                   number(8, l.month_count_max)}) {
    args_[i++] = a;
  }
  count_ = i;
  return true;
}

std::string_view Decision::reason_text() const noexcept {
  const auto* end = std::find(reason.begin(), reason.end(), '\0');
  return {reason.data(), static_cast<std::size_t>(end - reason.begin())};
}

}  // namespace authswitch::limits
