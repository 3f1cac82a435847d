#include "risk/rules.h"

#include <algorithm>
#include <charconv>

#include "base/assert.h"
#include "risk/rules_internal.h"

namespace authswitch::risk {
namespace {

using internal::Cmp;
using internal::Feature;
using internal::Node;
using internal::NodeKind;
using internal::Plan;

constexpr std::int64_t kUnset = -1;

// One evaluation: the authorization's integer features (computed once), the local time per zone
// (computed on first use), and the witness of the rule being evaluated.
class Evaluation {
 public:
  Evaluation(const Plan& plan, const Authorization& a) noexcept : plan_(plan), a_(a) {
    auto set = [&](Feature f, std::int64_t v) { ints_[static_cast<std::size_t>(f)] = v; };
    set(Feature::kAmount, a.amount_minor);
    set(Feature::kCurrency, a.currency);
    set(Feature::kMti, a.mti);
    set(Feature::kTransactionType, a.transaction_type);
    set(Feature::kMcc, a.mcc);
    set(Feature::kAcquirerCountry, a.acquirer_country);
    set(Feature::kPanEntryCode, a.pan_entry_code);
    set(Feature::kConditionCode, a.condition_code);
    set(Feature::kCardExpiry, a.card_expiry_yymm);
    set(Feature::kPresentedExpiry, a.presented_expiry_yymm);
    set(Feature::kChannel, static_cast<std::int64_t>(a.channel));
    set(Feature::kEntryMode, static_cast<std::int64_t>(a.entry_mode));
    set(Feature::kCardStatus, static_cast<std::int64_t>(a.card_status));
    set(Feature::kCardPresent, a.card_present ? 1 : 0);
    set(Feature::kCardExpired, card_expired(a) ? 1 : 0);
    set(Feature::kExpiryMismatch, a.presented_expiry_yymm != 0 && a.card_expiry_yymm != 0 &&
                                          a.presented_expiry_yymm != a.card_expiry_yymm
                                      ? 1
                                      : 0);
    locals_.fill({kUnset, kUnset, kUnset});
    int_memo_.fill(-1);
    text_memo_.fill(-1);
    country_ = internal::text_key(a.merchant_country.view());
    terminal_ = internal::text_key(a.terminal_id.view());
    merchant_ = internal::text_key(a.merchant_id.view());
  }

  // Runs the rule's jump program from `pc`: true when it reaches kAccept.
  bool run(std::uint32_t pc) noexcept {
    while (pc < internal::kReject) {
      const internal::Test& t = plan_.tests[pc];
      pc = test(t.leaf) ? t.on_true : t.on_false;
    }
    return pc == internal::kAccept;
  }

  bool test(const Node& n) noexcept {
    switch (n.kind) {
      case NodeKind::kIntCmp:
        return compare(n, feature(n), n.value);
      case NodeKind::kMoneyCmp:
        return a_.currency == n.currency && compare(n, a_.amount_minor, n.value);
      case NodeKind::kIntIn:
        return member(n, [&] { return contains(plan_.int_sets[n.set], feature(n)); }) != n.negate;
      case NodeKind::kTextCmp:
        return (text(n.feature) == plan_.texts[n.set]) == (n.cmp == Cmp::kEq);
      case NodeKind::kTextIn:
        return member(n, [&] {
                 const auto& set = plan_.text_sets[n.set];
                 return std::binary_search(set.begin(), set.end(), text(n.feature));
               }) != n.negate;
      case NodeKind::kAnd:
      case NodeKind::kOr:
      case NodeKind::kNot:
        break;
    }
    AS_ASSERT(false);
    return false;
  }

  void reset_witness() noexcept { witnessed_ = false; }
  [[nodiscard]] bool witnessed() const noexcept { return witnessed_; }
  [[nodiscard]] std::int64_t value() const noexcept { return witnessed_ ? value_ : 0; }
  [[nodiscard]] std::int64_t threshold() const noexcept { return witnessed_ ? threshold_ : 0; }

 private:
  static bool card_expired(const Authorization& a) noexcept {
    if (a.card_expiry_yymm == 0) {
      return false;
    }
    // The current YYMM in UTC from the issuer's clock.
    const CivilDate today = civil_from_days(a.now_ms / 86'400'000);
    const auto year = today.year;
    const auto month = static_cast<std::int64_t>(today.month);
    return a.card_expiry_yymm < (year % 100) * 100 + month;
  }

