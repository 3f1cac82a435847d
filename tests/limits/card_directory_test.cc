// The card directory cache (limits/card_directory.h) against a real redis-server: startup load,
// misses and hits, the change feed (applied within one poll interval, by every switch),
// resync after a Redis restart, eviction, and zero allocations when warm. Time is injected:
// the directory and its pipeline see a clock that only the test moves, so "within one poll
// interval" is shown by moving it, never by measuring wall-clock time.
#include "limits/card_directory.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <poll.h>

#include "base/hash.h"
#include "limits/card_warmer.h"
#include "limits/layout.h"
#include "limits/pan_token.h"
#include "limits/redis_pipeline.h"
#include "tests/support/alloc_counter.h"
#include "tests/support/redis_fixture.h"
#include "tests/support/redis_server.h"

namespace authswitch::limits {
namespace {

using Clock = RedisPipeline::Clock;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// Helpers.

// A token for test card `n` (not derived from any PAN).
PanToken token_of(std::uint32_t n) {
  std::array<std::byte, PanToken::kMacBytes> mac{};
  for (std::size_t i = 0; i < 4; ++i) {
    mac[i] = static_cast<std::byte>((n >> (24 - 8 * i)) & 0xFFU);
  }
  mac[15] = std::byte{0x5a};
  return PanToken::from_mac(mac);
}

std::string str(std::string_view s) { return std::string(s); }

// A profile whose limit l of channel c is base + 10 c + l.
LimitProfile make_profile(std::int64_t base) {
  LimitProfile p;
  for (std::size_t c = 0; c < kChannelCount; ++c) {
    for (std::size_t l = 0; l < kLimitCount; ++l) {
      limit_at(p.channels[c], l) = base + static_cast<std::int64_t>(10 * c + l);
    }
  }
  return p;
}

// As the admin CLI writes a profile: every field, and the name in the set.
void write_profile(redisContext& ctx, std::string_view name, const LimitProfile& p) {
  std::vector<std::string> args = {"HSET", "as:p:" + str(name)};
  for (std::size_t c = 0; c < kChannelCount; ++c) {
    for (std::size_t l = 0; l < kLimitCount; ++l) {
      args.push_back(str(kChannelNames[c]) + "." + str(kLimitFields[l]));
      args.push_back(std::to_string(limit_at(p.channels[c], l)));
    }
  }
  ASSERT_EQ(support::redis_command(ctx, args)->type, REDIS_REPLY_INTEGER);
  ASSERT_EQ(support::redis_command(ctx, {"SADD", kProfilesKey, name})->type, REDIS_REPLY_INTEGER);
}

void write_card(redisContext& ctx, const PanToken& token, std::string_view account,
                std::string_view profile) {
  const std::string key = "as:{c:" + str(token.view()) + "}";
  ASSERT_EQ(support::redis_command(
                ctx, {"HSET", key, kCardAccountField, account, kCardProfileField, profile})
                ->type,
            REDIS_REPLY_INTEGER);
}

// The same, with the directory's status and expiry copies as authswitch-admin writes them.
void write_card(redisContext& ctx, const PanToken& token, std::string_view account,
                std::string_view profile, std::string_view status, std::string_view expiry) {
  write_card(ctx, token, account, profile);
  (void)support::redis_command(ctx, {"HSET", "as:{c:" + str(token.view()) + "}", kCardStatusField,
                                     status, kCardExpiryField, expiry});
}

// As the admin CLI announces a change; returns the entry's id.
std::string write_change(redisContext& ctx, std::string_view kind, std::string_view id) {
  const support::RedisReplyPtr r = support::redis_command(
      ctx, {"XADD", kChangesKey, "MAXLEN", "~", "100000", "*", "kind", kind, "id", id});
  EXPECT_EQ(r->type, REDIS_REPLY_STRING);
  return r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : std::string();
}

// Records a load's outcome without allocating.
class LoadRecorder final : public CardLoadCallback {
 public:
  void on_card_loaded(const CardLoadResult& r) noexcept override {
    ++calls;
    status = r.status;
    error = r.error;
    token = r.token;
    has_card = r.card != nullptr;
    account_len = 0;
    if (r.card != nullptr) {
      account_len = r.card->account_len;
      std::copy_n(r.card->account.data(), account_len, account_buf.data());
      profile = r.card->profile;
    }
    has_limits = r.limits != nullptr;
    if (r.limits != nullptr) {
      limits = *r.limits;
    }
  }
  [[nodiscard]] std::string_view account() const { return {account_buf.data(), account_len}; }

  int calls = 0;
  CardStatus status = CardStatus::kError;
  ClientErrc error = ClientErrc::kTimeout;
  PanToken token;
  bool has_card = false;
  bool has_limits = false;
  std::array<char, kAccountIdMax> account_buf{};
  std::size_t account_len = 0;
  std::uint16_t profile = 0;
  LimitProfile limits;
};

RedisPipeline::Options pipeline_options(const support::RedisServer& server) {
  RedisPipeline::Options o;
  o.host = support::RedisServer::kHost;
  o.port = server.port();
  o.backoff_min = 10ms;
  o.backoff_max = 100ms;
  return o;
}

CardDirectory::Options small_options() {
  CardDirectory::Options o;
  o.capacity = 1024;
  o.max_profiles = 16;
  o.max_pending_loads = 64;
  return o;
}

// One switch shard: its pipeline and its directory. The directory is declared first so that it
// is destroyed last: the pipeline's destructor fails pending operations back into it.
struct Switch {
  std::optional<CardDirectory> dir;
  RedisPipeline pipeline;

  Switch(const support::RedisServer& server, const CardDirectory::Options& o)
      : pipeline(pipeline_options(server)) {
    dir.emplace(pipeline, o);
  }
  CardDirectory& d() { return *dir; }
};

// Drives switches as the shard event loop would (tick, poll(2), dispatch, flush), on a clock
// that moves only when the test says so.
class Rig {
 public:
  static constexpr std::size_t kMax = 4;

  Rig(std::initializer_list<Switch*> switches) {
    for (Switch* s : switches) {
      switches_[count_++] = s;
    }
  }

