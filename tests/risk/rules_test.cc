// Rule sets (risk/rules.h): each condition and action kind, combinations, shadow mode,
// overrides and their expiry, response-code policies, the shipped default set, malformed files
// with their exact errors, reading an authorization from a decoded message, and no allocation
// per evaluation.
#include "risk/rules.h"

#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "base/hash.h"
#include "iso8583/dialect_loader.h"
#include "iso8583/message.h"
#include "tests/support/alloc_counter.h"
#include "tests/support/sample_messages.h"

namespace authswitch::risk {
namespace {

// 2026-11-24T15:30:00Z, a Tuesday (10:30 in New York).
constexpr std::int64_t kNow = 1'795'534'200'000;

Authorization purchase() {
  Authorization a;
  a.mti = 100;
  a.amount_minor = 2'500;
  a.currency = 840;
  a.mcc = 5411;
  a.acquirer_country = 840;
  a.merchant_country.assign("US");
  a.pan_entry_code = 5;
  a.entry_mode = EntryMode::kChip;
  a.channel = Channel::kPos;
  a.card_present = true;
  a.terminal_id.assign("TERM0001");
  a.merchant_id.assign("MERCHANT000001");
  a.card_status = CardStatus::kActive;
  a.card_expiry_yymm = 2812;
  a.now_ms = kNow;
  return a;
}

std::unique_ptr<const RuleSet> compile(const std::string& rules, const std::string& head = "") {
  return compile_rules("version = \"t1\"\n" + head + rules, "test.toml");
}

// A one-rule set that declines with code 05 when `when` holds.
std::unique_ptr<const RuleSet> when(const std::string& condition) {
  return compile("[[rule]]\nid = \"r\"\nwhen = \"" + condition + "\"\naction = \"decline\"\n");
}

bool fires(const std::string& condition, const Authorization& a) {
  const auto set = when(condition);
  RiskDecision d;
  set->evaluate(a, {}, 0, d);
  return d.outcome == Outcome::kDecline;
}

// The error text of compiling `text`, or "" when it compiles.
std::string error_of(const std::string& text) {
  try {
    (void)compile_rules(text, "bad.toml");
  } catch (const RuleSetError& e) {
    return e.what();
  }
  return "";
}

TEST(Rules, NumericComparisonsAndLists) {
  Authorization a = purchase();
  EXPECT_TRUE(fires("amount > 2499", a));
  EXPECT_FALSE(fires("amount > 2500", a));
  EXPECT_TRUE(fires("amount >= 2500 and amount <= 2500 and amount == 2500", a));
  EXPECT_TRUE(fires("amount != 1 and amount < 2501", a));
  EXPECT_TRUE(fires("mcc in [5411, 5812]", a));
  EXPECT_TRUE(fires("mcc in [5000..5999]", a));
  EXPECT_FALSE(fires("mcc in [5000..5410, 5412..5999]", a));
  EXPECT_TRUE(fires("mcc not in [7995]", a));
  EXPECT_TRUE(fires("mti == 0100 and transaction_type == purchase", a));
  EXPECT_TRUE(fires("acquirer_country == 840 and currency == USD and currency == '840'", a));
  EXPECT_TRUE(fires("pan_entry_code == 5 and condition_code == 0", a));
  a.transaction_type = 9;
  EXPECT_TRUE(fires("transaction_type in [cashback, refund]", a));
}

TEST(Rules, AmountsInACurrencyAreExactMinorUnits) {
  Authorization a = purchase();
  a.amount_minor = 50'001;
  EXPECT_TRUE(fires("amount > 500.00 USD", a));
  EXPECT_TRUE(fires("amount > 500 USD", a));
  a.amount_minor = 50'000;
  EXPECT_FALSE(fires("amount > 500.00 USD", a));
  EXPECT_TRUE(fires("amount >= 500.00 USD", a));
  a.currency = 978;  // the same number of euro cents is not a USD amount
  a.amount_minor = 90'000;
  EXPECT_FALSE(fires("amount > 500.00 USD", a));
  EXPECT_TRUE(fires("amount > 500.00 EUR", a));
  a.currency = 392;  // JPY has no minor unit
  a.amount_minor = 60'000;
  EXPECT_TRUE(fires("amount > 50000 JPY", a));
  EXPECT_NE(error_of("version='x'\n[[rule]]\nid='r'\nwhen='amount > 1.5 JPY'\naction='review'\n"),
            "");
  EXPECT_NE(error_of("version='x'\n[[rule]]\nid='r'\nwhen='amount > 1.234 USD'\naction='review'\n")
                .find("USD has 2 decimals, '1.234' has 3"),
            std::string::npos);
}

TEST(Rules, TextsEnumsAndBooleans) {
  Authorization a = purchase();
  EXPECT_TRUE(fires("merchant_country == 'US' and terminal_id == 'TERM0001'", a));
  EXPECT_TRUE(fires("merchant_id in ['A', 'MERCHANT000001', 'Z']", a));
  EXPECT_TRUE(fires("merchant_country not in [FR, DE]", a));
  EXPECT_TRUE(fires("channel == pos and entry_mode == chip and card_status == active", a));
  EXPECT_TRUE(fires("card_present and not card_expired and not expiry_mismatch", a));
  a.presented_expiry_yymm = 2811;
  EXPECT_TRUE(fires("expiry_mismatch", a));
  a.card_expiry_yymm = 2610;  // October 2026, before November 2026 (kNow)
  EXPECT_TRUE(fires("card_expired", a));
  a.card_expiry_yymm = 2611;  // valid through the end of its month
  EXPECT_FALSE(fires("card_expired", a));
}

TEST(Rules, AndOrNotAndParenthesesFollowPrecedence) {
  const Authorization a = purchase();
  EXPECT_TRUE(fires("mcc == 1 or mcc == 5411 and amount == 2500", a));
  EXPECT_FALSE(fires("(mcc == 1 or mcc == 5411) and amount == 1", a));
  EXPECT_TRUE(fires("not (mcc == 1 or amount == 1)", a));
  EXPECT_TRUE(fires("not not mcc == 5411", a));
}

TEST(Rules, LocalTimeInAZone) {
  Authorization a = purchase();  // 15:30 UTC, 10:30 in New York, 16:30 in Berlin, a Tuesday
  EXPECT_TRUE(fires("local_hour('UTC') == 15 and local_minute('UTC') == 930", a));
  EXPECT_TRUE(fires("local_hour('America/New_York') == 10", a));
  EXPECT_TRUE(
      fires("local_hour('Europe/Berlin') in [16..17] and local_weekday('Europe/Berlin') == 2", a));
  a.now_ms = kNow + 8LL * 3'600'000;  // 23:30 UTC: 00:30 in Berlin on Wednesday
  EXPECT_TRUE(fires("local_hour('Europe/Berlin') == 0 and local_weekday('Europe/Berlin') == 3", a));
  const auto set =
      compile("[[rule]]\nid = \"r\"\nwhen = \"local_hour == 19\"\naction = \"decline\"\n",
              "time_zone = \"Asia/Kolkata\"\n");  // the default zone of local_* without one
  RiskDecision d;
  a.now_ms = kNow - 2LL * 3'600'000;  // 13:30 UTC = 19:00 in Kolkata
  set->evaluate(a, {}, 0, d);
  EXPECT_EQ(d.outcome, Outcome::kDecline);
}

TEST(Rules, NamedListsAreTypedByTheFieldTheyAreUsedWith) {
  const auto set = compile(
      "[[rule]]\nid = \"codes\"\nwhen = \"mcc in @risky\"\naction = \"score\"\nscore = 10\n"
      "[[rule]]\nid = \"countries\"\nwhen = \"merchant_country in @places\"\naction = "
      "\"score\"\nscore = 20\n",
      "[lists]\nrisky = [\"5400..5499\", 7995]\nplaces = [\"US\", \"CA\"]\n");
  RiskDecision d;
  set->evaluate(purchase(), {}, 0, d);
  EXPECT_EQ(d.score, 30);
  EXPECT_EQ(d.fired_count, 2);
}

TEST(Rules, EveryFiredRuleIsReportedInOrderWithItsValueAndThreshold) {
  const auto set = compile(R"(
[scoring]
decline_score = 50
[[rule]]
id = "big"
when = "mcc == 5411 and amount > 20.00 USD"
action = "score"
score = 30
[[rule]]
id = "listed"
when = "mcc in [5411]"
action = "review"
[[rule]]
id = "bigger"
when = "amount >= 1000"
action = "score"
score = 25
)");
  RiskDecision d;
  set->evaluate(purchase(), {}, 0, d);
  ASSERT_EQ(d.fired_count, 3);
  EXPECT_EQ(set->rules()[d.fired[0].rule].id, "big");
  EXPECT_EQ(d.fired[0].value, 2'500);
  EXPECT_EQ(d.fired[0].threshold, 2'000);
  EXPECT_EQ(set->rules()[d.fired[1].rule].id, "listed");
  EXPECT_EQ(d.fired[1].value, 0);  // a list membership has no threshold
  EXPECT_EQ(d.fired[2].threshold, 1'000);
  EXPECT_EQ(d.score, 55);
  EXPECT_EQ(d.outcome, Outcome::kDecline);  // 55 >= 50
  EXPECT_EQ(d.code(), "59");                // scoring.reason defaults to suspected_fraud
  EXPECT_EQ(d.deciding_rule, kNoRule);      // the score decided, not one rule
  EXPECT_EQ(d.generation, set->generation());
}

TEST(Rules, FirstEnforcedDeclineDecidesAndReviewNeverOverridesIt) {
  const auto set = compile(R"(
[[rule]]
id = "review-first"
when = "amount > 0"
action = "review"
[[rule]]
id = "fixed"
when = "amount > 0"
action = "decline"
code = "62"
[[rule]]
id = "reasoned"
when = "amount > 0"
action = "decline"
reason = "exceeds_amount"
)");
  RiskDecision d;
  set->evaluate(purchase(), {}, 0, d);
  EXPECT_EQ(d.outcome, Outcome::kDecline);
  EXPECT_EQ(d.code(), "62");
  EXPECT_EQ(set->rules()[d.deciding_rule].id, "fixed");
  EXPECT_EQ(d.fired_count, 3);
  const auto review = compile("[[rule]]\nid = \"r\"\nwhen = \"amount > 0\"\naction = \"review\"\n");
  review->evaluate(purchase(), {}, 0, d);
  EXPECT_EQ(d.outcome, Outcome::kReview);
  EXPECT_EQ(d.code(), "00");
}

TEST(Rules, ShadowRulesAreReportedButNeverChangeTheOutcome) {
  const auto set = compile(R"(
[scoring]
decline_score = 10
[[rule]]
id = "shadow-decline"
when = "amount > 0"
action = "decline"
mode = "shadow"
[[rule]]
id = "shadow-score"
when = "amount > 0"
action = "score"
score = 99
mode = "shadow"
[[rule]]
id = "off"
when = "amount > 0"
action = "decline"
mode = "off"
)");
  RiskDecision d;
  set->evaluate(purchase(), {}, 0, d);
  EXPECT_EQ(d.outcome, Outcome::kApprove);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.score, 0);
  EXPECT_EQ(d.shadow_score, 99);
  ASSERT_EQ(d.fired_count, 2);  // "off" is not evaluated
  EXPECT_TRUE(d.fired[0].shadow);
  EXPECT_TRUE(d.fired[1].shadow);
}

TEST(Rules, ResponseCodesFollowTheNetworksPolicy) {
  const auto set = compile(R"(
[response_codes.default]
suspected_fraud = "59"
[response_codes.plain]
suspected_fraud = "05"
[[rule]]
id = "r"
when = "amount > 0"
action = "decline"
reason = "suspected_fraud"
[[rule]]
id = "restricted"
when = "amount > 100000"
action = "decline"
reason = "restricted_card"
)");
  RiskDecision d;
  set->evaluate(purchase(), {}, set->network_policy("unlisted"), d);
  EXPECT_EQ(d.code(), "59");
  set->evaluate(purchase(), {}, set->network_policy("plain"), d);
  EXPECT_EQ(d.code(), "05");
  Authorization big = purchase();
  big.amount_minor = 200'000;
  EXPECT_EQ(set->network_policy("plain"), 1);
  set->evaluate(big, {}, 1, d);
  EXPECT_EQ(d.code(), "05");  // the first decline decides
}

TEST(Rules, OverridesSkipARuleForACardUntilTheyExpire) {
  const auto set = compile(R"(
[[rule]]
id = "foreign"
when = "merchant_country != 'US'"
action = "decline"
)");
  Authorization a = purchase();
  a.merchant_country.assign("FR");
  const std::uint16_t rule = *set->rule_index("foreign");
  EXPECT_EQ(set->rule_hash(rule), base::fnv1a32("foreign"));
  CardOverride travel{set->rule_hash(rule), {}, kNow + 7LL * 86'400'000};
  travel.country.assign("FR");
  RiskDecision d;
  set->evaluate(a, std::span(&travel, 1), 0, d);
  EXPECT_EQ(d.outcome, Outcome::kApprove);
  a.merchant_country.assign("DE");  // the override is for France only
  set->evaluate(a, std::span(&travel, 1), 0, d);
  EXPECT_EQ(d.outcome, Outcome::kDecline);
  a.merchant_country.assign("FR");
  a.now_ms = travel.expires_ms;  // expired
  set->evaluate(a, std::span(&travel, 1), 0, d);
  EXPECT_EQ(d.outcome, Outcome::kDecline);
  const CardOverride any_country{base::fnv1a32("foreign"), {}, kNow + 1};
  a.now_ms = kNow;
  set->evaluate(a, std::span(&any_country, 1), 0, d);
  EXPECT_EQ(d.outcome, Outcome::kApprove);
  EXPECT_FALSE(set->rule_index("nope").has_value());
}

TEST(Rules, MalformedFilesNameTheLineTheRuleAndTheReason) {
  EXPECT_EQ(error_of("version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = \"amout > 1\"\naction = "
                     "\"decline\"\n"),
            "bad.toml:4: rule 'a': when: column 1: unknown field 'amout'");
  EXPECT_EQ(error_of("version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = \"mcc > \"\naction = "
                     "\"decline\"\n"),
            "bad.toml:4: rule 'a': when: column 7: expected a whole number for 'mcc', found ''");
  EXPECT_EQ(error_of("version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = \"channel == web\"\naction = "
                     "\"decline\"\n"),
            "bad.toml:4: rule 'a': when: column 12: 'web' is not a channel (one of: pos, cnp, "
            "atm)");
  EXPECT_EQ(error_of("version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = \"mcc in @nope\"\naction = "
                     "\"decline\"\n"),
            "bad.toml:4: rule 'a': when: column 9: unknown list '@nope'");
  EXPECT_EQ(error_of("version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = \"(mcc == 1\"\naction = "
                     "\"decline\"\n"),
            "bad.toml:4: rule 'a': when: column 10: expected ')', found the end");
  EXPECT_EQ(error_of("version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = \"amount > 1\"\naction = "
                     "\"block\"\n"),
            "bad.toml:5: rule 'a': 'action' must be \"decline\", \"score\" or \"review\"");
  EXPECT_EQ(error_of("version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = \"amount > 1\"\naction = "
                     "\"score\"\n"),
            "bad.toml:2: rule 'a': 'score' is required for action \"score\": a non-zero integer "
            "in -10000..10000");
  EXPECT_EQ(error_of("version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = \"amount > 1\"\naction = "
                     "\"decline\"\nreason = \"because\"\n"),
            "bad.toml:6: rule 'a': unknown reason 'because' (one of: do_not_honour, "
            "suspected_fraud, restricted_card, not_permitted, exceeds_amount, exceeds_frequency, "
            "lost_card, stolen_card, expired_card, security_violation)");
  EXPECT_EQ(error_of("version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = \"amount > 1\"\naction = "
                     "\"review\"\nwhen_ = 1\n"),
            "bad.toml:6: rule 'a': unknown key 'when_' in a rule");
  EXPECT_EQ(error_of("version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = \"amount > 1\"\naction = "
                     "\"review\"\n[[rule]]\nid = \"a\"\nwhen = \"amount > 2\"\naction = "
                     "\"review\"\n"),
            "bad.toml:6: rule 'a': duplicate id (first defined on line 2)");
  EXPECT_EQ(error_of("[[rule]]\nid = \"a\"\nwhen = \"amount > 1\"\naction = \"review\"\n"),
            "bad.toml:1: 'version' is required (text recorded with every decision)");
  EXPECT_EQ(error_of("version = \"x\"\n"), "bad.toml:1: no [[rule]] tables");
  EXPECT_EQ(error_of("version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = \"local_hour('Mars/Base') "
                     "== 1\"\naction = \"review\"\n")
                .rfind("bad.toml:4: rule 'a': when: column 1: time zone 'Mars/Base': ", 0),
            0U);
  EXPECT_EQ(error_of("version = \"x\"\n[response_codes.n]\nsuspected_fraud = \"5\"\n[[rule]]\nid "
                     "= \"a\"\nwhen = \"amount > 1\"\naction = \"review\"\n"),
            "bad.toml:3: response_codes.n.suspected_fraud: a response code is two characters, "
            "e.g. \"05\"");
  EXPECT_EQ(error_of("version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = \"merchant_country > "
                     "'US'\"\naction = \"review\"\n"),
            "bad.toml:4: rule 'a': when: column 18: 'merchant_country' is text: only == and != "
            "apply");
  EXPECT_EQ(error_of("version = \"x\"\nthis is not toml\n").rfind("bad.toml:2: ", 0), 0U);
  // Every problem is listed, one per line.
  const std::string two = error_of(
      "version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = \"nope\"\naction = \"review\"\n[[rule]]\nid "
      "= \"B\"\nwhen = \"amount > 1\"\naction = \"review\"\n");
  EXPECT_EQ(two,
            "bad.toml:4: rule 'a': when: column 1: unknown field 'nope'\n"
            "bad.toml:6: rule 'B': 'id' is required: 1-64 of a-z 0-9 - _");
}

TEST(Rules, TheShippedDefaultSetCompilesAndDecidesTypicalCases) {
  const auto set = load_rules(std::string(AS_SOURCE_DIR) + "/config/rules.toml");
  EXPECT_EQ(set->version(), "default-2026-11-24");
  EXPECT_GE(set->rules().size(), 15U);
  RiskDecision d;
  const auto decide = [&](const Authorization& a) {
    set->evaluate(a, {}, 0, d);
    return d.code();
  };
  EXPECT_EQ(decide(purchase()), "00");
  Authorization a = purchase();
  a.card_status = CardStatus::kStolen;
  EXPECT_EQ(decide(a), "43");
  a = purchase();
  a.merchant_country.assign("IR");
  EXPECT_EQ(decide(a), "57");
  a = purchase();
  a.mcc = 7801;
  EXPECT_EQ(decide(a), "57");
  a = purchase();  // large CNP at a money-transfer merchant: 40 + 35 >= 70
  a.channel = Channel::kCnp;
  a.card_present = false;
  a.entry_mode = EntryMode::kEcommerce;
  a.mcc = 4829;
  a.amount_minor = 150'000;
  EXPECT_EQ(decide(a), "59");
  set->evaluate(a, {}, set->network_policy("network_b"), d);
  EXPECT_EQ(d.code(), "05");
  a.mcc = 6051;  // the shadow crypto rule fires too, without changing anything
  set->evaluate(a, {}, 0, d);
  EXPECT_EQ(d.shadow_score, 50);
  EXPECT_EQ(d.score, 75);
}

TEST(Rules, AuthorizationFromADecodedMessage) {
  for (const char* name : {"iso87-ascii", "iso87-bcd"}) {
    const iso8583::Dialect& dialect = iso8583::builtin_dialect(name);
    iso8583::MessageBuilder b(dialect);
    support::fill_sample_request(b, false);
    b.set_text(3, "090000");  // purchase with cash back
    b.set_text(22, "812");    // e-commerce
    b.set_text(25, "59");
    std::array<std::byte, 1024> buf{};
    const auto size = b.encode(buf);
    ASSERT_TRUE(size) << name;
    iso8583::MessageView m;
    ASSERT_TRUE(iso8583::decode(dialect, std::span(buf.data(), *size), m)) << name;
    Authorization a;
    ASSERT_TRUE(from_message(m, a)) << name;
    EXPECT_EQ(a.mti, 100);
    EXPECT_EQ(a.transaction_type, 9);
    EXPECT_EQ(a.amount_minor, 12'500);
    EXPECT_EQ(a.currency, 840);
    EXPECT_EQ(a.mcc, 5411);
    EXPECT_EQ(a.acquirer_country, 840);
    EXPECT_EQ(a.presented_expiry_yymm, 2712);
    EXPECT_EQ(a.pan_entry_code, 81);
    EXPECT_EQ(a.entry_mode, EntryMode::kEcommerce);
    EXPECT_EQ(a.condition_code, 59);
    EXPECT_EQ(a.channel, Channel::kCnp);
    EXPECT_FALSE(a.card_present);
    EXPECT_EQ(a.terminal_id.view(), "TERM0001");
    EXPECT_EQ(a.merchant_id.view(), "MERCHANT0000001");
    EXPECT_EQ(a.merchant_country.view(), "US");
  }
  {  // ISO 8583:1993 EBCDIC: DE 22 is the point-of-service data code, position 7 "5" = chip.
    const iso8583::Dialect& dialect = iso8583::builtin_dialect("iso93-ebcdic");
    iso8583::MessageBuilder b(dialect);
    support::fill_sample_request(b, true);
    std::array<std::byte, 1024> buf{};
    const auto size = b.encode(buf);
    ASSERT_TRUE(size);
    iso8583::MessageView m;
    ASSERT_TRUE(iso8583::decode(dialect, std::span(buf.data(), *size), m));
    Authorization a;
    ASSERT_TRUE(from_message(m, a));
    EXPECT_EQ(a.mti, 1100);
    EXPECT_EQ(a.entry_mode, EntryMode::kChip);
    EXPECT_EQ(a.merchant_country.view(), "US");
    EXPECT_EQ(a.amount_minor, 12'500);
  }
  Authorization cash;
  cash.transaction_type = 1;
  EXPECT_EQ(channel_of(cash), Channel::kAtm);
  Authorization chip;
  chip.entry_mode = EntryMode::kChip;
  EXPECT_EQ(channel_of(chip), Channel::kPos);
}

TEST(Rules, EvaluationAllocatesNothing) {
  const auto set = load_rules(std::string(AS_SOURCE_DIR) + "/config/rules.toml");
  Authorization a = purchase();
  RiskDecision d;
  set->evaluate(a, {}, 0, d);  // warm
  const support::AllocSnapshot before = support::alloc_snapshot();
  for (int i = 0; i < 1'000; ++i) {
    a.amount_minor = i * 1'000;
    a.channel = i % 3 == 0 ? Channel::kCnp : Channel::kAtm;
    a.now_ms = kNow + i * 600'000LL;
    set->evaluate(a, {}, 0, d);
  }
  const support::AllocSnapshot after = support::alloc_snapshot();
  EXPECT_EQ(after.allocations - before.allocations, 0U);
  EXPECT_EQ(after.jemalloc_bytes - before.jemalloc_bytes, 0U);
}

}  // namespace
}  // namespace authswitch::risk
