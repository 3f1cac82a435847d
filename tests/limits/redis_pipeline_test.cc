// The batching Redis client (limits/redis_pipeline.h) against a real redis-server, driven by
// poll(2) as the switch's event loop would drive it.
#include "limits/redis_pipeline.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "limits/holds_script.h"
#include "tests/support/alloc_counter.h"
#include "tests/support/holds_library.h"
#include "tests/support/pipeline_driver.h"
#include "tests/support/redis_server.h"
#include "tests/support/sample_auth.h"

namespace authswitch::limits {
namespace {

using Clock = RedisPipeline::Clock;
using namespace std::chrono_literals;

// Records the outcome of one operation (no allocation on the reply path).
class Recorder final : public Completion {
 public:
  void on_reply(const Reply& reply) noexcept override {
    ++calls;
    ok = true;
    type = reply.type;
    integer = reply.integer;
    text_len = std::min(reply.str.size(), text.size());
    std::copy_n(reply.str.data(), text_len, text.data());
    elements = reply.elements.size();
    if (!reply.elements.empty() && reply.elements[0].type == Reply::Type::kString) {
      first_len = std::min(reply.elements[0].str.size(), first.size());
      std::copy_n(reply.elements[0].str.data(), first_len, first.data());
    }
    if (reply.elements.size() > 1) {
      second_int = reply.elements[1].integer;
    }
    order = next_order++;
  }
  void on_error(ClientErrc e, std::string_view message) noexcept override {
    ++calls;
    ok = false;
    errc = e;
    text_len = std::min(message.size(), text.size());
    std::copy_n(message.data(), text_len, text.data());
    order = next_order++;
    when = Clock::now();
  }
  [[nodiscard]] std::string_view str() const { return {text.data(), text_len}; }
  [[nodiscard]] std::string_view first_str() const { return {first.data(), first_len}; }

  static inline std::uint64_t next_order = 0;
  int calls = 0;
  bool ok = false;
  ClientErrc errc{};
  Reply::Type type{};
  std::int64_t integer = 0;
  std::array<char, 128> text{};
  std::size_t text_len = 0;
  std::array<char, 8> first{};
  std::size_t first_len = 0;
  std::size_t elements = 0;
  std::int64_t second_int = 0;
  std::uint64_t order = 0;
  Clock::time_point when{};
};

RedisPipeline::Options options_for(const support::RedisServer& server) {
  RedisPipeline::Options o;
  o.host = support::RedisServer::kHost;
  o.port = server.port();
  o.backoff_min = 10ms;
  o.backoff_max = 200ms;
  return o;
}

using support::drive;
using support::pump;

bool connect_ready(RedisPipeline& c) {
  return drive(c, [&] { return c.ready(); });
}

Clock::time_point in(std::chrono::milliseconds d) { return Clock::now() + d; }

TEST(RedisPipeline, PingSetGetRoundTrip) {
  support::RedisServer& server = support::shared_redis_server();
  RedisPipeline c(options_for(server));
  ASSERT_TRUE(connect_ready(c));
  Recorder ping, set, get, missing;
  const std::string_view a1[] = {"PING"};
  const std::string_view a2[] = {"SET", "pipeline:k", "hello world"};
  const std::string_view a3[] = {"GET", "pipeline:k"};
  const std::string_view a4[] = {"GET", "pipeline:missing"};
  ASSERT_FALSE(c.submit(a1, ping, in(2000ms)));
  ASSERT_FALSE(c.submit(a2, set, in(2000ms)));
  ASSERT_FALSE(c.submit(a3, get, in(2000ms)));
  ASSERT_FALSE(c.submit(a4, missing, in(2000ms)));
  c.flush();
  ASSERT_TRUE(drive(c, [&] { return missing.calls == 1; }));
  EXPECT_EQ(ping.type, Reply::Type::kStatus);
  EXPECT_EQ(ping.str(), "PONG");
  EXPECT_EQ(set.str(), "OK");
  EXPECT_EQ(get.type, Reply::Type::kString);
  EXPECT_EQ(get.str(), "hello world");
  EXPECT_EQ(missing.type, Reply::Type::kNil);
  EXPECT_TRUE(ping.order < set.order && set.order < get.order && get.order < missing.order);
}

TEST(RedisPipeline, ThousandPipelinedIncrsInOrderWithFewWrites) {
  support::RedisServer& server = support::shared_redis_server();
  RedisPipeline c(options_for(server));
  ASSERT_TRUE(connect_ready(c));
  {
    auto ctx = server.connect();
    (void)support::redis_command(*ctx, {"DEL", "pipeline:n"});
  }
  std::vector<Recorder> r(1000);
  const std::string_view args[] = {"INCR", "pipeline:n"};
  const auto writes_before = c.stats().writes;
  const auto flushes_before = c.stats().flushes;
  for (auto& x : r) {
    ASSERT_FALSE(c.submit(args, x, in(5000ms)));
  }
  c.flush();
  ASSERT_TRUE(drive(c, [&] { return r.back().calls == 1; }));
  for (std::size_t i = 0; i < r.size(); ++i) {
    ASSERT_EQ(r[i].calls, 1);
    ASSERT_TRUE(r[i].ok);
    ASSERT_EQ(r[i].integer, static_cast<std::int64_t>(i + 1));
    if (i > 0) {
      ASSERT_LT(r[i - 1].order, r[i].order);
    }
  }
  EXPECT_EQ(c.stats().flushes - flushes_before, 1U);
  const auto writes = c.stats().writes - writes_before;
  std::printf("1000 INCRs: %llu write(2) calls, %llu reads\n",
              static_cast<unsigned long long>(writes),
              static_cast<unsigned long long>(c.stats().reads));
  EXPECT_LE(writes, 4U);
}

// Account "1" with card "tok1", as holds_script_test.cc sets them up.
void seed_account(support::RedisServer& server) {
  auto ctx = server.connect();
  (void)support::redis_command(*ctx,
                               {"DEL", "as:{a:1}", "as:{a:1}:c:tok1", "as:{a:1}:h", "as:{a:1}:hx"});
  (void)support::redis_command(*ctx, {"HSET", "as:{a:1}", "cur", "840", "bal", "100000", "held",
                                      "0", "st", "active", "od", "0"});
  (void)support::redis_command(*ctx, {"HSET", "as:{a:1}:c:tok1", "st", "active", "exp", "2812"});
}

// An authorization of `amount` through FCALL of the holds library; `txn` names the hold.
struct AuthCall {
  HoldsCall call;
  std::span<const std::string_view> args;