  [[nodiscard]] Clock::time_point now() const { return now_; }
  void advance(Clock::duration d) { now_ += d; }

  // One pass of the loop: waits up to 1 ms for a socket.
  void pump() {
    std::array<pollfd, kMax> fds{};
    std::array<Switch*, kMax> owners{};
    std::size_t n = 0;
    for (std::size_t i = 0; i < count_; ++i) {
      Switch& s = *switches_[i];
      s.pipeline.on_tick(now_);
      if (tick_directories) {
        s.d().on_tick(now_);
      }
      if (s.pipeline.fd() >= 0) {
        fds[n].fd = s.pipeline.fd();
        fds[n].events = static_cast<short>(POLLIN | (s.pipeline.wants_write() ? POLLOUT : 0));
        owners[n++] = &s;
      }
    }
    if (::poll(fds.data(), n, 1) > 0) {
      for (std::size_t i = 0; i < n; ++i) {
        if ((fds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
          owners[i]->pipeline.on_readable(now_);
        }
        if ((fds[i].revents & POLLOUT) != 0 && owners[i]->pipeline.fd() >= 0) {
          owners[i]->pipeline.on_writable(now_);
        }
      }
    }
    for (std::size_t i = 0; i < count_; ++i) {
      switches_[i]->pipeline.flush();  // what callbacks submitted, as the switch's batch end
    }
  }

  // Pumps until done(), moving the clock by `step` per pass (0: frozen). The real-time limit is
  // only a safety net against a hang; nothing is measured.
  template <typename Pred>
  bool run_until(Pred done, Clock::duration step = Clock::duration::zero()) {
    const auto give_up = Clock::now() + 5s;
    while (!done()) {
      if (Clock::now() > give_up) {
        return false;
      }
      pump();
      now_ += step;
    }
    return true;
  }

  // When false, only the pipelines are driven (the directories never start their sync).
  bool tick_directories = true;

  // Pumps `passes` times with the clock frozen.
  void run_passes(int passes) {
    for (int i = 0; i < passes; ++i) {
      pump();
    }
  }

 private:
  Clock::time_point now_ = Clock::now();
  std::array<Switch*, kMax> switches_{};
  std::size_t count_ = 0;
};

bool ready_and_polled(Switch& s) { return s.d().ready() && s.d().stats().polls > 0; }

// Loads `token` and drives until the callback ran.
bool load_now(Rig& rig, Switch& s, const PanToken& token, LoadRecorder& r) {
  const int before = r.calls;
  if (s.d().load(token, r, rig.now() + 2s)) {
    return false;
  }
  s.pipeline.flush();
  return rig.run_until([&] { return r.calls == before + 1; });
}

class CardDirectoryTest : public support::SharedRedisTest {};

// ---------------------------------------------------------------------------------------------
// Construction and startup.

TEST(CardDirectoryOptions, PollIntervalIsUnderOneSecondByDefaultAndMustStaySo) {
  EXPECT_LT(CardDirectory::Options{}.poll_interval, 1s);
  RedisPipeline::Options po;
  po.port = 1;  // never connected: the constructors do no I/O
  RedisPipeline pipeline(po);
  CardDirectory::Options o = small_options();
  o.poll_interval = 1s;
  EXPECT_THROW({ CardDirectory d(pipeline, o); }, std::invalid_argument);
  o.poll_interval = 999ms;
  EXPECT_NO_THROW({ CardDirectory d(pipeline, o); });
  o.capacity = 1000;
  CardDirectory d(pipeline, o);
  EXPECT_EQ(d.capacity(), 1024U);  // rounded up to a power of two
  EXPECT_FALSE(d.ready());
}

TEST_F(CardDirectoryTest, StartupTakesFeedPositionThenLoadsEveryProfile) {
  write_profile(redis(), "gold", make_profile(1000));
  write_profile(redis(), "silver", make_profile(2000));
  (void)write_change(redis(), kChangeProfile, "gold");
  const std::string last = write_change(redis(), kChangeProfile, "silver");
  Switch s(server(), small_options());
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return s.d().ready(); }));
  EXPECT_EQ(s.d().feed_position(), last);
  EXPECT_EQ(s.d().profile_count(), 2U);
  const auto gold = s.d().find_profile("gold");
  const auto silver = s.d().find_profile("silver");
  ASSERT_TRUE(gold && silver);
  ASSERT_NE(s.d().profile(*gold), nullptr);
  EXPECT_EQ(*s.d().profile(*gold), make_profile(1000));
  EXPECT_EQ(*s.d().profile(*silver), make_profile(2000));
  EXPECT_EQ(s.d().stats().resyncs, 1U);
  // The first poll finds nothing newer than the position.
  ASSERT_TRUE(rig.run_until([&] { return s.d().stats().polls == 1; }));
  EXPECT_EQ(s.d().stats().feed_entries, 0U);
}

TEST_F(CardDirectoryTest, EmptyFeedStartsAtZeroAndSeesTheFirstEntry) {
  write_profile(redis(), "gold", make_profile(1000));
  Switch s(server(), small_options());
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return ready_and_polled(s); }));
  EXPECT_EQ(s.d().feed_position(), "0-0");
  write_profile(redis(), "gold", make_profile(5000));
  const std::string id = write_change(redis(), kChangeProfile, "gold");
  rig.advance(small_options().poll_interval);
  ASSERT_TRUE(rig.run_until([&] { return *s.d().profile(0) == make_profile(5000); }));
  EXPECT_EQ(s.d().feed_position(), id);
}

// ---------------------------------------------------------------------------------------------
// Loads.

