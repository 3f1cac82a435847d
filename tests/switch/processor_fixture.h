#pragma once
// Setup the Processor tests share (processor_test.cc, reconciler_test.cc): one shard's Redis
// side (a RedisPipeline to a test redis-server and a CardDirectory on it), the shard's loop
// that drives them with the parts built on top, the Processor options both start from, the
// requests of the allocation tests, and a Redis read for the checks. The fixtures own what these
// make and destroy it in the order processor.h and reconciler.h ask for. Thread-safety: functions
// only; the test's thread drives the shard.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <hiredis/hiredis.h>

#include "limits/card_directory.h"
#include "limits/redis_pipeline.h"
#include "switch/processor.h"
#include "tests/support/pipeline_driver.h"
#include "tests/support/redis_server.h"
#include "tests/switch/test_messages.h"

namespace authswitch::switching {

// A pipeline to the test redis-server on `port`, with a reconnect back-off from `backoff_min`
// to `backoff_max`.
inline std::unique_ptr<limits::RedisPipeline> make_test_pipeline(
    std::uint16_t port, std::chrono::milliseconds backoff_min,
    std::chrono::milliseconds backoff_max, std::size_t max_in_flight = 0) {
  limits::RedisPipeline::Options o;
  o.host = support::RedisServer::kHost;
  o.port = port;
  o.backoff_min = backoff_min;
  o.backoff_max = backoff_max;
  if (max_in_flight != 0) {
    o.max_in_flight = max_in_flight;  // 0: the pipeline's default
  }
  return std::make_unique<limits::RedisPipeline>(o);
}

// A card directory on `pipeline`, sized for the tests' few cards and profiles.
inline std::unique_ptr<limits::CardDirectory> make_test_directory(limits::RedisPipeline& pipeline) {
  limits::CardDirectory::Options o;
  o.capacity = 1024;
  o.max_profiles = 16;
  o.max_pending_loads = 64;
  return std::make_unique<limits::CardDirectory>(pipeline, o);
}

// The Processor options of the tests: 64 in flight, messages up to 1 KiB, approval codes
// "A...", and `budget` per request.
inline Processor::Options test_processor_options(std::chrono::milliseconds budget) {
  Processor::Options o;
  o.in_flight_max = 64;
  o.max_message_bytes = 1024;
  o.budget = budget;
  o.approval_prefix = "A";
  return o;
}

// `n` encoded purchases of 0.10 with STANs 000100, 000101, ...: requests built before an
// allocation count starts.
inline std::vector<std::vector<std::byte>> encoded_purchases(int n) {
  std::vector<std::vector<std::byte>> out;
  for (int i = 0; i < n; ++i) {
    Txn t;
    t.amount = "000000000010";
    std::array<char, 8> stan{};
    std::snprintf(stan.data(), stan.size(), "%06d", 100 + i);
    t.stan = stan.data();
    out.push_back(encode(t));
  }
  return out;
}

// The shard's loop: ticks `parts` in order (the directory, the processor, a reconciler), then
// polls and dispatches `pipeline`; until `done()` or `limit`. Returns whether `done()` came.
template <typename Pred, typename... Parts>
bool run_shard_until(limits::RedisPipeline& pipeline, Pred done, std::chrono::milliseconds limit,
                     Parts&... parts) {
  using Clock = limits::RedisPipeline::Clock;
  const auto end = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > end) {
      return false;
    }
    const auto now = Clock::now();
    (parts.on_tick(now), ...);
    support::pump(pipeline, std::chrono::milliseconds(1));
  }
  return true;
}

// HGET `key` `field`, or "" when there is no such field.
inline std::string hget(redisContext& redis, const std::string& key, const std::string& field) {
  const auto r = support::redis_command(redis, {"HGET", key, field});
  return r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : std::string();
}

}  // namespace authswitch::switching
