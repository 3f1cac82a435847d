#pragma once
// The Redis data model outside one account's keys (issue 3): the card directory, limit
// profiles, the change feed that keeps every switch's read cache current, and the index of
// accounts with pending holds that the expiry sweeper walks. The keys of one account (account,
// card state and usage, holds, expiry, replays) are in limits/holds_script.h.
//
//   as:{c:<token>}        HASH   card directory: acct <account id>, prof <profile name>,
//                                ovr <fraud rule overrides> (optional; see CardOverrideRecord),
//                                st <card status>, exp <YYMM>: copies for the switch's stateless
//                                rules; the card state hash under the account stays the
//                                authority the holds script reads
//                                (the card's own hash tag: looked up before the account is known)
//   as:{a:<acct>}:cards   SET    the tokens of an account's cards (admin: account show)
//   as:p:<name>           HASH   limit profile: "<channel>.<limit>" -> integer, for channel in
//                                pos cnp atm and limit in txn dA dN mA mN (see kLimitFields)
//   as:profiles           SET    every profile name
//   as:changes            STREAM change feed: entries {kind, id}, kind is one of
//                                "card" (id = token: its account or profile changed),
//                                "cards" (id = "*": many cards changed; drop every cached card),
//                                "profile" (id = profile name: created or changed)
//                                Trimmed to about kChangesMaxLen entries.
//   as:due                ZSET   account id scored by the earliest expiry (ms) of its pending
//                                holds, at most that: the sweeper's index (limits/sweeper.h)
//
// <token> is a PAN token (limits/pan_token.h), never a PAN. Account statuses: active, blocked,
// closed. Card statuses: active, blocked, lost, stolen, closed, inactive (not activated).
//
// Thread-safety: constants and pure functions.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "base/result.h"
#include "limits/holds_script.h"

namespace authswitch::limits {

enum class Channel : std::uint8_t { kPos = 0, kCnp = 1, kAtm = 2 };
inline constexpr std::size_t kChannelCount = 3;
// As the holds script and profile fields name them.
inline constexpr std::array<std::string_view, kChannelCount> kChannelNames{"pos", "cnp", "atm"};

[[nodiscard]] constexpr std::string_view channel_name(Channel c) noexcept {
  return kChannelNames[static_cast<std::size_t>(c)];
}
[[nodiscard]] std::optional<Channel> parse_channel(std::string_view name) noexcept;

// A limit profile: one ChannelLimits per channel, in Channel order.
struct LimitProfile {
  std::array<ChannelLimits, kChannelCount> channels{};

  [[nodiscard]] const ChannelLimits& limits(Channel c) const noexcept {
    return channels[static_cast<std::size_t>(c)];
  }
  friend bool operator==(const LimitProfile&, const LimitProfile&) noexcept = default;
};

// The five limits of a channel, as profile hash fields ("pos.txn") and CSV columns name them.
inline constexpr std::size_t kLimitCount = 5;
inline constexpr std::array<std::string_view, kLimitCount> kLimitFields{"txn", "dA", "dN", "mA",
                                                                        "mN"};
inline constexpr std::array<std::string_view, kLimitCount> kLimitColumns{
    "per_transaction_max", "day_amount_max", "day_count_max", "month_amount_max",
    "month_count_max"};
// The i-th limit of `l`, in kLimitFields order.
[[nodiscard]] std::int64_t& limit_at(ChannelLimits& l, std::size_t i) noexcept;
[[nodiscard]] std::int64_t limit_at(const ChannelLimits& l, std::size_t i) noexcept;

// Names of profiles and account ids: 1..32 of [A-Za-z0-9_.-].
inline constexpr std::size_t kProfileNameMax = 32;
[[nodiscard]] bool valid_name(std::string_view s, std::size_t max) noexcept;

inline constexpr std::string_view kProfilesKey = "as:profiles";
inline constexpr std::string_view kChangesKey = "as:changes";
inline constexpr std::string_view kDueKey = "as:due";
inline constexpr std::size_t kChangesMaxLen = 100'000;
inline constexpr std::string_view kChangeCard = "card";
inline constexpr std::string_view kChangeCards = "cards";
inline constexpr std::string_view kChangeProfile = "profile";
// Card directory fields.
inline constexpr std::string_view kCardAccountField = "acct";
inline constexpr std::string_view kCardProfileField = "prof";
inline constexpr std::string_view kCardOverridesField = "ovr";
inline constexpr std::string_view kCardStatusField = "st";
inline constexpr std::string_view kCardExpiryField = "exp";

// Card statuses as the `st` fields hold them, in CardState order after kUnknown.
enum class CardState : std::uint8_t {
  kUnknown,
  kActive,
  kBlocked,
  kLost,
  kStolen,
  kClosed,
  kInactive
};
inline constexpr std::array<std::string_view, 6> kCardStatuses{"active", "blocked", "lost",
                                                               "stolen", "closed",  "inactive"};
// kUnknown for anything else.
[[nodiscard]] CardState parse_card_state(std::string_view s) noexcept;

// A fraud-rule override kept with a card: "do not apply rule <id> to this card until <expiry>,
// in <country> only when one is given". Stored in the card directory's `ovr` field as entries
// "<rule id>,<country or empty>,<expires ms>" joined by ';' (authswitch-admin card override), at
// most kCardOverridesMax of them. The rule is carried as base::fnv1a32 of its id, which is how
// risk::CardOverride names it.
inline constexpr std::size_t kCardOverridesMax = 2;
inline constexpr std::size_t kRuleIdMax = 64;
struct CardOverrideRecord {
  std::uint32_t rule_hash = 0;
  std::array<char, 3> country{};
  std::uint8_t country_len = 0;
  std::int64_t expires_ms = 0;

  [[nodiscard]] std::string_view country_view() const noexcept {
    return {country.data(), country_len};
  }
};

// Parses an `ovr` field into `out`; returns how many entries it holds, or nullopt when it is
// malformed or holds more than kCardOverridesMax (nothing of it is then used).
[[nodiscard]] std::optional<std::size_t> parse_card_overrides(
    std::string_view text, std::span<CardOverrideRecord, kCardOverridesMax> out) noexcept;

// The profile every card gets when the portfolio names none, shipped in config/profiles.csv.
inline constexpr std::string_view kDefaultProfile = "default";

// Fixed buffer for one key of this file; format_* return views into it.
using KeyBuffer = std::array<char, 16 + kAccountIdMax + kCardTokenMax>;
// "as:{c:<token>}". Views into `buf`; empty when `token` is empty or too long.
[[nodiscard]] std::string_view card_directory_key(std::string_view token, KeyBuffer& buf) noexcept;
// "as:{a:<acct>}:cards".
[[nodiscard]] std::string_view account_cards_key(std::string_view account, KeyBuffer& buf) noexcept;
// "as:p:<name>".
[[nodiscard]] std::string_view profile_key(std::string_view name, KeyBuffer& buf) noexcept;

// Error of parse_profile_fields: which field, and why.
struct ProfileFieldError {
  enum class Kind : std::uint8_t { kMissing, kNotInteger, kNegative, kUnknownField };
  Kind kind = Kind::kMissing;
  std::size_t channel = 0;  // for kMissing, kNotInteger, kNegative
  std::size_t limit = 0;
};

// Parses a profile hash as HGETALL returns it (field, value, field, value, ...). Every one of
// the 15 fields must be present, a decimal integer >= 0; unknown fields are errors.
[[nodiscard]] base::Result<LimitProfile, ProfileFieldError> parse_profile_fields(
    std::span<const std::string_view> fields_and_values) noexcept;

}  // namespace authswitch::limits
