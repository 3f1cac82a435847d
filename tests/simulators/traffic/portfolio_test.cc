#include "simulators/traffic/portfolio.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <stdlib.h>

namespace authswitch::netsim {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  std::string tmpl = (fs::temp_directory_path() / (name + ".XXXXXX")).string();
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

SeedOptions small(std::uint64_t cards, std::uint64_t seed) {
  SeedOptions o;
  o.cards = cards;
  o.seed = seed;
  o.expiry_base_yy = 26;
  return o;
}

TEST(Luhn, KnownNumbers) {
  EXPECT_TRUE(luhn_valid("4111111111111111"));
  EXPECT_TRUE(luhn_valid("79927398713"));
  EXPECT_FALSE(luhn_valid("4111111111111112"));
  EXPECT_EQ(luhn_check_digit("7992739871"), '3');
  EXPECT_FALSE(luhn_valid("12a4"));
}

TEST(GeneratePortfolio, SameSeedSameCardsOtherSeedOtherCards) {
  const Portfolio a = generate_portfolio(small(2'000, 7));
  const Portfolio b = generate_portfolio(small(2'000, 7));
  const Portfolio c = generate_portfolio(small(2'000, 8));
  ASSERT_EQ(a.cards.size(), 2'000U);
  ASSERT_EQ(b.cards.size(), 2'000U);
  std::size_t differ = 0;
  for (std::size_t i = 0; i < a.cards.size(); ++i) {
    EXPECT_EQ(a.cards[i].pan, b.cards[i].pan);
    EXPECT_EQ(a.cards[i].expiry, b.cards[i].expiry);
    EXPECT_EQ(a.cards[i].account, b.cards[i].account);
    EXPECT_EQ(a.cards[i].balance_minor, b.cards[i].balance_minor);
    EXPECT_EQ(a.cards[i].status, b.cards[i].status);
    EXPECT_EQ(a.cards[i].profile, b.cards[i].profile);
    differ += a.cards[i].pan != c.cards[i].pan ? 1U : 0U;
  }
  EXPECT_GT(differ, 1'900U);
}

TEST(GeneratePortfolio, PansAreLuhnValidDistinctAndFromTheTestRange) {
  const Portfolio p = generate_portfolio(small(50'000, 3));
  std::set<std::string> seen;
  for (const TestCard& c : p.cards) {
    ASSERT_EQ(c.pan.size(), 16U);
    ASSERT_TRUE(luhn_valid(c.pan));
    ASSERT_EQ(c.pan.substr(0, 6), "499900");
    ASSERT_TRUE(seen.insert(c.pan).second) << "duplicate PAN at card " << seen.size();
  }
}

TEST(GeneratePortfolio, AccountsAreGroupsOfConsecutiveCards) {
  SeedOptions o = small(1'001, 1);
  o.cards_per_account = 3;
  const Portfolio p = generate_portfolio(o);
  std::map<std::string, int> per_account;
  for (std::size_t i = 0; i < p.cards.size(); ++i) {
    ++per_account[p.cards[i].account];
    if (i % 3 != 0) {
      EXPECT_EQ(p.cards[i].account, p.cards[i - 1].account);
      EXPECT_EQ(p.cards[i].balance_minor, p.cards[i - 1].balance_minor);
      EXPECT_EQ(p.cards[i].profile, p.cards[i - 1].profile);
    } else if (i > 0) {
      EXPECT_NE(p.cards[i].account, p.cards[i - 1].account);
    }
  }
  EXPECT_EQ(per_account.size(), 334U);
  EXPECT_EQ(per_account["SIM-0000333"], 2);
}

TEST(GeneratePortfolio, SharesAreRespected) {
  SeedOptions o = small(200'000, 11);
  o.blocked_share = 0.05;
  o.lost_share = 0.01;
  o.stolen_share = 0.02;
  o.expired_share = 0.03;
  const Portfolio p = generate_portfolio(o);
  std::map<std::string, double> status;
  double expired = 0;
  double low = 0;
  double tight = 0;
  for (const TestCard& c : p.cards) {
    status[c.status] += 1;
    const int yy = std::stoi(c.expiry.substr(0, 2));
    const int mm = std::stoi(c.expiry.substr(2, 2));
    ASSERT_GE(mm, 1);
    ASSERT_LE(mm, 12);
    if (yy < 26) {
      expired += 1;
      EXPECT_EQ(c.status, "active");
    } else {
      EXPECT_GE(yy, 28);
      EXPECT_LE(yy, 32);
    }
    low += c.balance_minor < kLowBalanceMax ? 1 : 0;
    tight += c.profile == kProfileTight ? 1 : 0;
    EXPECT_EQ(c.currency, 840);
  }
  const double n = static_cast<double>(p.cards.size());
  EXPECT_NEAR(status["blocked"] / n, 0.05, 0.003);
  EXPECT_NEAR(status["lost"] / n, 0.01, 0.0015);
  EXPECT_NEAR(status["stolen"] / n, 0.02, 0.002);
  EXPECT_NEAR(expired / n, 0.03 * (1 - 0.08), 0.003);
  EXPECT_NEAR(low / n, o.low_balance_share, 0.004);
  EXPECT_NEAR(tight / n, o.tight_share, 0.004);
}

TEST(Seed, WritesTheFilesAndTestCardsRoundTrip) {
  const fs::path dir = temp_dir("sim_seed");
  SeedOptions o = small(3'000, 5);
  o.out_dir = dir.string();
  ASSERT_EQ(seed(o), 0);
  ASSERT_TRUE(fs::exists(dir / "profiles.csv"));
  ASSERT_TRUE(fs::exists(dir / "cards.csv"));
  const Portfolio expected = generate_portfolio(o);
  const Portfolio loaded = Portfolio::load((dir / "test-cards.csv").string());
  ASSERT_EQ(loaded.cards.size(), expected.cards.size());
  for (std::size_t i = 0; i < loaded.cards.size(); ++i) {
    EXPECT_EQ(loaded.cards[i].pan, expected.cards[i].pan);
    EXPECT_EQ(loaded.cards[i].expiry, expected.cards[i].expiry);
    EXPECT_EQ(loaded.cards[i].account, expected.cards[i].account);
    EXPECT_EQ(loaded.cards[i].currency, expected.cards[i].currency);
    EXPECT_EQ(loaded.cards[i].balance_minor, expected.cards[i].balance_minor);
    EXPECT_EQ(loaded.cards[i].status, expected.cards[i].status);
    EXPECT_EQ(loaded.cards[i].profile, expected.cards[i].profile);
  }
  ASSERT_EQ(loaded.profiles.size(), 2U);
  const LimitProfileDef* tight = loaded.profile(kProfileTight);
  ASSERT_NE(tight, nullptr);
  const std::vector<LimitProfileDef> defaults = default_profiles();
  EXPECT_EQ(tight->channels[1].per_transaction_max, defaults[1].channels[1].per_transaction_max);
  EXPECT_EQ(tight->channels[2].day_count_max, defaults[1].channels[2].day_count_max);
  std::ifstream profiles(dir / "profiles.csv");
  std::string header;
  std::getline(profiles, header);
  EXPECT_EQ(header,
            "profile,channel,per_transaction_max,day_amount_max,day_count_max,month_amount_max,"
            "month_count_max");
  fs::remove_all(dir);
}

TEST(PortfolioLoad, ErrorsNameFileAndLineAndNeverThePan) {
  const fs::path dir = temp_dir("sim_load");
  const fs::path file = dir / "test-cards.csv";
  const std::string pan = "4999001234567890";  // not Luhn-valid
  std::ofstream(file) << "pan,expiry,account,currency,balance,status,profile\n"
                      << "4111111111111111,3012,A-1,840,100,active,sim\n\n"
                      << pan << ",3012,A-1,840,100,active,sim\n";
  try {
    (void)Portfolio::load(file.string());
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("test-cards.csv:4: pan"), std::string::npos) << what;
    EXPECT_EQ(what.find(pan), std::string::npos) << "the PAN leaked into the message";
    EXPECT_EQ(what.find("4111111111111111"), std::string::npos);
  }
  std::ofstream(file) << "pan,expiry,account,currency,balance,status,profile\n"
                      << "4111111111111111,3012,A-1,840,-5,active,sim\n";
  EXPECT_THROW((void)Portfolio::load(file.string()), std::runtime_error);
  std::ofstream(file) << "pan,expiry\n";
  EXPECT_THROW((void)Portfolio::load(file.string()), std::runtime_error);
  EXPECT_THROW((void)Portfolio::load((dir / "missing.csv").string()), std::runtime_error);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace authswitch::netsim
