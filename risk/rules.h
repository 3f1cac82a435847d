#pragma once
// Fraud rules (issue 4): a rule set written as data (TOML, see config/rules.toml and the README
// section "Fraud rules"), validated and compiled once into an immutable RuleSet whose evaluate()
// decides one authorization in nanoseconds: no allocation, no lock, no exception, no syscall.
//
// A rule: id, description, a condition over the authorization (`when`, a small expression
// language: comparisons, lists and ranges, named lists, and/or/not), an action (decline with a
// response code or a symbolic reason, add a score, flag for review) and a mode (enforce,
// shadow: evaluated and reported but never changing the outcome, off). Rules run in file order;
// every rule that fires is reported, in order, with the value and threshold that made it fire.
// Scores of enforced rules add up against the set's decline threshold. Symbolic reasons map to
// response codes per network (a response-code policy), so one rule set serves networks that
// want 05 where others want 59.
//
// Ownership and thread-safety: a RuleSet is immutable after compile_rules and may be read by
// any number of threads at once; RuleStore (risk/rule_store.h) publishes new ones. A RiskDecision
// is a value of the evaluating thread.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "risk/authorization.h"

namespace authswitch::risk {

enum class Outcome : std::uint8_t { kApprove = 0, kReview = 1, kDecline = 2 };
enum class Action : std::uint8_t { kDecline, kScore, kReview };
enum class Mode : std::uint8_t { kEnforce, kShadow, kOff };

[[nodiscard]] std::string_view outcome_name(Outcome o) noexcept;

// One rule as written, for reports and the rule tester.
struct RuleInfo {
  std::string id;
  std::string description;
  std::string when;  // the condition's source text
  Action action = Action::kDecline;
  Mode mode = Mode::kEnforce;
  std::int32_t score = 0;  // kScore
  std::string reason;      // kDecline: symbolic reason ("suspected_fraud") or empty
  std::string code;        // kDecline: a fixed response code ("62") or empty
  int line = 0;            // of the rule's table in the source
  bool velocity = false;   // a [[velocity]] rule: evaluated by the holds script (see ScriptArgs)
};

// A rule that fired: the rule, whether it was a shadow rule, and the value and threshold of the
// first ordered comparison (<, <=, >, >=, amounts) that held in it (0 and 0 when none did, e.g.
// a list membership).
struct FiredRule {
  std::uint16_t rule = 0;
  bool shadow = false;
  std::int64_t value = 0;
  std::int64_t threshold = 0;
};

// "Do not apply this rule to this card until `expires_ms`", for one merchant country only when
// `country` is not empty (e.g. travel: allow FR for 7 days). Set with authswitch-admin and kept
// with the card (limits/layout.h); the rule is named by base::fnv1a32 of its id, so the record
// needs no rule set to be stored and survives reloads.
struct CardOverride {
  std::uint32_t rule_hash = 0;
  ShortText<3> country;
  std::int64_t expires_ms = 0;
};

inline constexpr std::size_t kFiredMax = 16;
inline constexpr std::uint16_t kNoRule = 0xFFFF;

struct RiskDecision {
  Outcome outcome = Outcome::kApprove;
  std::array<char, 2> response_code{'0', '0'};
  std::uint16_t deciding_rule = kNoRule;  // the enforced rule that declined, if one did
  std::int32_t score = 0;                 // enforced score rules that fired
  std::int32_t shadow_score = 0;          // shadow score rules that fired
  std::uint64_t generation = 0;           // RuleSet::generation() that decided
  std::array<FiredRule, kFiredMax> fired{};
  std::uint8_t fired_count = 0;
  std::uint16_t fired_dropped = 0;  // fired beyond kFiredMax (counted, not listed)

  [[nodiscard]] std::span<const FiredRule> fired_rules() const noexcept {
    return {fired.data(), fired_count};
  }
  [[nodiscard]] std::string_view code() const noexcept {
    return {response_code.data(), response_code.size()};
  }
};

// A rule file that cannot be used: `what()` is one line per problem, each naming the source,
// the line, and the rule id when there is one ("rules.toml:42: rule 'cnp-big': when: unknown
// field 'amout' at column 1").
class RuleSetError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr std::size_t kVelocityCountersMax = 16;
inline constexpr std::size_t kVelocityRulesMax = 32;

// The fraud arguments of one authorization for the holds script (limits/scripts/holds.lua,
// "Fraud rules in the same call"): the stateless verdict and score, the merchant country, the
// number of the network's policy, and whether this authorization passes each velocity counter's
// filter ("1"/"0" per counter). The definitions of the counters and velocity rules are not sent
// with each call: they are built into the holds library the switch loads for the rule set
// (RuleSet::velocity_definitions, limits::make_holds_library). Built by RuleSet::script_args
// into fixed storage; the views point into the RuleSet and into this object, so both must live
// until the command has been submitted (RedisPipeline::submit copies it). One per thread,
// reused per message.
class ScriptArgs {
 public:
  static constexpr std::size_t kArgs = 5;

