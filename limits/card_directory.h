#pragma once
// The shard's local read cache of the card directory and the limit profiles (issue 3), kept
// current through the change feed so that a change made with the admin CLI reaches every running
// switch within a second. Keys and fields are in limits/layout.h:
//   as:{c:<token>}  HASH   acct, prof          (read per card on a miss: HMGET)
//   as:p:<name>     HASH   15 profile limits   (read at startup and on change: HGETALL)
//   as:profiles     SET    profile names       (read at startup: SMEMBERS)
//   as:changes      STREAM {kind, id} entries  (polled: XREAD COUNT n STREAMS as:changes <id>)
//
// How the switch (issue 5) uses it, per message, on the shard thread:
//
//   if (const CardInfo* card = dir.find(token)) {          // hit: no I/O, no allocation
//     decide(dir.resolve(*card));                           // kFound / kProfileGone / kBadRecord
//   } else if (const auto err = dir.load(token, ctx, deadline)) {
//     stand_in(*err);                                       // kQueueFull / kDisconnected
//   }                                                       // else: ctx.on_card_loaded(result)
//
// and once per loop pass (or from a timer every few ms) dir.on_tick(now). load() only submits
// on the shard's RedisPipeline: the switch flushes the pipeline at the end of its batch as it
// does for its own commands. on_tick flushes what it submits itself. Replies reach the
// directory through the pipeline's completions, i.e. while the switch drives the pipeline.
//
// Results: kFound (card and limits), kNotFound (no directory entry: decline 14), kProfileGone
// (the card names a profile that does not exist: a configuration error), kBadRecord (the
// directory entry or the profile hash is malformed), kProfileTableFull (Options::max_profiles
// distinct profiles are known already) and kError (an operating error of the pipeline, a
// ClientErrc such as kTimeout: answer by stand-in).
//
// Consistency. Everything goes through one pipeline, one connection, in order:
//  - Startup and every reconnect (seen as a change of pipeline.stats().connects; a sync step
//    that fails is retried after poll_interval): every cached card is dropped, the feed position is
//    read first (XREVRANGE as:changes + - COUNT 1; "0-0" when empty), then every profile is
//    (re)loaded; then ready(). Reading the position before loading means a change made while
//    loading is applied by the next poll; dropping the cards covers changes missed while away.
//  - Every Options::poll_interval (at once again when a poll filled its batch) the feed is read
//    from the last id seen and applied in order: "card" drops that card, "cards" drops every
//    card, "profile" reloads that profile in place (its index stays, so cached cards see the
//    new limits at once; a profile that no longer exists becomes gone). A card load whose
//    reply came before a feed entry that drops it is not cached.
//  - A card is cached only when its HMGET was sent after the feed position of the current
//    connection was read, so any later change is in the part of the feed still to be polled.
//  - poll_interval must be < 1 s (the constructor refuses more), so while Redis answers, every
//    switch applies a change at most poll_interval plus two round trips (the poll, then the
//    profile's HGETALL) after it was written.
//  - While Redis is away, find() keeps answering from the cache (the switch decides by stand-in
//    meanwhile and may use the card's limits); the cards go when the connection comes back.
//  - The feed is trimmed to about kChangesMaxLen entries; a switch that falls that far behind
//    without reconnecting would miss entries (not detected).
//
// Memory: every table is sized at construction: the card table (Options::capacity entries of
// 96 bytes with room for kCardOverridesMax fraud-rule overrides, an index of 2 x capacity 4-byte
// slots and a 4-byte free list: 108 MiB per shard at the default 1 << 20), the profile table, the
// pending-load slots and the feed buffers. find(), load(), on_tick() and the completions never
// allocate. When the card table is full, a card is evicted (CLOCK second chance: cards found since
// the hand last passed are spared once).
//
// The pipeline's reply arena must hold the largest reply the directory asks for: a full feed
// batch (7 x feed_batch_max + 4 reply nodes) and the profile set (max_profiles + 1 nodes). With
// RedisPipeline::Options' defaults (1024 nodes) the defaults here fit; a larger reply would be
// a kProtocol error that closes the connection.
//
// Pointers returned by find() and resolve(), and those in a CardLoadResult, point into the
// directory's tables: they stay valid until the directory next changes, i.e. until the next
// on_tick, load completion or feed poll (the pipeline being driven). A load that may not be
// cached (see above) passes a card that lives only during the callback. Use them at once (copy
// the account id and limits into the request if it outlives that).
//
// Thread-safety: none, by design. One directory per shard thread, over that thread's pipeline,
// never shared (no locks, no atomics); callbacks run on that thread.
//
// Lifetime: the directory's own Completion objects are handed to the pipeline, so the pipeline
// must not call them after the directory is gone. Destroy the pipeline first (its destructor
// fails what is pending with kDisconnected, which the directory handles without touching the
// pipeline; e.g. declare the directory before the pipeline and construct it later), or destroy
// the directory only when none of its operations is pending (asserted by the destructor).

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "limits/holds_script.h"
#include "limits/layout.h"
#include "limits/pan_token.h"
#include "limits/redis_pipeline.h"

