// The load engine without a network (simulators/netsim/load.h): a stub request source, a fake
// transport and an injected clock. The open-loop schedule (request i intended at
// start + i/rate), latency counted from the intended time when sending is held back, the
// closed loop's concurrency, and the checks (mismatches with masked PANs, timeouts, late
// answers) that make a run unclean.
#include "simulators/netsim/load.h"

#include <chrono>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include "iso8583/dialect_loader.h"
#include "tests/support/alloc_counter.h"

namespace authswitch::netsim {
namespace {

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::int64_t kWallMs = 1'764'000'000'000;

const iso8583::Dialect& dialect() { return iso8583::builtin_dialect("iso87-ascii"); }

// Purchases of 10.00 with STANs 1, 2, 3 ... expecting 00.
class StubSource final : public RequestSource {
 public:
  bool next(std::int64_t, Request& out) override {
    if (dry) {
      return false;
    }
    ++made;
    out.kind = Kind::kPurchase;
    out.mti = 100;
    out.present.reset();
    const auto set = [&](int de, std::string v) {
      out.present.set(static_cast<std::size_t>(de));
      out.text[static_cast<std::size_t>(de)] = std::move(v);
    };
    std::string stan = std::to_string(made);
    stan.insert(0, 6 - stan.size(), '0');
    set(2, "4999001040795570");
    set(3, "000000");
    set(4, "000000001000");
    set(7, "1203120000");
    set(11, stan);
    set(32, "12345678");
    set(37, "000000" + stan);
    set(41, "TERM0001");
    set(49, "840");
    out.expected = {};
    out.expected.set("00");
    out.sequence = made;
    return true;
  }
  void on_response(const Request&, std::string_view code, std::int64_t) override {
    codes.emplace_back(code);
  }
  void on_lost(const Request&) override { ++lost; }

  bool dry = false;
  std::uint64_t made = 0;
  std::uint64_t lost = 0;
  std::vector<std::string> codes;
};

class FakeTransport final : public Transport {
 public:
  explicit FakeTransport(std::size_t n) : n_(n) {}
  [[nodiscard]] std::size_t connections() const noexcept override { return n_; }
  [[nodiscard]] bool usable(std::size_t) const noexcept override { return up; }
  [[nodiscard]] bool send(std::size_t conn, std::span<const std::byte> m) noexcept override {
    sent.push_back({conn, std::vector<std::byte>(m.begin(), m.end())});
    return true;
  }
  bool up = true;
  struct Sent {
    std::size_t conn;
    std::vector<std::byte> bytes;
  };
  std::deque<Sent> sent;

