// The switch's per-shard message logic (switch/processor.h) against a real redis-server: each
// message class of DESIGN.md section 3 built with MessageBuilder in iso87-ascii, handed to
// handle(), the pipeline driven until the sink has the response, then the response decoded and
// the holds checked in Redis. Also: format errors and unreadable frames, stand-in at the
// deadline with Redis paused (and the late hold voided), and no allocation once warm.
#include "switch/processor.h"

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include "iso8583/dialect_loader.h"
#include "iso8583/message.h"
#include "limits/card_directory.h"
#include "limits/layout.h"
#include "limits/pan_token.h"
#include "limits/redis_pipeline.h"
#include "risk/rule_store.h"
#include "risk/rules.h"
#include "tests/support/alloc_counter.h"
#include "tests/support/redis_fixture.h"
#include "tests/support/redis_server.h"
#include "tests/switch/processor_fixture.h"
#include "tests/switch/test_messages.h"

namespace authswitch::switching {
namespace {

using Clock = limits::RedisPipeline::Clock;
using namespace std::chrono_literals;

constexpr std::int64_t kNow = 1'795'534'200'000;  // 2026-11-24T15:30:00Z
// Records every response; in counting mode (no allocation) only counts them.
class Sink final : public ResponseSink {
 public:
  void on_response(std::uint64_t id, std::span<const std::byte> message) noexcept override {
    ++count;
    last_id = id;
    if (record) {
      responses.push_back({id, std::vector<std::byte>(message.begin(), message.end())});
    }
  }
  [[nodiscard]] std::size_t count_for(std::uint64_t id) const {
    std::size_t n = 0;
    for (const auto& r : responses) {
      n += r.first == id ? 1 : 0;
    }
    return n;
  }
  [[nodiscard]] const std::vector<std::byte>* find(std::uint64_t id) const {
    for (const auto& r : responses) {
      if (r.first == id) {
        return &r.second;
      }
    }
    return nullptr;
  }