TEST_F(CardDirectoryTest, MissLoadsTheCardThenFindHits) {
  write_profile(redis(), "gold", make_profile(1000));
  const PanToken card = token_of(1);
  write_card(redis(), card, "acct-1", "gold", "active", "2812");
  Switch s(server(), small_options());
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return s.d().ready(); }));
  EXPECT_EQ(s.d().find(card), nullptr);
  LoadRecorder r;
  ASSERT_TRUE(load_now(rig, s, card, r));
  ASSERT_EQ(r.status, CardStatus::kFound) << to_string(r.status);
  EXPECT_EQ(r.token, card);
  EXPECT_EQ(r.account(), "acct-1");
  EXPECT_EQ(s.d().profile_name(r.profile), "gold");
  ASSERT_TRUE(r.has_limits);
  EXPECT_EQ(r.limits, make_profile(1000));

  const CardInfo* hit = s.d().find(card);
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->account_id(), "acct-1");
  EXPECT_EQ(hit->state, CardState::kActive);
  EXPECT_EQ(hit->expiry_yymm, 2812);
  const CardLoadResult resolved = s.d().resolve(*hit);
  EXPECT_EQ(resolved.status, CardStatus::kFound);
  ASSERT_NE(resolved.limits, nullptr);
  EXPECT_EQ(resolved.limits->limits(Channel::kAtm), make_profile(1000).limits(Channel::kAtm));
  EXPECT_EQ(s.d().size(), 1U);
  EXPECT_EQ(s.d().stats().hits, 1U);
  EXPECT_EQ(s.d().stats().misses, 1U);
  EXPECT_EQ(s.d().stats().loads, 1U);
}

TEST_F(CardDirectoryTest, FraudRuleOverridesComeWithTheCard) {
  write_profile(redis(), "gold", make_profile(1000));
  const PanToken travel = token_of(7);
  const PanToken broken = token_of(8);
  write_card(redis(), travel, "acct-7", "gold");
  write_card(redis(), broken, "acct-8", "gold");
  KeyBuffer kb;
  (void)support::redis_command(redis(),
                               {"HSET", card_directory_key(travel.view(), kb), kCardOverridesField,
                                "foreign-large,FR,1795534200000;night-cash,,42"});
  (void)support::redis_command(redis(), {"HSET", card_directory_key(broken.view(), kb),
                                         kCardOverridesField, "a,,1;b,,2;c,,3"});
  Switch s(server(), small_options());
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return s.d().ready(); }));
  LoadRecorder r;
  ASSERT_TRUE(load_now(rig, s, travel, r));
  ASSERT_EQ(r.status, CardStatus::kFound);
  const CardInfo* hit = s.d().find(travel);
  ASSERT_NE(hit, nullptr);
  ASSERT_EQ(hit->active_overrides().size(), 2U);
  EXPECT_EQ(hit->overrides[0].rule_hash, base::fnv1a32("foreign-large"));
  EXPECT_EQ(hit->overrides[0].country_view(), "FR");
  EXPECT_EQ(hit->overrides[0].expires_ms, 1'795'534'200'000);
  EXPECT_EQ(hit->overrides[1].rule_hash, base::fnv1a32("night-cash"));
  EXPECT_EQ(hit->overrides[1].country_view(), "");
  EXPECT_EQ(hit->state, CardState::kUnknown);  // written without the status and expiry copies
  EXPECT_EQ(hit->expiry_yymm, 0);
  // More than kCardOverridesMax: none of it is used (the stricter side), and it is counted.
  LoadRecorder b;
  ASSERT_TRUE(load_now(rig, s, broken, b));
  ASSERT_EQ(b.status, CardStatus::kFound);
  EXPECT_EQ(s.d().find(broken)->override_count, 0);
  EXPECT_EQ(s.d().stats().bad_overrides, 1U);
}

TEST_F(CardDirectoryTest, UnknownCardIsNotFoundAndNotCached) {
  Switch s(server(), small_options());
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return s.d().ready(); }));
  LoadRecorder r;
  ASSERT_TRUE(load_now(rig, s, token_of(404), r));
  EXPECT_EQ(r.status, CardStatus::kNotFound);
  EXPECT_FALSE(r.has_card);
  EXPECT_EQ(s.d().find(token_of(404)), nullptr);
  EXPECT_EQ(s.d().size(), 0U);
  EXPECT_EQ(s.d().stats().not_found, 1U);
}

TEST_F(CardDirectoryTest, CardWithoutProfileFieldGetsTheDefaultProfile) {
  write_profile(redis(), kDefaultProfile, make_profile(7000));
  const PanToken card = token_of(2);
  const std::string key = "as:{c:" + str(card.view()) + "}";
  (void)support::redis_command(redis(), {"HSET", key, "acct", "acct-2"});
  Switch s(server(), small_options());
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return s.d().ready(); }));
  LoadRecorder r;
  ASSERT_TRUE(load_now(rig, s, card, r));
  ASSERT_EQ(r.status, CardStatus::kFound);
  EXPECT_EQ(s.d().profile_name(r.profile), kDefaultProfile);
  EXPECT_EQ(r.limits, make_profile(7000));
}

TEST_F(CardDirectoryTest, ProfileCreatedAfterStartupIsFetchedBeforeTheLoadCompletes) {
  Switch s(server(), small_options());
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return s.d().ready(); }));
  EXPECT_EQ(s.d().profile_count(), 0U);
  // Created after the sync, and the switch has not polled the feed since.
  write_profile(redis(), "fresh", make_profile(3000));
  const PanToken card = token_of(3);
  write_card(redis(), card, "acct-3", "fresh");
  LoadRecorder r;
  ASSERT_TRUE(load_now(rig, s, card, r));
  ASSERT_EQ(r.status, CardStatus::kFound);
  EXPECT_EQ(r.limits, make_profile(3000));
  EXPECT_EQ(s.d().profile_state(r.profile), CardDirectory::ProfileState::kLoaded);
  EXPECT_NE(s.d().find(card), nullptr);
}

TEST_F(CardDirectoryTest, CardNamingAMissingProfileResolvesAsProfileGone) {
  const PanToken card = token_of(4);
  write_card(redis(), card, "acct-4", "nosuch");
  Switch s(server(), small_options());
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return s.d().ready(); }));
  LoadRecorder r;
  ASSERT_TRUE(load_now(rig, s, card, r));
  EXPECT_EQ(r.status, CardStatus::kProfileGone);
  EXPECT_TRUE(r.has_card);
  EXPECT_FALSE(r.has_limits);
  // Cached, so a misconfigured card does not cost a Redis call per message.
  const CardInfo* hit = s.d().find(card);
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(s.d().resolve(*hit).status, CardStatus::kProfileGone);
  EXPECT_EQ(s.d().resolve(*hit).limits, nullptr);
}

