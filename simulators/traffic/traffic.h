#pragma once
// The traffic model of netsim (issue 6): a mix of ISO 8583 requests over a test Portfolio,
// each with the answer the switch must give (Expectation), and the per-account model
// (balance, holds, daily and monthly usage, velocity) that makes those answers exact.
//
// The generator never has two requests of one account in flight: next() skips busy
// accounts, and on_response()/on_lost() free them. An account whose request got no answer
// is retired for good (its state in Redis is unknown from then on).
//
// Memory: the generator sizes everything in its constructor; next() and on_response() do not
// allocate once every Request's strings have reached their capacity (the caller reuses
// Request objects). Thread-safety: a TrafficGenerator belongs to one thread; the Portfolio
// and TrafficConfig it reads are not modified.

#include <array>
#include <bitset>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "iso8583/message.h"
#include "iso8583/spec.h"
#include "simulators/traffic/portfolio.h"

namespace authswitch::netsim {

enum class Kind : std::uint8_t {
  kPurchase,
  kCash,
  kCashback,
  kRefund,
  kBalance,
  kCompletion,
  kReversal,
  kRetransmission,
  kCardNotPresent,
  kCardTesting,
  kVelocityAbuse,
  kBlockedCard,
  kExpiredCard,
  kUnknownCard
};
inline constexpr std::size_t kKindCount = 14;
[[nodiscard]] std::string_view kind_name(Kind k) noexcept;  // "purchase", "card_testing", ...

// What the switch should answer: any one of `codes` (DE 39), and, when amount_minor >= 0,
// DE 4 of the response (partial approvals).
struct Expectation {
  std::array<std::array<char, 2>, 4> codes{};
  std::uint8_t count = 0;
  std::int64_t amount_minor = -1;
  [[nodiscard]] bool accepts(std::string_view code) const noexcept;

  // Helpers for building expectations (`code` is two characters).
  void set(std::string_view code, std::int64_t amount = -1) noexcept;
  void add(std::string_view code) noexcept;
};

// One request, as field texts (canonical text as iso8583::MessageBuilder::set_text takes them).
// Reused by the caller: strings keep their capacity, so generating allocates nothing once warm.
struct Request {
  Kind kind = Kind::kPurchase;
  std::uint16_t mti = 100;  // ISO 8583:1987 MTI (0100, 0200, 0400, 0420, 0220, 0101 ...)
  std::bitset<129> present;
  std::array<std::string, 129> text;  // text[de] when present[de]
  Expectation expected;
  std::uint32_t account = 0;   // index of the account it uses (in the generator)
  std::uint64_t sequence = 0;  // generator's running number
};

// One weighted merchant category code (DE 18).
struct MccWeight {
  std::uint16_t mcc = 5411;
  std::uint32_t weight = 1;
};

// The traffic mix. Defaults are the shipped mix (simulators/traffic/mix.toml documents each
// key). Weights are relative integers; shares are fractions 0..1.
struct TrafficConfig {
  // Relative weight of each Kind, indexed by Kind (kind_name() names the TOML keys).
  std::array<std::uint32_t, kKindCount> weights{};
  // Purchase amounts: log-normal in minor units (median, sigma of ln), clamped to [min, max].
  std::int64_t amount_median_minor = 2'500;
  double amount_sigma = 0.8;
  std::int64_t amount_min_minor = 100;
  std::int64_t amount_max_minor = 20'000;
  // Cash (ATM) amounts: multiples of cash_step_minor in [cash_min_minor, cash_max_minor].
  std::int64_t cash_min_minor = 2'000;
  std::int64_t cash_max_minor = 10'000;
  std::int64_t cash_step_minor = 2'000;
  std::int64_t cashback_max_minor = 4'000;
  // Merchant category codes of card-present purchases (ordinary, rule-free codes only).
  std::vector<MccWeight> mcc;
  // Share of purchases sent with an amount above the available balance (partial approval
  // allowed: 10 with DE 4 = available, else 51) and above the per-transaction limit (61).
  double insufficient_funds_share = 0.02;
  double partial_approval_share = 0.5;  // of those, how many allow partial approval
  double over_limit_share = 0.01;
  // Follow-ups: shares of approvals later completed / reversed, and of requests resent as
  // retransmissions (x01 / x21, must get the original answer).
  double completion_share = 0.3;
  double reversal_share = 0.1;
  double partial_reversal_share = 0.3;  // of the reversals, how many are partial (DE 95)
  // Fraud patterns.
  std::uint32_t card_testing_declines = 5;  // declines in a burst before the switch says 59
  std::uint32_t velocity_abuse_count = 0;   // 0: the tight profile's day count limit
  // Identity of the acquirer: DE 32 (empty: derived from the run's start time, so replay keys
  // never collide with earlier runs on the same Redis) and the terminals (DE 41/42).
  std::string acquirer_id;
  std::uint32_t terminals = 1'000;
  std::string merchant_country = "840";  // DE 19
  // Accounts kept for the fraud patterns (never used for ordinary traffic), as a share of the
  // active accounts.
  double fraud_account_share = 0.05;

  static TrafficConfig load(const std::string& toml_path);  // throws with file:line: key: reason
  // The shipped defaults (the same as mix.toml).
  [[nodiscard]] static TrafficConfig defaults();
};

class TrafficGenerator {
 public:
  TrafficGenerator(const Portfolio& p, TrafficConfig c, std::uint64_t seed);
  ~TrafficGenerator();
  TrafficGenerator(const TrafficGenerator&) = delete;
  TrafficGenerator& operator=(const TrafficGenerator&) = delete;
  TrafficGenerator(TrafficGenerator&&) noexcept;
  TrafficGenerator& operator=(TrafficGenerator&&) noexcept;

  // Fills `out` with the next request at wall time now_ms (UTC ms; sets DE 7, 11, 12/13, 32,
  // 37, 41 ...). Returns false when nothing can be sent now (e.g. every account it would use
  // has a request in flight).
  [[nodiscard]] bool next(std::int64_t now_ms, Request& out);
  // The switch's answer to `r` (DE 39 and DE 4 when present, else -1): updates the model
  // (balance, holds, usage, velocity, follow-ups it can send later) and frees the account.
  void on_response(const Request& r, std::string_view code, std::int64_t amount_minor);
  // No answer (timeout, connection lost): the account's state is unknown from now on; never
  // use it again.
  void on_lost(const Request& r);

  // Accounts in the model, and how many have a request in flight / are retired.
  [[nodiscard]] std::size_t accounts() const noexcept;
  [[nodiscard]] std::size_t in_flight() const noexcept;
  [[nodiscard]] std::size_t retired() const noexcept;
  // The acquirer id (DE 32) the generator sends.
  [[nodiscard]] std::string_view acquirer_id() const noexcept;

  struct State;  // defined in traffic.cc

 private:
  std::unique_ptr<State> s_;
};

// Encodes `r` into `out` in `dialect` (iso8583/message.h MessageBuilder; 1993 dialects get
// their MTI (1100 for 0100, ...) and field formats); returns the encoded bytes' length or an
// error.
[[nodiscard]] iso8583::Result<std::size_t> encode_request(const iso8583::Dialect& dialect,
                                                          const Request& r,
                                                          iso8583::MessageBuilder& b,
                                                          std::span<std::byte> out);

}  // namespace authswitch::netsim