namespace authswitch::limits {

enum class CardStatus : std::uint8_t {
  kFound,             // the card and its limits
  kNotFound,          // no such card in the directory: decline 14
  kProfileGone,       // the card's profile does not exist (deleted, or never created)
  kBadRecord,         // the directory entry or the profile hash is malformed
  kProfileTableFull,  // Options::max_profiles distinct profiles are known already
  kError,             // an operating error (CardLoadResult::error): answer by stand-in
};

// "found", "not-found", ...: static storage.
[[nodiscard]] std::string_view to_string(CardStatus s) noexcept;

// A cached card: its account and the index of its limit profile in the directory.
struct CardInfo {
  std::array<char, kAccountIdMax> account{};
  std::uint8_t account_len = 0;
  std::uint8_t override_count = 0;
  std::uint16_t profile = 0;  // CardDirectory::profile(index)
  // The directory's copies of the card's status and expiry (YYMM, 0 unknown), for stateless
  // rules; the holds script checks the authoritative ones. Changes arrive with the feed.
  CardState state = CardState::kUnknown;
  std::uint16_t expiry_yymm = 0;
  // Fraud-rule overrides kept with the card (limits/layout.h), expired ones included: the
  // rules engine ignores those.
  std::array<CardOverrideRecord, kCardOverridesMax> overrides{};

  [[nodiscard]] std::span<const CardOverrideRecord> active_overrides() const noexcept {
    return {overrides.data(), override_count};
  }

  [[nodiscard]] std::string_view account_id() const noexcept {
    return {account.data(), account_len};
  }
};

// The outcome of find() + resolve(), or of load().
struct CardLoadResult {
  CardStatus status = CardStatus::kError;
  PanToken token;                           // the card asked for (load() only)
  const CardInfo* card = nullptr;           // kFound, kProfileGone, kBadRecord (profile side)
  const LimitProfile* limits = nullptr;     // kFound only
  ClientErrc error = ClientErrc::kTimeout;  // kError only
};

// What the caller of load() implements. Called exactly once per accepted load, on the shard
// thread, from within the pipeline's completions or on_tick (never from load()). The callback
// may call find() and load() again; it must not drive the pipeline.
class CardLoadCallback {
 public:
  virtual void on_card_loaded(const CardLoadResult& result) noexcept = 0;

 protected:
  CardLoadCallback() = default;
  CardLoadCallback(const CardLoadCallback&) = default;
  CardLoadCallback& operator=(const CardLoadCallback&) = default;
  CardLoadCallback(CardLoadCallback&&) = default;
  CardLoadCallback& operator=(CardLoadCallback&&) = default;
  virtual ~CardLoadCallback() = default;
};

class CardDirectory {
 public:
  using Clock = RedisPipeline::Clock;

  // What a profile slot holds.
  enum class ProfileState : std::uint8_t {
    kLoading,  // named, never loaded yet
    kLoaded,   // limits are current (a malformed reload keeps the last good limits)
    kGone,     // the hash does not exist
    kBad,      // malformed (or not a hash) and never loaded well
  };

  struct Options {
    std::size_t capacity = std::size_t{1} << 20;  // cached cards, rounded up to a power of two
    std::size_t max_profiles = 256;
    std::size_t max_pending_loads = 1024;  // load() calls awaiting Redis, at most
    Clock::duration poll_interval = std::chrono::milliseconds(200);     // must be < 1 s
    Clock::duration request_timeout = std::chrono::milliseconds(1000);  // own calls' deadline
    std::size_t feed_batch_max = 128;  // XREAD COUNT (see the reply-arena note above)
  };

