// The holds script (limits/scripts/holds.lua) against a real redis-server: every transition,
// its replay, limits, card and account states, expiry, and atomicity under concurrent clients.
// After each test the ledger invariant is checked: available = balance + overdraft - the sum of
// pending holds, and `held` equals that sum.
#include "limits/holds_script.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include "tests/support/holds_library.h"
#include "tests/support/redis_fixture.h"
#include "tests/support/redis_server.h"

namespace authswitch::limits {
namespace {

using support::RedisReplyPtr;

constexpr std::int64_t kNow = 1'700'000'000'000;  // ms; the clock is an argument, not the host's
constexpr std::int64_t kHoldTtl = 7LL * 24 * 3600 * 1000;

// Limits of the profile used unless a test says otherwise.
struct Profile {
  std::int64_t per_txn = 50'000;
  std::int64_t day_amount = 100'000;
  std::int64_t day_count = 10;
  std::int64_t month_amount = 1'000'000;
  std::int64_t month_count = 100;
};

RedisReplyPtr command(redisContext& c, const std::vector<std::string>& args) {
  return support::redis_command(c, args);
}

Decision to_decision(const redisReply& r) {
  EXPECT_EQ(r.type, REDIS_REPLY_ARRAY) << (r.str != nullptr ? r.str : "");
  Decision d;
  if (r.type != REDIS_REPLY_ARRAY || r.elements != 8) {
    return d;
  }
  auto text = [&](std::size_t i) { return std::string(r.element[i]->str, r.element[i]->len); };
  const std::string rc = text(0);
  d.response_code = {rc[0], rc[1]};
  d.approved_minor = r.element[1]->integer;
  d.balance_minor = r.element[2]->integer;
  d.available_minor = r.element[3]->integer;
  const std::string reason = text(4);
  std::copy_n(reason.begin(), std::min(reason.size(), d.reason.size()), d.reason.begin());
  d.value = r.element[5]->integer;
  d.threshold = r.element[6]->integer;
  const std::string fired = text(7);
  std::copy_n(fired.begin(), std::min(fired.size(), d.fired.size() - 1), d.fired.begin());
  return d;
}

class Holds : public support::SharedRedisTest {
 protected:
  void SetUp() override {
    support::SharedRedisTest::SetUp();
    function_ = support::load_holds(redis());
    open_account("1", 100'000, 0);
    add_card("1", "tok1", "active", "2812");
  }

  void TearDown() override { expect_invariant("1"); }

  void open_account(const std::string& id, std::int64_t balance, std::int64_t overdraft,
                    const std::string& status = "active") {
    command(redis(), {"HSET", "as:{a:" + id + "}", "cur", "840", "bal", std::to_string(balance),
                      "held", "0", "st", status, "od", std::to_string(overdraft)});
  }
  void add_card(const std::string& account, const std::string& token, const std::string& status,
                const std::string& expiry) {
    command(redis(), {"HSET", "as:{a:" + account + "}:c:" + token, "st", status, "exp", expiry});
  }

  Decision run(const std::string& op, const std::string& txn, std::vector<std::string> args,
               std::int64_t now = kNow, const std::string& token = "tok1",
               const std::string& account = "1", redisContext* ctx = nullptr,
               const std::string& fingerprint_op = "") {
    AccountKeys keys;
    EXPECT_TRUE(keys.set(account, token, txn));
    std::string fingerprint = fingerprint_op.empty() ? op : fingerprint_op;
    for (const auto& a : args) {
      fingerprint += "|" + a;
    }
    std::vector<std::string> argv = {"FCALL", function_, "5"};
    for (std::size_t i = 0; i < AccountKeys::kCount; ++i) {
      argv.emplace_back(keys.key(static_cast<AccountKeys::Index>(i)));
    }
    argv.insert(argv.end(), {op, std::to_string(now), "86400000", fingerprint});
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = command(ctx != nullptr ? *ctx : redis(), argv);
    return to_decision(*r);
  }

  // auth hold `txn` for `amount` on channel `ch`.
  Decision auth(const std::string& txn, std::int64_t amount, bool partial_ok = false,
                const Profile& p = {}, const std::string& ch = "pos",
                const std::string& day = "20231114", const std::string& presented = "",
                std::int64_t now = kNow, const std::string& token = "tok1",
                redisContext* ctx = nullptr) {
    return run("auth", txn,
               {txn, std::to_string(amount), "840", ch, "5411", presented, day, day.substr(0, 6),
                "2311", partial_ok ? "1" : "0", std::to_string(kHoldTtl), std::to_string(p.per_txn),
                std::to_string(p.day_amount), std::to_string(p.day_count),
                std::to_string(p.month_amount), std::to_string(p.month_count)},
               now, token, "1", ctx);
  }
  // The reconciler's replay of a stand-in approval: auth's (or debit's) arguments and
  // fingerprint, op force_auth (force_debit).
  Decision forced(const std::string& txn, std::int64_t amount, const std::string& op = "auth",
                  const Profile& p = {}, bool partial_ok = false) {
    std::vector<std::string> args = {txn,
                                     std::to_string(amount),
                                     "840",
                                     op == "auth" ? "pos" : "atm",
                                     op == "auth" ? "5411" : "6011",
                                     ""};
    const auto tail = limit_tail("20231114", partial_ok, p);
    args.insert(args.end(), tail.begin(), tail.end());
    return run("force_" + op, txn, args, kNow, "tok1", "1", nullptr, op);
  }
  Decision capture(const std::string& txn, const std::string& hold, std::int64_t amount) {
    return run("capture", txn, {hold, std::to_string(amount)});
  }
  Decision reverse(const std::string& txn, const std::string& hold, std::int64_t remaining) {
    return run("reverse", txn, {hold, std::to_string(remaining)});
  }
  Decision balance(const std::string& txn, std::int64_t now = kNow) {
    return run("balance", txn, {}, now);
  }
  // The limit arguments auth, incr and debit end with, from today on.
  static std::vector<std::string> limit_tail(const std::string& day, bool partial_ok,
                                             const Profile& p) {
    return {day,
            day.substr(0, 6),
            "2311",
            partial_ok ? "1" : "0",
            std::to_string(kHoldTtl),
            std::to_string(p.per_txn),
            std::to_string(p.day_amount),
            std::to_string(p.day_count),
            std::to_string(p.month_amount),
            std::to_string(p.month_count)};
  }
  // incremental authorization `txn` of hold `hold` by `amount`.
  Decision incr(const std::string& txn, const std::string& hold, std::int64_t amount,
                bool partial_ok = false, const Profile& p = {}, std::int64_t now = kNow) {
    std::vector<std::string> args = {hold, std::to_string(amount)};
    const auto tail = limit_tail("20231114", partial_ok, p);
    args.insert(args.end(), tail.begin(), tail.end());
    return run("incr", txn, args, now);
  }
  // single-message debit `txn` of `amount`.
  Decision debit(const std::string& txn, std::int64_t amount, bool partial_ok = false,
                 const Profile& p = {}, const std::string& presented = "",
                 const std::string& currency = "840") {
    std::vector<std::string> args = {txn,      std::to_string(amount), currency, "atm", "6011",
                                     presented};
    const auto tail = limit_tail("20231114", partial_ok, p);
    args.insert(args.end(), tail.begin(), tail.end());
    return run("debit", txn, args);
  }
  Decision refund(const std::string& txn, std::int64_t amount,
                  const std::string& currency = "840") {
    return run("refund", txn, {txn, std::to_string(amount), currency});
  }

  std::map<std::string, std::string> hash(const std::string& key) {
    const auto r = command(redis(), {"HGETALL", key});
    std::map<std::string, std::string> m;
    for (std::size_t i = 0; i + 1 < r->elements; i += 2) {
      m[r->element[i]->str] = r->element[i + 1]->str;
    }
    return m;
  }
  std::string hold_state(const std::string& id) { return hash("as:{a:1}:h")[id].substr(0, 1); }
  // Field `n` (0 = state) of the packed hold record `id`.
  std::string hold_field(const std::string& id, int n) {
    std::istringstream record(hash("as:{a:1}:h")[id]);
    std::string part;
    for (int i = 0; i <= n; ++i) {
      std::getline(record, part, '|');
    }
    return part;
  }
  // The hold's score in the expiry ZSET, or -1 when it is not there.
  std::int64_t expiry_score(const std::string& id) {
    const auto r = command(redis(), {"ZSCORE", "as:{a:1}:hx", id});
    return r->type == REDIS_REPLY_STRING ? std::stoll(std::string(r->str, r->len)) : -1;
  }
  std::int64_t field(const std::string& key, const std::string& f) {
    const auto m = hash(key);
    const auto it = m.find(f);
    return it == m.end() ? 0 : std::stoll(it->second);
  }
  // Everything the account owns, for "changes nothing" checks.
  // (The account's "nx", the script's bound of its next hold expiry, is bookkeeping that any
  // call may set: expect_invariant checks it.)
  std::string snapshot() {
    std::string s;
    for (const char* k : {"as:{a:1}", "as:{a:1}:c:tok1", "as:{a:1}:h"}) {
      for (const auto& [f, v] : hash(k)) {
        if (f != "nx") {
          s += std::string(k) + "." + f + "=" + v + ";";
        }
      }
    }
    return s;
  }
  void expect_invariant(const std::string& id) {
    std::int64_t pending = 0;
    for (const auto& [hold, record] : hash("as:{a:" + id + "}:h")) {
      if (record[0] == 'P') {
        pending += std::stoll(record.substr(2, record.find('|', 2) - 2));
      }
    }
    const auto a = hash("as:{a:" + id + "}");
    EXPECT_EQ(std::stoll(a.at("held")), pending) << "held must equal the sum of pending holds";
    const Decision d = run("balance", "invariant-check-" + std::to_string(kNow), {});
    EXPECT_EQ(d.available_minor, std::stoll(a.at("bal")) + std::stoll(a.at("od")) - pending);
    // The account's next-expiry bound is never later than its earliest pending expiry, or a
    // due hold would be skipped.
    const auto first = command(redis(), {"ZRANGE", "as:{a:" + id + "}:hx", "0", "0", "WITHSCORES"});
    const auto account = hash("as:{a:" + id + "}");
    const auto nx = account.find("nx");
    if (first->elements == 2 && nx != account.end()) {
      EXPECT_LE(std::stoll(nx->second), std::stoll(first->element[1]->str));
    }
  }

  std::string function_;
};

TEST_F(Holds, ApprovalPlacesAPendingHoldAndReducesAvailable) {
  const Decision d = auth("t1", 2'500);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.approved_minor, 2'500);
  EXPECT_EQ(d.balance_minor, 100'000);
  EXPECT_EQ(d.available_minor, 97'500);
  EXPECT_EQ(hold_state("t1"), "P");
  EXPECT_EQ(field("as:{a:1}", "held"), 2'500);
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dN.pos"), 1);
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dA.pos"), 2'500);
}

TEST_F(Holds, ReplayReturnsTheOriginalAnswerAndChangesNothing) {
  const Decision first = auth("t1", 2'500);
  const std::string before = snapshot();
  const Decision again = auth("t1", 2'500);
  EXPECT_EQ(again.code(), first.code());
  EXPECT_EQ(again.approved_minor, first.approved_minor);
  EXPECT_EQ(again.available_minor, first.available_minor);
  EXPECT_EQ(snapshot(), before);
}

// Every value of the reply comes back from the replay record, texts and figures alike.
TEST_F(Holds, ReplayOfADeclineReturnsEveryValueOfTheOriginal) {
  const Decision first = auth("t1", 60'000);
  ASSERT_EQ(first.code(), "61");
  ASSERT_EQ(first.reason_text(), "per_transaction");
  auth("t2", 1'000);  // the balance moves: the replay still says what the original saw
  const Decision again = auth("t1", 60'000);
  EXPECT_EQ(again.code(), "61");
  EXPECT_EQ(again.reason_text(), "per_transaction");
  EXPECT_EQ(again.value, 60'000);
  EXPECT_EQ(again.threshold, 50'000);
  EXPECT_EQ(again.balance_minor, 100'000);
  EXPECT_EQ(again.available_minor, 100'000);
}

// Replay records written as a JSON array (before 2026-12-07) are still read.
TEST_F(Holds, ReplayRecordsWrittenAsJsonAreStillRead) {
  ASSERT_EQ(auth("t1", 2'500).code(), "00");
  const auto r = command(redis(), {"GET", "as:{a:1}:i:t1"});
  ASSERT_EQ(r->type, REDIS_REPLY_STRING);
  const std::string record(r->str, r->len);
  const std::string fingerprint = record.substr(0, record.find('\n'));
  command(redis(), {"SET", "as:{a:1}:i:t1",
                    fingerprint + "\n[\"10\",1234,99000,95000,\"partial\",2500,1234,\"2:7:5\"]"});
  const Decision again = auth("t1", 2'500);
  EXPECT_EQ(again.code(), "10");
  EXPECT_EQ(again.approved_minor, 1'234);
  EXPECT_EQ(again.balance_minor, 99'000);
  EXPECT_EQ(again.available_minor, 95'000);
  EXPECT_EQ(again.reason_text(), "partial");
  EXPECT_EQ(again.value, 2'500);
  EXPECT_EQ(again.threshold, 1'234);
  EXPECT_EQ(again.fired_text(), "2:7:5");
}

TEST_F(Holds, SameKeyWithADifferentRequestIsADuplicate) {
  auth("t1", 2'500);
  const std::string before = snapshot();
  const Decision d = auth("t1", 2'600);
  EXPECT_EQ(d.code(), "94");
  EXPECT_EQ(d.reason_text(), "duplicate_key");
  EXPECT_EQ(snapshot(), before);
}

TEST_F(Holds, InsufficientFundsDeclinesWithTheFigures) {
  const Decision d =
      auth("t1", 100'001, false, Profile{.per_txn = 1'000'000, .day_amount = 1'000'000});
  EXPECT_EQ(d.code(), "51");
  EXPECT_EQ(d.reason_text(), "available");
  EXPECT_EQ(d.value, 100'001);
  EXPECT_EQ(d.threshold, 100'000);
  EXPECT_EQ(field("as:{a:1}", "held"), 0);
}

TEST_F(Holds, PartialApprovalWhenTheRequestAllowsIt) {
  const Profile big{.per_txn = 1'000'000, .day_amount = 1'000'000};
  ASSERT_EQ(auth("t1", 90'000, false, big).code(), "00");
  const Decision d = auth("t2", 25'000, true, big);
  EXPECT_EQ(d.code(), "10");
  EXPECT_EQ(d.approved_minor, 10'000);
  EXPECT_EQ(d.available_minor, 0);
  EXPECT_EQ(auth("t3", 1, true, big).code(), "51");  // nothing left to approve partially
}

TEST_F(Holds, OverdraftExtendsAvailable) {
  open_account("1", 1'000, 500);
  EXPECT_EQ(auth("t1", 1'500).code(), "00");
  EXPECT_EQ(auth("t2", 1).code(), "51");
}

TEST_F(Holds, CaptureForLessReleasesTheRestOfTheHold) {
  auth("t1", 2'500);
  const Decision d = capture("c1", "t1", 2'000);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.balance_minor, 98'000);
  EXPECT_EQ(d.available_minor, 98'000);
  EXPECT_EQ(hold_state("t1"), "C");
}

TEST_F(Holds, CaptureForMoreIsNeverDeclined) {
  open_account("1", 1'000, 0);
  auth("t1", 1'000);
  const Decision d = capture("c1", "t1", 1'200);  // e.g. a tip: the network has paid already
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.balance_minor, -200);
  EXPECT_EQ(d.available_minor, -200);
}

TEST_F(Holds, SecondCaptureOfAHoldIsADuplicateAndChangesNothing) {
  auth("t1", 2'500);
  capture("c1", "t1", 2'500);
  const std::string before = snapshot();
  EXPECT_EQ(capture("c2", "t1", 2'500).code(), "94");
  EXPECT_EQ(snapshot(), before);
}

TEST_F(Holds, CaptureWithoutAnAuthorizationPostsAnyway) {
  const Decision d = capture("c1", "never-authorized", 700);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.balance_minor, 99'300);
}

TEST_F(Holds, FullReversalBeforeCaptureVoidsTheHoldAndUndoesItsCountOnce) {
  auth("t1", 2'500);
  const Decision d = reverse("r1", "t1", 0);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.approved_minor, 2'500);
  EXPECT_EQ(d.available_minor, 100'000);
  EXPECT_EQ(hold_state("t1"), "V");
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dN.pos"), 0);
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dA.pos"), 0);
  // A second reversal under another key is acknowledged and changes nothing.
  const std::string before = snapshot();
  EXPECT_EQ(reverse("r2", "t1", 0).code(), "00");
  EXPECT_EQ(snapshot(), before);
}

TEST_F(Holds, PartialReversalLeavesTheReplacementAmountHeld) {
  auth("t1", 2'500);
  const Decision d = reverse("r1", "t1", 1'000);  // DE 95: 1,000 stays authorized
  EXPECT_EQ(d.approved_minor, 1'500);
  EXPECT_EQ(d.available_minor, 99'000);
  EXPECT_EQ(hold_state("t1"), "P");
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dN.pos"), 1);  // the purchase still counts
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dA.pos"), 1'000);
}

TEST_F(Holds, ReversalAfterCaptureCreditsBack) {
  auth("t1", 2'500);
  capture("c1", "t1", 2'500);
  const Decision d = reverse("r1", "t1", 500);
  EXPECT_EQ(d.approved_minor, 2'000);
  EXPECT_EQ(d.balance_minor, 99'500);
  EXPECT_EQ(reverse("r2", "t1", 0).balance_minor, 100'000);
  EXPECT_EQ(hold_state("t1"), "V");
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dN.pos"), 0);  // counted once, given back once
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dA.pos"), 0);
}

TEST_F(Holds, ReversalOfAnUnknownHoldIsAcknowledged) {
  const Decision d = reverse("r1", "unknown", 0);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.reason_text(), "no_hold");
}

TEST_F(Holds, AnExpiredHoldReturnsItsAmountWhenTheAccountIsTouched) {
  auth("t1", 2'500);
  EXPECT_EQ(balance("b1", kNow + kHoldTtl - 1).available_minor, 97'500);
  const Decision d = balance("b2", kNow + kHoldTtl);
  EXPECT_EQ(d.available_minor, 100'000);
  EXPECT_EQ(hold_state("t1"), "X");
  // A completion that arrives after the expiry still posts (it can never be declined).
  EXPECT_EQ(capture("c1", "t1", 2'500).balance_minor, 97'500);
}

// Calls look for due holds only once the account's bound of its next expiry ("nx") has passed:
// every hold must still come back at its own expiry, whichever order holds were placed in
// (a switch whose clock lags places a hold due before the others), and on accounts written
// before the bound existed.
TEST_F(Holds, EveryHoldExpiresOnTimeWhateverTheOrderItWasPlacedIn) {
  const Profile p{.day_count = 100, .month_count = 100};
  ASSERT_EQ(auth("t1", 1'000, false, p, "pos", "20231114", "", kNow).code(), "00");
  ASSERT_EQ(auth("t2", 2'000, false, p, "pos", "20231114", "", kNow + 10).code(), "00");
  ASSERT_EQ(auth("t3", 4'000, false, p, "pos", "20231114", "", kNow - 100).code(), "00");
  EXPECT_EQ(balance("b1", kNow + kHoldTtl - 101).available_minor, 93'000);
  EXPECT_EQ(balance("b2", kNow + kHoldTtl - 100).available_minor, 97'000);  // t3
  EXPECT_EQ(balance("b3", kNow + kHoldTtl - 1).available_minor, 97'000);
  EXPECT_EQ(balance("b4", kNow + kHoldTtl).available_minor, 98'000);  // t1
  EXPECT_EQ(balance("b5", kNow + kHoldTtl + 9).available_minor, 98'000);
  // An account from before the bound: it is looked for, then kept.
  ASSERT_EQ(command(redis(), {"HDEL", "as:{a:1}", "nx"})->integer, 1);
  EXPECT_EQ(balance("b6", kNow + kHoldTtl + 10).available_minor, 100'000);  // t2
  EXPECT_EQ(hash("as:{a:1}").at("nx"), "9007199254740991");                 // nothing pending
  for (const char* t : {"t1", "t2", "t3"}) {
    EXPECT_EQ(hold_state(t), "X") << t;
  }
  ASSERT_EQ(auth("t4", 500, false, p, "pos", "20231114", "", kNow + kHoldTtl).code(), "00");
  EXPECT_EQ(hash("as:{a:1}").at("nx"), std::to_string(kNow + 2 * kHoldTtl));
}

TEST_F(Holds, LimitsPerTransactionDayAndMonth) {
  const Profile p{.per_txn = 5'000,
                  .day_amount = 8'000,
                  .day_count = 2,
                  .month_amount = 9'000,
                  .month_count = 3};
  Decision d = auth("t1", 5'001, false, p);
  EXPECT_EQ(d.code(), "61");
  EXPECT_EQ(d.reason_text(), "per_transaction");
  EXPECT_EQ(d.threshold, 5'000);
  EXPECT_EQ(auth("t2", 5'000, false, p).code(), "00");
  d = auth("t3", 3'001, false, p);
  EXPECT_EQ(d.code(), "61");
  EXPECT_EQ(d.reason_text(), "day_amount");
  EXPECT_EQ(d.value, 8'001);
  EXPECT_EQ(auth("t4", 1'000, false, p).code(), "00");
  d = auth("t5", 1, false, p);
  EXPECT_EQ(d.code(), "65");
  EXPECT_EQ(d.reason_text(), "day_count");
  // The next day: day counters start again, the month's go on.
  d = auth("t6", 3'001, false, p, "pos", "20231115");
  EXPECT_EQ(d.code(), "61");
  EXPECT_EQ(d.reason_text(), "month_amount");
  EXPECT_EQ(auth("t7", 3'000, false, p, "pos", "20231115").code(), "00");
  d = auth("t8", 1, false, p, "pos", "20231115");
  EXPECT_EQ(d.code(), "65");
  EXPECT_EQ(d.reason_text(), "month_count");
}

TEST_F(Holds, LimitsAreCountedPerChannel) {
  const Profile p{.day_count = 1};
  EXPECT_EQ(auth("t1", 100, false, p, "pos").code(), "00");
  EXPECT_EQ(auth("t2", 100, false, p, "pos").code(), "65");
  EXPECT_EQ(auth("t3", 100, false, p, "atm").code(), "00");
}

TEST_F(Holds, CardAndAccountStatesDecline) {
  struct Case {
    const char* status;
    const char* rc;
  };
  for (const Case c : {Case{"blocked", "62"}, Case{"lost", "41"}, Case{"stolen", "43"},
                       Case{"closed", "62"}, Case{"inactive", "62"}}) {
    add_card("1", "tok1", c.status, "2812");
    const Decision d = auth(std::string("t-") + c.status, 100);
    EXPECT_EQ(d.code(), c.rc) << c.status;
  }
  add_card("1", "tok1", "active", "2310");
  EXPECT_EQ(auth("t-expired", 100).code(), "54");
  add_card("1", "tok1", "active", "2812");
  EXPECT_EQ(auth("t-mismatch", 100, false, {}, "pos", "20231114", "2901").code(), "54");
  EXPECT_EQ(auth("t-unknown-card", 100, false, {}, "pos", "20231114", "", kNow, "tok9").code(),
            "14");
  open_account("1", 100'000, 0, "blocked");
  EXPECT_EQ(auth("t-account", 100).code(), "62");
  EXPECT_EQ(field("as:{a:1}", "held"), 0);
}

TEST_F(Holds, ConcurrentClientsNeverOverspendOneAccount) {
  // 8 clients, each with its own connection, race 40 authorizations of 1,000 against a balance
  // of 100,000 (320 requests, room for exactly 100).
  const Profile p{.day_amount = 10'000'000,
                  .day_count = 1'000,
                  .month_amount = 10'000'000,
                  .month_count = 1'000};
  std::atomic<int> approved{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      auto ctx = server().connect();
      for (int i = 0; i < 40; ++i) {
        const std::string txn = "c" + std::to_string(c) + "-" + std::to_string(i);
        if (auth(txn, 1'000, false, p, "pos", "20231114", "", kNow, "tok1", ctx.get()).approved()) {
          approved.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (auto& t : clients) {
    t.join();
  }
  EXPECT_EQ(approved.load(), 100);
  EXPECT_EQ(field("as:{a:1}", "held"), 100'000);
  EXPECT_EQ(balance("b1").available_minor, 0);
}

void expect_same(const Decision& again, const Decision& first) {
  EXPECT_EQ(again.code(), first.code());
  EXPECT_EQ(again.approved_minor, first.approved_minor);
  EXPECT_EQ(again.balance_minor, first.balance_minor);
  EXPECT_EQ(again.available_minor, first.available_minor);
  EXPECT_EQ(again.reason_text(), first.reason_text());
}

TEST_F(Holds, IncrementRaisesTheHoldAndExtendsItsExpiry) {
  auth("t1", 2'500);
  EXPECT_EQ(expiry_score("t1"), kNow + kHoldTtl);
  constexpr std::int64_t kLater = kNow + 3'600'000;
  const Decision d = incr("i1", "t1", 1'000, false, {}, kLater);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.approved_minor, 1'000);
  EXPECT_EQ(d.balance_minor, 100'000);
  EXPECT_EQ(d.available_minor, 96'500);
  EXPECT_EQ(field("as:{a:1}", "held"), 3'500);
  EXPECT_EQ(hold_state("t1"), "P");
  EXPECT_EQ(hold_field("t1", 1), "3500");
  EXPECT_EQ(expiry_score("t1"), kLater + kHoldTtl);
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dA.pos"), 3'500);
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dN.pos"), 1);  // not a new transaction
  EXPECT_EQ(field("as:{a:1}:c:tok1", "mN.pos"), 1);
  // The original expiry has no effect any more; the extended one has.
  EXPECT_EQ(balance("b1", kNow + kHoldTtl).available_minor, 96'500);
  EXPECT_EQ(hold_state("t1"), "P");
  EXPECT_EQ(balance("b2", kLater + kHoldTtl).available_minor, 100'000);
  EXPECT_EQ(hold_state("t1"), "X");
}

TEST_F(Holds, IncrementCountsAmountsNotTransactions) {
  const Profile p{.per_txn = 5'000, .day_amount = 6'000, .day_count = 2};
  ASSERT_EQ(auth("t1", 4'000, false, p).code(), "00");
  ASSERT_EQ(auth("t2", 1'000, false, p).code(), "00");  // the day's count is now used up
  EXPECT_EQ(incr("i1", "t1", 500, false, p).code(), "00");
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dN.pos"), 2);
  Decision d = incr("i2", "t1", 501, false, p);  // the hold's total is the transaction's
  EXPECT_EQ(d.code(), "61");
  EXPECT_EQ(d.reason_text(), "per_transaction");
  EXPECT_EQ(d.value, 5'001);
  EXPECT_EQ(d.threshold, 5'000);
  d = incr("i3", "t2", 501, false, p);
  EXPECT_EQ(d.code(), "61");
  EXPECT_EQ(d.reason_text(), "day_amount");
  EXPECT_EQ(d.value, 6'001);
  EXPECT_EQ(field("as:{a:1}", "held"), 5'500);
  // A full reversal undoes the increment with the hold.
  EXPECT_EQ(reverse("r1", "t1", 0).approved_minor, 4'500);
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dA.pos"), 1'000);
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dN.pos"), 1);
}

TEST_F(Holds, IncrementOverAvailableDeclinesOrApprovesPartially) {
  open_account("1", 10'000, 0);
  ASSERT_EQ(auth("t1", 8'000).code(), "00");
  Decision d = incr("i1", "t1", 3'000);
  EXPECT_EQ(d.code(), "51");
  EXPECT_EQ(d.reason_text(), "available");
  EXPECT_EQ(d.value, 3'000);
  EXPECT_EQ(d.threshold, 2'000);
  EXPECT_EQ(field("as:{a:1}", "held"), 8'000);
  EXPECT_EQ(expiry_score("t1"), kNow + kHoldTtl);
  d = incr("i2", "t1", 3'000, true);
  EXPECT_EQ(d.code(), "10");
  EXPECT_EQ(d.approved_minor, 2'000);
  EXPECT_EQ(d.available_minor, 0);
  EXPECT_EQ(hold_field("t1", 1), "10000");
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dA.pos"), 10'000);
  EXPECT_EQ(incr("i3", "t1", 1, true).code(), "51");
}

TEST_F(Holds, IncrementOfAHoldThatIsNotPendingIs12) {
  auth("t1", 2'500);
  capture("c1", "t1", 2'500);
  auth("t2", 1'000);
  reverse("r1", "t2", 0);
  debit("d1", 700);
  refund("f1", 300);
  const std::string before = snapshot();
  for (const char* hold : {"t1", "t2", "d1", "f1", "unknown"}) {
    const Decision d = incr(std::string("i-") + hold, hold, 100);
    EXPECT_EQ(d.code(), "12") << hold;
    EXPECT_EQ(d.reason_text(), "no_pending_hold") << hold;
  }
  EXPECT_EQ(snapshot(), before);
  EXPECT_EQ(expiry_score("t1"), -1);
  EXPECT_EQ(expiry_score("t2"), -1);
}

TEST_F(Holds, IncrementOfAnExpiredHoldIs12AndReleasesIt) {
  // 17 holds expire together; the lazy expiry of one call handles 16 (h00..h15), so h16 is
  // still pending when the increment reads it and the increment must notice the expiry itself.
  const Profile p{.day_count = 100};
  for (int i = 0; i < 17; ++i) {
    ASSERT_EQ(auth((i < 10 ? "h0" : "h") + std::to_string(i), 100, false, p).code(), "00");
  }
  const Decision d = incr("i1", "h16", 100, false, p, kNow + kHoldTtl);
  EXPECT_EQ(d.code(), "12");
  EXPECT_EQ(d.reason_text(), "no_pending_hold");
  EXPECT_EQ(hold_state("h16"), "X");
  EXPECT_EQ(expiry_score("h16"), -1);
  EXPECT_EQ(field("as:{a:1}", "held"), 0);
  EXPECT_EQ(d.available_minor, 100'000);
}

TEST_F(Holds, IncrementChecksTheCardLikeAuth) {
  auth("t1", 2'500);
  add_card("1", "tok1", "blocked", "2812");
  EXPECT_EQ(incr("i1", "t1", 100).code(), "62");
  add_card("1", "tok1", "active", "2310");
  EXPECT_EQ(incr("i2", "t1", 100).code(), "54");
  add_card("1", "tok1", "active", "2812");
  EXPECT_EQ(incr("i3", "t1", 0).code(), "13");
  EXPECT_EQ(field("as:{a:1}", "held"), 2'500);
}

TEST_F(Holds, IncrementThenCaptureForTheTotal) {
  auth("t1", 2'500);
  incr("i1", "t1", 1'000);
  incr("i2", "t1", 500);
  const Decision d = capture("c1", "t1", 4'000);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.approved_minor, 4'000);
  EXPECT_EQ(d.balance_minor, 96'000);
  EXPECT_EQ(d.available_minor, 96'000);
  EXPECT_EQ(field("as:{a:1}", "held"), 0);
  EXPECT_EQ(hold_state("t1"), "C");
  EXPECT_EQ(expiry_score("t1"), -1);
}

TEST_F(Holds, IncrementReplayChangesNothing) {
  auth("t1", 2'500);
  const Decision first = incr("i1", "t1", 1'000, false, {}, kNow + 1'000);
  ASSERT_EQ(first.code(), "00");
  const std::string before = snapshot();
  const Decision again = incr("i1", "t1", 1'000, false, {}, kNow + 1'000);
  expect_same(again, first);
  EXPECT_EQ(snapshot(), before);
  EXPECT_EQ(expiry_score("t1"), kNow + 1'000 + kHoldTtl);
  EXPECT_EQ(incr("i1", "t1", 1'001).code(), "94");
  EXPECT_EQ(snapshot(), before);
}

TEST_F(Holds, DebitPostsAtOnce) {
  const Decision d = debit("d1", 2'500);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.approved_minor, 2'500);
  EXPECT_EQ(d.balance_minor, 97'500);
  EXPECT_EQ(d.available_minor, 97'500);
  EXPECT_EQ(field("as:{a:1}", "held"), 0);
  EXPECT_EQ(hold_state("d1"), "C");
  EXPECT_EQ(hold_field("d1", 2), "2500");
  EXPECT_EQ(expiry_score("d1"), -1);
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dN.atm"), 1);
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dA.atm"), 2'500);
  EXPECT_EQ(field("as:{a:1}:c:tok1", "mA.atm"), 2'500);
  EXPECT_EQ(debit("d1", 100).code(), "94");  // the same key, another request
}

TEST_F(Holds, DebitDeclinesLikeAuth) {
  const Profile big{.per_txn = 1'000'000, .day_amount = 1'000'000};
  auth("t1", 30'000, false, big);
  const std::string before = snapshot();
  Decision d = debit("d-51", 70'001, false, big);
  EXPECT_EQ(d.code(), "51");
  EXPECT_EQ(d.value, 70'001);
  EXPECT_EQ(d.threshold, 70'000);
  d = debit("d-per-txn", 50'001);
  EXPECT_EQ(d.code(), "61");
  EXPECT_EQ(d.reason_text(), "per_transaction");
  d = debit("d-day", 5'000, false, Profile{.day_amount = 4'999});
  EXPECT_EQ(d.code(), "61");
  EXPECT_EQ(d.reason_text(), "day_amount");
  EXPECT_EQ(debit("d-57", 100, false, {}, "", "978").code(), "57");
  EXPECT_EQ(debit("d-54-presented", 100, false, {}, "2901").code(), "54");
  EXPECT_EQ(snapshot(), before);
  ASSERT_EQ(debit("d1", 100, false, Profile{.day_count = 1}).code(), "00");
  d = debit("d-65", 100, false, Profile{.day_count = 1});
  EXPECT_EQ(d.code(), "65");
  EXPECT_EQ(d.reason_text(), "day_count");
  add_card("1", "tok1", "blocked", "2812");
  EXPECT_EQ(debit("d-62", 100).code(), "62");
  add_card("1", "tok1", "active", "2310");
  EXPECT_EQ(debit("d-54", 100).code(), "54");
  EXPECT_EQ(field("as:{a:1}", "bal"), 99'900);
  EXPECT_EQ(field("as:{a:1}", "held"), 30'000);
}

TEST_F(Holds, DebitPartialApprovalWhenTheRequestAllowsIt) {
  open_account("1", 3'000, 0);
  const Decision d = debit("d1", 5'000, true);  // e.g. cash back the account cannot cover
  EXPECT_EQ(d.code(), "10");
  EXPECT_EQ(d.approved_minor, 3'000);
  EXPECT_EQ(d.balance_minor, 0);
  EXPECT_EQ(hold_field("d1", 2), "3000");
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dA.atm"), 3'000);
  EXPECT_EQ(debit("d2", 1, true).code(), "51");
}

TEST_F(Holds, ReversalOfADebitCreditsItBackOnce) {
  debit("d1", 2'500);
  Decision d = reverse("r1", "d1", 1'000);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.approved_minor, 1'500);
  EXPECT_EQ(d.balance_minor, 99'000);
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dN.atm"), 1);  // a partial reversal: it still happened
  d = reverse("r2", "d1", 0);
  EXPECT_EQ(d.approved_minor, 1'000);
  EXPECT_EQ(d.balance_minor, 100'000);
  EXPECT_EQ(hold_state("d1"), "V");
  // Reversed in full (e.g. an ATM that timed out): the day's usage is given back.
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dN.atm"), 0);
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dA.atm"), 0);
  const std::string before = snapshot();
  d = reverse("r3", "d1", 0);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.approved_minor, 0);
  EXPECT_EQ(snapshot(), before);
}

TEST_F(Holds, RefundCreditsEvenOnABlockedCard) {
  Decision d = refund("f1", 1'500);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.approved_minor, 1'500);
  EXPECT_EQ(d.balance_minor, 101'500);
  EXPECT_EQ(d.available_minor, 101'500);
  EXPECT_EQ(hold_state("f1"), "R");
  EXPECT_EQ(hold_field("f1", 2), "1500");
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dN.pos"), 0);
  for (const char* status : {"blocked", "lost", "stolen"}) {
    add_card("1", "tok1", status, "2812");
    EXPECT_EQ(refund(std::string("f-") + status, 100).code(), "00") << status;
  }
  open_account("1", 0, 0, "blocked");  // a blocked account still receives credits
  EXPECT_EQ(refund("f-blocked-account", 100).balance_minor, 100);
  EXPECT_EQ(refund("f-zero", 0).code(), "13");
}

TEST_F(Holds, RefundToAClosedAccountIs62) {
  open_account("1", 5'000, 0, "closed");
  const std::string before = snapshot();
  const Decision d = refund("f1", 1'500);
  EXPECT_EQ(d.code(), "62");
  EXPECT_EQ(d.reason_text(), "account_closed");
  EXPECT_EQ(d.balance_minor, 5'000);
  EXPECT_EQ(snapshot(), before);
}

TEST_F(Holds, RefundInAnotherCurrencyIs57) {
  const Decision d = refund("f1", 1'500, "978");
  EXPECT_EQ(d.code(), "57");
  EXPECT_EQ(d.reason_text(), "currency");
  EXPECT_EQ(field("as:{a:1}", "bal"), 100'000);
  EXPECT_EQ(hold_state("f1"), "");
}

TEST_F(Holds, ReversalOfARefundTakesTheCreditBack) {
  refund("f1", 1'500);
  Decision d = reverse("r1", "f1", 500);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.approved_minor, 1'000);
  EXPECT_EQ(d.balance_minor, 100'500);
  EXPECT_EQ(hold_state("f1"), "R");
  d = reverse("r2", "f1", 0);
  EXPECT_EQ(d.approved_minor, 500);
  EXPECT_EQ(d.balance_minor, 100'000);
  EXPECT_EQ(hold_state("f1"), "V");
  const std::string before = snapshot();
  EXPECT_EQ(reverse("r3", "f1", 0).approved_minor, 0);
  EXPECT_EQ(snapshot(), before);
}

TEST_F(Holds, ReplayOfDebitRefundAndTheirReversalsChangesNothing) {
  const Decision debited = debit("d1", 2'500);
  std::string before = snapshot();
  expect_same(debit("d1", 2'500), debited);
  EXPECT_EQ(snapshot(), before);

  const Decision refunded = refund("f1", 700);
  before = snapshot();
  expect_same(refund("f1", 700), refunded);
  EXPECT_EQ(snapshot(), before);

  const Decision reversed = reverse("r1", "f1", 0);
  before = snapshot();
  expect_same(reverse("r1", "f1", 0), reversed);
  EXPECT_EQ(snapshot(), before);
  EXPECT_EQ(field("as:{a:1}", "bal"), 97'500);
}

TEST_F(Holds, AdjustCreditsAndDebitsWithoutLimitsOnceAndNotOnAClosedAccount) {
  auth("h1", 40'000);
  Decision d = run("adjust", "a1", {"a1", "-90000", "840"});
  EXPECT_EQ(d.code(), "00");  // a debit by staff: no available check, may go below zero
  EXPECT_EQ(d.approved_minor, -90'000);
  EXPECT_EQ(d.balance_minor, 10'000);
  EXPECT_EQ(d.available_minor, -30'000);
  EXPECT_EQ(hold_state("a1"), "A");
  std::string before = snapshot();
  expect_same(run("adjust", "a1", {"a1", "-90000", "840"}), d);
  EXPECT_EQ(snapshot(), before);
  EXPECT_EQ(run("adjust", "a1", {"a1", "-1", "840"}).code(), "94");  // same key, other request
  EXPECT_EQ(run("adjust", "a2", {"a2", "90000", "840"}).balance_minor, 100'000);
  EXPECT_EQ(run("adjust", "a3", {"a3", "5", "978"}).code(), "57");
  EXPECT_EQ(run("adjust", "a4", {"a4", "0", "840"}).code(), "13");
  EXPECT_EQ(run("adjust", "a5", {"a5", "1.5", "840"}).code(), "13");
  EXPECT_EQ(reverse("r1", "a2", 0).reason_text(), "hold_A");  // acknowledged, nothing moves
  EXPECT_EQ(field("as:{a:1}", "bal"), 100'000);
  open_account("1", 100'000, 0, "closed");
  command(redis(), {"HSET", "as:{a:1}", "held", "40000"});
  before = snapshot();
  EXPECT_EQ(run("adjust", "a6", {"a6", "5", "840"}).code(), "62");
  EXPECT_EQ(snapshot(), before);
  reverse("r2", "h1", 0);
}

TEST_F(Holds, SweepExpiresDueHoldsInBoundedStepsAndReportsTheNextDue) {
  const Profile p{.day_count = 100, .month_count = 100};
  for (int i = 0; i < 20; ++i) {  // due at kNow + kHoldTtl + i
    ASSERT_EQ(auth("t" + std::to_string(i), 100, false, p, "pos", "20231114", "", kNow + i).code(),
              "00");
  }
  const std::int64_t later = kNow + kHoldTtl + 19;
  // A sweep call expires at most its limit (no lazy pass in front of it) and reports the next
  // one's due time; it leaves no replay record.
  Decision d = run("sweep", "s1", {"2"}, later);
  EXPECT_EQ(d.reason_text(), "swept");
  EXPECT_EQ(d.value, 2);
  EXPECT_EQ(d.threshold, kNow + kHoldTtl + 2);
  EXPECT_EQ(d.available_minor, 100'000 - 1'800);
  EXPECT_EQ(command(redis(), {"EXISTS", "as:{a:1}:i:s1"})->integer, 0);
  d = run("sweep", "s2", {"17"}, later);
  EXPECT_EQ(d.value, 17);
  EXPECT_EQ(d.threshold, kNow + kHoldTtl + 19);
  d = run("sweep", "s2", {"16"}, later);  // the same key again sweeps again: no replay
  EXPECT_EQ(d.value, 1);
  EXPECT_EQ(d.threshold, 0);
  EXPECT_EQ(d.available_minor, 100'000);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(hold_state("t" + std::to_string(i)), "X") << i;
  }
}

// A stand-in approval replayed by the reconciler (force_auth): placed over the balance and the
// limits, available going below zero, counted in the card's usage, answered 00 "stand_in".
TEST_F(Holds, ForcedAuthOverTheBalanceIsPlaced) {
  ASSERT_EQ(auth("t0", 150'000).code(), "61");  // what the ordinary checks say
  const Decision d = forced("t1", 150'000);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.reason_text(), "stand_in");
  EXPECT_EQ(d.approved_minor, 150'000);
  EXPECT_EQ(d.available_minor, -50'000);
  EXPECT_EQ(hold_state("t1"), "P");
  EXPECT_EQ(field("as:{a:1}", "held"), 150'000);
  EXPECT_EQ(expiry_score("t1"), kNow + kHoldTtl);
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dN.pos"), 1);
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dA.pos"), 150'000);
  // A blocked card does not stop it either: the switch has answered 00 already.
  add_card("1", "tok1", "blocked", "2812");
  EXPECT_EQ(forced("t2", 100).code(), "00");
  // A stand-in debit posts at once.
  const Decision debit = forced("t3", 1'000, "debit");
  EXPECT_EQ(debit.code(), "00");
  EXPECT_EQ(debit.balance_minor, 99'000);
  EXPECT_EQ(hold_state("t3"), "C");
}

TEST_F(Holds, ForcedAuthReplayChangesNothing) {
  const Decision first = forced("t1", 2'500);
  ASSERT_EQ(first.code(), "00");
  const std::string before = snapshot();
  const Decision again = forced("t1", 2'500);
  EXPECT_EQ(again.code(), "00");
  EXPECT_EQ(again.reason_text(), "stand_in");
  EXPECT_EQ(again.available_minor, first.available_minor);
  EXPECT_EQ(snapshot(), before);
  // A repeat of the original request is answered like the stand-in answer.
  EXPECT_EQ(auth("t1", 2'500).code(), "00");
  EXPECT_EQ(snapshot(), before);
}

// The late original call did apply: the replay returns its answer and places no second hold.
TEST_F(Holds, ForcedAuthWhoseKeyWasApprovedReturnsTheOriginal) {
  ASSERT_EQ(auth("t1", 2'500).code(), "00");
  const std::string before = snapshot();
  const Decision d = forced("t1", 2'500);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.reason_text(), "");  // the original's reply, not a forced one
  EXPECT_EQ(snapshot(), before);
  EXPECT_EQ(field("as:{a:1}", "held"), 2'500);
}

// The late original call declined after the switch approved by stand-in: the forced call places
// the hold and its reply replaces the decline's replay record.
TEST_F(Holds, ForcedAuthSupersedesADeclinedOriginal) {
  ASSERT_EQ(auth("t1", 150'000).code(), "61");
  const Decision d = forced("t1", 150'000);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.reason_text(), "stand_in");
  EXPECT_EQ(field("as:{a:1}", "held"), 150'000);
  const std::string before = snapshot();
  EXPECT_EQ(auth("t1", 150'000).code(), "00");  // the repeat gets the stand-in answer
  EXPECT_EQ(forced("t1", 150'000).code(), "00");
  EXPECT_EQ(snapshot(), before);
  // Another request under the key is still a duplicate.
  EXPECT_EQ(forced("t1", 1).code(), "94");
  EXPECT_EQ(snapshot(), before);
}

// The late original call approved part of what the switch approved in full by stand-in: the
// forced call raises its hold (or debit) to the full amount, and its reply replaces the
// original's replay record.
TEST_F(Holds, ForcedCallTopsUpAPartialOriginalToTheStandInAmount) {
  const Profile p{.per_txn = 500'000, .day_amount = 500'000};
  const Decision original = auth("t1", 120'000, true, p);
  ASSERT_EQ(original.code(), "10");
  ASSERT_EQ(original.approved_minor, 100'000);
  const Decision d = forced("t1", 120'000, "auth", p, true);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.reason_text(), "stand_in");
  EXPECT_EQ(d.approved_minor, 120'000);
  EXPECT_EQ(d.available_minor, -20'000);
  EXPECT_EQ(field("as:{a:1}", "held"), 120'000);
  EXPECT_EQ(hash("as:{a:1}:h")["t1"].substr(0, 9), "P|120000|");
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dA.pos"), 120'000);  // counted once, in full
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dN.pos"), 1);
  const std::string before = snapshot();
  const Decision repeat = auth("t1", 120'000, true, p);  // the repeat gets the stand-in answer
  EXPECT_EQ(repeat.code(), "00");
  EXPECT_EQ(repeat.approved_minor, 120'000);
  EXPECT_EQ(forced("t1", 120'000, "auth", p, true).code(), "00");
  EXPECT_EQ(snapshot(), before);
}

TEST_F(Holds, ForcedCallTopsUpAPartialDebit) {
  const Profile p{.per_txn = 500'000, .day_amount = 500'000};
  const Decision original = debit("d1", 130'000, true, p);
  ASSERT_EQ(original.code(), "10");
  ASSERT_EQ(original.approved_minor, 100'000);
  const Decision d = forced("d1", 130'000, "debit", p, true);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.reason_text(), "stand_in");
  EXPECT_EQ(d.balance_minor, -30'000);
  EXPECT_EQ(field("as:{a:1}", "bal"), -30'000);
  EXPECT_EQ(hash("as:{a:1}:h")["d1"].substr(0, 16), "C|130000|130000|");
  EXPECT_EQ(field("as:{a:1}:c:tok1", "dA.atm"), 130'000);
}

// Once the original's hold is settled nothing more is owed; once it changed otherwise (raised,
// partly reversed) a person decides: the original's reply comes back and nothing changes.
TEST_F(Holds, ForcedTopUpOfAHoldThatMovedOnChangesNothing) {
  const Profile p{.per_txn = 500'000, .day_amount = 500'000, .day_count = 100};
  ASSERT_EQ(auth("t1", 120'000, true, p).code(), "10");
  ASSERT_EQ(reverse("r1", "t1", 0).code(), "00");
  std::string before = snapshot();
  Decision d = forced("t1", 120'000, "auth", p, true);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.reason_text(), "hold_V");
  EXPECT_EQ(d.approved_minor, 0);
  EXPECT_EQ(snapshot(), before);

  ASSERT_EQ(auth("t2", 120'000, true, p).code(), "10");
  ASSERT_EQ(capture("c2", "t2", 90'000).code(), "00");
  before = snapshot();
  EXPECT_EQ(forced("t2", 120'000, "auth", p, true).reason_text(), "hold_C");
  EXPECT_EQ(snapshot(), before);

  ASSERT_EQ(auth("t3", 30'000, true, p).code(), "10");  // 10'000 available
  ASSERT_EQ(reverse("r3", "t3", 4'000).code(), "00");
  before = snapshot();
  d = forced("t3", 30'000, "auth", p, true);
  EXPECT_EQ(d.code(), "10");
  EXPECT_EQ(d.approved_minor, 10'000);  // the original's reply
  EXPECT_EQ(snapshot(), before);
}

// A reversal that reaches Redis before the authorization it reverses leaves a void record, so
// the authorization (late, or replayed by the reconciler) places nothing.
TEST_F(Holds, ReversalBeforeItsAuthorizationLeavesNothingHeld) {
  ASSERT_EQ(reverse("r1", "t1", 0).reason_text(), "no_hold");
  EXPECT_EQ(hold_state("t1"), "V");
  const Decision f = forced("t1", 2'500);
  EXPECT_EQ(f.code(), "94");
  EXPECT_EQ(f.reason_text(), "hold_exists");
  EXPECT_EQ(auth("t1", 2'500).code(), "94");
  EXPECT_EQ(field("as:{a:1}", "held"), 0);
  EXPECT_EQ(hold_state("t1"), "V");
}

TEST_F(Holds, ForcedAuthIsRefusedOnlyWhenItCannotBePlaced) {
  open_account("2", 1'000, 0);
  add_card("2", "tok1", "active", "2812");
  command(redis(), {"HSET", "as:{a:2}", "cur", "978"});
  std::vector<std::string> args = {"t1", "100", "840", "pos", "5411", ""};
  const auto tail = limit_tail("20231114", false, Profile{});
  args.insert(args.end(), tail.begin(), tail.end());
  EXPECT_EQ(run("force_auth", "t1", args, kNow, "tok1", "2", nullptr, "auth").code(), "57");
  EXPECT_EQ(run("force_auth", "t1", args, kNow, "tok1", "none", nullptr, "auth").code(), "14");
  EXPECT_EQ(field("as:{a:2}", "held"), 0);
}

// Velocity of holds.lua: the definitions built into the library (define_velocity) and the
// arguments after auth's 20 (see the script's comment).
struct Velocity {
  std::string pre_rc;
  int pre_score = 0;
  int decline_score = 0;
  std::string score_rc = "59";
  std::string country = "US";
  std::vector<std::vector<std::string>> counters;  // cid scope counts window_ms matches
  std::vector<std::vector<std::string>>
      rules;  // kind ref measure threshold action code score shadow

  // The library's one definition list: the counters without their per-call "matches".
  [[nodiscard]] std::vector<std::string> definition() const {
    std::vector<std::string> d = {std::to_string(decline_score), score_rc,
                                  std::to_string(counters.size())};
    for (const auto& c : counters) {
      d.insert(d.end(), c.begin(), c.begin() + 4);
    }
    d.push_back(std::to_string(rules.size()));
    for (const auto& r : rules) {
      d.insert(d.end(), r.begin(), r.end());
    }
    return d;
  }
  [[nodiscard]] std::vector<std::string> args() const {
    std::string matches;
    for (const auto& c : counters) {
      matches += c[4];
    }
    return {pre_rc, std::to_string(pre_score), country, "1", matches};
  }
};

class VelocityHolds : public Holds {
 protected:
  // An auth with `v`'s arguments, through a library holding `v`'s definitions (loaded when they
  // differ from the last call's).
  Decision vauth(const std::string& txn, std::int64_t amount, const Velocity& v,
                 std::int64_t now = kNow, const std::string& mcc = "5411") {
    const std::vector<std::vector<std::string>> definitions = {v.definition()};
    if (definitions != loaded_) {
      function_ = support::load_holds(redis(), limits::make_holds_library(definitions));
      loaded_ = definitions;
    }
    const Profile p{.day_count = 1'000, .month_count = 10'000};
    std::vector<std::string> args = {txn, std::to_string(amount), "840", "pos", mcc, ""};
    const auto tail = limit_tail("20231114", false, p);
    args.insert(args.end(), tail.begin(), tail.end());
    const auto extra = v.args();
    args.insert(args.end(), extra.begin(), extra.end());
    return run("auth", txn, args, now);
  }
  std::vector<std::vector<std::string>> loaded_;
  std::string card_field(const std::string& f) { return hash("as:{a:1}:c:tok1")[f]; }
};

TEST_F(VelocityHolds, CardTestingDeclinesAfterTooManyDeclinesInTheWindow) {
  Velocity v;
  v.counters = {{"ct1", "c", "d", "600000", "1"}};
  v.rules = {{"w", "1", "n", "3", "d", "59", "0", "0"}};
  // Three declines (over the per-transaction limit) inside ten minutes...
  for (int i = 0; i < 3; ++i) {
    const Decision d = vauth("big" + std::to_string(i), 500'000, v, kNow + i * 1'000);
    EXPECT_EQ(d.code(), "61");
    EXPECT_EQ(d.fired_text(), "");
  }
  // ...so the fourth attempt is declined by velocity, even for an amount that would pass.
  Decision d = vauth("small", 100, v, kNow + 5'000);
  EXPECT_EQ(d.code(), "59");
  EXPECT_EQ(d.reason_text(), "velocity");
  EXPECT_EQ(d.value, 4);
  EXPECT_EQ(d.threshold, 3);
  EXPECT_EQ(d.fired_text(), "1:4:3");
  EXPECT_EQ(hold_state("small"), "");  // nothing held
  // Eleven minutes after the first decline the window has moved on.
  d = vauth("later", 100, v, kNow + 11 * 60'000);
  EXPECT_EQ(d.code(), "00");
  // A counter whose filter the transaction does not pass cannot decline it.
  v.counters[0][4] = "0";
  EXPECT_EQ(vauth("unfiltered", 100, v, kNow + 6'000).code(), "00");
}

TEST_F(VelocityHolds, AmountPerAccountOverAWindowAndItsBucketsStayBounded) {
  Velocity v;
  v.counters = {{"amt", "a", "a", "3600000", "1"}};
  v.rules = {{"w", "1", "a", "10000", "d", "61", "0", "0"}};
  EXPECT_EQ(vauth("t1", 6'000, v).code(), "00");
  Decision d = vauth("t2", 5'000, v, kNow + 60'000);
  EXPECT_EQ(d.code(), "61");
  EXPECT_EQ(d.value, 11'000);
  EXPECT_EQ(vauth("t3", 4'000, v, kNow + 120'000).code(), "00");  // 10,000 is not above
  // Two hours later the hour's buckets are out of the window.
  EXPECT_EQ(vauth("t4", 9'000, v, kNow + 2 * 3'600'000).code(), "00");
  // Many transactions over many hours: the account keeps at most 12 buckets of the counter.
  for (int i = 0; i < 60; ++i) {
    (void)vauth("m" + std::to_string(i), 10, v, kNow + 3 * 3'600'000 + i * 400'000LL);
  }
  const std::string ring = hash("as:{a:1}")["v.amt"];
  EXPECT_LE(std::count(ring.begin(), ring.end(), ','), 12 * 3 - 1) << ring;
  for (int i = 0; i < 60; ++i) {  // release them for the fixture's invariant
    reverse("rv" + std::to_string(i), "m" + std::to_string(i), 0);
  }
  for (const char* t : {"t1", "t3", "t4"}) {
    reverse(std::string("r") + t, t, 0);
  }
}

TEST_F(VelocityHolds, AReversalTakesBackWhatItsAuthorizationCountedOnce) {
  Velocity v;
  v.counters = {{"cnt", "c", "a", "86400000", "1"}};
  v.rules = {{"w", "1", "n", "2", "d", "65", "0", "0"}};
  EXPECT_EQ(vauth("a1", 100, v).code(), "00");
  EXPECT_EQ(vauth("a2", 100, v).code(), "00");
  EXPECT_EQ(vauth("a3", 100, v).code(), "65");  // a third approval would be above 2
  reverse("r1", "a1", 0);
  reverse("r1", "a1", 0);                       // a replay undoes nothing more
  reverse("r1b", "a1", 0);                      // nor does a second reversal of a voided hold
  EXPECT_EQ(vauth("a4", 100, v).code(), "00");  // one slot was given back, exactly one
  EXPECT_EQ(vauth("a5", 100, v).code(), "65");
  // Partial reversal gives back amount only; capture then full reversal gives back the count.
  Velocity amounts;
  amounts.counters = {{"sum", "c", "a", "86400000", "1"}};
  amounts.rules = {{"w", "1", "a", "1000", "d", "61", "0", "0"}};
  EXPECT_EQ(vauth("b1", 800, amounts).code(), "00");
  EXPECT_EQ(vauth("b2", 300, amounts).code(), "61");  // 1,100
  reverse("rb1", "b1", 500);                          // 300 released
  EXPECT_EQ(vauth("b3", 300, amounts).code(), "00");  // 500 + 300 + 300? no: 500 + 300 = 800
  capture("cb3", "b3", 300);
  reverse("rb3", "b3", 0);
  EXPECT_EQ(vauth("b4", 500, amounts).code(), "00");  // 500 + 500
  for (const char* t : {"a2", "a4", "b1", "b4"}) {
    reverse(std::string("end-") + t, t, 0);
  }
}

TEST_F(VelocityHolds, ConsecutiveDeclinesFirstUseAndCountryChange) {
  Velocity v;
  v.rules = {{"cd", "0", "n", "2", "s", "", "10", "0"},
             {"fc", "0", "n", "0", "s", "", "20", "0"},
             {"fm", "0", "n", "0", "s", "", "30", "0"},
             {"cc", "0", "n", "3600000", "d", "59", "0", "0"}};
  EXPECT_EQ(vauth("u1", 100, v).fired_text(), "");  // no history yet: nothing is "first"
  EXPECT_EQ(card_field("sc"), "US");
  EXPECT_EQ(card_field("sm"), "5411");
  v.pre_rc = "05";
  (void)vauth("d1", 100, v, kNow + 1'000);
  (void)vauth("d2", 100, v, kNow + 2'000);
  EXPECT_EQ(card_field("cd"), "2");
  v.pre_rc = "";
  Decision d = vauth("u2", 100, v, kNow + 3'000, "5812");  // 2 declines in a row, new MCC
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.fired_text(), "1:2:2;3:0:0");
  EXPECT_EQ(card_field("cd"), "0");
  v.country = "FR";  // ten minutes after a US purchase: first use of FR and too fast a change
  d = vauth("u3", 100, v, kNow + 600'000);
  EXPECT_EQ(d.code(), "59");
  EXPECT_EQ(d.fired_text(), "2:0:0;4:597000:3600000");
  d = vauth("u4", 100, v, kNow + 2 * 3'600'000);  // two hours later the change is plausible
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.fired_text(), "2:0:0");  // still a first use: u3 was declined, FR never seen
  EXPECT_EQ(vauth("u5", 100, v, kNow + 3 * 3'600'000).fired_text(), "");
  for (const char* t : {"u1", "u2", "u4", "u5"}) {
    reverse(std::string("r") + t, t, 0);
  }
}

TEST_F(VelocityHolds, ShadowRulesReportAndScoresAddUpWithTheStatelessScore) {
  Velocity v;
  v.pre_score = 40;
  v.decline_score = 70;
  v.counters = {{"n", "c", "*", "600000", "1"}};
  v.rules = {{"w", "1", "n", "0", "d", "59", "0", "1"},  // shadow: would decline everything
             {"w", "1", "n", "1", "s", "", "30", "0"}};  // the second one in 10 min: +30
  Decision d = vauth("s1", 100, v);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.fired_text(), "1:1:0:s");
  d = vauth("s2", 100, v, kNow + 1'000);
  EXPECT_EQ(d.code(), "59");
  EXPECT_EQ(d.reason_text(), "score");
  EXPECT_EQ(d.value, 70);
  EXPECT_EQ(d.threshold, 70);
  EXPECT_EQ(d.fired_text(), "1:2:0:s;2:2:1");
  v.pre_rc = "57";  // the stateless rules declined: that code, velocity still reported
  d = vauth("s3", 100, v, kNow + 2'000);
  EXPECT_EQ(d.code(), "57");
  EXPECT_EQ(d.reason_text(), "rules");
  reverse("rs1", "s1", 0);
}

// A call naming definitions its library does not have (a switch and a library of different
// rule sets) is refused whole: nothing is held or counted.
TEST_F(VelocityHolds, DefinitionsTheLibraryDoesNotHaveAreAnErrorThatChangesNothing) {
  Velocity v;
  v.counters = {{"n", "c", "*", "600000", "1"}};
  v.rules = {{"w", "1", "n", "5", "d", "59", "0", "0"}};
  EXPECT_EQ(vauth("k1", 100, v).code(), "00");  // loads the library with v's definitions
  for (const auto& [which, matches] :
       std::vector<std::pair<std::string, std::string>>{{"2", "1"}, {"1", "11"}, {"x", "1"}}) {
    AccountKeys keys;
    ASSERT_TRUE(keys.set("1", "tok1", "k2"));
    std::vector<std::string> argv = {"FCALL", function_, "5"};
    for (std::size_t i = 0; i < AccountKeys::kCount; ++i) {
      argv.emplace_back(keys.key(static_cast<AccountKeys::Index>(i)));
    }
    argv.insert(argv.end(), {"auth", std::to_string(kNow), "86400000", "fp", "k2", "100", "840",
                             "pos", "5411", ""});
    const auto tail = limit_tail("20231114", false, Profile{});
    argv.insert(argv.end(), tail.begin(), tail.end());
    argv.insert(argv.end(), {"", "0", "US", which, matches});
    const auto r = command(redis(), argv);
    ASSERT_EQ(r->type, REDIS_REPLY_ERROR) << which << " " << matches;
    EXPECT_NE(std::string(r->str, r->len).find("no velocity definitions"), std::string::npos)
        << std::string(r->str, r->len);
  }
  EXPECT_EQ(field("as:{a:1}", "held"), 100);
  EXPECT_EQ(hash("as:{a:1}:h").count("k2"), 0U);
  reverse("rk1", "k1", 0);
}

// Definition values are embedded in the library's code as escaped strings: quotes, brackets,
// backslashes and newlines arrive as data and change no code.
TEST_F(VelocityHolds, DefinitionValuesAreDataNotCode) {
  Velocity v;
  const std::string cid = "a\"]]\\\n'); error('x";
  v.counters = {{cid, "c", "*", "600000", "1"}};
  v.rules = {{"w", "1", "n", "0", "d", "\"\\", "0", "0"}};  // the code is quote, backslash
  const Decision d = vauth("e1", 100, v);
  EXPECT_EQ(d.code(), "\"\\");
  EXPECT_EQ(d.reason_text(), "velocity");
  EXPECT_FALSE(card_field("v." + cid).empty());  // the counter's field carries the id as given
}

TEST(AccountKeys, LayoutUnderOneHashTag) {
  AccountKeys k;
  ASSERT_TRUE(k.set("42", "0123abcd", "0100-000001-123456"));
  EXPECT_EQ(k.key(AccountKeys::kAccount), "as:{a:42}");
  EXPECT_EQ(k.key(AccountKeys::kCard), "as:{a:42}:c:0123abcd");
  EXPECT_EQ(k.key(AccountKeys::kHolds), "as:{a:42}:h");
  EXPECT_EQ(k.key(AccountKeys::kExpiry), "as:{a:42}:hx");
  EXPECT_EQ(k.key(AccountKeys::kReplay), "as:{a:42}:i:0100-000001-123456");
  EXPECT_FALSE(k.set("4{2", "t", "x"));
  EXPECT_FALSE(k.set("42", "t", "a b"));
  EXPECT_FALSE(k.set("", "t", "x"));
  EXPECT_FALSE(k.set(std::string(kAccountIdMax + 1, '1'), "t", "x"));
}

}  // namespace
}  // namespace authswitch::limits
