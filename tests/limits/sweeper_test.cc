// The expiry sweeper (limits/sweeper.h) and its index against a real redis-server: holds of
// accounts nobody touches come back, the index empties itself, a newer note survives the
// compare-and-set, and a pass allocates nothing once warm.
#include "limits/sweeper.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include "limits/holds_script.h"
#include "limits/layout.h"
#include "limits/redis_pipeline.h"
#include "tests/support/alloc_counter.h"
#include "tests/support/holds_library.h"
#include "tests/support/pipeline_driver.h"
#include "tests/support/redis_fixture.h"
#include "tests/support/sample_auth.h"

namespace authswitch::limits {
namespace {

using namespace std::chrono_literals;
using Clock = RedisPipeline::Clock;

constexpr std::int64_t kNow = 1'700'000'000'000;  // ms; the holds script's clock
constexpr std::int64_t kTtl = 60'000;

class SweeperTest : public support::SharedRedisTest {
 protected:
  void SetUp() override {
    support::SharedRedisTest::SetUp();
    function_ = support::load_holds(redis());
  }

  RedisPipeline::Options options() const {
    RedisPipeline::Options o;
    o.host = support::RedisServer::kHost;
    o.port = server().port();
    return o;
  }

  void open_account(const std::string& id, std::int64_t balance) {
    (void)support::redis_command(
        redis(), {"HSET", "as:{a:" + id + "}", "cur", "840", "bal", std::to_string(balance), "held",
                  "0", "st", "active", "od", "0"});
    (void)support::redis_command(
        redis(), {"HSET", "as:{a:" + id + "}:c:tok", "st", "active", "exp", "2812"});
  }

  // Places a pending hold of `amount` at `now` expiring at now + kTtl, and notes the account in
  // the index as a switch does after an approval.
  void hold(const std::string& account, const std::string& txn, std::int64_t amount,
            std::int64_t now) {
    AuthRequest r =
        support::sample_auth(txn, amount, {1'000'000, 10'000'000, 1'000, 10'000'000, 1'000});
    r.hold_ttl_ms = kTtl;
    HoldsCall call;
    ASSERT_TRUE(call.set_auth(function_, "auth", account, "tok", r, now, 86'400'000, txn));
    const auto reply = support::redis_command(redis(), call.args());
    ASSERT_EQ(reply->type, REDIS_REPLY_ARRAY);
    ASSERT_EQ(std::string(reply->element[0]->str), "00") << reply->element[4]->str;
    DueNote note;
    ASSERT_TRUE(note.set(account, now + kTtl));
    (void)support::redis_command(redis(), note.args());
  }

  std::int64_t held(const std::string& account) {
    const auto r = support::redis_command(redis(), {"HGET", "as:{a:" + account + "}", "held"});
    return std::stoll(std::string(r->str, r->len));
  }
  // The account's score in the index, or -1 when it has no entry.
  std::int64_t due(const std::string& account) {
    const auto r = support::redis_command(redis(), {"ZSCORE", kDueKey, account});
    return r->type == REDIS_REPLY_STRING ? std::stoll(std::string(r->str, r->len)) : -1;
  }
  long long index_size() { return support::redis_command(redis(), {"ZCARD", kDueKey})->integer; }

  // Runs passes at wall time `now_ms` until one finds nothing due or the sweeper waits for its
  // interval.
  static void sweep(RedisPipeline& p, Sweeper& s, std::int64_t now_ms) {
    ASSERT_TRUE(support::drive(p, [&] { return p.ready(); }));
    for (int guard = 0; guard < 1'000; ++guard) {
      const auto passes = s.stats().passes;
      const auto accounts = s.stats().accounts;
      s.on_tick(Clock::now(), now_ms);
      if (s.stats().passes == passes) {
        return;
      }
      ASSERT_TRUE(support::drive(p, [&] { return !s.busy(); }));
      if (s.stats().accounts == accounts) {
        return;
      }
    }
    FAIL() << "the sweeper did not settle";
  }

