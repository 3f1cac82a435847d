// A thousand concurrent clients hammering one account (issue 3): 1,000 RedisPipeline clients,
// each on its own connection to a private redis-server, race 3 authorizations of 100 each
// against a balance of 100,000 (3,000 requests, room for exactly 1,000). Every request is
// flushed before any reply is read, then one thread drives every client with one poll(2) over
// all sockets. The account must never be overspent and the ledger must stay exact: held ==
// the sum of pending holds, available == balance - held.
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/resource.h>

#include "limits/holds_script.h"
#include "limits/redis_pipeline.h"
#include "tests/support/redis_server.h"
#include "tests/support/sample_auth.h"

namespace authswitch::limits {
namespace {

using Clock = RedisPipeline::Clock;
using namespace std::chrono_literals;

constexpr std::size_t kClients = 1'000;
constexpr std::size_t kAuthsPerClient = 3;
constexpr std::size_t kRequests = kClients * kAuthsPerClient;
constexpr std::int64_t kBalance = 100'000;
constexpr std::int64_t kAmount = 100;
constexpr std::size_t kApprovable = static_cast<std::size_t>(kBalance / kAmount);
// Sockets the test needs besides the clients' (gtest, hiredis, the server's pipes, slack).
constexpr rlim_t kFdsNeeded = kClients + 100;

// The outcome of one authorization: the response code, or the client error.
class Outcome final : public Completion {
 public:
  void on_reply(const Reply& reply) noexcept override {
    ++calls;
    ok = true;
    if (reply.type == Reply::Type::kArray && reply.elements.size() == 8 &&
        reply.elements[0].type == Reply::Type::kString && reply.elements[0].str.size() == 2) {
      code = {reply.elements[0].str[0], reply.elements[0].str[1]};
      approved = reply.elements[1].integer;
    } else {
      code = {'?', '?'};
    }
  }
  void on_error(ClientErrc e, std::string_view /*message*/) noexcept override {
    ++calls;
    ok = false;
    errc = e;
  }
  [[nodiscard]] std::string_view code_text() const { return {code.data(), code.size()}; }

  int calls = 0;
  bool ok = false;
  ClientErrc errc{};
  std::array<char, 2> code{};
  std::int64_t approved = 0;
};

// One FCALL of the holds library's `auth` of `amount` on account "1", card "tok1", with limits
// far above anything this test reaches, so only the available amount can decline.
struct AuthCall {
  HoldsCall call;
  std::span<const std::string_view> args;

