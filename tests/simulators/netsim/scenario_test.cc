// The scenario parser (simulators/netsim/scenario.h): every shipped file parses, a small file
// parses into the steps it says, and every error names the file and line.
#include "simulators/netsim/scenario.h"

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace authswitch::netsim {
namespace {

std::vector<std::string> shipped_scenarios() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(std::string(AS_SOURCE_DIR) +
                                                           "/simulators/netsim/scenarios")) {
    if (e.path().extension() == ".scn") {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ScenarioParser, EveryShippedScenarioParses) {
  const std::vector<std::string> files = shipped_scenarios();
  ASSERT_GE(files.size(), 15U);
  for (const std::string& f : files) {
    try {
      const Scenario s = load_scenario(f);
      EXPECT_FALSE(s.steps.empty()) << f;
    } catch (const ScenarioError& e) {
      ADD_FAILURE() << e.what();
    }
  }
}

TEST(ScenarioParser, ReadsSetupSendsExpectsAndBalances) {
  const Scenario s = parse_scenario(R"(# a comment
profile scn-x pos=1/2/3/4/5 cnp=6/7/8/9/10 atm=11/12/13/14/15
account A balance=1000 currency=978   # trailing comment
card C account=A status=lost expiry=2912 profile=scn-x
card U unknown

send AUTH 0100 card=C 4=2500 18=7995
expect 0110 39=00|10 38=present 54=absent available=10 ledger=20
send REV 0400 card=C 90=@AUTH 95=remaining:100 22=-
expect 0410 39=00
send AGAIN 0101 same=AUTH
expect 0110 38=@AUTH
balance A balance=1000 held=0 available=1000
)",
                                    "t.scn");
  EXPECT_EQ(s.file, "t.scn");
  ASSERT_EQ(s.profiles.size(), 1U);
  EXPECT_EQ(s.profiles[0].limits[1][2], 8);
  EXPECT_EQ(s.profiles[0].limits[2][4], 15);
  ASSERT_EQ(s.accounts.size(), 1U);
  EXPECT_EQ(s.accounts[0].balance_minor, 1000);
  EXPECT_EQ(s.accounts[0].currency, "978");
  ASSERT_EQ(s.cards.size(), 2U);
  EXPECT_EQ(s.cards[0].status, "lost");
  EXPECT_EQ(s.cards[0].expiry, "2912");
  EXPECT_EQ(s.cards[0].profile, "scn-x");
  EXPECT_TRUE(s.cards[1].unknown);
  ASSERT_EQ(s.steps.size(), 7U);
  const ScenarioStep& send = s.steps[0];
  EXPECT_EQ(send.kind, ScenarioStep::Kind::kSend);
  EXPECT_EQ(send.line, 7);
  EXPECT_EQ(send.label, "AUTH");
  EXPECT_EQ(send.mti, 100);
  EXPECT_EQ(send.card, "C");
  ASSERT_EQ(send.fields.size(), 2U);
  EXPECT_EQ(send.fields[1].de, 18);
  EXPECT_EQ(send.fields[1].value, "7995");
  const ScenarioStep& expect = s.steps[1];
  EXPECT_EQ(expect.kind, ScenarioStep::Kind::kExpect);
  EXPECT_EQ(expect.mti, 110);
  EXPECT_EQ(expect.label, "AUTH");
  EXPECT_EQ(expect.available, 10);
  EXPECT_EQ(expect.ledger, 20);
  ASSERT_EQ(expect.fields.size(), 3U);
  EXPECT_EQ(expect.fields[0].value, "00|10");
  EXPECT_EQ(s.steps[2].fields[0].value, "@AUTH");
  EXPECT_EQ(s.steps[2].fields[1].value, "remaining:100");
  EXPECT_EQ(s.steps[2].fields[2].value, "-");
  EXPECT_EQ(s.steps[4].same, "AUTH");
  EXPECT_EQ(s.steps[6].kind, ScenarioStep::Kind::kBalance);
  EXPECT_EQ(s.steps[6].held, 0);
  EXPECT_EQ(s.steps[6].balance, 1000);
}

struct BadCase {
  const char* text;
  const char* error;  // the whole "file:line: ..." message starts with this
};

class ScenarioErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ScenarioErrors, NameTheFileAndLine) {
  try {
    (void)parse_scenario(GetParam().text, "bad.scn");
    ADD_FAILURE() << "parsed: " << GetParam().text;
  } catch (const ScenarioError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind(GetParam().error, 0), 0U) << what;
  }
}

constexpr const char* kSetup = "account A balance=100\ncard C account=A\n";