  std::string function_;
};

TEST_F(SweeperTest, ReturnsExpiredHoldsOfUntouchedAccountsAndEmptiesTheIndex) {
  for (const std::string id : {"a", "b", "c"}) {
    open_account(id, 10'000);
  }
  hold("a", "a1", 100, kNow);
  hold("a", "a2", 200, kNow + 1'000);
  hold("b", "b1", 300, kNow + 5'000);
  hold("c", "c1", 400, kNow + 120'000);  // due long after the others
  EXPECT_EQ(due("a"), kNow + kTtl);      // the note keeps the earliest

  RedisPipeline pipeline(options());
  Sweeper sweeper(pipeline, {.interval = 0ms});
  sweep(pipeline, sweeper, kNow + kTtl - 1);  // nothing due yet: nothing read, nothing moves
  EXPECT_EQ(sweeper.stats().accounts, 0U);
  EXPECT_EQ(held("a"), 300);

  sweep(pipeline, sweeper, kNow + kTtl + 1'000);  // a1 and a2 due, b1 not yet
  EXPECT_EQ(held("a"), 0);
  EXPECT_EQ(held("b"), 300);
  EXPECT_EQ(sweeper.stats().holds_expired, 2U);
  EXPECT_EQ(due("a"), -1);  // nothing pending left: entry removed
  EXPECT_EQ(due("b"), kNow + 5'000 + kTtl);

  // With an interval, a pass that found nothing more waits for it.
  RedisPipeline later_pipeline(options());
  Sweeper later(later_pipeline, {.interval = 1h});
  sweep(later_pipeline, later, kNow + 10 * kTtl);
  const auto passes = later.stats().passes;
  later.on_tick(Clock::now(), kNow + 20 * kTtl);
  EXPECT_EQ(later.stats().passes, passes);
  EXPECT_EQ(held("b"), 0);
  EXPECT_EQ(held("c"), 0);
  EXPECT_EQ(index_size(), 0);
  EXPECT_EQ(later.stats().errors, 0U);
}

TEST_F(SweeperTest, ManyAccountsAndManyHoldsTakeSeveralPassesWithoutWaiting) {
  for (int i = 0; i < 40; ++i) {
    const std::string id = "acct" + std::to_string(i);
    open_account(id, 100'000);
    hold(id, id + "-t", 10, kNow);
  }
  open_account("big", 100'000);
  for (int i = 0; i < 30; ++i) {
    hold("big", "big-" + std::to_string(i), 1, kNow + i);
  }
  RedisPipeline pipeline(options());
  Sweeper sweeper(pipeline, {.accounts_per_batch = 8, .holds_per_call = 4});
  sweep(pipeline, sweeper, kNow + 2 * kTtl);
  EXPECT_EQ(index_size(), 0);
  EXPECT_EQ(held("big"), 0);
  EXPECT_EQ(held("acct39"), 0);
  EXPECT_EQ(sweeper.stats().holds_expired, 70U);
  EXPECT_GE(sweeper.stats().passes, 41U / 8U);
  EXPECT_EQ(sweeper.stats().errors, 0U);
}

TEST_F(SweeperTest, StaleEntryCostsOneCallAndIsRemoved) {
  open_account("a", 10'000);
  DueNote note;
  ASSERT_TRUE(note.set("a", kNow));  // noted, but the hold was captured meanwhile: nothing held
  (void)support::redis_command(redis(), note.args());
  RedisPipeline pipeline(options());
  Sweeper sweeper(pipeline, {});
  sweep(pipeline, sweeper, kNow + 1);
  EXPECT_EQ(sweeper.stats().accounts, 1U);
  EXPECT_EQ(sweeper.stats().holds_expired, 0U);
  EXPECT_EQ(sweeper.stats().entries_removed, 1U);
  EXPECT_EQ(index_size(), 0);
}

TEST_F(SweeperTest, DueNoteLowersTheEntryButNeverRaisesIt) {
  DueNote note;
  ASSERT_TRUE(note.set("a", 5'000));
  (void)support::redis_command(redis(), note.args());
  ASSERT_TRUE(note.set("a", 9'000));
  (void)support::redis_command(redis(), note.args());
  EXPECT_EQ(due("a"), 5'000);
  ASSERT_TRUE(note.set("a", 1'000));
  (void)support::redis_command(redis(), note.args());
  EXPECT_EQ(due("a"), 1'000);
  EXPECT_FALSE(note.set("a}b", 1));
  EXPECT_FALSE(note.set("", 1));
}

TEST_F(SweeperTest, CompareAndSetKeepsANoteMadeAfterTheSweepRead) {
  const auto load = support::redis_command(redis(), {"SCRIPT", "LOAD", embedded_script("due")});
  ASSERT_EQ(load->type, REDIS_REPLY_STRING);
  const std::string due_sha(load->str, load->len);
  const auto cas = [&](const std::string& seen, const std::string& next) {
    return support::redis_command(redis(),
                                  {"EVALSHA", due_sha, "1", std::string(kDueKey), "a", seen, next})
        ->integer;
  };
  (void)support::redis_command(redis(), {"ZADD", std::string(kDueKey), "1700000000000", "a"});
  EXPECT_EQ(cas("1700000000000", "1700000060000"), 1);  // unchanged since read: moved on
  EXPECT_EQ(due("a"), 1'700'000'060'000);
  // A switch noted an earlier hold after the sweeper read 1700000060000: its note stays.
  (void)support::redis_command(redis(), {"ZADD", std::string(kDueKey), "LT", "1700000030000", "a"});
  EXPECT_EQ(cas("1700000060000", "0"), 0);
  EXPECT_EQ(due("a"), 1'700'000'030'000);
  EXPECT_EQ(cas("1700000030000", "0"), 1);
  EXPECT_EQ(due("a"), -1);
  EXPECT_EQ(cas("1700000030000", "5"), 0);  // no entry: nothing to set
  EXPECT_EQ(due("a"), -1);
}

TEST_F(SweeperTest, RedisDownIsCountedAndTheNextPassSucceeds) {
  support::RedisServer own;
  auto ctx = own.connect();
  (void)support::redis_command(*ctx, {"ZADD", std::string(kDueKey), "1", "a"});
  RedisPipeline::Options o = options();
  o.port = own.port();
  o.backoff_min = 5ms;
  o.backoff_max = 20ms;
  RedisPipeline pipeline(o);
  Sweeper sweeper(pipeline, {.interval = 10ms, .timeout = 200ms});
  ASSERT_TRUE(support::drive(pipeline, [&] { return pipeline.ready(); }));
  own.kill9();
  sweeper.on_tick(Clock::now(), kNow);  // the read goes out on a dead connection
  ASSERT_TRUE(support::drive(pipeline, [&] { return !sweeper.busy(); }));
  EXPECT_GE(sweeper.stats().errors, 1U);
  own.restart();
  ctx = own.connect();
  (void)support::redis_command(*ctx, {"ZADD", std::string(kDueKey), "1", "a"});
  ASSERT_TRUE(support::drive(pipeline, [&] {
    sweeper.on_tick(Clock::now(), kNow);
    return sweeper.stats().accounts == 1;
  }));
  ASSERT_TRUE(support::drive(pipeline, [&] { return !sweeper.busy(); }));
  EXPECT_EQ(support::redis_command(*ctx, {"ZCARD", std::string(kDueKey)})->integer, 0);
}

TEST_F(SweeperTest, AWarmPassAllocatesNothing) {
  for (int i = 0; i < 16; ++i) {
    const std::string id = "w" + std::to_string(i);
    open_account(id, 100'000);
    hold(id, id + "-1", 10, kNow);
    hold(id, id + "-2", 10, kNow + 1);
  }
  RedisPipeline pipeline(options());
  Sweeper sweeper(pipeline, {.accounts_per_batch = 32, .interval = 0ms});
  sweep(pipeline, sweeper, kNow + kTtl);  // warm: every slot and buffer used once
  ASSERT_EQ(sweeper.stats().holds_expired, 16U);
  const support::AllocSnapshot before = support::alloc_snapshot();
  sweep(pipeline, sweeper, kNow + kTtl + 1);
  const support::AllocSnapshot after = support::alloc_snapshot();
  EXPECT_EQ(after.allocations - before.allocations, 0U);
  EXPECT_EQ(after.jemalloc_bytes - before.jemalloc_bytes, 0U);
  EXPECT_EQ(sweeper.stats().holds_expired, 32U);
  EXPECT_EQ(index_size(), 0);
}

}  // namespace
}  // namespace authswitch::limits