  ScriptArgs() = default;
  ScriptArgs(const ScriptArgs&) = delete;
  ScriptArgs& operator=(const ScriptArgs&) = delete;

  [[nodiscard]] std::span<const std::string_view> args() const noexcept {
    return {args_.data(), count_};
  }

 private:
  friend class RuleSet;
  std::array<std::string_view, kArgs> args_{};
  std::size_t count_ = 0;
  std::array<char, 24> pre_score_{};
  std::array<char, kVelocityCountersMax> match_{};
};

namespace internal {
struct Plan;
}  // namespace internal

class RuleSet {
 public:
  ~RuleSet();
  RuleSet(const RuleSet&) = delete;
  RuleSet& operator=(const RuleSet&) = delete;
  RuleSet(RuleSet&&) = delete;
  RuleSet& operator=(RuleSet&&) = delete;

  // The file's `version` text, recorded with every decision (via generation()).
  [[nodiscard]] std::string_view version() const noexcept;
  // A number unique per compiled set in this process (increasing), for decisions and metrics.
  [[nodiscard]] std::uint64_t generation() const noexcept;
  [[nodiscard]] std::span<const RuleInfo> rules() const noexcept;
  [[nodiscard]] std::optional<std::uint16_t> rule_index(std::string_view id) const noexcept;
  // base::fnv1a32 of rule `index`'s id (what CardOverride::rule_hash holds).
  [[nodiscard]] std::uint32_t rule_hash(std::uint16_t index) const noexcept;
  [[nodiscard]] std::int32_t decline_score() const noexcept;
  // The response-code policy of a network by name (the default policy when it has none of its
  // own). Resolve once per connection, pass to evaluate.
  [[nodiscard]] std::uint16_t network_policy(std::string_view network) const noexcept;

  // Decides `a`. Per message: noexcept, no allocation. Overrides whose expiry has passed
  // (a.now_ms) are ignored.
  void evaluate(const Authorization& a, std::span<const CardOverride> overrides,
                std::uint16_t network_policy, RiskDecision& out) const noexcept;

  // The holds script's fraud arguments for `a`, after evaluate() gave `stateless` (its decline
  // code, if it declined, and its score travel with them, so the script declines without
  // holding anything and still counts the attempt). No allocation.
  void script_args(const Authorization& a, const RiskDecision& stateless,
                   std::uint16_t network_policy, ScriptArgs& out) const noexcept;

  // The definitions the holds script evaluates velocity with, one list of values per policy
  // (the policy number script_args sends is 1-based into it): the decline score, the policy's
  // code for a score decline, the counter count, each counter (id, scope, counts, window in ms),
  // the velocity rule count, and each rule (kind, counter, measure, threshold, action, code,
  // score, shadow). Embedded in the holds library (limits::make_holds_library).
  [[nodiscard]] std::span<const std::vector<std::string>> velocity_definitions() const noexcept;

  // Adds the velocity rules the script reported as fired ("rule:value:threshold[:s];...", rule
  // 1-based in script_args order) to `d.fired`. Malformed entries are skipped. No allocation.
  void add_fired_velocity(std::string_view fired, RiskDecision& d) const noexcept;

 private:
  friend std::unique_ptr<const RuleSet> compile_rules(std::string_view, std::string_view,
                                                      std::string_view);
  explicit RuleSet(std::unique_ptr<internal::Plan> plan) noexcept;

  std::unique_ptr<internal::Plan> plan_;
};

// Validates and compiles a rule file's text. `source` names it in errors. `zoneinfo_dir` is where
// time zones named by local_* functions are read (startup only). Throws RuleSetError listing
// every problem found; a set is returned only when there is none.
[[nodiscard]] std::unique_ptr<const RuleSet> compile_rules(
    std::string_view toml_text, std::string_view source,
    std::string_view zoneinfo_dir = "/usr/share/zoneinfo");

// Reads and compiles a rule file. Throws RuleSetError (unreadable file included).
[[nodiscard]] std::unique_ptr<const RuleSet> load_rules(const std::string& path);

}  // namespace authswitch::risk
