#pragma once
// The velocity arguments the switch sends with a typical authorization under the shipped rule
// set (config/rules.toml): a chip purchase of 1.00 USD at a US grocery (MCC 5411). Every call
// then runs the shipped velocity rules and keeps their counters as a switch's would; with these
// amounts no rule declines. For benchmarks: limits_bench (BM_ClientAuthPipelinedVelocity) and
// velocity_args (bench/limits/script_floor's floor with velocity).
// Thread-safety: built once (a function-local static), then read-only.

#include <string>

#include "risk/rules.h"

namespace authswitch::bench {

[[nodiscard]] inline const risk::ScriptArgs& shipped_velocity_args(const std::string& rules_path) {
  static const auto rules = risk::load_rules(rules_path);
  static risk::ScriptArgs args;
  static risk::Authorization a;  // args keep views into it (the merchant country)
  static const bool built = [] {
    a.amount_minor = 100;
    a.currency = 840;
    a.mcc = 5411;
    a.entry_mode = risk::EntryMode::kChip;
    a.merchant_country.assign("US");
    a.card_status = risk::CardStatus::kActive;
    a.card_expiry_yymm = 2812;
    a.now_ms = 1'700'000'000'000;
    risk::RiskDecision d;
    rules->evaluate(a, {}, 0, d);
    rules->script_args(a, d, 0, args);
    return true;
  }();
  (void)built;
  return args;
}

}  // namespace authswitch::bench
