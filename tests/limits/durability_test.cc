// "Durable before approved" against a real redis-server: holds that Redis acknowledged survive a
// kill -9 of Redis and its restart from the append-only file, with the account's figures intact.
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include "limits/holds_script.h"
#include "tests/support/holds_library.h"
#include "tests/support/redis_server.h"

namespace authswitch::limits {
namespace {

using support::AofMode;
using support::RedisReplyPtr;
using support::RedisServer;
using support::RedisServerOptions;

RedisReplyPtr command(redisContext& c, const std::vector<std::string>& args) {
  return support::redis_command(c, args);
}

// Approves `count` holds of 100 on account 1 and returns how many were approved.
int approve_holds(redisContext& c, int count) {
  const std::string function = support::load_holds(c);
  int approved = 0;
  for (int i = 0; i < count; ++i) {
    const std::string txn = "t" + std::to_string(i);
    AccountKeys keys;
    EXPECT_TRUE(keys.set("1", "tok1", txn));
    std::vector<std::string> argv = {"FCALL", function, "5"};
    for (std::size_t k = 0; k < AccountKeys::kCount; ++k) {
      argv.emplace_back(keys.key(static_cast<AccountKeys::Index>(k)));
    }
    argv.insert(argv.end(),
                {"auth",      "1700000000000", "86400000", "fp-" + txn, txn,        "100",   "840",
                 "pos",       "5411",          "",         "20231114",  "202311",   "2311",  "0",
                 "604800000", "50000",         "10000000", "100000",    "10000000", "100000"});
    const auto r = command(c, argv);
    if (r->type == REDIS_REPLY_ARRAY && std::string(r->element[0]->str) == "00") {
      ++approved;
    }
  }
  return approved;
}

void seed(redisContext& c) {
  command(c, {"HSET", "as:{a:1}", "cur", "840", "bal", "1000000", "held", "0", "st", "active", "od",
              "0"});
  command(c, {"HSET", "as:{a:1}:c:tok1", "st", "active", "exp", "2812"});
}

std::int64_t held(redisContext& c) {
  const auto r = command(c, {"HGET", "as:{a:1}", "held"});
  return r->type == REDIS_REPLY_STRING ? std::stoll(r->str) : -1;
}

std::size_t hold_count(redisContext& c) {
  const auto r = command(c, {"HLEN", "as:{a:1}:h"});
  return static_cast<std::size_t>(r->integer);
}

class Durability : public ::testing::TestWithParam<AofMode> {};

// With appendfsync always nothing acknowledged may be lost, whatever crashes. With everysec a
// crash of the Redis process alone loses nothing either (the AOF was written before the reply;
// only its fsync is deferred); an OS crash is what everysec risks, which a test cannot cause.
TEST_P(Durability, ApprovedHoldsSurviveKillNineAndRestart) {
  RedisServerOptions options;
  options.aof = GetParam();
  RedisServer server(options);
  {
    auto c = server.connect();
    seed(*c);
    ASSERT_EQ(approve_holds(*c, 200), 200);
    ASSERT_EQ(held(*c), 20'000);
  }
  server.kill9();
  server.restart();
  auto c = server.connect();
  EXPECT_EQ(hold_count(*c), 200U);
  EXPECT_EQ(held(*c), 20'000);
  // The library came back with the data (Redis keeps functions in the AOF); loading it again
  // changes nothing, and the replayed requests change nothing.
  EXPECT_EQ(support::redis_command(
                *c, {"FUNCTION", "LIST", "LIBRARYNAME", limits::holds_library().library})
                ->elements,
            1U);
  EXPECT_EQ(approve_holds(*c, 200), 200);  // replays answer with the original approval
  EXPECT_EQ(held(*c), 20'000);
  EXPECT_EQ(hold_count(*c), 200U);
}

INSTANTIATE_TEST_SUITE_P(Aof, Durability,
                         ::testing::Values(AofMode::kAlways, AofMode::kEverySecond),
                         [](const auto& param_info) {
                           return param_info.param == AofMode::kAlways ? "always" : "everysec";
                         });

TEST(DurabilityControl, WithoutAofAKillNineLosesTheHolds) {
  // The control: proves the test above would notice a loss.
  RedisServer server;  // AOF off, no snapshots
  {
    auto c = server.connect();
    seed(*c);
    ASSERT_EQ(approve_holds(*c, 10), 10);
  }
  server.kill9();
  server.restart();
  auto c = server.connect();
  EXPECT_EQ(hold_count(*c), 0U);
}

}  // namespace
}  // namespace authswitch::limits
