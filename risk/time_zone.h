#pragma once
// Time zones for fraud rules (issue 4): "local hour in Europe/Berlin between 1 and 5". A
// TimeZone maps a UTC instant to its UTC offset and local calendar fields, from the system's
// tz database (TZif files, RFC 8536) and without gmtime/localtime (those may lock and read the
// TZ environment variable).
//
// load() runs at startup or on a rule reload: it reads one TZif file (versions 1 to 4; the
// 64-bit version 2+ block when present), keeps its transition instants and UTC offsets in
// vectors sized at load, and compiles the footer's POSIX TZ string (RFC 8536 section 3.3, e.g.
// "CET-1CEST,M3.5.0,M10.5.0/3") for instants after the last transition. Problems are reported
// by throwing TimeZoneError, whose code() tells which kind; a rule compiler turns that into a
// config error.
//
// Ownership: a TimeZone is a value that owns copies of the data it needs (no file handle, no
// pointer into the tz database). It is immutable after load().
// Thread-safety: every const member is safe to call from any number of threads at once; the
// lookups (utc_offset_seconds, local) do not allocate, make system calls, take locks or cache.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace authswitch::risk {

// Howard Hinnant's public-domain algorithms (http://howardhinnant.github.io/date_algorithms.html):
// days since 1970-01-01 of a proleptic Gregorian date, and back.
constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);                 // [0, 399]
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  // [0, 365]
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;            // [0, 146096]
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

struct CivilDate {
  std::int64_t year;
  unsigned month;  // 1-12
  unsigned day;    // 1-31
};

constexpr CivilDate civil_from_days(std::int64_t z) noexcept {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);                    // [0, 146096]
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
  const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);  // [0, 365]
  const unsigned mp = (5 * doy + 2) / 153;                       // [0, 11]
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;               // [1, 31]
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;                  // [1, 12]
  return {y + (m <= 2 ? 1 : 0), m, d};
}

enum class TimeZoneErrc : std::uint8_t {
  kInvalidName = 1,  // empty, too long, leading '/', or a character outside [A-Za-z0-9_+-/]
  kNotFound,         // no readable regular file of that name under the zoneinfo directory
  kMalformed,        // not a TZif file we accept, or a bad footer TZ string
  kTooLarge,         // file, transition count or footer past this module's limits
};

[[nodiscard]] std::string_view to_string(TimeZoneErrc errc) noexcept;

// Thrown by TimeZone::load() (startup and reload only). what() names the zone and the cause.
class TimeZoneError : public std::runtime_error {
 public:
  TimeZoneError(TimeZoneErrc errc, const std::string& what)
      : std::runtime_error(what), errc_(errc) {}

  [[nodiscard]] TimeZoneErrc code() const noexcept { return errc_; }

 private:
  TimeZoneErrc errc_;
};

// Wall-clock fields of one instant in one zone.
struct LocalTime {
  int year = 1970;
  int month = 1;          // 1-12
  int day = 1;            // 1-31
  int hour = 0;           // 0-23
  int minute = 0;         // 0-59
  int second = 0;         // 0-59 (leap seconds are not represented)
  int weekday = 4;        // ISO 8601: 1 = Monday .. 7 = Sunday
  int minute_of_day = 0;  // 0-1439: hour * 60 + minute
};

// A POSIX TZ rule, as in a TZif footer: standard time, optionally with daylight time between
// two yearly dates. A plain value; TimeZone keeps one for instants after its last transition.
struct PosixTzRule {
  // How a yearly transition date is written: Jn (1-365, Feb 29 never counted), n (0-365,
  // counting Feb 29) or Mm.w.d (day d of week w of month m, week 5 = the last).
  enum class DateKind : std::uint8_t { kJulian1, kJulian0, kMonthWeekDay };
  struct Date {
    DateKind kind = DateKind::kMonthWeekDay;
    std::int16_t day = 0;           // Jn: 1-365; n: 0-365; Mm.w.d: d, 0 = Sunday .. 6
    std::uint8_t month = 0;         // Mm.w.d only: 1-12
    std::uint8_t week = 0;          // Mm.w.d only: 1-5
    std::int32_t time_seconds = 0;  // local time of day, -167h to +167h (RFC 8536 3.3.1)
  };
  std::int32_t std_offset_seconds = 0;  // UTC offset (local = UTC + offset), east positive
  std::int32_t dst_offset_seconds = 0;  // the same during daylight time, if has_dst
  bool has_dst = false;
  Date start;  // into daylight time, at a local standard time
  Date end;    // back to standard time, at a local daylight time
};