 private:
  std::size_t n_;
};

// Answers the oldest sent request with `code` at `now`.
void answer(LoadDriver& d, FakeTransport& t, std::string_view code, std::uint64_t now) {
  ASSERT_FALSE(t.sent.empty());
  const FakeTransport::Sent s = t.sent.front();
  t.sent.pop_front();
  iso8583::MessageView req;
  ASSERT_TRUE(iso8583::decode(dialect(), s.bytes, req));
  iso8583::MessageBuilder b(dialect());
  ASSERT_TRUE(iso8583::build_response(req, code, "", b));
  std::vector<std::byte> out(4096);
  const auto n = b.encode(out);
  ASSERT_TRUE(n);
  iso8583::MessageView resp;
  ASSERT_TRUE(iso8583::decode(dialect(), {out.data(), *n}, resp));
  d.on_message(s.conn, resp, now);
}

LoadOptions open_loop(double rate, double duration_s) {
  LoadOptions o;
  o.rate_per_s = rate;
  o.duration_s = duration_s;
  o.max_in_flight = 64;
  o.timeout_ns = 100 * kMs;
  return o;
}

TEST(OpenLoop, IntendedSendTimesFollowTheRate) {
  StubSource src;
  FakeTransport t(2);
  LoadDriver d(open_loop(1000, 1), dialect(), src, t);
  const std::uint64_t start = 5'000 * kMs;
  d.begin(start);
  EXPECT_EQ(d.intended_ns(0), start);
  EXPECT_EQ(d.intended_ns(1), start + kMs);
  EXPECT_EQ(d.intended_ns(999), start + 999 * kMs);
  // At the start only request 0 is due; the driver wants to run again at request 1's time.
  EXPECT_EQ(d.pump(start, kWallMs), start + kMs);
  EXPECT_EQ(d.sent(), 1U);
  EXPECT_EQ(d.pump(start + 5 * kMs, kWallMs), start + 6 * kMs);
  EXPECT_EQ(d.sent(), 6U);
  // Spread over the connections.
  std::size_t on0 = 0;
  for (const auto& s : t.sent) {
    on0 += s.conn == 0 ? 1 : 0;
  }
  EXPECT_EQ(on0, 3U);
}

TEST(OpenLoop, TheScheduleEndsAtTheDurationOrTheCount) {
  StubSource src;
  FakeTransport t(1);
  LoadDriver d(open_loop(100, 0.1), dialect(), src, t);  // 10 requests
  d.begin(0);
  EXPECT_EQ(d.pump(1'000 * kMs, kWallMs), UINT64_MAX);
  EXPECT_EQ(d.sent(), 10U);
  EXPECT_TRUE(d.sending_done(1'000 * kMs));
  EXPECT_FALSE(d.finished(1'000 * kMs));
  for (int i = 0; i < 10; ++i) {
    answer(d, t, "00", 1'001 * kMs);
  }
  EXPECT_TRUE(d.finished(1'001 * kMs));

  LoadOptions o = open_loop(1000, 10);
  o.count_max = 3;
  StubSource src2;
  FakeTransport t2(1);
  LoadDriver d2(o, dialect(), src2, t2);
  d2.begin(0);
  (void)d2.pump(100 * kMs, kWallMs);
  EXPECT_EQ(d2.sent(), 3U);
}

// Coordinated omission: the transport refuses everything for the first 50 ms (a stalled
// switch or full buffers). The requests still go as soon as possible, and each one's latency
// counts from its intended time.
TEST(OpenLoop, LatencyCountsFromTheIntendedTimeWhenSendingIsHeldBack) {
  StubSource src;
  FakeTransport t(1);
  LoadDriver d(open_loop(1000, 1), dialect(), src, t);
  d.begin(0);
  t.up = false;
  for (std::uint64_t now = 0; now < 50 * kMs; now += kMs) {
    EXPECT_EQ(d.pump(now, kWallMs), now + kMs);  // retries in 1 ms
  }
  EXPECT_EQ(d.sent(), 0U);
  t.up = true;
  (void)d.pump(50 * kMs, kWallMs);
  EXPECT_EQ(d.sent(), 51U);  // requests 0..50, all due by now
  // Request 0, intended at 0, sent at 50 ms, answered at 60 ms: 60 ms, not 10.
  answer(d, t, "00", 60 * kMs);
  EXPECT_EQ(d.latency().count(), 1U);
  EXPECT_NEAR(static_cast<double>(d.latency().max()), 60e6, 60e6 * 0.01);
  // Request 50 was sent on time: 10 ms.
  while (t.sent.size() > 1) {
    answer(d, t, "00", 60 * kMs);
  }
  answer(d, t, "00", 60 * kMs);
  EXPECT_NEAR(static_cast<double>(d.latency().min()), 10e6, 10e6 * 0.01);
  EXPECT_EQ(d.counts().matched, 51U);
}

// The same holds when the source has nothing ready or the in-flight cap is reached.
TEST(OpenLoop, InFlightCapAndADrySourceHoldRequestsBackWithoutLosingThem) {
  LoadOptions o = open_loop(1000, 1);
  o.max_in_flight = 2;
  StubSource src;
  FakeTransport t(1);
  LoadDriver d(o, dialect(), src, t);
  d.begin(0);
  (void)d.pump(10 * kMs, kWallMs);
  EXPECT_EQ(d.sent(), 2U);  // capped
  answer(d, t, "00", 10 * kMs);
  src.dry = true;
  EXPECT_EQ(d.pump(10 * kMs, kWallMs), 11 * kMs);
  EXPECT_EQ(d.sent(), 2U);
  src.dry = false;
  (void)d.pump(20 * kMs, kWallMs);
  EXPECT_EQ(d.sent(), 3U);  // request 2, intended at 2 ms
  answer(d, t, "00", 20 * kMs);
  answer(d, t, "00", 30 * kMs);
  EXPECT_NEAR(static_cast<double>(d.latency().max()), 28e6, 28e6 * 0.01);
}

TEST(ClosedLoop, KeepsTheConcurrencyInFlight) {
  LoadOptions o;
  o.closed_loop = true;
  o.concurrency = 4;
  o.duration_s = 1;
  o.max_in_flight = 64;
  StubSource src;
  FakeTransport t(2);
  LoadDriver d(o, dialect(), src, t);
  d.begin(0);
  (void)d.pump(0, kWallMs);
  EXPECT_EQ(d.sent(), 4U);
  EXPECT_EQ(d.in_flight(), 4U);
  answer(d, t, "00", 2 * kMs);
  (void)d.pump(2 * kMs, kWallMs);
  EXPECT_EQ(d.sent(), 5U);
  // Latency counts from the actual send in a closed loop.
  answer(d, t, "00", 3 * kMs);
  EXPECT_NEAR(static_cast<double>(d.latency().max()), 3e6, 3e6 * 0.01);
  (void)d.pump(2'000 * kMs, kWallMs);
  EXPECT_TRUE(d.sending_done(2'000 * kMs));
}

TEST(Checks, MismatchesTimeoutsAndLateAnswersMakeTheRunUnclean) {
  StubSource src;
  FakeTransport t(1);
  LoadDriver d(open_loop(1000, 0.003), dialect(), src, t);  // 3 requests
  d.begin(0);
  (void)d.pump(3 * kMs, kWallMs);
  ASSERT_EQ(d.sent(), 3U);
  answer(d, t, "51", 4 * kMs);  // expected 00
  EXPECT_EQ(d.mismatches(), 1U);
  d.tick(500 * kMs);  // requests 1 and 2 time out (100 ms)
  EXPECT_EQ(d.counts().timeouts, 2U);
  EXPECT_EQ(src.lost, 2U);
  EXPECT_EQ(d.in_flight(), 0U);
  answer(d, t, "00", 501 * kMs);  // request 1, after its timeout
  EXPECT_EQ(d.counts().late, 1U);
  EXPECT_TRUE(d.finished(501 * kMs));

  RunReport r;
  d.fill_report(600 * kMs, r);
  EXPECT_FALSE(r.clean());
  EXPECT_EQ(r.sent, 3U);
  EXPECT_EQ(r.matched, 1U);
  EXPECT_EQ(r.mismatches, 1U);
  EXPECT_EQ(r.timeouts, 2U);
  EXPECT_EQ(r.late, 1U);
  EXPECT_EQ(r.by_code.at("51"), 1U);
  EXPECT_EQ(r.by_kind.at("purchase"), 3U);
  ASSERT_EQ(r.mismatch_samples.size(), 1U);
  const std::string& sample = r.mismatch_samples[0];
  EXPECT_NE(sample.find("499900******5570"), std::string::npos) << sample;
  EXPECT_EQ(sample.find("4999001040795570"), std::string::npos) << "a full PAN in the report";
  EXPECT_NE(sample.find("expected 00"), std::string::npos) << sample;
  EXPECT_NE(sample.find("got 51"), std::string::npos) << sample;
}

// Regression: run_load segfaulted now and then at the end of a run. When the loop's timer
// fired in the same turn of the io_context as the last answer, run() returned on the answer
// and the timer's completed wait stayed queued with success; run_load's final poll() then ran
// it on the destroyed loop. Here the answer is a second timer that expires just before the
// loop's (both are collected in one turn, in expiry order), then the loop is destroyed and
// the io_context polled: the queued wait must do nothing (ASan reported a stack
// use-after-scope before the fix).
TEST(Loop, ATimerWaitCompletedWhenTheRunEndsIsHarmlessAfterTheLoopIsGone) {
  LoadRun run;
  run.load.closed_loop = true;
  run.load.concurrency = 1;
  run.load.count_max = 1;
  run.load.duration_s = 10;
  run.load.timeout_ns = 5'000 * kMs;
  StubSource src;
  boost::asio::io_context io(1);
  LoadEvents events;
  boost::asio::steady_timer answer_timer(io);
  class AnsweringTransport final : public Transport {
   public:
    [[nodiscard]] std::size_t connections() const noexcept override { return 1; }
    [[nodiscard]] bool usable(std::size_t) const noexcept override { return true; }
    [[nodiscard]] bool send(std::size_t, std::span<const std::byte> m) noexcept override {
      on_send(m);
      return true;
    }
    std::function<void(std::span<const std::byte>)> on_send;
  } t;
  LoadDriver d(run.load, dialect(), src, t);
  t.on_send = [&](std::span<const std::byte> m) {
    FakeTransport::Sent s{0, std::vector<std::byte>(m.begin(), m.end())};
    // The loop arms its timer for 50 ms after this send; the answer comes at 10 ms, but the
    // thread is busy (a blocking handler) until both are due.
    answer_timer.expires_after(std::chrono::milliseconds(10));
    answer_timer.async_wait([&, s](const boost::system::error_code& ec) {
      ASSERT_FALSE(ec);
      FakeTransport one(1);
      one.sent.push_back(s);
      answer(d, one, "00", 0);
      events.dirty = true;
    });
    boost::asio::post(io, [] { std::this_thread::sleep_for(std::chrono::milliseconds(150)); });
  };
  {
    LoadLoop loop(io, run, d, events, 1);
    loop.run();
    EXPECT_TRUE(d.finished(UINT64_MAX));
  }
  io.restart();
  EXPECT_GE(io.poll(), 1U);  // the loop's completed wait ran, and did nothing
  EXPECT_EQ(d.counts().matched, 1U);
  EXPECT_EQ(d.sent(), 1U);
}

TEST(Checks, MaskPanKeepsFirstSixAndLastFour) {
  EXPECT_EQ(mask_pan("4999001040795570"), "499900******5570");
  EXPECT_EQ(mask_pan("4999001040795570123"), "499900*********0123");
  EXPECT_EQ(mask_pan("12345"), "*****");
}

// A source and a transport that allocate nothing once warm: values are assigned into the
// request's strings (their capacity is reused) and frames go into a fixed ring.
class QuietSource final : public RequestSource {
 public:
  bool next(std::int64_t, Request& out) override {
    ++made;
    out.kind = Kind::kPurchase;
    out.mti = 100;
    out.present.reset();
    std::array<char, 6> stan{};
    for (std::size_t i = 6, v = made % 1'000'000; i > 0; --i, v /= 10) {
      stan[i - 1] = static_cast<char>('0' + v % 10);
    }
    const auto set = [&](int de, std::string_view v) {
      out.present.set(static_cast<std::size_t>(de));
      out.text[static_cast<std::size_t>(de)].assign(v);
    };
    set(2, "4999001040795570");
    set(3, "000000");
    set(4, "000000001000");
    set(7, "1203120000");
    set(11, {stan.data(), stan.size()});
    set(32, "12345678");
    set(37, "RRN000000000");
    out.text[37].replace(6, 6, stan.data(), stan.size());
    set(41, "TERM0001");
    set(49, "840");
    out.expected = {};
    out.expected.set("00");
    return true;
  }
  void on_response(const Request&, std::string_view, std::int64_t) override { ++answered; }
  void on_lost(const Request&) override { ++lost; }
  std::uint64_t made = 0, answered = 0, lost = 0;
};

class RingTransport final : public Transport {
 public:
  RingTransport() {
    for (auto& b : frames_) {
      b.resize(2048);
    }
  }
  [[nodiscard]] std::size_t connections() const noexcept override { return 2; }
  [[nodiscard]] bool usable(std::size_t) const noexcept override { return true; }
  [[nodiscard]] bool send(std::size_t, std::span<const std::byte> m) noexcept override {
    if (tail_ - head_ == frames_.size() || m.size() > 2048) {
      return false;
    }
    const std::size_t at = tail_++ % frames_.size();
    std::copy(m.begin(), m.end(), frames_[at].begin());
    sizes_[at] = m.size();
    return true;
  }
  // Answers the oldest frame with 00.
  void answer(LoadDriver& d, std::uint64_t now) {
    ASSERT_LT(head_, tail_);
    const std::size_t at = head_++ % frames_.size();
    ASSERT_TRUE(iso8583::decode(dialect(), {frames_[at].data(), sizes_[at]}, req_));
    ASSERT_TRUE(iso8583::build_response(req_, "00", "", builder_));
    const auto n = builder_.encode(out_);
    ASSERT_TRUE(n);
    ASSERT_TRUE(iso8583::decode(dialect(), {out_.data(), *n}, resp_));
    d.on_message(0, resp_, now);
  }

 private:
  std::array<std::vector<std::byte>, 64> frames_;
  std::array<std::size_t, 64> sizes_{};
  std::size_t head_ = 0, tail_ = 0;
  iso8583::MessageView req_, resp_;
  iso8583::MessageBuilder builder_{dialect()};
  std::array<std::byte, 4096> out_{};
};

// STYLE.md, Memory: the engine sends, matches, checks and records without allocating.
TEST(Memory, NoAllocationPerRequestOnceWarm) {
  LoadOptions o;
  o.closed_loop = true;
  o.concurrency = 8;
  o.duration_s = 1'000;
  o.max_in_flight = 16;
  QuietSource src;
  RingTransport t;
  LoadDriver d(o, dialect(), src, t);
  d.begin(0);
  std::uint64_t now = 0;
  const auto cycle = [&](int n) {
    for (int i = 0; i < n; ++i) {
      now += 100'000;
      (void)d.pump(now, kWallMs);
      t.answer(d, now + 50'000);
      d.tick(now);
    }
  };
  cycle(3'000);  // warm: strings reach their capacity, the pool and the ring fill
  const support::AllocSnapshot before = support::alloc_snapshot();
  cycle(2'000);
  const support::AllocSnapshot after = support::alloc_snapshot();
  EXPECT_EQ(after.allocations - before.allocations, 0U);
  if (support::jemalloc_counter_available()) {
    EXPECT_EQ(after.jemalloc_bytes - before.jemalloc_bytes, 0U);
  }
  EXPECT_EQ(d.mismatches(), 0U);
  EXPECT_EQ(d.counts().matched, 5'000U);
  EXPECT_EQ(src.lost, 0U);
}

}  // namespace
}  // namespace authswitch::netsim
