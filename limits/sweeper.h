#pragma once
// The expiry sweep (issue 3): a pending hold past its timeout returns its amount lazily when
// its account is next touched (holds.lua), and through this sweeper for accounts nobody
// touches. Cheap at millions of holds: the sweeper never scans holds or accounts. It reads the
// due index `as:due` (limits/layout.h: account -> earliest pending expiry, ms), takes the
// accounts due now in batches (ZRANGEBYSCORE ... LIMIT), runs the holds script's `sweep` op on
// each (one FCALL on that account's keys: bounded work, Redis Cluster safe), and sets each
// account's index entry to the next expiry the script reports, or removes it, by a
// compare-and-set (due.lua) that keeps any earlier expiry a switch noted meanwhile.
//
// The index is kept by whoever places holds: after an approved auth or incremental auth, the
// switch queues DueNote's `ZADD as:due LT <expiry ms> <account>` in the same pipelined write.
// A lost note only delays the return of funds until the account is next touched (the lazy
// pass); a stale entry (hold already captured, reversed or expired) costs one cheap sweep call
// that finds nothing and removes the entry.
//
// Sweeper is driven like RedisPipeline (limits/redis_pipeline.h): it only submits on the
// shard's pipeline from on_tick and handles its own completions; one pass at a time; all
// memory is sized at construction (one slot per account of a batch), so a pass allocates
// nothing. Wall-clock time (ms since the epoch, the holds script's clock) is passed in, so
// tests inject it.
//
// Thread-safety: none; it belongs to the thread that drives its pipeline.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "limits/holds_script.h"
#include "limits/redis_pipeline.h"

namespace authswitch::limits {

// `ZADD as:due LT <expiry_ms> <account>`: the note a switch queues after placing or extending a
// hold. A value in fixed storage; its views point into itself (not copied or moved).
class DueNote {
 public:
  DueNote() = default;
  DueNote(const DueNote&) = delete;
  DueNote& operator=(const DueNote&) = delete;

  // False when `account` is not a valid account id (limits::valid_name).
  [[nodiscard]] bool set(std::string_view account, std::int64_t expiry_ms) noexcept;
  [[nodiscard]] std::span<const std::string_view> args() const noexcept { return args_; }

 private:
  std::array<char, kAccountIdMax> account_{};
  std::array<char, 24> expiry_{};
  std::array<std::string_view, 5> args_{};
};

class Sweeper {
 public:
  using Clock = RedisPipeline::Clock;

  struct Options {
    std::size_t accounts_per_batch = 256;  // one ZRANGEBYSCORE ... LIMIT, then one call each
    std::int64_t holds_per_call = 64;      // due holds one sweep call expires, at most
    Clock::duration interval = std::chrono::seconds(1);  // between passes that found nothing
    Clock::duration timeout = std::chrono::seconds(2);   // deadline of each Redis call
  };

  struct Stats {
    std::uint64_t passes = 0;         // batches read from the index
    std::uint64_t accounts = 0;       // sweep calls answered
    std::uint64_t holds_expired = 0;  // holds the sweep calls expired
    std::uint64_t entries_removed = 0;
    std::uint64_t entries_kept = 0;  // compare-and-set found a newer note and kept it
    std::uint64_t errors = 0;        // Redis errors and timeouts (retried next pass)
  };

  // Registers the holds library and due.lua on `pipeline` (startup: may throw).
  Sweeper(RedisPipeline& pipeline, Options options);
  ~Sweeper();
  Sweeper(const Sweeper&) = delete;
  Sweeper& operator=(const Sweeper&) = delete;
  Sweeper(Sweeper&&) = delete;
  Sweeper& operator=(Sweeper&&) = delete;

  // Starts a pass when none is running and the interval since the last one passed (at once
  // after a pass that filled its batch, since more may be due). `now_ms`: the wall clock, in
  // the same epoch as the `now` the switch passes to the holds script.
  void on_tick(Clock::time_point now, std::int64_t now_ms) noexcept;

  // True while a pass waits for Redis.
  [[nodiscard]] bool busy() const noexcept { return outstanding_ > 0; }
  [[nodiscard]] const Stats& stats() const noexcept { return stats_; }

 private:
  class IndexRead;
  class Slot;

  void on_index(const Reply& reply) noexcept;
  void on_slot_done() noexcept;
  void on_error() noexcept;

  RedisPipeline& pipeline_;
  Options options_;
  std::string_view holds_function_;
  std::string_view due_sha_;
  std::unique_ptr<IndexRead> index_read_;
  std::unique_ptr<Slot[]> slots_;
  std::size_t outstanding_ = 0;  // completions still to come in this pass
  std::size_t batch_size_ = 0;   // entries the last index read returned
  Clock::time_point now_{};
  std::int64_t now_ms_ = 0;
  Clock::time_point next_pass_ = Clock::time_point::min();
  std::array<char, 24> batch_text_{};
  std::string_view batch_;  // a view into batch_text_
  std::size_t pass_errors_ = 0;
  Stats stats_;
};

}  // namespace authswitch::limits