  bool record = true;
  std::uint64_t count = 0;
  std::uint64_t last_id = 0;
  std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> responses;
};

// A decoded response with its fields as strings.
struct Response {
  std::uint16_t mti = 0;
  std::string de2, de4, de11, de38, de39, de54, de70;
  bool has38 = false;
};

Response decode_response(const std::vector<std::byte>& bytes) {
  const iso8583::Dialect& d = iso8583::builtin_dialect("iso87-ascii");
  iso8583::MessageView v;
  Response r;
  if (!iso8583::decode(d, bytes, v)) {
    ADD_FAILURE() << "response does not decode";
    return r;
  }
  r.mti = v.mti();
  std::array<char, 256> buf{};
  const auto text = [&](int de) {
    return v.has(de) ? std::string(iso8583::text_value(v.field(de), buf)) : std::string();
  };
  r.de2 = text(2);
  r.de4 = text(4);
  r.de11 = text(11);
  r.de38 = text(38);
  r.has38 = v.has(38);
  r.de39 = text(39);
  r.de54 = text(54);
  r.de70 = text(70);
  return r;
}

class ProcessorTest : public support::SharedRedisTest {
 protected:
  void SetUp() override {
    support::SharedRedisTest::SetUp();
    seed_profile();
    seed_account("R", 100'000);
    seed_account("P", 5'000);
    seed_card(kPanRich, "R", "active");
    seed_card(kPanPoor, "P", "active");
    seed_card(kPanStolen, "R", "stolen");
    start(options());
  }

  void TearDown() override {
    // The pipeline first: it fails what is pending back into the directory and the processor.
    pipeline_.reset();
    directory_.reset();
    processor_.reset();
  }

  static Processor::Options options() { return test_processor_options(1000ms); }

  // `max_in_flight`: the Redis pipeline's ring of calls in flight (0: its default).
  void start(const Processor::Options& o, std::size_t max_in_flight = 0) {
    processor_.reset();
    directory_.reset();
    pipeline_.reset();
    pipeline_ = make_test_pipeline(server().port(), 10ms, 100ms, max_in_flight);
    directory_ = make_test_directory(*pipeline_);
    processor_ = std::make_unique<Processor>(iso8583::builtin_dialect("iso87-ascii"), *pipeline_,
                                             *directory_, reader_, crypto_, o, sink_);
    ASSERT_TRUE(run_until([&] { return pipeline_->ready() && directory_->ready(); }));
  }

  // The shard's loop: ticks, poll, dispatch; until `done` or `limit`.
  template <typename Pred>
  bool run_until(Pred done, std::chrono::milliseconds limit = 3000ms) {
    return run_shard_until(*pipeline_, done, limit, *directory_, *processor_);
  }

  HandleStatus submit(std::uint64_t id, const std::vector<std::byte>& bytes) {
    const HandleStatus st = processor_->handle(id, bytes, Clock::now(), kNow);
    pipeline_->flush();
    return st;
  }

  // Sends one request and waits for its response.
  Response exchange(const Txn& t) {
    const std::uint64_t id = ++next_id_;
    EXPECT_EQ(submit(id, encode(t)), HandleStatus::kAccepted);
    EXPECT_TRUE(run_until([&] { return sink_.find(id) != nullptr; }));
    const auto* bytes = sink_.find(id);
    return bytes == nullptr ? Response{} : decode_response(*bytes);
  }

  // Waits until every request is finished (late replies and follow-up calls included).
  void settle() {
    EXPECT_TRUE(run_until([&] { return processor_->in_flight() == 0; }, 5000ms));
  }

  std::string hget(const std::string& key, const std::string& field) {
    return switching::hget(redis(), key, field);
  }
  std::int64_t held(const std::string& account) {
    const std::string v = hget("as:{a:" + account + "}", "held");
    return v.empty() ? -1 : std::stoll(v);
  }
  std::int64_t balance(const std::string& account) {
    const std::string v = hget("as:{a:" + account + "}", "bal");
    return v.empty() ? -1 : std::stoll(v);
  }
  // "state|amount|posted|..." of a hold, or "".
  std::string hold(const std::string& account, const std::string& id) {
    return hget("as:{a:" + account + "}:h", id);
  }

  void seed_profile() { switching::seed_profile(redis()); }
  void seed_account(const std::string& id, std::int64_t bal) {
    switching::seed_account(redis(), id, bal);
  }
  void seed_card(const char* pan, const std::string& account, const std::string& status) {
    switching::seed_card(redis(), crypto_, pan, account, status);
  }

  limits::SoftwareCardCrypto crypto_{limits::TokenKey::from_hex(kKeyHex, "test key")};
  risk::RuleStore store_{risk::compile_rules(kRules, "test-rules.toml")};
  risk::RuleStore::Reader reader_ = store_.reader();
  Sink sink_;
  std::unique_ptr<Processor> processor_;
  std::unique_ptr<limits::CardDirectory> directory_;
  std::unique_ptr<limits::RedisPipeline> pipeline_;
  std::uint64_t next_id_ = 0;
};

TEST_F(ProcessorTest, ApprovesAndPlacesAHold) {
  const Txn t;
  const Response r = exchange(t);
  EXPECT_EQ(r.mti, 110);
  EXPECT_EQ(r.de39, "00");
  ASSERT_TRUE(r.has38);
  EXPECT_EQ(r.de38.size(), 6U);
  EXPECT_EQ(r.de38[0], 'A');
  EXPECT_EQ(r.de11, "000001");
  settle();
  EXPECT_EQ(held("R"), 12'500);
  EXPECT_EQ(hold("R", t.key()).substr(0, 8), "P|12500|");
  // The sweeper's index knows the account (due note after the approval).
  const auto due = support::redis_command(redis(), {"ZSCORE", "as:due", "R"});
  EXPECT_EQ(due->type, REDIS_REPLY_STRING);
  EXPECT_EQ(processor_->stats().authorizations, 1U);
  EXPECT_EQ(processor_->stats().approved, 1U);
}

TEST_F(ProcessorTest, InsufficientFundsDeclines51) {
  Txn t;
  t.pan = kPanPoor;
  t.de3 = "010000";  // cash: no partial approval
  const Response r = exchange(t);
  EXPECT_EQ(r.de39, "51");
  EXPECT_FALSE(r.has38);
  settle();
  EXPECT_EQ(held("P"), 0);
}

TEST_F(ProcessorTest, PartialApprovalAnswers10WithTheApprovedAmount) {
  Txn t;
  t.pan = kPanPoor;
  const Response r = exchange(t);
  EXPECT_EQ(r.de39, "10");
  EXPECT_EQ(r.de4, "000000005000");
  EXPECT_TRUE(r.has38);
  settle();
  EXPECT_EQ(held("P"), 5'000);
}

TEST_F(ProcessorTest, UnknownCardDeclines14WithoutAScriptCall) {
  Txn t;
  t.pan = kPanUnknown;
  const Response r = exchange(t);
  EXPECT_EQ(r.de39, "14");
  settle();
  EXPECT_EQ(support::redis_command(redis(), {"EXISTS", "as:{a:R}:i:" + t.key()})->integer, 0);
}

TEST_F(ProcessorTest, StolenCardDeclines43) {
  Txn t;
  t.pan = kPanStolen;
  EXPECT_EQ(exchange(t).de39, "43");
  settle();
  EXPECT_EQ(held("R"), 0);
}

TEST_F(ProcessorTest, RulesDeclineWithoutAHold) {
  Txn t;
  t.mcc = "7995";
  const Response r = exchange(t);
  EXPECT_EQ(r.de39, "57");
  EXPECT_FALSE(r.has38);
  settle();
  EXPECT_EQ(held("R"), 0);
  EXPECT_EQ(hold("R", t.key()), "");
}

TEST_F(ProcessorTest, TrackTwoOnlyRequestFindsTheCard) {
  Txn t;
  t.pan.clear();
  t.expiry.clear();
  const std::vector<std::byte> base = encode(t);
  // Rebuild with DE 35 instead of DE 2.
  const iso8583::Dialect& d = iso8583::builtin_dialect("iso87-ascii");
  iso8583::MessageView v;
  ASSERT_TRUE(iso8583::decode(d, base, v));
  iso8583::MessageBuilder b(d);
  b.reset(100);
  for (int de = 2; de <= 128; ++de) {
    if (v.has(de)) {
      b.copy_from(v, de);
    }
  }
  const std::string track2 = std::string(kPanRich) + "=28122011234500000";
  b.set_text(35, track2);
  std::vector<std::byte> bytes(2048);
  const auto n = b.encode(bytes);
  ASSERT_TRUE(n.has_value());
  bytes.resize(*n);
  EXPECT_EQ(submit(1, bytes), HandleStatus::kAccepted);
  ASSERT_TRUE(run_until([&] { return sink_.find(1) != nullptr; }));
  EXPECT_EQ(decode_response(*sink_.find(1)).de39, "00");
  settle();
  EXPECT_EQ(held("R"), 12'500);
}

TEST_F(ProcessorTest, CompletionPostsTheHold) {
  const Txn auth;
  ASSERT_EQ(exchange(auth).de39, "00");
  Txn advice;
  advice.mti = 120;
  advice.amount = "000000011000";  // final amount, lower than held
  advice.stan = "000002";
  advice.de7 = "1124160000";
  advice.de90 = auth.original_data();
  const Response r = exchange(advice);
  EXPECT_EQ(r.mti, 130);
  EXPECT_EQ(r.de39, "00");
  settle();
  EXPECT_EQ(held("R"), 0);
  EXPECT_EQ(balance("R"), 100'000 - 11'000);
  EXPECT_EQ(hold("R", auth.key()).substr(0, 14), "C|12500|11000|");
}

TEST_F(ProcessorTest, FullReversalVoidsTheHold) {
  const Txn auth;
  ASSERT_EQ(exchange(auth).de39, "00");
  Txn rev;
  rev.mti = 400;
  rev.stan = "000003";
  rev.de90 = auth.original_data();
  const Response r = exchange(rev);
  EXPECT_EQ(r.mti, 410);
  EXPECT_EQ(r.de39, "00");
  settle();
  EXPECT_EQ(held("R"), 0);
  EXPECT_EQ(hold("R", auth.key()).substr(0, 2), "V|");
  // A repeat (0401) changes nothing and is acknowledged again.
  rev.mti = 401;
  EXPECT_EQ(exchange(rev).de39, "00");
  settle();
  EXPECT_EQ(held("R"), 0);
  EXPECT_EQ(balance("R"), 100'000);
}

// Without DE 90 a reversal names its original by its own DE 32/7/11 (the same as the original's).
TEST_F(ProcessorTest, ReversalWithoutDe90UsesItsOwnKeys) {
  const Txn auth;
  ASSERT_EQ(exchange(auth).de39, "00");
  Txn rev = auth;
  rev.mti = 420;
  const Response r = exchange(rev);
  EXPECT_EQ(r.mti, 430);
  EXPECT_EQ(r.de39, "00");
  settle();
  EXPECT_EQ(held("R"), 0);
  EXPECT_EQ(hold("R", auth.key()).substr(0, 2), "V|");
}

TEST_F(ProcessorTest, PartialReversalReducesTheHold) {
  const Txn auth;
  ASSERT_EQ(exchange(auth).de39, "00");
  Txn rev;
  rev.mti = 420;
  rev.stan = "000004";
  rev.de90 = auth.original_data();
  rev.de95 = "000000005000000000005000C00000000C00000000";
  const Response r = exchange(rev);
  EXPECT_EQ(r.mti, 430);
  EXPECT_EQ(r.de39, "00");
  settle();
  EXPECT_EQ(held("R"), 5'000);
  EXPECT_EQ(hold("R", auth.key()).substr(0, 7), "P|5000|");
}

TEST_F(ProcessorTest, RetransmissionGetsTheOriginalAnswerAndNoSecondHold) {
  const Txn t;
  const Response first = exchange(t);
  ASSERT_EQ(first.de39, "00");
  Txn repeat = t;
  repeat.mti = 101;
  const Response again = exchange(repeat);
  EXPECT_EQ(again.mti, 110);
  EXPECT_EQ(again.de39, "00");
  EXPECT_EQ(again.de38, first.de38);
  settle();
  EXPECT_EQ(held("R"), 12'500);
  // The same keys with another amount: a duplicate, not a replay.
  Txn other = t;
  other.amount = "000000000100";
  EXPECT_EQ(exchange(other).de39, "94");
  settle();
  EXPECT_EQ(held("R"), 12'500);
}

TEST_F(ProcessorTest, SingleMessageDebitPostsAtOnce) {
  Txn t;
  t.mti = 200;
  const Response r = exchange(t);
  EXPECT_EQ(r.mti, 210);
  EXPECT_EQ(r.de39, "00");
  settle();
  EXPECT_EQ(balance("R"), 100'000 - 12'500);
  EXPECT_EQ(held("R"), 0);
}

TEST_F(ProcessorTest, RefundCreditsTheAccount) {
  Txn t;
  t.mti = 200;
  t.de3 = "200000";
  t.amount = "000000002000";
  const Response r = exchange(t);
  EXPECT_EQ(r.mti, 210);
  EXPECT_EQ(r.de39, "00");
  settle();
  EXPECT_EQ(balance("R"), 102'000);
}

TEST_F(ProcessorTest, BalanceInquiryReportsLedgerAndAvailableInDe54) {
  Txn t;
  t.de3 = "300000";
  t.amount = "000000000000";
  const Response r = exchange(t);
  EXPECT_EQ(r.de39, "00");
  EXPECT_EQ(r.de54,
            "0001840C000000100000"
            "0002840C000000100000");
}

TEST_F(ProcessorTest, NetworkManagementIsAnsweredAtOnce) {
  Txn t;
  t.mti = 800;
  t.pan.clear();
  t.de3.clear();
  t.amount.clear();
  t.expiry.clear();
  t.mcc.clear();
  t.currency.clear();
  t.de70 = "001";
  EXPECT_EQ(processor_->handle(7, encode(t), Clock::now(), kNow), HandleStatus::kAccepted);
  ASSERT_NE(sink_.find(7), nullptr);  // synchronously, no Redis
  Response r = decode_response(*sink_.find(7));
  EXPECT_EQ(r.mti, 810);
  EXPECT_EQ(r.de39, "00");
  EXPECT_EQ(r.de70, "001");
  EXPECT_TRUE(processor_->signed_on());
  t.de70 = "301";
  EXPECT_EQ(processor_->handle(8, encode(t), Clock::now(), kNow), HandleStatus::kAccepted);
  ASSERT_NE(sink_.find(8), nullptr);
  EXPECT_EQ(decode_response(*sink_.find(8)).de70, "301");
  t.de70 = "002";
  EXPECT_EQ(processor_->handle(9, encode(t), Clock::now(), kNow), HandleStatus::kAccepted);
  EXPECT_FALSE(processor_->signed_on());
  EXPECT_EQ(processor_->in_flight(), 0U);
}

// Sign-on state belongs to the connection (ConnectionState), not to the processor: one
// connection's sign-on does not open another, and before it (or after a sign-off) financial
// requests, advices and reversals are answered 91 without Redis.
TEST_F(ProcessorTest, SignOnIsPerConnection) {
  ConnectionState a;
  a.sign_on_required = true;
  ConnectionState b = a;
  Txn t;
  t.stan = "000601";
  const auto answer = [&](std::uint64_t id, const Txn& m, ConnectionState& c) {
    EXPECT_EQ(processor_->handle(id, encode(m), Clock::now(), kNow, &c), HandleStatus::kAccepted);
    pipeline_->flush();
    EXPECT_TRUE(run_until([&] { return sink_.find(id) != nullptr; }));
    const auto* bytes = sink_.find(id);
    return bytes == nullptr ? Response{} : decode_response(*bytes);
  };
  EXPECT_EQ(answer(1, t, a).de39, "91");  // synchronously: no Redis
  Txn reversal = t;
  reversal.mti = 420;
  reversal.stan = "000602";
  reversal.de90 = t.original_data();
  EXPECT_EQ(answer(2, reversal, a).de39, "91");
  Txn sign_on;
  sign_on.mti = 800;
  sign_on.pan.clear();
  sign_on.de3.clear();
  sign_on.amount.clear();
  sign_on.expiry.clear();
  sign_on.mcc.clear();
  sign_on.currency.clear();
  sign_on.de70 = "001";
  sign_on.stan = "000603";
  EXPECT_EQ(answer(3, sign_on, a).de39, "00");
  EXPECT_TRUE(a.signed_on);
  EXPECT_FALSE(b.signed_on);
  t.stan = "000604";
  EXPECT_EQ(answer(4, t, a).de39, "00");
  t.stan = "000605";
  EXPECT_EQ(answer(5, t, b).de39, "91");
  EXPECT_EQ(a.refused_not_signed_on, 2U);
  EXPECT_EQ(b.refused_not_signed_on, 1U);
  EXPECT_EQ(processor_->stats().not_signed_on, 3U);
  EXPECT_FALSE(processor_->signed_on());  // the processor's own state is untouched
  EXPECT_EQ(held("R"), 12'500);           // only the request after sign-on reached Redis
  settle();
}

// The switch's own 0800 (sign-on, echo), and the 0810 that answers it, described in the
// connection state for the network layer to match by DE 11.
TEST_F(ProcessorTest, NetworkRequestsAndTheirResponses) {
  std::array<std::byte, 512> out{};
  const std::size_t n = processor_->encode_network_request("301", 1'000'042, kNow, out);
  ASSERT_GT(n, 0U);
  const Response echo =
      decode_response({out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n)});
  EXPECT_EQ(echo.mti, 800);
  EXPECT_EQ(echo.de11, "000042");  // DE 11 is n6
  EXPECT_EQ(echo.de70, "301");
  // The peer's 0810 is not a request: nothing is sent, the connection state describes it.
  iso8583::MessageBuilder b(iso8583::builtin_dialect("iso87-ascii"));
  b.reset(810);
  b.set_text(7, "1124153000");
  b.set_text(11, "000042");
  b.set_text(39, "00");
  b.set_text(70, "301");
  std::array<std::byte, 512> reply{};
  const auto len = b.encode(reply);
  ASSERT_TRUE(len.has_value());
  ConnectionState c;
  EXPECT_EQ(processor_->handle(9, {reply.data(), *len}, Clock::now(), kNow, &c),
            HandleStatus::kNotARequest);
  EXPECT_EQ(c.response_mti, 810);
  EXPECT_EQ(c.response_stan, 42U);
  EXPECT_TRUE(c.response_approved);
  EXPECT_EQ(sink_.find(9), nullptr);
  EXPECT_EQ(processor_->in_flight(), 0U);
}

TEST_F(ProcessorTest, UnsupportedMessagesAndTransactionTypesGet12) {
  Txn t;
  t.mti = 300;
  EXPECT_EQ(processor_->handle(1, encode(t), Clock::now(), kNow), HandleStatus::kAccepted);
  ASSERT_NE(sink_.find(1), nullptr);
  EXPECT_EQ(decode_response(*sink_.find(1)).de39, "12");
  Txn odd;
  odd.de3 = "400000";  // transfer: not supported here
  EXPECT_EQ(exchange(odd).de39, "12");
  // A response sent to us is not a request.
  Txn response = t;
  response.mti = 110;
  EXPECT_EQ(processor_->handle(3, encode(response), Clock::now(), kNow),
            HandleStatus::kNotARequest);
  EXPECT_EQ(processor_->in_flight(), 0U);
}

TEST_F(ProcessorTest, GarbageIsUnreadableAndABrokenFieldIsAFormatError) {
  const std::string junk = "hello, this is not ISO 8583";
  const auto junk_bytes = std::as_bytes(std::span(junk));
  EXPECT_EQ(processor_->handle(1, junk_bytes, Clock::now(), kNow), HandleStatus::kUnreadable);
  std::vector<std::byte> whole = encode(Txn{});
  // Cut inside the bitmap: the keys cannot be read.
  EXPECT_EQ(processor_->handle(2, std::span(whole).first(10), Clock::now(), kNow),
            HandleStatus::kUnreadable);
  // Cut inside DE 43, after the keys: answered 30 at once, keys echoed.
  EXPECT_EQ(processor_->handle(3, std::span(whole).first(whole.size() - 10), Clock::now(), kNow),
            HandleStatus::kAccepted);
  ASSERT_NE(sink_.find(3), nullptr);
  Response r = decode_response(*sink_.find(3));
  EXPECT_EQ(r.mti, 110);
  EXPECT_EQ(r.de39, "30");
  EXPECT_EQ(r.de11, "000001");
  EXPECT_TRUE(r.de2.empty());  // no card data in a format error
  // Trailing bytes after a complete message: 30 too.
  std::vector<std::byte> longer = whole;
  longer.push_back(std::byte{'X'});
  EXPECT_EQ(processor_->handle(4, longer, Clock::now(), kNow), HandleStatus::kAccepted);
  ASSERT_NE(sink_.find(4), nullptr);
  EXPECT_EQ(decode_response(*sink_.find(4)).de39, "30");
  // Decodable but without an amount: 30.
  Txn no_amount;
  no_amount.amount.clear();
  EXPECT_EQ(processor_->handle(5, encode(no_amount), Clock::now(), kNow), HandleStatus::kAccepted);
  ASSERT_NE(sink_.find(5), nullptr);
  EXPECT_EQ(decode_response(*sink_.find(5)).de39, "30");
  // Larger than max_message_bytes: unreadable.
  const std::vector<std::byte> huge(2048, std::byte{'0'});
  EXPECT_EQ(processor_->handle(6, huge, Clock::now(), kNow), HandleStatus::kUnreadable);
  EXPECT_EQ(processor_->stats().format_errors, 3U);
  EXPECT_EQ(processor_->stats().unreadable, 3U);
  EXPECT_EQ(processor_->in_flight(), 0U);
}

TEST_F(ProcessorTest, FullPoolIsBusy) {
  Processor::Options o = options();
  o.in_flight_max = 2;
  start(o);
  Txn t;
  EXPECT_EQ(submit(1, encode(t)), HandleStatus::kAccepted);
  t.stan = "000002";
  EXPECT_EQ(submit(2, encode(t)), HandleStatus::kAccepted);
  t.stan = "000003";
  EXPECT_EQ(submit(3, encode(t)), HandleStatus::kBusy);
  settle();
  EXPECT_EQ(sink_.count, 2U);
  EXPECT_EQ(submit(3, encode(t)), HandleStatus::kAccepted);
  settle();
  EXPECT_EQ(held("R"), 3 * 12'500);
}

// Redis paused past the budget: the request is answered 91 once, at its deadline; the
// authorization Redis runs late is voided by the compensating reversal queued behind it.
TEST_F(ProcessorTest, DeadlineAnswersByStandInAndVoidsTheLateHold) {
  Processor::Options o = options();
  o.budget = 100ms;
  start(o);
  Txn warm;
  warm.de3 = "300000";  // balance inquiry: caches the card
  ASSERT_EQ(exchange(warm).de39, "00");
  settle();
  {
    auto ctx = server().connect();
    (void)support::redis_command(*ctx, {"CLIENT", "PAUSE", "600"});
  }
  Txn t;
  t.stan = "000009";
  const auto sent = Clock::now();
  ASSERT_EQ(submit(100, encode(t)), HandleStatus::kAccepted);
  ASSERT_TRUE(run_until([&] { return sink_.find(100) != nullptr; }));
  const auto waited = Clock::now() - sent;
  EXPECT_GE(waited, 100ms);
  EXPECT_LT(waited, 400ms);
  EXPECT_EQ(decode_response(*sink_.find(100)).de39, "91");
  settle();  // the pause ends; the late auth and its reversal run
  EXPECT_EQ(sink_.count_for(100), 1U);
  EXPECT_EQ(held("R"), 0);
  EXPECT_EQ(hold("R", t.key()).substr(0, 2), "V|");
  EXPECT_EQ(processor_->stats().stand_in_declines, 1U);
  EXPECT_EQ(processor_->stats().compensations, 1U);
  EXPECT_EQ(processor_->stats().compensation_failures, 0U);
}

// The card is not cached and Redis is paused: the directory's load is still waiting at the
// deadline. Answered 91 once; nothing was sent to the script, so nothing is compensated.
TEST_F(ProcessorTest, DeadlineWhileLoadingTheCard) {
  Processor::Options o = options();
  o.budget = 100ms;
  start(o);
  {
    auto ctx = server().connect();
    (void)support::redis_command(*ctx, {"CLIENT", "PAUSE", "400"});
  }
  Txn t;
  ASSERT_EQ(submit(100, encode(t)), HandleStatus::kAccepted);
  ASSERT_TRUE(run_until([&] { return sink_.find(100) != nullptr; }));
  EXPECT_EQ(decode_response(*sink_.find(100)).de39, "91");
  settle();
  EXPECT_EQ(sink_.count_for(100), 1U);
  EXPECT_EQ(processor_->stats().compensations, 0U);
  EXPECT_EQ(held("R"), 0);
}

// FUNCTION FLUSH under a running switch (as after a failover to a server without the library):
// the call fails with "ERR Function not found", the pipeline loads the library again, and the
// processor retries once.
TEST_F(ProcessorTest, AnUnknownFunctionIsRetriedOnce) {
  (void)support::redis_command(redis(), {"FUNCTION", "FLUSH"});
  const Txn t;
  EXPECT_EQ(exchange(t).de39, "00");
  settle();
  EXPECT_EQ(held("R"), 12'500);
  EXPECT_EQ(processor_->stats().redis_errors, 1U);
}

TEST_F(ProcessorTest, StandInApprovalUpToTheLimitKeepsTheHold) {
  Processor::Options o = options();
  o.budget = 100ms;
  o.stand_in.kind = StandInPolicy::Kind::kApproveUpTo;
  o.stand_in.approve_up_to_minor = 20'000;
  start(o);
  Txn warm;
  warm.de3 = "300000";
  ASSERT_EQ(exchange(warm).de39, "00");
  settle();
  {
    auto ctx = server().connect();
    (void)support::redis_command(*ctx, {"CLIENT", "PAUSE", "400"});
  }
  Txn t;
  t.stan = "000010";
  ASSERT_EQ(submit(100, encode(t)), HandleStatus::kAccepted);
  ASSERT_TRUE(run_until([&] { return sink_.find(100) != nullptr; }));
  const Response r = decode_response(*sink_.find(100));
  EXPECT_EQ(r.de39, "00");
  EXPECT_TRUE(r.has38);
  EXPECT_EQ(sink_.count_for(100), 1U);
  settle();
  EXPECT_EQ(held("R"), 12'500);
  EXPECT_EQ(processor_->stats().stand_in_approvals, 1U);
  EXPECT_EQ(processor_->stats().compensations, 0U);
}

// A full Redis queue (here its ring of 8 calls in flight, behind a paused Redis) holds the
// requests back until there is room: every one is decided by Redis, none by stand-in.
TEST_F(ProcessorTest, AFullRedisQueueHoldsRequestsBackInsteadOfStandingIn) {
  start(options(), 8);
  Txn warm;
  warm.de3 = "300000";
  ASSERT_EQ(exchange(warm).de39, "00");  // the card is cached: each request is one call
  settle();
  {
    auto ctx = server().connect();
    (void)support::redis_command(*ctx, {"CLIENT", "PAUSE", "200"});
  }
  constexpr int kRequests = 20;
  for (int i = 0; i < kRequests; ++i) {
    Txn t;
    t.stan = std::to_string(700'000 + i);
    t.amount = "000000000100";
    ASSERT_EQ(submit(200 + static_cast<std::uint64_t>(i), encode(t)), HandleStatus::kAccepted);
  }
  ASSERT_TRUE(run_until([&] {
    for (int i = 0; i < kRequests; ++i) {
      if (sink_.find(200 + static_cast<std::uint64_t>(i)) == nullptr) {
        return false;
      }
    }
    return true;
  }));
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_EQ(decode_response(*sink_.find(200 + static_cast<std::uint64_t>(i))).de39, "00") << i;
  }
  settle();
  EXPECT_GE(processor_->stats().queue_waits, static_cast<std::uint64_t>(kRequests - 8));
  EXPECT_EQ(processor_->stats().stand_in_declines, 0U);
  EXPECT_EQ(processor_->stats().redis_errors, 0U);
  EXPECT_EQ(held("R"), 100 * kRequests);
  EXPECT_EQ(processor_->in_flight(), 0U);
}

// Redis unreachable: nothing can be asked, so the stand-in answer comes from handle() itself.
TEST_F(ProcessorTest, RedisDownIsAnsweredByStandInAtOnce) {
  processor_.reset();
  directory_.reset();
  pipeline_.reset();
  limits::RedisPipeline::Options po;
  po.host = support::RedisServer::kHost;
  po.port = 1;  // nothing listens there
  pipeline_ = std::make_unique<limits::RedisPipeline>(po);
  directory_ =
      std::make_unique<limits::CardDirectory>(*pipeline_, limits::CardDirectory::Options{});
  processor_ = std::make_unique<Processor>(iso8583::builtin_dialect("iso87-ascii"), *pipeline_,
                                           *directory_, reader_, crypto_, options(), sink_);
  EXPECT_EQ(processor_->handle(1, encode(Txn{}), Clock::now(), kNow), HandleStatus::kAccepted);
  ASSERT_NE(sink_.find(1), nullptr);
  EXPECT_EQ(decode_response(*sink_.find(1)).de39, "91");
  Txn rev;
  rev.mti = 420;
  EXPECT_EQ(processor_->handle(2, encode(rev), Clock::now(), kNow), HandleStatus::kAccepted);
  ASSERT_NE(sink_.find(2), nullptr);
  EXPECT_EQ(decode_response(*sink_.find(2)).de39, "00");  // acknowledged, to reconcile
  EXPECT_EQ(processor_->stats().advices_unconfirmed, 1U);
  EXPECT_EQ(processor_->in_flight(), 0U);
}

TEST_F(ProcessorTest, NoAllocationPerMessageOnceWarm) {
  constexpr int kMessages = 200;
  const std::vector<std::vector<std::byte>> requests = encoded_purchases(2 * kMessages);
  std::size_t next = 0;
  const auto run = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const std::uint64_t id = 1000 + next;
      ASSERT_EQ(processor_->handle(id, requests[next++], Clock::now(), kNow),
                HandleStatus::kAccepted);
      pipeline_->flush();
      ASSERT_TRUE(run_until([&] { return sink_.last_id == id; }));
    }
    ASSERT_TRUE(run_until([&] { return processor_->in_flight() == 0; }));
  };
  sink_.record = false;
  run(kMessages);  // warm: card cached, buffers touched
  const support::AllocSnapshot before = support::alloc_snapshot();
  run(kMessages);
  const support::AllocSnapshot after = support::alloc_snapshot();
  EXPECT_EQ(after.allocations - before.allocations, 0U);
  EXPECT_EQ(sink_.count, 2U * kMessages);
  EXPECT_EQ(held("R"), 2 * kMessages * 10);
}

}  // namespace
}  // namespace authswitch::switching
