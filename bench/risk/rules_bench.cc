// Stateless rule evaluation (risk/rules.h) per authorization.
//
//   BM_DefaultSet       config/rules.toml (16 rules) over a rotating mix of 64 authorizations
//                       (chip, card-not-present, ATM at night, abroad, listed merchants)
//   BM_Generated/<n>    a generated set of n rules of the shapes real sets have (amount
//                       thresholds in a currency, MCC ranges, country lists, channel and entry
//                       mode tests, local hour windows, merchant deny lists of 1,000 ids), one
//                       in ten in shadow mode; n = 200 is the target size
// Counters: allocs_per_op (operator new calls per evaluation; tests/support/alloc_counter.h),
// jemalloc_bytes_per_op when jemalloc is linked, fired_per_op.
#include <array>
#include <string>

#include <benchmark/benchmark.h>

#include "risk/rules.h"
#include "tests/support/alloc_counter.h"

namespace authswitch::risk {
namespace {

constexpr std::int64_t kNow = 1'795'534'200'000;  // 2026-11-24T15:30:00Z

std::array<Authorization, 64> mix() {
  std::array<Authorization, 64> out{};
  const std::array<const char*, 6> countries{"US", "US", "US", "FR", "GB", "IR"};
  for (std::size_t i = 0; i < out.size(); ++i) {
    Authorization& a = out[i];
    a.mti = 100;
    a.amount_minor = static_cast<std::int64_t>((i * 7'919) % 250'000);
    a.currency = i % 9 == 0 ? 978 : 840;
    a.mcc = static_cast<std::uint16_t>(
        std::array<int, 8>{5411, 5812, 4829, 6011, 5999, 7995, 6051, 5541}[i % 8]);
    a.acquirer_country = 840;
    a.merchant_country.assign(countries[i % countries.size()]);
    a.entry_mode = std::array<EntryMode, 4>{EntryMode::kChip, EntryMode::kEcommerce,
                                            EntryMode::kContactless, EntryMode::kFallback}[i % 4];
    a.transaction_type = a.mcc == 6011 ? 1 : 0;
    a.channel = channel_of(a);
    a.card_present = a.channel != Channel::kCnp;
    a.terminal_id.assign("TERM0001");
    a.merchant_id.assign(i % 16 == 0 ? "FRAUDMERCH0001" : "MERCHANT000001");
    a.card_status = i % 32 == 5 ? CardStatus::kLost : CardStatus::kActive;
    a.card_expiry_yymm = 2812;
    a.now_ms = kNow + static_cast<std::int64_t>(i) * 1'800'000;
  }
  return out;
}

void run(benchmark::State& state, const RuleSet& set) {
  const auto auths = mix();
  RiskDecision d;
  std::size_t i = 0;
  std::uint64_t fired = 0;
  set.evaluate(auths[0], {}, 0, d);
  const support::AllocSnapshot before = support::alloc_snapshot();
  for (auto _ : state) {
    set.evaluate(auths[i++ & 63U], {}, 0, d);
    fired += d.fired_count;
    benchmark::DoNotOptimize(d);
  }
  const support::AllocSnapshot after = support::alloc_snapshot();
  const auto n = static_cast<double>(state.iterations());
  state.counters["allocs_per_op"] = static_cast<double>(after.allocations - before.allocations) / n;
  if (support::jemalloc_counter_available()) {
    state.counters["jemalloc_bytes_per_op"] =
        static_cast<double>(after.jemalloc_bytes - before.jemalloc_bytes) / n;
  }
  state.counters["fired_per_op"] = static_cast<double>(fired) / n;
}

void BM_DefaultSet(benchmark::State& state) {
  const auto set = load_rules(std::string(AS_SOURCE_DIR) + "/config/rules.toml");
  run(state, *set);
}

std::string generated(int n) {
  std::string s = "version = \"generated\"\n[scoring]\ndecline_score = 500\n[lists]\ndeny = [";
  for (int i = 0; i < 1'000; ++i) {
    s += (i == 0 ? "\"" : ", \"") + std::string("DENY") + std::to_string(100'000 + i) + "\"";
  }
  s += "]\ncountries = [\"CU\", \"IR\", \"KP\", \"SY\", \"RU\", \"BY\"]\n";
  const std::array<std::string, 8> shapes{
      "channel == cnp and amount > {A}.00 USD",
      "mcc in [{M}..{M2}, 7995] and amount > {A}",
      "merchant_country in @countries or acquirer_country == {C}",
      "entry_mode == fallback and amount > {A}.00 USD",
      "channel == atm and local_hour in [1..4] and amount > {A}",
      "merchant_id in @deny",
      "not merchant_country in ['US', 'CA'] and amount >= {A}.00 EUR",
      "(channel == pos and entry_mode == manual) or (channel == cnp and mcc == {M})",
  };
  for (int i = 0; i < n; ++i) {
    std::string when = shapes[static_cast<std::size_t>(i) % shapes.size()];
    const auto put = [&](const std::string& key, int v) {
      for (std::size_t p = when.find(key); p != std::string::npos; p = when.find(key)) {
        when.replace(p, key.size(), std::to_string(v));
      }
    };
    put("{M2}", 5000 + (i * 37) % 4000 + 50);
    put("{M}", 5000 + (i * 37) % 4000);
    put("{A}", 100 + (i * 131) % 5000);
    put("{C}", 100 + i % 800);
    s += "[[rule]]\nid = \"g" + std::to_string(i) + "\"\nwhen = \"" + when + "\"\n";
    s += i % 3 == 0 ? "action = \"decline\"\n" : "action = \"score\"\nscore = 10\n";
    if (i % 10 == 9) {
      s += "mode = \"shadow\"\n";
    }
  }
  return s;
}

void BM_Generated(benchmark::State& state) {
  const auto set = compile_rules(generated(static_cast<int>(state.range(0))), "generated.toml");
  run(state, *set);
}

BENCHMARK(BM_DefaultSet);
BENCHMARK(BM_Generated)->Arg(50)->Arg(200);

}  // namespace
}  // namespace authswitch::risk
