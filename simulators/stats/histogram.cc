#include "simulators/stats/histogram.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/assert.h"

namespace authswitch::netsim {

namespace {

// Layout (HdrHistogram's, with 7 bits of precision): values below 2 * 128 = 256 have one bucket
// each (indexes 0..255). A value v >= 256 with its highest set bit at position m (8 <= m <= 40)
// falls in one of the 128 buckets of [2^m, 2^(m+1)), each 2^(m-7) wide: index
// 256 + (m - 8) * 128 + (v >> (m - 7)) - 128. The width of a bucket is at most 1/128 of its
// lowest value, hence the relative error. Values above 2^40 are counted in the top bucket, whose
// highest value is the largest std::uint64_t (so percentile() reports max() there).
constexpr unsigned kBits = LatencyHistogram::kSubBucketBits;
constexpr std::uint64_t kSub = LatencyHistogram::kSubBucketCount;
constexpr std::uint64_t kExactLimit = 2 * kSub;   // values below it are exact
constexpr unsigned kLowestMagnitude = kBits + 1;  // 2^8 = kExactLimit
constexpr unsigned kHighestMagnitude = 40;        // 2^40 = kTrackableNsMax
constexpr std::size_t kBucketCount =
    static_cast<std::size_t>(kExactLimit + (kHighestMagnitude - kLowestMagnitude + 1) * kSub);

static_assert(std::uint64_t{1} << kLowestMagnitude == kExactLimit);
static_assert(std::uint64_t{1} << kHighestMagnitude == LatencyHistogram::kTrackableNsMax);
static_assert(kBucketCount == 4480);

// a * b as 128 bits {low, high}, without __int128 (ISO C++ has none; -Wpedantic).
struct Wide {
  std::uint64_t low;
  std::uint64_t high;
};

constexpr Wide multiply_wide(std::uint64_t a, std::uint64_t b) noexcept {
  const std::uint64_t a_low = a & 0xFFFF'FFFFU;
  const std::uint64_t a_high = a >> 32;
  const std::uint64_t b_low = b & 0xFFFF'FFFFU;
  const std::uint64_t b_high = b >> 32;
  const std::uint64_t low_low = a_low * b_low;
  const std::uint64_t high_low = a_high * b_low;
  const std::uint64_t low_high = a_low * b_high;
  const std::uint64_t high_high = a_high * b_high;
  const std::uint64_t middle = (low_low >> 32) + (high_low & 0xFFFF'FFFFU) + low_high;
  return {(middle << 32) | (low_low & 0xFFFF'FFFFU), high_high + (high_low >> 32) + (middle >> 32)};
}

static_assert(multiply_wide(UINT64_MAX, UINT64_MAX).low == 1);
static_assert(multiply_wide(UINT64_MAX, UINT64_MAX).high == UINT64_MAX - 1);
static_assert(multiply_wide(std::uint64_t{1} << 40, std::uint64_t{1} << 30).high == 1 << 6);

}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(kBucketCount, 0) {}

std::size_t LatencyHistogram::bucket_count() noexcept { return kBucketCount; }

std::size_t LatencyHistogram::bucket_index(std::uint64_t value_ns) noexcept {
  if (value_ns < kExactLimit) {
    return static_cast<std::size_t>(value_ns);
  }
  if (value_ns > kTrackableNsMax) {
    return kBucketCount - 1;
  }
  const auto magnitude = static_cast<unsigned>(std::bit_width(value_ns) - 1);  // 8..40
  const std::uint64_t sub = value_ns >> (magnitude - kBits);                   // 128..255
  return static_cast<std::size_t>(kExactLimit + (magnitude - kLowestMagnitude) * kSub +
                                  (sub - kSub));
}

std::uint64_t LatencyHistogram::bucket_highest(std::size_t index) noexcept {
  AS_DASSERT(index < kBucketCount);
  if (index < kExactLimit) {
    return index;
  }
  if (index == kBucketCount - 1) {
    return UINT64_MAX;
  }
  const std::uint64_t offset = index - kExactLimit;
  const auto magnitude = static_cast<unsigned>(offset / kSub) + kLowestMagnitude;
  const std::uint64_t sub = kSub + offset % kSub;
  const unsigned shift = magnitude - kBits;
  return ((sub + 1) << shift) - 1;
}

void LatencyHistogram::record(std::uint64_t value_ns) noexcept {
  ++counts_[bucket_index(value_ns)];
  ++count_;
  min_ = std::min(min_, value_ns);
  max_ = std::max(max_, value_ns);
  sum_low_ += value_ns;
  sum_high_ += sum_low_ < value_ns ? 1 : 0;
}

void LatencyHistogram::record_n(std::uint64_t value_ns, std::uint64_t count) noexcept {
  if (count == 0) {
    return;
  }
  counts_[bucket_index(value_ns)] += count;
  count_ += count;
  min_ = std::min(min_, value_ns);
  max_ = std::max(max_, value_ns);
  const Wide added = multiply_wide(value_ns, count);
  sum_low_ += added.low;
  sum_high_ += added.high + (sum_low_ < added.low ? 1 : 0);
}

void LatencyHistogram::merge(const LatencyHistogram& other) noexcept {
  AS_ASSERT(counts_.size() == other.counts_.size());
  if (other.count_ == 0) {
    return;
  }
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    counts_[i] += other.counts_[i];
  }
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_low_ += other.sum_low_;
  sum_high_ += other.sum_high_ + (sum_low_ < other.sum_low_ ? 1 : 0);
}

void LatencyHistogram::reset() noexcept {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
  sum_low_ = 0;
  sum_high_ = 0;
}

std::uint64_t LatencyHistogram::min() const noexcept { return count_ == 0 ? 0 : min_; }

double LatencyHistogram::mean() const noexcept {
  if (count_ == 0) {
    return 0;
  }
  const double sum = std::ldexp(static_cast<double>(sum_high_), 64) + static_cast<double>(sum_low_);
  return sum / static_cast<double>(count_);
}

std::uint64_t LatencyHistogram::percentile(double q) const noexcept {
  if (count_ == 0) {
    return 0;
  }
  // NaN becomes 0 too: !(q > 0) holds for it.
  const double clamped = !(q > 0) ? 0.0 : std::min(q, 1.0);
  // The rank of the value wanted, 1-based. Rank 0 (q = 0) is reached before the first value:
  // the lowest bucket, clamped to min(). Rounding of q * count cannot go beyond the last value.
  const double wanted = std::ceil(clamped * static_cast<double>(count_));
  if (!(wanted >= 1)) {
    return min_;
  }
  const std::uint64_t rank =
      wanted >= static_cast<double>(count_) ? count_ : static_cast<std::uint64_t>(wanted);
  std::uint64_t cumulative = 0;
  for (std::size_t i = bucket_index(min_); i < counts_.size(); ++i) {
    cumulative += counts_[i];
    if (cumulative >= rank) {
      return std::clamp(bucket_highest(i), min_, max_);
    }
  }
  AS_ASSERT(false && "bucket counts sum to less than count()");
  return max_;
}

std::vector<LatencyHistogram::CurvePoint> LatencyHistogram::percentile_curve() const {
  std::vector<CurvePoint> points;
  if (count_ == 0) {
    return points;
  }
  // 1 - q runs 1, 0.5, 0.25, 0.1, 0.05, 0.025, 0.01, ... 1e-6: two halvings then a step to the
  // next decade, so the decade ticks of the plot (90%, 99%, 99.9%) are points of their own.
  constexpr std::array<double, 3> kSteps = {1.0, 0.5, 0.25};
  constexpr int kDecades = 6;
  for (int decade = 0; decade <= kDecades; ++decade) {
    for (const double step : kSteps) {
      if (decade == kDecades && step != 1.0) {
        break;
      }
      const double tail = step * std::pow(10.0, -decade);
      const double q = 1.0 - tail;
      points.push_back({q, percentile(q)});
    }
  }
  points.push_back({1.0, max_});
  AS_ASSERT(points.size() <= 64);
  return points;
}

}  // namespace authswitch::netsim
