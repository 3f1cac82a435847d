// Velocity rules (risk/rules.h, [[velocity]]): compiled into the holds script's arguments, run
// by limits/scripts/holds.lua against a real redis-server in the same call that places the hold,
// and reported back as fired rules.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "limits/holds_script.h"
#include "limits/redis_pipeline.h"
#include "risk/rules.h"
#include "tests/support/pipeline_driver.h"
#include "tests/support/redis_fixture.h"

namespace authswitch::risk {
namespace {

using namespace std::chrono_literals;
constexpr std::int64_t kNow = 1'795'534'200'000;  // 2026-11-24T15:30:00Z

std::string error_of(const std::string& text) {
  try {
    (void)compile_rules(text, "v.toml");
  } catch (const RuleSetError& e) {
    return e.what();
  }
  return "";
}

const char* const kSet = R"(
version = "v1"
[scoring]
decline_score = 50
[[rule]]
id = "blocked"
when = "card_status == blocked"
action = "decline"
reason = "restricted_card"
[[velocity]]
id = "testing"
counts = "declines"
window = "10m"
threshold = 2
action = "decline"
reason = "suspected_fraud"
[[velocity]]
id = "cnp-count"
window = "1h"
filter = "channel == cnp"
threshold = 1
action = "score"
score = 30
[[velocity]]
id = "cnp-count-shadow"
window = "1h"
filter = "channel == cnp"
threshold = 0
action = "decline"
mode = "shadow"
[[velocity]]
id = "off"
kind = "first_mcc"
action = "review"
mode = "off"
)";

TEST(Velocity, CompilesToTheScriptsArguments) {
  const auto set = compile_rules(kSet, "v.toml");
  EXPECT_EQ(set->rules().size(), 5U);
  EXPECT_TRUE(set->rules()[1].velocity);
  Authorization a;
  a.channel = Channel::kCnp;
  a.merchant_country.assign("US");
  RiskDecision d;
  set->evaluate(a, {}, 0, d);
  ScriptArgs args;
  set->script_args(a, d, 0, args);
  // Per call: the stateless verdict and score, the country, the policy, each counter's filter.
  EXPECT_EQ(std::vector<std::string>(args.args().begin(), args.args().end()),
            (std::vector<std::string>{"", "0", "US", "1", "11"}));  // cnp: both counters match
  // The rest is built into the holds library, once per policy.
  ASSERT_EQ(set->velocity_definitions().size(), 1U);
  const std::vector<std::string>& got = set->velocity_definitions()[0];
  ASSERT_EQ(got.size(), 3U + 2 * 4 + 1 + 3 * 8);  // two counters: the cnp rules share one
  EXPECT_EQ(std::vector<std::string>(got.begin(), got.begin() + 3),
            (std::vector<std::string>{"50", "59", "2"}));
  EXPECT_EQ(got[4], "c");
  EXPECT_EQ(got[5], "d");
  EXPECT_EQ(got[6], "600000");
  EXPECT_EQ(got[11], "3");  // three rules sent ("off" is not)
  EXPECT_EQ(std::vector<std::string>(got.begin() + 12, got.begin() + 20),
            (std::vector<std::string>{"w", "1", "n", "2", "d", "59", "0", "0"}));
  EXPECT_EQ(got[21], "2");  // the cnp rules share counter 2
  EXPECT_EQ(got[35], "1");  // shadow
  a.channel = Channel::kPos;
  a.card_status = CardStatus::kBlocked;
  set->evaluate(a, {}, 0, d);
  set->script_args(a, d, 0, args);
  EXPECT_EQ(args.args()[0], "62");  // the stateless verdict travels with them
  EXPECT_EQ(args.args()[4], "10");  // a POS authorization does not pass the cnp filter
}

// Each response-code policy has its own definitions (the codes differ); a call names its
// network's by number.
TEST(Velocity, EachPolicyHasItsDefinitionsAndCallsNameTheirsByNumber) {
  const auto set = compile_rules(
      std::string(kSet) + "[response_codes.net_b]\nsuspected_fraud = \"05\"\n", "v.toml");
  ASSERT_EQ(set->velocity_definitions().size(), 2U);
  const std::uint16_t b = set->network_policy("net_b");
  ASSERT_EQ(b, 1U);
  EXPECT_EQ(set->velocity_definitions()[0][17], "59");  // rule 1's code, default policy
  EXPECT_EQ(set->velocity_definitions()[1][17], "05");  // net_b's
  EXPECT_EQ(set->velocity_definitions()[1][1], "05");   // and its score-decline code
  Authorization a;
  a.merchant_country.assign("US");
  RiskDecision d;
  set->evaluate(a, {}, b, d);
  ScriptArgs args;
  set->script_args(a, d, b, args);
  EXPECT_EQ(args.args()[3], "2");
}

TEST(Velocity, FiredEntriesMapBackToRules) {
  const auto set = compile_rules(kSet, "v.toml");
  RiskDecision d;
  set->add_fired_velocity("1:3:2;3:1:0:s;9:1:1;junk;2:x:1", d);
  ASSERT_EQ(d.fired_count, 2);
  EXPECT_EQ(set->rules()[d.fired[0].rule].id, "testing");
  EXPECT_EQ(d.fired[0].value, 3);
  EXPECT_EQ(d.fired[0].threshold, 2);
  EXPECT_FALSE(d.fired[0].shadow);
  EXPECT_EQ(set->rules()[d.fired[1].rule].id, "cnp-count-shadow");
  EXPECT_TRUE(d.fired[1].shadow);
}

TEST(Velocity, MalformedVelocityTablesAreReported) {
  const std::string head =
      "version = \"x\"\n[[rule]]\nid = \"r\"\nwhen = \"amount > 1\"\naction = \"review\"\n";
  EXPECT_EQ(
      error_of(head +
               "[[velocity]]\nid = \"v\"\nwindow = \"10y\"\nthreshold = 1\naction = \"review\"\n"),
      "v.toml:8: rule 'v': 'window' is required: a duration from 1m to 30d, e.g. \"10m\", "
      "\"24h\", \"7d\"");
  EXPECT_EQ(error_of(head + "[[velocity]]\nid = \"v\"\nwindow = \"10m\"\nthreshold = 1\naction = "
                            "\"review\"\nfilter = \"chanel == cnp\"\n"),
            "v.toml:11: rule 'v': filter: column 1: unknown field 'chanel'");
  EXPECT_EQ(error_of(head + "[[velocity]]\nid = \"v\"\nkind = \"speed\"\naction = \"review\"\n"),
            "v.toml:8: rule 'v': 'kind' must be \"window\", \"consecutive_declines\", "
            "\"first_country\", \"first_mcc\" or \"country_change\"");
  EXPECT_EQ(
      error_of(head + "[[velocity]]\nid = \"v\"\nkind = \"country_change\"\naction = \"review\"\n"),
      "v.toml:6: rule 'v': 'within' is required for country_change: a duration, e.g. \"2h\"");
  EXPECT_EQ(
      error_of(head + "[[velocity]]\nid = \"r\"\nkind = \"first_mcc\"\naction = \"review\"\n"),
      "v.toml:6: rule 'r': duplicate id (first defined on line 2)");
}

// The switch's path, for real: stateless rules, then one FCALL of the holds library carrying
// the velocity arguments, then the fired rules added to the decision.
class VelocityInRedis : public support::SharedRedisTest {
 protected:
  void SetUp() override {
    support::SharedRedisTest::SetUp();
    (void)support::redis_command(redis(), {"HSET", "as:{a:1}", "cur", "840", "bal", "1000000",
                                           "held", "0", "st", "active", "od", "0"});
    (void)support::redis_command(redis(),
                                 {"HSET", "as:{a:1}:c:tok1", "st", "active", "exp", "2812"});
    limits::RedisPipeline::Options o;
    o.host = support::RedisServer::kHost;
    o.port = server().port();
    pipeline_ = std::make_unique<limits::RedisPipeline>(o);
    ASSERT_TRUE(support::drive(*pipeline_, [&] { return pipeline_->ready(); }));
  }

