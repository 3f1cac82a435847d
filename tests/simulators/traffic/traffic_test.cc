#include "simulators/traffic/traffic.h"

#include <array>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <stdlib.h>

#include "iso8583/composite.h"
#include "iso8583/dialect_loader.h"
#include "iso8583/message.h"
#include "simulators/traffic/traffic_internal.h"
#include "tests/support/alloc_counter.h"

namespace authswitch::netsim {
namespace {

namespace fs = std::filesystem;

// 2026-12-03 12:00:00 UTC: far from midnight, not a night hour in New York.
constexpr std::int64_t kNoon = 1'796'299'200'000;

const Portfolio& portfolio() {
  static const Portfolio p = [] {
    SeedOptions o;
    o.cards = 20'000;
    o.seed = 42;
    o.expiry_base_yy = 26;
    o.low_balance_share = 0.05;
    o.tight_share = 0.05;
    return generate_portfolio(o);
  }();
  return p;
}

TrafficConfig only(std::initializer_list<std::pair<Kind, std::uint32_t>> weights) {
  TrafficConfig c;
  c.weights.fill(0);
  for (const auto& [k, w] : weights) {
    c.weights[static_cast<std::size_t>(k)] = w;
  }
  return c;
}

// A switch that answers every request as the model expects (the first code; DE 4 of a partial
// approval): for tests of the generator's own bookkeeping.
void answer_as_expected(TrafficGenerator& g, const Request& r) {
  const Expectation& e = r.expected;
  ASSERT_GT(e.count, 0);
  const std::string code(e.codes[0].data(), 2);
  g.on_response(r, code, code == "10" ? e.amount_minor : -1);
}

std::string code_of(const Request& r) {
  return r.expected.count == 1 ? std::string(r.expected.codes[0].data(), 2) : "loose";
}

TEST(Kinds, HaveNames) {
  std::set<std::string_view> names;
  for (std::size_t k = 0; k < kKindCount; ++k) {
    names.insert(kind_name(static_cast<Kind>(k)));
  }
  EXPECT_EQ(names.size(), kKindCount);
  EXPECT_EQ(kind_name(Kind::kCardTesting), "card_testing");
  EXPECT_EQ(kind_name(Kind::kCardNotPresent), "card_not_present");
}

TEST(ExpectationTest, AcceptsTwoCharacterCodesAndPartialAmounts) {
  Expectation e;
  e.set("10", 1234);
  e.add("59");
  EXPECT_TRUE(e.accepts("10"));
  EXPECT_FALSE(e.accepts("010"));  // a 1993 action code is mapped first (002 is 10)
  EXPECT_TRUE(e.accepts("59"));
  EXPECT_FALSE(e.accepts("00"));
  EXPECT_FALSE(e.accepts("1"));
  EXPECT_TRUE(e.accepts("10", 1234));
  EXPECT_FALSE(e.accepts("10", 1235));
  EXPECT_TRUE(e.accepts("59", 99'999));  // DE 4 is only checked for partial approvals
}

TEST(NewYorkHour, FollowsUsDaylightTime) {
  // 2026-01-15 06:30 UTC = 01:30 EST; 2026-07-01 05:30 UTC = 01:30 EDT.
  EXPECT_EQ(new_york_hour(1'768'458'600'000), 1);
  EXPECT_EQ(new_york_hour(1'782'883'800'000), 1);
  // 2026-03-08: clocks go from 02:00 EST to 03:00 EDT at 07:00 UTC.
  EXPECT_EQ(new_york_hour(1'772'953'199'000), 1);  // 06:59:59 UTC
  EXPECT_EQ(new_york_hour(1'772'953'200'000), 3);  // 07:00:00 UTC
  // 2026-11-01: back from 02:00 EDT to 01:00 EST at 06:00 UTC.
  EXPECT_EQ(new_york_hour(1'793'512'799'000), 1);  // 05:59:59 UTC = 01:59:59 EDT
  EXPECT_EQ(new_york_hour(1'793'512'800'000), 1);  // 06:00:00 UTC = 01:00:00 EST
  EXPECT_EQ(new_york_hour(kNoon), 7);
  EXPECT_EQ(days_from_civil(2026, 12, 3), kNoon / 86'400'000);
  const CivilDate d = civil_from_days(kNoon / 86'400'000);
  EXPECT_EQ(d.year, 2026);
  EXPECT_EQ(d.month, 12U);
  EXPECT_EQ(d.day, 3U);
}

TEST(TrafficGeneratorTest, MixFollowsTheWeights) {
  TrafficGenerator g(portfolio(), TrafficConfig::defaults(), 1);
  std::map<Kind, double> seen;
  std::map<int, int> mtis;
  Request r;
  constexpr int kN = 60'000;
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(g.next(kNoon + i * 10, r));
    seen[r.kind] += 1;
    ++mtis[r.mti];
    answer_as_expected(g, r);
  }
  const TrafficConfig c = TrafficConfig::defaults();
  double total = 0;
  for (const std::uint32_t w : c.weights) {
    total += w;
  }
  const auto share = [&](Kind k) { return seen[k] / kN; };
  const auto weight = [&](Kind k) { return c.weights[static_cast<std::size_t>(k)] / total; };
  // Kinds that fall back to others (a cnp card near the cnp-burst rule sends a card-present
  // purchase; follow-ups need earlier approvals) get a little less than their weight.
  for (const Kind k :
       {Kind::kCash, Kind::kCashback, Kind::kRefund, Kind::kBalance, Kind::kCompletion,
        Kind::kReversal, Kind::kRetransmission, Kind::kCardNotPresent, Kind::kCardTesting,
        Kind::kVelocityAbuse, Kind::kBlockedCard, Kind::kExpiredCard, Kind::kUnknownCard}) {
    EXPECT_NEAR(share(k), weight(k), weight(k) * 0.2 + 0.002) << kind_name(k);
  }
  EXPECT_NEAR(share(Kind::kPurchase), weight(Kind::kPurchase), 0.03);
  for (const int mti : {100, 200, 220, 400, 420}) {
    EXPECT_GT(mtis[mti], 0) << mti;
  }
  EXPECT_GT(mtis[101] + mtis[201] + mtis[221] + mtis[401] + mtis[421], 0);
  EXPECT_EQ(g.in_flight(), 0U);
  EXPECT_EQ(g.mismatches(), 0U);
  EXPECT_EQ(g.retired(), 0U);
}

TEST(TrafficGeneratorTest, NeverTwoRequestsOfOneAccountInFlight) {
  TrafficGenerator g(portfolio(), TrafficConfig::defaults(), 2);
  std::vector<Request> outstanding(2'000);
  std::set<std::uint32_t> busy;
  std::size_t n = 0;
  std::uint64_t x = 12345;
  for (int i = 0; i < 40'000; ++i) {
    if (n < outstanding.size()) {
      Request& r = outstanding[n];
      if (g.next(kNoon + i, r)) {
        if (r.account != kNoAccount) {
          ASSERT_TRUE(busy.insert(r.account).second) << "account " << r.account << " twice";
        }
        ++n;
      }
    }
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    if (n > 0 && (x >> 60U) < 7) {
      const std::size_t j = (x >> 20U) % n;
      busy.erase(outstanding[j].account);
      answer_as_expected(g, outstanding[j]);
      std::swap(outstanding[j], outstanding[n - 1]);
      --n;
    }
  }
  EXPECT_EQ(g.in_flight(), busy.size());
  EXPECT_EQ(g.mismatches(), 0U);
}

TEST(TrafficGeneratorTest, NothingToSendWhenEveryAccountIsBusy) {
  SeedOptions o;
  o.cards = 4;
  o.expiry_base_yy = 26;
  o.blocked_share = o.lost_share = o.stolen_share = o.expired_share = 0;
  o.low_balance_share = o.tight_share = 0;
  const Portfolio p = generate_portfolio(o);
  TrafficConfig c = only({{Kind::kPurchase, 1}});
  c.fraud_account_share = 0;
  TrafficGenerator g(p, c, 3);
  Request a;
  Request b;
  Request d;
  ASSERT_TRUE(g.next(kNoon, a));
  ASSERT_TRUE(g.next(kNoon, b));
  EXPECT_NE(a.account, b.account);
  EXPECT_FALSE(g.next(kNoon, d));
  g.on_lost(a);
  EXPECT_EQ(g.retired(), 1U);
  answer_as_expected(g, b);
  ASSERT_TRUE(g.next(kNoon, d));
  EXPECT_EQ(d.account, b.account);  // the lost one's account is never used again
}

TEST(Patterns, CardTestingIsDeclinedThenCaughtByTheVelocityRule) {
  TrafficGenerator g(portfolio(), only({{Kind::kCardTesting, 1}}), 4);
  Request r;
  std::vector<std::string> codes;
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(g.next(kNoon + i * 1'000, r));
    EXPECT_EQ(r.kind, Kind::kCardTesting);
    codes.push_back(code_of(r));
    answer_as_expected(g, r);
  }
  EXPECT_EQ(codes, (std::vector<std::string>{"54", "54", "54", "54", "54", "59"}));
}

TEST(Patterns, BlockedLostStolenExpiredAndUnknownCards) {
  const Portfolio& p = portfolio();
  std::map<std::string, std::string> status_of;
  for (const TestCard& c : p.cards) {
    status_of[c.pan] = c.status;
  }
  TrafficGenerator g(
      p, only({{Kind::kBlockedCard, 1}, {Kind::kExpiredCard, 1}, {Kind::kUnknownCard, 1}}), 5);
  const std::map<std::string, std::string> code_for = {
      {"blocked", "62"}, {"lost", "41"}, {"stolen", "43"}, {"closed", "62"}, {"inactive", "62"}};
  Request r;
  std::map<Kind, int> seen;
  for (int i = 0; i < 600; ++i) {
    ASSERT_TRUE(g.next(kNoon + i * 100, r));
    ++seen[r.kind];
    const std::string& pan = r.text[2];
    if (r.kind == Kind::kBlockedCard) {
      ASSERT_EQ(code_of(r), code_for.at(status_of.at(pan)));
    } else if (r.kind == Kind::kExpiredCard) {
      ASSERT_EQ(code_of(r), "54");
      EXPECT_EQ(status_of.at(pan), "active");
      EXPECT_LT(r.text[14], "2612");
    } else {
      ASSERT_EQ(r.kind, Kind::kUnknownCard);
      ASSERT_EQ(code_of(r), "14");
      EXPECT_EQ(r.account, kNoAccount);
      EXPECT_EQ(status_of.count(pan), 0U);
      EXPECT_TRUE(luhn_valid(pan));
    }
    answer_as_expected(g, r);
  }
  EXPECT_GT(seen[Kind::kBlockedCard], 100);
  EXPECT_GT(seen[Kind::kExpiredCard], 100);
  EXPECT_GT(seen[Kind::kUnknownCard], 100);
}

TEST(Patterns, InsufficientFundsArePartiallyApprovedThenDeclined) {
  TrafficConfig c = only({{Kind::kPurchase, 1}});
  c.insufficient_funds_share = 1.0;
  c.over_limit_share = 0;
  TrafficGenerator g(portfolio(), c, 6);
  Request r;
  int partial = 0;
  int declined = 0;
  for (int i = 0; i < 400; ++i) {
    ASSERT_TRUE(g.next(kNoon + i * 100, r));
    const std::uint32_t a = r.account;
    const std::int64_t available = g.balance_minor(a) - g.held_minor(a);
    const std::int64_t amount = std::stoll(r.text[4]);
    EXPECT_GT(amount, available);
    if (code_of(r) == "10") {
      ++partial;
      EXPECT_EQ(r.expected.amount_minor, available);
      EXPECT_GT(available, 0);
    } else if (code_of(r) == "51") {
      ++declined;
      EXPECT_LE(available, 0);
    } else {
      // A card with many recent declines: the card-testing rule answers (59), exactly or as
      // one of the possible answers.
      EXPECT_TRUE(r.expected.accepts("59")) << code_of(r);
    }
    answer_as_expected(g, r);
    if (code_of(r) == "10") {
      EXPECT_EQ(g.balance_minor(a) - g.held_minor(a), 0);
    }
  }
  EXPECT_GT(partial, 10);
  EXPECT_GT(declined, 10);
}

TEST(Patterns, OverLimitAndVelocityAbuse) {
  TrafficConfig c = only({{Kind::kPurchase, 1}});
  c.insufficient_funds_share = 0;
  c.over_limit_share = 1.0;
  TrafficGenerator g(portfolio(), c, 7);
  Request r;
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(g.next(kNoon + i * 100, r));
    EXPECT_TRUE(code_of(r) == "61" || r.expected.accepts("59")) << code_of(r);
    answer_as_expected(g, r);
  }
  // Velocity abuse: the tight profile allows 5 card-present purchases a day.
  TrafficGenerator v(portfolio(), only({{Kind::kVelocityAbuse, 1}}), 8);
  std::vector<std::string> codes;
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(v.next(kNoon + i * 100, r));
    codes.push_back(code_of(r));
    answer_as_expected(v, r);
  }
  EXPECT_EQ(codes, (std::vector<std::string>{"00", "00", "00", "00", "00", "65", "65"}));
}

TEST(Patterns, CompletionsAndReversalsNameTheirOriginalAndMoveTheModel) {
  TrafficConfig c = only({{Kind::kPurchase, 4}, {Kind::kCompletion, 1}, {Kind::kReversal, 1}});
  c.single_message_share = 0.3;
  c.insufficient_funds_share = 0;
  c.over_limit_share = 0;
  TrafficGenerator g(portfolio(), c, 9);
  std::map<std::string, Request> approved;  // by DE 11
  Request r;
  int completions = 0;
  int reversals = 0;
  for (int i = 0; i < 5'000; ++i) {
    ASSERT_TRUE(g.next(kNoon + i * 10, r));
    if (r.kind == Kind::kCompletion || r.kind == Kind::kReversal) {
      ASSERT_TRUE(r.present[90]);
      ASSERT_EQ(r.text[90].size(), 42U);
      EXPECT_EQ(code_of(r), "00");
      const std::string stan = r.text[90].substr(4, 6);
      ASSERT_EQ(approved.count(stan), 1U) << "DE 90 names no approval";
      const Request& o = approved[stan];
      EXPECT_EQ(r.text[90].substr(0, 4), o.mti == 100 ? "0100" : "0200");
      EXPECT_EQ(r.text[90].substr(10, 10), o.text[7]);
      EXPECT_EQ(r.text[2], o.text[2]);
      EXPECT_EQ(r.account, o.account);
      const std::int64_t held = g.held_minor(r.account);
      const std::int64_t balance = g.balance_minor(r.account);
      const std::int64_t original = std::stoll(o.text[4]);
      answer_as_expected(g, r);
      if (r.kind == Kind::kCompletion) {
        ++completions;
        EXPECT_EQ(r.mti, 220);
        EXPECT_EQ(g.held_minor(r.account), held - original);
        EXPECT_EQ(g.balance_minor(r.account), balance - std::stoll(r.text[4]));
      } else {
        ++reversals;
        const std::int64_t left = r.present[95] ? std::stoll(r.text[95].substr(0, 12)) : 0;
        if (o.mti == 100) {
          EXPECT_EQ(r.mti, 400);
          EXPECT_EQ(g.held_minor(r.account), held - (original - left));
        } else {
          EXPECT_EQ(r.mti, 420);
          EXPECT_EQ(g.balance_minor(r.account), balance + (original - left));
        }
      }
      approved.erase(stan);
      continue;
    }
    const bool ok = code_of(r) == "00";
    const Request copy = r;
    answer_as_expected(g, r);
    if (ok) {
      approved[copy.text[11]] = copy;
    }
  }
  EXPECT_GT(completions, 100);
  EXPECT_GT(reversals, 100);
  EXPECT_EQ(g.mismatches(), 0U);
}

TEST(Patterns, RetransmissionsRepeatTheKeysAndExpectTheOriginalAnswer) {
  TrafficConfig c = only({{Kind::kPurchase, 3}, {Kind::kRetransmission, 1}, {Kind::kBalance, 1}});
  c.insufficient_funds_share = 0.3;
  TrafficGenerator g(portfolio(), c, 10);
  std::map<std::string, std::pair<Request, std::string>> answered;  // by DE 37
  Request r;
  int repeats = 0;
  for (int i = 0; i < 5'000; ++i) {
    ASSERT_TRUE(g.next(kNoon + i * 10, r));
    if (r.kind == Kind::kRetransmission) {
      ++repeats;
      ASSERT_EQ(answered.count(r.text[37]), 1U);
      const auto& [o, code] = answered[r.text[37]];
      EXPECT_EQ(r.mti, o.mti + 1);
      EXPECT_EQ(r.present, o.present);
      for (const int de : {2, 3, 4, 7, 11, 32, 49}) {
        const auto i_de = static_cast<std::size_t>(de);
        if (o.present[i_de]) {
          EXPECT_EQ(r.text[i_de], o.text[i_de]) << "DE " << de;
        }
      }
      EXPECT_EQ(code_of(r), code);
      EXPECT_EQ(r.expected.available_minor, o.expected.available_minor);
      answer_as_expected(g, r);
      continue;
    }
    const Request copy = r;
    answer_as_expected(g, r);
    answered[copy.text[37]] = {copy, code_of(copy)};
  }
  EXPECT_GT(repeats, 300);
}

TEST(Patterns, BalanceInquiriesExpectTheModelsAvailableAmount) {
  TrafficGenerator g(portfolio(), only({{Kind::kPurchase, 1}, {Kind::kBalance, 1}}), 11);
  Request r;
  for (int i = 0; i < 2'000; ++i) {
    ASSERT_TRUE(g.next(kNoon + i * 10, r));
    if (r.kind == Kind::kBalance) {
      EXPECT_EQ(r.text[3], "300000");
      EXPECT_EQ(r.expected.available_minor, g.balance_minor(r.account) - g.held_minor(r.account));
    }
    answer_as_expected(g, r);
  }
}

TEST(TrafficGeneratorTest, AroundMidnightNothingTouchesTheDayCounters) {
  TrafficGenerator g(portfolio(), TrafficConfig::defaults(), 12);
  Request r;
  const std::int64_t midnight = kNoon + 12 * 3'600'000;
  for (int i = 0; i < 2'000; ++i) {
    ASSERT_TRUE(g.next(midnight - 1'000 + (i % 2'000), r));
    EXPECT_NE(r.kind, Kind::kPurchase);
    EXPECT_NE(r.kind, Kind::kCash);
    EXPECT_NE(r.kind, Kind::kCardNotPresent);
    EXPECT_NE(r.kind, Kind::kVelocityAbuse);
    answer_as_expected(g, r);
  }
}

TEST(TrafficGeneratorTest, UnexpectedAnswersRetireTheAccount) {
  TrafficGenerator g(portfolio(), only({{Kind::kPurchase, 1}}), 13);
  Request r;
  ASSERT_TRUE(g.next(kNoon, r));
  ASSERT_EQ(code_of(r), "00");
  g.on_response(r, "91", -1);
  EXPECT_EQ(g.mismatches(), 1U);
  EXPECT_EQ(g.retired(), 1U);
  EXPECT_EQ(g.in_flight(), 0U);
}

TEST(TrafficGeneratorTest, PartitionsNeverShareAnAccount) {
  TrafficConfig c0 = TrafficConfig::defaults();
  c0.partition_count = 2;
  TrafficConfig c1 = c0;
  c1.partition_index = 1;
  TrafficGenerator g0(portfolio(), c0, 14);
  TrafficGenerator g1(portfolio(), c1, 14);
  Request r;
  for (int i = 0; i < 3'000; ++i) {
    ASSERT_TRUE(g0.next(kNoon + i, r));
    EXPECT_TRUE(r.account == kNoAccount || r.account % 2 == 0);
    answer_as_expected(g0, r);
    ASSERT_TRUE(g1.next(kNoon + i, r));
    EXPECT_TRUE(r.account == kNoAccount || r.account % 2 == 1);
    answer_as_expected(g1, r);
  }
  EXPECT_NE(g0.acquirer_id(), "");
}

TEST(EncodeRequest, DecodesBackInEveryShippedDialect) {
  for (const std::string_view name : iso8583::builtin_dialect_names()) {
    SCOPED_TRACE(name);
    const iso8583::Dialect& d = iso8583::builtin_dialect(name);
    const bool iso93 = name.substr(0, 5) == "iso93";
    TrafficGenerator g(portfolio(), TrafficConfig::defaults(), 15);
    iso8583::MessageBuilder b(d);
    std::array<std::byte, 4096> buf{};
    iso8583::MessageView view;
    Request r;
    std::set<Kind> kinds;
    for (int i = 0; i < 3'000; ++i) {
      ASSERT_TRUE(g.next(kNoon + i * 10, r));
      kinds.insert(r.kind);
      const auto n = encode_request(d, r, b, buf);
      ASSERT_TRUE(n.has_value()) << kind_name(r.kind) << " field " << n.error().field;
      ASSERT_TRUE(iso8583::decode(d, {buf.data(), *n}, view).has_value());
      EXPECT_EQ(view.mti(), iso93 ? r.mti + 1000 : r.mti);
      for (const int de : {2, 3, 4, 14, 18, 32, 37, 41, 42, 43, 49, 95}) {
        const auto i_de = static_cast<std::size_t>(de);
        ASSERT_EQ(view.has(de), r.present[i_de]) << "DE " << de;
        if (r.present[i_de]) {
          std::array<char, 128> scratch{};
          EXPECT_EQ(iso8583::text_value(view.field(de), scratch), r.text[i_de]) << "DE " << de;
        }
      }
      std::array<char, 32> s12{};
      const std::string_view de12 = iso8583::text_value(view.field(12), s12);
      if (iso93) {
        ASSERT_EQ(de12.size(), 12U);
        EXPECT_EQ(de12.substr(6), r.text[12]);
        EXPECT_FALSE(view.has(90));
        EXPECT_FALSE(view.has(25));
        std::array<char, 32> s22{};
        EXPECT_EQ(iso8583::text_value(view.field(22), s22).size(), 12U);
        ASSERT_EQ(view.has(56), r.present[90]);
        if (r.present[90]) {  // DE 56: the original's MTI, STAN, DE 12 (its DE 7 with the year)
          std::array<char, 64> s56{};
          const std::string_view de56 = iso8583::text_value(view.field(56), s56);
          ASSERT_EQ(de56.size(), 35U);
          EXPECT_EQ(de56.substr(0, 4), "1" + r.text[90].substr(1, 3));
          EXPECT_EQ(de56.substr(4, 6), r.text[90].substr(4, 6));
          EXPECT_EQ(de56.substr(10, 2), de12.substr(0, 2));  // the same year at noon
          EXPECT_EQ(de56.substr(12, 10), r.text[90].substr(10, 10));
          EXPECT_EQ(de56.substr(22, 13), "11" + r.text[90].substr(20, 11));
          const auto original = iso8583::read_original_data_93(view);
          ASSERT_TRUE(original.has_value());
          EXPECT_EQ(original->stan,
                    static_cast<std::uint32_t>(std::stoul(r.text[90].substr(4, 6))));
        }
      } else {
        EXPECT_EQ(de12, r.text[12]);
        EXPECT_EQ(view.has(90), r.present[90]);
      }
      answer_as_expected(g, r);
    }
    EXPECT_EQ(kinds.size(), kKindCount);
  }
}

TEST(NoAllocation, PerGeneratedRequestOnceWarm) {
  TrafficGenerator g(portfolio(), TrafficConfig::defaults(), 16);
  const iso8583::Dialect& d = iso8583::builtin_dialect("iso87-ascii");
  iso8583::MessageBuilder b(d);
  std::array<std::byte, 4096> buf{};
  std::vector<Request> pool(8);
  for (Request& r : pool) {
    reserve_request(r);
  }
  std::int64_t t = kNoon;
  const auto round = [&](int n) {
    for (int i = 0; i < n; ++i) {
      Request& r = pool[static_cast<std::size_t>(i) % pool.size()];
      ASSERT_TRUE(g.next(t += 7, r));
      ASSERT_TRUE(encode_request(d, r, b, buf).has_value());
      const Expectation& e = r.expected;
      const std::array<char, 2> c = e.codes[0];
      g.on_response(r, {c.data(), 2}, c[0] == '1' && c[1] == '0' ? e.amount_minor : -1);
    }
  };
  round(30'000);
  const std::uint64_t before = support::thread_allocations();
  round(10'000);
  EXPECT_EQ(support::thread_allocations() - before, 0U);
}

TEST(TrafficConfigTest, ShippedMixIsTheDefaults) {
  const TrafficConfig c =
      TrafficConfig::load(std::string(AS_SOURCE_DIR) + "/simulators/traffic/mix.toml");
  const TrafficConfig d = TrafficConfig::defaults();
  EXPECT_EQ(c.weights, d.weights);
  EXPECT_EQ(c.amount_median_minor, d.amount_median_minor);
  EXPECT_DOUBLE_EQ(c.amount_sigma, d.amount_sigma);
  EXPECT_EQ(c.mcc.size(), d.mcc.size());
  EXPECT_DOUBLE_EQ(c.completion_share, d.completion_share);
  EXPECT_EQ(c.rules.card_testing_threshold, d.rules.card_testing_threshold);
  EXPECT_EQ(c.rules.clock_margin_ms, d.rules.clock_margin_ms);
  EXPECT_EQ(c.acquirer_id, d.acquirer_id);
}

TEST(TrafficConfigTest, ErrorsNameFileLineAndKey) {
  std::string tmpl = (fs::temp_directory_path() / "sim_mix.XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const fs::path file = fs::path(tmpl) / "mix.toml";
  const auto error_of = [&](const std::string& text) {
    std::ofstream(file) << text;
    try {
      (void)TrafficConfig::load(file.string());
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("[weights]\npurchase = 1\ncard_tsting = 2\n")
                .find("mix.toml:3: weights.card_tsting"),
            std::string::npos);
  EXPECT_NE(error_of("\n[amounts]\nsigma = \"x\"\n").find("mix.toml:3: amounts.sigma"),
            std::string::npos);
  EXPECT_NE(error_of("[follow_ups]\ncompletion_share = 1.5\n").find("completion_share"),
            std::string::npos);
  EXPECT_NE(error_of("[mcc]\n7995 = 3\n").find("mix.toml:2: mcc.7995"), std::string::npos);
  EXPECT_NE(error_of("[nope]\n").find("mix.toml:1"), std::string::npos);
  EXPECT_NE(error_of("[weights\n").find("mix.toml:1"), std::string::npos);
  fs::remove_all(tmpl);
}

}  // namespace
}  // namespace authswitch::netsim
