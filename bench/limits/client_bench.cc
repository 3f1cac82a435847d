// The batching Redis client (limits/redis_pipeline.h) running the holds script's `auth`
// (limits/scripts/holds.lua) through FCALL (the holds library) against one private redis-server
// (tests/support/redis_server.h), driven by poll(2) on one connection: the client's side of the
// floor that bench/limits/script_floor measures with redis-benchmark (50 connections).
//
// The account and card are seeded as script_floor seeds them (huge balance and limits, so
// nothing declines); every auth places a new pending hold under a unique transaction key (a
// counter formatted into a fixed buffer; no allocation per auth on the benchmark's side).
//
//   BM_ClientAuthPipelined/<depth>   per iteration: submit `depth` auths, flush once, poll until
//                                    all complete. items/s = auths/s.
//   BM_ClientAuthLatency             one auth at a time; p50/p99/p99.9 in microseconds.
// Both run with AOF appendfsync everysec; the aof_always registrations use appendfsync always.
// Only one redis-server runs at a time: it is replaced when the AOF mode changes and stopped
// before the program exits.
//
// Counters: allocs_per_op (calls to operator new per auth in the timed loop, from
// tests/support/alloc_counter.h), jemalloc_bytes_per_op when jemalloc is linked, all_00 (1 when
// every reply was response code "00"; otherwise the benchmark fails with SkipWithError).

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>
#include <poll.h>

#include "bench/limits/shipped_velocity.h"
#include "limits/holds_script.h"
#include "limits/redis_pipeline.h"
#include "risk/rules.h"
#include "tests/support/alloc_counter.h"
#include "tests/support/redis_server.h"
#include "tests/support/sample_auth.h"

namespace authswitch::limits {
namespace {

using Clock = RedisPipeline::Clock;
using support::AofMode;
using namespace std::chrono_literals;

// The one private redis-server, seeded; replaced when a benchmark asks for another AOF mode.
struct Server {
  AofMode aof = AofMode::kEverySecond;
  std::unique_ptr<support::RedisServer> server;
};

Server& the_server() {
  static Server s;
  return s;
}

void stop_server() { the_server().server.reset(); }

support::RedisServer& server_for(AofMode aof) {
  Server& s = the_server();
  if (s.server && s.aof == aof) {
    return *s.server;
  }
  s.server.reset();  // stop the other one first: one server at a time
  support::RedisServerOptions o;
  o.aof = aof;
  s.server = std::make_unique<support::RedisServer>(o);
  s.aof = aof;
  auto ctx = s.server->connect();
  (void)support::redis_command(*ctx, {"HSET", "as:{a:1}", "cur", "840", "bal", "900000000000000",
                                      "held", "0", "st", "active", "od", "0"});
  (void)support::redis_command(*ctx, {"HSET", "as:{a:1}:c:tok1", "st", "active", "exp", "2812"});
  return *s.server;
}

// Counts completions and replies that were not an approval "00" (no allocation).
class Tally final : public Completion {
 public:
  void on_reply(const Reply& reply) noexcept override {
    ++done;
    if (reply.type != Reply::Type::kArray || reply.elements.empty() ||
        reply.elements[0].str != "00") {
      ++not_00;
    }
  }
  void on_error(ClientErrc /*errc*/, std::string_view /*message*/) noexcept override {
    ++done;
    ++not_00;
  }

  std::uint64_t done = 0;
  std::uint64_t not_00 = 0;
};

// One auth's FCALL arguments, as script_floor sends them; the transaction key (hold id and
// replay key) changes per call and is formatted in place.
class AuthArgs {
 public:
  explicit AuthArgs(std::string_view function) : function_(function) {}

  // Sets the transaction key to "c<n>"; false if the keys could not be formatted.
  [[nodiscard]] bool set_txn(std::uint64_t n) noexcept {
    txn_[0] = 'c';
    const auto r = std::to_chars(txn_.data() + 1, txn_.data() + txn_.size(), n);
    const std::string_view txn(txn_.data(), static_cast<std::size_t>(r.ptr - txn_.data()));
    const AuthRequest req = support::sample_auth(
        txn, 100,
        {1'000'000, 900'000'000'000'000, 1'000'000'000, 900'000'000'000'000, 1'000'000'000});
    return call_.set_auth(function_, "auth", "1", "tok1", req, 1'700'000'000'000, 86'400'000, "fp");
  }