  class Result final : public limits::Completion {
   public:
    void on_reply(const limits::Reply& r) noexcept override {
      parsed = limits::parse_decision(r, d);
      done = true;
    }
    void on_error(limits::ClientErrc, std::string_view) noexcept override { done = true; }
    bool done = false;
    bool parsed = false;
    limits::Decision d;
  };

  // One authorization through rules and script; returns the script's decision and fills `risk`.
  limits::Decision authorize(const RuleSet& set, const std::string& txn, const Authorization& a,
                             RiskDecision& risk) {
    // The library with the set's velocity definitions, as the switch registers it (the same text
    // again only counts a reference; its load runs ahead of the call on the connection).
    const limits::FunctionLibrary library = limits::make_holds_library(set.velocity_definitions());
    function_ = pipeline_->load_library(library.text, library.library, library.function);
    set.evaluate(a, {}, 0, risk);
    ScriptArgs extra;
    set.script_args(a, risk, 0, extra);
    limits::AuthRequest r;
    r.txn_key = txn;
    r.amount_minor = a.amount_minor;
    r.currency = "840";
    r.channel = a.channel == Channel::kCnp ? "cnp" : "pos";
    r.mcc = "5411";
    r.day = "20261124";
    r.month = "202611";
    r.current_yymm = "2611";
    r.hold_ttl_ms = 86'400'000;
    r.limits = {100'000, 1'000'000, 100, 10'000'000, 1'000};
    limits::HoldsCall call;
    EXPECT_TRUE(call.set_auth(function_, "auth", "1", "tok1", r, a.now_ms, 86'400'000, txn));
    Result res;
    EXPECT_FALSE(
        pipeline_->submit(call.args(), extra.args(), res, std::chrono::steady_clock::now() + 2s));
    pipeline_->flush();
    EXPECT_TRUE(support::drive(*pipeline_, [&] { return res.done; }));
    EXPECT_TRUE(res.parsed);
    set.add_fired_velocity(res.d.fired_text(), risk);
    return res.d;
  }

