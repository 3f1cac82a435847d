#include "simulators/stats/histogram.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/alloc_counter.h"

namespace authswitch::netsim {
namespace {

constexpr std::array<double, 7> kQuantiles = {0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1};

// The exact value at quantile q, by the histogram's own definition of rank: ceil(q * n), where
// rank 0 (q = 0) is the minimum.
std::uint64_t exact_percentile(const std::vector<std::uint64_t>& sorted, double q) {
  const double wanted = std::ceil(q * static_cast<double>(sorted.size()));
  auto rank = static_cast<std::size_t>(std::max(wanted, 1.0));
  rank = std::min(rank, sorted.size());
  return sorted[rank - 1];
}

double exact_mean(const std::vector<std::uint64_t>& values) {
  const std::uint64_t sum = std::accumulate(values.begin(), values.end(), std::uint64_t{0});
  return static_cast<double>(sum) / static_cast<double>(values.size());
}

// The reported value is the top of the exact value's bucket: never below it, and above it by
// less than 1/128 of it (plus 1 ns for tiny values).
void expect_close(std::uint64_t reported, std::uint64_t exact, const std::string& what) {
  EXPECT_GE(reported, exact) << what;
  EXPECT_LE(static_cast<double>(reported - std::min(reported, exact)),
            static_cast<double>(exact) / 128.0 + 1.0)
      << what << ": reported " << reported << ", exact " << exact;
}

void expect_matches_brute_force(const std::vector<std::uint64_t>& values, const char* name) {
  LatencyHistogram h;
  for (const std::uint64_t v : values) {
    h.record(v);
  }
  std::vector<std::uint64_t> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(h.count(), values.size()) << name;
  EXPECT_EQ(h.min(), sorted.front()) << name;
  EXPECT_EQ(h.max(), sorted.back()) << name;
  EXPECT_DOUBLE_EQ(h.mean(), exact_mean(values)) << name;
  for (const double q : kQuantiles) {
    expect_close(h.percentile(q), exact_percentile(sorted, q),
                 std::string(name) + " q=" + std::to_string(q));
  }
  EXPECT_EQ(h.percentile(0), sorted.front()) << name;
  EXPECT_EQ(h.percentile(1), sorted.back()) << name;
  for (const LatencyHistogram::CurvePoint& p : h.percentile_curve()) {
    expect_close(p.value_ns, exact_percentile(sorted, p.quantile),
                 std::string(name) + " curve q=" + std::to_string(p.quantile));
  }
}

std::uint64_t to_ns(double v) { return static_cast<std::uint64_t>(std::max(v, 0.0)); }

constexpr std::size_t kSamples = 300'000;

TEST(LatencyHistogram, UniformMatchesBruteForce) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<std::uint64_t> dist(0, 10'000'000);
  std::vector<std::uint64_t> values(kSamples);
  std::generate(values.begin(), values.end(), [&] { return dist(rng); });
  expect_matches_brute_force(values, "uniform");
}

TEST(LatencyHistogram, LogNormalMatchesBruteForce) {
  std::mt19937_64 rng(2);
  std::lognormal_distribution<double> dist(std::log(200'000.0), 0.8);
  std::vector<std::uint64_t> values(kSamples);
  std::generate(values.begin(), values.end(), [&] { return to_ns(dist(rng)); });
  expect_matches_brute_force(values, "log-normal");
}

TEST(LatencyHistogram, BimodalMatchesBruteForce) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> fast(80'000.0, 5'000.0);
  std::normal_distribution<double> slow(2'500'000.0, 300'000.0);
  std::bernoulli_distribution pick_slow(0.07);
  std::vector<std::uint64_t> values(kSamples);
  std::generate(values.begin(), values.end(),
                [&] { return to_ns(pick_slow(rng) ? slow(rng) : fast(rng)); });
  expect_matches_brute_force(values, "bimodal");
}

TEST(LatencyHistogram, ConstantIsExact) {
  const std::vector<std::uint64_t> values(kSamples, 123'457);
  expect_matches_brute_force(values, "constant");
  LatencyHistogram h;
  for (const std::uint64_t v : values) {
    h.record(v);
  }
  // Clamped to [min, max], every percentile of a constant is the constant itself.
  for (const double q : kQuantiles) {
    EXPECT_EQ(h.percentile(q), 123'457U) << q;
  }
  EXPECT_DOUBLE_EQ(h.mean(), 123'457.0);
}

TEST(LatencyHistogram, OutliersMatchBruteForce) {
  std::mt19937_64 rng(4);
  std::normal_distribution<double> body(150'000.0, 20'000.0);
  std::uniform_int_distribution<std::uint64_t> outlier(1'000'000'000, 30'000'000'000);
  std::bernoulli_distribution pick_outlier(0.0005);
  std::vector<std::uint64_t> values(kSamples);
  std::generate(values.begin(), values.end(),
                [&] { return pick_outlier(rng) ? outlier(rng) : to_ns(body(rng)); });
  expect_matches_brute_force(values, "outliers");
}

TEST(LatencyHistogram, TinyValuesAreExact) {
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<std::uint64_t> dist(0, 255);
  std::vector<std::uint64_t> values(kSamples);
  std::generate(values.begin(), values.end(), [&] { return dist(rng); });
  expect_matches_brute_force(values, "tiny");
  LatencyHistogram h;
  for (const std::uint64_t v : values) {
    h.record(v);
  }
  std::sort(values.begin(), values.end());
  for (const double q : kQuantiles) {
    EXPECT_EQ(h.percentile(q), exact_percentile(values, q)) << q;
  }
}

// Every bucket boundary up to 2^40 (beyond it values share the top bucket): a value's bucket top is
// at or above it and within 1/128.
TEST(LatencyHistogram, BucketTopsStayWithinRelativeError) {
  std::vector<std::uint64_t> probes;
  for (std::uint64_t v = 0; v < 4096; ++v) {
    probes.push_back(v);
  }
  for (unsigned bit = 12; bit < 40; ++bit) {
    const std::uint64_t power = std::uint64_t{1} << bit;
    for (const std::uint64_t delta : {0ULL, 1ULL, 2ULL, 3ULL, 1000ULL}) {
      probes.push_back(power - delta);
      probes.push_back(power + delta);
    }
    probes.push_back(power + power / 2 + 12345);
  }
  probes.push_back(LatencyHistogram::kTrackableNsMax - 1);
  probes.push_back(LatencyHistogram::kTrackableNsMax);
  for (const std::uint64_t v : probes) {
    LatencyHistogram h;
    h.record(v);
    h.record(UINT64_MAX);  // so the clamp to max() does not hide the bucket's top
    const std::uint64_t top = h.percentile(0.5);
    EXPECT_GE(top, v);
    EXPECT_LE(static_cast<double>(top - v), static_cast<double>(v) / 128.0) << v;
  }
}

TEST(LatencyHistogram, MergeEqualsRecordingEverythingInOne) {
  std::mt19937_64 rng(6);
  std::lognormal_distribution<double> dist(std::log(300'000.0), 1.0);
  LatencyHistogram all;
  std::array<LatencyHistogram, 4> parts;
  for (std::size_t i = 0; i < 200'000; ++i) {
    const std::uint64_t v = to_ns(dist(rng));
    all.record(v);
    parts[i % 4].record(v);
  }
  LatencyHistogram merged;
  for (const LatencyHistogram& part : parts) {
    merged.merge(part);
  }
  merged.merge(LatencyHistogram{});  // an empty one changes nothing
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.min(), all.min());
  EXPECT_EQ(merged.max(), all.max());
  EXPECT_DOUBLE_EQ(merged.mean(), all.mean());
  for (int i = 0; i <= 10'000; ++i) {
    const double q = i / 10'000.0;
    EXPECT_EQ(merged.percentile(q), all.percentile(q)) << q;
  }
  const auto a = merged.percentile_curve();
  const auto b = all.percentile_curve();
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].value_ns, b[i].value_ns);
  }
}

TEST(LatencyHistogram, MergeIntoEmptyKeepsMinAndMax) {
  LatencyHistogram a;
  a.record(500);
  a.record(9'000);
  LatencyHistogram b;
  b.merge(a);
  EXPECT_EQ(b.min(), 500U);
  EXPECT_EQ(b.max(), 9'000U);
  EXPECT_EQ(b.count(), 2U);
}

TEST(LatencyHistogram, RecordNEqualsRecordingNTimes) {
  LatencyHistogram once;
  LatencyHistogram many;
  const std::array<std::uint64_t, 7> values = {0, 7, 255, 256, 99'999, 1'234'567, 50'000'000'000};
  std::uint64_t n = 1;
  for (const std::uint64_t v : values) {
    once.record_n(v, n);
    for (std::uint64_t i = 0; i < n; ++i) {
      many.record(v);
    }
    n *= 3;
  }
  once.record_n(42, 0);  // recording nothing changes nothing, not even min()
  EXPECT_EQ(once.count(), many.count());
  EXPECT_EQ(once.min(), many.min());
  EXPECT_EQ(once.max(), many.max());
  EXPECT_DOUBLE_EQ(once.mean(), many.mean());
  for (int i = 0; i <= 1000; ++i) {
    EXPECT_EQ(once.percentile(i / 1000.0), many.percentile(i / 1000.0));
  }
}

TEST(LatencyHistogram, ValuesBeyondTheTrackableRangeKeepExactExtremes) {
  LatencyHistogram h;
  const std::uint64_t top = LatencyHistogram::kTrackableNsMax;
  h.record(1'000);
  h.record(top);
  h.record(top + 5);
  h.record(std::uint64_t{1} << 50);
  h.record(UINT64_MAX);
  EXPECT_EQ(h.count(), 5U);
  EXPECT_EQ(h.min(), 1'000U);
  EXPECT_EQ(h.max(), UINT64_MAX);
  EXPECT_EQ(h.percentile(1), UINT64_MAX);
  expect_close(h.percentile(0.2), 1'000, "p20");
  expect_close(h.percentile(0.4), top, "p40 (2^40 has a bucket of its own)");
  // Above 2^40 everything shares the top bucket, reported as max().
  EXPECT_EQ(h.percentile(0.6), UINT64_MAX);
  // The 128-bit sum does not overflow.
  LatencyHistogram huge;
  huge.record_n(UINT64_MAX, std::uint64_t{1} << 20);
  huge.record(UINT64_MAX);
  EXPECT_DOUBLE_EQ(huge.mean(), static_cast<double>(UINT64_MAX));
  LatencyHistogram two;
  two.record(UINT64_MAX);
  two.record(UINT64_MAX - 1);
  EXPECT_DOUBLE_EQ(two.mean(), static_cast<double>(UINT64_MAX));
}

TEST(LatencyHistogram, EmptyReportsZeros) {
  const LatencyHistogram h;
  EXPECT_EQ(h.count(), 0U);
  EXPECT_EQ(h.min(), 0U);
  EXPECT_EQ(h.max(), 0U);
  EXPECT_EQ(h.mean(), 0.0);
  for (const double q : kQuantiles) {
    EXPECT_EQ(h.percentile(q), 0U);
  }
  EXPECT_TRUE(h.percentile_curve().empty());
}

TEST(LatencyHistogram, ResetEmptiesIt) {
  LatencyHistogram h;
  h.record(5'000);
  h.record(70'000);
  h.reset();
  EXPECT_EQ(h.count(), 0U);
  EXPECT_EQ(h.min(), 0U);
  EXPECT_EQ(h.max(), 0U);
  EXPECT_EQ(h.percentile(0.5), 0U);
  h.record(300);
  EXPECT_EQ(h.min(), 300U);
  EXPECT_EQ(h.percentile(0.99), 300U);
  EXPECT_DOUBLE_EQ(h.mean(), 300.0);
}

TEST(LatencyHistogram, QuantilesOutsideZeroOneAreClamped) {
  LatencyHistogram h;
  for (std::uint64_t v = 1; v <= 100; ++v) {
    h.record(v * 1'000);
  }
  EXPECT_EQ(h.percentile(-1), h.min());
  EXPECT_EQ(h.percentile(2), h.max());
  EXPECT_EQ(h.percentile(std::nan("")), h.min());
}

TEST(LatencyHistogram, PercentileCurveShape) {
  LatencyHistogram h;
  for (std::uint64_t v = 1; v <= 100'000; ++v) {
    h.record(v * 10);
  }
  const auto curve = h.percentile_curve();
  ASSERT_GE(curve.size(), 10U);
  ASSERT_LE(curve.size(), 64U);
  EXPECT_EQ(curve[0].quantile, 0.0);
  EXPECT_DOUBLE_EQ(curve[1].quantile, 0.5);
  EXPECT_DOUBLE_EQ(curve[2].quantile, 0.75);
  EXPECT_DOUBLE_EQ(curve[3].quantile, 0.9);
  EXPECT_DOUBLE_EQ(curve[curve.size() - 2].quantile, 1 - 1e-6);
  EXPECT_EQ(curve.back().quantile, 1.0);
  EXPECT_EQ(curve.front().value_ns, h.min());
  EXPECT_EQ(curve.back().value_ns, h.max());
  for (std::size_t i = 1; i < curve.size(); ++i) {
    EXPECT_GT(curve[i].quantile, curve[i - 1].quantile);
    EXPECT_GE(curve[i].value_ns, curve[i - 1].value_ns);
    // Halving steps or finer: the distance to 1 shrinks by at most 2.5x per point.
    if (curve[i].quantile < 1) {
      EXPECT_LE((1 - curve[i - 1].quantile) / (1 - curve[i].quantile), 2.5 + 1e-9);
    }
  }
}

TEST(LatencyHistogram, RecordDoesNotAllocate) {
  LatencyHistogram h;
  LatencyHistogram other;
  other.record(1);
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::uint64_t> dist(0, std::uint64_t{1} << 42);
  std::vector<std::uint64_t> values(1'000'000);
  std::generate(values.begin(), values.end(), [&] { return dist(rng); });
  const support::AllocSnapshot before = support::alloc_snapshot();
  for (const std::uint64_t v : values) {
    h.record(v);
  }
  h.record_n(12'345, 10);
  h.merge(other);
  const std::uint64_t p99 = h.percentile(0.99);
  h.reset();
  const support::AllocSnapshot after = support::alloc_snapshot();
  EXPECT_EQ(after.allocations, before.allocations);
  EXPECT_EQ(after.jemalloc_bytes, before.jemalloc_bytes);
  EXPECT_GT(p99, 0U);
}

}  // namespace
}  // namespace authswitch::netsim
