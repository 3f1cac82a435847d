#pragma once
// Metrics: the switch's Prometheus counters (issue 5; DESIGN.md sections 1 and 6). Shard threads
// count requests, responses by code, latency, Redis batches and round trips, connections and
// queue depths on the hot path; render() sums every shard into Prometheus text exposition format
// 0.0.4 for GET /metrics (switch/http_endpoint.h).
//
// Hot path: each shard has its own ShardMetrics whose cells are std::atomic 64-bit integers
// in 64-byte aligned blocks allocated at construction, so two shards never write the same cache
// line. An update is a relaxed fetch_add (two for a histogram: bucket and sum; a store for a
// queue depth) into a fixed slot: no lock, no allocation, no exception. Networks and queues are
// indexes fixed at construction (network_index / queue_index resolve names once, at startup).
//
// Series (all prefixed authswitch_; label values are escaped per the format):
//   requests_total{network,mti}                       counter
//   responses_total{network,mti,code}                 counter (a series appears once non-zero)
//   request_duration_seconds{network}                 histogram, 50 us .. 10 s, log-linear
//   redis_batch_size                                  histogram, 1 .. 256
//   redis_round_trips_total, redis_errors_total       counters
//   connections{network}                              gauge (sum of the shards' deltas)
//   queue_depth{queue}                                gauge (sum of the shards' last values)
// mti is one of 0100 0200 0120 0220 0400 0420 0800 other (repeats count with their original);
// code is one of kResponseCodes or "other".
//
// Ownership: Metrics owns every shard's cells; shard(i) references stay valid for its lifetime.
//
// Thread-safety: any number of threads may update a ShardMetrics (it is meant for its shard's
// thread only, but updates are atomic read-modify-writes, so a stray update from another thread
// is not lost). render() may run on any thread at the same time: it reads with relaxed loads, so
// it sees every value whole, but a scrape during updates is a moment's approximation (a
// histogram's _count always equals its +Inf bucket, since both come from the same reads).

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace authswitch::switching {

// Message classes counted separately (DESIGN.md section 3).
enum class MtiClass : std::uint8_t {
  kAuthorization,        // 0100, 0101
  kFinancial,            // 0200, 0201
  kAuthorizationAdvice,  // 0120, 0121
  kFinancialAdvice,      // 0220, 0221
  kReversal,             // 0400, 0401
  kReversalAdvice,       // 0420, 0421
  kNetwork,              // 0800, 0801
  kOther,
};
inline constexpr std::size_t kMtiClassCount = 8;

// The four-digit MTI of a request ("0101" counts as 0100); anything else is kOther.
[[nodiscard]] MtiClass classify_mti(std::string_view mti) noexcept;
// The label value: "0100" ... "0800", "other".
[[nodiscard]] std::string_view mti_label(MtiClass c) noexcept;

// The ISO 8583:1987 response codes the switch sends (DESIGN.md section 3), each its own series;
// any other code is counted as "other".
inline constexpr std::array<std::string_view, 21> kResponseCodes = {
    "00", "05", "10", "12", "13", "14", "30", "41", "43", "51", "54",
    "55", "57", "59", "61", "62", "65", "75", "91", "94", "96"};
inline constexpr std::size_t kResponseCodeOther = kResponseCodes.size();
// kResponseCodes' index of `code`, or kResponseCodeOther.
[[nodiscard]] std::size_t response_code_index(std::string_view code) noexcept;

// Upper bounds (inclusive, microseconds) of the latency histogram: 1, 1.5, 2, 3, 5, 7.5 per
// decade from 50 us to 10 s. Observations above the last fall in +Inf only.
inline constexpr std::array<std::uint64_t, 33> kLatencyBoundsUs = {
    50,        75,        100,       150,       200,       300,       500,     750,     1'000,
    1'500,     2'000,     3'000,     5'000,     7'500,     10'000,    15'000,  20'000,  30'000,
    50'000,    75'000,    100'000,   150'000,   200'000,   300'000,   500'000, 750'000, 1'000'000,
    1'500'000, 2'000'000, 3'000'000, 5'000'000, 7'500'000, 10'000'000};
// Upper bounds (inclusive) of the Redis batch size histogram (calls per pipeline flush).
inline constexpr std::array<std::uint64_t, 9> kBatchBounds = {1, 2, 4, 8, 16, 32, 64, 128, 256};

class Metrics;

// One shard's counters. Obtained from Metrics::shard(); not constructible elsewhere.
class ShardMetrics {
 public:
  ShardMetrics(const ShardMetrics&) = delete;
  ShardMetrics& operator=(const ShardMetrics&) = delete;
  ShardMetrics(ShardMetrics&&) = delete;
  ShardMetrics& operator=(ShardMetrics&&) = delete;
  ~ShardMetrics();

  // REQUIRES (every method): network < the number of networks, queue < the number of queues.
  void request(std::size_t network, MtiClass mti) noexcept;
  // `code` is DE 39 as sent; a code outside kResponseCodes counts as "other".
  void response(std::size_t network, MtiClass mti, std::string_view code) noexcept;
  // Arrival to response written. Negative durations count as 0.
  void latency(std::size_t network, std::chrono::nanoseconds d) noexcept;
  // Calls sent to Redis in one pipeline flush.
  void batch(std::size_t size) noexcept;
  void redis_round_trip() noexcept;
  void redis_error() noexcept;
  // +1 on accept, -1 on close.
  void connections(std::size_t network, std::int64_t delta) noexcept;
  // This shard's current depth of queue `queue` (replaces the last value).
  void queue_depth(std::size_t queue, std::int64_t value) noexcept;
  // The same by name (a scan over the few configured names; no allocation).
  // REQUIRES: `name` was given to the Metrics constructor.
  void queue_depth(std::string_view name, std::int64_t value) noexcept;
  // This shard's running total of event `event` (replaces the last value; the shard keeps the
  // count, this publishes it). REQUIRES: event < the number of event names.
  void event_total(std::size_t event, std::uint64_t total) noexcept;

 private:
  friend class Metrics;
  // 64 bytes: one cache line of cells.
  struct alignas(64) Line {
    std::array<std::atomic<std::uint64_t>, 8> cells{};
  };

  ShardMetrics(const Metrics& owner, std::size_t cells);
  [[nodiscard]] std::atomic<std::uint64_t>& cell(std::size_t i) noexcept;
  [[nodiscard]] std::uint64_t read(std::size_t i) const noexcept;
  void add(std::size_t i, std::uint64_t n) noexcept;

  const Metrics& owner_;
  std::size_t cells_;
  std::vector<Line> lines_;  // sized once (never grows: atomics do not move)
};

class Metrics {
 public:
  // `network_names` in configuration order (the indexes ShardMetrics takes); `queue_names` the
  // queues whose depth is reported; `event_names` the events counted (authswitch_events_total).
  // Throws std::invalid_argument when shards is 0 or above 1024, a name is empty or repeated,
  // or there are more than 256 networks, 64 queues or 64 events.
  Metrics(std::size_t shards, std::vector<std::string> network_names,
          std::vector<std::string> queue_names = {}, std::vector<std::string> event_names = {});
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;
  Metrics(Metrics&&) = delete;
  Metrics& operator=(Metrics&&) = delete;

  // REQUIRES: i < shard_count().
  [[nodiscard]] ShardMetrics& shard(std::size_t i) noexcept;
  [[nodiscard]] std::size_t shard_count() const noexcept { return shards_.size(); }
  [[nodiscard]] std::optional<std::size_t> network_index(std::string_view name) const noexcept;
  [[nodiscard]] std::optional<std::size_t> queue_index(std::string_view name) const noexcept;

  // Every series, summed over the shards, in text format 0.0.4 (one allocation-heavy pass; for
  // the scrape thread).
  [[nodiscard]] std::string render() const;

 private:
  friend class ShardMetrics;
  // Offsets of each family in a shard's cells.
  [[nodiscard]] std::size_t request_cell(std::size_t network, MtiClass mti) const noexcept;
  [[nodiscard]] std::size_t response_cell(std::size_t network, MtiClass mti,
                                          std::size_t code) const noexcept;
  [[nodiscard]] std::size_t latency_cell(std::size_t network, std::size_t bucket) const noexcept;
  [[nodiscard]] std::size_t batch_cell(std::size_t bucket) const noexcept;
  [[nodiscard]] std::uint64_t sum(std::size_t cell) const noexcept;
  void render_counters(std::string& out) const;
  void render_latency(std::string& out) const;
  void render_batches(std::string& out) const;
  void render_gauges(std::string& out) const;
  void render_events(std::string& out) const;

  std::vector<std::string> networks_;
  std::vector<std::string> queues_;
  std::vector<std::string> events_;
  // Layout of a shard's cells (see the *_cell functions).
  std::size_t responses_at_ = 0;
  std::size_t latency_at_ = 0;
  std::size_t batch_at_ = 0;
  std::size_t redis_at_ = 0;  // round trips, errors
  std::size_t connections_at_ = 0;
  std::size_t queues_at_ = 0;
  std::size_t events_at_ = 0;
  std::size_t cells_ = 0;
  std::vector<std::unique_ptr<ShardMetrics>> shards_;
};

}  // namespace authswitch::switching