  struct Stats {
    std::uint64_t hits = 0;    // find() found the card
    std::uint64_t misses = 0;  // find() did not
    std::uint64_t loads = 0;   // HMGETs sent by load()
    std::uint64_t not_found = 0;
    std::uint64_t load_errors = 0;  // loads completed with kError
    std::uint64_t evictions = 0;
    std::uint64_t dropped = 0;       // cards dropped by "card" entries
    std::uint64_t drop_alls = 0;     // "cards" entries and resyncs
    std::uint64_t feed_entries = 0;  // feed entries applied
    std::uint64_t feed_ignored = 0;  // malformed feed entries skipped
    std::uint64_t polls = 0;         // XREAD replies
    std::uint64_t poll_errors = 0;
    std::uint64_t resyncs = 0;            // startups and resyncs completed (ready() again)
    std::uint64_t profile_loads = 0;      // HGETALL replies
    std::uint64_t profile_errors = 0;     // malformed profiles, failed HGETALLs
    std::uint64_t profile_overflows = 0;  // names refused because the profile table was full
    std::uint64_t bad_overrides = 0;      // cards whose `ovr` field could not be parsed
  };

  // Allocates every table; submits nothing (the first on_tick does). Throws
  // std::invalid_argument on bad options (startup only).
  CardDirectory(RedisPipeline& pipeline, Options options);
  ~CardDirectory();
  CardDirectory(const CardDirectory&) = delete;
  CardDirectory& operator=(const CardDirectory&) = delete;
  CardDirectory(CardDirectory&&) = delete;
  CardDirectory& operator=(CardDirectory&&) = delete;

  // Starts the startup load and resyncs, polls the feed when due, retries failed profile
  // loads, and fails card loads waiting for a profile past their deadline. Call it every few
  // ms (at least as often as the deadline precision wanted), with the clock the pipeline gets.
  void on_tick(Clock::time_point now) noexcept;

  // Profiles loaded on the current connection and the feed position taken: the directory is in
  // sync. False before the startup load and during a resync (find() then misses; load() still
  // works but does not cache).
  [[nodiscard]] bool ready() const noexcept;

  // Hot path: the cached card, or nullptr (call load()). No I/O, no allocation. Marks the card
  // recently used (CLOCK) and counts a hit or miss. Never returns a card cached on a previous
  // connection.
  [[nodiscard]] const CardInfo* find(const PanToken& token) noexcept;

  // The card's limits: kFound with `limits`, or kProfileGone / kBadRecord.
  [[nodiscard]] CardLoadResult resolve(const CardInfo& card) const noexcept;

  // Miss path: reads the card (HMGET as:{c:<token>} acct prof) and, when its profile is new,
  // that profile, then calls done.on_card_loaded once. Returns nullopt when accepted, else the
  // error (nothing will be called): kQueueFull (no pending slot free, or the pipeline is full),
  // kDisconnected. `deadline` bounds the whole load. `done` must outlive the call back.
  [[nodiscard]] std::optional<ClientErrc> load(const PanToken& token, CardLoadCallback& done,
                                               Clock::time_point deadline) noexcept;

  // The profile table (indexes 0 .. profile_count() - 1; an index never changes meaning).
  [[nodiscard]] std::size_t profile_count() const noexcept { return profile_count_; }
  // The limits of profile `index`, or nullptr unless its state is kLoaded.
  [[nodiscard]] const LimitProfile* profile(std::uint16_t index) const noexcept;
  [[nodiscard]] ProfileState profile_state(std::uint16_t index) const noexcept;
  [[nodiscard]] std::string_view profile_name(std::uint16_t index) const noexcept;
  // Linear search by name: for tests and tools, not per message.
  [[nodiscard]] std::optional<std::uint16_t> find_profile(std::string_view name) const noexcept;

  [[nodiscard]] std::size_t size() const noexcept { return card_count_; }  // cached cards
  [[nodiscard]] std::size_t capacity() const noexcept { return card_capacity_; }
  // The id of the last feed entry applied (or of the position taken at sync).
  [[nodiscard]] std::string_view feed_position() const noexcept {
    return {last_id_.data(), last_id_len_};
  }
  [[nodiscard]] const Stats& stats() const noexcept { return stats_; }