TEST_F(CardDirectoryTest, MalformedRecordsAreBadRecords) {
  const PanToken bad_account = token_of(5);
  write_card(redis(), bad_account, "has space", "gold");
  write_profile(redis(), "gold", make_profile(1000));
  (void)support::redis_command(redis(), {"HSET", "as:p:broken", "pos.txn", "x"});
  const PanToken bad_profile = token_of(6);
  write_card(redis(), bad_profile, "acct-6", "broken");
  Switch s(server(), small_options());
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return s.d().ready(); }));
  LoadRecorder r1;
  LoadRecorder r2;
  ASSERT_TRUE(load_now(rig, s, bad_account, r1));
  ASSERT_TRUE(load_now(rig, s, bad_profile, r2));
  EXPECT_EQ(r1.status, CardStatus::kBadRecord);
  EXPECT_FALSE(r1.has_card);
  EXPECT_EQ(r2.status, CardStatus::kBadRecord);
  EXPECT_TRUE(r2.has_card);
  EXPECT_EQ(s.d().profile_state(r2.profile), CardDirectory::ProfileState::kBad);
}

TEST_F(CardDirectoryTest, FullPendingPoolIsQueueFullAsAValue) {
  write_profile(redis(), "gold", make_profile(1000));
  write_card(redis(), token_of(1), "acct-1", "gold");
  CardDirectory::Options o = small_options();
  o.max_pending_loads = 2;
  Switch s(server(), o);
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return s.d().ready(); }));
  std::array<LoadRecorder, 3> r;
  ASSERT_FALSE(s.d().load(token_of(1), r[0], rig.now() + 2s));
  ASSERT_FALSE(s.d().load(token_of(1), r[1], rig.now() + 2s));
  const auto refused = s.d().load(token_of(1), r[2], rig.now() + 2s);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(*refused, ClientErrc::kQueueFull);
  s.pipeline.flush();
  ASSERT_TRUE(rig.run_until([&] { return r[1].calls == 1; }));
  EXPECT_EQ(r[0].status, CardStatus::kFound);
  EXPECT_EQ(r[1].status, CardStatus::kFound);
  EXPECT_EQ(r[2].calls, 0);
  EXPECT_EQ(s.d().size(), 1U);                       // the same card twice: one entry
  ASSERT_TRUE(load_now(rig, s, token_of(1), r[2]));  // slots are free again
}

TEST_F(CardDirectoryTest, LoadPastItsDeadlineIsATimeoutThenLoadsWorkAgain) {
  write_profile(redis(), "gold", make_profile(1000));
  write_card(redis(), token_of(1), "acct-1", "gold");
  Switch s(server(), small_options());
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return s.d().ready(); }));
  (void)support::redis_command(redis(), {"CLIENT", "PAUSE", "300"});
  LoadRecorder slow;
  ASSERT_FALSE(s.d().load(token_of(1), slow, rig.now() + 50ms));
  s.pipeline.flush();
  rig.run_passes(5);
  EXPECT_EQ(slow.calls, 0);  // the clock has not reached the deadline
  rig.advance(50ms);
  ASSERT_TRUE(rig.run_until([&] { return slow.calls == 1; }));
  EXPECT_EQ(slow.status, CardStatus::kError);
  EXPECT_EQ(slow.error, ClientErrc::kTimeout);
  EXPECT_EQ(s.d().stats().load_errors, 1U);
  LoadRecorder after;  // answered once the pause ends; the late reply went nowhere
  ASSERT_TRUE(load_now(rig, s, token_of(1), after));
  EXPECT_EQ(after.status, CardStatus::kFound);
  EXPECT_EQ(slow.calls, 1);
}

TEST_F(CardDirectoryTest, LoadBeforeTheFeedPositionIsTakenIsAnsweredButNotCached) {
  write_profile(redis(), "gold", make_profile(1000));
  write_card(redis(), token_of(1), "acct-1", "gold");
  Switch s(server(), small_options());
  Rig rig{&s};
  rig.tick_directories = false;  // connected, but the directory has not synced yet
  ASSERT_TRUE(
      rig.run_until([&] { return s.pipeline.state() == RedisPipeline::State::kConnected; }));
  LoadRecorder r;
  ASSERT_TRUE(load_now(rig, s, token_of(1), r));
  EXPECT_EQ(r.status, CardStatus::kFound);
  EXPECT_EQ(r.account(), "acct-1");
  EXPECT_TRUE(r.has_limits);  // "gold" was fetched for it
  // A change made after this read may precede the position the sync will take: not cached.
  EXPECT_EQ(s.d().size(), 0U);
  EXPECT_EQ(s.d().find(token_of(1)), nullptr);
  rig.tick_directories = true;
  ASSERT_TRUE(rig.run_until([&] { return s.d().ready(); }));
  ASSERT_TRUE(load_now(rig, s, token_of(1), r));
  EXPECT_NE(s.d().find(token_of(1)), nullptr);
}

TEST_F(CardDirectoryTest, LoadWhileDisconnectedFailsFast) {
  Switch s(server(), small_options());
  LoadRecorder r;
  const auto refused = s.d().load(token_of(1), r, Clock::now() + 1s);  // never ticked
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(*refused, ClientErrc::kDisconnected);
  EXPECT_EQ(r.calls, 0);
}

// ---------------------------------------------------------------------------------------------
// The change feed.

