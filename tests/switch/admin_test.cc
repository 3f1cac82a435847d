// authswitch-admin (switch/admin/) end to end: the real binary, run with fork/exec against the
// shared private redis-server, its stdout, stderr and exit status captured. Imports are checked
// key by key against the data model (limits/layout.h, limits/holds_script.h), bad files against
// their exact error lines and a full dump of the database (nothing changed), and card and
// account commands against the holds script itself (a block declines the next authorization).
#include "switch/admin/admin.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/hash.h"
#include "limits/holds_script.h"
#include "limits/layout.h"
#include "limits/pan_token.h"
#include "tests/support/holds_library.h"
#include "tests/support/redis_fixture.h"
#include "tests/support/redis_server.h"
#include "tests/support/sample_auth.h"

namespace authswitch::limits {
namespace {

namespace fs = std::filesystem;
using support::RedisReplyPtr;

// A test key (never a production one), as the tool reads it from the environment.
constexpr const char* kKeyHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
constexpr std::int64_t kNow = 1'700'000'000'000;  // 2023-11-14T22:13:20Z
constexpr std::int64_t kHoldTtl = 3'600'000;
constexpr const char* kPan1 = "4111111111111111";
constexpr const char* kPan2 = "4111111111111129";
constexpr const char* kPan3 = "5500000000000004";
constexpr const char* kCardsHeader = "pan,expiry,account,currency,balance,status,profile\n";
constexpr const char* kProfilesHeader =
    "profile,channel,per_transaction_max,day_amount_max,day_count_max,month_amount_max,"
    "month_count_max\n";

struct Outcome {
  int status = -1;
  std::string out;
  std::string err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::int64_t limits_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string token_of(const std::string& pan) {
  SoftwareCardCrypto crypto(TokenKey::from_hex(kKeyHex, "test key"));
  const auto t = crypto.tokenize(pan);
  EXPECT_TRUE(t.has_value());
  return std::string(t ? t->view() : std::string_view());
}

class AdminTest : public support::SharedRedisTest {
 protected:
  void SetUp() override {
    support::SharedRedisTest::SetUp();
    std::string tmpl = (fs::temp_directory_path() / "admin_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    address_ = "127.0.0.1:" + std::to_string(server().port());
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Runs the tool in the test's folder (so no config/authswitch.toml is found) with --redis and
  // the test key in the environment; `stdin_text` is its standard input.
  Outcome admin(std::vector<std::string> args, const std::string& stdin_text = "",
                bool with_redis = true) {
    if (with_redis) {
      args.insert(args.begin(), {"--redis", address_});
    }
    const fs::path in = dir_ / "stdin", out = dir_ / "stdout", err = dir_ / "stderr";
    std::ofstream(in) << stdin_text;
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> argv;
      std::string binary = AS_ADMIN_BINARY;
      argv.push_back(binary.data());
      for (std::string& a : args) {
        argv.push_back(a.data());
      }
      argv.push_back(nullptr);
      const int fd_in = open(in.c_str(), O_RDONLY);
      const int fd_out = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      const int fd_err = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd_in < 0 || fd_out < 0 || fd_err < 0 || dup2(fd_in, 0) < 0 || dup2(fd_out, 1) < 0 ||
          dup2(fd_err, 2) < 0 || chdir(dir_.c_str()) != 0 ||
          setenv(kTokenKeyEnvVar, kKeyHex, 1) != 0) {
        _exit(127);
      }
      execv(argv[0], argv.data());
      _exit(127);
    }
    Outcome r;
    int wstatus = 0;
    EXPECT_EQ(waitpid(pid, &wstatus, 0), pid);
    r.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }

  std::string write_file(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }

  RedisReplyPtr cmd(std::initializer_list<std::string_view> args) {
    return support::redis_command(redis(), args);
  }
  std::map<std::string, std::string> hash(const std::string& key) {
    const auto r = cmd({"HGETALL", key});
    std::map<std::string, std::string> m;
    for (std::size_t i = 0; i + 1 < r->elements; i += 2) {
      m[r->element[i]->str] = r->element[i + 1]->str;
    }
    return m;
  }
  std::set<std::string> members(const std::string& key) {
    const auto r = cmd({"SMEMBERS", key});
    std::set<std::string> s;
    for (std::size_t i = 0; i < r->elements; ++i) {
      s.insert(r->element[i]->str);
    }
    return s;
  }
  std::vector<std::string> keys() {
    const auto r = cmd({"KEYS", "*"});
    std::vector<std::string> k;
    for (std::size_t i = 0; i < r->elements; ++i) {
      k.emplace_back(r->element[i]->str, r->element[i]->len);
    }
    std::sort(k.begin(), k.end());
    return k;
  }
  // The whole database: every key with its DUMP, for "changed nothing" checks (pipelined).
  std::string dump() {
    const std::vector<std::string> all = keys();
    for (const std::string& k : all) {
      std::array<const char*, 2> argv{"DUMP", k.c_str()};
      const std::array<std::size_t, 2> lens{4, k.size()};
      EXPECT_EQ(
          redisAppendCommandArgv(&redis(), 2, const_cast<const char**>(argv.data()), lens.data()),
          REDIS_OK);
    }
    std::string s;
    for (const std::string& k : all) {
      void* raw = nullptr;
      EXPECT_EQ(redisGetReply(&redis(), &raw), REDIS_OK);
      const RedisReplyPtr r(static_cast<redisReply*>(raw));
      s += k + "=" + (r && r->str != nullptr ? std::string(r->str, r->len) : "?") + "\n";
    }
    return s;
  }
  // Every key name and every value in the database, as text.
  std::string all_text() {
    std::string s;
    for (const std::string& k : keys()) {
      s += k + "\n";
      const std::string type = cmd({"TYPE", k})->str;
      RedisReplyPtr r;
      if (type == "hash") {
        r = cmd({"HGETALL", k});
      } else if (type == "set") {
        r = cmd({"SMEMBERS", k});
      } else if (type == "string") {
        s += std::string(cmd({"GET", k})->str) + "\n";
        continue;
      } else if (type == "zset") {
        r = cmd({"ZRANGE", k, "0", "-1", "WITHSCORES"});
      } else if (type == "stream") {
        const auto x = cmd({"XRANGE", k, "-", "+"});
        for (std::size_t i = 0; i < x->elements; ++i) {
          const redisReply* fields = x->element[i]->element[1];
          for (std::size_t j = 0; j < fields->elements; ++j) {
            s += std::string(fields->element[j]->str) + "\n";
          }
        }
        continue;
      }
      for (std::size_t i = 0; r && i < r->elements; ++i) {
        s += std::string(r->element[i]->str, r->element[i]->len) + "\n";
      }
    }
    return s;
  }
  // The change feed's entries as "kind id".
  std::vector<std::string> changes() {
    const auto x = cmd({"XRANGE", kChangesKey, "-", "+"});
    std::vector<std::string> out;
    for (std::size_t i = 0; i < x->elements; ++i) {
      const redisReply* f = x->element[i]->element[1];
      out.push_back(std::string(f->element[1]->str) + " " + f->element[3]->str);
    }
    return out;
  }

