#include "limits/holds_script.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string>

#include "base/assert.h"
#include "limits/hex_internal.h"

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

FunctionLibrary make_holds_library(std::span<const std::vector<std::string>> definitions) {
  // define_velocity{ {"v", ...}, ... }: every byte but [A-Za-z0-9_.-] as a decimal escape.
  std::string defs;
  if (!definitions.empty()) {
    defs = "define_velocity{";
    for (const std::vector<std::string>& d : definitions) {
      defs += '{';
      for (const std::string& v : d) {
        defs += '"';
        for (const char c : v) {
          if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-') {
            defs += c;
          } else {
            // Always three digits: "\0651" is "A1", not a longer escape.
            const auto u = static_cast<unsigned>(static_cast<unsigned char>(c));
            defs += '\\';
            defs += static_cast<char>('0' + u / 100);
            defs += static_cast<char>('0' + u / 10 % 10);
            defs += static_cast<char>('0' + u % 10);
          }
        }
        defs += "\",";
      }
      defs += "},";
    }
    defs += "}\n";
  }
  const std::string_view body = holds_script();
  std::string hashed(body);
  hashed += '\n';
  hashed += defs;
  const std::string hash(internal::sha1_hex(hashed).data(), 16);
  FunctionLibrary l;
  l.library = "authswitch_holds_" + hash;
  l.function = "holds_" + hash;
  l.text = "#!lua name=" + l.library + "\n" + hashed + "redis.register_function('" + l.function +
           "', holds_call)\n";
  return l;
}

const FunctionLibrary& holds_library() {
  static const FunctionLibrary built = make_holds_library({});
  return built;
}

std::string_view register_holds(RedisPipeline& pipeline) {
  const FunctionLibrary& l = holds_library();
  return pipeline.load_library(l.text, l.library, l.function);
}

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

bool HoldsCall::begin(const CallContext& ctx, std::string_view op) noexcept {
  count_ = 0;
  if (!keys_.set(ctx.account_id, ctx.card_token, ctx.txn_key)) {
    return false;
  }
  push("FCALL");
  push(ctx.function);
  push("5");
  for (std::size_t k = 0; k < AccountKeys::kCount; ++k) {
    push(keys_.key(static_cast<AccountKeys::Index>(k)));
  }
  // The order of holds.lua: op now window fingerprint, then the op's arguments.
  push(op);
  push(number(0, ctx.now_ms));
  push(number(1, ctx.replay_window_ms));
  push(ctx.fingerprint);
  return true;
}

void HoldsCall::push(std::string_view a) noexcept {
  AS_ASSERT(count_ < args_.size());
  args_[count_++] = a;
}

void HoldsCall::push_limit_tail(const AuthRequest& r) noexcept {
  const ChannelLimits& l = r.limits;
  push(r.day);
  push(r.month);
  push(r.current_yymm);
  push(r.partial_ok ? "1" : "0");
  push(number(3, r.hold_ttl_ms));
  push(number(4, l.per_transaction_max_minor));
  push(number(5, l.day_amount_max_minor));
  push(number(6, l.day_count_max));
  push(number(7, l.month_amount_max_minor));
  push(number(8, l.month_count_max));
}

bool HoldsCall::set_auth(std::string_view function, std::string_view op,
                         std::string_view account_id, std::string_view card_token,
                         const AuthRequest& r, std::int64_t now_ms, std::int64_t replay_window_ms,
                         std::string_view fingerprint) noexcept {
  const CallContext ctx{function, account_id,       card_token, r.txn_key,
                        now_ms,   replay_window_ms, fingerprint};
  if (!begin(ctx, op)) {
    return false;
  }
  push(r.txn_key);
  push(number(2, r.amount_minor));
  push(r.currency);
  push(r.channel);
  push(r.mcc);
  push(r.presented_expiry);
  push_limit_tail(r);
  return true;
}