TEST_F(CardDirectoryTest, ProfileChangeReachesTwoSwitchesWithinOnePollInterval) {
  write_profile(redis(), "gold", make_profile(1000));
  const PanToken card = token_of(7);
  write_card(redis(), card, "acct-7", "gold");
  const CardDirectory::Options o = small_options();
  ASSERT_LT(o.poll_interval, 1s);
  Switch a(server(), o);
  Switch b(server(), o);
  Rig rig{&a, &b};
  ASSERT_TRUE(rig.run_until([&] { return ready_and_polled(a) && ready_and_polled(b); }));
  LoadRecorder ra;
  LoadRecorder rb;
  ASSERT_TRUE(load_now(rig, a, card, ra));
  ASSERT_TRUE(load_now(rig, b, card, rb));
  const std::uint64_t polls_a = a.d().stats().polls;
  const std::uint64_t polls_b = b.d().stats().polls;

  // The admin changes the profile and announces it.
  write_profile(redis(), "gold", make_profile(9000));
  (void)write_change(redis(), kChangeProfile, "gold");

  // With the clock standing still no poll is due: both still show the old limits.
  rig.run_passes(30);
  EXPECT_EQ(a.d().stats().polls, polls_a);
  EXPECT_EQ(a.d().resolve(*a.d().find(card)).limits->limits(Channel::kPos),
            make_profile(1000).limits(Channel::kPos));

  // One poll interval later both switches have applied it, in place: the cached card sees it.
  rig.advance(o.poll_interval);
  ASSERT_TRUE(rig.run_until([&] {
    return *a.d().profile(ra.profile) == make_profile(9000) &&
           *b.d().profile(rb.profile) == make_profile(9000);
  }));
  EXPECT_EQ(a.d().stats().polls, polls_a + 1);
  EXPECT_EQ(b.d().stats().polls, polls_b + 1);
  EXPECT_EQ(a.d().stats().feed_entries, 1U);
  EXPECT_EQ(b.d().stats().feed_entries, 1U);
  for (Switch* s : {&a, &b}) {
    const CardInfo* hit = s->d().find(card);
    ASSERT_NE(hit, nullptr);  // the card stayed cached
    EXPECT_EQ(*s->d().resolve(*hit).limits, make_profile(9000));
  }
}

TEST_F(CardDirectoryTest, DeletedProfileBecomesGoneThenComesBack) {
  write_profile(redis(), "gold", make_profile(1000));
  const PanToken card = token_of(8);
  write_card(redis(), card, "acct-8", "gold");
  const CardDirectory::Options o = small_options();
  Switch s(server(), o);
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return ready_and_polled(s); }));
  LoadRecorder r;
  ASSERT_TRUE(load_now(rig, s, card, r));
  (void)support::redis_command(redis(), {"DEL", "as:p:gold"});
  (void)support::redis_command(redis(), {"SREM", kProfilesKey, "gold"});
  (void)write_change(redis(), kChangeProfile, "gold");
  rig.advance(o.poll_interval);
  ASSERT_TRUE(rig.run_until(
      [&] { return s.d().profile_state(r.profile) == CardDirectory::ProfileState::kGone; }));
  EXPECT_EQ(s.d().resolve(*s.d().find(card)).status, CardStatus::kProfileGone);
  write_profile(redis(), "gold", make_profile(4000));
  (void)write_change(redis(), kChangeProfile, "gold");
  rig.advance(o.poll_interval);
  ASSERT_TRUE(rig.run_until(
      [&] { return s.d().profile_state(r.profile) == CardDirectory::ProfileState::kLoaded; }));
  EXPECT_EQ(*s.d().resolve(*s.d().find(card)).limits, make_profile(4000));
}

TEST_F(CardDirectoryTest, CardEntryDropsThatCardAndTheNextLoadSeesTheChange) {
  write_profile(redis(), "gold", make_profile(1000));
  write_profile(redis(), "silver", make_profile(2000));
  const PanToken moved = token_of(9);
  const PanToken other = token_of(10);
  write_card(redis(), moved, "acct-9", "gold");
  write_card(redis(), other, "acct-10", "gold");
  const CardDirectory::Options o = small_options();
  Switch s(server(), o);
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return ready_and_polled(s); }));
  LoadRecorder r;
  ASSERT_TRUE(load_now(rig, s, moved, r));
  ASSERT_TRUE(load_now(rig, s, other, r));
  write_card(redis(), moved, "acct-99", "silver");
  (void)write_change(redis(), kChangeCard, moved.view());
  rig.advance(o.poll_interval);
  ASSERT_TRUE(rig.run_until([&] { return s.d().stats().feed_entries == 1; }));
  EXPECT_EQ(s.d().find(moved), nullptr);
  EXPECT_NE(s.d().find(other), nullptr);
  EXPECT_EQ(s.d().stats().dropped, 1U);
  ASSERT_TRUE(load_now(rig, s, moved, r));
  ASSERT_EQ(r.status, CardStatus::kFound);
  EXPECT_EQ(r.account(), "acct-99");
  EXPECT_EQ(s.d().profile_name(r.profile), "silver");
  EXPECT_EQ(r.limits, make_profile(2000));
}

TEST_F(CardDirectoryTest, CardDroppedWhileItsLoadWaitsForAProfileIsNotCached) {
  const CardDirectory::Options o = small_options();
  Switch s(server(), o);
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return ready_and_polled(s); }));
  write_profile(redis(), "late", make_profile(3000));  // unknown to the directory
  write_card(redis(), token_of(1), "acct-1", "late");
  (void)write_change(redis(), kChangeCard, token_of(1).view());
  // One write carries the HMGET, then the due poll: the HMGET's reply comes first and waits
  // for "late"; the poll's "card" entry arrives while it waits.
  LoadRecorder r;
  ASSERT_FALSE(s.d().load(token_of(1), r, rig.now() + 2s));
  rig.advance(o.poll_interval);
  ASSERT_TRUE(rig.run_until([&] { return r.calls == 1; }));
  EXPECT_EQ(s.d().stats().feed_entries, 1U);
  EXPECT_EQ(r.status, CardStatus::kFound);
  EXPECT_EQ(r.limits, make_profile(3000));
  EXPECT_EQ(s.d().find(token_of(1)), nullptr);  // its read may predate the change: not cached
  EXPECT_EQ(s.d().size(), 0U);
}

