// The switch over real TCP (switch/server.h): a Server with two shards listening on a free
// loopback port, a private redis-server, and blocking test clients that frame requests with
// len2-binary. Approvals and declines end to end, many pipelined requests on one connection,
// several connections, bad input closing only its own connection, and a stop with requests in
// flight answering every one.
#include "switch/server.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <unistd.h>

#include "base/cpu_affinity.h"
#include "iso8583/dialect_loader.h"
#include "iso8583/message.h"
#include "limits/holds_script.h"
#include "risk/rules.h"
#include "switch/config.h"
#include "tests/support/alloc_counter.h"
#include "tests/switch/server_fixture.h"
#include "tests/switch/test_client.h"
#include "tests/switch/test_messages.h"

namespace authswitch::switching {
namespace {

struct Answer {
  std::uint16_t mti = 0;
  std::string de11;
  std::string de39;
};

Answer decode_answer(const std::vector<std::byte>& msg) {
  Answer a;
  if (msg.empty()) {
    return a;
  }
  iso8583::MessageView m;
  const iso8583::Dialect& d = iso8583::builtin_dialect("iso87-ascii");
  if (!iso8583::decode(d, msg, m)) {
    ADD_FAILURE() << "response does not decode";
    return a;
  }
  std::array<char, 64> scratch{};
  a.mti = m.mti();
  a.de11 = std::string(iso8583::text_value(m.field(11), scratch));
  a.de39 = std::string(iso8583::text_value(m.field(39), scratch));
  return a;
}

// `n` framed 1.00 purchases with STANs from `first_stan`, back to back.
std::vector<std::byte> burst(int n, int first_stan) {
  std::vector<std::byte> out;
  for (int i = 0; i < n; ++i) {
    Txn t;
    t.stan = std::to_string(first_stan + i);
    t.amount = "000000000100";
    const auto f = TestClient::frame(encode(t));
    out.insert(out.end(), f.begin(), f.end());
  }
  return out;
}

class ServerTest : public ServerFixture {
 protected:
  void SetUp() override {
    ServerFixture::SetUp();
    seed_profile(redis());
    seed_account(redis(), "R", 100'000'000);
    seed_account(redis(), "P", 5'000);
    seed_card(redis(), crypto_, kPanRich, "R", "active");
    seed_card(redis(), crypto_, kPanPoor, "P", "active");
    const std::string text =
        "[switch]\nshards = 2\n[redis]\naddress = \"127.0.0.1:" + std::to_string(server().port()) +
        "\"\n[[network]]\nname = \"acq\"\nrole = \"listen\"\naddress = "
        "\"127.0.0.1:0\"\ndialect = \"iso87-ascii\"\nframing = "
        "\"len2-binary\"\nbudget = \"500ms\"\nin_flight_max = 8\n[http]\nlisten = "
        "\"127.0.0.1:0\"\n[rules]\nfile = "
        "\"" +
        rules_path_ + "\"\n[audit]\npath = \"" + audit_path_ + "\"\n";
    start_server(load_config(text, "server_test.toml"));
  }
  void TearDown() override {
    ServerFixture::TearDown();
    std::filesystem::remove(audit_path_);
  }

  // Each test's own journal file.
  std::string audit_path_ = (std::filesystem::temp_directory_path() /
                             ("server_test_audit_" + std::to_string(::getpid()) + ".jsonl"))
                                .string();
};

TEST_F(ServerTest, ApprovesAndDeclinesOverTcp) {
  const TestClient c(port_);
  Txn t;
  EXPECT_TRUE(c.send(t));
  Answer a = decode_answer(c.receive());
  EXPECT_EQ(a.mti, 110);
  EXPECT_EQ(a.de39, "00");
  Txn poor;
  poor.pan = kPanPoor;
  poor.stan = "000002";
  EXPECT_TRUE(c.send(poor));
  a = decode_answer(c.receive());
  EXPECT_EQ(a.de39, "10");  // 125.00 against 50.00: a purchase is approved partially
  Txn gambling;
  gambling.mcc = "7995";
  gambling.stan = "000003";
  EXPECT_TRUE(c.send(gambling));
  EXPECT_EQ(decode_answer(c.receive()).de39, "57");
  // The audit journal has a line per answered request, with the PAN masked.
  stop();
  switch_.reset();  // the journal is written out
  std::ifstream audit(audit_path_);
  std::vector<std::string> lines;
  for (std::string l; std::getline(audit, l);) {
    lines.push_back(l);
  }
  ASSERT_EQ(lines.size(), 3U);
  EXPECT_NE(
      lines[0].find(
          R"("mti":"0100","pan":"476173******0119","amount":12500,"currency":840,"code":"00")"),
      std::string::npos)
      << lines[0];
  EXPECT_NE(lines[2].find(R"("code":"57","reasons":"gambling")"), std::string::npos) << lines[2];
  EXPECT_EQ(lines[0].find("4761739001010119"), std::string::npos);
}

// One HTTP/1.1 request on loopback; the whole response (status line, headers, body).
std::string http_request(std::uint16_t port, const std::string& method, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req =
        method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n";
    (void)::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    std::array<char, 4096> buf{};
    for (ssize_t n = 0; (n = ::recv(fd, buf.data(), buf.size(), 0)) > 0;) {
      out.append(buf.data(), static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

std::string http_get(std::uint16_t port, const std::string& path) {
  return http_request(port, "GET", path);
}
std::string http_post(std::uint16_t port, const std::string& path) {
  return http_request(port, "POST", path);
}

TEST_F(ServerTest, MetricsAndHealthOverHttp) {
  ASSERT_NE(switch_->http_port(), 0);
  const TestClient c(port_);
  Txn t;
  t.stan = "700001";
  EXPECT_TRUE(c.send(t));
  ASSERT_EQ(decode_answer(c.receive()).de39, "00");
  const std::string metrics = http_get(switch_->http_port(), "/metrics");
  EXPECT_EQ(metrics.rfind("HTTP/1.1 200", 0), 0U) << metrics;
  EXPECT_NE(metrics.find(R"(authswitch_responses_total{network="acq",mti="0100",code="00"} 1)"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find(R"(authswitch_connections{network="acq"} 1)"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find(R"(authswitch_request_duration_seconds_count{network="acq"} 1)"),
            std::string::npos)
      << metrics;
  // The Redis side is fed from the pipeline: the card lookup and the script call were sent in
  // batches and answered (SCRIPT LOADs and the change feed count too, so at least 2).
  const auto value_of = [&metrics](const std::string& series) -> long {
    const std::size_t at = metrics.find("\n" + series + " ");
    return at == std::string::npos ? -1 : std::stol(metrics.substr(at + series.size() + 2));
  };
  EXPECT_GE(value_of("authswitch_redis_round_trips_total"), 2) << metrics;
  EXPECT_GE(value_of("authswitch_redis_batch_size_count"), 1) << metrics;
  EXPECT_GE(value_of("authswitch_redis_batch_size_sum"), 2) << metrics;
  EXPECT_NE(metrics.find(R"(authswitch_queue_depth{queue="reconciler_pending"} 0)"),
            std::string::npos)
      << metrics;
  EXPECT_EQ(http_get(switch_->http_port(), "/healthz").rfind("HTTP/1.1 200", 0), 0U);
}

TEST_F(ServerTest, RulesReloadWholeAndABadFileChangesNothing) {
  const TestClient c(port_);
  Txn gambling;
  gambling.mcc = "7995";
  gambling.stan = "800001";
  EXPECT_TRUE(c.send(gambling));
  EXPECT_EQ(decode_answer(c.receive()).de39, "57");
  // The issuer lifts the gambling rule: the next authorization is decided by the new set.
  std::ofstream(rules_path_) << "version = \"t2\"\n[[rule]]\nid = \"big\"\nwhen = \"amount > "
                                "100000000\"\naction = \"decline\"\n";
  switch_->reload_rules();
  ASSERT_TRUE(wait_for([&] { return switch_->totals().rule_reloads == 1; }));
  gambling.stan = "800002";
  EXPECT_TRUE(c.send(gambling));
  EXPECT_EQ(decode_answer(c.receive()).de39, "00");
  // The same through the HTTP endpoint (what `authswitch-admin rules reload` posts).
  EXPECT_EQ(http_post(switch_->http_port(), "/-/reload").rfind("HTTP/1.1 202", 0), 0U);
  ASSERT_TRUE(wait_for([&] { return switch_->totals().rule_reloads == 2; }));
  // A broken file is refused and logged; the switch keeps deciding with t2.
  std::ofstream(rules_path_) << "version = \"t3\"\n[[rule]]\nid = \"x\"\nwhen = \"amout > 1\"\n";
  switch_->reload_rules();
  ASSERT_TRUE(wait_for([&] { return switch_->totals().rule_reload_failures == 1; }));
  gambling.stan = "800003";
  EXPECT_TRUE(c.send(gambling));
  EXPECT_EQ(decode_answer(c.receive()).de39, "00");
  EXPECT_EQ(switch_->totals().rule_reloads, 2U);
  // Each audit line names the set that decided it: version and generation.
  stop();
  switch_.reset();  // the journal is written out
  std::ifstream audit(audit_path_);
  std::vector<nlohmann::json> lines;
  for (std::string l; std::getline(audit, l);) {
    lines.push_back(nlohmann::json::parse(l));
  }
  ASSERT_EQ(lines.size(), 3U);
  EXPECT_EQ(lines[0]["rules"], "t1");
  EXPECT_EQ(lines[0]["reasons"], "gambling");
  EXPECT_EQ(lines[1]["rules"], "t2");
  EXPECT_EQ(lines[2]["rules"], "t2");
  EXPECT_GT(lines[1]["rules_generation"].get<std::uint64_t>(),
            lines[0]["rules_generation"].get<std::uint64_t>());
  EXPECT_GT(lines[2]["rules_generation"].get<std::uint64_t>(),
            lines[1]["rules_generation"].get<std::uint64_t>());  // the second reload: a new set
}

// The names of the holds libraries Redis has (FUNCTION LIST), sorted.
std::vector<std::string> holds_libraries(redisContext& ctx) {
  const auto r =
      support::redis_command(ctx, {"FUNCTION", "LIST", "LIBRARYNAME", "authswitch_holds_*"});
  std::vector<std::string> names;
  for (std::size_t i = 0; i < r->elements; ++i) {
    const redisReply* lib = r->element[i];
    for (std::size_t j = 0; j + 1 < lib->elements; j += 2) {
      if (std::string(lib->element[j]->str, lib->element[j]->len) == "library_name") {
        names.emplace_back(lib->element[j + 1]->str, lib->element[j + 1]->len);
      }
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Velocity definitions are built into the holds library (limits::make_holds_library), not sent
// with each call: a reload that changes them must switch every shard to a library with the new
// ones, and Redis must not keep the replaced one.
TEST_F(ServerTest, AReloadWithOtherVelocityRulesSwitchesToTheirLibraryAndDeletesTheOld) {
  const auto velocity = [](int threshold) {
    return "version = \"v" + std::to_string(threshold) +
           "\"\n[[rule]]\nid = \"big\"\nwhen = \"amount > 100000000\"\naction = "
           "\"decline\"\n[[velocity]]\nid = \"approvals\"\nscope = \"card\"\ncounts = "
           "\"approvals\"\nwindow = \"10m\"\nthreshold = " +
           std::to_string(threshold) + "\naction = \"decline\"\nreason = \"suspected_fraud\"\n";
  };
  std::vector<std::unique_ptr<TestClient>> clients;  // on both shards
  for (int i = 0; i < 6; ++i) {
    clients.push_back(std::make_unique<TestClient>(port_));
  }
  int stan = 810'000;
  const auto authorize = [&](const TestClient& c) {
    Txn t;
    t.stan = std::to_string(++stan);
    t.amount = "000000000100";
    EXPECT_TRUE(c.send(t));
    return decode_answer(c.receive()).de39;
  };
  std::ofstream(rules_path_) << velocity(2);
  switch_->reload_rules();
  ASSERT_TRUE(wait_for([&] { return switch_->totals().rule_reloads == 1; }));
  std::vector<std::string> codes;
  for (const auto& c : clients) {
    codes.push_back(authorize(*c));
  }
  // Two approvals of the card in ten minutes, then the third and later are declined.
  EXPECT_EQ(codes, (std::vector<std::string>{"00", "00", "59", "59", "59", "59"}));
  const auto library_of = [&](int threshold) {
    return limits::make_holds_library(
               risk::compile_rules(velocity(threshold), "t.toml")->velocity_definitions())
        .library;
  };
  std::vector<std::string> want = {limits::holds_library().library, library_of(2)};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(holds_libraries(redis()), want);  // the startup set's library is gone

  // Without a single authorization, every shard moves to the new set's library on its tick.
  std::ofstream(rules_path_) << velocity(100);
  switch_->reload_rules();
  ASSERT_TRUE(wait_for([&] { return switch_->totals().rule_reloads == 2; }));
  want = {limits::holds_library().library, library_of(100)};
  std::sort(want.begin(), want.end());
  EXPECT_TRUE(wait_for([&] { return holds_libraries(redis()) == want; }));
  for (const auto& c : clients) {
    EXPECT_EQ(authorize(*c), "00");
  }
  EXPECT_EQ(holds_libraries(redis()), want);
}

TEST_F(ServerTest, NetworkManagementIsAnsweredAtOnce) {
  const TestClient c(port_);
  EXPECT_TRUE(c.send(network_message("301", "000004")));
  const Answer a = decode_answer(c.receive());
  EXPECT_EQ(a.mti, 810);
  EXPECT_EQ(a.de39, "00");
}

TEST_F(ServerTest, ManyPipelinedRequestsOnOneConnectionAllComeBack) {
  const TestClient c(port_);
  constexpr int kRequests = 200;
  EXPECT_TRUE(c.send_raw(burst(kRequests, 100'000)));  // one write: the switch batches them
  std::map<std::string, std::string> codes;
  for (int i = 0; i < kRequests; ++i) {
    const Answer a = decode_answer(c.receive());
    codes[a.de11] = a.de39;
  }
  ASSERT_EQ(codes.size(), static_cast<std::size_t>(kRequests));
  for (const auto& [stan, code] : codes) {
    EXPECT_EQ(code, "00") << stan;
  }
  const auto held = support::redis_command(redis(), {"HGET", "as:{a:R}", "held"});
  EXPECT_EQ(std::string(held->str, held->len), std::to_string(12'500 * 0 + 100 * kRequests));
}

TEST_F(ServerTest, SeveralConnectionsOnBothShards) {
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < 6; ++i) {
    clients.push_back(std::make_unique<TestClient>(port_));
  }
  for (std::size_t i = 0; i < clients.size(); ++i) {
    Txn t;
    t.stan = std::to_string(200'000 + i);
    t.amount = "000000000100";
    EXPECT_TRUE(clients[i]->send(t));
  }
  for (const auto& c : clients) {
    EXPECT_EQ(decode_answer(c->receive()).de39, "00");
  }
  EXPECT_GE(switch_->totals().connections, 6U);
}

// A shard's processor has 4 x in_flight_max slots per network. Once other connections hold
// them all, a connection whose first request finds none waits with nothing of its own in
// flight; it must be read on as soon as slots free up, whoever's answers free them.
TEST_F(ServerTest, AConnectionThatFoundTheProcessorFullIsServedOnceSlotsFree) {
  {
    auto ctx = server().connect();
    (void)support::redis_command(*ctx, {"CLIENT", "PAUSE", "300"});  // nothing completes
  }
  std::vector<std::unique_ptr<TestClient>> fillers;  // 4 per shard x 8 requests: every slot
  for (int i = 0; i < 8; ++i) {
    fillers.push_back(std::make_unique<TestClient>(port_));
    EXPECT_TRUE(fillers.back()->send_raw(burst(8, 300'000 + i * 10)));
  }
  ASSERT_TRUE(wait_for([&] { return switch_->totals().requests >= 64; }));
  ASSERT_EQ(switch_->totals().requests, 64U);
  std::vector<std::unique_ptr<TestClient>> late;  // one per shard, nothing in flight
  for (int i = 0; i < 2; ++i) {
    late.push_back(std::make_unique<TestClient>(port_));
    late.back()->set_timeout(std::chrono::seconds(3));
    EXPECT_TRUE(late.back()->send_raw(burst(8, 400'000 + i * 10)));
  }
  for (const auto* group : {&fillers, &late}) {
    for (const auto& c : *group) {
      for (int i = 0; i < 8; ++i) {
        EXPECT_EQ(decode_answer(c->receive()).de39, "00");
      }
    }
  }
}

// [redis] preload_cards: every shard caches the seeded cards before their first request, so
// that request reads no card from Redis (no miss) and /metrics counts the preloaded cards.
TEST_F(ServerTest, PreloadedCardsNeedNoLookupOnTheirFirstRequest) {
  stop();
  switch_.reset();
  config_.redis.preload_cards = true;
  start_server(config_);
  const std::string preloaded = R"(authswitch_events_total{event="cards_preloaded"} 4)";
  std::string metrics;
  for (int i = 0; i < 400 && metrics.find(preloaded) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    metrics = http_get(switch_->http_port(), "/metrics");
  }
  ASSERT_NE(metrics.find(preloaded), std::string::npos) << metrics;  // 2 cards x 2 shards
  const TestClient c(port_);
  Txn t;
  t.stan = "320001";
  EXPECT_TRUE(c.send(t));
  EXPECT_EQ(decode_answer(c.receive()).de39, "00");
  // Then a card that is not in the directory, so not preloaded: a miss. Once the published
  // count shows it, both lookups are in it: a miss of the preloaded card would make it 2.
  t.stan = "320002";
  t.pan = kPanUnknown;
  EXPECT_TRUE(c.send(t));
  EXPECT_EQ(decode_answer(c.receive()).de39, "14");
  const auto misses = [&] {
    metrics = http_get(switch_->http_port(), "/metrics");
    const std::string series = R"(authswitch_events_total{event="card_cache_misses"} )";
    const std::size_t at = metrics.find(series);
    return at == std::string::npos ? -1L : std::stol(metrics.substr(at + series.size()));
  };
  long seen = 0;
  for (int i = 0; i < 400 && (seen = misses()) < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(seen, 1) << metrics;
}

// A listen network serves at most max_connections at once: one more is closed at once, and a
// place freed by a closed connection can be taken again.
TEST_F(ServerTest, MaxConnectionsIsEnforcedPerNetwork) {
  stop();
  switch_.reset();
  config_.networks[0].max_connections = 2;
  start_server(config_);
  auto first = std::make_unique<TestClient>(port_);
  const TestClient second(port_);
  Txn t;
  t.stan = "310001";
  EXPECT_TRUE(first->send(t));
  EXPECT_EQ(decode_answer(first->receive()).de39, "00");
  t.stan = "310002";
  EXPECT_TRUE(second.send(t));
  EXPECT_EQ(decode_answer(second.receive()).de39, "00");
  {
    const TestClient third(port_);
    EXPECT_TRUE(third.closed_by_peer());
  }
  EXPECT_EQ(switch_->totals().refused_max_connections, 1U);
  first.reset();  // frees a place once the switch has seen the close
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  bool served = false;
  for (int attempt = 0; attempt < 50 && !served; ++attempt) {
    const TestClient again(port_);
    t.stan = std::to_string(310'100 + attempt);
    EXPECT_TRUE(again.send(t));
    served = decode_answer(again.receive()).de39 == "00";
    if (!served) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  EXPECT_TRUE(served);
}

TEST_F(ServerTest, BadInputClosesOnlyItsOwnConnection) {
  const TestClient good(port_);
  const TestClient garbage(port_);
  const TestClient oversized(port_);
  // A frame whose message is not ISO 8583 at all.
  EXPECT_TRUE(garbage.send_raw(
      TestClient::frame({std::byte{'G'}, std::byte{'A'}, std::byte{'R'}, std::byte{'B'},
                         std::byte{'A'}, std::byte{'G'}, std::byte{'E'}})));
  EXPECT_TRUE(garbage.closed_by_peer());
  // A length prefix above the largest frame allowed (8192 by default).
  EXPECT_TRUE(oversized.send_raw({std::byte{0xFF}, std::byte{0xFF}, std::byte{'0'}}));
  EXPECT_TRUE(oversized.closed_by_peer());
  Txn t;
  t.stan = "300001";
  EXPECT_TRUE(good.send(t));
  EXPECT_EQ(decode_answer(good.receive()).de39, "00");
  EXPECT_EQ(switch_->totals().closed_bad_input, 2U);
  // The shards publish their event counts to /metrics every 10 ms.
  const std::string series = R"(authswitch_events_total{event="closed_bad_input"} 2)";
  std::string metrics;
  for (int i = 0; i < 200 && metrics.find(series) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    metrics = http_get(switch_->http_port(), "/metrics");
  }
  EXPECT_NE(metrics.find(series), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"(authswitch_events_total{event="stand_in_approvals"} 0)"),
            std::string::npos)
      << metrics;
}

TEST_F(ServerTest, StopAnswersEveryRequestInFlight) {
  const TestClient c(port_);
  Txn first;  // answered: the switch is accepting and Redis is ready
  first.stan = "399999";
  EXPECT_TRUE(c.send(first));
  ASSERT_EQ(decode_answer(c.receive()).de39, "00");
  constexpr int kRequests = 50;
  EXPECT_TRUE(c.send_raw(burst(kRequests, 400'000)));
  std::this_thread::sleep_for(std::chrono::milliseconds(2));  // let the switch read them
  switch_->stop();
  int answered = 0;
  for (int i = 0; i < kRequests; ++i) {
    if (decode_answer(c.receive()).de39 == "00") {
      ++answered;
    }
  }
  thread_.join();
  const Server::Totals t = switch_->totals();
  EXPECT_EQ(t.requests, t.responses);  // nothing accepted was left unanswered
  EXPECT_EQ(static_cast<std::uint64_t>(answered) + 1, t.requests);
  EXPECT_GT(answered, 0);
}

// A listen network always has an accept pending; whether its cancelled completion has run when
// the acceptors' io_context stops depends on how fast the shards drain. Destroying the server
// must be clean either way (the CI once saw a use after free here under ASan: the pending
// accept held a socket of a shard's io_context, destroyed first).
TEST_F(ServerTest, StartedStoppedAndDestroyedAgainAndAgainIsClean) {
  stop();
  switch_.reset();
  for (int i = 0; i < 10; ++i) {
    auto s = std::make_unique<Server>(config_, risk::compile_rules(kRules, "rules.toml"), key_);
    std::thread t([&s] { s->run(); });
    if (i % 2 == 0) {  // half the time with a connection made and answered first
      const TestClient c(s->listening_port(0));
      Txn txn;
      txn.stan = std::to_string(500'000 + i);
      EXPECT_TRUE(c.send(txn));
      EXPECT_EQ(decode_answer(c.receive()).de39, "00");
    }
    s->stop();
    t.join();
    const Server::Totals totals = s->totals();
    EXPECT_EQ(totals.requests, totals.responses);
    s.reset();
  }
}

// The CPUs each thread named `name` may run on, from /proc/self/task (one entry per thread).
std::vector<std::vector<std::uint32_t>> cpus_of_threads(const std::string& name) {
  std::vector<std::vector<std::uint32_t>> out;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::string comm;
    std::getline(std::ifstream(task.path() / "comm"), comm);
    if (comm != name) {
      continue;
    }
    out.push_back(base::allowed_cpus(std::stoi(task.path().filename().string())));
  }
  return out;
}

// [switch] cpus: shard i runs on cpus[i % size] (the last allowed CPU first, so that shard 0
// is not where an unpinned thread would start) and serves as before; a CPU this process may
// not use is refused before anything starts, naming the CPUs it may use.
TEST_F(ServerTest, ShardsRunOnTheirConfiguredCpus) {
  stop();
  switch_.reset();
  const std::vector<std::uint32_t> allowed = base::allowed_cpus();
  ASSERT_FALSE(allowed.empty());
  SwitchConfig config = config_;
  config.instance.cpus = {allowed.back(), allowed.front()};
  if (allowed.size() == 1) {
    config.instance.cpus.pop_back();
  }
  start_server(config);
  const TestClient c(port_);
  Txn txn;
  txn.stan = "610001";
  EXPECT_TRUE(c.send(txn));
  EXPECT_EQ(decode_answer(c.receive()).de39, "00");
  for (std::uint32_t shard = 0; shard < 2; ++shard) {
    const auto threads = cpus_of_threads("as-shard-" + std::to_string(shard));
    ASSERT_EQ(threads.size(), 1U) << "shard " << shard;
    EXPECT_EQ(
        threads[0],
        (std::vector<std::uint32_t>{config.instance.cpus[shard % config.instance.cpus.size()]}))
        << "shard " << shard;
  }
  stop();
  switch_.reset();

  config.instance.cpus = {kCpuMax};
  ASSERT_NE(allowed.back(), kCpuMax) << "a machine with 1024 CPUs: pick another absent one";
  try {
    Server refused(config, risk::compile_rules(kRules, "rules.toml"), key_);
    ADD_FAILURE() << "a server pinned to CPU " << kCpuMax << " was made";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "switch.cpus: CPU 1023 is not available to this process "
              "(allowed: " +
                  base::cpu_list_text(allowed) + ")");
  }
}

TEST_F(ServerTest, NoAllocationPerMessageOnceWarm) {
  const TestClient c(port_);
  std::vector<std::byte> in(1 << 20);
  // Warm up: every shard-side buffer, slot and handler is used a few times.
  for (int round = 0; round < 4; ++round) {
    EXPECT_TRUE(c.send_raw(burst(100, 500'000 + round * 100)));
    ASSERT_TRUE(c.receive_raw(100, in));
  }
  const std::vector<std::byte> measured = burst(200, 600'000);  // built before counting
  const std::uint64_t before = support::process_allocations();
  EXPECT_TRUE(c.send_raw(measured));
  const bool all = c.receive_raw(200, in);
  const std::uint64_t after = support::process_allocations();
  ASSERT_TRUE(all);
  // The switch's threads (shards, acceptor) and this one, over 200 requests and responses
  // through Redis: nothing.
  EXPECT_EQ(after - before, 0U);
}

}  // namespace
}  // namespace authswitch::switching