  AuthCall(std::string_view function, std::string_view txn, std::int64_t amount) {
    const AuthRequest r = support::sample_auth(txn, amount, {50'000, 100'000, 10, 1'000'000, 100});
    EXPECT_TRUE(
        call.set_auth(function, "auth", "1", "tok1", r, 1'700'000'000'000, 86'400'000, txn));
    args = call.args();
  }
};

TEST(RedisPipeline, FcallOfTheHoldsLibraryApprovesAHold) {
  support::RedisServer& server = support::shared_redis_server();
  seed_account(server);
  RedisPipeline c(options_for(server));
  const std::string_view function = register_holds(c);
  EXPECT_EQ(function, holds_library().function);
  ASSERT_TRUE(connect_ready(c));
  EXPECT_EQ(c.stats().script_loads, 1U);
  EXPECT_EQ(c.stats().script_mismatches, 0U);
  AuthCall call(function, "pipe-t1", 2500);
  Recorder r;
  ASSERT_FALSE(c.submit(call.args, r, in(2000ms)));
  c.flush();
  ASSERT_TRUE(drive(c, [&] { return r.calls == 1; }));
  ASSERT_TRUE(r.ok) << r.str();
  ASSERT_EQ(r.type, Reply::Type::kArray);
  EXPECT_EQ(r.elements, 8U);
  EXPECT_EQ(r.first_str(), "00");
  EXPECT_EQ(r.second_int, 2500);
}

// Every processor, the sweeper and the reconciler of a shard register the holds library (the
// sweeper due.lua too): the same text is one script or library, loaded once per connect,
// however often it is registered.
TEST(RedisPipeline, RegisteringTheSameScriptAgainAddsNothing) {
  support::RedisServer& server = support::shared_redis_server();
  seed_account(server);
  RedisPipeline c(options_for(server));
  const std::string_view sha = c.load_script(embedded_script("due"));
  const std::string_view function = register_holds(c);
  for (std::size_t i = 0; i < 2 * RedisPipeline::kMaxScripts; ++i) {
    EXPECT_EQ(c.load_script(embedded_script("due")), sha);
    EXPECT_EQ(register_holds(c), function);
  }
  ASSERT_TRUE(connect_ready(c));
  EXPECT_EQ(c.stats().script_loads, 2U);
  EXPECT_EQ(c.stats().script_mismatches, 0U);
  constexpr std::string_view other = "return 1";
  EXPECT_NE(c.load_script(other), sha);  // a different text is a new script
}

// Whether Redis has the function library `name`.
bool has_library(redisContext& ctx, const std::string& name) {
  return support::redis_command(ctx, {"FUNCTION", "LIST", "LIBRARYNAME", name})->elements == 1;
}

// A PING through `c`, answered: everything `c` queued before it has been answered too.
bool settle(RedisPipeline& c) {
  const std::string_view ping[] = {"PING"};
  Recorder r;
  if (c.submit(ping, r, in(2000ms))) {
    return false;
  }
  c.flush();
  return drive(c, [&] { return r.calls == 1; });
}

// A library registered twice is released twice before Redis is told to delete it; after that it
// is not loaded again on a reconnect, and an unknown name is ignored.
TEST(RedisPipeline, ALibraryIsDeletedAtItsLastRelease) {
  support::RedisServer& server = support::shared_redis_server();
  seed_account(server);
  const FunctionLibrary other = make_holds_library({{{"0", "59", "0", "0"}}});
  auto ctx = server.connect();
  RedisPipeline c(options_for(server));
  const std::string function(c.load_library(other.text, other.library, other.function));
  EXPECT_EQ(function, other.function);
  (void)c.load_library(other.text, other.library, other.function);
  (void)register_holds(c);
  ASSERT_TRUE(connect_ready(c));
  EXPECT_EQ(c.stats().script_loads, 2U);
  ASSERT_TRUE(has_library(*ctx, other.library));
  c.release_library(function);
  c.release_library("holds_0000000000000000");  // not registered: nothing
  AuthCall call(function, "pipe-rel1", 100);
  Recorder r;
  ASSERT_FALSE(c.submit(call.args, r, in(2000ms)));
  c.flush();
  ASSERT_TRUE(drive(c, [&] { return r.calls == 1; }));
  EXPECT_TRUE(r.ok) << r.str();  // one reference left: still there
  EXPECT_TRUE(has_library(*ctx, other.library));
  c.release_library(function);
  Recorder after;
  AuthCall again(function, "pipe-rel2", 100);
  ASSERT_FALSE(c.submit(again.args, after, in(2000ms)));
  c.flush();
  ASSERT_TRUE(drive(c, [&] { return after.calls == 1; }));
  EXPECT_EQ(after.errc, ClientErrc::kServerError);  // deleted, and not loaded again
  EXPECT_EQ(after.str().substr(0, 22), "ERR Function not found") << after.str();
  EXPECT_FALSE(has_library(*ctx, other.library));
  // The holds library is still registered and works; the freed entry is reused.
  AuthCall base(holds_library().function, "pipe-rel3", 100);
  Recorder ok;
  ASSERT_FALSE(c.submit(base.args, ok, in(2000ms)));
  c.flush();
  ASSERT_TRUE(drive(c, [&] { return ok.calls == 1; }));
  EXPECT_TRUE(ok.ok) << ok.str();
  EXPECT_EQ(c.load_library(other.text, other.library, other.function), other.function);
  ASSERT_TRUE(connect_ready(c));  // registered again: loaded again
  EXPECT_TRUE(has_library(*ctx, other.library));
  c.release_library(other.function);
}

// The shards of a switch share one Redis through a pipeline each: a library one of them releases
// stays in Redis while another still holds it, and goes with the last release.
TEST(RedisPipeline, ALibraryHeldByAnotherPipelineOfTheProcessIsNotDeleted) {
  support::RedisServer& server = support::shared_redis_server();
  seed_account(server);
  const FunctionLibrary other = make_holds_library({{{"0", "05", "0", "0"}}});
  auto ctx = server.connect();
  RedisPipeline a(options_for(server));
  RedisPipeline b(options_for(server));
  (void)a.load_library(other.text, other.library, other.function);
  (void)b.load_library(other.text, other.library, other.function);
  ASSERT_TRUE(connect_ready(a));
  ASSERT_TRUE(connect_ready(b));
  a.release_library(other.function);
  ASSERT_TRUE(settle(a));
  EXPECT_TRUE(has_library(*ctx, other.library));
  AuthCall call(other.function, "pipe-held1", 100);
  Recorder r;
  ASSERT_FALSE(b.submit(call.args, r, in(2000ms)));
  b.flush();
  ASSERT_TRUE(drive(b, [&] { return r.calls == 1; }));
  EXPECT_TRUE(r.ok) << r.str();
  b.release_library(other.function);
  ASSERT_TRUE(settle(b));
  EXPECT_FALSE(has_library(*ctx, other.library));
}

// A pipeline destroyed while holding a library (a stopped server in a longer-lived process) no
// longer counts as its user: a later pipeline's last release deletes it.
TEST(RedisPipeline, ADestroyedPipelineNoLongerHoldsItsLibraries) {
  support::RedisServer& server = support::shared_redis_server();
  const FunctionLibrary other = make_holds_library({{{"0", "62", "0", "0"}}});
  auto ctx = server.connect();
  {
    RedisPipeline gone(options_for(server));
    (void)gone.load_library(other.text, other.library, other.function);
    ASSERT_TRUE(connect_ready(gone));
  }
  EXPECT_TRUE(has_library(*ctx, other.library));  // a stopping switch deletes nothing
  RedisPipeline c(options_for(server));
  (void)c.load_library(other.text, other.library, other.function);
  ASSERT_TRUE(connect_ready(c));
  c.release_library(other.function);
  ASSERT_TRUE(settle(c));
  EXPECT_FALSE(has_library(*ctx, other.library));
}

// A release while the connection is down is not forgotten: the delete goes out on connect.
TEST(RedisPipeline, ALibraryReleasedWhileDisconnectedIsDeletedOnConnect) {
  support::RedisServer& server = support::shared_redis_server();
  const FunctionLibrary other = make_holds_library({{{"0", "61", "0", "0"}}});
  auto ctx = server.connect();
  (void)support::load_holds(*ctx, other);
  ASSERT_TRUE(has_library(*ctx, other.library));
  RedisPipeline c(options_for(server));  // not connected until its first tick
  (void)c.load_library(other.text, other.library, other.function);
  c.release_library(other.function);
  ASSERT_TRUE(connect_ready(c));
  ASSERT_TRUE(settle(c));
  EXPECT_FALSE(has_library(*ctx, other.library));
}

// Keeps the parsed decision of each reply (parse_decision), or that it could not be parsed.
class DecisionRecorder final : public Completion {
 public:
  void on_reply(const Reply& reply) noexcept override {
    ++calls;
    parsed = parse_decision(reply, decision);
  }
  void on_error(ClientErrc /*errc*/, std::string_view /*message*/) noexcept override {
    ++calls;
    parsed = false;
  }
  int calls = 0;
  bool parsed = false;
  Decision decision;
};

TEST(RedisPipeline, EveryHoldsOpThroughHoldsCallAndParseDecision) {
  support::RedisServer& server = support::shared_redis_server();
  seed_account(server);  // balance 100,000
  RedisPipeline c(options_for(server));
  const std::string_view function = register_holds(c);
  ASSERT_TRUE(connect_ready(c));
  const auto run = [&](HoldsCall& call) {
    DecisionRecorder r;
    EXPECT_FALSE(c.submit(call.args(), r, in(2000ms)));
    c.flush();
    EXPECT_TRUE(drive(c, [&] { return r.calls == 1; }));
    EXPECT_TRUE(r.parsed);
    return r.decision;
  };
  const auto ctx = [&](std::string_view txn) {
    return CallContext{.function = function,
                       .account_id = "1",
                       .card_token = "tok1",
                       .txn_key = txn,
                       .now_ms = 1'700'000'000'000,
                       .replay_window_ms = 86'400'000,
                       .fingerprint = txn};
  };
  AuthCall auth(function, "life-h1", 10'000);
  HoldsCall& call = auth.call;
  Decision d = run(call);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.available_minor, 90'000);
  AuthRequest more;
  more.amount_minor = 2'000;
  more.day = "20231114";
  more.month = "202311";
  more.current_yymm = "2311";
  more.hold_ttl_ms = 604'800'000;
  more.limits = {50'000, 100'000, 10, 1'000'000, 100};
  ASSERT_TRUE(call.set_incr(ctx("life-i1"), "life-h1", more));
  d = run(call);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.available_minor, 88'000);
  ASSERT_TRUE(call.set_capture(ctx("life-c1"), "life-h1", 11'500));
  d = run(call);
  EXPECT_EQ(d.approved_minor, 11'500);
  EXPECT_EQ(d.balance_minor, 88'500);
  EXPECT_EQ(d.available_minor, 88'500);
  ASSERT_TRUE(call.set_reverse(ctx("life-r1"), "life-h1", 10'000));
  EXPECT_EQ(run(call).balance_minor, 90'000);
  ASSERT_TRUE(call.set_refund(ctx("life-f1"), 500, "840"));
  EXPECT_EQ(run(call).balance_minor, 90'500);
  ASSERT_TRUE(call.set_adjust(ctx("life-a1"), -500, "840"));
  EXPECT_EQ(run(call).balance_minor, 90'000);
  ASSERT_TRUE(call.set_balance(ctx("life-b1")));
  d = run(call);
  EXPECT_EQ(d.code(), "00");
  EXPECT_EQ(d.available_minor, 90'000);
  ASSERT_TRUE(call.set_sweep(ctx("life-s1"), 16));
  d = run(call);
  EXPECT_EQ(d.reason_text(), "swept");
  EXPECT_EQ(d.threshold, 0);  // nothing pending
  ASSERT_TRUE(call.set_refund(ctx("life-f2"), 500, "978"));
  d = run(call);
  EXPECT_EQ(d.code(), "57");
  EXPECT_EQ(d.reason_text(), "currency");
  EXPECT_FALSE(d.approved());
  EXPECT_FALSE(call.set_balance(ctx("bad key")));
  EXPECT_TRUE(call.args().empty());

  Decision out;
  Reply not_array;
  not_array.type = Reply::Type::kError;
  EXPECT_FALSE(parse_decision(not_array, out));
}

// A library Redis lost (FUNCTION FLUSH, a failover) answers "ERR Function not found", a script
// NOSCRIPT; on the first of them the client loads both again ahead of anything submitted later,
// so a retry works.
TEST(RedisPipeline, UnknownScriptsAndFunctionsAreServerErrorsAndAreLoadedAgain) {
  support::RedisServer& server = support::shared_redis_server();
  seed_account(server);
  RedisPipeline c(options_for(server));
  const std::string_view function = register_holds(c);
  const std::string_view sha = c.load_script("return 7");
  ASSERT_TRUE(connect_ready(c));
  {
    auto ctx = server.connect();
    (void)support::redis_command(*ctx, {"FUNCTION", "FLUSH"});
    (void)support::redis_command(*ctx, {"SCRIPT", "FLUSH"});
  }
  const std::string_view eval[] = {"EVALSHA", sha, "0"};
  Recorder noscript;
  AuthCall call(function, "pipe-t2", 100);
  Recorder unknown;
  ASSERT_FALSE(c.submit(eval, noscript, in(2000ms)));
  ASSERT_FALSE(c.submit(call.args, unknown, in(2000ms)));
  c.flush();
  ASSERT_TRUE(drive(c, [&] { return noscript.calls == 1 && unknown.calls == 1; }));
  EXPECT_EQ(noscript.errc, ClientErrc::kServerError);
  EXPECT_EQ(noscript.str().substr(0, 8), "NOSCRIPT") << noscript.str();
  EXPECT_EQ(unknown.errc, ClientErrc::kServerError);
  EXPECT_EQ(unknown.str().substr(0, 22), "ERR Function not found") << unknown.str();
  EXPECT_TRUE(is_unknown_script_error(noscript.str()));
  EXPECT_TRUE(is_unknown_script_error(unknown.str()));
  // The client queued the loads before telling us: retries work.
  Recorder eval_again;
  AuthCall retry_call(function, "pipe-t2", 100);
  Recorder retry;
  ASSERT_FALSE(c.submit(eval, eval_again, in(2000ms)));
  ASSERT_FALSE(c.submit(retry_call.args, retry, in(2000ms)));
  c.flush();
  ASSERT_TRUE(drive(c, [&] { return eval_again.calls == 1 && retry.calls == 1; }));
  ASSERT_TRUE(eval_again.ok) << eval_again.str();
  ASSERT_TRUE(retry.ok) << retry.str();
  EXPECT_EQ(retry.first_str(), "00");
  EXPECT_EQ(c.stats().script_loads, 2U + 2U);  // at connect, and once after the errors
  EXPECT_EQ(c.stats().script_mismatches, 0U);
}

TEST(RedisPipeline, QueueFullIsBackpressureAndLosesNothing) {
  support::RedisServer& server = support::shared_redis_server();
  auto o = options_for(server);
  o.output_buffer_bytes = 4096;
  o.max_in_flight = 64;
  RedisPipeline c(o);
  ASSERT_TRUE(connect_ready(c));
  {
    auto ctx = server.connect();
    (void)support::redis_command(*ctx, {"DEL", "pipeline:q"});
  }
  std::vector<Recorder> r(200);
  const std::string_view args[] = {"INCR", "pipeline:q"};
  std::size_t accepted = 0;
  std::optional<ClientErrc> refused;
  for (auto& x : r) {
    refused = c.submit(args, x, in(5000ms));
    if (refused) {
      break;
    }
    ++accepted;
  }
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(*refused, ClientErrc::kQueueFull);
  EXPECT_EQ(accepted, 64U);  // the in-flight cap
  EXPECT_EQ(r[accepted].calls, 0);
  c.flush();
  ASSERT_TRUE(drive(c, [&] { return r[accepted - 1].calls == 1; }));
  for (std::size_t i = 0; i < accepted; ++i) {
    ASSERT_TRUE(r[i].ok);
    ASSERT_EQ(r[i].integer, static_cast<std::int64_t>(i + 1));
  }
  // The output buffer is the other limit: big commands fill 4 KiB first.
  const std::string big(1000, 'x');
  const std::string_view set[] = {"SET", "pipeline:big", big};
  std::vector<Recorder> b(10);
  std::size_t big_accepted = 0;
  std::optional<ClientErrc> big_refused;
  for (auto& x : b) {
    big_refused = c.submit(set, x, in(5000ms));
    if (big_refused) {
      break;
    }
    ++big_accepted;
  }
  EXPECT_EQ(big_accepted, 3U);  // 1,041 bytes each: a fourth does not fit in 4,096
  ASSERT_TRUE(big_refused.has_value());
  EXPECT_EQ(*big_refused, ClientErrc::kQueueFull);
  EXPECT_EQ(b[big_accepted].calls, 0);
  c.flush();
  ASSERT_TRUE(drive(c, [&] { return b[big_accepted - 1].calls == 1; }));
  // And afterwards everything flows again.
  Recorder after;
  ASSERT_FALSE(c.submit(args, after, in(2000ms)));
  c.flush();
  ASSERT_TRUE(drive(c, [&] { return after.calls == 1; }));
  EXPECT_EQ(after.integer, static_cast<std::int64_t>(accepted + 1));
}

TEST(RedisPipeline, DeadlinePassesWhileRedisIsPausedAndLateReplyIsSwallowed) {
  support::RedisServer& server = support::shared_redis_server();
  RedisPipeline c(options_for(server));
  ASSERT_TRUE(connect_ready(c));
  {
    auto ctx = server.connect();
    (void)support::redis_command(*ctx, {"SET", "pipeline:late", "late"});
    (void)support::redis_command(*ctx, {"CLIENT", "PAUSE", "500"});
  }
  Recorder slow;
  const std::string_view get_late[] = {"GET", "pipeline:late"};
  const auto submitted = Clock::now();
  const auto deadline = submitted + 100ms;
  ASSERT_FALSE(c.submit(get_late, slow, deadline));
  c.flush();
  ASSERT_TRUE(drive(
      c, [&] { return slow.calls == 1; }, 2000ms));
  EXPECT_FALSE(slow.ok);
  EXPECT_EQ(slow.errc, ClientErrc::kTimeout);
  EXPECT_GE(slow.when, deadline);
  // Reported once the deadline passed and before the paused Redis answered (had the reply come
  // first, the operation would have succeeded). How soon after the deadline is the tick rate's
  // business, measured in bench/, not asserted here.
  // The next operation must get its own reply, not the late one.
  Recorder next;
  const std::string_view ping[] = {"ECHO", "mine"};
  ASSERT_FALSE(c.submit(ping, next, in(3000ms)));
  c.flush();
  ASSERT_TRUE(drive(
      c, [&] { return next.calls == 1; }, 3000ms));
  EXPECT_TRUE(next.ok);
  EXPECT_EQ(next.str(), "mine");
  EXPECT_EQ(slow.calls, 1);  // not delivered twice
  EXPECT_EQ(c.stats().late_replies, 1U);
}

TEST(RedisPipeline, Kill9FailsInFlightFailsFastAndReconnectsWithScripts) {
  support::RedisServer server;
  RedisPipeline c(options_for(server));
  const std::string_view function = register_holds(c);
  ASSERT_TRUE(connect_ready(c));
  {
    auto ctx = server.connect();
    (void)support::redis_command(*ctx, {"CLIENT", "PAUSE", "5000"});
  }
  std::vector<Recorder> r(10);
  const std::string_view args[] = {"INCR", "pipeline:k9"};
  for (auto& x : r) {
    ASSERT_FALSE(c.submit(args, x, in(10000ms)));
  }
  c.flush();
  pump(c);
  server.kill9();
  ASSERT_TRUE(drive(
      c, [&] { return r.back().calls == 1; }, 2000ms));
  for (const auto& x : r) {
    EXPECT_EQ(x.calls, 1);
    EXPECT_EQ(x.errc, ClientErrc::kDisconnected);
  }
  Recorder fast;
  const auto refused = c.submit(args, fast, in(1000ms));
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(*refused, ClientErrc::kDisconnected);
  EXPECT_EQ(fast.calls, 0);
  // Reconnect attempts fail while Redis is down; backoff grows to its max (200 ms).
  const auto connects = c.stats().connects;
  drive(
      c, [] { return false; }, 600ms);
  EXPECT_EQ(c.stats().connects, connects);
  server.restart();
  const auto restarted = Clock::now();
  ASSERT_TRUE(connect_ready(c));
  // Within the backoff maximum (200 ms), with slack for a loaded machine.
  EXPECT_LT(Clock::now() - restarted, 200ms + 1500ms);
  EXPECT_EQ(c.stats().script_loads, 2U);
  seed_account(server);
  AuthCall call(function, "pipe-k9", 700);
  Recorder after;
  ASSERT_FALSE(c.submit(call.args, after, in(2000ms)));
  c.flush();
  ASSERT_TRUE(drive(c, [&] { return after.calls == 1; }));
  ASSERT_TRUE(after.ok) << after.str();
  EXPECT_EQ(after.first_str(), "00");
  EXPECT_EQ(after.second_int, 700);
  server.stop();
}

// A loopback port that accepts TCP connections (the kernel completes them from the backlog)
// but never reads or answers: a hung Redis.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 ||
        ::listen(fd_, 16) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("SilentListener: cannot listen on loopback");
    }
    port_ = ntohs(a.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  [[nodiscard]] std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

TEST(RedisPipeline, NothingListeningFailsFastNeverHangs) {
  std::uint16_t port = 0;
  {
    SilentListener closed_soon;  // a free port, then closed: connections are refused
    port = closed_soon.port();
  }
  RedisPipeline::Options o;
  o.host = "127.0.0.1";
  o.port = port;
  o.backoff_min = 5ms;
  o.backoff_max = 20ms;
  RedisPipeline c(o);
  drive(
      c, [] { return false; }, 100ms);
  EXPECT_EQ(c.stats().connects, 0U);
  EXPECT_NE(c.state(), RedisPipeline::State::kConnected);
  Recorder r;
  const std::string_view ping[] = {"PING"};
  // Refused at once, or (mid-attempt) queued and failed when that attempt is refused.
  const auto refused = c.submit(ping, r, in(300ms));
  if (refused) {
    EXPECT_EQ(*refused, ClientErrc::kDisconnected);
  } else {
    ASSERT_TRUE(drive(
        c, [&] { return r.calls == 1; }, 1000ms));
    EXPECT_FALSE(r.ok);
  }
}

TEST(RedisPipeline, HungServerTimesOutEachOperationThenReconnects) {
  SilentListener hung;
  RedisPipeline::Options o;
  o.host = "127.0.0.1";
  o.port = hung.port();
  o.backoff_min = 5ms;
  o.backoff_max = 20ms;
  o.stall_timeout = 200ms;
  RedisPipeline c(o);
  ASSERT_TRUE(drive(c, [&] { return c.state() == RedisPipeline::State::kConnected; }));
  std::vector<Recorder> r(3);
  const std::string_view ping[] = {"PING"};
  const auto start = Clock::now();
  for (auto& x : r) {
    ASSERT_FALSE(c.submit(ping, x, start + 50ms));
  }
  c.flush();
  ASSERT_TRUE(drive(
      c, [&] { return r.back().calls == 1; }, 2000ms));
  for (const auto& x : r) {
    EXPECT_EQ(x.calls, 1);
    EXPECT_EQ(x.errc, ClientErrc::kTimeout);
    EXPECT_GE(x.when, start + 50ms);  // not before its deadline
  }
  // Past the stall timeout the connection is given up and a new one made.
  ASSERT_TRUE(drive(
      c, [&] { return c.stats().connects >= 2; }, 3000ms));
  EXPECT_GE(c.stats().disconnects, 1U);
}

TEST(RedisPipeline, ReplyLargerThanArenaIsAProtocolErrorThenReconnects) {
  support::RedisServer& server = support::shared_redis_server();
  auto o = options_for(server);
  o.reply_bytes = 100;
  o.output_buffer_bytes = 1024;
  RedisPipeline c(o);
  ASSERT_TRUE(connect_ready(c));
  {
    auto ctx = server.connect();
    (void)support::redis_command(*ctx, {"SET", "pipeline:huge", std::string(500, 'h')});
  }
  const std::string too_big(2000, 'x');
  const std::string_view big_set[] = {"SET", "pipeline:x", too_big};
  Recorder refused;
  const auto e = c.submit(big_set, refused, in(1000ms));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(*e, ClientErrc::kTooLarge);
  Recorder huge, behind;
  const std::string_view get[] = {"GET", "pipeline:huge"};
  const std::string_view ping[] = {"PING"};
  ASSERT_FALSE(c.submit(get, huge, in(2000ms)));
  ASSERT_FALSE(c.submit(ping, behind, in(2000ms)));
  c.flush();
  ASSERT_TRUE(drive(c, [&] { return behind.calls == 1; }));
  EXPECT_EQ(huge.errc, ClientErrc::kProtocol);
  EXPECT_EQ(behind.errc, ClientErrc::kDisconnected);
  ASSERT_TRUE(connect_ready(c));
  Recorder again;
  ASSERT_FALSE(c.submit(ping, again, in(2000ms)));
  c.flush();
  ASSERT_TRUE(drive(c, [&] { return again.calls == 1; }));
  EXPECT_EQ(again.str(), "PONG");
  EXPECT_EQ(c.stats().connects, 2U);
}

TEST(RedisPipeline, NoAllocationPerOperationWhenWarm) {
  support::RedisServer& server = support::shared_redis_server();
  seed_account(server);
  RedisPipeline c(options_for(server));
  const std::string_view function = register_holds(c);
  ASSERT_TRUE(connect_ready(c));
  std::vector<Recorder> r(1000);
  std::deque<AuthCall> calls;  // a deque never moves its elements: each keeps views into itself
  std::vector<std::string> txns;
  txns.reserve(r.size());
  for (std::size_t i = 0; i < r.size(); ++i) {
    txns.push_back("pipe-a" + std::to_string(i));
  }
  for (std::size_t i = 0; i < r.size(); ++i) {
    calls.emplace_back(function, txns[i], 1);  // balance inquiry would do; a small hold is fine
  }
  const std::string_view incr[] = {"INCR", "pipeline:alloc"};
  const std::string_view get[] = {"GET", "pipeline:big-alloc"};
  {
    auto ctx = server.connect();
    (void)support::redis_command(*ctx, {"SET", "pipeline:big-alloc", std::string(3000, 'v')});
  }
  // Warm up: the same mix, batches of 50.
  auto run = [&](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; i += 50) {
      for (std::size_t j = i; j < std::min(to, i + 50); ++j) {
        r[j] = Recorder{};
        const auto s = j % 3 == 0   ? c.submit(calls[j].args, r[j], in(5000ms))
                       : j % 3 == 1 ? c.submit(incr, r[j], in(5000ms))
                                    : c.submit(get, r[j], in(5000ms));
        if (s) {
          return false;
        }
      }
      c.flush();
      const std::size_t last = std::min(to, i + 50) - 1;
      if (!drive(c, [&] { return r[last].calls == 1; })) {
        return false;
      }
    }
    return true;
  };
  ASSERT_TRUE(run(0, 1000));
  const auto growths = c.stats().reader_buffer_growths;
  const auto before = support::alloc_snapshot();
  ASSERT_TRUE(run(0, 1000));
  const auto after = support::alloc_snapshot();
  for (const auto& x : r) {
    ASSERT_TRUE(x.ok) << x.str();
  }
  EXPECT_EQ(after.allocations - before.allocations, 0U);
  EXPECT_EQ(c.stats().reader_buffer_growths - growths, 0U);
  if (support::jemalloc_counter_available()) {
    EXPECT_EQ(after.jemalloc_bytes - before.jemalloc_bytes, 0U);
  }
  std::printf("1000 warm ops: %llu operator new, %llu reader buffer growths, jemalloc %s %llu B\n",
              static_cast<unsigned long long>(after.allocations - before.allocations),
              static_cast<unsigned long long>(c.stats().reader_buffer_growths - growths),
              support::jemalloc_counter_available() ? "on" : "off",
              static_cast<unsigned long long>(after.jemalloc_bytes - before.jemalloc_bytes));
}

}  // namespace
}  // namespace authswitch::limits
