// The matcher (simulators/netsim/matcher.h): matched, late, duplicate, unmatched and timed-out
// answers, keys in use, a full ring, re-armed keys, and the index against a brute-force model.
#include "simulators/netsim/matcher.h"

#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace authswitch::netsim {
namespace {

constexpr std::uint64_t kMs = 1'000'000;

MatchKey key(int stan, std::uint16_t cls = 100) {
  std::string s = std::to_string(stan);
  s.insert(0, 6 - s.size(), '0');
  return make_key(cls, s, "TERM0001", "RRN" + s);
}

Matcher make(std::uint32_t capacity = 64, std::uint64_t timeout_ms = 100) {
  return Matcher(Matcher::Options{capacity, timeout_ms * kMs});
}

TEST(MatcherClasses, RequestAndResponseMtis) {
  EXPECT_EQ(request_class(100), 100);
  EXPECT_EQ(request_class(101), 100);
  EXPECT_EQ(request_class(421), 420);
  EXPECT_EQ(request_class(1100), 1100);
  EXPECT_EQ(response_class(110), 100);
  EXPECT_EQ(response_class(130), 120);
  EXPECT_EQ(response_class(230), 220);
  EXPECT_EQ(response_class(410), 400);
  EXPECT_EQ(response_class(430), 420);
  EXPECT_EQ(response_class(810), 800);
  EXPECT_EQ(response_class(1110), 1100);
  EXPECT_EQ(response_class(100), 0);  // a request is not a response
  EXPECT_EQ(response_class(120), 0);
}

TEST(Matcher, MatchesByKeyAndReportsWhereLatencyStarts) {
  Matcher m = make();
  ASSERT_EQ(m.add(key(1), 10 * kMs, 12 * kMs, 7), Matcher::AddStatus::kAdded);
  ASSERT_EQ(m.add(key(2), 11 * kMs, 12 * kMs, 8), Matcher::AddStatus::kAdded);
  EXPECT_EQ(m.pending(), 2U);
  const Matcher::Match a = m.on_response(key(2));
  EXPECT_EQ(a.outcome, Matcher::Outcome::kMatched);
  EXPECT_EQ(a.tag, 8U);
  EXPECT_EQ(a.start_ns, 11 * kMs);
  EXPECT_EQ(a.sent_ns, 12 * kMs);
  EXPECT_EQ(m.on_response(key(1)).tag, 7U);
  EXPECT_EQ(m.pending(), 0U);
  EXPECT_EQ(m.counts().matched, 2U);
}

TEST(Matcher, KeysDifferInEveryPart) {
  Matcher m = make();
  ASSERT_EQ(m.add(make_key(100, "000001", "T1", "R1"), 0, 0, 1), Matcher::AddStatus::kAdded);
  EXPECT_EQ(m.on_response(make_key(400, "000001", "T1", "R1")).outcome,
            Matcher::Outcome::kUnmatched);
  EXPECT_EQ(m.on_response(make_key(100, "000002", "T1", "R1")).outcome,
            Matcher::Outcome::kUnmatched);
  EXPECT_EQ(m.on_response(make_key(100, "000001", "T2", "R1")).outcome,
            Matcher::Outcome::kUnmatched);
  EXPECT_EQ(m.on_response(make_key(100, "000001", "T1", "R2")).outcome,
            Matcher::Outcome::kUnmatched);
  EXPECT_EQ(m.on_response(make_key(100, "000001", "T1", "R1")).outcome, Matcher::Outcome::kMatched);
  EXPECT_EQ(m.counts().unmatched, 4U);
}

TEST(Matcher, SecondAnswerIsADuplicate) {
  Matcher m = make();
  ASSERT_EQ(m.add(key(1), 0, 0, 1), Matcher::AddStatus::kAdded);
  EXPECT_EQ(m.on_response(key(1)).outcome, Matcher::Outcome::kMatched);
  EXPECT_EQ(m.on_response(key(1)).outcome, Matcher::Outcome::kDuplicate);
  EXPECT_EQ(m.on_response(key(1)).outcome, Matcher::Outcome::kDuplicate);
  EXPECT_EQ(m.counts().duplicates, 2U);
  EXPECT_EQ(m.counts().matched, 1U);
}

TEST(Matcher, UnknownKeyIsUnmatched) {
  Matcher m = make();
  EXPECT_EQ(m.on_response(key(5)).outcome, Matcher::Outcome::kUnmatched);
  EXPECT_EQ(m.counts().unmatched, 1U);
}

TEST(Matcher, TimesOutInSendOrderAndAnAnswerAfterwardsIsLate) {
  Matcher m = make(64, 100);
  ASSERT_EQ(m.add(key(1), 0, 0, 1), Matcher::AddStatus::kAdded);
  ASSERT_EQ(m.add(key(2), 0, 50 * kMs, 2), Matcher::AddStatus::kAdded);
  EXPECT_EQ(m.next_deadline_ns(), 100 * kMs);
  std::vector<std::uint32_t> timed_out;
  const auto collect = [&](std::uint32_t tag, std::uint64_t) { timed_out.push_back(tag); };
  EXPECT_EQ(m.expire(99 * kMs, collect), 0U);
  EXPECT_EQ(m.expire(100 * kMs, collect), 1U);
  EXPECT_EQ(timed_out, std::vector<std::uint32_t>{1});
  EXPECT_EQ(m.next_deadline_ns(), 150 * kMs);
  EXPECT_EQ(m.on_response(key(1)).outcome, Matcher::Outcome::kLate);
  EXPECT_EQ(m.on_response(key(1)).outcome, Matcher::Outcome::kDuplicate);
  EXPECT_EQ(m.on_response(key(2)).outcome, Matcher::Outcome::kMatched);
  EXPECT_EQ(m.expire(1'000 * kMs, collect), 0U);  // answered: never times out
  EXPECT_EQ(m.counts().timeouts, 1U);
  EXPECT_EQ(m.counts().late, 1U);
  EXPECT_EQ(m.next_deadline_ns(), UINT64_MAX);
}

TEST(Matcher, AKeyStillWaitingCannotBeAddedTwice) {
  Matcher m = make();
  ASSERT_EQ(m.add(key(1), 0, 0, 1), Matcher::AddStatus::kAdded);
  EXPECT_EQ(m.add(key(1), 0, 0, 2), Matcher::AddStatus::kKeyInUse);
  EXPECT_EQ(m.pending(), 1U);
}

TEST(Matcher, ARetransmissionAfterTheAnswerReArmsTheKey) {
  Matcher m = make();
  ASSERT_EQ(m.add(key(1, 100), 0, 0, 1), Matcher::AddStatus::kAdded);
  ASSERT_EQ(m.on_response(key(1, 100)).outcome, Matcher::Outcome::kMatched);
  // 0101 repeats 0100: same class and keys; its answer is a match, not a duplicate.
  ASSERT_EQ(m.add(key(1, request_class(101)), 5, 5, 2), Matcher::AddStatus::kAdded);
  const Matcher::Match again = m.on_response(key(1, response_class(110)));
  EXPECT_EQ(again.outcome, Matcher::Outcome::kMatched);
  EXPECT_EQ(again.tag, 2U);
}

TEST(Matcher, FullWhenTheRingComesRoundToAWaitingRequest) {
  Matcher m = make(16, 100);
  ASSERT_EQ(m.capacity(), 16U);
  for (int i = 0; i < 16; ++i) {
    ASSERT_EQ(m.add(key(i), 0, 0, static_cast<std::uint32_t>(i)), Matcher::AddStatus::kAdded);
  }
  EXPECT_FALSE(m.has_room());
  EXPECT_EQ(m.add(key(99), 0, 0, 99), Matcher::AddStatus::kFull);
  ASSERT_EQ(m.on_response(key(0)).outcome, Matcher::Outcome::kMatched);
  EXPECT_TRUE(m.has_room());
  EXPECT_EQ(m.add(key(99), 0, 0, 99), Matcher::AddStatus::kAdded);
  // Key 0's tombstone was overwritten: its answer now is unknown.
  EXPECT_EQ(m.on_response(key(0)).outcome, Matcher::Outcome::kUnmatched);
}

// Many adds, answers and timeouts against a map of what each key should be.
TEST(Matcher, AgreesWithABruteForceModel) {
  Matcher m = make(256, 10);
  enum class St { kPending, kAnswered, kTimedOut };
  std::map<int, St> model;
  std::vector<int> order;  // keys in send order, for the ring's forgetting
  std::mt19937 rng(42);
  std::uint64_t now = 0;
  int next = 0;
  for (int step = 0; step < 20'000; ++step) {
    now += kMs / 4;
    const auto what = rng() % 3;
    if (what == 0 && m.has_room()) {
      const int k = next++;
      ASSERT_EQ(m.add(key(k % 1'000'000), now, now, static_cast<std::uint32_t>(k)),
                Matcher::AddStatus::kAdded);
      model[k] = St::kPending;
      order.push_back(k);
      if (order.size() > 256) {
        model.erase(order[order.size() - 257]);  // overwritten in the ring
      }
    } else if (what == 1 && next > 0) {
      const int k = std::max(0, next - 1 - static_cast<int>(rng() % 300));
      const auto it = model.find(k);
      const Matcher::Outcome got = m.on_response(key(k % 1'000'000)).outcome;
      if (it == model.end()) {
        EXPECT_EQ(got, Matcher::Outcome::kUnmatched) << k;
      } else if (it->second == St::kPending) {
        EXPECT_EQ(got, Matcher::Outcome::kMatched) << k;
        it->second = St::kAnswered;
      } else if (it->second == St::kTimedOut) {
        EXPECT_EQ(got, Matcher::Outcome::kLate) << k;
        it->second = St::kAnswered;
      } else {
        EXPECT_EQ(got, Matcher::Outcome::kDuplicate) << k;
      }
    } else {
      m.expire(now, [&](std::uint32_t tag, std::uint64_t) {
        const auto it = model.find(static_cast<int>(tag));
        ASSERT_NE(it, model.end());
        EXPECT_EQ(it->second, St::kPending);
        it->second = St::kTimedOut;
      });
    }
  }
  std::size_t pending = 0;
  for (const auto& [k, st] : model) {
    pending += st == St::kPending ? 1 : 0;
  }
  EXPECT_EQ(m.pending(), pending);
}

}  // namespace
}  // namespace authswitch::netsim
