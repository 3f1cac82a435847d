#include "risk/time_zone.h"

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>  // ::setenv, ::unsetenv (POSIX)
#include <ctime>    // ::localtime_r, ::tzset (POSIX)
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>  // getpid

#include "tests/support/alloc_counter.h"

namespace authswitch::risk {
namespace {

constexpr std::string_view kZoneinfoDir = "/usr/share/zoneinfo";
constexpr std::int64_t kMinute = 60;
constexpr std::int64_t kHour = 3600;

// Test-local copy of Hinnant's days_from_civil, so expectations do not reuse the code under test.
constexpr std::int64_t days_from_civil(std::int64_t y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const std::int64_t yoe = y - era * 400;
  const std::int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// Seconds since the epoch of a UTC date and time.
constexpr std::int64_t utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  return days_from_civil(y, mo, d) * 86400 + std::int64_t{h} * 3600 + std::int64_t{mi} * 60 + s;
}

static_assert(utc(2026, 3, 29, 1) == 1774746000);

TimeZoneErrc load_error(std::string_view name, std::string_view dir = kZoneinfoDir) {
  try {
    (void)TimeZone::load(name, dir);
  } catch (const TimeZoneError& e) {
    return e.code();
  }
  ADD_FAILURE() << "loaded '" << name << "' from " << dir;
  return TimeZoneErrc{};
}

void expect_local(const LocalTime& t, int y, int mo, int d, int h, int mi, int s) {
  EXPECT_EQ(t.year, y);
  EXPECT_EQ(t.month, mo);
  EXPECT_EQ(t.day, d);
  EXPECT_EQ(t.hour, h);
  EXPECT_EQ(t.minute, mi);
  EXPECT_EQ(t.second, s);
  EXPECT_EQ(t.minute_of_day, h * 60 + mi);
}

// Sets the process TZ for localtime_r (test only: the library never reads TZ) and restores it.
class ScopedTz {
 public:
  explicit ScopedTz(const std::string& tz) {
    // NOLINTNEXTLINE(concurrency-mt-unsafe): tests change TZ only on the main thread.
    if (const char* old = std::getenv("TZ"); old != nullptr) {
      had_old_ = true;
      old_ = old;
    }
    ::setenv("TZ", tz.c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
    ::tzset();
  }
  ~ScopedTz() {
    if (had_old_) {
      ::setenv("TZ", old_.c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
    } else {
      ::unsetenv("TZ");  // NOLINT(concurrency-mt-unsafe)
    }
    ::tzset();
  }
  ScopedTz(const ScopedTz&) = delete;
  ScopedTz& operator=(const ScopedTz&) = delete;
  ScopedTz(ScopedTz&&) = delete;
  ScopedTz& operator=(ScopedTz&&) = delete;

 private:
  bool had_old_ = false;
  std::string old_;
};

// Compares `zone` with glibc's localtime_r under TZ=`tz` at `count` random instants in
// [from, to); returns the number of mismatches (each is also reported).
int compare_with_libc(const TimeZone& zone, const std::string& tz, std::int64_t from,
                      std::int64_t to, int count, std::uint64_t seed) {
  const ScopedTz scoped(tz);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int64_t> pick(from, to - 1);
  int mismatches = 0;
  for (int i = 0; i < count; ++i) {
    const std::int64_t t = pick(rng);
    const auto tt = static_cast<time_t>(t);
    struct tm tm {};
    if (::localtime_r(&tt, &tm) == nullptr) {
      ADD_FAILURE() << "localtime_r failed at " << t;
      return mismatches + 1;
    }
    const LocalTime local = zone.local(t * 1000 + 999);
    const int iso_weekday = tm.tm_wday == 0 ? 7 : tm.tm_wday;
    if (zone.utc_offset_seconds(t) != tm.tm_gmtoff || local.year != tm.tm_year + 1900 ||
        local.month != tm.tm_mon + 1 || local.day != tm.tm_mday || local.hour != tm.tm_hour ||
        local.minute != tm.tm_min || local.second != tm.tm_sec || local.weekday != iso_weekday ||
        local.minute_of_day != tm.tm_hour * 60 + tm.tm_min) {
      if (++mismatches <= 5) {
        ADD_FAILURE() << zone.name() << " (TZ=" << tz << ") at " << t << ": offset "
                      << zone.utc_offset_seconds(t) << " vs libc " << tm.tm_gmtoff << ", local "
                      << local.year << "-" << local.month << "-" << local.day << " " << local.hour
                      << ":" << local.minute << ":" << local.second << " vs libc "
                      << tm.tm_year + 1900 << "-" << tm.tm_mon + 1 << "-" << tm.tm_mday << " "
                      << tm.tm_hour << ":" << tm.tm_min << ":" << tm.tm_sec;
      }
    }
  }
  return mismatches;
}

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A private directory under the gtest temp dir, removed at the end of the test.
class TempZoneDir {
 public:
  TempZoneDir() {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::path(testing::TempDir()) /
            ("time_zone_test_" + std::to_string(getpid()) + "_" + info->name());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempZoneDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempZoneDir(const TempZoneDir&) = delete;
  TempZoneDir& operator=(const TempZoneDir&) = delete;
  TempZoneDir(TempZoneDir&&) = delete;
  TempZoneDir& operator=(TempZoneDir&&) = delete;

  [[nodiscard]] std::string dir() const { return path_.string(); }

  void write(const std::string& name, const std::vector<unsigned char>& bytes) const {
    std::ofstream out(path_ / name, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }

 private:
  std::filesystem::path path_;
};

void put_u32(std::vector<unsigned char>& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<unsigned char>(v >> shift));
  }
}

// A version 2 TZif file with no transitions, one time type and `footer` as its TZ string
// (RFC 8536: the footer then holds for every instant).
std::vector<unsigned char> footer_only_tzif(std::int32_t type0_offset_seconds,
                                            std::string_view footer) {
  std::vector<unsigned char> out;
  for (int block = 0; block < 2; ++block) {
    out.insert(out.end(), {'T', 'Z', 'i', 'f', '2'});
    out.insert(out.end(), 15, 0);
    put_u32(out, 0);  // isutcnt
    put_u32(out, 0);  // isstdcnt
    put_u32(out, 0);  // leapcnt
    put_u32(out, 0);  // timecnt
    put_u32(out, 1);  // typecnt
    put_u32(out, 4);  // charcnt
    put_u32(out, static_cast<std::uint32_t>(type0_offset_seconds));
    out.insert(out.end(), {0, 0, 'Z', 'Z', 'Z', 0});
  }
  out.push_back('\n');
  out.insert(out.end(), footer.begin(), footer.end());
  out.push_back('\n');
  return out;
}

TEST(TimeZone, BuiltInUtc) {
  const TimeZone zone = TimeZone::load("UTC", "/nonexistent");
  EXPECT_EQ(zone.name(), "UTC");
  EXPECT_EQ(zone.utc_offset_seconds(0), 0);
  EXPECT_EQ(zone.utc_offset_seconds(utc(2026, 7, 1)), 0);
  const LocalTime t = zone.local(utc(2026, 11, 24, 8, 15, 30) * 1000 + 123);
  expect_local(t, 2026, 11, 24, 8, 15, 30);
  EXPECT_EQ(t.weekday, 2);  // Tuesday
  EXPECT_EQ(TimeZone::utc().name(), "UTC");
}

TEST(TimeZone, EtcUtcFromFile) {
  const TimeZone zone = TimeZone::load("Etc/UTC");
  EXPECT_EQ(zone.name(), "Etc/UTC");
  for (const std::int64_t t : {std::int64_t{-1}, std::int64_t{0}, utc(2026, 3, 29, 1),
                               utc(2070, 7, 1), utc(9999, 12, 31, 23, 59, 59)}) {
    EXPECT_EQ(zone.utc_offset_seconds(t), 0) << t;
  }
  expect_local(zone.local(utc(2070, 7, 1, 12) * 1000), 2070, 7, 1, 12, 0, 0);
}

TEST(TimeZone, BerlinWinterAndSummer) {
  const TimeZone zone = TimeZone::load("Europe/Berlin");
  EXPECT_EQ(zone.utc_offset_seconds(utc(2026, 1, 15, 12)), 1 * kHour);
  EXPECT_EQ(zone.utc_offset_seconds(utc(2026, 7, 15, 12)), 2 * kHour);
  expect_local(zone.local(utc(2026, 1, 15, 12) * 1000), 2026, 1, 15, 13, 0, 0);
  expect_local(zone.local(utc(2026, 7, 15, 12) * 1000), 2026, 7, 15, 14, 0, 0);
  // New Year's Eve in UTC is already New Year in Berlin.
  expect_local(zone.local(utc(2026, 12, 31, 23, 30) * 1000), 2027, 1, 1, 0, 30, 0);
}

TEST(TimeZone, BerlinDstEdges2026) {
  const TimeZone zone = TimeZone::load("Europe/Berlin");
  const std::int64_t start = utc(2026, 3, 29, 1);  // 02:00 CET -> 03:00 CEST
  EXPECT_EQ(zone.utc_offset_seconds(start - 1), 1 * kHour);
  EXPECT_EQ(zone.utc_offset_seconds(start), 2 * kHour);
  expect_local(zone.local((start - 1) * 1000), 2026, 3, 29, 1, 59, 59);
  expect_local(zone.local(start * 1000), 2026, 3, 29, 3, 0, 0);
  const std::int64_t end = utc(2026, 10, 25, 1);  // 03:00 CEST -> 02:00 CET
  EXPECT_EQ(zone.utc_offset_seconds(end - 1), 2 * kHour);
  EXPECT_EQ(zone.utc_offset_seconds(end), 1 * kHour);
  expect_local(zone.local((end - 1) * 1000 + 999), 2026, 10, 25, 2, 59, 59);
  expect_local(zone.local(end * 1000), 2026, 10, 25, 2, 0, 0);
}

TEST(TimeZone, NewYorkDstEdges2026) {
  const TimeZone zone = TimeZone::load("America/New_York");
  const std::int64_t start = utc(2026, 3, 8, 7);
  EXPECT_EQ(zone.utc_offset_seconds(start - 1), -5 * kHour);
  EXPECT_EQ(zone.utc_offset_seconds(start), -4 * kHour);
  expect_local(zone.local((start - 1) * 1000), 2026, 3, 8, 1, 59, 59);
  expect_local(zone.local(start * 1000), 2026, 3, 8, 3, 0, 0);
  const std::int64_t end = utc(2026, 11, 1, 6);
  EXPECT_EQ(zone.utc_offset_seconds(end - 1), -4 * kHour);
  EXPECT_EQ(zone.utc_offset_seconds(end), -5 * kHour);
  expect_local(zone.local((end - 1) * 1000), 2026, 11, 1, 1, 59, 59);
  expect_local(zone.local(end * 1000), 2026, 11, 1, 1, 0, 0);
}

TEST(TimeZone, SydneySouthernHemisphere) {
  const TimeZone zone = TimeZone::load("Australia/Sydney");
  EXPECT_EQ(zone.utc_offset_seconds(utc(2026, 1, 15)), 11 * kHour);  // summer: AEDT
  EXPECT_EQ(zone.utc_offset_seconds(utc(2026, 7, 15)), 10 * kHour);  // winter: AEST
  const std::int64_t end = utc(2026, 4, 4, 16);  // 03:00 AEDT -> 02:00 AEST on 5 April
  EXPECT_EQ(zone.utc_offset_seconds(end - 1), 11 * kHour);
  EXPECT_EQ(zone.utc_offset_seconds(end), 10 * kHour);
  expect_local(zone.local(end * 1000), 2026, 4, 5, 2, 0, 0);
  const std::int64_t start = utc(2026, 10, 3, 16);  // 02:00 AEST -> 03:00 AEDT on 4 October
  EXPECT_EQ(zone.utc_offset_seconds(start - 1), 10 * kHour);
  EXPECT_EQ(zone.utc_offset_seconds(start), 11 * kHour);
  expect_local(zone.local(start * 1000), 2026, 10, 4, 3, 0, 0);
}

TEST(TimeZone, KolkataAndKathmanduFractionalOffsets) {
  const TimeZone kolkata = TimeZone::load("Asia/Kolkata");
  EXPECT_EQ(kolkata.utc_offset_seconds(utc(2026, 6, 1)), 5 * kHour + 30 * kMinute);
  const LocalTime k = kolkata.local(utc(2026, 6, 1, 20) * 1000);
  expect_local(k, 2026, 6, 2, 1, 30, 0);
  EXPECT_EQ(k.minute_of_day, 90);
  const TimeZone kathmandu = TimeZone::load("Asia/Kathmandu");
  EXPECT_EQ(kathmandu.utc_offset_seconds(utc(2026, 6, 1)), 5 * kHour + 45 * kMinute);
  expect_local(kathmandu.local(utc(2026, 6, 1, 18, 20) * 1000), 2026, 6, 2, 0, 5, 0);
}

TEST(TimeZone, FarFutureComesFromFooterRule) {
  const TimeZone zone = TimeZone::load("Europe/Berlin");
  // tzdata's files list explicit transitions up to 2037 at most; 2070 is the footer's
  // "CET-1CEST,M3.5.0,M10.5.0/3": last Sunday of March (30th) and of October (26th).
  const std::int64_t start = utc(2070, 3, 30, 1);
  EXPECT_EQ(zone.utc_offset_seconds(start - 1), 1 * kHour);
  EXPECT_EQ(zone.utc_offset_seconds(start), 2 * kHour);
  const std::int64_t end = utc(2070, 10, 26, 1);
  EXPECT_EQ(zone.utc_offset_seconds(end - 1), 2 * kHour);
  EXPECT_EQ(zone.utc_offset_seconds(end), 1 * kHour);
  const LocalTime t = zone.local(start * 1000);
  expect_local(t, 2070, 3, 30, 3, 0, 0);
  EXPECT_EQ(t.weekday, 7);  // Sunday
  const TimeZone sydney = TimeZone::load("Australia/Sydney");
  EXPECT_EQ(sydney.utc_offset_seconds(utc(2070, 1, 1)), 11 * kHour);
  EXPECT_EQ(sydney.utc_offset_seconds(utc(2070, 7, 1)), 10 * kHour);
}

TEST(TimeZone, WeekdayAndMinuteOfDay) {
  const TimeZone zone = TimeZone::utc();
  // 2026-11-23 is a Monday.
  for (int i = 0; i < 7; ++i) {
    const LocalTime t = zone.local(utc(2026, 11, 23 + i, 23, 59, 59) * 1000);
    EXPECT_EQ(t.weekday, i + 1);
    EXPECT_EQ(t.minute_of_day, 1439);
  }
  // Before 1970, milliseconds round toward minus infinity: -1 ms is 23:59:59 on a Wednesday.
  const LocalTime before_epoch = zone.local(-1);
  expect_local(before_epoch, 1969, 12, 31, 23, 59, 59);
  EXPECT_EQ(before_epoch.weekday, 3);
  const LocalTime leap_day = zone.local(utc(2024, 2, 29, 0, 1) * 1000);
  expect_local(leap_day, 2024, 2, 29, 0, 1, 0);
  EXPECT_EQ(leap_day.weekday, 4);
  EXPECT_EQ(leap_day.minute_of_day, 1);
}

TEST(TimeZone, ExtremeInstantsAreClamped) {
  const TimeZone zone = TimeZone::load("Europe/Berlin");
  const LocalTime high = zone.local(INT64_MAX);
  EXPECT_EQ(high.year, 10000);  // 9999-12-31T23:59:59Z is already New Year in Berlin
  const LocalTime low = zone.local(INT64_MIN);
  EXPECT_EQ(low.year, 1);
  EXPECT_EQ(zone.utc_offset_seconds(INT64_MAX), 1 * kHour);
}

TEST(TimeZone, MatchesLibcFrom1970To2037) {
  static constexpr std::array<const char*, 6> kZones = {"Europe/Berlin",    "America/New_York",
                                                        "Australia/Sydney", "Asia/Kolkata",
                                                        "Asia/Kathmandu",   "America/Sao_Paulo"};
  std::uint64_t seed = 1;
  for (const char* name : kZones) {
    const TimeZone zone = TimeZone::load(name);
    EXPECT_EQ(compare_with_libc(zone, std::string(":") + name, 0, utc(2038, 1, 1), 2000, seed++), 0)
        << name;
  }
}

TEST(TimeZone, FooterMatchesLibcFrom2037To2200) {
  static constexpr std::array<const char*, 6> kZones = {"Europe/Berlin",    "America/New_York",
                                                        "Australia/Sydney", "Europe/Dublin",
                                                        "Asia/Jerusalem",   "America/Nuuk"};
  std::uint64_t seed = 100;
  for (const char* name : kZones) {
    const TimeZone zone = TimeZone::load(name);
    EXPECT_EQ(compare_with_libc(zone, std::string(":") + name, utc(2037, 1, 1), utc(2200, 1, 1),
                                500, seed++),
              0)
        << name;
  }
}

// Every zone in zone1970.tab loads and agrees with libc (including links, fat or slim files).
TEST(TimeZone, EveryZoneMatchesLibc) {
  std::ifstream tab(std::string(kZoneinfoDir) + "/zone1970.tab");
  ASSERT_TRUE(tab.good());
  std::string line;
  int zones = 0;
  while (std::getline(tab, line)) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    const std::size_t tab1 = line.find('\t');
    const std::size_t tab2 = line.find('\t', tab1 + 1);
    const std::size_t tab3 = line.find('\t', tab2 + 1);
    ASSERT_NE(tab2, std::string::npos) << line;
    const std::string name = line.substr(tab2 + 1, tab3 - tab2 - 1);
    const TimeZone zone = TimeZone::load(name);
    EXPECT_EQ(compare_with_libc(zone, ":" + name, 0, utc(2100, 1, 1), 100, 7), 0) << name;
    ++zones;
  }
  EXPECT_GT(zones, 250);
}

// POSIX TZ strings as TZif footers, with no transitions, against libc's own parser.
TEST(TimeZone, PosixRulesMatchLibc) {
  const TempZoneDir dir;
  static constexpr std::array<std::string_view, 12> kRules = {
      "CET-1CEST,M3.5.0,M10.5.0/3",
      "EST5EDT,M3.2.0,M11.1.0",
      "AEST-10AEDT,M10.1.0,M4.1.0/3",
      "IST-1GMT0,M10.5.0,M3.5.0/1",       // Dublin: negative daylight saving
      "IST-2IDT,M3.4.4/26,M10.5.0",       // time past 24h
      "<-02>2<-01>,M3.5.0/-1,M10.5.0/0",  // negative time
      "<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45",
      "<+0545>-5:45",
      "XXX3YYY,J60/1,J300/1",    // Jn never counts Feb 29
      "XXX-3YYY-4:30,59/1,299",  // n counts Feb 29
      "WET0WEST,M3.5.0/1,M10.5.0",
      "<-04>4<-03>,M9.1.6/24,M4.1.6/24",
  };
  std::uint64_t seed = 500;
  for (const std::string_view rule : kRules) {
    PosixTzRule parsed;
    ASSERT_TRUE(parse_posix_tz(rule, parsed)) << rule;
    dir.write("Test", footer_only_tzif(parsed.std_offset_seconds, rule));
    const TimeZone zone = TimeZone::load("Test", dir.dir());
    EXPECT_EQ(
        compare_with_libc(zone, std::string(rule), utc(1971, 1, 1), utc(2200, 1, 1), 1000, seed++),
        0)
        << rule;
  }
}

TEST(TimeZone, PermanentDaylightTimeRule) {
  // RFC 8536 3.3.1: "EST5EDT,0/0,J365/25" is daylight time all year.
  PosixTzRule rule;
  ASSERT_TRUE(parse_posix_tz("EST5EDT,0/0,J365/25", rule));
  for (const std::int64_t t : {utc(2026, 1, 1), utc(2026, 1, 1, 4, 59, 59), utc(2026, 7, 1),
                               utc(2026, 12, 31, 23), utc(2028, 12, 31, 12)}) {
    EXPECT_EQ(posix_tz_offset_seconds(rule, t), -4 * kHour) << t;
  }
}

TEST(TimeZone, ParsesPosixTzStrings) {
  PosixTzRule rule;
  ASSERT_TRUE(parse_posix_tz("CET-1CEST,M3.5.0,M10.5.0/3", rule));
  EXPECT_EQ(rule.std_offset_seconds, 3600);
  EXPECT_EQ(rule.dst_offset_seconds, 7200);
  EXPECT_TRUE(rule.has_dst);
  EXPECT_EQ(rule.start.kind, PosixTzRule::DateKind::kMonthWeekDay);
  EXPECT_EQ(rule.start.month, 3);
  EXPECT_EQ(rule.start.week, 5);
  EXPECT_EQ(rule.start.day, 0);
  EXPECT_EQ(rule.start.time_seconds, 2 * 3600);
  EXPECT_EQ(rule.end.time_seconds, 3 * 3600);
  ASSERT_TRUE(parse_posix_tz("<+0545>-5:45", rule));
  EXPECT_EQ(rule.std_offset_seconds, 5 * kHour + 45 * kMinute);
  EXPECT_FALSE(rule.has_dst);
  ASSERT_TRUE(parse_posix_tz("<-03>3<-02>,M3.5.0/-2,M10.5.0/-1", rule));
  EXPECT_EQ(rule.std_offset_seconds, -3 * 3600);
  EXPECT_EQ(rule.start.time_seconds, -2 * 3600);
  ASSERT_TRUE(parse_posix_tz("IST-2IDT,M3.4.4/26,M10.5.0", rule));
  EXPECT_EQ(rule.start.time_seconds, 26 * 3600);
  ASSERT_TRUE(parse_posix_tz("EST5EDT,0/0,J365/25", rule));
  EXPECT_EQ(rule.start.kind, PosixTzRule::DateKind::kJulian0);
  EXPECT_EQ(rule.end.kind, PosixTzRule::DateKind::kJulian1);
  EXPECT_EQ(rule.end.day, 365);
  EXPECT_EQ(rule.end.time_seconds, 25 * 3600);

  for (const std::string_view bad :
       {"", "CE-1", "CET", "CET-1CEST", "CET-1CEST,M3.5.0", "CET-1CEST,M13.5.0,M10.5.0",
        "CET-1CEST,M3.6.0,M10.5.0", "CET-1CEST,M3.5.7,M10.5.0", "CET-1CEST,M3.5.0/168,M10.5.0",
        "CET-25", "<+05", "<+0>-5", "CET-1CEST,M3.5.0,M10.5.0x", "CET-1CEST,J0,J365",
        "CET-1CEST,366,0", "CET-1:60", "CET-1CEST,M3.5.0,M10.5.0/3:00:60", "CET 1"}) {
    EXPECT_FALSE(parse_posix_tz(bad, rule)) << "'" << bad << "'";
  }
}

TEST(TimeZone, RejectsBadNames) {
  EXPECT_EQ(load_error("../etc/passwd"), TimeZoneErrc::kInvalidName);
  EXPECT_EQ(load_error("Europe/../../etc/passwd"), TimeZoneErrc::kInvalidName);
  EXPECT_EQ(load_error(""), TimeZoneErrc::kInvalidName);
  EXPECT_EQ(load_error("/etc/passwd"), TimeZoneErrc::kInvalidName);
  EXPECT_EQ(load_error("Europe/Ber lin"), TimeZoneErrc::kInvalidName);
  EXPECT_EQ(load_error(std::string(300, 'A')), TimeZoneErrc::kInvalidName);
  EXPECT_EQ(load_error("Nope/Zone"), TimeZoneErrc::kNotFound);
  EXPECT_EQ(load_error("Europe"), TimeZoneErrc::kNotFound);  // a directory
  EXPECT_EQ(load_error("Europe/Berlin", "/nonexistent"), TimeZoneErrc::kNotFound);
  try {
    (void)TimeZone::load("Nope/Zone");
    FAIL() << "loaded Nope/Zone";
  } catch (const TimeZoneError& e) {
    EXPECT_NE(std::string(e.what()).find("Nope/Zone"), std::string::npos) << e.what();
  }
  EXPECT_EQ(to_string(TimeZoneErrc::kNotFound), "time zone not found");
}

TEST(TimeZone, RejectsMalformedFiles) {
  const TempZoneDir dir;
  dir.write("Empty", {});
  EXPECT_EQ(load_error("Empty", dir.dir()), TimeZoneErrc::kMalformed);
  std::vector<unsigned char> garbage(2000);
  std::mt19937 rng(42);
  for (unsigned char& b : garbage) {
    b = static_cast<unsigned char>(rng());
  }
  dir.write("Garbage", garbage);
  EXPECT_EQ(load_error("Garbage", dir.dir()), TimeZoneErrc::kMalformed);
  dir.write("Text", {'T', 'Z', 'i', 'f', '2', '\n'});
  EXPECT_EQ(load_error("Text", dir.dir()), TimeZoneErrc::kMalformed);
  dir.write("BadFooter", footer_only_tzif(3600, "CET-1CEST"));
  EXPECT_EQ(load_error("BadFooter", dir.dir()), TimeZoneErrc::kMalformed);
  dir.write("LongFooter", footer_only_tzif(0, "<" + std::string(200, 'A') + ">0"));
  EXPECT_EQ(load_error("LongFooter", dir.dir()), TimeZoneErrc::kTooLarge);
  std::vector<unsigned char> huge = footer_only_tzif(0, "UTC0");
  huge.resize(TimeZone::kFileBytesMax + 1, '\n');
  dir.write("Huge", huge);
  EXPECT_EQ(load_error("Huge", dir.dir()), TimeZoneErrc::kTooLarge);
  // A version 2 file with a leap-second table ("right/" zones) is refused.
  const std::vector<unsigned char> right = read_bytes(std::string(kZoneinfoDir) + "/right/UTC");
  if (!right.empty()) {
    dir.write("Right", right);
    EXPECT_EQ(load_error("Right", dir.dir()), TimeZoneErrc::kMalformed);
  }
}

// Proper prefixes of a real file are rejected, and flipped bytes never crash the loader
// (the sanitizer build checks the reads).
TEST(TimeZone, TruncatedAndCorruptedFilesAreRejected) {
  const TempZoneDir dir;
  const std::vector<unsigned char> berlin =
      read_bytes(std::string(kZoneinfoDir) + "/Europe/Berlin");
  ASSERT_GT(berlin.size(), 100U);
  dir.write("Whole", berlin);
  EXPECT_EQ(TimeZone::load("Whole", dir.dir()).utc_offset_seconds(utc(2026, 7, 1)), 2 * kHour);
  // Every length through the headers, then a stride through the data blocks, and the last
  // bytes of the footer (each length is one file write, so not all 2 KiB of them).
  std::vector<std::size_t> lengths;
  for (std::size_t n = 0; n < berlin.size(); n += n < 64 ? 1 : 11) {
    lengths.push_back(n);
  }
  for (std::size_t n = berlin.size() - 4; n < berlin.size(); ++n) {
    lengths.push_back(n);
  }
  for (const std::size_t n : lengths) {
    dir.write("Cut", std::vector<unsigned char>(berlin.begin(),
                                                berlin.begin() + static_cast<std::ptrdiff_t>(n)));
    EXPECT_EQ(load_error("Cut", dir.dir()), TimeZoneErrc::kMalformed) << n << " bytes";
  }

  std::mt19937 rng(7);
  std::uniform_int_distribution<std::size_t> at(0, berlin.size() - 1);
  for (int i = 0; i < 100; ++i) {
    std::vector<unsigned char> bytes = berlin;
    for (int flips = 0; flips < 3; ++flips) {
      bytes[at(rng)] = static_cast<unsigned char>(rng());
    }
    dir.write("Flipped", bytes);
    try {
      const TimeZone zone = TimeZone::load("Flipped", dir.dir());
      (void)zone.local(utc(2026, 7, 1) * 1000);
      (void)zone.local(utc(2100, 7, 1) * 1000);
    } catch (const TimeZoneError&) {
      // Rejected: fine.
    }
  }
}

TEST(TimeZone, IsACopyableValue) {
  const TimeZone berlin = TimeZone::load("Europe/Berlin");
  TimeZone copy = berlin;
  EXPECT_EQ(copy.name(), "Europe/Berlin");
  EXPECT_EQ(copy.utc_offset_seconds(utc(2026, 7, 1)), 2 * kHour);
  copy = TimeZone::load("Asia/Kolkata");
  EXPECT_EQ(copy.name(), "Asia/Kolkata");
  EXPECT_EQ(berlin.utc_offset_seconds(utc(2026, 7, 1)), 2 * kHour);
}

TEST(TimeZone, LookupsDoNotAllocate) {
  const std::array<TimeZone, 4> zones = {TimeZone::load("Europe/Berlin"),
                                         TimeZone::load("Australia/Sydney"),
                                         TimeZone::load("Asia/Kathmandu"), TimeZone::utc()};
  std::int64_t checksum = 0;
  const auto run = [&] {
    for (const TimeZone& zone : zones) {
      for (std::int64_t t = utc(1960, 1, 1); t < utc(2120, 1, 1); t += 86400 * 13 + 3607) {
        const LocalTime local = zone.local(t * 1000);
        checksum += local.minute_of_day + local.weekday + zone.utc_offset_seconds(t);
      }
    }
  };
  run();  // warm up
  const support::AllocSnapshot before = support::alloc_snapshot();
  run();
  const support::AllocSnapshot after = support::alloc_snapshot();
  EXPECT_EQ(after.allocations, before.allocations);
  EXPECT_EQ(after.jemalloc_bytes, before.jemalloc_bytes);
  EXPECT_NE(checksum, 0);
}

TEST(TimeZone, ConcurrentReadersAgree) {
  const TimeZone zone = TimeZone::load("America/New_York");
  std::vector<std::int32_t> expected;
  for (std::int64_t t = 0; t < utc(2100, 1, 1); t += 86400 * 7 + 1234) {
    expected.push_back(zone.utc_offset_seconds(t));
  }
  std::array<int, 2> mismatches = {0, 0};
  std::vector<std::thread> threads;
  threads.reserve(mismatches.size());
  for (int& count : mismatches) {
    threads.emplace_back([&zone, &expected, &count] {
      std::size_t i = 0;
      for (std::int64_t t = 0; t < utc(2100, 1, 1); t += 86400 * 7 + 1234) {
        count += zone.utc_offset_seconds(t) != expected[i++] ? 1 : 0;
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(mismatches[0] + mismatches[1], 0);
}

}  // namespace
}  // namespace authswitch::risk
