#include "simulators/traffic/traffic.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "base/assert.h"
#include "simulators/traffic/rng_internal.h"
#include "simulators/traffic/traffic_internal.h"

namespace authswitch::netsim {

namespace {

constexpr std::array<std::string_view, kKindCount> kKindNames = {
    "purchase",       "cash",         "cashback",       "refund",           "balance",
    "completion",     "reversal",     "retransmission", "card_not_present", "card_testing",
    "velocity_abuse", "blocked_card", "expired_card",   "unknown_card"};

// The holds script's codes for a card that is not active (limits/scripts/holds.lua card_rc),
// by status index (portfolio.cc kStatuses order).
constexpr std::array<std::string_view, 6> kStatusNames = {"active", "blocked", "lost",
                                                          "stolen", "closed",  "inactive"};
constexpr std::array<std::string_view, 6> kStatusCodes = {"00", "62", "41", "43", "62", "62"};

constexpr std::int64_t kDayMs = 86'400'000;
constexpr std::int64_t kHourMs = 3'600'000;
constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::min() / 4;
constexpr std::uint32_t kNoIndex = 0xFFFF'FFFF;
constexpr std::size_t kDeclineRing = 8;  // >= card_testing_threshold + 1 (checked)
constexpr std::size_t kCnpRing = 12;     // >= cnp_burst_threshold + 1 (checked)
constexpr std::int64_t kSpendBlockMs = 13 * kHourMs;
constexpr std::size_t kBurstsMax = 16;
// Retransmissions are sent well inside the switch's replay window.
constexpr std::int64_t kRetransmitAgeMaxMs = kHourMs;

// Merchant categories of card-not-present purchases: ordinary e-commerce, none in the rules'
// high-risk list (4829, 6051, 6540, 5967) or gambling.
constexpr std::array<std::uint16_t, 5> kCnpMcc = {5999, 5942, 5732, 4899, 5399};

enum class Pool : std::uint8_t { kNone, kOrdinary, kLowBalance, kTight, kCardTesting };
enum class Op : std::uint8_t {
  kNone,
  kAuth,
  kDebit,
  kRefund,
  kBalance,
  kCapture,
  kReverse,
  kReplay
};

[[nodiscard]] std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
  const std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

struct CardModel {
  std::uint32_t account = 0;
  std::uint16_t expiry = 0;  // YYMM as a number
  std::uint8_t status = 0;   // kStatusNames index
  std::uint8_t profile = 0xFF;
  Pool pool = Pool::kNone;
  std::uint8_t decline_head = 0;
  std::uint8_t cnp_head = 0;
  std::uint32_t cd = 0;     // consecutive declines (the script's `cd`)
  std::int32_t day = -1;    // usage period of the counters (days since the epoch, UTC)
  std::int32_t month = -1;  // YYYYMM
  std::array<std::int64_t, kChannels> day_amount{};
  std::array<std::int64_t, kChannels> month_amount{};
  std::array<std::uint32_t, kChannels> day_count{};
  std::array<std::uint32_t, kChannels> month_count{};
  std::array<std::int64_t, kDeclineRing> declines{};  // next()'s now_ms of recent declines
  std::array<std::int64_t, kCnpRing> cnp{};           // ... of recent cnp approvals
  std::int64_t cooldown_until_ms = 0;                 // card testing: next burst not before
};

// One request of an account in flight: what on_response needs to update the model.
struct Pending {
  std::uint64_t sequence = 0;
  Op op = Op::kNone;
  Kind kind = Kind::kPurchase;
  Channel channel = Channel::kPos;
  std::uint32_t card = 0;
  std::uint32_t hold = kNoIndex;  // completion / reversal: index in its table
  std::uint32_t hold_generation = 0;
  bool hold_is_reversal = false;
  bool retransmittable = false;
  std::int64_t amount = 0;     // asked (auth, debit, refund), final (capture), left (reverse)
  std::int64_t available = 0;  // the model's available amount when it was sent
  std::int64_t now_ms = 0;
  std::int32_t day = 0;
  std::int32_t month = 0;
};

struct AccountModel {
  std::int64_t balance = 0;
  std::int64_t held = 0;
  std::uint32_t first_card = 0;
  std::uint32_t cards = 0;
  Pool pool = Pool::kNone;
  bool mine = false;  // in this generator's partition
  bool busy = false;
  bool retired = false;
  // Approved amounts per 13-hour block (slot = block % 3): an upper bound of the rule
  // account-daily-spend's 24-hour counter (reversals are not taken out: still an upper bound).
  std::array<std::int64_t, 3> spend{};
  std::array<std::int64_t, 3> spend_block{-1, -1, -1};
  Pending pending;
};

// An approval that may get one follow-up (completion or reversal).
struct HoldRecord {
  std::uint32_t account = 0;
  std::uint32_t card = 0;
  std::uint32_t generation = 0;
  char state = 0;  // 'P' pending (0100), 'C' posted (0200), 0 free or used
  Channel channel = Channel::kPos;
  std::int32_t day = 0;
  std::int32_t month = 0;
  std::int64_t amount = 0;  // what the limits counted (the approved amount)
  std::int64_t posted = 0;
  std::uint16_t mti = 100;
  std::uint32_t stan = 0;
  std::uint64_t de7 = 0;
  std::array<char, 6> de3{};
};

// Approvals waiting for their follow-up, oldest first (a ring: when full, the oldest is
// forgotten). Taken ones stay in place until the tail passes them.
struct HoldTable {
  std::vector<HoldRecord> records;
  std::size_t head = 0;   // next slot to fill
  std::size_t tail = 0;   // oldest slot that may still hold a candidate
  std::size_t count = 0;  // slots between tail and head

  HoldRecord& push() noexcept {
    if (count == records.size()) {
      tail = (tail + 1) % records.size();
      --count;
    }
    HoldRecord& h = records[head];
    head = (head + 1) % records.size();
    ++count;
    ++h.generation;
    return h;
  }
  // Drops taken slots at the tail.
  void trim() noexcept {
    while (count > 0 && records[tail].state != 'P' && records[tail].state != 'C') {
      tail = (tail + 1) % records.size();
      --count;
    }
  }
};

// An answered request that may be sent again (x01 / x21) and must get the same answer.
struct Sent {
  Request request;
  bool valid = false;
};

struct Burst {
  std::uint32_t card = 0;
  std::uint32_t step = 0;
  std::uint32_t steps = 0;
  bool active = false;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Names and expectations.

std::string_view kind_name(Kind k) noexcept {
  const auto i = static_cast<std::size_t>(k);
  return i < kKindNames.size() ? kKindNames[i] : "?";
}

bool Expectation::accepts(std::string_view code) const noexcept {
  if (code.size() != 2) {
    return false;
  }
  for (std::size_t i = 0; i < count && i < codes.size(); ++i) {
    if (codes[i][0] == code[0] && codes[i][1] == code[1]) {
      return true;
    }
  }
  return false;
}

bool Expectation::accepts(std::string_view code, std::int64_t amount) const noexcept {
  if (!accepts(code)) {
    return false;
  }
  return code != "10" || amount_minor < 0 || amount == amount_minor;
}

void Expectation::set(std::string_view code, std::int64_t amount) noexcept {
  count = 0;
  amount_minor = amount;
  available_minor = -1;
  add(code);
}

void Expectation::add(std::string_view code) noexcept {
  AS_ASSERT(code.size() == 2);
  if (accepts(code)) {
    return;
  }
  AS_ASSERT(count < codes.size());
  codes[count] = {code[0], code[1]};
  ++count;
}

void reserve_request(Request& r) {
  for (std::string& t : r.text) {
    t.reserve(48);
  }
}

// ---------------------------------------------------------------------------------------------
// The generator.

struct TrafficGenerator::State {
  State(const Portfolio& p, TrafficConfig c, std::uint64_t seed);

