// TrafficConfig::load: the traffic mix file (simulators/traffic/mix.toml documents each key).
#include <cmath>
#include <stdexcept>
#include <string>

#include <toml++/toml.h>

#include "simulators/traffic/traffic.h"

namespace authswitch::netsim {

namespace {

class MixReader {
 public:
  MixReader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const toml::node* node, std::string_view key,
                         const std::string& reason) const {
    const auto line = node != nullptr ? node->source().begin.line : 0U;
    throw std::runtime_error(source_ + ":" + std::to_string(line) + ": " + std::string(key) + ": " +
                             reason);
  }

  const toml::table* section(const toml::table& root, std::string_view name) const {
    const toml::node* n = root.get(name);
    if (n == nullptr) {
      return nullptr;
    }
    if (!n->is_table()) {
      fail(n, name, "must be a table");
    }
    return n->as_table();
  }

  // Every key of `t` must be one of `known`.
  void only(const toml::table& t, std::string_view section,
            std::initializer_list<std::string_view> known) const {
    for (const auto& [k, v] : t) {
      bool ok = false;
      for (const std::string_view n : known) {
        ok = ok || k.str() == n;
      }
      if (!ok) {
        fail(&v, std::string(section) + "." + std::string(k.str()), "unknown key");
      }
    }
  }

  void integer(const toml::table* t, std::string_view section, std::string_view key,
               std::int64_t lo, std::int64_t hi, std::int64_t& out) const {
    if (t == nullptr) {
      return;
    }
    const toml::node* n = t->get(key);
    if (n == nullptr) {
      return;
    }
    const std::string name = std::string(section) + "." + std::string(key);
    if (!n->is_integer()) {
      fail(n, name, "must be an integer");
    }
    const std::int64_t v = n->as_integer()->get();
    if (v < lo || v > hi) {
      fail(n, name, "must be " + std::to_string(lo) + " .. " + std::to_string(hi));
    }
    out = v;
  }

  template <typename T>
  void small(const toml::table* t, std::string_view section, std::string_view key, std::int64_t lo,
             std::int64_t hi, T& out) const {
    std::int64_t v = static_cast<std::int64_t>(out);
    integer(t, section, key, lo, hi, v);
    out = static_cast<T>(v);
  }

  void share(const toml::table* t, std::string_view section, std::string_view key,
             double& out) const {
    real(t, section, key, 0.0, 1.0, out);
  }

  void real(const toml::table* t, std::string_view section, std::string_view key, double lo,
            double hi, double& out) const {
    if (t == nullptr) {
      return;
    }
    const toml::node* n = t->get(key);
    if (n == nullptr) {
      return;
    }
    const std::string name = std::string(section) + "." + std::string(key);
    double v = 0;
    if (n->is_floating_point()) {
      v = n->as_floating_point()->get();
    } else if (n->is_integer()) {
      v = static_cast<double>(n->as_integer()->get());
    } else {
      fail(n, name, "must be a number");
    }
    if (!(v >= lo && v <= hi)) {
      fail(n, name, "must be " + std::to_string(lo) + " .. " + std::to_string(hi));
    }
    out = v;
  }

  void text(const toml::table* t, std::string_view section, std::string_view key,
            std::string& out) const {
    if (t == nullptr) {
      return;
    }
    const toml::node* n = t->get(key);
    if (n == nullptr) {
      return;
    }
    if (!n->is_string()) {
      fail(n, std::string(section) + "." + std::string(key), "must be a string");
    }
    out = n->as_string()->get();
  }

 private:
  std::string source_;
};

constexpr std::int64_t kMoneyMax = std::int64_t{1} << 53;

}  // namespace

TrafficConfig TrafficConfig::defaults() { return {}; }

