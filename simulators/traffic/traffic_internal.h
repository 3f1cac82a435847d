#pragma once
// Calendar helpers of the traffic model (UTC civil dates, the rules' America/New_York hour),
// shared by traffic.cc and its tests. No allocation, no time zone database: the switch's rule
// night-cash uses America/New_York, whose offset follows the US rule since 2007 (daylight time
// from the second Sunday of March, 02:00 local, to the first Sunday of November, 02:00 local).

#include <chrono>
#include <cstdint>

namespace authswitch::netsim {

struct CivilDate {
  std::int64_t year;
  unsigned month;
  unsigned day;
};

// H. Hinnant's civil_from_days / days_from_civil (proleptic Gregorian).
[[nodiscard]] constexpr CivilDate civil_from_days(std::int64_t z) noexcept {
  z += 719'468;
  const std::int64_t era = (z >= 0 ? z : z - 146'096) / 146'097;
  const auto doe = static_cast<std::uint64_t>(z - era * 146'097);
  const std::uint64_t yoe = (doe - doe / 1460 + doe / 36'524 - doe / 146'096) / 365;
  const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
  const std::uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::uint64_t mp = (5 * doy + 2) / 153;
  const auto d = static_cast<unsigned>(doy - (153 * mp + 2) / 5 + 1);
  const auto m = static_cast<unsigned>(mp < 10 ? mp + 3 : mp - 9);
  return {m <= 2 ? y + 1 : y, m, d};
}

[[nodiscard]] constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m,
                                                     unsigned d) noexcept {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<std::uint64_t>(y - era * 400);
  const std::uint64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const std::uint64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146'097 + static_cast<std::int64_t>(doe) - 719'468;
}

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