  void import_default_profiles() { ASSERT_EQ(admin({"import", "profiles"}).status, 0); }
  void import_gold_profile() {
    const std::string f = write_file("gold.csv", std::string(kProfilesHeader) +
                                                     "gold,pos,900000,1000000,50,5000000,500\n"
                                                     "gold,cnp,250000,500000,30,2500000,300\n"
                                                     "gold,atm,100000,100000,10,1000000,100\n");
    ASSERT_EQ(admin({"import", "profiles", f}).status, 0);
  }
  // Two cards of account A1 (one gold), one stolen card of account B2.
  std::string three_cards(const std::string& second_profile = "gold") {
    return std::string(kCardsHeader) + kPan1 + ",2812,A1,840,100000,active,\n" + kPan2 +
           ",2901,A1,840,100000,active," + second_profile + "\n" + kPan3 +
           ",2712,B2,978,500,stolen,default\n";
  }

  // The holds script's auth of `amount` on the card `pan`, as a switch sends it.
  std::string auth(const std::string& txn, const std::string& pan, std::int64_t amount) {
    const std::string function = support::load_holds(redis());
    AuthRequest r = support::sample_auth(txn, amount, {500'000, 1'000'000, 50, 5'000'000, 500});
    r.hold_ttl_ms = kHoldTtl;
    HoldsCall call;
    const std::string token = token_of(pan);
    const std::string fingerprint = "fp-" + txn;  // the call keeps views: they must outlive it
    EXPECT_TRUE(call.set_auth(function, "auth", "A1", token, r, kNow, 86'400'000, fingerprint));
    const auto reply = support::redis_command(redis(), call.args());
    EXPECT_EQ(reply->type, REDIS_REPLY_ARRAY);
    return reply->type == REDIS_REPLY_ARRAY ? std::string(reply->element[0]->str) : "";
  }

  fs::path dir_;
  std::string address_;
};

class AdminProfiles : public AdminTest {};
class AdminCards : public AdminTest {};
class AdminBadCards : public AdminTest {};
class AdminAccount : public AdminTest {};
class AdminCard : public AdminTest {};
class AdminUsage : public AdminTest {};
class AdminRules : public AdminTest {};

TEST_F(AdminProfiles, ImportsTheShippedDefaultsEmbeddedInTheBinary) {
  const Outcome r = admin({"import", "profiles"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "imported 1 profile (default)\n");
  EXPECT_EQ(r.err, "");
  const auto p = hash("as:p:default");
  EXPECT_EQ(p.size(), 15U);
  EXPECT_EQ(p.at("pos.txn"), "500000");
  EXPECT_EQ(p.at("cnp.dA"), "500000");
  EXPECT_EQ(p.at("atm.mN"), "100");
  EXPECT_EQ(members("as:profiles"), std::set<std::string>{"default"});
  EXPECT_EQ(changes(), std::vector<std::string>{"profile default"});
}

TEST_F(AdminProfiles, ImportsAFileAndShowsItBackInTheSameFormat) {
  const std::string gold =
      "gold,pos,900000,1000000,50,5000000,500\n"
      "gold,cnp,250000,500000,30,2500000,300\n"
      "gold,atm,100000,100000,10,1000000,100\n";
  const Outcome r1 = admin({"import", "profiles", write_file("g.csv", kProfilesHeader + gold)});
  EXPECT_EQ(r1.status, 0) << r1.err;
  EXPECT_EQ(r1.out, "imported 1 profile (gold)\n");
  // Columns in another order and CRLF line ends are accepted.
  const std::string silver = write_file(
      "s.csv",
      "channel,profile,per_transaction_max,day_amount_max,day_count_max,month_amount_max,"
      "month_count_max\r\natm,silver,1,2,3,4,5\r\npos,silver,0,0,0,0,0\r\ncnp,silver,6,7,8,9,"
      "10\r\n");
  const Outcome r = admin({"import", "profiles", silver});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "imported 1 profile (silver)\n");
  EXPECT_EQ(hash("as:p:silver").at("cnp.mN"), "10");
  EXPECT_EQ(hash("as:p:silver").at("atm.txn"), "1");
  EXPECT_EQ(members("as:profiles"), (std::set<std::string>{"gold", "silver"}));
  EXPECT_EQ(changes(), (std::vector<std::string>{"profile gold", "profile silver"}));
  const Outcome show = admin({"profile", "show", "gold"});
  EXPECT_EQ(show.status, 0);
  EXPECT_EQ(show.out, std::string(kProfilesHeader) + gold);
  EXPECT_EQ(admin({"profile", "list"}).out, "gold\nsilver\n");
  EXPECT_EQ(admin({"profile", "show", "bronze"}).status, 1);
}

TEST_F(AdminProfiles, BadFilesAreReportedExactlyAndChangeNothing) {
  import_default_profiles();
  const std::string ok_pos = "gold,pos,1,1,1,1,1\n";
  const std::string ok_cnp = "gold,cnp,1,1,1,1,1\n";
  const std::string ok_atm = "gold,atm,1,1,1,1,1\n";
  struct Case {
    std::string text;
    std::string err;
  };
  const std::vector<Case> cases = {
      {std::string(kProfilesHeader) + ok_pos + ok_cnp,
       "p.csv: profile 'gold' has no row for channel atm\n"},
      {std::string(kProfilesHeader) + ok_pos + ok_cnp + "gold,atm,1,x1,1,1,1\n",
       "p.csv: row 4, column day_amount_max: 'x1' is not an integer from 0 to "
       "9007199254740991\n"},
      {std::string(kProfilesHeader) + ok_pos + ok_cnp + ok_atm + "gold,pos,1,1,1,1,1\n",
       "p.csv: row 5, column channel: profile 'gold' has channel pos already in row 2\n"},
      {std::string(kProfilesHeader) + ok_pos + ok_cnp + "gold,web,1,1,1,1,-1\n",
       "p.csv: row 4, column channel: 'web' is not one of pos cnp atm\n"
       "p.csv: row 4, column month_count_max: '-1' is not an integer from 0 to "
       "9007199254740991\n"},
      {"profile,channel,per_transaction_max,day_amount_max,day_count_max,month_amount_max,"
       "month_count_max,colour\n" +
           ok_pos + ok_cnp + ok_atm,
       "p.csv: row 1: unknown column 'colour'\n"},
      {"profile,channel,per_transaction_max,day_amount_max,day_count_max,month_amount_max\n" +
           ok_pos,
       "p.csv: row 1: missing column month_count_max\n"},
      {"",
       "p.csv: the file is empty, expected the header profile,channel,per_transaction_max,"
       "day_amount_max,day_count_max,month_amount_max,month_count_max\n"},
      {std::string(kProfilesHeader) + "bad name,pos,1,1,1,1,1\n",
       "p.csv: row 2, column profile: 'bad name' is not 1 to 32 of A-Z a-z 0-9 _ . -\n"},
  };
  const std::string before = dump();
  for (const Case& c : cases) {
    const std::string f = write_file("p.csv", c.text);
    const Outcome r = admin({"import", "profiles", f});
    EXPECT_EQ(r.status, 2) << c.text;
    // Messages name the file as given on the command line.
    std::string expected;
    std::istringstream lines(c.err);
    for (std::string line; std::getline(lines, line);) {
      expected += (line.rfind("p.csv", 0) == 0 ? f + line.substr(5) : line) + "\n";
    }
    EXPECT_EQ(r.err, expected) << c.text;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(dump(), before) << c.text;
  }
}

TEST_F(AdminCards, ImportWritesExactlyTheDataModelAndNeverThePan) {
  import_default_profiles();
  import_gold_profile();
  const std::string f = write_file("cards.csv", three_cards());
  const Outcome r = admin({"import", "cards", f});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(std::regex_match(
      r.out, std::regex("imported 3 cards \\(2 new accounts, 0 existing accounts kept\\) in "
                        "[0-9]+\\.[0-9]{2} s: [0-9]+ cards/s\n")))
      << r.out;
  const std::string t1 = token_of(kPan1), t2 = token_of(kPan2), t3 = token_of(kPan3);
  using Fields = std::map<std::string, std::string>;
  EXPECT_EQ(
      hash("as:{a:A1}"),
      (Fields{{"cur", "840"}, {"bal", "100000"}, {"held", "0"}, {"st", "active"}, {"od", "0"}}));
  EXPECT_EQ(hash("as:{a:B2}"),
            (Fields{{"cur", "978"}, {"bal", "500"}, {"held", "0"}, {"st", "active"}, {"od", "0"}}));
  EXPECT_EQ(hash("as:{a:A1}:c:" + t1), (Fields{{"st", "active"}, {"exp", "2812"}}));
  EXPECT_EQ(hash("as:{a:A1}:c:" + t2), (Fields{{"st", "active"}, {"exp", "2901"}}));
  EXPECT_EQ(hash("as:{a:B2}:c:" + t3), (Fields{{"st", "stolen"}, {"exp", "2712"}}));
  EXPECT_EQ(hash("as:{c:" + t1 + "}"),
            (Fields{{"acct", "A1"}, {"prof", "default"}, {"st", "active"}, {"exp", "2812"}}));
  EXPECT_EQ(hash("as:{c:" + t2 + "}"),
            (Fields{{"acct", "A1"}, {"prof", "gold"}, {"st", "active"}, {"exp", "2901"}}));
  EXPECT_EQ(hash("as:{c:" + t3 + "}"),
            (Fields{{"acct", "B2"}, {"prof", "default"}, {"st", "stolen"}, {"exp", "2712"}}));
  EXPECT_EQ(members("as:{a:A1}:cards"), (std::set<std::string>{t1, t2}));
  EXPECT_EQ(members("as:{a:B2}:cards"), (std::set<std::string>{t3}));
  // New cards need no change entry: only the two profile imports are in the feed.
  EXPECT_EQ(changes(), (std::vector<std::string>{"profile default", "profile gold"}));
  EXPECT_EQ(keys().size(), 2U + 3U + 3U + 2U + 2U + 2U);  // accounts, cards x2, sets, profiles
  const std::string everything = all_text() + r.out + r.err;
  for (const char* pan : {kPan1, kPan2, kPan3}) {
    EXPECT_EQ(everything.find(pan), std::string::npos);
  }
}

TEST_F(AdminCards, ReimportIsIdempotentAndKeepsBalancesAndUsage) {
  import_default_profiles();
  import_gold_profile();
  const std::string f = write_file("cards.csv", three_cards());
  ASSERT_EQ(admin({"import", "cards", f}).status, 0);
  const std::string first = dump();
  const Outcome again = admin({"import", "cards", f});
  EXPECT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.out.find("(0 new accounts, 2 existing accounts kept)"), std::string::npos)
      << again.out;
  EXPECT_EQ(dump(), first);
  // Staff changed the balance and the card was used: a re-import keeps both.
  const std::string t1 = token_of(kPan1);
  cmd({"HSET", "as:{a:A1}", "bal", "555"});
  cmd({"HSET", "as:{a:A1}:c:" + t1, "day", "20231114", "dA.pos", "700", "dN.pos", "1"});
  const std::string changed =
      write_file("cards2.csv", std::string(kCardsHeader) + kPan1 + ",3001,A1,840,999999,active,\n");
  ASSERT_EQ(admin({"import", "cards", changed}).status, 0);
  EXPECT_EQ(hash("as:{a:A1}").at("bal"), "555");
  const auto card = hash("as:{a:A1}:c:" + t1);
  EXPECT_EQ(card.at("exp"), "3001");
  EXPECT_EQ(card.at("dA.pos"), "700");
  EXPECT_EQ(card.at("dN.pos"), "1");
}

TEST_F(AdminCards, AProfileChangeOfAnExistingCardIsAnnounced) {
  import_default_profiles();
  import_gold_profile();
  ASSERT_EQ(admin({"import", "cards", write_file("a.csv", three_cards("gold"))}).status, 0);
  const Outcome r = admin({"import", "cards", write_file("b.csv", three_cards("default"))});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("profile changed for 1 existing cards"), std::string::npos) << r.out;
  EXPECT_EQ(hash("as:{c:" + token_of(kPan2) + "}").at("prof"), "default");
  EXPECT_EQ(changes(), (std::vector<std::string>{"profile default", "profile gold",
                                                 "card " + token_of(kPan2)}));
}

TEST_F(AdminCards, ALargerFileTakesEveryBatchPath) {
  // More cards than one pipelined batch (4096 commands) and one EXISTS probe (512 keys), and
  // enough to tokenize on two threads; imported twice (the second time every key exists).
  import_default_profiles();
  constexpr int kCards = 12'000;
  std::string text = kCardsHeader;
  for (int i = 0; i < kCards; ++i) {
    const std::string n = std::to_string(i);
    text += "5" + std::string(15 - n.size(), '0') + n + ",2812,L" + std::to_string(i / 3) +
            ",840,100,active,\n";
  }
  const std::string f = write_file("large.csv", text);
  const Outcome first = admin({"import", "cards", f});
  EXPECT_EQ(first.status, 0) << first.err;
  EXPECT_NE(first.out.find("imported 12000 cards (4000 new accounts, 0 existing accounts kept)"),
            std::string::npos)
      << first.out;
  // The profile, its set and the change feed; accounts and their card sets; cards x2.
  EXPECT_EQ(keys().size(), 3U + 4'000U * 2 + kCards * 2U);
  const std::string last = "5" + std::string(10, '0') + "11999";
  EXPECT_EQ(hash("as:{c:" + token_of(last) + "}").at("acct"), "L3999");
  EXPECT_EQ(members("as:{a:L3999}:cards").size(), 3U);
  const std::string before = dump();
  const Outcome again = admin({"import", "cards", f});
  EXPECT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.out.find("(0 new accounts, 4000 existing accounts kept)"), std::string::npos);
  EXPECT_EQ(dump(), before);
}

TEST_F(AdminBadCards, EachRowErrorHasItsExactMessageAndChangesNothing) {
  import_default_profiles();
  // A1 exists (currency 840) and owns kPan1 before the bad imports.
  ASSERT_EQ(admin({"import", "cards",
                   write_file("base.csv",
                              std::string(kCardsHeader) + kPan1 + ",2812,A1,840,100000,active,\n")})
                .status,
            0);
  const std::string good = std::string(kPan2) + ",2812,C3,840,100,active,\n";
  struct Case {
    std::string row;  // row 3, after one good row
    std::string err;  // after "FILE: "
  };
  const std::vector<Case> cases = {
      {"41111111111,2812,C3,840,100,active,",
       "row 3, column pan: 11 characters, a PAN has 12 to 19 digits"},
      {"4111x11111111111,2812,C3,840,100,active,",
       "row 3, column pan: character 5 is not a digit, a PAN has 12 to 19 digits"},
      {"5500000000000004,2813,C3,840,100,active,", "row 3, column expiry: month 13 is not 01-12"},
      {"5500000000000004,28,C3,840,100,active,", "row 3, column expiry: '28' is not YYMM"},
      {"5500000000000004,2812,C 3,840,100,active,",
       "row 3, column account: 'C 3' is not 1 to 32 of A-Z a-z 0-9 _ . -"},
      {"5500000000000004,2812,C4,EUR,100,active,",
       "row 3, column currency: 'EUR' is not an ISO 4217 numeric code (3 digits)"},
      {"5500000000000004,2812,C4,840,-5,active,",
       "row 3, column balance: '-5' is not an integer from 0 to 9007199254740991"},
      {"5500000000000004,2812,C4,840,100,frozen,",
       "row 3, column status: 'frozen' is not one of active blocked lost stolen closed inactive"},
      {"5500000000000004,2812,C3,840,100,active,platinum",
       "row 3, column profile: profile 'platinum' does not exist (import profiles first)"},
      {std::string(kPan2) + ",2812,C3,840,100,active,", "row 3, column pan: the same PAN as row 2"},
      {"5500000000000004,2812,C3,978,100,active,",
       "row 3, column currency: account 'C3' has currency 840 in row 2"},
      {"5500000000000004,2812,C3,840,101,active,",
       "row 3, column balance: account 'C3' has balance 100 in row 2"},
      {std::string(kPan1) + ",2812,B9,840,100,active,",
       "row 3, column account: this card belongs to account 'A1'"},
      {"5500000000000004,2812,A1,978,100,active,",
       "row 3, column currency: account 'A1' exists with currency '840'"},
      {"5500000000000004,2812,C3,840,100,active", "row 3: 6 fields, the header has 7"},
  };
  const std::string before = dump();
  for (const Case& c : cases) {
    const std::string f = write_file("bad.csv", kCardsHeader + good + c.row + "\n");
    const Outcome r = admin({"import", "cards", f});
    EXPECT_EQ(r.status, 2) << c.row;
    EXPECT_EQ(r.err, f + ": " + c.err + "\n");
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err.find("5500000000000004"), std::string::npos);
    EXPECT_EQ(r.err.find(kPan1), std::string::npos);
    EXPECT_EQ(r.err.find(kPan2), std::string::npos);
    EXPECT_EQ(dump(), before) << c.row;
  }
}

TEST_F(AdminBadCards, OneBadRowAmongManyGoodOnesChangesNothing) {
  import_default_profiles();
  std::string text = kCardsHeader;
  for (int i = 0; i < 2'000; ++i) {
    text += "4" + std::string(14 - std::to_string(i).size(), '0') + std::to_string(i) + "0,2812,N" +
            std::to_string(i / 3) + ",840,100,active,\n";
  }
  text += "4999999999999999,2812,X1,840,100,active,gold\n";  // no profile gold
  const std::string before = dump();
  const Outcome r = admin({"import", "cards", write_file("many.csv", text)});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("row 2002, column profile: profile 'gold' does not exist"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(dump(), before);
}

TEST_F(AdminBadCards, HeaderAndFileProblems) {
  import_default_profiles();
  const std::string row = std::string(kPan1) + ",2812,A1,840,100,active,\n";
  struct Case {
    std::string text;
    std::string err;
  };
  const std::vector<Case> cases = {
      {"pan,expiry,account,currency,balance,status\n" + row.substr(0, row.size() - 2) + "\n",
       "row 1: missing column profile"},
      {"pan,expiry,account,currency,balance,status,profile,cvv\n" + row,
       "row 1: unknown column 'cvv'"},
      {"",
       "the file is empty, expected the header "
       "pan,expiry,account,currency,balance,status,profile"},
      {kCardsHeader, "no card rows after the header"},
      // A file without its header: the first row is not echoed, it holds a PAN.
      {row, "row 1: unknown column (a value of 16 characters, not shown: it may be a PAN)"},
  };
  const std::string before = dump();
  for (const Case& c : cases) {
    const std::string f = write_file("h.csv", c.text);
    const Outcome r = admin({"import", "cards", f});
    EXPECT_EQ(r.status, 2) << c.text;
    EXPECT_EQ(r.err.substr(0, r.err.find('\n')), f + ": " + c.err) << r.err;
    EXPECT_EQ(r.err.find(kPan1), std::string::npos);
    EXPECT_EQ(dump(), before);
  }
  const Outcome missing = admin({"import", "cards", (dir_ / "nope.csv").string()});
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find("nope.csv"), std::string::npos) << missing.err;
}

TEST_F(AdminBadCards, AtMostTwentyErrorsArePrinted) {
  std::string text = kCardsHeader;
  for (int i = 0; i < 25; ++i) {
    text += "4111111111111111,2800,A1,840,100,active,\n";
  }
  const std::string f = write_file("m.csv", text);
  const Outcome r = admin({"import", "cards", f});
  EXPECT_EQ(r.status, 2);
  std::vector<std::string> lines;
  std::istringstream in(r.err);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  ASSERT_EQ(lines.size(), 21U) << r.err;
  EXPECT_EQ(lines[0], f + ": row 2, column expiry: month 00 is not 01-12");
  EXPECT_EQ(lines[19], f + ": row 21, column expiry: month 00 is not 01-12");
  EXPECT_EQ(lines[20], "... 5 more");
}

TEST_F(AdminAccount, ShowAndHoldsListAfterAHold) {
  import_default_profiles();
  ASSERT_EQ(admin({"import", "cards", write_file("c.csv", three_cards("default"))}).status, 0);
  ASSERT_EQ(auth("h1", kPan1, 2'500), "00");
  const Outcome show = admin({"account", "show", "A1"});
  EXPECT_EQ(show.status, 0) << show.err;
  EXPECT_EQ(show.out,
            "account A1\n"
            "  status     active\n"
            "  currency   840\n"
            "  balance    100000 (840)\n"
            "  held       2500 (840)\n"
            "  overdraft  0 (840)\n"
            "  available  97500 (840)\n"
            "  cards      2\n"
            "pending holds: 1\n"
            "  h1  amount 2500 (840)  expires 2023-11-14T23:13:20Z  channel pos  mcc 5411\n");
  const Outcome pending = admin({"holds", "list", "A1"});
  EXPECT_EQ(pending.out,
            "account A1: 1 pending holds\n"
            "  h1  amount 2500 (840)  expires 2023-11-14T23:13:20Z  channel pos  mcc 5411\n");
  ASSERT_EQ(admin({"account", "credit", "A1", "300", "--txn", "c1"}).status, 0);
  const Outcome all = admin({"holds", "list", "A1", "--all"});
  EXPECT_EQ(all.status, 0);
  // The credit ran the script at the real time, long after h1's expiry: it expired h1.
  EXPECT_NE(all.out.find("account A1: 2 hold records\n"
                         "  h1  expired  amount 2500 (840)  posted 0  created "
                         "2023-11-14T22:13:20Z  channel pos  mcc 5411\n"
                         "  c1  adjusted  amount 0 (840)  posted 300  created "),
            std::string::npos)
      << all.out;
  const Outcome unknown = admin({"account", "show", "nope"});
  EXPECT_EQ(unknown.status, 1);
  EXPECT_EQ(unknown.err, "account nope: not found on " + address_ + "\n");
  EXPECT_EQ(admin({"holds", "list", "nope"}).status, 1);
}

TEST_F(AdminAccount, CreditAndDebitChangeTheBalanceOnce) {
  import_default_profiles();
  ASSERT_EQ(admin({"import", "cards", write_file("c.csv", three_cards("default"))}).status, 0);
  const Outcome credit = admin({"account", "credit", "A1", "500", "--txn", "c1"});
  EXPECT_EQ(credit.status, 0) << credit.err;
  EXPECT_EQ(credit.out,
            "credit 500 (840) account A1 txn c1: 00 approved; balance 100500 (840), available "
            "100500 (840)\n");
  EXPECT_EQ(admin({"account", "credit", "A1", "500", "--txn", "c1"}).status, 0);
  EXPECT_EQ(hash("as:{a:A1}").at("bal"), "100500");
  const Outcome debit = admin({"account", "debit", "A1", "200", "--txn", "d1"});
  EXPECT_EQ(debit.status, 0) << debit.err;
  EXPECT_EQ(admin({"account", "debit", "A1", "200", "--txn", "d1"}).status, 0);
  EXPECT_EQ(hash("as:{a:A1}").at("bal"), "100300");
  // The same key for a different request is a duplicate: declined, nothing changes.
  const Outcome dup = admin({"account", "debit", "A1", "999", "--txn", "d1"});
  EXPECT_EQ(dup.status, 1);
  EXPECT_NE(dup.out.find(": 94 declined (duplicate_key)"), std::string::npos) << dup.out;
  // Without --txn each call is a new adjustment.
  EXPECT_EQ(admin({"account", "debit", "A1", "100300"}).status, 0);
  EXPECT_EQ(hash("as:{a:A1}").at("bal"), "0");
  cmd({"HSET", "as:{a:B2}", "st", "closed"});
  const Outcome closed = admin({"account", "credit", "B2", "1"});
  EXPECT_EQ(closed.status, 1);
  EXPECT_NE(closed.out.find(": 62 declined (account_closed)"), std::string::npos) << closed.out;
  EXPECT_EQ(admin({"account", "credit", "A1", "0"}).status, 2);
  EXPECT_EQ(admin({"account", "credit", "A1", "1.5"}).status, 2);
  EXPECT_EQ(admin({"account", "credit", "nope", "1"}).status, 1);
  EXPECT_EQ(hash("as:{a:A1}").at("bal"), "0");
}

TEST_F(AdminCard, BlockDeclinesTheNextAuthorizationAndUnblockRestoresIt) {
  import_default_profiles();
  ASSERT_EQ(admin({"import", "cards", write_file("c.csv", three_cards("default"))}).status, 0);
  EXPECT_EQ(auth("a1", kPan1, 100), "00");
  const Outcome block = admin({"card", "block", kPan1});
  EXPECT_EQ(block.status, 0) << block.err;
  EXPECT_EQ(block.out, "card 411111******1111 blocked (was active)\n");
  EXPECT_EQ(auth("a2", kPan1, 100), "62");
  // The directory's copy for the switches' rules follows, and the card is announced.
  EXPECT_EQ(hash("as:{c:" + token_of(kPan1) + "}").at("st"), "blocked");
  const auto last = cmd({"XREVRANGE", "as:changes", "+", "-", "COUNT", "1"});
  ASSERT_EQ(last->elements, 1U);
  EXPECT_EQ(std::string(last->element[0]->element[1]->element[3]->str), token_of(kPan1));
  EXPECT_EQ(admin({"card", "block", kPan1}).out, "card 411111******1111 is already blocked\n");
  // The PAN may come on stdin, out of the process list.
  const Outcome unblock = admin({"card", "unblock", "-"}, std::string(kPan1) + "\n");
  EXPECT_EQ(unblock.status, 0) << unblock.err;
  EXPECT_EQ(unblock.out, "card 411111******1111 unblocked (was blocked)\n");
  EXPECT_EQ(auth("a3", kPan1, 100), "00");
  EXPECT_EQ(hash("as:{a:A1}:c:" + token_of(kPan1)).at("st"), "active");
}

TEST_F(AdminCard, AStolenCardCannotBeUnblockedOrBlocked) {
  import_default_profiles();
  ASSERT_EQ(admin({"import", "cards", write_file("c.csv", three_cards("default"))}).status, 0);
  const std::string before = dump();
  const Outcome unblock = admin({"card", "unblock", kPan3});
  EXPECT_EQ(unblock.status, 1);
  EXPECT_EQ(unblock.err, "card 550000******0004 is stolen: only a blocked card can be unblocked\n");
  const Outcome block = admin({"card", "block", kPan3});
  EXPECT_EQ(block.status, 1);
  EXPECT_EQ(block.err, "card 550000******0004 is stolen: only an active card can be blocked\n");
  EXPECT_EQ(dump(), before);
}

TEST_F(AdminCard, OverridesAreStoredWithTheCardAnnouncedAndLimited) {
  import_default_profiles();
  ASSERT_EQ(admin({"import", "cards", write_file("c.csv", three_cards("default"))}).status, 0);
  const std::string directory = "as:{c:" + token_of(kPan1) + "}";
  const auto changes = [&] { return cmd({"XLEN", "as:changes"})->integer; };
  const long long before = changes();
  Outcome r = admin(
      {"card", "override", kPan1, "--rule", "foreign-large", "--country", "FR", "--days", "7"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out,
            "card 411111******1111: rule foreign-large not applied in FR for 7 days (1 running)\n");
  EXPECT_EQ(changes(), before + 1);  // every switch's cache reloads the card
  const std::string field = hash(directory).at("ovr");
  std::array<limits::CardOverrideRecord, limits::kCardOverridesMax> parsed{};
  ASSERT_EQ(limits::parse_card_overrides(field, parsed), std::optional<std::size_t>(1)) << field;
  EXPECT_EQ(parsed[0].rule_hash, base::fnv1a32("foreign-large"));
  EXPECT_EQ(parsed[0].country_view(), "FR");
  EXPECT_NEAR(static_cast<double>(parsed[0].expires_ms - limits_now_ms()), 7.0 * 86'400'000,
              60'000);
  // The same rule and country again replaces it; a second rule runs beside it; a third is refused.
  EXPECT_EQ(admin({"card", "override", kPan1, "--rule", "foreign-large", "--country", "FR",
                   "--days", "3"})
                .status,
            0);
  EXPECT_EQ(admin({"card", "override", kPan1, "--rule", "night-cash", "--days", "1"}).status, 0);
  r = admin({"card", "override", kPan1, "--rule", "cnp-large", "--days", "1"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err,
            "card 411111******1111: at most 2 overrides may run at once; clear one first "
            "(card override PAN --clear --rule ID)\n");
  EXPECT_NE(admin({"card", "show", kPan1}).out.find("overrides foreign-large,FR,"),
            std::string::npos);
  r = admin({"card", "override", kPan1, "--clear", "--rule", "night-cash"});
  EXPECT_EQ(r.out, "card 411111******1111: override of rule night-cash cleared (1 running)\n");
  r = admin({"card", "override", kPan1, "--clear"});
  EXPECT_EQ(r.out, "card 411111******1111: overrides cleared (0 running)\n");
  EXPECT_EQ(hash(directory).count("ovr"), 0U);
  // Bad arguments change nothing.
  const std::string snapshot = dump();
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"card", "override", kPan1, "--rule", "Bad Rule", "--days", "1"},
        std::vector<std::string>{"card", "override", kPan1, "--rule", "x", "--days", "0"},
        std::vector<std::string>{"card", "override", kPan1, "--rule", "x", "--country", "fr",
                                 "--days", "1"},
        std::vector<std::string>{"card", "override", kPan1}}) {
    EXPECT_EQ(admin(args).status, 2) << args[3];
  }
  EXPECT_EQ(dump(), snapshot);
}

TEST_F(AdminCard, ShowNamesTheCardByMaskedPanAndToken) {
  import_default_profiles();
  import_gold_profile();
  ASSERT_EQ(admin({"import", "cards", write_file("c.csv", three_cards())}).status, 0);
  const Outcome show = admin({"card", "show", kPan2});
  EXPECT_EQ(show.status, 0) << show.err;
  EXPECT_EQ(show.out, "card 411111******1129\n  token    " + token_of(kPan2) +
                          "\n  account  A1\n  profile  gold\n  status   active\n"
                          "  expiry   2901\n  overrides -\n");
  const Outcome unknown = admin({"card", "show", "4000000000000002"});
  EXPECT_EQ(unknown.status, 1);
  EXPECT_EQ(unknown.err, "card 400000******0002: not found on " + address_ + "\n");
  const Outcome bad = admin({"card", "block", "41111111111"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_EQ(bad.err, "PAN: 11 characters, a PAN has 12 to 19 digits\n");
}

TEST_F(AdminUsage, UsageConfigAndConnectionErrors) {
  EXPECT_EQ(admin({}).status, 2);
  EXPECT_EQ(admin({"card", "block"}).status, 2);
  // Extra arguments are not echoed: they may be the rest of a PAN typed with spaces.
  const Outcome extra = admin({"card", "block", "4111", "111111111111"});
  EXPECT_EQ(extra.status, 2);
  EXPECT_EQ(extra.err.find("111111111111"), std::string::npos) << extra.err;
  EXPECT_EQ(admin({"--help"}).status, 0);
  // Nothing listens on port 1 here: the connection is refused, and the message names the server.
  const Outcome refused = admin({"--redis", "127.0.0.1:1", "profile", "list"}, "", false);
  EXPECT_EQ(refused.status, 1);
  EXPECT_EQ(refused.err.rfind("authswitch-admin: redis 127.0.0.1:1: ", 0), 0U) << refused.err;
  EXPECT_EQ(admin({"--redis", "nohost", "profile", "list"}, "", false).status, 2);
  // The address from the config file; --redis may follow the subcommand.
  const std::string config = write_file("a.toml", "[redis]\naddress = \"" + address_ + "\"\n");
  import_default_profiles();
  const Outcome listed = admin({"profile", "list", "--config", config}, "", false);
  EXPECT_EQ(listed.status, 0) << listed.err;
  EXPECT_EQ(listed.out, "default\n");
  EXPECT_EQ(admin({"profile", "list", "--redis", address_}, "", false).out, "default\n");
  EXPECT_EQ(
      admin({"profile", "list", "--config", write_file("b.toml", "[redis\n")}, "", false).status,
      2);
}

constexpr const char* kRuleFile = R"(version = "t-1"
[scoring]
decline_score = 50
[response_codes.quiet]
suspected_fraud = "05"
[[rule]]
id = "cnp-big"
when = "channel == cnp and amount > 100.00 USD"
action = "score"
score = 30
[[rule]]
id = "abroad"
when = "merchant_country != 'US'"
action = "score"
score = 30
[[rule]]
id = "stolen"
when = "card_status == stolen"
action = "decline"
reason = "stolen_card"
[[rule]]
id = "night"
when = "local_hour('UTC') in [0..5]"
action = "review"
mode = "shadow"
[[velocity]]
id = "testing"
counts = "declines"
window = "10m"
threshold = 3
action = "decline"
)";

// One authorization as the iso8583 CLI prints it, with extras.
std::string auth_line(const std::string& amount, const std::string& entry, const std::string& cond,
                      const std::string& country, const std::string& extra = "") {
  return R"({"mti":"0100","fields":{"2":"411111******1111","3":"000000","4":")" + amount +
         R"(","22":")" + entry + R"(","25":")" + cond +
         R"(","43":"SHOP                   CITY           )" + country + R"(","49":"840"})" +
         extra + "}\n";
}

TEST_F(AdminRules, TestPrintsEachDecisionWithItsReasonsWithoutRedis) {
  const std::string rules = write_file("rules.toml", kRuleFile);
  const std::string input =
      auth_line("000000002500", "051", "00", "US", R"(,"time":"2026-11-24T15:30:00Z")") +
      auth_line("000000020000", "812", "59", "GB",
                R"(,"time":"2026-11-24T03:00:00Z","id":"cnp-abroad")") +
      "\n" +  // blank lines are skipped
      auth_line("000000000100", "051", "00", "US",
                R"(,"card":{"status":"stolen","expiry":"2812"},"time":"2026-11-24T15:30:00.250Z")");
  const Outcome r = admin({"rules", "test", rules}, input, /*with_redis=*/false);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out,
            "rule set t-1: 5 rules; velocity rules run in Redis with each card's history, not "
            "here: testing\n"
            "line 1: approve 00; score 0; fired: none\n"
            "line 2 (cnp-abroad): decline 59 by score 60 >= 50; score 60; fired: cnp-big (20000 vs "
            "10000), abroad; shadow: night (score 0)\n"
            "line 4: decline 43 by stolen; score 0; fired: stolen\n");
  EXPECT_EQ(r.out.find("4111"), std::string::npos);  // the (masked) PAN field is never printed
  // Another network's policy, and JSON output.
  const Outcome j = admin({"rules", "test", rules, "--network", "quiet", "--json"},
                          auth_line("000000020000", "812", "59", "GB"), false);
  EXPECT_EQ(j.status, 0) << j.err;
  EXPECT_NE(j.out.find(R"("code":"05")"), std::string::npos) << j.out;
  EXPECT_NE(
      j.out.find(R"("fired":[{"rule":"cnp-big","shadow":false,"threshold":10000,"value":20000})"),
      std::string::npos)
      << j.out;
}

TEST_F(AdminRules, BadLinesAreReportedByNumberWithoutTheirContent) {
  const std::string rules = write_file("rules.toml", kRuleFile);
  const Outcome r =
      admin({"rules", "test", rules},
            "{\"mti\":\"0100\",\"fields\":{\"4\":\"12x\"}}\n4111111111111111 junk\n" +
                auth_line("000000000100", "051", "00", "US", R"(,"time":"yesterday")") +
                auth_line("000000000100", "051", "00", "US"),
            false);
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err,
            "line 1: a field is not what its definition says (MTI 4 digits; DE 3, 4, 14, 18, 19, "
            "22, 25, 49 digits)\n"
            "line 2: not JSON (syntax error at byte 18)\n"
            "line 3: time must be UTC like 2026-11-24T15:30:00Z\n");
  EXPECT_EQ(r.err.find("4111"), std::string::npos);
  EXPECT_NE(r.out.find("line 4: approve 00"), std::string::npos) << r.out;
}

