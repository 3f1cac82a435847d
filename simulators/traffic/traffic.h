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

// Request::account of a request that touches no account (an unknown card: answered 14 before
// any Redis state is read).
inline constexpr std::uint32_t kNoAccount = 0xFFFF'FFFF;

// What the switch should answer: any one of `codes` (DE 39), and, when amount_minor >= 0,
// DE 4 of the response (partial approvals).
struct Expectation {
  std::array<std::array<char, 2>, 4> codes{};
  std::uint8_t count = 0;
  std::int64_t amount_minor = -1;
  // Balance inquiries: the available amount DE 54 must report (amount type 02), else -1.
  std::int64_t available_minor = -1;

  // `code`: an ISO 8583:1987 response code (two characters). A 1993 action code is first read
  // as its 1987 code (iso8583/action_codes.h, netsim's response_code_of); three characters are
  // never accepted.
  [[nodiscard]] bool accepts(std::string_view code) const noexcept;
  // The code and, when the code is "10" (partial approval) and amount_minor >= 0, the
  // response's DE 4 (`amount_minor` -1: the response had none).
  [[nodiscard]] bool accepts(std::string_view code, std::int64_t amount_minor) const noexcept;

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
  std::uint32_t account = 0;    // index of the account it uses (in the generator), or kNoAccount
  std::uint64_t sequence = 0;   // generator's running number
  std::int64_t created_ms = 0;  // now_ms of next() (encode_request derives 1993 DE 12 from it)
};

// Gives every field of `r` the capacity the generator's longest values need, so a Request
// allocates nothing from its first use (else it does until each field met its longest value).
void reserve_request(Request& r);

// One weighted merchant category code (DE 18).
struct MccWeight {
  std::uint16_t mcc = 5411;
  std::uint32_t weight = 1;
};

// The traffic mix. Defaults are the shipped mix (simulators/traffic/mix.toml documents each
// key). Weights are relative integers; shares are fractions 0..1.
struct TrafficConfig {
  // Relative weight of each Kind, indexed by Kind (kind_name() names the TOML keys).
  std::array<std::uint32_t, kKindCount> weights{50, 6, 3, 3, 3, 8, 4, 2, 15, 2, 1, 1, 1, 1};
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
  std::vector<MccWeight> mcc{{5411, 30}, {5812, 15}, {5541, 15}, {5311, 10},
                             {5912, 10}, {5999, 10}, {4121, 5},  {5814, 5}};
  // Shares of purchases (and of cash) sent to low-balance accounts for more than is available
  // (purchases: partial approval 10 with DE 4 = available, or 51 when nothing is; cash: 51),
  // and of purchases sent to tight-profile cards above their per-transaction limit (61).
  double insufficient_funds_share = 0.02;
  double over_limit_share = 0.01;
  // Follow-ups: shares of approvals later completed (0100 only) / reversed.
  double completion_share = 0.3;
  double reversal_share = 0.1;
  double partial_reversal_share = 0.3;  // of the reversals, how many are partial (DE 95)
  // Card testing: declined attempts (guessed expiry, 54) before the one the switch answers 59.
  std::uint32_t card_testing_declines = 5;
  // Identity of the acquirer: DE 32 (empty: derived from the run's start time, so replay keys
  // never collide with earlier runs on the same Redis) and the terminals (DE 41/42).
  std::string acquirer_id;
  std::uint32_t terminals = 1'000;
  std::string merchant_country = "840";  // DE 19
  // Accounts kept for the card-testing pattern (never used for ordinary traffic), as a share
  // of the ordinary accounts.
  double fraud_account_share = 0.05;
  // Purchases sent as single-message (0200, PIN debit: posted at once) rather than 0100.
  double single_message_share = 0.3;
  // Purchases read contactless (DE 22 07x) rather than by chip (05x).
  double contactless_share = 0.4;
  // Several generators over one portfolio (one per netsim connection or thread) must not share
  // accounts: generator i of n uses the accounts whose index % n == i.
  std::uint32_t partition_index = 0;
  std::uint32_t partition_count = 1;
  // Capacity of the table of approvals that may get a completion or reversal later, and of
  // the answered requests that may be sent again as retransmissions.
  std::uint32_t follow_ups_max = 65'536;
  std::uint32_t retransmissions_max = 256;

  // What the model knows of the switch's rule set (config/rules.toml as shipped). Change these
  // with the switch's rules, or the expectations of velocity and score declines are wrong.
  struct SwitchRules {
    std::int64_t decline_score = 70;           // [scoring] decline_score (code 59)
    std::uint32_t card_testing_threshold = 5;  // velocity card-testing: declines per card
    std::int64_t card_testing_window_ms = 600'000;
    std::uint32_t cnp_burst_threshold = 10;  // velocity cnp-burst: cnp approvals per card
    std::int64_t cnp_burst_window_ms = 3'600'000;
    std::int64_t cnp_burst_score = 40;
    std::int64_t account_spend_threshold_minor = 500'000;  // account-daily-spend
    std::int64_t account_spend_window_ms = 86'400'000;
    std::int64_t account_spend_score = 30;
    std::uint32_t declines_in_a_row = 4;  // declines-in-a-row
    std::int64_t declines_in_a_row_score = 30;
    std::int64_t night_cash_score = 30;  // night-cash: ATM, local hours first..last
    int night_cash_first_hour = 1;       // (America/New_York, with US daylight time)
    int night_cash_last_hour = 4;
    // How far the switch's clock (when it handles a request) may be from next()'s now_ms.
    std::int64_t clock_margin_ms = 2'000;
    std::int64_t replay_window_ms = 86'400'000;  // [redis] replay_window
    // The code of fraud declines (velocity and score): the network's response-code policy
    // for suspected_fraud ([response_codes.default] 59; network_b of the shipped file: 05).
    std::string suspected_fraud_code = "59";
  };
  SwitchRules rules;

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
  // Requests answered differently from their expectation (their accounts were retired).
  [[nodiscard]] std::uint64_t mismatches() const noexcept;
  // The model's balance and held amount of an account (tests, reports).
  [[nodiscard]] std::int64_t balance_minor(std::uint32_t account) const noexcept;
  [[nodiscard]] std::int64_t held_minor(std::uint32_t account) const noexcept;
  // The account index of a card of the portfolio (Portfolio::cards index).
  [[nodiscard]] std::uint32_t account_of_card(std::size_t card) const noexcept;

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