// Parses a POSIX TZ string (POSIX.1-2017 section 8.3, as RFC 8536 section 3.3.1 extends it:
// quoted <+0545> names, transition times from -167h to +167h). Returns false if `text` is not
// one, or names daylight time without a rule (the default rule is implementation-defined).
// Used by TimeZone::load() on the footer; startup only.
[[nodiscard]] bool parse_posix_tz(std::string_view text, PosixTzRule& rule) noexcept;

// UTC offset that `rule` gives at `unix_seconds` (clamped to years 0001-9999, as TimeZone
// does). No allocation, no locks: evaluates the rule for the instant's year and its neighbours.
[[nodiscard]] std::int32_t posix_tz_offset_seconds(const PosixTzRule& rule,
                                                   std::int64_t unix_seconds) noexcept;

class TimeZone {
 public:
  // Limits checked by load() (TimeZoneErrc::kTooLarge past them). The biggest tzdata 2025
  // files are under 4 KiB with under 300 transitions.
  static constexpr std::size_t kFileBytesMax = std::size_t{64} * 1024;
  static constexpr std::size_t kTransitionsMax = 4096;
  static constexpr std::size_t kNameBytesMax = 255;
  static constexpr std::size_t kFooterBytesMax = 128;

  // Lookups clamp instants to years 0001-9999 (UTC), so calendar fields always fit an int.
  static constexpr std::int64_t kUnixSecondsMin = -62135596800;  // 0001-01-01T00:00:00Z
  static constexpr std::int64_t kUnixSecondsMax = 253402300799;  // 9999-12-31T23:59:59Z

  // Loads `name` (e.g. "Europe/Berlin") from `zoneinfo_dir`/`name`. "UTC" is built in and
  // reads no file. Startup only: may allocate and do file I/O. Throws TimeZoneError (and
  // std::bad_alloc); nothing else escapes.
  [[nodiscard]] static TimeZone load(std::string_view name,
                                     std::string_view zoneinfo_dir = "/usr/share/zoneinfo");

  // The built-in fixed zone "UTC" (offset 0, no file).
  [[nodiscard]] static TimeZone utc();

  // UTC offset in seconds (local = UTC + offset) in effect at `unix_seconds`. Hot path: a
  // binary search over the transitions, else the footer rule evaluated for that year.
  [[nodiscard]] std::int32_t utc_offset_seconds(std::int64_t unix_seconds) const noexcept;

  // Local calendar fields of the instant `unix_ms` (milliseconds since 1970-01-01T00:00:00Z;
  // negative values are before 1970, rounded toward minus infinity to whole seconds).
  [[nodiscard]] LocalTime local(std::int64_t unix_ms) const noexcept;

  // The name given to load().
  [[nodiscard]] std::string_view name() const noexcept { return name_; }

 private:
  TimeZone() = default;

  std::string name_;
  // transitions_[i] is the instant from which offsets_[i] holds; strictly increasing.
  std::vector<std::int64_t> transitions_;
  std::vector<std::int32_t> offsets_;
  std::int32_t initial_offset_seconds_ = 0;  // before the first transition (time type 0)
  bool has_rule_ = false;                    // rule_ holds after the last transition
  PosixTzRule rule_;
};

static_assert(std::is_nothrow_move_constructible_v<TimeZone>);
static_assert(std::is_copy_constructible_v<TimeZone>);
static_assert(std::is_trivially_copyable_v<PosixTzRule>);

}  // namespace authswitch::risk