bool HoldsCall::set_forced_auth(std::string_view function, std::string_view op,
                                std::string_view account_id, std::string_view card_token,
                                const AuthRequest& r, std::int64_t now_ms,
                                std::int64_t replay_window_ms,
                                std::string_view fingerprint) noexcept {
  AS_ASSERT(op == "auth" || op == "debit");
  return set_auth(function, op == "auth" ? "force_auth" : "force_debit", account_id, card_token, r,
                  now_ms, replay_window_ms, fingerprint);
}

bool HoldsCall::set_incr(const CallContext& ctx, std::string_view hold_id,
                         const AuthRequest& r) noexcept {
  if (!begin(ctx, "incr")) {
    return false;
  }
  push(hold_id);
  push(number(2, r.amount_minor));
  push_limit_tail(r);
  return true;
}

bool HoldsCall::set_capture(const CallContext& ctx, std::string_view hold_id,
                            std::int64_t final_minor) noexcept {
  if (!begin(ctx, "capture")) {
    return false;
  }
  push(hold_id);
  push(number(2, final_minor));
  return true;
}

bool HoldsCall::set_reverse(const CallContext& ctx, std::string_view hold_id,
                            std::int64_t remaining_minor) noexcept {
  if (!begin(ctx, "reverse")) {
    return false;
  }
  push(hold_id);
  push(number(2, remaining_minor));
  return true;
}

bool HoldsCall::set_refund(const CallContext& ctx, std::int64_t amount_minor,
                           std::string_view currency) noexcept {
  if (!begin(ctx, "refund")) {
    return false;
  }
  push(ctx.txn_key);
  push(number(2, amount_minor));
  push(currency);
  return true;
}

bool HoldsCall::set_adjust(const CallContext& ctx, std::int64_t amount_minor,
                           std::string_view currency) noexcept {
  if (!begin(ctx, "adjust")) {
    return false;
  }
  push(ctx.txn_key);
  push(number(2, amount_minor));
  push(currency);
  return true;
}

bool HoldsCall::set_balance(const CallContext& ctx) noexcept { return begin(ctx, "balance"); }

bool HoldsCall::set_sweep(const CallContext& ctx, std::int64_t limit) noexcept {
  if (!begin(ctx, "sweep")) {
    return false;
  }
  push(number(2, limit));
  return true;
}

bool parse_decision(const Reply& reply, Decision& out) noexcept {
  using T = Reply::Type;
  if (reply.type != T::kArray || reply.elements.size() != 8) {
    return false;
  }
  const auto& e = reply.elements;
  if (e[0].type != T::kString || e[0].str.size() != 2 || e[4].type != T::kString ||
      e[7].type != T::kString) {
    return false;
  }
  for (const std::size_t i : {1U, 2U, 3U, 5U, 6U}) {
    if (e[i].type != T::kInteger) {
      return false;
    }
  }
  out = Decision{};
  std::copy_n(e[0].str.data(), 2, out.response_code.begin());
  out.approved_minor = e[1].integer;
  out.balance_minor = e[2].integer;
  out.available_minor = e[3].integer;
  std::copy_n(e[4].str.data(), std::min(e[4].str.size(), out.reason.size() - 1),
              out.reason.begin());
  out.value = e[5].integer;
  out.threshold = e[6].integer;
  std::copy_n(e[7].str.data(), std::min(e[7].str.size(), out.fired.size() - 1), out.fired.begin());
  return true;
}

std::string_view Decision::fired_text() const noexcept {
  const auto* end = std::find(fired.begin(), fired.end(), '\0');
  return {fired.data(), static_cast<std::size_t>(end - fired.begin())};
}

std::string_view Decision::reason_text() const noexcept {
  const auto* end = std::find(reason.begin(), reason.end(), '\0');
  return {reason.data(), static_cast<std::size_t>(end - reason.begin())};
}

}  // namespace authswitch::limits
