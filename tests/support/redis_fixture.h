#pragma once
// gtest fixture for tests that share one redis-server per test binary (shared_redis_server):
// each test gets its own connection to an emptied database (FLUSHALL), so tests stay
// independent whether ctest runs them one per process or the binary runs them all. Tests that
// stop, crash or reconfigure Redis construct their own RedisServer instead.
// Thread-safety: as gtest fixtures; the connection belongs to the test's thread.

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include "tests/support/redis_server.h"

namespace authswitch::support {

class SharedRedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RedisServer& server = shared_redis_server();
    if (!server.running()) {
      server.restart();  // an earlier test crashed it against the advice above
    }
    redis_ = server.connect();
    const RedisReplyPtr reply = redis_command(*redis_, {"FLUSHALL"});
    ASSERT_EQ(reply->type, REDIS_REPLY_STATUS) << "FLUSHALL failed";
  }

  [[nodiscard]] static RedisServer& server() { return shared_redis_server(); }
  [[nodiscard]] redisContext& redis() { return *redis_; }

 private:
  RedisContextPtr redis_;
};

}  // namespace authswitch::support