TEST_F(CardDirectoryTest, CardsEntryDropsEveryCard) {
  write_profile(redis(), "gold", make_profile(1000));
  for (std::uint32_t i = 0; i < 10; ++i) {
    write_card(redis(), token_of(i), "acct-" + std::to_string(i), "gold");
  }
  const CardDirectory::Options o = small_options();
  Switch s(server(), o);
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return ready_and_polled(s); }));
  LoadRecorder r;
  for (std::uint32_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(load_now(rig, s, token_of(i), r));
  }
  EXPECT_EQ(s.d().size(), 10U);
  (void)write_change(redis(), kChangeCards, "*");
  rig.advance(o.poll_interval);
  ASSERT_TRUE(rig.run_until([&] { return s.d().stats().feed_entries == 1; }));
  EXPECT_EQ(s.d().size(), 0U);
  for (std::uint32_t i = 0; i < 10; ++i) {
    EXPECT_EQ(s.d().find(token_of(i)), nullptr);
  }
  ASSERT_TRUE(load_now(rig, s, token_of(3), r));  // and loads refill it
  EXPECT_EQ(r.account(), "acct-3");
  EXPECT_EQ(s.d().size(), 1U);
}

TEST_F(CardDirectoryTest, BacklogBeyondOneBatchIsReadInOneInterval) {
  write_profile(redis(), "gold", make_profile(1000));
  // Default batch and default pipeline options: a full batch fits the pipeline's reply arena.
  CardDirectory::Options o = small_options();
  ASSERT_EQ(o.feed_batch_max, 128U);
  Switch s(server(), o);
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return ready_and_polled(s); }));
  const std::uint64_t polls = s.d().stats().polls;
  std::vector<std::string> args = {"XADD", str(kChangesKey), "*", "kind", str(kChangeCard), "id",
                                   ""};
  for (std::uint32_t i = 0; i < 300; ++i) {
    args.back() = str(token_of(i).view());
    (void)support::redis_command(redis(), args);
  }
  (void)write_change(redis(), "nonsense", "x");  // unknown kinds are skipped, not fatal
  const std::string last = write_change(redis(), kChangeCard, "not-a-token");
  rig.advance(o.poll_interval);
  ASSERT_TRUE(rig.run_until([&] { return s.d().feed_position() == last; }));
  EXPECT_EQ(s.d().stats().feed_entries, 300U);
  EXPECT_EQ(s.d().stats().feed_ignored, 2U);
  EXPECT_EQ(s.d().stats().polls - polls, 3U);  // 128 + 128 + 46, without waiting in between
  EXPECT_EQ(s.pipeline.stats().connects, 1U);  // no reply overflowed the arena
}

TEST_F(CardDirectoryTest, ChangeMadeWhileLoadingIsAppliedByTheFirstPoll) {
  write_profile(redis(), "gold", make_profile(1000));
  const std::string before = write_change(redis(), kChangeProfile, "gold");
  Switch s(server(), small_options());
  Rig rig{&s};
  // Stop as soon as the feed position is taken, before the profiles have been read.
  ASSERT_TRUE(rig.run_until([&] { return s.d().feed_position() == before; }));
  write_profile(redis(), "gold", make_profile(2000));
  const std::string during = write_change(redis(), kChangeProfile, "gold");
  ASSERT_TRUE(rig.run_until([&] { return ready_and_polled(s); }));
  ASSERT_TRUE(rig.run_until([&] { return s.d().stats().profile_loads == 2; }));
  EXPECT_EQ(s.d().feed_position(), during);
  EXPECT_EQ(s.d().stats().feed_entries, 1U);
  EXPECT_EQ(*s.d().profile(*s.d().find_profile("gold")), make_profile(2000));
}

TEST_F(CardDirectoryTest, FullProfileTableIsAStatusNotACrash) {
  write_profile(redis(), "gold", make_profile(1000));
  write_card(redis(), token_of(1), "acct-1", "silver");
  CardDirectory::Options o = small_options();
  o.max_profiles = 1;
  Switch s(server(), o);
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return s.d().ready(); }));
  LoadRecorder r;
  ASSERT_TRUE(load_now(rig, s, token_of(1), r));
  EXPECT_EQ(r.status, CardStatus::kProfileTableFull);
  EXPECT_FALSE(r.has_card);
  EXPECT_EQ(s.d().stats().profile_overflows, 1U);
  EXPECT_EQ(s.d().size(), 0U);
}

// ---------------------------------------------------------------------------------------------
// Resync after a Redis restart.

TEST(CardDirectoryRestart, RedisRestartDropsCardsReloadsProfilesAndSeesMissedChanges) {
  support::RedisServerOptions so;
  so.aof = support::AofMode::kAlways;  // the data outlives the crash
  support::RedisServer server(so);
  auto ctx = server.connect();
  write_profile(*ctx, "gold", make_profile(1000));
  const PanToken card = token_of(11);
  write_card(*ctx, card, "acct-11", "gold");
  const CardDirectory::Options o = small_options();
  LoadRecorder r;
  Switch s(server, o);
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return ready_and_polled(s); }));
  ASSERT_TRUE(load_now(rig, s, card, r));
  ASSERT_EQ(s.d().stats().resyncs, 1U);

  server.kill9();
  ASSERT_TRUE(
      rig.run_until([&] { return s.pipeline.state() != RedisPipeline::State::kConnected; }));
  // While Redis is away the cache still answers (the switch decides by stand-in meanwhile).
  EXPECT_NE(s.d().find(card), nullptr);

  server.restart();
  ctx = server.connect();
  // Changes the switch cannot see in the feed: it was not connected when they were made.
  write_profile(*ctx, "gold", make_profile(5000));
  write_profile(*ctx, "silver", make_profile(6000));
  write_card(*ctx, card, "acct-12", "silver");
  (void)write_change(*ctx, kChangeProfile, "gold");
  (void)write_change(*ctx, kChangeCard, card.view());

  // The clock moves so the pipeline's reconnect backoff passes.
  ASSERT_TRUE(rig.run_until([&] { return s.d().stats().resyncs == 2 && s.d().ready(); }, 20ms));
  EXPECT_EQ(s.d().size(), 0U);
  EXPECT_EQ(s.d().find(card), nullptr);
  EXPECT_EQ(*s.d().profile(*s.d().find_profile("gold")), make_profile(5000));
  ASSERT_TRUE(s.d().find_profile("silver").has_value());
  EXPECT_EQ(*s.d().profile(*s.d().find_profile("silver")), make_profile(6000));
  ASSERT_TRUE(load_now(rig, s, card, r));
  ASSERT_EQ(r.status, CardStatus::kFound);
  EXPECT_EQ(r.account(), "acct-12");
  EXPECT_EQ(r.limits, make_profile(6000));
  EXPECT_NE(s.d().find(card), nullptr);

  // And the feed flows again from the new position.
  write_profile(*ctx, "gold", make_profile(8000));
  (void)write_change(*ctx, kChangeProfile, "gold");
  rig.advance(o.poll_interval);
  ASSERT_TRUE(rig.run_until(
      [&] { return *s.d().profile(*s.d().find_profile("gold")) == make_profile(8000); }));
}

