#pragma once
// LatencyHistogram: an HDR-style log-linear histogram of latencies in nanoseconds, for the
// card-network simulator's reports (issue 6).
//
// Every power-of-two range is cut into 2^7 = 128 linear sub-buckets, so any value is kept with a
// relative error below 1/128 (~0.8%); values from 0 to 2^40 ns (~18 minutes) have their own
// buckets, larger ones are counted in the top bucket (min() and max() stay exact). Values below
// 256 ns are kept exactly.
//
// Ownership: the histogram owns its bucket array, allocated once in the constructor; record(),
// record_n(), merge() and reset() never allocate. It is a value type (copyable, movable).
// Thread-safety: none. Keep one per thread, then merge() them on one thread.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace authswitch::netsim {

class LatencyHistogram {
 public:
  // 7 bits of sub-bucket precision: a relative error below 1/128.
  static constexpr unsigned kSubBucketBits = 7;
  static constexpr std::uint64_t kSubBucketCount = std::uint64_t{1} << kSubBucketBits;
  // The highest value with a bucket of its own; larger values land in the top bucket.
  static constexpr std::uint64_t kTrackableNsMax = std::uint64_t{1} << 40;

  LatencyHistogram();

  void record(std::uint64_t value_ns) noexcept;
  void record_n(std::uint64_t value_ns, std::uint64_t count) noexcept;
  void merge(const LatencyHistogram& other) noexcept;
  void reset() noexcept;

  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  [[nodiscard]] std::uint64_t min() const noexcept;                  // exact; 0 when empty
  [[nodiscard]] std::uint64_t max() const noexcept { return max_; }  // exact; 0 when empty
  [[nodiscard]] double mean() const noexcept;                        // 0 when empty

  // The value at quantile q in [0, 1] (q = 0.99 for p99): the smallest bucket whose cumulative
  // count reaches ceil(q * count), reported as that bucket's highest value, clamped to
  // [min(), max()]. 0 when empty. q outside [0, 1] is clamped to it.
  [[nodiscard]] std::uint64_t percentile(double q) const noexcept;

  struct CurvePoint {
    double quantile;
    std::uint64_t value_ns;
  };
  // Points for a percentile plot: quantiles 0, 0.5, 0.75, 0.9, ... approaching 1 in halving
  // steps up to 1 - 1/10^6, then 1 (max); at most 64 points. Empty when the histogram is.
  [[nodiscard]] std::vector<CurvePoint> percentile_curve() const;

  // The number of buckets (the size of the array allocated in the constructor).
  [[nodiscard]] static std::size_t bucket_count() noexcept;

 private:
  [[nodiscard]] static std::size_t bucket_index(std::uint64_t value_ns) noexcept;
  [[nodiscard]] static std::uint64_t bucket_highest(std::size_t index) noexcept;

  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
  // The exact sum of every recorded value, as 128 bits (two words) so it cannot overflow.
  std::uint64_t sum_low_ = 0;
  std::uint64_t sum_high_ = 0;
};

}  // namespace authswitch::netsim