  [[nodiscard]] std::span<const std::string_view> args() const noexcept { return call_.args(); }
  // Arguments after the call: the fraud rules' velocity arguments, or none.
  std::span<const std::string_view> extra;

 private:
  std::string_view function_;
  std::array<char, 24> txn_{};
  HoldsCall call_;
};

// Transaction keys never repeat within one run of the program (one server's lifetime at most).
std::uint64_t next_txn = 0;

// One pass of the event loop: poll the socket, dispatch; ticks at most once a millisecond, as a
// switch's timer would.
void pump(RedisPipeline& c, Clock::time_point& last_tick) {
  const auto now = Clock::now();
  if (now - last_tick >= 1ms || c.fd() < 0) {
    c.on_tick(now);
    last_tick = now;
  }
  if (c.fd() < 0) {
    ::poll(nullptr, 0, 1);
    return;
  }
  pollfd p{};
  p.fd = c.fd();
  p.events = static_cast<short>(POLLIN | (c.wants_write() ? POLLOUT : 0));
  if (::poll(&p, 1, 1) > 0) {
    if ((p.revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
      c.on_readable(Clock::now());
    }
    if ((p.revents & POLLOUT) != 0 && c.fd() >= 0) {
      c.on_writable(Clock::now());
    }
  }
}

// Submits `depth` auths, flushes once and drives the client until all complete. False when one
// was refused or they did not complete within 10 s.
bool run_batch(RedisPipeline& c, AuthArgs& a, Tally& t, std::size_t depth,
               Clock::time_point& last_tick) noexcept {
  const std::uint64_t target = t.done + depth;
  const auto deadline = Clock::now() + 5s;
  for (std::size_t i = 0; i < depth; ++i) {
    if (!a.set_txn(next_txn++) || c.submit(a.args(), a.extra, t, deadline)) {
      return false;
    }
  }
  c.flush();
  const auto give_up = Clock::now() + 10s;
  while (t.done < target) {
    if (Clock::now() > give_up) {
      return false;
    }
    pump(c, last_tick);
  }
  return true;
}

const bench::ShippedVelocity& shipped() {
  return bench::shipped_velocity(std::string(AS_SOURCE_DIR) + "/config/rules.toml");
}

// A client connected to the server for `aof`, its library loaded (with the shipped rule set's
// velocity definitions and arguments when `velocity`), warmed up with a few batches.
struct Session {
  explicit Session(AofMode aof, bool velocity = false) : client(options(server_for(aof))) {
    if (velocity) {
      const FunctionLibrary& l = shipped().library;
      args = std::make_unique<AuthArgs>(client.load_library(l.text, l.library, l.function));
      args->extra = shipped().args.args();
    } else {
      args = std::make_unique<AuthArgs>(register_holds(client));
    }
    const auto give_up = Clock::now() + 10s;
    while (!client.ready() && Clock::now() < give_up) {
      pump(client, last_tick);
    }
    ok = client.ready();
    for (int i = 0; ok && i < 8; ++i) {
      ok = run_batch(client, *args, tally, 64, last_tick);
    }
    ok = ok && tally.not_00 == 0;
    tally = Tally{};
  }

  static RedisPipeline::Options options(const support::RedisServer& server) {
    RedisPipeline::Options o;
    o.host = support::RedisServer::kHost;
    o.port = server.port();
    return o;
  }

  RedisPipeline client;
  std::unique_ptr<AuthArgs> args;
  Tally tally;
  Clock::time_point last_tick{};
  bool ok = false;
};

void set_alloc_counters(benchmark::State& state, const support::AllocSnapshot& before,
                        std::uint64_t auths) {
  const support::AllocSnapshot after = support::alloc_snapshot();
  const double n = static_cast<double>(std::max<std::uint64_t>(auths, 1));
  state.counters["allocs_per_op"] = static_cast<double>(after.allocations - before.allocations) / n;
  if (support::jemalloc_counter_available()) {
    state.counters["jemalloc_bytes_per_op"] =
        static_cast<double>(after.jemalloc_bytes - before.jemalloc_bytes) / n;
  }
}

void BM_ClientAuthPipelined(benchmark::State& state, AofMode aof, bool velocity) {
  const auto depth = static_cast<std::size_t>(state.range(0));
  Session s(aof, velocity);
  if (!s.ok) {
    state.SkipWithError("could not connect, load the script or warm up");
    return;
  }
  const support::AllocSnapshot before = support::alloc_snapshot();
  for (auto _ : state) {
    if (!run_batch(s.client, *s.args, s.tally, depth, s.last_tick)) {
      state.SkipWithError("an auth was refused or did not complete");
      break;
    }
  }
  const std::uint64_t auths = s.tally.done;
  set_alloc_counters(state, before, auths);
  state.SetItemsProcessed(static_cast<std::int64_t>(auths));
  state.counters["all_00"] = s.tally.not_00 == 0 ? 1 : 0;
  state.counters["writes_per_batch"] =
      static_cast<double>(s.client.stats().writes) /
      static_cast<double>(std::max<std::uint64_t>(s.client.stats().flushes, 1));
  if (s.tally.not_00 != 0) {
    state.SkipWithError("a reply was not \"00\"");
  }
}

void BM_ClientAuthPipelined(benchmark::State& state, AofMode aof) {
  BM_ClientAuthPipelined(state, aof, false);
}

void BM_ClientAuthPipelined(benchmark::State& state) {
  BM_ClientAuthPipelined(state, AofMode::kEverySecond, false);
}

// The same with the shipped rule set's velocity rules in every call, right after the plain
// runs in the same session: the ratio is what velocity costs inside the script.
void BM_ClientAuthPipelinedVelocity(benchmark::State& state) {
  BM_ClientAuthPipelined(state, AofMode::kEverySecond, true);
}

void BM_ClientAuthLatency(benchmark::State& state, AofMode aof) {
  Session s(aof);
  if (!s.ok) {
    state.SkipWithError("could not connect, load the script or warm up");
    return;
  }
  std::vector<std::int64_t> ns(static_cast<std::size_t>(state.max_iterations));
  std::size_t n = 0;
  const support::AllocSnapshot before = support::alloc_snapshot();
  for (auto _ : state) {
    const auto t0 = Clock::now();
    if (!run_batch(s.client, *s.args, s.tally, 1, s.last_tick)) {
      state.SkipWithError("an auth was refused or did not complete");
      break;
    }
    const auto t1 = Clock::now();
    if (n < ns.size()) {
      ns[n++] = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
    }
  }
  set_alloc_counters(state, before, s.tally.done);
  state.SetItemsProcessed(static_cast<std::int64_t>(s.tally.done));
  state.counters["all_00"] = s.tally.not_00 == 0 ? 1 : 0;
  if (n > 0) {
    std::sort(ns.begin(), ns.begin() + static_cast<std::ptrdiff_t>(n));
    const auto pct = [&](double p) {
      const auto i = std::min(n - 1, static_cast<std::size_t>(p * static_cast<double>(n)));
      return static_cast<double>(ns[i]) / 1000.0;
    };
    state.counters["p50_us"] = pct(0.50);
    state.counters["p99_us"] = pct(0.99);
    state.counters["p999_us"] = pct(0.999);
  }
  if (s.tally.not_00 != 0) {
    state.SkipWithError("a reply was not \"00\"");
  }
}

void BM_ClientAuthLatency(benchmark::State& state) {
  BM_ClientAuthLatency(state, AofMode::kEverySecond);
}

// appendfsync everysec first, then always: registration order is run order, so the server is
// replaced once.
BENCHMARK(BM_ClientAuthPipelined)->Arg(1)->Arg(16)->Arg(64)->UseRealTime();
BENCHMARK(BM_ClientAuthPipelinedVelocity)->Arg(1)->Arg(16)->Arg(64)->UseRealTime();
BENCHMARK(BM_ClientAuthLatency)->UseRealTime();
BENCHMARK_CAPTURE(BM_ClientAuthPipelined, aof_always, AofMode::kAlways)
    ->Arg(1)
    ->Arg(16)
    ->Arg(64)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_ClientAuthLatency, aof_always, AofMode::kAlways)->UseRealTime();

}  // namespace
}  // namespace authswitch::limits

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  authswitch::limits::stop_server();
  benchmark::Shutdown();
  return 0;
}