// ---------------------------------------------------------------------------------------------
// Eviction and allocation.

TEST_F(CardDirectoryTest, EvictionKeepsTheTableAtCapacityAndSparesCardsInUse) {
  write_profile(redis(), "gold", make_profile(1000));
  constexpr std::uint32_t kCards = 200;
  for (std::uint32_t i = 0; i < kCards; ++i) {
    write_card(redis(), token_of(i), "acct-" + std::to_string(i), "gold");
  }
  CardDirectory::Options o = small_options();
  o.capacity = 64;
  Switch s(server(), o);
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return s.d().ready(); }));
  LoadRecorder r;
  for (std::uint32_t i = 0; i < 64; ++i) {
    ASSERT_TRUE(load_now(rig, s, token_of(i), r));
  }
  EXPECT_EQ(s.d().size(), 64U);
  EXPECT_EQ(s.d().stats().evictions, 0U);
  // Every card but number 5 is in use: the next load evicts number 5 (CLOCK second chance).
  for (std::uint32_t i = 0; i < 64; ++i) {
    if (i != 5) {
      ASSERT_NE(s.d().find(token_of(i)), nullptr);
    }
  }
  ASSERT_TRUE(load_now(rig, s, token_of(64), r));
  EXPECT_EQ(s.d().size(), 64U);
  EXPECT_EQ(s.d().stats().evictions, 1U);
  EXPECT_EQ(s.d().find(token_of(5)), nullptr);
  for (std::uint32_t i = 0; i <= 64; ++i) {
    if (i != 5) {
      const CardInfo* hit = s.d().find(token_of(i));
      ASSERT_NE(hit, nullptr) << i;
      EXPECT_EQ(hit->account_id(), "acct-" + std::to_string(i));
    }
  }
  // The rest: bounded at capacity, and whatever is cached is right.
  for (std::uint32_t i = 65; i < kCards; ++i) {
    ASSERT_TRUE(load_now(rig, s, token_of(i), r));
    ASSERT_EQ(r.account(), "acct-" + std::to_string(i));
    ASSERT_LE(s.d().size(), 64U);
  }
  EXPECT_EQ(s.d().size(), 64U);
  EXPECT_EQ(s.d().stats().evictions, kCards - 64);
  std::size_t cached = 0;
  for (std::uint32_t i = 0; i < kCards; ++i) {
    if (const CardInfo* hit = s.d().find(token_of(i))) {
      ++cached;
      EXPECT_EQ(hit->account_id(), "acct-" + std::to_string(i));
    }
  }
  EXPECT_EQ(cached, 64U);
}