TrafficConfig TrafficConfig::load(const std::string& toml_path) {
  toml::table root;
  try {
    root = toml::parse_file(toml_path);
  } catch (const toml::parse_error& e) {
    throw std::runtime_error(toml_path + ":" + std::to_string(e.source().begin.line) + ": " +
                             std::string(e.description()));
  }
  const MixReader r(toml_path);
  r.only(root, "",
         {"weights", "amounts", "mcc", "patterns", "follow_ups", "acquirer", "partition",
          "switch_rules"});
  TrafficConfig c;
  if (const toml::table* t = r.section(root, "weights")) {
    for (const auto& [k, v] : *t) {
      std::size_t kind = kKindCount;
      for (std::size_t i = 0; i < kKindCount; ++i) {
        if (k.str() == kind_name(static_cast<Kind>(i))) {
          kind = i;
        }
      }
      if (kind == kKindCount) {
        r.fail(&v, "weights." + std::string(k.str()), "not a kind of request");
      }
      r.small(t, "weights", k.str(), 0, 1'000'000, c.weights[kind]);
    }
    std::uint64_t total = 0;
    for (const std::uint32_t w : c.weights) {
      total += w;
    }
    if (total == 0) {
      r.fail(t, "weights", "at least one weight must be above 0");
    }
  }
  if (const toml::table* t = r.section(root, "amounts")) {
    r.only(*t, "amounts",
           {"median_minor", "sigma", "min_minor", "max_minor", "cash_min_minor", "cash_max_minor",
            "cash_step_minor", "cashback_max_minor"});
    r.integer(t, "amounts", "median_minor", 1, kMoneyMax, c.amount_median_minor);
    r.real(t, "amounts", "sigma", 0.0, 5.0, c.amount_sigma);
    r.integer(t, "amounts", "min_minor", 1, kMoneyMax, c.amount_min_minor);
    r.integer(t, "amounts", "max_minor", 1, kMoneyMax, c.amount_max_minor);
    r.integer(t, "amounts", "cash_min_minor", 1, kMoneyMax, c.cash_min_minor);
    r.integer(t, "amounts", "cash_max_minor", 1, kMoneyMax, c.cash_max_minor);
    r.integer(t, "amounts", "cash_step_minor", 1, kMoneyMax, c.cash_step_minor);
    r.integer(t, "amounts", "cashback_max_minor", 1'000, kMoneyMax, c.cashback_max_minor);
    if (c.amount_min_minor > c.amount_max_minor) {
      r.fail(t->get("min_minor"), "amounts.min_minor", "must not exceed max_minor");
    }
    if (c.cash_min_minor > c.cash_max_minor) {
      r.fail(t->get("cash_min_minor"), "amounts.cash_min_minor", "must not exceed cash_max_minor");
    }
  }
  if (const toml::table* t = r.section(root, "mcc")) {
    c.mcc.clear();
    for (const auto& [k, v] : *t) {
      const std::string key = "mcc." + std::string(k.str());
      const std::string_view code = k.str();
      if (code.size() != 4 || code.find_first_not_of("0123456789") != std::string_view::npos) {
        r.fail(&v, key, "a merchant category code is 4 digits");
      }
      const int mcc = std::stoi(std::string(code));
      if (mcc == 6011 || mcc == 7995 || mcc == 9406 || (mcc >= 7800 && mcc <= 7802) ||
          mcc == 4829 || mcc == 6051 || mcc == 6540 || mcc == 5967) {
        r.fail(&v, key, "ATM, gambling and high-risk codes change the switch's answer");
      }
      MccWeight w;
      w.mcc = static_cast<std::uint16_t>(mcc);
      r.small(t, "mcc", code, 0, 1'000'000, w.weight);
      c.mcc.push_back(w);
    }
  }
  if (const toml::table* t = r.section(root, "patterns")) {
    r.only(*t, "patterns",
           {"insufficient_funds_share", "over_limit_share", "card_testing_declines",
            "fraud_account_share", "single_message_share", "contactless_share"});
    r.share(t, "patterns", "insufficient_funds_share", c.insufficient_funds_share);
    r.share(t, "patterns", "over_limit_share", c.over_limit_share);
    r.small(t, "patterns", "card_testing_declines", 0, 7, c.card_testing_declines);
    r.share(t, "patterns", "fraud_account_share", c.fraud_account_share);
    r.share(t, "patterns", "single_message_share", c.single_message_share);
    r.share(t, "patterns", "contactless_share", c.contactless_share);
    if (c.insufficient_funds_share + c.over_limit_share > 1.0) {
      r.fail(t, "patterns", "insufficient_funds_share + over_limit_share must not exceed 1");
    }
  }
  if (const toml::table* t = r.section(root, "follow_ups")) {
    r.only(*t, "follow_ups",
           {"completion_share", "reversal_share", "partial_reversal_share", "follow_ups_max",
            "retransmissions_max"});
    r.share(t, "follow_ups", "completion_share", c.completion_share);
    r.share(t, "follow_ups", "reversal_share", c.reversal_share);
    r.share(t, "follow_ups", "partial_reversal_share", c.partial_reversal_share);
    r.small(t, "follow_ups", "follow_ups_max", 2, 1 << 24, c.follow_ups_max);
    r.small(t, "follow_ups", "retransmissions_max", 1, 1 << 16, c.retransmissions_max);
    if (c.completion_share + c.reversal_share > 1.0) {
      r.fail(t, "follow_ups", "completion_share + reversal_share must not exceed 1");
    }
  }
  if (const toml::table* t = r.section(root, "acquirer")) {
    r.only(*t, "acquirer", {"id", "terminals", "country"});
    r.text(t, "acquirer", "id", c.acquirer_id);
    if (!c.acquirer_id.empty() &&
        (c.acquirer_id.size() > 11 ||
         c.acquirer_id.find_first_not_of("0123456789") != std::string::npos)) {
      r.fail(t->get("id"), "acquirer.id", "1 to 11 digits (DE 32), or empty");
    }
    r.small(t, "acquirer", "terminals", 1, 10'000'000, c.terminals);
    r.text(t, "acquirer", "country", c.merchant_country);
    if (c.merchant_country != "840") {
      r.fail(t->get("country"), "acquirer.country",
             "only 840 (the rules score foreign merchants; the model assumes US)");
    }
  }
  if (const toml::table* t = r.section(root, "partition")) {
    r.only(*t, "partition", {"index", "count"});
    r.small(t, "partition", "count", 1, 65'536, c.partition_count);
    r.small(t, "partition", "index", 0, 65'535, c.partition_index);
    if (c.partition_index >= c.partition_count) {
      r.fail(t->get("index"), "partition.index", "must be below partition.count");
    }
  }
  if (const toml::table* t = r.section(root, "switch_rules")) {
    SwitchRules& s = c.rules;
    r.only(
        *t, "switch_rules",
        {"decline_score", "card_testing_threshold", "card_testing_window_ms", "cnp_burst_threshold",
         "cnp_burst_window_ms", "cnp_burst_score", "account_spend_threshold_minor",
         "account_spend_window_ms", "account_spend_score", "declines_in_a_row",
         "declines_in_a_row_score", "night_cash_score", "night_cash_first_hour",
         "night_cash_last_hour", "clock_margin_ms", "replay_window_ms", "suspected_fraud_code"});
    constexpr std::string_view kS = "switch_rules";
    r.integer(t, kS, "decline_score", 0, 1'000'000, s.decline_score);
    r.small(t, kS, "card_testing_threshold", 1, 7, s.card_testing_threshold);
    r.integer(t, kS, "card_testing_window_ms", 12, 30LL * 86'400'000, s.card_testing_window_ms);
    r.small(t, kS, "cnp_burst_threshold", 1, 11, s.cnp_burst_threshold);
    r.integer(t, kS, "cnp_burst_window_ms", 12, 30LL * 86'400'000, s.cnp_burst_window_ms);
    r.integer(t, kS, "cnp_burst_score", 0, 1'000'000, s.cnp_burst_score);
    r.integer(t, kS, "account_spend_threshold_minor", 0, kMoneyMax,
              s.account_spend_threshold_minor);
    r.integer(t, kS, "account_spend_window_ms", 12, 86'400'000, s.account_spend_window_ms);
    r.integer(t, kS, "account_spend_score", 0, 1'000'000, s.account_spend_score);
    r.small(t, kS, "declines_in_a_row", 1, 1'000'000, s.declines_in_a_row);
    r.integer(t, kS, "declines_in_a_row_score", 0, 1'000'000, s.declines_in_a_row_score);
    r.integer(t, kS, "night_cash_score", 0, 1'000'000, s.night_cash_score);
    r.small(t, kS, "night_cash_first_hour", 0, 23, s.night_cash_first_hour);
    r.small(t, kS, "night_cash_last_hour", 0, 23, s.night_cash_last_hour);
    r.integer(t, kS, "clock_margin_ms", 0, 600'000, s.clock_margin_ms);
    r.integer(t, kS, "replay_window_ms", 60'000, 30LL * 86'400'000, s.replay_window_ms);
    r.text(t, kS, "suspected_fraud_code", s.suspected_fraud_code);
    if (s.suspected_fraud_code.size() != 2) {
      r.fail(t->get("suspected_fraud_code"), "switch_rules.suspected_fraud_code",
             "a response code is two characters");
    }
  }
  return c;
}

}  // namespace authswitch::netsim
