#pragma once
// The Lua script that performs every stateful step of an authorization-side message on one
// account (limits/scripts/holds.lua, embedded at build time), the key layout it works on, and
// the decision it returns.
//
// Key layout: every key of an account carries the account's hash tag, so one script call
// touches one Redis Cluster slot:
//   as:{a:<account>}             account   HASH cur bal held st od
//   as:{a:<account>}:c:<token>   card      HASH st exp + usage counters per day/month/channel
//   as:{a:<account>}:h           holds     HASH <hold id> -> packed hold record
//   as:{a:<account>}:hx          expiry    ZSET <hold id> by expiry time (pending holds only)
//   as:{a:<account>}:i:<txn>     replay    STRING fingerprint + reply, expires after a window
// <token> is the PAN token (limits/pan_token.h), never the PAN.
//
// Thread-safety: AccountKeys and Decision are values, one thread each.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "limits/redis_pipeline.h"

namespace authswitch::limits {

struct EmbeddedScript {
  std::string_view name;
  std::string_view text;
};

// Every Lua script of the module, by file stem (generated from limits/scripts/*.lua).
std::span<const EmbeddedScript> embedded_scripts() noexcept;

// The source text of the embedded script `name` (file stem), or empty.
[[nodiscard]] std::string_view embedded_script(std::string_view name) noexcept;

// limits/scripts/holds.lua's text: the body of the holds library below.
[[nodiscard]] inline std::string_view holds_script() noexcept { return embedded_script("holds"); }

// The holds script as a Redis function library (Redis 7 functions): `text` is what FUNCTION LOAD
// takes ("#!lua name=<library>", holds.lua, the velocity definitions, the registration of
// <function>), and a call is FCALL <function> 5 <keys> <args>. Its functions are defined once
// per load, not on every call as an EVAL script's are. Library and function names end in the
// first 16 hex digits of the SHA-1 of holds.lua and the definitions, so switches of different
// versions or rule sets sharing one Redis (a rolling upgrade, a rule reload) each call their
// own; FUNCTION DELETE removes a version nothing runs any more (RedisPipeline::release_library).
struct FunctionLibrary {
  std::string text;
  std::string library;   // "authswitch_holds_<hash>"
  std::string function;  // "holds_<hash>"
};

// The library without velocity definitions: every operation, and auth/debit without velocity
// arguments. Built on first use (startup), then immutable.
[[nodiscard]] const FunctionLibrary& holds_library();

// The library with velocity definitions built in (risk::RuleSet::velocity_definitions: one list
// of values per response-code policy, in holds.lua's define_velocity layout); auth/debit calls
// name one by number (risk::ScriptArgs). Values are embedded as escaped Lua strings, so no value
// can change the code. Allocates: call when a rule set is adopted, not per message.
[[nodiscard]] FunctionLibrary make_holds_library(
    std::span<const std::vector<std::string>> definitions);

// Registers holds_library() on `pipeline` (RedisPipeline::load_library; startup only, may
// throw) and returns the function to name in CallContext::function.
std::string_view register_holds(RedisPipeline& pipeline);

inline constexpr std::size_t kAccountIdMax = 32;
inline constexpr std::size_t kTxnKeyMax = 64;
inline constexpr std::size_t kCardTokenMax = 64;
inline constexpr std::size_t kKeyMax = 16 + kAccountIdMax + kTxnKeyMax;

// The five keys of one script call, formatted into fixed buffers (no allocation).
class AccountKeys {
 public:
  enum Index : std::size_t { kAccount, kCard, kHolds, kExpiry, kReplay, kCount };

  // Fails (returns false) when a part is empty, too long, or holds a character that would
  // break the layout ('{', '}', ':' or a space).
  [[nodiscard]] bool set(std::string_view account_id, std::string_view card_token,
                         std::string_view txn_key) noexcept;
  [[nodiscard]] std::string_view key(Index i) const noexcept {
    return {keys_[i].data(), lengths_[i]};
  }

 private:
  std::array<std::array<char, kKeyMax>, kCount> keys_{};
  std::array<std::size_t, kCount> lengths_{};
};

// A card's limits for one channel (a limit profile's row), minor units and counts.
struct ChannelLimits {
  std::int64_t per_transaction_max_minor = 0;
  std::int64_t day_amount_max_minor = 0;
  std::int64_t day_count_max = 0;
  std::int64_t month_amount_max_minor = 0;
  std::int64_t month_count_max = 0;

  friend bool operator==(const ChannelLimits&, const ChannelLimits&) noexcept = default;
};

// One authorization (op `auth`, or `debit` for a single-message transaction) as the script
// takes it. Views are referenced, not copied: they must outlive the HoldsCall built from it.
struct AuthRequest {
  std::string_view txn_key;  // the hold id and the replay key
  std::int64_t amount_minor = 0;
  std::string_view currency;          // ISO 4217 numeric, e.g. "840"
  std::string_view channel;           // "pos", "cnp" or "atm"
  std::string_view mcc;               // DE 18
  std::string_view presented_expiry;  // DE 14 (YYMM) or empty
  std::string_view day;               // YYYYMMDD of the issuer's clock
  std::string_view month;             // YYYYMM
  std::string_view current_yymm;      // for the card expiry check
  bool partial_ok = false;
  std::int64_t hold_ttl_ms = 0;
  ChannelLimits limits;
};

// The identity and clock of one script call: which account and card, the transaction key (hold
// id of auth/debit/refund/adjust, and the replay key of every op), the issuer's clock, how long
// a replay is remembered, and the request fingerprint (a replay with another fingerprint is
// answered 94). Views: they must outlive the HoldsCall built from them.
struct CallContext {
  std::string_view function;  // holds_library().function, as register_holds returned it
  std::string_view account_id;
  std::string_view card_token;  // PanToken; any valid placeholder for ops that read no card
  std::string_view txn_key;
  std::int64_t now_ms = 0;
  std::int64_t replay_window_ms = 0;
  std::string_view fingerprint;
};

// The whole FCALL command of one script call, laid out in fixed storage (no allocation), ready
// for RedisPipeline::submit. Views into the request and context are kept, not copied.
// Its views point into itself: it is neither copied nor moved. Each set_* fails (returns false,
// args() empty) when a key part is invalid (see AccountKeys::set).
class HoldsCall {
 public:
  static constexpr std::size_t kArgsMax = 3 + AccountKeys::kCount + 4 + 16;