  std::int64_t feature(const Node& n) noexcept {
    const auto f = static_cast<std::size_t>(n.feature);
    if (f < ints_.size()) {
      return ints_[f];
    }
    auto& l = locals_[n.zone];
    if (l[0] == kUnset) {
      const LocalTime t = plan_.zones[n.zone].local(a_.now_ms);
      l = {t.hour, t.minute_of_day, t.weekday};
    }
    switch (n.feature) {
      case Feature::kLocalHour:
        return l[0];
      case Feature::kLocalMinute:
        return l[1];
      default:
        return l[2];
    }
  }

  [[nodiscard]] const internal::TextKey& text(Feature f) const noexcept {
    switch (f) {
      case Feature::kMerchantCountry:
        return country_;
      case Feature::kTerminalId:
        return terminal_;
      default:
        return merchant_;
    }
  }

  // Set membership, remembered per set within this evaluation (named lists share sets; int and
  // text sets are numbered apart, so the memo is per kind).
  template <typename Lookup>
  bool member(const Node& n, Lookup lookup) noexcept {
    if (n.set >= internal::kMemoSets) {
      return lookup();
    }
    auto& memo = n.kind == NodeKind::kIntIn ? int_memo_ : text_memo_;
    std::int8_t& m = memo[n.set];
    if (m < 0) {
      m = lookup() ? 1 : 0;
    }
    return m == 1;
  }

  bool compare(const Node& n, std::int64_t v, std::int64_t t) noexcept {
    bool r = false;
    switch (n.cmp) {
      case Cmp::kEq:
        return v == t;
      case Cmp::kNe:
        return v != t;
      case Cmp::kLt:
        r = v < t;
        break;
      case Cmp::kLe:
        r = v <= t;
        break;
      case Cmp::kGt:
        r = v > t;
        break;
      case Cmp::kGe:
        r = v >= t;
        break;
    }
    if (r && !witnessed_) {
      witnessed_ = true;
      value_ = v;
      threshold_ = t;
    }
    return r;
  }

  static bool contains(const std::vector<std::pair<std::int64_t, std::int64_t>>& set,
                       std::int64_t v) noexcept {
    // The first range whose high end is >= v.
    const auto it = std::lower_bound(set.begin(), set.end(), v,
                                     [](const auto& r, std::int64_t x) { return r.second < x; });
    return it != set.end() && it->first <= v;
  }