  AuthCall(std::string_view function, std::string_view txn, std::int64_t amount) {
    const AuthRequest r = support::sample_auth(
        txn, amount, {50'000, 1'000'000'000, 1'000'000, 1'000'000'000, 1'000'000});
    EXPECT_TRUE(
        call.set_auth(function, "auth", "1", "tok1", r, 1'700'000'000'000, 86'400'000, txn));
    args = call.args();
  }
};

// Raises the soft RLIMIT_NOFILE to the hard limit for the test's duration, when needed.
class FdLimit {
 public:
  FdLimit() {
    if (::getrlimit(RLIMIT_NOFILE, &saved_) != 0) {
      return;
    }
    valid_ = true;
    if (saved_.rlim_cur != RLIM_INFINITY && saved_.rlim_cur < kFdsNeeded &&
        (saved_.rlim_max == RLIM_INFINITY || saved_.rlim_max >= kFdsNeeded)) {
      rlimit raised = saved_;
      raised.rlim_cur = saved_.rlim_max;
      raised_ = ::setrlimit(RLIMIT_NOFILE, &raised) == 0;
    }
  }
  ~FdLimit() {
    if (raised_) {
      (void)::setrlimit(RLIMIT_NOFILE, &saved_);
    }
  }
  FdLimit(const FdLimit&) = delete;
  FdLimit& operator=(const FdLimit&) = delete;

  [[nodiscard]] bool enough() const {
    rlimit now{};
    if (!valid_ || ::getrlimit(RLIMIT_NOFILE, &now) != 0) {
      return false;
    }
    return now.rlim_cur == RLIM_INFINITY || now.rlim_cur >= kFdsNeeded;
  }
  [[nodiscard]] rlim_t hard() const { return saved_.rlim_max; }

 private:
  rlimit saved_{};
  bool valid_ = false;
  bool raised_ = false;
};

// One pass of the event loop over every client: tick all, one poll(2) over every socket,
// dispatch.
void pump_all(std::vector<std::unique_ptr<RedisPipeline>>& clients, std::vector<pollfd>& fds,
              std::vector<std::size_t>& owner) {
  const auto now = Clock::now();
  fds.clear();
  owner.clear();
  for (std::size_t i = 0; i < clients.size(); ++i) {
    RedisPipeline& c = *clients[i];
    c.on_tick(now);
    if (c.fd() < 0) {
      continue;
    }
    pollfd p{};
    p.fd = c.fd();
    p.events = static_cast<short>(POLLIN | (c.wants_write() ? POLLOUT : 0));
    fds.push_back(p);
    owner.push_back(i);
  }
  if (::poll(fds.data(), static_cast<nfds_t>(fds.size()), 2) <= 0) {
    return;
  }
  for (std::size_t k = 0; k < fds.size(); ++k) {
    RedisPipeline& c = *clients[owner[k]];
    const short revents = fds[k].revents;
    if (c.fd() != fds[k].fd) {
      continue;  // reconnected meanwhile; the next pass polls the new socket
    }
    if ((revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
      c.on_readable(Clock::now());
    }
    if ((revents & POLLOUT) != 0 && c.fd() >= 0) {
      c.on_writable(Clock::now());
    }
  }
}

TEST(Concurrency, ThousandClientsNeverOverspendOneAccount) {
  FdLimit fd_limit;
  if (!fd_limit.enough()) {
    GTEST_SKIP() << "needs " << kFdsNeeded << " file descriptors for " << kClients
                 << " Redis connections, but RLIMIT_NOFILE's hard limit is " << fd_limit.hard();
  }
  const auto started = Clock::now();
  support::RedisServerOptions server_options;
  server_options.aof = support::AofMode::kOff;
  support::RedisServer server(server_options);
  auto admin = server.connect(5'000ms);
  {
    const auto r = support::redis_command(*admin, {"CONFIG", "GET", "maxclients"});
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
    ASSERT_EQ(r->elements, 2U);
    EXPECT_GE(std::stoll(std::string(r->element[1]->str, r->element[1]->len)),
              static_cast<long long>(kClients + 10))
        << "redis-server accepts too few clients";
  }
  (void)support::redis_command(
      *admin, {"HSET", "as:{a:1}", "cur", "840", "bal", std::to_string(kBalance), "held", "0", "st",
               "active", "od", "0"});
  (void)support::redis_command(*admin, {"HSET", "as:{a:1}:c:tok1", "st", "active", "exp", "2812"});

  RedisPipeline::Options o;
  o.host = support::RedisServer::kHost;
  o.port = server.port();
  o.output_buffer_bytes = 64 * 1024;  // the holds library's FUNCTION LOAD (about 35 KB) fits
  o.max_in_flight = 8;
  o.read_chunk_bytes = 4 * 1024;
  o.reader_buffer_bytes = 4 * 1024;
  o.reply_nodes = 16;
  o.reply_bytes = 1024;
  o.connect_timeout = 10s;
  o.backoff_min = 10ms;
  o.backoff_max = 200ms;
  o.stall_timeout = 60s;

  std::vector<std::unique_ptr<RedisPipeline>> clients;
  clients.reserve(kClients);
  std::string function;
  for (std::size_t i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<RedisPipeline>(o));
    function = std::string(register_holds(*clients.back()));
  }
  std::vector<pollfd> fds;
  std::vector<std::size_t> owner;
  fds.reserve(kClients);
  owner.reserve(kClients);

  // Every client connects and loads the script first.
  const auto connect_end = Clock::now() + 20s;
  std::size_t ready = 0;
  while (ready < kClients) {
    ASSERT_LT(Clock::now(), connect_end) << ready << " of " << kClients << " clients ready";
    pump_all(clients, fds, owner);
    ready = 0;
    for (const auto& c : clients) {
      ready += c->ready() ? 1U : 0U;
    }
  }

  // 3 authorizations per client, unique transaction keys, all flushed before any reply is read.
  std::vector<std::string> txns;
  txns.reserve(kRequests);
  for (std::size_t i = 0; i < kRequests; ++i) {
    txns.push_back("cc-" + std::to_string(i / kAuthsPerClient) + "-" +
                   std::to_string(i % kAuthsPerClient));
  }
  std::deque<AuthCall> calls;  // a deque never moves its elements: each keeps views into itself
  for (std::size_t i = 0; i < kRequests; ++i) {
    calls.emplace_back(function, txns[i], kAmount);
  }
  std::vector<Outcome> outcomes(kRequests);
  const auto deadline = Clock::now() + 60s;
  for (std::size_t i = 0; i < kRequests; ++i) {
    const auto refused = clients[i / kAuthsPerClient]->submit(calls[i].args, outcomes[i], deadline);
    ASSERT_FALSE(refused.has_value()) << "request " << i << ": " << to_string(*refused);
  }
  for (auto& c : clients) {
    c->flush();
  }

  // One thread, one poll(2) over every socket, until every completion arrived.
  const auto drive_end = Clock::now() + 60s;
  std::size_t completed = 0;
  while (completed < kRequests) {
    ASSERT_LT(Clock::now(), drive_end) << completed << " of " << kRequests << " completed";
    pump_all(clients, fds, owner);
    completed = 0;
    for (const Outcome& r : outcomes) {
      completed += r.calls > 0 ? 1U : 0U;
    }
  }

  std::size_t approvals = 0;
  std::size_t declines = 0;
  for (std::size_t i = 0; i < kRequests; ++i) {
    const Outcome& r = outcomes[i];
    ASSERT_EQ(r.calls, 1) << txns[i];
    ASSERT_TRUE(r.ok) << txns[i] << ": client error " << to_string(r.errc);
    if (r.code_text() == "00") {
      ASSERT_EQ(r.approved, kAmount) << txns[i];
      ++approvals;
    } else if (r.code_text() == "51") {
      ++declines;
    } else {
      ADD_FAILURE() << txns[i] << ": unexpected response code " << r.code_text();
    }
  }
  EXPECT_EQ(approvals, kApprovable);
  EXPECT_EQ(declines, kRequests - kApprovable);
  for (const auto& c : clients) {
    EXPECT_EQ(c->stats().disconnects, 0U);
  }
  clients.clear();  // closes 1,000 connections

  // The ledger, read back with a plain connection.
  const auto account = support::redis_command(*admin, {"HGET", "as:{a:1}", "held"});
  ASSERT_EQ(account->type, REDIS_REPLY_STRING);
  const std::int64_t held = std::stoll(std::string(account->str, account->len));
  EXPECT_EQ(held, kBalance);
  const auto holds = support::redis_command(*admin, {"HGETALL", "as:{a:1}:h"});
  ASSERT_EQ(holds->type, REDIS_REPLY_ARRAY);
  std::map<std::string, std::string> records;
  for (std::size_t i = 0; i + 1 < holds->elements; i += 2) {
    records[std::string(holds->element[i]->str, holds->element[i]->len)] =
        std::string(holds->element[i + 1]->str, holds->element[i + 1]->len);
  }
  std::int64_t pending = 0;
  for (const auto& [id, record] : records) {
    if (!record.empty() && record[0] == 'P') {
      pending += std::stoll(record.substr(2, record.find('|', 2) - 2));
    }
  }
  EXPECT_EQ(pending, held) << "held must equal the sum of pending holds";
  for (std::size_t i = 0; i < kRequests; ++i) {
    const auto it = records.find(txns[i]);
    if (outcomes[i].code_text() == "00") {
      ASSERT_NE(it, records.end()) << txns[i] << " was approved but has no hold";
      EXPECT_EQ(it->second[0], 'P') << txns[i] << ": " << it->second;
    } else {
      EXPECT_EQ(it, records.end()) << txns[i] << " was declined but has a hold";
    }
  }
  {
    AccountKeys keys;
    ASSERT_TRUE(keys.set("1", "tok1", "cc-balance"));
    std::vector<std::string> argv = {"FCALL", function, "5"};
    for (std::size_t k = 0; k < AccountKeys::kCount; ++k) {
      argv.emplace_back(keys.key(static_cast<AccountKeys::Index>(k)));
    }
    argv.insert(argv.end(), {"balance", "1700000000000", "86400000", "balance"});
    const auto r = support::redis_command(*admin, argv);
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY) << (r->str != nullptr ? r->str : "");
    ASSERT_EQ(r->elements, 8U);
    EXPECT_EQ(r->element[2]->integer, kBalance);
    EXPECT_EQ(r->element[3]->integer, 0) << "available must be balance - held";
  }
  std::printf(
      "%zu clients, %zu auths: %zu approved, %zu declined in %lld ms\n", kClients, kRequests,
      approvals, declines,
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()));
}

}  // namespace
}  // namespace authswitch::limits