  HoldsCall() = default;
  HoldsCall(const HoldsCall&) = delete;
  HoldsCall& operator=(const HoldsCall&) = delete;

  // `op` is "auth" or "debit". The hold id is r.txn_key.
  [[nodiscard]] bool set_auth(std::string_view function, std::string_view op,
                              std::string_view account_id, std::string_view card_token,
                              const AuthRequest& r, std::int64_t now_ms,
                              std::int64_t replay_window_ms, std::string_view fingerprint) noexcept;
  // The same call as op "force_auth" / "force_debit" (for `op` "auth" / "debit"): a transaction
  // the switch already approved by stand-in, replayed with its original key and fingerprint by
  // the reconciler. Placed whatever the balance, limits and card state say (available may go
  // below zero) and answered 00 with reason "stand_in"; a replay whose original approved returns
  // that original and changes nothing (holds.lua, forced_transaction). r's limits are unused.
  [[nodiscard]] bool set_forced_auth(std::string_view function, std::string_view op,
                                     std::string_view account_id, std::string_view card_token,
                                     const AuthRequest& r, std::int64_t now_ms,
                                     std::int64_t replay_window_ms,
                                     std::string_view fingerprint) noexcept;
  // Incremental authorization of hold `hold_id` by r.amount_minor (r's limits, day, month,
  // current_yymm, partial_ok and hold_ttl_ms apply; its txn_key is unused: ctx's is the key).
  [[nodiscard]] bool set_incr(const CallContext& ctx, std::string_view hold_id,
                              const AuthRequest& r) noexcept;
  // Completion of hold `hold_id` for `final_minor` (never declined).
  [[nodiscard]] bool set_capture(const CallContext& ctx, std::string_view hold_id,
                                 std::int64_t final_minor) noexcept;
  // Reversal of `hold_id` leaving `remaining_minor` standing (0: full reversal).
  [[nodiscard]] bool set_reverse(const CallContext& ctx, std::string_view hold_id,
                                 std::int64_t remaining_minor) noexcept;
  // Refund (credit) of `amount_minor` in `currency`; the record's id is ctx.txn_key.
  [[nodiscard]] bool set_refund(const CallContext& ctx, std::int64_t amount_minor,
                                std::string_view currency) noexcept;
  // Staff credit (> 0) or debit (< 0); the record's id is ctx.txn_key.
  [[nodiscard]] bool set_adjust(const CallContext& ctx, std::int64_t amount_minor,
                                std::string_view currency) noexcept;
  [[nodiscard]] bool set_balance(const CallContext& ctx) noexcept;
  // Expires up to `limit` due holds of the account (no replay record; txn_key unused).
  [[nodiscard]] bool set_sweep(const CallContext& ctx, std::int64_t limit) noexcept;

  [[nodiscard]] std::span<const std::string_view> args() const noexcept {
    return {args_.data(), count_};
  }

 private:
  [[nodiscard]] std::string_view number(std::size_t slot, std::int64_t v) noexcept;
  // FCALL function 5 <keys> op now window fingerprint; false when the keys are invalid.
  [[nodiscard]] bool begin(const CallContext& ctx, std::string_view op) noexcept;
  void push(std::string_view a) noexcept;
  // The ten limit arguments auth, incr and debit end with (number slots 3..8).
  void push_limit_tail(const AuthRequest& r) noexcept;

  AccountKeys keys_;
  std::array<std::array<char, 24>, 9> numbers_{};
  std::array<std::string_view, kArgsMax> args_{};
  std::size_t count_ = 0;
};

// What the script decided, from its reply { rc, approved, balance, available, reason, value,
// threshold, fired }. Amounts are minor units of the account's currency.
struct Decision {
  std::array<char, 2> response_code{};  // ISO 8583 DE 39, e.g. "00", "51"
  std::int64_t approved_minor = 0;
  std::int64_t balance_minor = 0;
  std::int64_t available_minor = 0;
  std::array<char, 24> reason{};  // NUL-padded: "" or the rule that decided
  std::int64_t value = 0;         // the value the rule saw (e.g. the day's amount with this one)
  std::int64_t threshold = 0;     // the rule's limit
  // Velocity rules that fired, "rule:value:threshold[:s];..." (holds.lua), NUL-padded; cut at
  // the array's size (the full list is in the reply and the replay record).
  std::array<char, 96> fired{};

  [[nodiscard]] std::string_view code() const noexcept {
    return {response_code.data(), response_code.size()};
  }
  [[nodiscard]] std::string_view reason_text() const noexcept;
  [[nodiscard]] std::string_view fired_text() const noexcept;
  [[nodiscard]] bool approved() const noexcept { return code() == "00" || code() == "10"; }
};

// Reads the script's reply (an array of 8: rc, approved, balance, available, reason, value,
// threshold, fired) into `out`. False when the reply has another shape (a server error reply, a
// script from another version): the caller treats it as a system error (96).
[[nodiscard]] bool parse_decision(const Reply& reply, Decision& out) noexcept;

}  // namespace authswitch::limits