INSTANTIATE_TEST_SUITE_P(
    Parser, ScenarioErrors,
    ::testing::Values(
        BadCase{"frobnicate x\n", "bad.scn:1: unknown directive 'frobnicate'"},
        BadCase{"", "bad.scn:0: no send line"},
        BadCase{"# only a comment\n\n", "bad.scn:0: no send line"},
        BadCase{"account A\nsend S 0800 70=301\nexpect 0810\n",
                "bad.scn:1: account A: balance= is required"},
        BadCase{"account A balance=-5\n", "bad.scn:1: balance: '-5' is not an amount"},
        BadCase{"account A balance=10 currency=US\n", "bad.scn:1: currency: 'US'"},
        BadCase{"account A balance=10 colour=red\n", "bad.scn:1: account: unknown key 'colour'"},
        BadCase{"account A balance=1\naccount A balance=2\n",
                "bad.scn:2: account A declared twice"},
        BadCase{"account A balance=1 x\n", "bad.scn:1: expected KEY=VALUE, got 'x'"},
        BadCase{"account this-name-is-far-too-long balance=1\n", "bad.scn:1: account name"},
        BadCase{"card C account=NOPE\n", "bad.scn:1: card C: no account 'NOPE'"},
        BadCase{"account A balance=1\ncard C account=A status=melted\n",
                "bad.scn:2: status: 'melted'"},
        BadCase{"account A balance=1\ncard C account=A expiry=13\n",
                "bad.scn:2: expiry: '13' is not YYMM"},
        BadCase{"account A balance=1\ncard C account=A profile=scn-none\n",
                "bad.scn:2: card C: no profile 'scn-none'"},
        BadCase{"card C status=lost\n", "bad.scn:1: card C: account= is required"},
        BadCase{"profile mine pos=1/2/3/4/5\n", "bad.scn:1: profile 'mine': scenario profile"},
        BadCase{"profile scn-p pos=1/2/3/4 cnp=1/2/3/4/5 atm=1/2/3/4/5\n",
                "bad.scn:1: profile pos: expected 5 limits"},
        BadCase{"profile scn-p pos=1/2/3/4/5\n", "bad.scn:1: profile scn-p: give pos=, cnp="},
        BadCase{"profile scn-p web=1/2/3/4/5\n", "bad.scn:1: profile: unknown channel 'web'"},
        BadCase{"send S 0800 70=301\nexpect 0810\naccount A balance=1\n",
                "bad.scn:3: account must come before the first send"},
        BadCase{"send S 080 70=301\n", "bad.scn:1: MTI '080' is not four digits"},
        BadCase{"send S 0110 70=301\n", "bad.scn:1: MTI 0110 is not a request"},
        BadCase{"send S\n", "bad.scn:1: missing MTI"},
        BadCase{"send S 0800 70=301\nsend T 0800 70=301\nexpect 0810\n",
                "bad.scn:1: send has no expect line after it"},
        BadCase{"send S 0800 70=301\n", "bad.scn:1: send has no expect line after it"},
        BadCase{"expect 0810\n", "bad.scn:1: expect without a send before it"},
        BadCase{"send S 0800 70=301\nexpect 0810\nsend S 0800 70=301\n",
                "bad.scn:3: label S used twice"},
        BadCase{"send S 0100 card=Z 4=1\n", "bad.scn:1: no card 'Z' declared"},
        BadCase{"send S 0100 same=Q\n", "bad.scn:1: same=Q: no earlier send"},
        BadCase{"send S 0100 900=1\n", "bad.scn:1: '900' is not a data element number"},
        BadCase{"send S 0100 65=1\n", "bad.scn:1: '65' is not a data element number"},
        BadCase{"send S 0100 4=\n", "bad.scn:1: DE 4: empty value"},
        BadCase{"send S 0400 90=@NOPE\n", "bad.scn:1: DE 90=@NOPE: no earlier send"},
        BadCase{"send S 0800 70=301\nexpect 0810\nsend T 0400 11=@S\n",
                "bad.scn:3: DE 11: @LABEL references are for DE 90"},
        BadCase{"send S 0400 4=remaining:5\n", "bad.scn:1: DE 4: remaining: is for DE 95"},
        BadCase{"send S 0400 95=remaining:x\n", "bad.scn:1: remaining: 'x' is not an amount"},
        BadCase{"send S 0800 70=301\nexpect 0810 38=@NOPE\n",
                "bad.scn:2: DE 38=@NOPE: no earlier send"},
        BadCase{"send S 0800 70=301\nexpect 0810 available=lots\n",
                "bad.scn:2: available: 'lots' is not an amount"},
        BadCase{"send S 0800 70=301\nexpect 0810\nbalance B held=0\n",
                "bad.scn:3: balance: no account 'B'"},
        BadCase{"account A balance=1\nsend S 0800 70=301\nexpect 0810\nbalance A\n",
                "bad.scn:4: balance: give at least one of"},
        BadCase{"account A balance=1\nsend S 0800 70=301\nexpect 0810\nbalance A due=1\n",
                "bad.scn:4: balance: unknown key 'due'"},
        BadCase{"account A balance=1\nsend S 0800 70=301\nbalance A held=1\n",
                "bad.scn:2: send has no expect line after it"}));

TEST(ScenarioParser, MissingFileIsAnError) {
  EXPECT_THROW((void)load_scenario("/nonexistent/x.scn"), ScenarioError);
}

TEST(ScenarioParser, SetupHelperIsValid) {
  const std::string text = std::string(kSetup) + "send S 0100 card=C 4=1\nexpect 0110 39=00\n";
  EXPECT_NO_THROW((void)parse_scenario(text, "ok.scn"));
}

}  // namespace
}  // namespace authswitch::netsim
