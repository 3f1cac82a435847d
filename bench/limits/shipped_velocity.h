#pragma once
// The velocity the switch runs with a typical authorization under the shipped rule set
// (config/rules.toml): the holds library with the set's velocity definitions built in (as the
// switch registers it), and the arguments of a chip purchase of 1.00 USD at a US grocery (MCC
// 5411). Every call then runs the shipped velocity rules and keeps their counters as a switch's
// would; with these amounts no rule declines. For benchmarks: limits_bench
// (BM_ClientAuthPipelinedVelocity) and velocity_args (bench/limits/script_floor's floor with
// velocity).
// Thread-safety: built once (a function-local static), then read-only.

#include <memory>
#include <string>

#include "limits/holds_script.h"
#include "risk/rules.h"

namespace authswitch::bench {

struct ShippedVelocity {
  std::unique_ptr<const risk::RuleSet> rules;
  limits::FunctionLibrary library;
  risk::Authorization auth;  // args keep views into it (the merchant country)
  risk::ScriptArgs args;
};

// Built from `rules_path` on the first call; later calls return the same.
[[nodiscard]] inline const ShippedVelocity& shipped_velocity(const std::string& rules_path) {
  static const ShippedVelocity& v = [&]() -> const ShippedVelocity& {
    static ShippedVelocity s;
    s.rules = risk::load_rules(rules_path);
    s.library = limits::make_holds_library(s.rules->velocity_definitions());
    risk::Authorization& a = s.auth;
    a.amount_minor = 100;
    a.currency = 840;
    a.mcc = 5411;
    a.entry_mode = risk::EntryMode::kChip;
    a.merchant_country.assign("US");
    a.card_status = risk::CardStatus::kActive;
    a.card_expiry_yymm = 2812;
    a.now_ms = 1'700'000'000'000;
    risk::RiskDecision d;
    s.rules->evaluate(a, {}, 0, d);
    s.rules->script_args(a, d, 0, s.args);
    return s;
  }();
  return v;
}

}  // namespace authswitch::bench