TEST_F(CardDirectoryTest, NoAllocationOnHitsNorInSteadyStateLoadsAndPolls) {
  write_profile(redis(), "gold", make_profile(1000));
  constexpr std::uint32_t kCards = 96;
  constexpr std::size_t kBatch = 16;
  std::vector<PanToken> tokens;
  for (std::uint32_t i = 0; i < kCards; ++i) {
    tokens.push_back(token_of(i));
    write_card(redis(), tokens.back(), "acct-" + std::to_string(i), "gold");
  }
  CardDirectory::Options o = small_options();
  o.capacity = 32;  // loads evict
  Switch s(server(), o);
  Rig rig{&s};
  ASSERT_TRUE(rig.run_until([&] { return ready_and_polled(s); }));
  std::vector<LoadRecorder> r(kBatch);

  // One cycle: every card loaded in batches (evicting), each found, then a poll that applies
  // card drops and a profile reload.
  auto cycle = [&]() -> bool {
    for (std::size_t i = 0; i < kCards; i += kBatch) {
      for (std::size_t j = 0; j < kBatch; ++j) {
        r[j].calls = 0;
        if (s.d().load(tokens[i + j], r[j], rig.now() + 2s)) {
          return false;
        }
      }
      s.pipeline.flush();
      if (!rig.run_until([&] { return r[kBatch - 1].calls == 1; })) {
        return false;
      }
      for (std::size_t j = 0; j < kBatch; ++j) {
        if (r[j].status != CardStatus::kFound || s.d().find(tokens[i + j]) == nullptr) {
          return false;
        }
      }
    }
    const std::uint64_t applied = s.d().stats().feed_entries;
    const std::uint64_t reloads = s.d().stats().profile_loads;
    rig.advance(o.poll_interval);
    return rig.run_until([&] {
      return s.d().stats().feed_entries == applied + 5 && s.d().stats().profile_loads > reloads;
    });
  };
  // Feed entries are written before each cycle (hiredis allocates in this thread).
  auto announce = [&] {
    for (std::uint32_t i = 0; i < 4; ++i) {
      (void)write_change(redis(), kChangeCard, tokens[i].view());
    }
    (void)write_change(redis(), kChangeProfile, "gold");
  };
  announce();
  ASSERT_TRUE(cycle());
  announce();
  ASSERT_TRUE(cycle());
  announce();
  const std::uint64_t growths = s.pipeline.stats().reader_buffer_growths;
  const std::uint64_t evictions = s.d().stats().evictions;
  const auto before = support::alloc_snapshot();
  const bool ok = cycle();
  const auto after = support::alloc_snapshot();
  ASSERT_TRUE(ok);
  EXPECT_GT(s.d().stats().evictions, evictions);
  EXPECT_EQ(after.allocations - before.allocations, 0U);
  EXPECT_EQ(s.pipeline.stats().reader_buffer_growths - growths, 0U);
  if (support::jemalloc_counter_available()) {
    EXPECT_EQ(after.jemalloc_bytes - before.jemalloc_bytes, 0U);
  }

  // find() hits alone, many of them.
  const auto hits_before = support::alloc_snapshot();
  std::size_t hits = 0;
  for (int round = 0; round < 1000; ++round) {
    for (std::size_t i = kCards - 16; i < kCards; ++i) {
      hits += s.d().find(tokens[i]) != nullptr ? 1U : 0U;
    }
  }
  const auto hits_after = support::alloc_snapshot();
  EXPECT_EQ(hits, 16'000U);
  EXPECT_EQ(hits_after.allocations - hits_before.allocations, 0U);
}

// ---------------------------------------------------------------------------------------------
// The warmer ([redis] preload_cards): every card of the directory cached without a request.

CardWarmer::Options warmer_options() {
  CardWarmer::Options w;
  w.scan_count = 100;  // many SCAN calls for a few hundred cards
  w.max_loads = 16;    // below the directory's 64 pending loads
  return w;
}

// Drives `s` with its warmer until `done`.
template <typename Pred>
bool run_warmer(Rig& rig, Switch& s, CardWarmer& w, Pred done,
                Clock::duration step = Clock::duration::zero()) {
  return rig.run_until(
      [&] {
        w.on_tick(rig.now());
        s.pipeline.flush();
        return done();
      },
      step);
}

TEST_F(CardDirectoryTest, WarmerCachesEveryCardAndSkipsOtherKeys) {
  write_profile(redis(), "gold", make_profile(1000));
  constexpr std::uint32_t kCards = 700;
  for (std::uint32_t i = 0; i < kCards; ++i) {
    write_card(redis(), token_of(100'000 + i), "acct-" + std::to_string(i), "gold");
  }
  // Keys the warmer must pass over: an account's, and card-like keys that hold no token.
  (void)support::redis_command(redis(), {"SET", "as:{a:acct-1}", "x"});
  (void)support::redis_command(redis(), {"SET", "as:{c:not-a-token}", "x"});
  (void)support::redis_command(redis(), {"SET", "as:{c:" + str(token_of(1).view()) + "}x", "x"});
  Switch s(server(), small_options());
  CardWarmer w(s.pipeline, s.d(), warmer_options());
  Rig rig{&s};
  ASSERT_TRUE(run_warmer(rig, s, w, [&] { return w.done(); }));
  EXPECT_EQ(s.d().size(), kCards);
  EXPECT_EQ(w.stats().loaded, kCards);
  EXPECT_EQ(w.stats().load_failures, 0U);
  EXPECT_EQ(w.stats().passes, 1U);
  EXPECT_GE(w.stats().scans, kCards / 100);  // COUNT 100: several calls
  // Every card is a hit now: no miss, no load.
  const std::uint64_t loads = s.d().stats().loads;
  for (std::uint32_t i = 0; i < kCards; ++i) {
    ASSERT_NE(s.d().find(token_of(100'000 + i)), nullptr) << i;
  }
  EXPECT_EQ(s.d().stats().misses, 0U);
  EXPECT_EQ(s.d().stats().loads, loads);
}

TEST_F(CardDirectoryTest, WarmerStopsWhenTheCacheIsFullAndWarmsAgainAfterAResync) {
  write_profile(redis(), "gold", make_profile(1000));
  constexpr std::uint32_t kCards = 1100;  // more than the 1024 the cache holds
  for (std::uint32_t i = 0; i < kCards; ++i) {
    write_card(redis(), token_of(200'000 + i), "acct-" + std::to_string(i), "gold");
  }
  Switch s(server(), small_options());
  CardWarmer w(s.pipeline, s.d(), warmer_options());
  Rig rig{&s};
  ASSERT_TRUE(run_warmer(rig, s, w, [&] { return w.done(); }));
  EXPECT_EQ(s.d().size(), s.d().capacity());
  EXPECT_EQ(s.d().stats().evictions, 0U);  // it stopped at full, it did not churn the cache
  // The connection drops: the directory resyncs (every card dropped) and the warmer starts a
  // new pass.
  (void)support::redis_command(redis(), {"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
  ASSERT_TRUE(run_warmer(
      rig, s, w, [&] { return s.d().stats().resyncs == 2 && w.stats().passes == 2; }, 20ms));
  EXPECT_EQ(s.d().size(), s.d().capacity());
}

TEST(CardWarmerOptions, ZeroCountsAreRefused) {
  RedisPipeline::Options po;
  po.port = 1;  // never connected
  RedisPipeline pipeline(po);
  CardDirectory d(pipeline, small_options());
  CardWarmer::Options w;
  w.scan_count = 0;
  EXPECT_THROW(CardWarmer(pipeline, d, w), std::invalid_argument);
  w = CardWarmer::Options{};
  w.max_loads = 0;
  EXPECT_THROW(CardWarmer(pipeline, d, w), std::invalid_argument);
}

TEST(PanTokenParse, TakesOnlyRenderedTokens) {
  const PanToken t = token_of(42);
  const auto back = PanToken::parse(t.view());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, t);
  EXPECT_FALSE(PanToken::parse("").has_value());
  EXPECT_FALSE(PanToken::parse(str(t.view()).substr(1)).has_value());
  std::string upper(t.view());
  std::transform(upper.begin(), upper.end(), upper.begin(), [](char c) {
    return static_cast<char>(c >= 'a' && c <= 'f' ? c - 'a' + 'A' : c);
  });
  ASSERT_NE(upper, t.view());  // token_of() ends in 5a
  EXPECT_FALSE(PanToken::parse(upper).has_value());
  EXPECT_FALSE(PanToken::parse(std::string(PanToken::kChars, 'g')).has_value());
}

}  // namespace
}  // namespace authswitch::limits