  std::unique_ptr<limits::RedisPipeline> pipeline_;
  std::string_view function_;
};

TEST_F(VelocityInRedis, StatelessDeclinesCountTowardCardTestingInTheSameCall) {
  const auto set = compile_rules(kSet, "v.toml");
  Authorization a;
  a.amount_minor = 1'000;
  a.currency = 840;
  a.channel = Channel::kPos;
  a.card_status = CardStatus::kBlocked;  // the card record the switch's cache holds
  a.now_ms = kNow;
  RiskDecision risk;
  EXPECT_EQ(authorize(*set, "t1", a, risk).code(), "62");
  EXPECT_EQ(authorize(*set, "t2", a, risk).code(), "62");
  a.card_status = CardStatus::kActive;  // unblocked: but two declines in ten minutes already
  a.now_ms = kNow + 60'000;
  const limits::Decision d = authorize(*set, "t3", a, risk);
  EXPECT_EQ(d.code(), "59");
  EXPECT_EQ(d.reason_text(), "velocity");
  ASSERT_EQ(risk.fired_count, 1);
  EXPECT_EQ(set->rules()[risk.fired[0].rule].id, "testing");
  EXPECT_EQ(risk.fired[0].value, 3);
  a.now_ms = kNow + 11 * 60'000;
  EXPECT_EQ(authorize(*set, "t4", a, risk).code(), "00");
}

TEST_F(VelocityInRedis, ScoresFromBothSidesAddUpAndShadowRulesOnlyReport) {
  const auto set = compile_rules(kSet, "v.toml");
  Authorization a;
  a.amount_minor = 1'000;
  a.currency = 840;
  a.channel = Channel::kCnp;
  a.card_status = CardStatus::kActive;
  a.now_ms = kNow;
  RiskDecision risk;
  limits::Decision d = authorize(*set, "c1", a, risk);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.fired_text(), "3:1:0:s");  // the shadow rule would have declined
  a.now_ms = kNow + 1'000;
  d = authorize(*set, "c2", a, risk);  // second CNP in the hour: +30, under 50
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.fired_text(), "2:2:1;3:2:0:s");
  ASSERT_EQ(risk.fired_count, 2);
  EXPECT_EQ(set->rules()[risk.fired[0].rule].id, "cnp-count");
}

TEST_F(VelocityInRedis, TheShippedDefaultSetRunsInTheScript) {
  const auto set = load_rules(std::string(AS_SOURCE_DIR) + "/config/rules.toml");
  Authorization a;
  a.amount_minor = 2'000;
  a.currency = 840;
  a.mcc = 5411;
  a.channel = Channel::kPos;
  a.entry_mode = EntryMode::kChip;
  a.merchant_country.assign("US");
  a.card_status = CardStatus::kActive;
  a.card_expiry_yymm = 2812;
  a.now_ms = kNow;
  RiskDecision risk;
  EXPECT_EQ(authorize(*set, "d1", a, risk).code(), "00");
  a.merchant_country.assign("FR");  // ten minutes later in France
  a.now_ms = kNow + 600'000;
  const limits::Decision d = authorize(*set, "d2", a, risk);
  EXPECT_EQ(d.code(), "00");  // impossible travel scores 40 < 70; new-country is shadow
  bool travel = false;
  for (const FiredRule& f : risk.fired_rules()) {
    travel = travel || set->rules()[f.rule].id == "impossible-travel";
  }
  EXPECT_TRUE(travel) << d.fired_text();
}

}  // namespace
}  // namespace authswitch::risk