  // Choosing.
  [[nodiscard]] bool next(std::int64_t now_ms, Request& out);
  [[nodiscard]] bool produce(Kind k, Request& out);
  [[nodiscard]] bool usable(std::uint32_t card) const noexcept;
  [[nodiscard]] bool account_free(std::uint32_t account) const noexcept;
  [[nodiscard]] bool valid_card(std::uint32_t card) const noexcept;
  [[nodiscard]] std::uint32_t pick(const std::vector<std::uint32_t>& pool, bool need_valid);
  [[nodiscard]] bool purchase_like(Kind k, Request& out);
  [[nodiscard]] bool card_testing(Request& out);
  [[nodiscard]] bool velocity_abuse(Request& out);
  [[nodiscard]] bool status_card(Kind k, Request& out);
  [[nodiscard]] bool unknown_card(Request& out);
  [[nodiscard]] bool balance(Request& out);
  [[nodiscard]] bool refund(Request& out);
  [[nodiscard]] bool follow_up(bool reversal, Request& out);
  [[nodiscard]] bool retransmission(Request& out);

  // Building.
  void begin(Request& r, Kind k, std::uint16_t mti, std::uint32_t account) noexcept;
  void common_fields(Request& r, std::uint32_t card, std::string_view de3, std::uint16_t mcc,
                     bool cnp, bool atm) noexcept;
  void put(Request& r, int de, std::string_view v) noexcept;
  void put_number(Request& r, int de, std::uint64_t v, std::size_t width) noexcept;
  void emit_new_transaction(Request& r, Kind k, std::uint32_t card, std::uint16_t mti,
                            std::string_view de3, std::int64_t amount, Channel ch,
                            std::uint16_t mcc, bool expiry_matches) noexcept;
  void mark_busy(const Request& r, const Pending& p) noexcept;

  // The model.
  void predict(std::uint32_t card, Channel ch, std::int64_t amount, bool partial_ok,
               bool expiry_matches, Expectation& e, std::int64_t& available) const noexcept;
  [[nodiscard]] int yymm_at(std::int64_t ms) const noexcept;
  [[nodiscard]] bool night(std::int64_t ms) const noexcept;
  [[nodiscard]] std::int64_t spend_upper(const AccountModel& a) const noexcept;
  void count_decline(CardModel& c, std::int64_t at) noexcept;
  void count_approval(AccountModel& a, CardModel& c, const Pending& p,
                      std::int64_t approved) noexcept;
  void undo_usage(CardModel& c, const HoldRecord& h, std::int64_t amount,
                  std::int32_t count) noexcept;
  void retire(AccountModel& a) noexcept;
  void remember(const Request& r, std::string_view code, std::int64_t amount) noexcept;
  void answer(const Request& r, std::string_view code, std::int64_t amount);

  const Portfolio* portfolio;
  TrafficConfig cfg;
  Rng rng;
  std::vector<CardModel> cards;
  std::vector<AccountModel> accounts;
  std::vector<std::array<ChannelLimits, kChannels>> limits;  // by profile index
  std::vector<std::uint32_t> ordinary, low_balance, tight, testing, blocked, expired, valid_any;
  HoldTable completions;
  HoldTable reversals;
  std::vector<Sent> sent;
  std::size_t sent_head = 0;
  std::array<Burst, kBurstsMax> testing_bursts{};
  std::array<Burst, kBurstsMax> abuse_bursts{};
  std::array<std::uint64_t, kKindCount> kind_cumulative{};
  std::vector<std::pair<std::uint64_t, std::uint16_t>> mcc_cumulative;
  std::uint64_t sequence = 0;
  std::uint32_t stan_base = 0;
  std::uint64_t run_id = 0;
  std::string acquirer;
  std::uint64_t acquirer_number = 0;
  std::size_t in_flight = 0;
  std::size_t retired = 0;
  std::uint64_t mismatches = 0;

