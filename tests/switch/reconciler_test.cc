// The reconciler (switch/reconciler.h) behind a Processor against its own redis-server (AOF on,
// so the data survives the restarts): a stand-in approval while Redis is stopped is placed once
// Redis is back; a stand-in approval whose late original call applied is replayed and changes
// nothing; an advice acknowledged while Redis was down is applied after the restart; a full
// queue writes unresolved records and counts them; the journal never holds a PAN; and queueing
// allocates nothing.
#include "switch/reconciler.h"

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <stdlib.h>

#include "iso8583/dialect_loader.h"
#include "iso8583/message.h"
#include "limits/card_directory.h"
#include "limits/pan_token.h"
#include "limits/redis_pipeline.h"
#include "risk/rule_store.h"
#include "risk/rules.h"
#include "switch/processor.h"
#include "tests/support/alloc_counter.h"
#include "tests/support/redis_server.h"
#include "tests/switch/processor_fixture.h"
#include "tests/switch/test_messages.h"

namespace authswitch::switching {
namespace {

using Clock = limits::RedisPipeline::Clock;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr std::int64_t kNow = 1'795'534'200'000;  // 2026-11-24T15:30:00Z

// Keeps each response's DE 39 and whether DE 38 came (or only counts, without allocating).
class Sink final : public ResponseSink {
 public:
  void on_response(std::uint64_t id, std::span<const std::byte> message) noexcept override {
    ++count;
    if (!record) {
      return;
    }
    iso8583::MessageView v;
    std::array<char, 8> buf{};
    if (iso8583::decode(iso8583::builtin_dialect("iso87-ascii"), message, v) && v.has(39)) {
      codes.emplace_back(id, std::string(iso8583::text_value(v.field(39), buf)));
    }
  }
  [[nodiscard]] std::optional<std::string> code(std::uint64_t id) const {
    for (const auto& [i, c] : codes) {
      if (i == id) {
        return c;
      }
    }
    return std::nullopt;
  }

