#pragma once
// Warms a shard's card cache (limits/card_directory.h) from Redis after each (re)sync, so a
// switch that has just started or reconnected does not pay the card's HMGET, a second Redis
// round trip, on the first request of every card ([redis] preload_cards).
//
// How: once the directory is ready, SCAN the card directory keys (as:{c:*}, COUNT
// Options::scan_count per call) and load() every card found through the directory itself, at
// most Options::max_loads at a time, so a warm-up never takes the directory's pending-load
// slots or the pipeline from the traffic. Loading through load() keeps the directory's
// consistency rules (a card is cached only when read after the feed position; a change-feed
// entry that drops a card wins over a load in flight). A pass ends when SCAN's cursor comes
// back to 0, or when the cache is full (the directory's capacity: the rest is loaded on
// demand); a resync of the directory (reconnect) starts a new pass. SCAN may return a key
// twice or miss keys added meanwhile: a warm-up is best effort, misses still load on demand.
//
// Cost: one SCAN per scan_count keys of the whole keyspace (accounts and holds included) and
// one HMGET per card, each shard on its own (every shard has its own cache). Memory: the keys
// of one SCAN reply are copied into a vector sized at construction (it grows only if Redis
// returns more than 4 x scan_count keys in one reply).
//
// Thread-safety: none; the shard's thread, over that thread's pipeline and directory.
// Lifetime: as the directory's: destroy the pipeline first (it fails what is pending), or only
// when nothing is pending.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "limits/card_directory.h"
#include "limits/pan_token.h"
#include "limits/redis_pipeline.h"

namespace authswitch::limits {

class CardWarmer final : private Completion, private CardLoadCallback {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    std::size_t scan_count = 1000;  // SCAN COUNT
    std::size_t max_loads = 128;    // card loads of the warm-up in flight, at most
    Clock::duration call_timeout = std::chrono::seconds(2);
    Clock::duration retry_after = std::chrono::milliseconds(500);  // after a failed SCAN
  };

  struct Stats {
    std::uint64_t passes = 0;         // complete passes (cursor back to 0, or cache full)
    std::uint64_t scans = 0;          // SCAN replies
    std::uint64_t scan_errors = 0;    // failed SCANs (retried from the same cursor)
    std::uint64_t keys = 0;           // card keys seen
    std::uint64_t loaded = 0;         // loads that found the card
    std::uint64_t load_failures = 0;  // loads that did not (gone, bad record, error): on demand
  };

  // Throws std::invalid_argument when scan_count or max_loads is 0.
  CardWarmer(RedisPipeline& pipeline, CardDirectory& directory, Options options);
  ~CardWarmer() override;
  CardWarmer(const CardWarmer&) = delete;
  CardWarmer& operator=(const CardWarmer&) = delete;
  CardWarmer(CardWarmer&&) = delete;
  CardWarmer& operator=(CardWarmer&&) = delete;

  // Drives the warm-up: call it from the shard's tick, after the directory's on_tick. Submits
  // on the pipeline (the caller flushes it, as for its own commands).
  void on_tick(Clock::time_point now) noexcept;

  // The pass of the directory's current sync is complete.
  [[nodiscard]] bool done() const noexcept { return done_; }
  [[nodiscard]] const Stats& stats() const noexcept { return stats_; }

 private:
  void on_reply(const Reply& reply) noexcept override;                         // SCAN
  void on_error(ClientErrc errc, std::string_view message) noexcept override;  // SCAN
  void on_card_loaded(const CardLoadResult& result) noexcept override;
  void restart() noexcept;
  void finish() noexcept;

  RedisPipeline& pipeline_;
  CardDirectory& directory_;
  Options options_;
  std::string count_text_;
  std::string cursor_ = "0";
  std::vector<PanToken> keys_;  // of the last SCAN reply, loaded from next_key_ on
  std::size_t next_key_ = 0;
  std::size_t loads_in_flight_ = 0;
  std::uint64_t sync_seen_ = UINT64_MAX;  // the directory's resyncs count of this pass
  bool scan_in_flight_ = false;
  bool scan_finished_ = false;  // the cursor came back to 0
  bool done_ = false;
  Clock::time_point now_{};
  Clock::time_point retry_at_{};
  Stats stats_;
};

}  // namespace authswitch::limits