TEST_F(AdminRules, CheckListsTheRulesAndABadFileIsRejectedWithItsErrors) {
  const std::string rules = write_file("rules.toml", kRuleFile);
  Outcome r = admin({"rules", "check", rules}, "", false);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("version t-1, 5 rules"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  night [shadow]: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  testing [velocity]: "), std::string::npos) << r.out;
  const std::string bad =
      write_file("bad.toml",
                 "version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = \"amout > 1\"\naction "
                 "= \"review\"\n");
  r = admin({"rules", "test", bad}, "", false);
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, bad + ":4: rule 'a': when: column 1: unknown field 'amout'\n");
  r = admin({"rules", "check", (std::filesystem::path(dir_) / "missing.toml").string()}, "", false);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("missing.toml: cannot open"), std::string::npos) << r.err;
}

TEST_F(AdminRules, ReloadPostsToTheSwitchsEndpoint) {
  // A stand-in for the switch's HTTP endpoint: one connection, answered 202.
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&a), len), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const std::string http = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  std::string request;
  std::thread fake([&] {
    const int fd = ::accept(listener, nullptr, nullptr);
    std::array<char, 1024> buf{};
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    request.assign(buf.data(), static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
    const std::string reply = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
    (void)::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
    ::close(fd);
  });
  const Outcome r = admin({"rules", "reload", "--http", http}, "", false);
  fake.join();
  ::close(listener);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "reload requested from " + http + "\n");
  EXPECT_EQ(request.rfind("POST /-/reload HTTP/1.1\r\n", 0), 0U) << request;
  // Nothing listening: a clear error, exit 1.
  const Outcome down = admin({"rules", "reload", "--http", http}, "", false);
  EXPECT_EQ(down.status, 1);
  EXPECT_NE(down.err.find(http + ": Connection refused"), std::string::npos) << down.err;
}

TEST_F(AdminRules, TheShippedRuleFileAndSampleTrafficPass) {
  const Outcome r =
      admin({"rules", "check", std::string(AS_SOURCE_DIR) + "/config/rules.toml"}, "", false);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("card-testing [velocity]"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace authswitch::limits