  bool record = true;
  std::uint64_t count = 0;
  std::vector<std::pair<std::uint64_t, std::string>> codes;
};

class ReconcilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    support::RedisServerOptions ro;
    ro.aof = support::AofMode::kEverySecond;  // a graceful stop and restart keep the data
    server_ = std::make_unique<support::RedisServer>(ro);
    redis_ = server_->connect();
    seed_profile(*redis_);
    seed_account(*redis_, "R", 100'000);
    seed_card(*redis_, crypto_, kPanRich, "R", "active");
    std::string tmpl = (fs::temp_directory_path() / "reconciler_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    stop();
    fs::remove_all(dir_);
  }

  static Processor::Options processor_options() {
    Processor::Options o = test_processor_options(100ms);
    o.stand_in.kind = StandInPolicy::Kind::kApproveUpTo;
    o.stand_in.approve_up_to_minor = 20'000;
    return o;
  }

  void start(Reconciler::Options ro = {}, Processor::Options po = processor_options()) {
    journal_ = std::make_unique<ReconJournal>(
        ReconJournal::Options{.path = journal_path().string(), .networks = {"acq"}});
    producer_.emplace(journal_->producer());
    pipeline_ = make_test_pipeline(server_->port(), 10ms, 50ms);
    directory_ = make_test_directory(*pipeline_);
    ro.backoff_min = 20ms;
    ro.backoff_max = 100ms;
    reconciler_ = std::make_unique<Reconciler>(*pipeline_, *directory_, &*producer_, ro);
    po.reconciler = reconciler_.get();
    processor_ = std::make_unique<Processor>(iso8583::builtin_dialect("iso87-ascii"), *pipeline_,
                                             *directory_, reader_, crypto_, po, sink_);
    ASSERT_TRUE(run_until([&] { return pipeline_->ready() && directory_->ready(); }));
  }

  // In the order processor.h and reconciler.h ask for; then the journal is complete on disk.
  void stop() {
    pipeline_.reset();
    processor_.reset();
    directory_.reset();
    reconciler_.reset();
    producer_.reset();
    if (journal_ != nullptr) {
      journal_->stop();
    }
  }

  // The shard's loop: ticks, poll, dispatch; until `done` or `limit`.
  template <typename Pred>
  bool run_until(Pred done, std::chrono::milliseconds limit = 5000ms) {
    return run_shard_until(*pipeline_, done, limit, *directory_, *processor_, *reconciler_);
  }

  std::uint64_t send(const Txn& t) {
    const std::uint64_t id = ++next_id_;
    EXPECT_EQ(processor_->handle(id, encode(t), Clock::now(), kNow), HandleStatus::kAccepted);
    pipeline_->flush();
    return id;
  }

  // Sends and waits for the response code.
  std::string exchange(const Txn& t) {
    const std::uint64_t id = send(t);
    EXPECT_TRUE(run_until([&] { return sink_.code(id).has_value(); }));
    return sink_.code(id).value_or("");
  }

  // Caches the card (a balance inquiry), so a later request knows its account without Redis.
  void warm() {
    Txn t;
    t.de3 = "300000";
    t.stan = "000900";
    ASSERT_EQ(exchange(t), "00");
    ASSERT_TRUE(run_until([&] { return processor_->in_flight() == 0; }));
  }

  void stop_redis() {
    server_->stop();
    // Disconnected, not reconnecting: a submit then fails at once (handle() answers by
    // stand-in) until a tick starts the next connect.
    ASSERT_TRUE(run_until(
        [&] { return pipeline_->state() == limits::RedisPipeline::State::kDisconnected; }));
  }

  void restart_redis() {
    server_->restart();
    redis_ = server_->connect();
  }

  std::string hget(const std::string& key, const std::string& field) {
    return switching::hget(*redis_, key, field);
  }
  std::int64_t number(const std::string& key, const std::string& field) {
    const std::string v = hget(key, field);
    return v.empty() ? -1 : std::stoll(v);
  }
  std::string hold(const std::string& id) { return hget("as:{a:R}:h", id); }

  [[nodiscard]] fs::path journal_path() const { return dir_ / "standin.jsonl"; }
  // The journal's lines (after stop()).
  std::vector<nlohmann::json> journal_lines() {
    std::ifstream in(journal_path());
    std::vector<nlohmann::json> out;
    for (std::string l; std::getline(in, l);) {
      EXPECT_TRUE(nlohmann::json::accept(l)) << l;
      EXPECT_EQ(l.find(kPanRich), std::string::npos) << "a PAN in the journal: " << l;
      out.push_back(nlohmann::json::parse(l));
    }
    return out;
  }
  // The states journaled for `txn`, in order.
  std::vector<std::string> states(const std::vector<nlohmann::json>& lines,
                                  const std::string& txn) {
    std::vector<std::string> out;
    for (const auto& j : lines) {
      if (j["txn"] == txn) {
        out.push_back(j["state"].get<std::string>());
      }
    }
    return out;
  }

  limits::SoftwareCardCrypto crypto_{limits::TokenKey::from_hex(kKeyHex, "test key")};
  risk::RuleStore store_{risk::compile_rules(kRules, "test-rules.toml")};
  risk::RuleStore::Reader reader_ = store_.reader();
  std::unique_ptr<support::RedisServer> server_;
  support::RedisContextPtr redis_;
  fs::path dir_;
  Sink sink_;
  std::unique_ptr<ReconJournal> journal_;
  std::optional<ReconJournal::Producer> producer_;
  std::unique_ptr<Reconciler> reconciler_;
  std::unique_ptr<Processor> processor_;
  std::unique_ptr<limits::CardDirectory> directory_;
  std::unique_ptr<limits::RedisPipeline> pipeline_;
  std::uint64_t next_id_ = 0;
};

TEST_F(ReconcilerTest, StandInApprovalWhileRedisIsDownIsPlacedOnceItIsBack) {
  start();
  warm();
  stop_redis();
  Txn t;
  t.stan = "000010";
  const auto sent = Clock::now();
  const std::uint64_t id = send(t);
  ASSERT_TRUE(run_until([&] { return sink_.code(id).has_value(); }));
  EXPECT_LT(Clock::now() - sent, 100ms);  // within the budget: Redis could not be asked at all
  EXPECT_EQ(sink_.code(id), "00");
  EXPECT_EQ(processor_->stats().stand_in_approvals, 1U);
  EXPECT_EQ(processor_->stats().reconciliations, 1U);
  EXPECT_EQ(reconciler_->pending(), 1U);
  // Nothing is attempted while Redis is away.
  EXPECT_FALSE(run_until([&] { return reconciler_->pending() == 0; }, 200ms));
  restart_redis();
  ASSERT_TRUE(run_until([&] { return reconciler_->pending() == 0; }));
  EXPECT_EQ(reconciler_->stats().applied, 1U);
  EXPECT_EQ(reconciler_->stats().unresolved, 0U);
  EXPECT_EQ(number("as:{a:R}", "held"), 12'500);
  EXPECT_EQ(hold(t.key()).substr(0, 8), "P|12500|");
  // A repeat of the request is answered like the stand-in answer and holds nothing more.
  Txn repeat = t;
  repeat.mti = 101;
  EXPECT_EQ(exchange(repeat), "00");
  ASSERT_TRUE(run_until([&] { return processor_->in_flight() == 0; }));
  EXPECT_EQ(number("as:{a:R}", "held"), 12'500);
  stop();
  const auto lines = journal_lines();
  EXPECT_EQ(states(lines, t.key()), (std::vector<std::string>{"queued", "applied"}));
  const nlohmann::json& applied = lines.back();
  EXPECT_EQ(applied["kind"], "stand_in_approval");
  EXPECT_EQ(applied["network"], "acq");
  EXPECT_EQ(applied["op"], "force_auth");
  EXPECT_EQ(applied["account"], "R");
  EXPECT_EQ(applied["amount"], 12'500);
  EXPECT_EQ(applied["currency"], "840");
  EXPECT_EQ(applied["pan"], "476173******0119");
  EXPECT_EQ(applied["card_token"].get<std::string>().size(), limits::PanToken::kChars);
}

// Redis paused past the deadline: the stand-in answers 00, the original call applies late, and
// the replay finds its answer: one hold, not two.
TEST_F(ReconcilerTest, StandInApprovalWhoseLateOriginalAppliedChangesNothing) {
  start();
  warm();
  (void)support::redis_command(*redis_, {"CLIENT", "PAUSE", "500"});
  Txn t;
  t.stan = "000011";
  const auto sent = Clock::now();
  const std::uint64_t id = send(t);
  ASSERT_TRUE(run_until([&] { return sink_.code(id).has_value(); }));
  EXPECT_LT(Clock::now() - sent, 300ms);
  EXPECT_EQ(sink_.code(id), "00");
  ASSERT_TRUE(run_until([&] {
    return processor_->in_flight() == 0 && reconciler_->pending() == 0 &&
           reconciler_->stats().queued == 1;
  }));
  EXPECT_EQ(reconciler_->stats().replayed_original, 1U);
  EXPECT_EQ(reconciler_->stats().applied, 0U);
  EXPECT_EQ(number("as:{a:R}", "held"), 12'500);
  EXPECT_EQ(hold(t.key()).substr(0, 8), "P|12500|");
  stop();
  const auto lines = journal_lines();
  EXPECT_EQ(states(lines, t.key()), (std::vector<std::string>{"queued", "replayed_original"}));
}

// The late original approved only part (10) of what the stand-in approved (00): the
// reconciler's forced call tops the hold up to the full amount, so the network's answer is what
// is held.
TEST_F(ReconcilerTest, StandInApprovalWhoseLateOriginalApprovedPartOfItIsToppedUp) {
  (void)support::redis_command(*redis_, {"HSET", "as:{a:R}", "bal", "10000"});
  start();
  warm();
  (void)support::redis_command(*redis_, {"CLIENT", "PAUSE", "500"});
  Txn t;
  t.stan = "000012";
  const std::uint64_t id = send(t);
  ASSERT_TRUE(run_until([&] { return sink_.code(id).has_value(); }));
  EXPECT_EQ(sink_.code(id), "00");  // by stand-in, for 12,500
  ASSERT_TRUE(run_until([&] {
    return processor_->in_flight() == 0 && reconciler_->pending() == 0 &&
           reconciler_->stats().queued == 1;
  }));
  EXPECT_EQ(reconciler_->stats().applied, 1U);
  EXPECT_EQ(reconciler_->stats().unresolved, 0U);
  EXPECT_EQ(number("as:{a:R}", "held"), 12'500);
  EXPECT_EQ(hold(t.key()).substr(0, 8), "P|12500|");
  stop();
  const auto lines = journal_lines();
  EXPECT_EQ(states(lines, t.key()), (std::vector<std::string>{"queued", "applied"}));
}

TEST_F(ReconcilerTest, AdviceAcknowledgedWhileRedisIsDownIsAppliedOnceItIsBack) {
  start();
  const Txn auth;
  ASSERT_EQ(exchange(auth), "00");
  ASSERT_TRUE(run_until([&] { return processor_->in_flight() == 0; }));
  stop_redis();
  Txn advice;
  advice.mti = 120;
  advice.amount = "000000011000";
  advice.stan = "000002";
  advice.de7 = "1124160000";
  advice.de90 = auth.original_data();
  EXPECT_EQ(exchange(advice), "00");
  EXPECT_EQ(processor_->stats().advices_unconfirmed, 1U);
  EXPECT_EQ(reconciler_->pending(), 1U);
  restart_redis();
  ASSERT_TRUE(run_until([&] { return reconciler_->pending() == 0; }));
  EXPECT_EQ(reconciler_->stats().applied, 1U);
  EXPECT_EQ(number("as:{a:R}", "held"), 0);
  EXPECT_EQ(number("as:{a:R}", "bal"), 100'000 - 11'000);
  EXPECT_EQ(hold(auth.key()).substr(0, 14), "C|12500|11000|");
  stop();
  const auto lines = journal_lines();
  const std::string replay_key = advice.key() + "-C";
  EXPECT_EQ(states(lines, replay_key), (std::vector<std::string>{"queued", "applied"}));
  EXPECT_EQ(lines.back()["kind"], "unconfirmed_advice");
  EXPECT_EQ(lines.back()["hold"], auth.key());
}

TEST_F(ReconcilerTest, AFullQueueWritesUnresolvedRecordsAndCountsThem) {
  Reconciler::Options ro;
  ro.capacity = 2;
  start(ro);
  warm();
  stop_redis();
  std::vector<std::string> keys;
  for (int i = 0; i < 4; ++i) {
    Txn t;
    t.stan = "00002" + std::to_string(i);
    t.amount = "000000001000";
    keys.push_back(t.key());
    EXPECT_EQ(exchange(t), "00");
  }
  EXPECT_EQ(reconciler_->stats().queued, 2U);
  EXPECT_EQ(reconciler_->stats().queue_full, 2U);
  EXPECT_EQ(reconciler_->stats().unresolved, 2U);
  EXPECT_EQ(processor_->stats().reconcile_refused, 2U);
  restart_redis();
  ASSERT_TRUE(run_until([&] { return reconciler_->pending() == 0; }));
  EXPECT_EQ(reconciler_->stats().applied, 2U);
  EXPECT_EQ(number("as:{a:R}", "held"), 2'000);
  stop();
  const auto lines = journal_lines();
  EXPECT_EQ(states(lines, keys[0]), (std::vector<std::string>{"queued", "applied"}));
  EXPECT_EQ(states(lines, keys[1]), (std::vector<std::string>{"queued", "applied"}));
  for (const std::size_t i : {2U, 3U}) {
    EXPECT_EQ(states(lines, keys[i]), (std::vector<std::string>{"unresolved"}));
  }
  for (const auto& j : lines) {
    if (j["state"] == "unresolved") {
      EXPECT_EQ(j["detail"], "queue_full");
      EXPECT_EQ(j["amount"], 1'000);
    }
  }
}

// Policy decline: the request is answered 91 at its deadline and its compensating reversal is
// queued behind the late call; the connection then dies with both in flight (neither ran), so
// the compensation fails and the reconciler retries it once Redis answers: its void record
// means nothing can be held under that id afterwards.
TEST_F(ReconcilerTest, AFailedCompensatingReversalIsRetried) {
  Processor::Options po = processor_options();
  po.stand_in.kind = StandInPolicy::Kind::kDecline;
  start({}, po);
  warm();
  (void)support::redis_command(*redis_, {"CLIENT", "PAUSE", "3000", "WRITE"});
  Txn t;
  t.stan = "000050";
  const std::uint64_t id = send(t);
  ASSERT_TRUE(run_until([&] { return sink_.code(id).has_value(); }));
  EXPECT_EQ(sink_.code(id), "91");
  EXPECT_EQ(processor_->stats().compensations, 1U);
  (void)support::redis_command(*redis_, {"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
  (void)support::redis_command(*redis_, {"CLIENT", "UNPAUSE"});
  ASSERT_TRUE(run_until([&] {
    return processor_->in_flight() == 0 && reconciler_->pending() == 0 &&
           reconciler_->stats().queued == 1;
  }));
  EXPECT_EQ(processor_->stats().compensation_failures, 1U);
  EXPECT_EQ(reconciler_->stats().applied, 1U);
  EXPECT_EQ(number("as:{a:R}", "held"), 0);
  EXPECT_EQ(hold(t.key()).substr(0, 2), "V|");
  stop();
  const auto lines = journal_lines();
  EXPECT_EQ(states(lines, t.key() + "-si"), (std::vector<std::string>{"queued", "applied"}));
  EXPECT_EQ(lines.back()["kind"], "compensation");
  EXPECT_EQ(lines.back()["op"], "reverse");
  EXPECT_EQ(lines.back()["detail"], "no_hold");
}

// The card was never cached: the stand-in approval does not know its account, and the
// reconciler finds it in the card directory once Redis is back.
TEST_F(ReconcilerTest, StandInApprovalOfAnUncachedCardFindsItsAccount) {
  start();
  stop_redis();
  Txn t;
  t.stan = "000030";
  EXPECT_EQ(exchange(t), "00");
  restart_redis();
  ASSERT_TRUE(run_until([&] { return reconciler_->pending() == 0; }));
  EXPECT_EQ(reconciler_->stats().applied, 1U);
  EXPECT_EQ(number("as:{a:R}", "held"), 12'500);
  stop();
  const auto lines = journal_lines();
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.front()["account"], "");
  EXPECT_EQ(lines.back()["account"], "R");
}

// A replay Redis refuses (the account's currency changed meanwhile) is unresolved, not retried
// forever; a call that keeps failing is given up after attempts_max.
TEST_F(ReconcilerTest, RefusalsAndRepeatedFailuresAreUnresolved) {
  Reconciler::Options ro;
  ro.attempts_max = 2;
  start(ro);
  warm();
  stop_redis();
  Txn t;
  t.stan = "000040";
  EXPECT_EQ(exchange(t), "00");
  restart_redis();
  (void)support::redis_command(*redis_, {"HSET", "as:{a:R}", "cur", "978"});
  ASSERT_TRUE(run_until([&] { return reconciler_->pending() == 0; }));
  EXPECT_EQ(reconciler_->stats().unresolved, 1U);
  EXPECT_EQ(number("as:{a:R}", "held"), 0);
  // A call Redis fails every time (the account key holds a string: WRONGTYPE) is given up
  // after attempts_max failures.
  (void)support::redis_command(*redis_, {"SET", "as:{a:X}", "not a hash"});
  ReconItem it;
  it.kind = ReconKind::kCompensation;
  it.op = ReconItem::Op::kReverse;
  it.now_ms = kNow;
  (void)it.replay_key.assign("x-1-si");
  (void)it.hold_id.assign("x-1");
  (void)it.account.assign("X");
  (void)it.fingerprint.assign("si");
  EXPECT_TRUE(reconciler_->enqueue(it));
  ASSERT_TRUE(run_until([&] { return reconciler_->pending() == 0; }));
  EXPECT_EQ(reconciler_->stats().exhausted, 1U);
  EXPECT_EQ(reconciler_->stats().failures, 2U);
  EXPECT_EQ(reconciler_->stats().unresolved, 2U);
  stop();
  const auto lines = journal_lines();
  EXPECT_EQ(states(lines, t.key()), (std::vector<std::string>{"queued", "unresolved"}));
  EXPECT_EQ(lines[1]["detail"], "currency");
  EXPECT_EQ(lines.back()["state"], "unresolved");
  EXPECT_EQ(lines.back()["attempts"], 2);
  EXPECT_NE(lines.back()["detail"].get<std::string>().find("WRONGTYPE"), std::string::npos);
}

// Queueing is a copy into the preallocated ring and a try_enqueue into the journal's queue: no
// allocation per item, through the processor's stand-in path or directly.
TEST_F(ReconcilerTest, NoAllocationPerQueuedItem) {
  Reconciler::Options ro;
  ro.capacity = 1024;
  start(ro);
  warm();
  stop_redis();
  constexpr int kItems = 200;
  const std::vector<std::vector<std::byte>> requests = encoded_purchases(2 * kItems);
  sink_.record = false;
  std::size_t next = 0;
  const auto run = [&](int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(processor_->handle(++next_id_, requests[next++], Clock::now(), kNow),
                HandleStatus::kAccepted);
    }
  };
  run(kItems);  // warm: the journal producer's blocks, the ring's pages
  ReconItem direct;
  (void)direct.replay_key.assign("direct-1");
  (void)direct.hold_id.assign("direct-1");
  const support::AllocSnapshot before = support::alloc_snapshot();
  run(kItems);
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(reconciler_->enqueue(direct));
  }
  const support::AllocSnapshot after = support::alloc_snapshot();
  EXPECT_EQ(after.allocations - before.allocations, 0U);
  EXPECT_EQ(sink_.count, 2U * kItems + 1);  // the warm-up inquiry too
  EXPECT_EQ(reconciler_->stats().queued, 2U * kItems + 100);
  EXPECT_EQ(processor_->in_flight(), 0U);
}

}  // namespace
}  // namespace authswitch::switching