  const Plan& plan_;
  const Authorization& a_;
  std::array<std::int64_t, internal::kPlainIntFeatures> ints_{};
  std::array<std::array<std::int64_t, 3>, 8> locals_{};
  std::array<std::int8_t, internal::kMemoSets> int_memo_{};
  std::array<std::int8_t, internal::kMemoSets> text_memo_{};
  internal::TextKey country_;
  internal::TextKey terminal_;
  internal::TextKey merchant_;
  bool witnessed_ = false;
  std::int64_t value_ = 0;
  std::int64_t threshold_ = 0;
};

bool overridden(std::uint32_t rule_hash, const Authorization& a,
                std::span<const CardOverride> overrides) noexcept {
  return std::any_of(overrides.begin(), overrides.end(), [&](const CardOverride& o) {
    return o.rule_hash == rule_hash && o.expires_ms > a.now_ms &&
           (o.country.view().empty() || o.country.view() == a.merchant_country.view());
  });
}

// Emits the tests of node `index` so that control goes to `on_true` when it holds and to
// `on_false` otherwise; returns its entry. Children are emitted before their parents' users,
// so every target exists when it is referenced.
std::uint32_t emit(internal::Plan& plan, std::uint32_t index, std::uint32_t on_true,
                   std::uint32_t on_false) {
  const Node n = plan.nodes[index];
  switch (n.kind) {
    case NodeKind::kAnd:
      return emit(plan, n.left, emit(plan, n.right, on_true, on_false), on_false);
    case NodeKind::kOr:
      return emit(plan, n.left, on_true, emit(plan, n.right, on_true, on_false));
    case NodeKind::kNot:
      return emit(plan, n.left, on_false, on_true);
    default:
      plan.tests.push_back(internal::Test{n, on_true, on_false});
      return static_cast<std::uint32_t>(plan.tests.size() - 1);
  }
}

}  // namespace

namespace internal {

void build_definitions(Plan& plan) {
  plan.definitions.clear();
  plan.policy_numbers.clear();
  for (const Policy& policy : plan.policies) {
    const auto code = [](const std::array<char, 2>& c) { return std::string(c.data(), 2); };
    std::vector<std::string> d;
    d.push_back(std::to_string(plan.decline_score));
    d.push_back(code(policy[static_cast<std::size_t>(plan.score_reason)]));
    d.push_back(std::to_string(plan.counters.size()));
    for (const VelocityCounter& c : plan.counters) {
      d.insert(d.end(), {c.cid, c.scope, c.counts, c.window_ms});
    }
    d.push_back(std::to_string(plan.velocity.size()));
    for (const VelocityRule& v : plan.velocity) {
      d.insert(d.end(),
               {v.kind, v.ref, v.measure, v.threshold, v.action,
                v.fixed_code ? code(v.code) : code(policy[static_cast<std::size_t>(v.reason)]),
                v.score, v.shadow});
    }
    plan.definitions.push_back(std::move(d));
    plan.policy_numbers.push_back(std::to_string(plan.policy_numbers.size() + 1));
  }
}

void build_tests(Plan& plan) {
  plan.tests.clear();
  for (CompiledRule& rule : plan.rules) {
    rule.entry = emit(plan, rule.root, kAccept, kReject);
  }
  for (VelocityCounter& c : plan.counters) {
    c.filter_entry = c.has_filter ? emit(plan, c.filter_root, kAccept, kReject) : kAccept;
  }
}

}  // namespace internal

std::string_view outcome_name(Outcome o) noexcept {
  switch (o) {
    case Outcome::kApprove:
      return "approve";
    case Outcome::kReview:
      return "review";
    case Outcome::kDecline:
      return "decline";
  }
  return "?";
}

RuleSet::RuleSet(std::unique_ptr<internal::Plan> plan) noexcept : plan_(std::move(plan)) {}
RuleSet::~RuleSet() = default;

std::string_view RuleSet::version() const noexcept { return plan_->version; }
std::uint64_t RuleSet::generation() const noexcept { return plan_->generation; }
std::span<const RuleInfo> RuleSet::rules() const noexcept { return plan_->infos; }
std::int32_t RuleSet::decline_score() const noexcept { return plan_->decline_score; }

std::optional<std::uint16_t> RuleSet::rule_index(std::string_view id) const noexcept {
  for (std::size_t i = 0; i < plan_->infos.size(); ++i) {
    if (plan_->infos[i].id == id) {
      return static_cast<std::uint16_t>(i);
    }
  }
  return std::nullopt;
}

std::uint32_t RuleSet::rule_hash(std::uint16_t index) const noexcept {
  AS_ASSERT(index < plan_->rule_hashes.size());
  return plan_->rule_hashes[index];
}

std::uint16_t RuleSet::network_policy(std::string_view network) const noexcept {
  for (std::size_t i = 1; i < plan_->policy_names.size(); ++i) {
    if (plan_->policy_names[i] == network) {
      return static_cast<std::uint16_t>(i);
    }
  }
  return 0;
}

void RuleSet::evaluate(const Authorization& a, std::span<const CardOverride> overrides,
                       std::uint16_t network_policy, RiskDecision& out) const noexcept {
  const Plan& plan = *plan_;
  AS_ASSERT(network_policy < plan.policies.size());
  const internal::Policy& policy = plan.policies[network_policy];
  out.outcome = Outcome::kApprove;
  out.response_code = {'0', '0'};
  out.deciding_rule = kNoRule;
  out.score = 0;
  out.shadow_score = 0;
  out.generation = plan.generation;
  out.fired_count = 0;
  out.fired_dropped = 0;
  Evaluation e(plan, a);
  for (std::size_t i = 0; i < plan.rules.size(); ++i) {
    const internal::CompiledRule& rule = plan.rules[i];
    const auto index = static_cast<std::uint16_t>(i);
    if (rule.mode == Mode::kOff ||
        (!overrides.empty() && overridden(plan.rule_hashes[i], a, overrides))) {
      continue;
    }
    e.reset_witness();
    if (!e.run(rule.entry)) {
      continue;
    }
    const bool shadow = rule.mode == Mode::kShadow;
    if (out.fired_count < kFiredMax) {
      out.fired[out.fired_count++] = FiredRule{index, shadow, e.value(), e.threshold()};
    } else {
      ++out.fired_dropped;
    }
    if (shadow) {
      out.shadow_score += rule.action == Action::kScore ? rule.score : 0;
      continue;
    }
    switch (rule.action) {
      case Action::kDecline:
        if (out.outcome != Outcome::kDecline) {
          out.outcome = Outcome::kDecline;
          out.deciding_rule = index;
          out.response_code =
              rule.fixed_code ? rule.code : policy[static_cast<std::size_t>(rule.reason)];
        }
        break;
      case Action::kScore:
        out.score += rule.score;
        break;
      case Action::kReview:
        if (out.outcome == Outcome::kApprove) {
          out.outcome = Outcome::kReview;
        }
        break;
    }
  }
  if (out.outcome != Outcome::kDecline && plan.decline_score > 0 &&
      out.score >= plan.decline_score) {
    out.outcome = Outcome::kDecline;
    out.response_code = policy[static_cast<std::size_t>(plan.score_reason)];
  }
}

void RuleSet::script_args(const Authorization& a, const RiskDecision& stateless,
                          std::uint16_t network_policy, ScriptArgs& out) const noexcept {
  const Plan& plan = *plan_;
  AS_ASSERT(network_policy < plan.policies.size());
  AS_ASSERT(plan.counters.size() <= out.match_.size());
  auto& args = out.args_;
  args[0] = stateless.outcome == Outcome::kDecline
                ? std::string_view(stateless.response_code.data(), 2)
                : std::string_view();
  const auto r = std::to_chars(out.pre_score_.data(), out.pre_score_.data() + out.pre_score_.size(),
                               stateless.score);
  args[1] = std::string_view(out.pre_score_.data(),
                             static_cast<std::size_t>(r.ptr - out.pre_score_.data()));
  args[2] = a.merchant_country.view();
  args[3] = plan.policy_numbers[network_policy];
  Evaluation e(plan, a);
  std::size_t n = 0;
  for (const internal::VelocityCounter& c : plan.counters) {
    out.match_[n++] = e.run(c.filter_entry) ? '1' : '0';
  }
  args[4] = std::string_view(out.match_.data(), n);
  out.count_ = ScriptArgs::kArgs;
}

std::span<const std::vector<std::string>> RuleSet::velocity_definitions() const noexcept {
  return plan_->definitions;
}

void RuleSet::add_fired_velocity(std::string_view fired, RiskDecision& d) const noexcept {
  const Plan& plan = *plan_;
  const auto number = [](std::string_view s, std::int64_t& v) {
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
  };
  while (!fired.empty()) {
    const std::size_t end = std::min(fired.find(';'), fired.size());
    std::string_view entry = fired.substr(0, end);
    fired.remove_prefix(std::min(end + 1, fired.size()));
    std::array<std::string_view, 4> parts{};
    std::size_t count = 0;
    while (count < parts.size()) {
      const std::size_t colon = std::min(entry.find(':'), entry.size());
      parts[count++] = entry.substr(0, colon);
      if (colon == entry.size()) {
        break;
      }
      entry.remove_prefix(colon + 1);
    }
    std::int64_t j = 0;
    FiredRule f;
    if (count < 3 || !number(parts[0], j) || j < 1 ||
        static_cast<std::size_t>(j) > plan.velocity.size() || !number(parts[1], f.value) ||
        !number(parts[2], f.threshold)) {
      continue;
    }
    f.rule = plan.velocity[static_cast<std::size_t>(j - 1)].rule;
    f.shadow = count == 4 && parts[3] == "s";
    if (d.fired_count < kFiredMax) {
      d.fired[d.fired_count++] = f;
    } else {
      ++d.fired_dropped;
    }
  }
}

}  // namespace authswitch::risk
