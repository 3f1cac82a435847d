#pragma once
// Civil (proleptic Gregorian) dates and day counts since 1970-01-01, both ways: Howard
// Hinnant's public-domain algorithms (http://howardhinnant.github.io/date_algorithms.html).
// For the switch's issuer calendar (day and month counters, expiry) and the traffic
// simulator's UTC dates. No time zones, no allocation, no system calls.
// Thread-safety: pure functions.

#include <cstdint>

namespace authswitch::base {

struct CivilDate {
  std::int64_t year;
  unsigned month;  // 1-12
  unsigned day;    // 1-31
};

// The civil date of day `z` (days since 1970-01-01; negative before it).
[[nodiscard]] constexpr CivilDate civil_from_days(std::int64_t z) noexcept {
  z += 719'468;
  const std::int64_t era = (z >= 0 ? z : z - 146'096) / 146'097;
  const auto doe = static_cast<std::uint64_t>(z - era * 146'097);                     // [0, 146096]
  const std::uint64_t yoe = (doe - doe / 1460 + doe / 36'524 - doe / 146'096) / 365;  // [0, 399]
  const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
  const std::uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);  // [0, 365]
  const std::uint64_t mp = (5 * doy + 2) / 153;                       // [0, 11]
  const auto d = static_cast<unsigned>(doy - (153 * mp + 2) / 5 + 1);
  const auto m = static_cast<unsigned>(mp < 10 ? mp + 3 : mp - 9);
  return {m <= 2 ? y + 1 : y, m, d};
}

// Days since 1970-01-01 of year `y`, month `m` (1-12), day `d` (1-31).
[[nodiscard]] constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m,
                                                     unsigned d) noexcept {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<std::uint64_t>(y - era * 400);                 // [0, 399]
  const std::uint64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  // [0, 365]
  const std::uint64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;            // [0, 146096]
  return era * 146'097 + static_cast<std::int64_t>(doe) - 719'468;
}

static_assert(days_from_civil(1970, 1, 1) == 0);
static_assert(days_from_civil(2000, 3, 1) == 11'017);
static_assert(civil_from_days(-1).year == 1969);
static_assert(civil_from_days(-1).month == 12);
static_assert(civil_from_days(-1).day == 31);
static_assert(civil_from_days(days_from_civil(2026, 11, 24)).day == 24);

}  // namespace authswitch::base
