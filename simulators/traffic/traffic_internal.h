#pragma once
// Calendar helpers of the traffic model (UTC civil dates, the rules' America/New_York hour),
// shared by traffic.cc and its tests. No allocation, no time zone database: the switch's rule
// night-cash uses America/New_York, whose offset follows the US rule since 2007 (daylight time
// from the second Sunday of March, 02:00 local, to the first Sunday of November, 02:00 local).

#include <chrono>
#include <cstdint>

#include "base/civil_date.h"

namespace authswitch::netsim {

// UTC civil dates (base/civil_date.h), named here as traffic.cc and its tests use them.
using base::civil_from_days;
using base::CivilDate;
using base::days_from_civil;

// The hour (0..23) in America/New_York at `ms` (UTC milliseconds since the epoch).
[[nodiscard]] constexpr int new_york_hour(std::int64_t ms) noexcept {
  constexpr std::int64_t kDay = 86'400'000;
  constexpr std::int64_t kHour = 3'600'000;
  const std::int64_t days = ms >= 0 ? ms / kDay : (ms - kDay + 1) / kDay;
  const std::int64_t year = civil_from_days(days).year;
  // Sunday is weekday 0; 1970-01-01 was a Thursday (4).
  const auto first_sunday = [](std::int64_t first_of_month) {
    const std::int64_t wd = ((first_of_month + 4) % 7 + 7) % 7;
    return first_of_month + (7 - wd) % 7;
  };
  const std::int64_t dst_start = (first_sunday(days_from_civil(year, 3, 1)) + 7) * kDay + 7 * kHour;
  const std::int64_t dst_end = first_sunday(days_from_civil(year, 11, 1)) * kDay + 6 * kHour;
  const std::int64_t offset = ms >= dst_start && ms < dst_end ? -4 * kHour : -5 * kHour;
  const std::int64_t local = ms + offset;
  const std::int64_t in_day = ((local % kDay) + kDay) % kDay;
  return static_cast<int>(in_day / kHour);
}

[[nodiscard]] inline std::int64_t wall_clock_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace authswitch::netsim