 private:
  enum class Phase : std::uint8_t { kIdle, kPosition, kMembers, kProfiles, kReady };
  using Key = std::array<std::uint64_t, 2>;  // a token's 16 bytes
  struct Entry;
  class Control;
  class Profile;
  class Pending;

  // Sync and feed.
  bool check_connection() noexcept;
  void start_sync() noexcept;
  void fail_sync(ClientErrc errc) noexcept;
  void on_position(const Reply& reply) noexcept;
  void on_members(const Reply& reply) noexcept;
  bool submit_poll() noexcept;
  void on_poll(const Reply& reply) noexcept;
  void on_poll_error(ClientErrc errc) noexcept;
  void apply_entry(const Reply& entry) noexcept;
  bool set_last_id(std::string_view id) noexcept;

  // Profiles.
  [[nodiscard]] std::optional<std::uint16_t> find_or_add_profile(std::string_view name) noexcept;
  bool pump_profiles(Clock::time_point deadline_min = Clock::time_point::min()) noexcept;
  void on_profile_reply(Profile& p, const Reply& reply) noexcept;
  void on_profile_error(Profile& p, ClientErrc errc) noexcept;
  void profile_settled(Profile& p, std::optional<ClientErrc> failure) noexcept;
  void check_profiles_settled() noexcept;

  // Card loads.
  void on_card_reply(Pending& slot, const Reply& reply) noexcept;
  void on_card_error(Pending& slot, ClientErrc errc) noexcept;
  void finish_load(Pending& slot, CardStatus status, ClientErrc error) noexcept;
  void expire_waiting(Clock::time_point now) noexcept;
  void forget_waiting(const Key* key) noexcept;

  // The card table.
  [[nodiscard]] std::size_t slot_of(const Key& key) const noexcept;
  [[nodiscard]] std::int64_t lookup(const Key& key) const noexcept;
  Entry* insert(const Key& key, const CardInfo& info) noexcept;
  void erase_at(std::size_t slot) noexcept;
  void drop(const Key& key) noexcept;
  void drop_all() noexcept;
  void evict() noexcept;

  RedisPipeline& pipeline_;
  Options options_;
  Clock::time_point now_{};

  // Cards: entries_ (card_capacity_), index_ (2 x card_capacity_, entry + 1, 0 = empty,
  // linear probing, backward-shift deletion), free_ (a stack of entries freed one by one);
  // entries from next_unused_ on have held no card since the last drop_all.
  std::unique_ptr<Entry[]> entries_;
  std::unique_ptr<std::uint32_t[]> index_;
  std::unique_ptr<std::uint32_t[]> free_;
  std::size_t card_capacity_ = 0;
  std::size_t index_mask_ = 0;
  unsigned index_shift_ = 0;
  std::size_t free_count_ = 0;
  std::size_t next_unused_ = 0;
  std::size_t card_count_ = 0;
  std::size_t hand_ = 0;  // CLOCK hand over entries_

  std::unique_ptr<Profile[]> profiles_;
  std::size_t profile_count_ = 0;
  bool profiles_dirty_ = false;  // some profile has needs_reload set

  std::unique_ptr<Pending[]> pending_;
  std::unique_ptr<std::uint32_t[]> pending_free_;
  std::size_t pending_free_count_ = 0;
  std::size_t waiting_ = 0;  // pending loads waiting for a profile

  std::unique_ptr<Control> position_op_;
  std::unique_ptr<Control> members_op_;
  std::unique_ptr<Control> poll_op_;
  Phase phase_ = Phase::kIdle;
  std::uint64_t gen_ = 0;            // sync generation: bumped by every (re)sync
  std::uint64_t connects_seen_ = 0;  // pipeline.stats().connects when the sync started
  Clock::time_point retry_at_ = Clock::time_point::min();
  Clock::time_point next_poll_at_ = Clock::time_point::min();
  bool submitted_ = false;  // something was submitted since the last flush by on_tick

  std::array<char, 48> last_id_{};
  std::size_t last_id_len_ = 0;
  std::array<char, 24> batch_text_{};
  std::string_view batch_;  // feed_batch_max as text, a view into batch_text_

  Stats stats_;
};

}  // namespace authswitch::limits