  // The request being built: its time fields.
  std::int64_t now = 0;
  bool day_boundary = false;  // the switch may count this request in either of two days
  std::array<char, 10> de7{};
  std::array<char, 6> de12{};
  std::array<char, 4> de13{};
  std::uint64_t de7_value = 0;
  std::int32_t today = 0;
  std::int32_t this_month = 0;
};

TrafficGenerator::State::State(const Portfolio& p, TrafficConfig c, std::uint64_t seed)
    : portfolio(&p), cfg(std::move(c)), rng(seed) {
  const TrafficConfig::SwitchRules& rules = cfg.rules;
  if (rules.card_testing_threshold + 1 > kDeclineRing || rules.cnp_burst_threshold + 1 > kCnpRing) {
    throw std::invalid_argument(
        "traffic: card_testing_threshold must be <= 7 and "
        "cnp_burst_threshold <= 11");
  }
  if (rules.suspected_fraud_code.size() != 2) {
    throw std::invalid_argument("traffic: suspected_fraud_code must be two characters");
  }
  if (cfg.partition_count == 0 || cfg.partition_index >= cfg.partition_count) {
    throw std::invalid_argument("traffic: partition_index must be below partition_count");
  }
  if (cfg.follow_ups_max < 2 || cfg.retransmissions_max == 0) {
    throw std::invalid_argument("traffic: follow_ups_max >= 2, retransmissions_max >= 1");
  }
  limits.reserve(p.profiles.size());
  for (const LimitProfileDef& def : p.profiles) {
    limits.push_back(def.channels);
  }
  const std::int64_t start_ms = wall_clock_ms();
  const int current_yymm = yymm_at(start_ms);
  cards.resize(p.cards.size());
  accounts.reserve(p.cards.size());  // at most one account per card; no moves while growing
  std::string_view last_account;
  for (std::size_t i = 0; i < p.cards.size(); ++i) {
    const TestCard& t = p.cards[i];
    if (i == 0 || t.account != last_account) {
      AccountModel& a = accounts.emplace_back();
      a.balance = t.balance_minor;
      a.first_card = static_cast<std::uint32_t>(i);
      a.mine = (accounts.size() - 1) % cfg.partition_count == cfg.partition_index;
      if (t.profile == kProfileTight) {
        a.pool = Pool::kTight;
      } else if (t.balance_minor < kLowBalanceMax) {
        a.pool = Pool::kLowBalance;
      } else {
        a.pool = rng.chance(cfg.fraud_account_share) ? Pool::kCardTesting : Pool::kOrdinary;
      }
      last_account = t.account;
    }
    const auto account = static_cast<std::uint32_t>(accounts.size() - 1);
    AccountModel& a = accounts.back();
    ++a.cards;
    CardModel& m = cards[i];
    m.account = account;
    m.declines.fill(kNever);
    m.cnp.fill(kNever);
    int expiry = 0;
    for (const char ch : t.expiry) {
      expiry = expiry * 10 + (ch - '0');
    }
    m.expiry = static_cast<std::uint16_t>(expiry);
    for (std::size_t s = 0; s < kStatusNames.size(); ++s) {
      if (t.status == kStatusNames[s]) {
        m.status = static_cast<std::uint8_t>(s);
      }
    }
    for (std::size_t q = 0; q < p.profiles.size() && q < 0xFF; ++q) {
      if (p.profiles[q].name == t.profile) {
        m.profile = static_cast<std::uint8_t>(q);
      }
    }
    // A card whose profile the model does not know, or in another partition, is never used.
    if (!a.mine || m.profile == 0xFF || t.currency != 840) {
      continue;
    }
    const auto idx = static_cast<std::uint32_t>(i);
    if (m.status != 0) {
      blocked.push_back(idx);
    } else if (expiry < current_yymm) {
      expired.push_back(idx);
    } else {
      m.pool = a.pool;
      valid_any.push_back(idx);
      switch (a.pool) {
        case Pool::kOrdinary:
          ordinary.push_back(idx);
          break;
        case Pool::kLowBalance:
          low_balance.push_back(idx);
          break;
        case Pool::kTight:
          tight.push_back(idx);
          break;
        case Pool::kCardTesting:
          testing.push_back(idx);
          break;
        case Pool::kNone:
          break;
      }
    }
  }
  completions.records.resize(cfg.follow_ups_max / 2);
  reversals.records.resize(cfg.follow_ups_max - cfg.follow_ups_max / 2);
  sent.resize(cfg.retransmissions_max);
  for (Sent& x : sent) {
    reserve_request(x.request);
  }
  std::uint64_t total = 0;
  for (std::size_t k = 0; k < kKindCount; ++k) {
    total += cfg.weights[k];
    kind_cumulative[k] = total;
  }
  if (total == 0) {
    throw std::invalid_argument("traffic: every kind has weight 0");
  }
  std::uint64_t mcc_total = 0;
  for (const MccWeight& w : cfg.mcc) {
    mcc_total += w.weight;
    mcc_cumulative.emplace_back(mcc_total, w.mcc);
  }
  if (mcc_total == 0) {
    mcc_cumulative.emplace_back(1, 5411);
  }
  // Keys that never collide with an earlier run on the same Redis: the acquirer id and the
  // STAN base come from the start time (tenths of a second) and the seed.
  run_id = static_cast<std::uint64_t>(start_ms / 100) + seed * 7919;
  if (cfg.acquirer_id.empty()) {
    acquirer = "5" + std::to_string(run_id % 1'000'000'000ULL);
    while (acquirer.size() < 10) {
      acquirer.insert(1, "0");
    }
  } else {
    acquirer = cfg.acquirer_id;
  }
  if (acquirer.empty() || acquirer.size() > 11 ||
      acquirer.find_first_not_of("0123456789") != std::string::npos) {
    throw std::invalid_argument("traffic: acquirer_id must be 1 to 11 digits (DE 32 n..11)");
  }
  acquirer_number = std::stoull(acquirer);
  stan_base = static_cast<std::uint32_t>(rng.below(1'000'000));
}

std::int64_t TrafficGenerator::State::spend_upper(const AccountModel& a) const noexcept {
  const std::int64_t m = cfg.rules.clock_margin_ms;
  const std::int64_t oldest =
      floor_div(now - m - cfg.rules.account_spend_window_ms - 2 * m, kSpendBlockMs);
  std::int64_t sum = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    if (a.spend_block[i] >= oldest) {
      sum += a.spend[i];
    }
  }
  return sum;
}

int TrafficGenerator::State::yymm_at(std::int64_t ms) const noexcept {
  const CivilDate d = civil_from_days(floor_div(ms, kDayMs));
  return static_cast<int>((d.year % 100) * 100 + d.month);
}

// The rule night-cash: local_hour in [first..last] in America/New_York.
bool TrafficGenerator::State::night(std::int64_t ms) const noexcept {
  const int h = new_york_hour(ms);
  return h >= cfg.rules.night_cash_first_hour && h <= cfg.rules.night_cash_last_hour;
}

// The answer of holds.lua `auth`/`debit` (new_transaction) and the rules in the same call, in
// their order: card and account checks, velocity and score, then limits and the available
// balance. Velocity windows are bucketed (12 buckets per window) on the switch's clock, which
// the model knows only within clock_margin_ms: when a counter's value at the switch cannot be
// pinned down, or a score may or may not reach decline_score, 59 is added as a possible answer
// (the one loose case of ordinary traffic; the generator keeps ordinary cards far from it).
void TrafficGenerator::State::predict(std::uint32_t card, Channel ch, std::int64_t amount,
                                      bool partial_ok, bool expiry_matches, Expectation& e,
                                      std::int64_t& available) const noexcept {
  const CardModel& c = cards[card];
  const AccountModel& a = accounts[c.account];
  const TrafficConfig::SwitchRules& rules = cfg.rules;
  const std::int64_t m = rules.clock_margin_ms;
  available = a.balance - a.held;
  e.set("00");
  e.count = 0;
  // check_card: status (62/41/43), expiry (54), presented expiry (54), amount (13).
  if (c.status != 0) {
    e.set(kStatusCodes[c.status]);
    return;
  }
  if (c.expiry < yymm_at(now - m)) {
    e.set("54");
    return;
  }
  const bool maybe_expired = c.expiry < yymm_at(now + m);  // the month turns within the margin
  if (!expiry_matches) {
    e.set("54");
    return;
  }
  if (amount <= 0) {
    e.set("13");
    return;
  }
  // Velocity rules (holds.lua velocity_rules): counters over the last 12 buckets.
  const auto width = [](std::int64_t window) { return (window + 11) / 12; };
  const std::int64_t wt = width(rules.card_testing_window_ms);
  std::uint32_t declines_lo = 0;
  std::uint32_t declines_hi = 0;
  for (const std::int64_t t : c.declines) {
    if (t == kNever) {
      continue;
    }
    declines_lo += floor_div(t - m, wt) >= floor_div(now + m, wt) - 11 ? 1U : 0U;
    declines_hi += floor_div(t + m, wt) >= floor_div(now - m, wt) - 11 ? 1U : 0U;
  }
  const std::int64_t wc = width(rules.cnp_burst_window_ms);
  std::uint32_t cnp_hi = 0;
  for (const std::int64_t t : c.cnp) {
    cnp_hi += t != kNever && floor_div(t + m, wc) >= floor_div(now - m, wc) - 11 ? 1U : 0U;
  }
  std::int64_t score_lo = 0;
  std::int64_t score_hi = 0;
  if (ch == Channel::kAtm) {
    const bool n1 = night(now - m);
    const bool n2 = night(now + m);
    score_lo += n1 && n2 ? rules.night_cash_score : 0;
    score_hi += n1 || n2 ? rules.night_cash_score : 0;
  }
  if (c.cd >= rules.declines_in_a_row) {
    score_lo += rules.declines_in_a_row_score;
    score_hi += rules.declines_in_a_row_score;
  }
  if (ch == Channel::kCnp && cnp_hi + 1 > rules.cnp_burst_threshold) {
    score_hi += rules.cnp_burst_score;  // lower bound not kept: the generator avoids it
  }
  if (spend_upper(a) + amount > rules.account_spend_threshold_minor) {
    score_hi += rules.account_spend_score;
  }
  const bool fraud_surely = declines_lo + 1 > rules.card_testing_threshold ||
                            (rules.decline_score > 0 && score_lo >= rules.decline_score);
  const bool fraud_maybe = declines_hi + 1 > rules.card_testing_threshold ||
                           (rules.decline_score > 0 && score_hi >= rules.decline_score);
  if (fraud_surely) {
    e.set(cfg.rules.suspected_fraud_code);
    if (maybe_expired) {
      e.add("54");
    }
    return;
  }
  // Limits (holds.lua check_limits), in the card's usage period.
  const ChannelLimits& l = limits[c.profile][static_cast<std::size_t>(ch)];
  const auto k = static_cast<std::size_t>(ch);
  const std::int64_t day_amount = c.day == today ? c.day_amount[k] : 0;
  const std::int64_t day_count = c.day == today ? c.day_count[k] : 0;
  const std::int64_t month_amount = c.month == this_month ? c.month_amount[k] : 0;
  const std::int64_t month_count = c.month == this_month ? c.month_count[k] : 0;
  if (amount > l.per_transaction_max) {
    e.set("61");
  } else if (day_count + 1 > l.day_count_max || month_count + 1 > l.month_count_max) {
    e.set("65");
  } else if (day_amount + amount > l.day_amount_max || month_amount + amount > l.month_amount_max) {
    e.set("61");
  } else if (amount <= available) {
    e.set("00");
  } else if (partial_ok && available > 0) {
    e.set("10", available);
  } else {
    e.set("51");
  }
  if (fraud_maybe) {
    e.add(cfg.rules.suspected_fraud_code);
  }
  if (maybe_expired) {
    e.add("54");
  }
}

bool TrafficGenerator::State::usable(std::uint32_t card) const noexcept {
  return account_free(cards[card].account);
}

bool TrafficGenerator::State::account_free(std::uint32_t account) const noexcept {
  const AccountModel& a = accounts[account];
  return a.mine && !a.busy && !a.retired;
}

// Active and surely not expired whichever side of a month boundary the switch's clock is.
bool TrafficGenerator::State::valid_card(std::uint32_t card) const noexcept {
  const CardModel& c = cards[card];
  return c.status == 0 && c.expiry >= yymm_at(now + cfg.rules.clock_margin_ms);
}

std::uint32_t TrafficGenerator::State::pick(const std::vector<std::uint32_t>& pool,
                                            bool need_valid) {
  if (pool.empty()) {
    return kNoIndex;
  }
  for (int attempt = 0; attempt < 12; ++attempt) {
    const std::uint32_t card = pool[rng.below(pool.size())];
    if (usable(card) && (!need_valid || valid_card(card))) {
      return card;
    }
  }
  return kNoIndex;
}

void TrafficGenerator::State::put(Request& r, int de, std::string_view v) noexcept {
  const auto i = static_cast<std::size_t>(de);
  r.present.set(i);
  r.text[i].assign(v.data(), v.size());
}

void TrafficGenerator::State::put_number(Request& r, int de, std::uint64_t v,
                                         std::size_t width) noexcept {
  std::array<char, 24> buf{};
  AS_ASSERT(width <= buf.size());
  for (std::size_t i = width; i > 0; --i) {
    buf[i - 1] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
  put(r, de, {buf.data(), width});
}

void TrafficGenerator::State::begin(Request& r, Kind k, std::uint16_t mti,
                                    std::uint32_t account) noexcept {
  r.kind = k;
  r.mti = mti;
  r.present.reset();
  r.expected = {};
  r.account = account;
  r.sequence = ++sequence;
  r.created_ms = now;
  put(r, 7, {de7.data(), de7.size()});
  put_number(r, 11, (stan_base + sequence) % 1'000'000, 6);
  put(r, 12, {de12.data(), de12.size()});
  put(r, 13, {de13.data(), de13.size()});
  put(r, 32, acquirer);
  // DE 37: the run (4 digits) and the sequence (8): unique per request of this run.
  put_number(r, 37, (run_id % 10'000) * 100'000'000 + sequence % 100'000'000, 12);
}

// DE 2, 14, 18, 19, 22, 25, 41, 42, 43, 49 of a request on `card` (kNoIndex: DE 2 and 14 are
// set by the caller).
void TrafficGenerator::State::common_fields(Request& r, std::uint32_t card, std::string_view de3,
                                            std::uint16_t mcc, bool cnp, bool atm) noexcept {
  if (card != kNoIndex) {
    const TestCard& t = portfolio->cards[card];
    put(r, 2, t.pan);
    put(r, 14, t.expiry);
  }
  put(r, 3, de3);
  put_number(r, 18, mcc, 4);
  put(r, 19, cfg.merchant_country);
  // DE 22 (ISO 8583:1987 n3): PAN entry mode + PIN capability; DE 25 condition code.
  if (cnp) {
    put(r, 22, "810");  // electronic commerce
    put(r, 25, "59");
  } else {
    put(r, 22, !atm && rng.chance(cfg.contactless_share) ? "071" : "051");
    put(r, 25, "00");
  }
  const std::uint64_t terminal = rng.below(std::max<std::uint32_t>(cfg.terminals, 1));
  std::array<char, 64> buf{};
  std::snprintf(buf.data(), buf.size(), "%s%05u", atm ? "ATM" : "SIM",
                static_cast<unsigned>(terminal % 100'000));
  put(r, 41, {buf.data(), 8});
  std::snprintf(buf.data(), buf.size(), "SIMMERCH%07u", static_cast<unsigned>(terminal));
  put(r, 42, {buf.data(), 15});
  // DE 43 (40): name 23, city 13, state 2, country 2 (the rules read the country: US).
  std::snprintf(buf.data(), buf.size(), "%-23.23s%-13.13s%2s%2s", atm ? "SIM ATM" : "SIM MERCHANT",
                "NEW YORK", "NY", "US");
  put(r, 43, {buf.data(), 40});
  put(r, 49, "840");
}

void TrafficGenerator::State::emit_new_transaction(Request& r, Kind k, std::uint32_t card,
                                                   std::uint16_t mti, std::string_view de3,
                                                   std::int64_t amount, Channel ch,
                                                   std::uint16_t mcc,
                                                   bool expiry_matches) noexcept {
  const CardModel& c = cards[card];
  begin(r, k, mti, c.account);
  common_fields(r, card, de3, mcc, ch == Channel::kCnp, ch == Channel::kAtm);
  put_number(r, 4, static_cast<std::uint64_t>(amount), 12);
  if (!expiry_matches) {
    // Card testing: a guessed expiry that is not the card's (holds.lua: expiry_mismatch, 54).
    const int wrong = c.expiry % 100 == 12 ? c.expiry - 11 : c.expiry + 1;
    put_number(r, 14, static_cast<std::uint64_t>(wrong), 4);
  }
  // Partial approval is allowed for purchases (DE 3 00) and purchases with cash back (09).
  const bool partial_ok = de3.substr(0, 2) == "00" || de3.substr(0, 2) == "09";
  Pending p;
  p.op = mti == 200 ? Op::kDebit : Op::kAuth;
  p.kind = k;
  p.channel = ch;
  p.card = card;
  p.amount = amount;
  p.retransmittable = true;
  predict(card, ch, amount, partial_ok, expiry_matches, r.expected, p.available);
  mark_busy(r, p);
}

void TrafficGenerator::State::mark_busy(const Request& r, const Pending& p) noexcept {
  AccountModel& a = accounts[r.account];
  AS_ASSERT(!a.busy);
  a.busy = true;
  a.pending = p;
  a.pending.sequence = r.sequence;
  a.pending.now_ms = now;
  a.pending.day = today;
  a.pending.month = this_month;
  ++in_flight;
}

bool TrafficGenerator::State::next(std::int64_t now_ms, Request& out) {
  now = now_ms;
  const std::int64_t m = cfg.rules.clock_margin_ms;
  today = static_cast<std::int32_t>(floor_div(now, kDayMs));
  day_boundary = floor_div(now - m, kDayMs) != floor_div(now + m, kDayMs);
  const CivilDate d = civil_from_days(today);
  this_month = static_cast<std::int32_t>(d.year * 100 + d.month);
  const std::int64_t in_day = now - static_cast<std::int64_t>(today) * kDayMs;
  const auto hh = static_cast<unsigned>(in_day / kHourMs);
  const auto mi = static_cast<unsigned>(in_day / 60'000 % 60);
  const auto ss = static_cast<unsigned>(in_day / 1000 % 60);
  std::array<char, 16> buf{};
  std::snprintf(buf.data(), buf.size(), "%02u%02u%02u%02u%02u", d.month, d.day, hh, mi, ss);
  std::copy_n(buf.begin(), 10, de7.begin());
  std::copy_n(buf.begin() + 4, 6, de12.begin());
  std::copy_n(buf.begin(), 4, de13.begin());
  de7_value = 0;
  for (const char ch : de7) {
    de7_value = de7_value * 10 + static_cast<std::uint64_t>(ch - '0');
  }
  const std::uint64_t total = kind_cumulative.back();
  for (int attempt = 0; attempt < 6; ++attempt) {
    const std::uint64_t x = rng.below(total);
    std::size_t k = 0;
    while (kind_cumulative[k] <= x) {
      ++k;
    }
    if (produce(static_cast<Kind>(k), out)) {
      return true;
    }
  }
  // Whatever can be sent, in the order of the kinds (only kinds the mix sends at all).
  for (std::size_t k = 0; k < kKindCount; ++k) {
    if (cfg.weights[k] > 0 && produce(static_cast<Kind>(k), out)) {
      return true;
    }
  }
  return false;
}

bool TrafficGenerator::State::produce(Kind k, Request& out) {
  switch (k) {
    case Kind::kPurchase:
    case Kind::kCash:
    case Kind::kCashback:
    case Kind::kCardNotPresent:
      // Around midnight UTC the switch may count a transaction in either day: only requests
      // that touch no day counter are sent then.
      return !day_boundary && purchase_like(k, out);
    case Kind::kRefund:
      return refund(out);
    case Kind::kBalance:
      return balance(out);
    case Kind::kCompletion:
      return follow_up(false, out);
    case Kind::kReversal:
      return follow_up(true, out);
    case Kind::kRetransmission:
      return retransmission(out);
    case Kind::kCardTesting:
      return card_testing(out);
    case Kind::kVelocityAbuse:
      return !day_boundary && velocity_abuse(out);
    case Kind::kBlockedCard:
    case Kind::kExpiredCard:
      return status_card(k, out);
    case Kind::kUnknownCard:
      return unknown_card(out);
  }
  return false;
}

namespace {

std::int64_t log_normal(Rng& rng, std::int64_t median, double sigma, std::int64_t lo,
                        std::int64_t hi) {
  const double x = std::exp(std::log(static_cast<double>(median)) + sigma * rng.normal());
  const double clamped = std::clamp(x, static_cast<double>(lo), static_cast<double>(hi));
  return static_cast<std::int64_t>(std::llround(clamped));
}

}  // namespace

// Purchases (0100 or 0200), ATM cash, cash back and card-not-present purchases: ordinary
// cards, and for a share of purchases and cash the insufficient-funds (low balance) and
// over-limit (tight profile) patterns.
bool TrafficGenerator::State::purchase_like(Kind k, Request& out) {
  std::uint16_t mcc = 5411;
  if (!mcc_cumulative.empty()) {
    const std::uint64_t x = rng.below(mcc_cumulative.back().first);
    for (const auto& [limit, code] : mcc_cumulative) {
      if (x < limit) {
        mcc = code;
        break;
      }
    }
  }
  std::int64_t amount = log_normal(rng, cfg.amount_median_minor, cfg.amount_sigma,
                                   cfg.amount_min_minor, cfg.amount_max_minor);
  const double u = rng.unit();
  const bool insufficient =
      (k == Kind::kPurchase || k == Kind::kCash) && u < cfg.insufficient_funds_share;
  const bool over_limit = k == Kind::kPurchase && !insufficient &&
                          u < cfg.insufficient_funds_share + cfg.over_limit_share;
  std::uint32_t card = kNoIndex;
  if (insufficient) {
    card = pick(low_balance, true);
    if (card == kNoIndex) {
      return false;
    }
    const AccountModel& a = accounts[cards[card].account];
    const std::int64_t available = std::max<std::int64_t>(a.balance - a.held, 0);
    amount = available + 1 + static_cast<std::int64_t>(rng.below(5'000));
  } else if (over_limit) {
    card = pick(tight, true);
    if (card == kNoIndex) {
      return false;
    }
    const ChannelLimits& l = limits[cards[card].profile][0];
    amount = l.per_transaction_max + 1 + static_cast<std::int64_t>(rng.below(10'000));
  } else {
    card = pick(ordinary, true);
    if (card == kNoIndex) {
      return false;
    }
  }
  switch (k) {
    case Kind::kCash: {
      const std::int64_t step = std::max<std::int64_t>(cfg.cash_step_minor, 1);
      const std::int64_t steps =
          std::max<std::int64_t>((cfg.cash_max_minor - cfg.cash_min_minor) / step + 1, 1);
      if (!insufficient) {
        amount = cfg.cash_min_minor +
                 step * static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(steps)));
      }
      emit_new_transaction(out, k, card, 200, "010000", amount, Channel::kAtm, 6011, true);
      return true;
    }
    case Kind::kCashback: {
      const std::int64_t cashback =
          1'000 * (1 + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(
                           std::max<std::int64_t>(cfg.cashback_max_minor / 1'000, 1)))));
      emit_new_transaction(out, k, card, 200, "090000", amount + cashback, Channel::kPos, 5411,
                           true);
      // DE 54 (ISO 8583:1987 additional amounts): account type 00, amount type 40 (cash back),
      // currency, sign, 12 digits.
      std::array<char, 40> buf{};
      std::snprintf(buf.data(), buf.size(), "0040840D%012lld", static_cast<long long>(cashback));
      put(out, 54, {buf.data(), 20});
      return true;
    }
    case Kind::kCardNotPresent: {
      // The rule cnp-burst scores many cnp approvals of one card in an hour: a card near it
      // is not used for card-not-present traffic (its purchase goes out card-present).
      const CardModel& c = cards[card];
      const std::int64_t m = cfg.rules.clock_margin_ms;
      std::uint32_t recent = 0;
      for (const std::int64_t t : c.cnp) {
        recent += t != kNever && t > now - cfg.rules.cnp_burst_window_ms -
                                         cfg.rules.cnp_burst_window_ms / 12 - 2 * m
                      ? 1U
                      : 0U;
      }
      if (recent + 3 > cfg.rules.cnp_burst_threshold) {
        emit_new_transaction(out, Kind::kPurchase, card, 100, "000000", amount, Channel::kPos, mcc,
                             true);
        return true;
      }
      emit_new_transaction(out, k, card, 100, "000000", amount, Channel::kCnp,
                           kCnpMcc[rng.below(kCnpMcc.size())], true);
      return true;
    }
    default:
      break;
  }
  const std::uint16_t mti = !insufficient && !over_limit && rng.chance(cfg.single_message_share)
                                ? std::uint16_t{200}
                                : std::uint16_t{100};
  emit_new_transaction(out, Kind::kPurchase, card, mti, "000000", amount, Channel::kPos, mcc, true);
  return true;
}

// A burst on one card of the card-testing accounts: card_testing_declines small purchases with
// a guessed expiry (54 each), then one with the right expiry, which the rule card-testing
// declines (59: the declines are in its window). The card then rests until they left it.
bool TrafficGenerator::State::card_testing(Request& out) {
  Burst* burst = nullptr;
  for (Burst& b : testing_bursts) {
    if (b.active && usable(b.card)) {
      burst = &b;
      break;
    }
  }
  if (burst == nullptr) {
    for (Burst& b : testing_bursts) {
      if (b.active) {
        continue;
      }
      const std::uint32_t card = pick(testing, true);
      if (card == kNoIndex || cards[card].cooldown_until_ms > now) {
        return false;
      }
      b = {card, 0, cfg.card_testing_declines + 1, true};
      burst = &b;
      break;
    }
  }
  if (burst == nullptr) {
    return false;
  }
  const bool last = burst->step + 1 >= burst->steps;
  if (last && day_boundary) {
    return false;  // the last attempt may reach the limits (it counts usage when approved)
  }
  const std::int64_t amount = 100 + static_cast<std::int64_t>(rng.below(400));
  const std::uint32_t card = burst->card;
  emit_new_transaction(out, Kind::kCardTesting, card, 100, "000000", amount,
                       rng.chance(0.5) ? Channel::kCnp : Channel::kPos, 5999, last);
  ++burst->step;
  if (last) {
    burst->active = false;
    cards[card].cooldown_until_ms = now + cfg.rules.card_testing_window_ms +
                                    cfg.rules.card_testing_window_ms / 6 +
                                    4 * cfg.rules.clock_margin_ms;
  }
  return true;
}

// A burst of small purchases on one card of the tight profile: approved until its day count
// (then 65) or day amount (61) limit; the model says which.
bool TrafficGenerator::State::velocity_abuse(Request& out) {
  Burst* burst = nullptr;
  for (Burst& b : abuse_bursts) {
    if (b.active && usable(b.card)) {
      burst = &b;
      break;
    }
  }
  if (burst == nullptr) {
    for (Burst& b : abuse_bursts) {
      if (b.active) {
        continue;
      }
      const std::uint32_t card = pick(tight, true);
      if (card == kNoIndex) {
        return false;
      }
      const ChannelLimits& l = limits[cards[card].profile][0];
      b = {card, 0, static_cast<std::uint32_t>(std::min<std::int64_t>(l.day_count_max, 20)) + 2,
           true};
      burst = &b;
      break;
    }
  }
  if (burst == nullptr) {
    return false;
  }
  const std::int64_t amount = 500 + static_cast<std::int64_t>(rng.below(1'500));
  emit_new_transaction(out, Kind::kVelocityAbuse, burst->card, 100, "000000", amount, Channel::kPos,
                       5999, true);
  if (++burst->step >= burst->steps) {
    burst->active = false;
  }
  return true;
}

// A purchase on a blocked, lost or stolen card (62, 41, 43) or on an expired one (54).
bool TrafficGenerator::State::status_card(Kind k, Request& out) {
  std::uint32_t card = kNoIndex;
  if (k == Kind::kBlockedCard) {
    card = pick(blocked, false);
  } else {
    const std::int64_t m = cfg.rules.clock_margin_ms;
    for (int attempt = 0; attempt < 4 && card == kNoIndex; ++attempt) {
      const std::uint32_t c = pick(expired, false);
      if (c != kNoIndex && cards[c].expiry < yymm_at(now - m)) {
        card = c;
      }
    }
  }
  if (card == kNoIndex) {
    return false;
  }
  const std::int64_t amount = log_normal(rng, cfg.amount_median_minor, cfg.amount_sigma,
                                         cfg.amount_min_minor, cfg.amount_max_minor);
  emit_new_transaction(out, k, card, 100, "000000", amount, Channel::kPos, 5411, true);
  return true;
}

// A card of the test BIN range the portfolio never issued (499901...): 14 before any Redis
// state is read, so it takes no account.
bool TrafficGenerator::State::unknown_card(Request& out) {
  begin(out, Kind::kUnknownCard, 100, kNoAccount);
  std::array<char, 20> pan{};
  std::snprintf(pan.data(), pan.size(), "499901%09llu",
                static_cast<unsigned long long>(rng.below(1'000'000'000)));
  pan[15] = luhn_check_digit({pan.data(), 15});
  common_fields(out, kNoIndex, "000000", 5411, false, false);
  put(out, 2, {pan.data(), 16});
  put_number(out, 14, static_cast<std::uint64_t>(yymm_at(now) + 300), 4);
  put_number(out, 4,
             static_cast<std::uint64_t>(log_normal(rng, cfg.amount_median_minor, cfg.amount_sigma,
                                                   cfg.amount_min_minor, cfg.amount_max_minor)),
             12);
  out.expected.set("14");
  return true;
}

// Balance inquiry (DE 3 30): always 00 on a known card, DE 54 with the available amount.
bool TrafficGenerator::State::balance(Request& out) {
  const std::uint32_t card = pick(valid_any, false);
  if (card == kNoIndex) {
    return false;
  }
  const AccountModel& a = accounts[cards[card].account];
  begin(out, Kind::kBalance, 100, cards[card].account);
  common_fields(out, card, "300000", 6011, false, true);
  out.expected.set("00");
  out.expected.available_minor = a.balance - a.held;
  Pending p;
  p.op = Op::kBalance;
  p.kind = Kind::kBalance;
  p.card = card;
  p.retransmittable = true;
  mark_busy(out, p);
  return true;
}

// Refund (0200, DE 3 20): credited on any known card of an account that is not closed; a
// third go to low-balance accounts, which keeps their insufficient-funds pattern going.
bool TrafficGenerator::State::refund(Request& out) {
  std::uint32_t card = rng.chance(0.3) ? pick(low_balance, false) : kNoIndex;
  if (card == kNoIndex) {
    card = pick(ordinary, false);
  }
  if (card == kNoIndex) {
    return false;
  }
  const std::int64_t amount = log_normal(rng, cfg.amount_median_minor, cfg.amount_sigma,
                                         cfg.amount_min_minor, cfg.amount_max_minor);
  begin(out, Kind::kRefund, 200, cards[card].account);
  common_fields(out, card, "200000", 5411, false, false);
  put_number(out, 4, static_cast<std::uint64_t>(amount), 12);
  out.expected.set("00");
  Pending p;
  p.op = Op::kRefund;
  p.kind = Kind::kRefund;
  p.card = card;
  p.amount = amount;
  p.retransmittable = true;
  mark_busy(out, p);
  return true;
}

// Completion (0220) of an approved 0100, or reversal (0400 of a 0100, 0420 of a 0200; full, or
// partial with DE 95), naming the original through DE 90. Always acknowledged 00.
bool TrafficGenerator::State::follow_up(bool reversal, Request& out) {
  HoldTable& table = reversal ? reversals : completions;
  HoldRecord* h = nullptr;
  std::uint32_t index = kNoIndex;
  table.trim();
  // The oldest candidates whose account is free (completions come some time after their
  // authorization).
  for (std::size_t n = 0; n < std::min<std::size_t>(table.count, 32); ++n) {
    const auto i = static_cast<std::uint32_t>((table.tail + n) % table.records.size());
    HoldRecord& c = table.records[i];
    if ((c.state == 'P' || c.state == 'C') && usable(c.card)) {
      h = &c;
      index = i;
      break;
    }
  }
  if (h == nullptr) {
    return false;
  }
  const std::uint32_t account = cards[h->card].account;
  const bool debit = h->state == 'C';
  const std::uint16_t mti =
      reversal ? (debit ? std::uint16_t{420} : std::uint16_t{400}) : std::uint16_t{220};
  begin(out, reversal ? Kind::kReversal : Kind::kCompletion, mti, account);
  common_fields(out, h->card, {h->de3.data(), h->de3.size()},
                h->channel == Channel::kAtm ? 6011 : 5411, h->channel == Channel::kCnp,
                h->channel == Channel::kAtm);
  std::array<char, 96> buf{};
  std::snprintf(buf.data(), buf.size(), "%04u%06u%010llu%011llu%011u", h->mti, h->stan,
                static_cast<unsigned long long>(h->de7),
                static_cast<unsigned long long>(acquirer_number), 0U);
  put(out, 90, {buf.data(), 42});
  Pending p;
  p.kind = out.kind;
  p.card = h->card;
  p.hold = index;
  p.hold_generation = h->generation;
  p.hold_is_reversal = reversal;
  p.retransmittable = true;
  const std::int64_t base = debit ? h->posted : h->amount;
  if (reversal) {
    p.op = Op::kReverse;
    put_number(out, 4, static_cast<std::uint64_t>(base), 12);
    p.amount = 0;
    if (base > 1 && rng.chance(cfg.partial_reversal_share)) {
      p.amount =
          std::max<std::int64_t>(1, base * (10 + static_cast<std::int64_t>(rng.below(81))) / 100);
      // DE 95 (an 42): actual transaction amount, settlement amount, two zero fees.
      std::snprintf(buf.data(), buf.size(), "%012lld%012lldC00000000C00000000",
                    static_cast<long long>(p.amount), static_cast<long long>(p.amount));
      put(out, 95, {buf.data(), 42});
    }
  } else {
    p.op = Op::kCapture;
    p.amount =
        std::max<std::int64_t>(1, base * (80 + static_cast<std::int64_t>(rng.below(21))) / 100);
    put_number(out, 4, static_cast<std::uint64_t>(p.amount), 12);
  }
  out.expected.set("00");
  h->state = 0;  // one follow-up per approval: taken out of the table now
  mark_busy(out, p);
  // The record is still needed in on_response: keep its values in the table slot (state 0
  // only hides it from the next picks) and check its generation there.
  table.records[index].state = debit ? 'c' : 'p';
  return true;
}

// An answered request sent again as x01 / x21 with the same keys: the switch answers it from
// its replay record, with the original answer, and changes nothing.
bool TrafficGenerator::State::retransmission(Request& out) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    Sent& s = sent[rng.below(sent.size())];
    if (!s.valid || s.request.account == kNoAccount || !account_free(s.request.account) ||
        now - s.request.created_ms >
            std::min(kRetransmitAgeMaxMs, cfg.rules.replay_window_ms / 2)) {
      continue;
    }
    const Request& o = s.request;
    out.kind = Kind::kRetransmission;
    out.mti = static_cast<std::uint16_t>(o.mti + 1);
    out.present = o.present;
    for (std::size_t de = 0; de < o.text.size(); ++de) {
      if (o.present[de]) {
        out.text[de].assign(o.text[de]);
      }
    }
    out.expected = o.expected;
    out.account = o.account;
    out.sequence = ++sequence;
    out.created_ms = o.created_ms;
    s.valid = false;  // sent again once
    Pending p;
    p.op = Op::kReplay;
    p.kind = Kind::kRetransmission;
    mark_busy(out, p);
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Answers.

void TrafficGenerator::State::count_decline(CardModel& c, std::int64_t at) noexcept {
  ++c.cd;
  c.declines[c.decline_head] = at;
  c.decline_head = static_cast<std::uint8_t>((c.decline_head + 1) % kDeclineRing);
}

void TrafficGenerator::State::count_approval(AccountModel& a, CardModel& c, const Pending& p,
                                             std::int64_t approved) noexcept {
  c.cd = 0;
  const auto k = static_cast<std::size_t>(p.channel);
  // holds.lua add_usage: a new period clears every channel's counters of that period.
  if (c.day != p.day) {
    c.day = p.day;
    c.day_amount.fill(0);
    c.day_count.fill(0);
  }
  if (c.month != p.month) {
    c.month = p.month;
    c.month_amount.fill(0);
    c.month_count.fill(0);
  }
  c.day_amount[k] += approved;
  c.day_count[k] += 1;
  c.month_amount[k] += approved;
  c.month_count[k] += 1;
  if (p.channel == Channel::kCnp) {
    c.cnp[c.cnp_head] = p.now_ms;
    c.cnp_head = static_cast<std::uint8_t>((c.cnp_head + 1) % kCnpRing);
  }
  const std::int64_t block = floor_div(p.now_ms, kSpendBlockMs);
  const auto slot = static_cast<std::size_t>(block % 3);
  if (a.spend_block[slot] != block) {
    a.spend_block[slot] = block;
    a.spend[slot] = 0;
  }
  a.spend[slot] += approved;
}

// holds.lua add_usage with a negative amount or count: only the period the hold was counted
// in, and only while the card's counters are still in it.
void TrafficGenerator::State::undo_usage(CardModel& c, const HoldRecord& h, std::int64_t amount,
                                         std::int32_t count) noexcept {
  const auto k = static_cast<std::size_t>(h.channel);
  if (c.day == h.day) {
    c.day_amount[k] += amount;
    c.day_count[k] = static_cast<std::uint32_t>(static_cast<std::int64_t>(c.day_count[k]) + count);
  }
  if (c.month == h.month) {
    c.month_amount[k] += amount;
    c.month_count[k] =
        static_cast<std::uint32_t>(static_cast<std::int64_t>(c.month_count[k]) + count);
  }
}

void TrafficGenerator::State::retire(AccountModel& a) noexcept {
  if (!a.retired) {
    a.retired = true;
    ++retired;
  }
}

void TrafficGenerator::State::remember(const Request& r, std::string_view code,
                                       std::int64_t amount) noexcept {
  Sent& s = sent[sent_head];
  sent_head = (sent_head + 1) % sent.size();
  s.request.kind = r.kind;
  s.request.mti = r.mti;
  s.request.present = r.present;
  for (std::size_t de = 0; de < r.text.size(); ++de) {
    if (r.present[de]) {
      s.request.text[de].assign(r.text[de]);
    }
  }
  s.request.account = r.account;
  s.request.sequence = r.sequence;
  s.request.created_ms = r.created_ms;
  Expectation& e = s.request.expected;
  const std::int64_t available = r.expected.available_minor;
  e.set(code.size() == 3 ? code.substr(1) : code,
        code.substr(code.size() - 2) == "10" ? amount : -1);
  e.available_minor = available;
  s.valid = true;
}

}  // namespace authswitch::netsim

namespace authswitch::netsim {

// What the switch answered: the model follows it. An answer outside the expectation (a
// system error such as 91 or 96 included: stand-in, Redis trouble) leaves the account's state
// unknown: it is retired.
void TrafficGenerator::State::answer(const Request& r, std::string_view code, std::int64_t amount) {
  State& st = *this;
  if (r.account == kNoAccount) {
    if (!r.expected.accepts(code, amount)) {
      ++st.mismatches;
    }
    return;
  }
  AS_ASSERT(r.account < st.accounts.size());
  AccountModel& a = st.accounts[r.account];
  if (!a.busy || a.pending.sequence != r.sequence) {
    return;  // not the request in flight on this account (answered twice, or unknown)
  }
  a.busy = false;
  --st.in_flight;
  const Pending p = a.pending;
  if (!r.expected.accepts(code, amount)) {
    ++st.mismatches;
    st.retire(a);
    return;
  }
  const std::string_view two = code.size() == 3 ? code.substr(1) : code;
  const bool approved = two == "00" || two == "10";
  switch (p.op) {
    case Op::kAuth:
    case Op::kDebit: {
      CardModel& c = st.cards[p.card];
      if (!approved) {
        st.count_decline(c, p.now_ms);
        break;
      }
      const std::int64_t got = two == "00" ? p.amount : (amount >= 0 ? amount : p.available);
      if (p.op == Op::kAuth) {
        a.held += got;
      } else {
        a.balance -= got;
      }
      st.count_approval(a, c, p, got);
      // Follow-ups: a share of 0100 approvals is completed later, a share reversed; a share
      // of 0200 approvals (debits) is reversed.
      const double u = st.rng.unit();
      HoldTable* table = nullptr;
      if (p.op == Op::kAuth && u < st.cfg.completion_share) {
        table = &st.completions;
      } else if (u < st.cfg.completion_share + st.cfg.reversal_share) {
        table = &st.reversals;
      }
      if (table != nullptr) {
        HoldRecord& h = table->push();
        h.account = r.account;
        h.card = p.card;
        h.state = p.op == Op::kAuth ? 'P' : 'C';
        h.channel = p.channel;
        h.day = p.day;
        h.month = p.month;
        h.amount = got;
        h.posted = p.op == Op::kAuth ? 0 : got;
        h.mti = r.mti;
        h.stan = 0;
        for (const char ch : r.text[11]) {
          h.stan = h.stan * 10 + static_cast<std::uint32_t>(ch - '0');
        }
        h.de7 = 0;
        for (const char ch : r.text[7]) {
          h.de7 = h.de7 * 10 + static_cast<std::uint64_t>(ch - '0');
        }
        std::copy_n(r.text[3].begin(), std::min<std::size_t>(6, r.text[3].size()), h.de3.begin());
      }
      break;
    }
    case Op::kRefund:
      a.balance += p.amount;
      break;
    case Op::kCapture:
    case Op::kReverse: {
      HoldTable& table = p.hold_is_reversal ? st.reversals : st.completions;
      HoldRecord& h = table.records[p.hold];
      if (h.generation != p.hold_generation || (h.state != 'p' && h.state != 'c')) {
        st.retire(a);  // the table slot was reused meanwhile: cannot follow (never expected)
        break;
      }
      CardModel& c = st.cards[p.card];
      const bool posted = h.state == 'c';
      h.state = 0;
      if (p.op == Op::kCapture) {
        // holds.lua capture: releases the pending hold, posts the final amount.
        a.held -= h.amount;
        a.balance -= p.amount;
      } else if (!posted) {
        if (p.amount < h.amount) {
          const std::int64_t released = h.amount - p.amount;
          a.held -= released;
          st.undo_usage(c, h, -released, p.amount == 0 ? -1 : 0);
        }
      } else if (p.amount < h.posted) {
        a.balance += h.posted - p.amount;
        if (p.amount == 0) {
          st.undo_usage(c, h, -h.amount, -1);
        }
      }
      break;
    }
    case Op::kBalance:
    case Op::kReplay:
    case Op::kNone:
      break;
  }
  if (p.retransmittable) {
    st.remember(r, code, amount);
  }
}

TrafficGenerator::TrafficGenerator(const Portfolio& p, TrafficConfig c, std::uint64_t seed)
    : s_(std::make_unique<State>(p, std::move(c), seed)) {}
TrafficGenerator::~TrafficGenerator() = default;
TrafficGenerator::TrafficGenerator(TrafficGenerator&&) noexcept = default;
TrafficGenerator& TrafficGenerator::operator=(TrafficGenerator&&) noexcept = default;

bool TrafficGenerator::next(std::int64_t now_ms, Request& out) { return s_->next(now_ms, out); }

void TrafficGenerator::on_response(const Request& r, std::string_view code,
                                   std::int64_t amount_minor) {
  s_->answer(r, code, amount_minor);
}

void TrafficGenerator::on_lost(const Request& r) {
  if (r.account == kNoAccount || r.account >= s_->accounts.size()) {
    return;
  }
  AccountModel& a = s_->accounts[r.account];
  if (!a.busy || a.pending.sequence != r.sequence) {
    return;
  }
  a.busy = false;
  --s_->in_flight;
  s_->retire(a);
}

std::size_t TrafficGenerator::accounts() const noexcept { return s_->accounts.size(); }
std::size_t TrafficGenerator::in_flight() const noexcept { return s_->in_flight; }
std::size_t TrafficGenerator::retired() const noexcept { return s_->retired; }
std::string_view TrafficGenerator::acquirer_id() const noexcept { return s_->acquirer; }
std::uint64_t TrafficGenerator::mismatches() const noexcept { return s_->mismatches; }
std::int64_t TrafficGenerator::balance_minor(std::uint32_t account) const noexcept {
  return s_->accounts[account].balance;
}
std::int64_t TrafficGenerator::held_minor(std::uint32_t account) const noexcept {
  return s_->accounts[account].held;
}
std::uint32_t TrafficGenerator::account_of_card(std::size_t card) const noexcept {
  return s_->cards[card].account;
}

// ---------------------------------------------------------------------------------------------
// Encoding.

iso8583::Result<std::size_t> encode_request(const iso8583::Dialect& dialect, const Request& r,
                                            iso8583::MessageBuilder& b, std::span<std::byte> out) {
  AS_ASSERT(&b.dialect() == &dialect);
  // ISO 8583:1993 dialects (DE 12 n12 YYMMDDhhmmss, DE 22 an12): MTI version 1, DE 12 with
  // the date, DE 22 as a point-of-service data code (position 7: card data input mode), no
  // DE 13 or DE 25 (a message reason code there). A completion or reversal names its original
  // in DE 56 (MTI, STAN, DE 12, DE 32) instead of 1987's DE 90 (MTI, STAN, DE 7, DE 32, DE 33):
  // the switch keys 1993 transactions by DE 12.
  const bool iso93 = dialect.field(12).defined && dialect.field(12).max_units == 12;
  std::array<char, 16> de12{};
  std::array<char, 16> de22{};
  std::array<char, 40> de56{};
  // The request's creation time (UTC): 1993's DE 12, and the year of DE 56's.
  const std::int64_t days = floor_div(r.created_ms, kDayMs);
  const CivilDate date = civil_from_days(days);
  b.reset(iso93 ? static_cast<std::uint16_t>(r.mti + 1000) : r.mti);
  for (int de = 2; de <= 128; ++de) {
    if (!r.present[static_cast<std::size_t>(de)] || de == 65) {
      continue;
    }
    std::string_view v = r.text[static_cast<std::size_t>(de)];
    if (iso93) {
      if (de == 13 || de == 25) {
        continue;
      }
      if (de == 90) {
        if (v.size() != 42) {
          continue;
        }
        // The original's DE 12 is its DE 7 (both from its creation time, UTC) with the year:
        // this message's, or the one before when the original's month is later than this one's.
        const unsigned month = static_cast<unsigned>((v[10] - '0') * 10 + (v[11] - '0'));
        const auto year = static_cast<unsigned>(date.year - (month > date.month ? 1 : 0));
        std::snprintf(de56.data(), de56.size(), "1%.3s%.6s%02u%.10s11%.11s", v.data() + 1,
                      v.data() + 4, year % 100, v.data() + 10, v.data() + 20);
        b.set_text(56, {de56.data(), 35});
        continue;
      }
      if (de == 12) {
        const std::int64_t in_day = r.created_ms - days * kDayMs;
        std::snprintf(de12.data(), de12.size(), "%02u%02u%02u%02u%02u%02u",
                      static_cast<unsigned>(date.year % 100), date.month, date.day,
                      static_cast<unsigned>(in_day / 3'600'000),
                      static_cast<unsigned>(in_day / 60'000 % 60),
                      static_cast<unsigned>(in_day / 1000 % 60));
        v = {de12.data(), 12};
      } else if (de == 22) {
        // Position 7 (card data input mode): 5 chip, A contactless, S e-commerce, 2 stripe,
        // 1 manual; the other positions: terminal capabilities and cardholder presence.
        char mode = '5';
        if (v.substr(0, 2) == "07") {
          mode = 'A';
        } else if (v.substr(0, 2) == "81") {
          mode = 'S';
        } else if (v.substr(0, 2) == "02" || v.substr(0, 2) == "90") {
          mode = '2';
        } else if (v.substr(0, 2) == "01") {
          mode = '1';
        }
        const bool present = mode != 'S';
        std::snprintf(de22.data(), de22.size(), "51010%c%c%s", present ? '1' : '5', mode,
                      present ? "10001" : "00000");
        v = {de22.data(), 12};
      }
    }
    if (!dialect.field(de).defined) {
      return iso8583::fail(iso8583::Errc::kUndefinedField, static_cast<std::uint16_t>(de), 0);
    }
    b.set_text(de, v);
  }
  return b.encode(out);
}

}  // namespace authswitch::netsim
