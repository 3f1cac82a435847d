#pragma once
// The compiled form of a rule set (internal to risk/): every condition is a tree of Nodes in one
// flat array, with lists as sorted vectors searched by bisection, so evaluate() walks arrays
// and allocates nothing. Built by rule_compiler.cc and expression.cc, read by rules.cc.
// Thread-safety: immutable once built.

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "risk/rules.h"
#include "risk/time_zone.h"

namespace authswitch::risk::internal {

// What a condition can read of an authorization.
enum class Feature : std::uint8_t {
  // integers
  kAmount,  // minor units, any currency (amount > 500.00 USD is a kMoneyCmp instead)
  kCurrency,
  kMti,
  kTransactionType,
  kMcc,
  kAcquirerCountry,
  kPanEntryCode,
  kConditionCode,
  kCardExpiry,
  kPresentedExpiry,
  // enumerations (compared as integers; names resolved at compile time)
  kChannel,
  kEntryMode,
  kCardStatus,
  // booleans
  kCardPresent,
  kCardExpired,
  kExpiryMismatch,
  // integers of the local time in a zone (Node::zone)
  kLocalHour,
  kLocalMinute,   // minute of the day, 0..1439
  kLocalWeekday,  // 1 Monday .. 7 Sunday
  // texts
  kMerchantCountry,
  kTerminalId,
  kMerchantId,
};
inline constexpr std::size_t kPlainIntFeatures = static_cast<std::size_t>(Feature::kLocalHour);

enum class NodeKind : std::uint8_t {
  kAnd,
  kOr,
  kNot,
  kIntCmp,
  kIntIn,
  kMoneyCmp,
  kTextCmp,
  kTextIn
};
enum class Cmp : std::uint8_t { kEq, kNe, kLt, kLe, kGt, kGe };

struct Node {
  NodeKind kind = NodeKind::kAnd;
  Cmp cmp = Cmp::kEq;
  Feature feature = Feature::kAmount;
  bool negate = false;         // kIntIn, kTextIn: "not in"
  std::uint8_t zone = 0;       // local-time features: index into Plan::zones
  std::uint16_t currency = 0;  // kMoneyCmp
  std::uint32_t left = 0;      // kAnd, kOr, kNot
  std::uint32_t right = 0;
  std::uint32_t set = 0;  // kIntIn: Plan::int_sets; kTextIn: Plan::text_sets; kTextCmp: Plan::texts
  std::int64_t value = 0;  // kIntCmp, kMoneyCmp
};

// Symbolic decline reasons, mapped to codes by a network's response-code policy.
enum class Reason : std::uint8_t {
  kDoNotHonour,        // 05
  kSuspectedFraud,     // 59
  kRestrictedCard,     // 62
  kNotPermitted,       // 57 transaction not permitted to cardholder
  kExceedsAmount,      // 61
  kExceedsFrequency,   // 65
  kLostCard,           // 41
  kStolenCard,         // 43
  kExpiredCard,        // 54
  kSecurityViolation,  // 63
  kCount,
};
inline constexpr std::array<std::string_view, static_cast<std::size_t>(Reason::kCount)>
    kReasonNames{"do_not_honour",  "suspected_fraud",   "restricted_card", "not_permitted",
                 "exceeds_amount", "exceeds_frequency", "lost_card",       "stolen_card",
                 "expired_card",   "security_violation"};
inline constexpr std::array<std::array<char, 2>, static_cast<std::size_t>(Reason::kCount)>
    kDefaultCodes{{{'0', '5'},
                   {'5', '9'},
                   {'6', '2'},
                   {'5', '7'},
                   {'6', '1'},
                   {'6', '5'},
                   {'4', '1'},
                   {'4', '3'},
                   {'5', '4'},
                   {'6', '3'}}};

// A leaf test of the jump program evaluate() runs: the tree's and/or/not become the targets
// taken when the test holds or not. Targets at or above kAccept are the rule's verdict.
struct Test {
  Node leaf;  // kind is one of the leaf kinds (never kAnd, kOr, kNot)
  std::uint32_t on_true = 0;
  std::uint32_t on_false = 0;
};
inline constexpr std::uint32_t kAccept = 0xFFFF'FFFF;
inline constexpr std::uint32_t kReject = 0xFFFF'FFFE;

struct CompiledRule {
  std::uint32_t root = 0;   // in Plan::nodes
  std::uint32_t entry = 0;  // in Plan::tests (or kAccept / kReject)
  Action action = Action::kDecline;
  Mode mode = Mode::kEnforce;
  std::int32_t score = 0;
  bool fixed_code = false;  // code set directly in the rule
  std::array<char, 2> code{};
  Reason reason = Reason::kDoNotHonour;
};

using Policy = std::array<std::array<char, 2>, static_cast<std::size_t>(Reason::kCount)>;

// A velocity counter as the holds script keeps it (its arguments as text), and the test entry of
// its filter (kAccept when it has none).
struct VelocityCounter {
  std::string cid;     // stable across reloads: a hash of scope, counts, window and filter
  std::string scope;   // "c" card, "a" account
  std::string counts;  // "a" approvals, "d" declines, "*" both
  std::string window_ms;
  std::uint32_t filter_root = 0;
  bool has_filter = false;
  std::uint32_t filter_entry = kAccept;
};

// A velocity rule's script arguments (kind ref measure threshold action - score shadow; the
// code comes from the policy or `code`) and the RuleInfo it reports as.
struct VelocityRule {
  std::uint16_t rule = 0;  // index into Plan::infos
  std::string kind;        // w cd fc fm cc
  std::string ref;         // counter (1-based) for w, "0" otherwise
  std::string measure;     // n count, a amount
  std::string threshold;
  std::string action;  // d s r
  std::string score;
  std::string shadow;  // "1" or "0"
  bool fixed_code = false;
  std::array<char, 2> code{};
  Reason reason = Reason::kDoNotHonour;
};

// A text of at most 16 bytes packed into two integers (zero-padded), so text lists are searched
// with integer compares. Fields read as text are at most 15 characters (DE 42).
struct TextKey {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
  friend constexpr auto operator<=>(const TextKey&, const TextKey&) noexcept = default;
};
inline constexpr std::size_t kTextKeyMax = 16;

// `s` packed; s.size() <= kTextKeyMax.
[[nodiscard]] inline TextKey text_key(std::string_view s) noexcept {
  std::array<unsigned char, kTextKeyMax> b{};
  for (std::size_t i = 0; i < s.size() && i < b.size(); ++i) {
    b[i] = static_cast<unsigned char>(s[i]);
  }
  TextKey k;
  for (std::size_t i = 0; i < 8; ++i) {
    k.hi = (k.hi << 8U) | b[i];
    k.lo = (k.lo << 8U) | b[i + 8];
  }
  return k;
}

struct Plan {
  std::string version;
  std::uint64_t generation = 0;
  std::int32_t decline_score = 0;  // 0: scores never decline
  Reason score_reason = Reason::kSuspectedFraud;
  std::vector<RuleInfo> infos;
  std::vector<std::uint32_t> rule_hashes;  // base::fnv1a32 of each info's id
  std::vector<CompiledRule> rules;
  std::vector<Node> nodes;
  std::vector<Test> tests;  // built from nodes by build_tests()
  std::vector<std::vector<std::pair<std::int64_t, std::int64_t>>> int_sets;  // sorted, merged
  std::vector<std::vector<TextKey>> text_sets;                               // sorted
  std::vector<TextKey> texts;
  std::vector<TimeZone> zones;
  std::vector<std::string> policy_names;  // [0] is "default"
  std::vector<Policy> policies;
  std::vector<VelocityCounter> counters;
  std::vector<VelocityRule> velocity;
  // The velocity definitions of each policy (RuleSet::velocity_definitions) and each policy's
  // 1-based number as text, which the script arguments name (set by compile_rules).
  std::vector<std::vector<std::string>> definitions;
  std::vector<std::string> policy_numbers;
};

// Named lists of a rule file, before their type is known: each entry is a string as written
// (numbers converted to text), with the line of the list for errors.
struct NamedList {
  std::vector<std::string> items;
  int line = 0;
};

// Context of one condition's compilation.
struct ExpressionContext {
  Plan& plan;
  const std::vector<std::pair<std::string, NamedList>>& lists;
  std::string_view default_zone;
  std::string_view zoneinfo_dir;
  // Sets compiled from named lists, by (list, feature, zone): a list used by many rules is one
  // set, so an evaluation tests it once (see kMemoSets).
  struct NamedSet {
    std::string list;
    Feature feature;
    std::uint8_t zone;
    std::uint32_t set;
  };
  std::vector<NamedSet> named_sets{};
};

// Sets below this index have their membership result remembered within one evaluation.
inline constexpr std::size_t kMemoSets = 64;

// Compiles every rule's tree into Plan::tests and sets CompiledRule::entry.
void build_tests(Plan& plan);

// Sets Plan::definitions and Plan::policy_numbers from the counters, velocity rules, decline
// score and policies.
void build_definitions(Plan& plan);

// Parses `text` and appends its nodes to ctx.plan.nodes; returns the root index. Throws
// std::invalid_argument("column N: reason") on a syntax or type error.
[[nodiscard]] std::uint32_t compile_expression(std::string_view text, ExpressionContext& ctx);

// ISO 4217: alpha code or numeric text to numeric code and minor-unit exponent; nullopt when
// unknown.
struct CurrencyInfo {
  std::uint16_t numeric = 0;
  std::uint8_t exponent = 0;
};
[[nodiscard]] std::optional<CurrencyInfo> find_currency(std::string_view code) noexcept;

}  // namespace authswitch::risk::internal
