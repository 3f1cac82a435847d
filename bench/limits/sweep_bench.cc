// The expiry sweeper (limits/sweeper.h) at a million holds, against one private redis-server
// (tests/support/redis_server.h, appendfsync everysec), driven by poll(2) on one connection.
//
//   BM_SweepExpiresAll/<accounts>  <accounts> accounts with 10 pending holds each, all due:
//                                  one iteration sweeps every one of them back. Counters
//                                  holds_per_s, accounts_per_s, passes.
//   BM_SweepPassNothingDue         1,000,000 pending holds (100,000 accounts), none due: the
//                                  cost of one pass that finds nothing (one ZRANGEBYSCORE on
//                                  the index; no hold or account is read). Time per pass.
// Holds are seeded server-side by a bench-only EVAL that writes the records the holds script
// would (same layout, limits/holds_script.h), 1,000 accounts per call.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <benchmark/benchmark.h>

#include "limits/layout.h"
#include "limits/redis_pipeline.h"
#include "limits/sweeper.h"
#include "tests/support/pipeline_driver.h"
#include "tests/support/redis_server.h"

namespace authswitch::limits {
namespace {

using Clock = RedisPipeline::Clock;
constexpr std::int64_t kNow = 1'700'000'000'000;
constexpr int kHoldsPerAccount = 10;

// Accounts ARGV[1]..ARGV[2] ("s<i>"), each with ARGV[3] pending holds of 100 expiring at
// ARGV[4] ms, and their entry in the due index.
constexpr const char* kSeed = R"lua(
local from, to, n, exp = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
for i = from, to do
  local a = 'as:{a:s' .. i .. '}'
  redis.call('HSET', a, 'cur', '840', 'bal', '100000000', 'held', 100 * n, 'st', 'active', 'od', '0')
  for j = 1, n do
    local id = 't' .. j
    redis.call('HSET', a .. ':h', id, 'P|100|0|840|5411|' .. exp .. '|pos|20231114|202311|0')
    redis.call('ZADD', a .. ':hx', exp, id)
  end
  redis.call('ZADD', 'as:due', exp, 's' .. i)
end
return to - from + 1
)lua";

std::unique_ptr<support::RedisServer> seeded(int accounts, std::int64_t expiry_ms) {
  support::RedisServerOptions o;
  o.aof = support::AofMode::kEverySecond;
  auto server = std::make_unique<support::RedisServer>(o);
  auto ctx = server->connect(std::chrono::milliseconds(60'000));
  for (int from = 0; from < accounts; from += 1'000) {
    const int to = std::min(accounts, from + 1'000) - 1;
    (void)support::redis_command(*ctx,
                                 {"EVAL", kSeed, "0", std::to_string(from), std::to_string(to),
                                  std::to_string(kHoldsPerAccount), std::to_string(expiry_ms)});
  }
  return server;
}

RedisPipeline::Options options_for(const support::RedisServer& s) {
  RedisPipeline::Options o;
  o.host = support::RedisServer::kHost;
  o.port = s.port();
  return o;
}

void BM_SweepExpiresAll(benchmark::State& state) {
  const auto accounts = static_cast<int>(state.range(0));
  const auto server = seeded(accounts, kNow);
  RedisPipeline pipeline(options_for(*server));
  Sweeper sweeper(pipeline, {.accounts_per_batch = 256, .holds_per_call = 64});
  if (!support::drive(pipeline, [&] { return pipeline.ready(); })) {
    state.SkipWithError("no connection");
    return;
  }
  for (auto _ : state) {
    const bool done = support::drive(
        pipeline,
        [&] {
          sweeper.on_tick(Clock::now(), kNow + 1);
          return !sweeper.busy() &&
                 sweeper.stats().accounts >= static_cast<std::uint64_t>(accounts);
        },
        std::chrono::milliseconds(600'000));
    if (!done) {
      state.SkipWithError("the sweep did not finish");
      return;
    }
  }
  const auto& st = sweeper.stats();
  if (st.holds_expired != static_cast<std::uint64_t>(accounts) * kHoldsPerAccount ||
      st.errors != 0) {
    state.SkipWithError("not every hold was expired");
  }
  state.counters["holds_per_s"] =
      benchmark::Counter(static_cast<double>(st.holds_expired), benchmark::Counter::kIsRate);
  state.counters["accounts_per_s"] =
      benchmark::Counter(static_cast<double>(st.accounts), benchmark::Counter::kIsRate);
  state.counters["passes"] = static_cast<double>(st.passes);
}

void BM_SweepPassNothingDue(benchmark::State& state) {
  const auto server = seeded(100'000, kNow + 3'600'000);
  RedisPipeline pipeline(options_for(*server));
  Sweeper sweeper(pipeline, {.interval = std::chrono::milliseconds(0)});
  if (!support::drive(pipeline, [&] { return pipeline.ready(); })) {
    state.SkipWithError("no connection");
    return;
  }
  for (auto _ : state) {
    sweeper.on_tick(Clock::now(), kNow);
    (void)support::drive(pipeline, [&] { return !sweeper.busy(); });
  }
  if (sweeper.stats().accounts != 0 || sweeper.stats().errors != 0) {
    state.SkipWithError("a pass swept something, or failed");
  }
}

BENCHMARK(BM_SweepExpiresAll)
    ->Arg(100'000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_SweepPassNothingDue)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace authswitch::limits

BENCHMARK_MAIN();
