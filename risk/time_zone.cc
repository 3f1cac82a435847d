#include "risk/time_zone.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <system_error>

#include "base/assert.h"

namespace authswitch::risk {
namespace {

constexpr std::int64_t kSecondsPerDay = 86400;

// Floor division: rounds toward minus infinity (C++ `/` truncates toward zero).
constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t q = a / b;
  if (a % b != 0 && ((a < 0) != (b < 0))) {
    --q;
  }
  return q;
}

static_assert(days_from_civil(1970, 1, 1) == 0);
static_assert(days_from_civil(2000, 3, 1) == 11017);
static_assert(civil_from_days(-1).year == 1969 && civil_from_days(-1).day == 31);
static_assert(days_from_civil(1, 1, 1) * kSecondsPerDay == TimeZone::kUnixSecondsMin);
static_assert(days_from_civil(10000, 1, 1) * kSecondsPerDay - 1 == TimeZone::kUnixSecondsMax);

constexpr bool is_leap(std::int64_t y) noexcept {
  return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

constexpr unsigned days_in_month(std::int64_t y, unsigned m) noexcept {
  constexpr std::array<unsigned, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : kDays[m - 1];
}

// 0 = Sunday .. 6 = Saturday; 1970-01-01 was a Thursday.
constexpr unsigned weekday_from_days(std::int64_t days) noexcept {
  return static_cast<unsigned>(days - floor_div(days + 4, 7) * 7 + 4) % 7;
}

static_assert(weekday_from_days(0) == 4);
static_assert(weekday_from_days(-1) == 3);
static_assert(weekday_from_days(-4) == 0);

std::int64_t clamp_seconds(std::int64_t unix_seconds) noexcept {
  return std::clamp(unix_seconds, TimeZone::kUnixSecondsMin, TimeZone::kUnixSecondsMax);
}

// ---- POSIX TZ strings (POSIX.1-2017 8.3; RFC 8536 3.3.1) ----

class TzCursor {
 public:
  explicit TzCursor(std::string_view text) noexcept : text_(text) {}

  [[nodiscard]] bool done() const noexcept { return pos_ == text_.size(); }
  [[nodiscard]] char peek() const noexcept { return done() ? '\0' : text_[pos_]; }
  bool eat(char c) noexcept {
    if (peek() != c || done()) {
      return false;
    }
    ++pos_;
    return true;
  }

  // A zone abbreviation: three or more letters, or <...> of letters, digits, '+' and '-'.
  bool name() noexcept {
    std::size_t length = 0;
    if (eat('<')) {
      while (!done() && peek() != '>') {
        const char c = peek();
        if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-') {
          return false;
        }
        ++pos_;
        ++length;
      }
      return eat('>') && length >= 3;
    }
    while (is_alpha(peek())) {
      ++pos_;
      ++length;
    }
    return length >= 3;
  }

  // An unsigned decimal of at most `digits_max` digits, at most `value_max`.
  bool number(int digits_max, std::int32_t value_max, std::int32_t& out) noexcept {
    std::int32_t value = 0;
    int digits = 0;
    while (is_digit(peek()) && digits < digits_max) {
      value = value * 10 + (peek() - '0');
      ++pos_;
      ++digits;
    }
    if (digits == 0 || value > value_max || is_digit(peek())) {
      return false;
    }
    out = value;
    return true;
  }

  // [+|-]hh[:mm[:ss]] with hh at most `hours_max`, as signed seconds.
  bool hms(std::int32_t hours_max, std::int32_t& out_seconds) noexcept {
    std::int32_t sign = 1;
    if (eat('-')) {
      sign = -1;
    } else {
      eat('+');
    }
    std::int32_t hours = 0;
    std::int32_t minutes = 0;
    std::int32_t seconds = 0;
    if (!number(3, hours_max, hours)) {
      return false;
    }
    if (eat(':')) {
      if (!number(2, 59, minutes)) {
        return false;
      }
      if (eat(':') && !number(2, 59, seconds)) {
        return false;
      }
    }
    out_seconds = sign * (hours * 3600 + minutes * 60 + seconds);
    return true;
  }

  // Jn | n | Mm.w.d, then an optional /time (default 02:00:00).
  bool date(PosixTzRule::Date& out) noexcept {
    std::int32_t value = 0;
    if (eat('J')) {
      if (!number(3, 365, value) || value < 1) {
        return false;
      }
      out.kind = PosixTzRule::DateKind::kJulian1;
      out.day = static_cast<std::int16_t>(value);
    } else if (eat('M')) {
      std::int32_t month = 0;
      std::int32_t week = 0;
      if (!number(2, 12, month) || month < 1 || !eat('.') || !number(1, 5, week) || week < 1 ||
          !eat('.') || !number(1, 6, value)) {
        return false;
      }
      out.kind = PosixTzRule::DateKind::kMonthWeekDay;
      out.month = static_cast<std::uint8_t>(month);
      out.week = static_cast<std::uint8_t>(week);
      out.day = static_cast<std::int16_t>(value);
    } else {
      if (!number(3, 365, value)) {
        return false;
      }
      out.kind = PosixTzRule::DateKind::kJulian0;
      out.day = static_cast<std::int16_t>(value);
    }
    out.time_seconds = 2 * 3600;
    return !eat('/') || hms(167, out.time_seconds);
  }

 private:
  static bool is_alpha(char c) noexcept { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
  static bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

  std::string_view text_;
  std::size_t pos_ = 0;
};

// Local seconds since the epoch (local midnight of the date plus its time of day) at which
// `date` falls in `year`.
std::int64_t rule_local_seconds(const PosixTzRule::Date& date, std::int64_t year) noexcept {
  std::int64_t days = 0;
  switch (date.kind) {
    case PosixTzRule::DateKind::kJulian1: {
      // Jn counts 1-365 and never Feb 29: March 1 is always J60.
      const std::int64_t day0 = date.day - 1 + (is_leap(year) && date.day >= 60 ? 1 : 0);
      days = days_from_civil(year, 1, 1) + day0;
      break;
    }
    case PosixTzRule::DateKind::kJulian0:
      days = days_from_civil(year, 1, 1) + date.day;
      break;
    case PosixTzRule::DateKind::kMonthWeekDay: {
      const unsigned month = date.month;
      const std::int64_t first = days_from_civil(year, month, 1);
      const unsigned first_weekday = weekday_from_days(first);
      unsigned mday =
          1 + (static_cast<unsigned>(date.day) + 7 - first_weekday) % 7 + (date.week - 1U) * 7;
      while (mday > days_in_month(year, month)) {
        mday -= 7;  // week 5 means the last such weekday of the month
      }
      days = first + mday - 1;
      break;
    }
  }
  return days * kSecondsPerDay + date.time_seconds;
}

// ---- TZif files (RFC 8536) ----

[[noreturn]] void fail(TimeZoneErrc errc, std::string_view zone, std::string_view why) {
  std::string what = "time zone '";
  what.append(zone);
  what.append("': ");
  what.append(why);
  throw TimeZoneError(errc, what);
}

bool valid_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > TimeZone::kNameBytesMax || name.front() == '/') {
    return false;
  }
  // '.' is not allowed, so neither is "..": the name cannot leave the zoneinfo directory.
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '+' || c == '-' || c == '/';
  });
}

std::vector<unsigned char> read_file(const std::string& path, std::string_view zone) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec) || ec) {
    fail(TimeZoneErrc::kNotFound, zone, "no such file: " + path);
  }
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                             &std::fclose);
  if (!file) {
    fail(TimeZoneErrc::kNotFound, zone, "cannot open " + path);
  }
  // One byte more than allowed tells a file at the limit from a longer one.
  std::vector<unsigned char> bytes(TimeZone::kFileBytesMax + 1);
  const std::size_t n = std::fread(bytes.data(), 1, bytes.size(), file.get());
  if (std::ferror(file.get()) != 0) {
    fail(TimeZoneErrc::kNotFound, zone, "cannot read " + path);
  }
  if (n > TimeZone::kFileBytesMax) {
    fail(TimeZoneErrc::kTooLarge, zone, "file larger than 64 KiB: " + path);
  }
  bytes.resize(n);
  return bytes;
}

struct TzifCounts {
  std::uint32_t isutcnt = 0;
  std::uint32_t isstdcnt = 0;
  std::uint32_t leapcnt = 0;
  std::uint32_t timecnt = 0;
  std::uint32_t typecnt = 0;
  std::uint32_t charcnt = 0;
};

// Bounds-checked big-endian reads over the file bytes; every read checks first.
class TzifReader {
 public:
  TzifReader(const std::vector<unsigned char>& bytes, std::string_view zone) noexcept
      : bytes_(bytes), zone_(zone) {}

  [[nodiscard]] std::size_t remaining() const noexcept { return bytes_.size() - pos_; }

  void need(std::uint64_t n, const char* what) const {
    if (n > remaining()) {
      fail(TimeZoneErrc::kMalformed, zone_, std::string("truncated ") + what);
    }
  }
  void skip(std::uint64_t n, const char* what) {
    need(n, what);
    pos_ += static_cast<std::size_t>(n);
  }
  std::uint8_t u8() {
    need(1, "data");
    return bytes_[pos_++];
  }
  std::uint32_t u32() {
    need(4, "data");
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      v = (v << 8) | bytes_[pos_++];
    }
    return v;
  }
  std::int64_t i64() {
    need(8, "data");
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
      v = (v << 8) | bytes_[pos_++];
    }
    return static_cast<std::int64_t>(v);  // two's complement (C++20)
  }
  std::int32_t i32() { return static_cast<std::int32_t>(u32()); }

  // The 44-byte header (RFC 8536 3.1); returns the version byte.
  std::uint8_t header(TzifCounts& counts) {
    need(44, "header");
    if (bytes_[pos_] != 'T' || bytes_[pos_ + 1] != 'Z' || bytes_[pos_ + 2] != 'i' ||
        bytes_[pos_ + 3] != 'f') {
      fail(TimeZoneErrc::kMalformed, zone_, "not a TZif file");
    }
    pos_ += 4;
    const std::uint8_t version = u8();
    if (version != 0 && version != '2' && version != '3' && version != '4') {
      fail(TimeZoneErrc::kMalformed, zone_, "unknown TZif version");
    }
    skip(15, "header");
    counts.isutcnt = u32();
    counts.isstdcnt = u32();
    counts.leapcnt = u32();
    counts.timecnt = u32();
    counts.typecnt = u32();
    counts.charcnt = u32();
    return version;
  }

  // Bytes of one data block (RFC 8536 3.2) with `time_bytes` (4 or 8) per time value.
  static std::uint64_t block_bytes(const TzifCounts& c, std::uint64_t time_bytes) noexcept {
    return c.timecnt * time_bytes + c.timecnt + c.typecnt * std::uint64_t{6} + c.charcnt +
           c.leapcnt * (time_bytes + 4) + c.isstdcnt + c.isutcnt;
  }

 private:
  const std::vector<unsigned char>& bytes_;
  std::string_view zone_;
  std::size_t pos_ = 0;
};

// The parts of a TZif file a TimeZone keeps.
struct TzifData {
  std::vector<std::int64_t> transitions;
  std::vector<std::int32_t> offsets;
  std::int32_t initial_offset_seconds = 0;
  bool has_rule = false;
  PosixTzRule rule;
};

void check_counts(const TzifCounts& c, std::string_view zone) {
  if (c.typecnt == 0 || c.typecnt > 256 || c.charcnt == 0) {
    fail(TimeZoneErrc::kMalformed, zone, "bad time type or designation count");
  }
  if ((c.isutcnt != 0 && c.isutcnt != c.typecnt) || (c.isstdcnt != 0 && c.isstdcnt != c.typecnt)) {
    fail(TimeZoneErrc::kMalformed, zone, "bad UT/standard indicator count");
  }
  if (c.leapcnt != 0) {
    // "right/" zones count leap seconds in their timestamps; Unix time does not.
    fail(TimeZoneErrc::kMalformed, zone, "leap-second zones are not supported");
  }
  if (c.timecnt > TimeZone::kTransitionsMax) {
    fail(TimeZoneErrc::kTooLarge, zone, "too many transitions");
  }
}

// Reads the data block the reader is at; `time_bytes` is 4 (version 1) or 8.
void read_block(TzifReader& in, const TzifCounts& c, std::uint64_t time_bytes, TzifData& out,
                std::string_view zone) {
  check_counts(c, zone);
  in.need(TzifReader::block_bytes(c, time_bytes), "data block");
  out.transitions.resize(c.timecnt);
  for (std::int64_t& t : out.transitions) {
    t = time_bytes == 8 ? in.i64() : std::int64_t{in.i32()};
  }
  if (std::adjacent_find(out.transitions.begin(), out.transitions.end(),
                         [](std::int64_t a, std::int64_t b) { return a >= b; }) !=
      out.transitions.end()) {
    fail(TimeZoneErrc::kMalformed, zone, "transitions out of order");
  }
  std::vector<std::uint8_t> types(c.timecnt);
  for (std::uint8_t& type : types) {
    type = in.u8();
    if (type >= c.typecnt) {
      fail(TimeZoneErrc::kMalformed, zone, "transition type out of range");
    }
  }
  std::vector<std::int32_t> type_offsets(c.typecnt);
  for (std::int32_t& offset : type_offsets) {
    offset = in.i32();
    const std::uint8_t is_dst = in.u8();
    const std::uint8_t designation = in.u8();
    // RFC 8536 3.2: utoff SHOULD be in -89999 .. 93599 (about -25h .. +26h).
    if (offset < -89999 || offset > 93599 || is_dst > 1 || designation >= c.charcnt) {
      fail(TimeZoneErrc::kMalformed, zone, "bad local time type record");
    }
  }
  in.skip(std::uint64_t{c.charcnt} + c.isstdcnt + c.isutcnt, "data block");
  out.offsets.resize(c.timecnt);
  for (std::size_t i = 0; i < types.size(); ++i) {
    out.offsets[i] = type_offsets[types[i]];
  }
  // RFC 8536 3.2: local time before the first transition is time type 0.
  out.initial_offset_seconds = type_offsets[0];
}

// The footer (RFC 8536 3.3): "\n" TZ-string "\n", possibly an empty string.
void read_footer(const std::vector<unsigned char>& bytes, std::size_t begin, TzifData& out,
                 std::string_view zone) {
  if (begin >= bytes.size() || bytes[begin] != '\n') {
    fail(TimeZoneErrc::kMalformed, zone, "missing footer");
  }
  const auto first = bytes.begin() + static_cast<std::ptrdiff_t>(begin) + 1;
  const auto newline = std::find(first, bytes.end(), '\n');
  if (newline == bytes.end()) {
    fail(TimeZoneErrc::kMalformed, zone, "unterminated footer");
  }
  const auto length = static_cast<std::size_t>(newline - first);
  if (length > TimeZone::kFooterBytesMax) {
    fail(TimeZoneErrc::kTooLarge, zone, "footer TZ string too long");
  }
  if (length == 0) {
    return;  // No rule: the last transition's type holds forever.
  }
  const std::string footer(first, newline);
  if (!parse_posix_tz(footer, out.rule)) {
    fail(TimeZoneErrc::kMalformed, zone, "bad footer TZ string '" + footer + "'");
  }
  out.has_rule = true;
}

TzifData parse_tzif(const std::vector<unsigned char>& bytes, std::string_view zone) {
  TzifData data;
  TzifReader in(bytes, zone);
  TzifCounts v1;
  const std::uint8_t version = in.header(v1);
  if (version == 0) {
    read_block(in, v1, 4, data, zone);
    return data;
  }
  // Version 2+: skip the 32-bit block, then read the 64-bit header, block and footer.
  in.skip(TzifReader::block_bytes(v1, 4), "version 1 data block");
  TzifCounts v2;
  if (in.header(v2) != version) {
    fail(TimeZoneErrc::kMalformed, zone, "second header version differs");
  }
  read_block(in, v2, 8, data, zone);
  read_footer(bytes, bytes.size() - in.remaining(), data, zone);
  return data;
}

}  // namespace

std::string_view to_string(TimeZoneErrc errc) noexcept {
  switch (errc) {
    case TimeZoneErrc::kInvalidName:
      return "invalid time zone name";
    case TimeZoneErrc::kNotFound:
      return "time zone not found";
    case TimeZoneErrc::kMalformed:
      return "malformed time zone file";
    case TimeZoneErrc::kTooLarge:
      return "time zone file too large";
  }
  return "unknown time zone error";
}

bool parse_posix_tz(std::string_view text, PosixTzRule& rule) noexcept {
  PosixTzRule parsed;
  TzCursor in(text);
  std::int32_t std_west_seconds = 0;
  // POSIX offsets are west-positive ("CET-1" is UTC+1); RFC 8536 keeps hours within 0-24.
  if (!in.name() || !in.hms(24, std_west_seconds)) {
    return false;
  }
  parsed.std_offset_seconds = -std_west_seconds;
  if (in.done()) {
    rule = parsed;
    return true;
  }
  if (!in.name()) {
    return false;
  }
  parsed.has_dst = true;
  parsed.dst_offset_seconds = parsed.std_offset_seconds + 3600;
  if (in.peek() != ',' && !in.done()) {
    std::int32_t dst_west_seconds = 0;
    if (!in.hms(24, dst_west_seconds)) {
      return false;
    }
    parsed.dst_offset_seconds = -dst_west_seconds;
  }
  if (!in.eat(',') || !in.date(parsed.start) || !in.eat(',') || !in.date(parsed.end) ||
      !in.done()) {
    return false;
  }
  rule = parsed;
  return true;
}

std::int32_t posix_tz_offset_seconds(const PosixTzRule& rule, std::int64_t unix_seconds) noexcept {
  if (!rule.has_dst) {
    return rule.std_offset_seconds;
  }
  const std::int64_t t = clamp_seconds(unix_seconds);
  const std::int64_t year = civil_from_days(floor_div(t, kSecondsPerDay)).year;
  // The latest transition at or before t, over the year of t and its neighbours: a rule time
  // of up to 167 hours, or a southern-hemisphere rule, can move a transition across New Year.
  // On a tie the later year wins, so "0/0,J365/25" (permanent daylight time, RFC 8536 3.3.1)
  // stays in daylight time across New Year.
  std::int64_t best_seconds = std::numeric_limits<std::int64_t>::min();
  std::int32_t offset = rule.std_offset_seconds;
  for (std::int64_t y = year - 1; y <= year + 1; ++y) {
    const std::int64_t start = rule_local_seconds(rule.start, y) - rule.std_offset_seconds;
    const std::int64_t end = rule_local_seconds(rule.end, y) - rule.dst_offset_seconds;
    const bool start_first = start <= end;
    const std::array<std::int64_t, 2> at = {start_first ? start : end, start_first ? end : start};
    const std::array<std::int32_t, 2> to = {
        start_first ? rule.dst_offset_seconds : rule.std_offset_seconds,
        start_first ? rule.std_offset_seconds : rule.dst_offset_seconds};
    for (std::size_t i = 0; i < 2; ++i) {
      if (at[i] <= t && at[i] >= best_seconds) {
        best_seconds = at[i];
        offset = to[i];
      }
    }
  }
  AS_DASSERT(offset == rule.std_offset_seconds || offset == rule.dst_offset_seconds);
  return offset;
}

TimeZone TimeZone::load(std::string_view name, std::string_view zoneinfo_dir) {
  if (name == "UTC") {
    return utc();
  }
  if (!valid_name(name)) {
    fail(TimeZoneErrc::kInvalidName, name.substr(0, kNameBytesMax),
         "names are [A-Za-z0-9_+-/], not starting with '/'");
  }
  std::string path(zoneinfo_dir);
  path.push_back('/');
  path.append(name);
  TzifData data = parse_tzif(read_file(path, name), name);
  TimeZone zone;
  zone.name_ = name;
  zone.transitions_ = std::move(data.transitions);
  zone.offsets_ = std::move(data.offsets);
  zone.initial_offset_seconds_ = data.initial_offset_seconds;
  zone.has_rule_ = data.has_rule;
  zone.rule_ = data.rule;
  AS_ASSERT(zone.transitions_.size() == zone.offsets_.size());
  AS_ASSERT(zone.transitions_.size() <= kTransitionsMax);
  return zone;
}

TimeZone TimeZone::utc() {
  TimeZone zone;
  zone.name_ = "UTC";
  return zone;
}

std::int32_t TimeZone::utc_offset_seconds(std::int64_t unix_seconds) const noexcept {
  AS_DASSERT(transitions_.size() == offsets_.size());
  const std::int64_t t = clamp_seconds(unix_seconds);
  const auto after = std::upper_bound(transitions_.begin(), transitions_.end(), t);
  if (after == transitions_.end() && has_rule_) {
    // After the last transition, or always when there is none (RFC 8536 3.3), the footer
    // rule holds.
    return posix_tz_offset_seconds(rule_, t);
  }
  if (after == transitions_.begin()) {
    return initial_offset_seconds_;
  }
  return offsets_[static_cast<std::size_t>(after - transitions_.begin()) - 1];
}

LocalTime TimeZone::local(std::int64_t unix_ms) const noexcept {
  const std::int64_t utc_seconds = clamp_seconds(floor_div(unix_ms, 1000));
  const std::int64_t local_seconds = utc_seconds + utc_offset_seconds(utc_seconds);
  const std::int64_t days = floor_div(local_seconds, kSecondsPerDay);
  const auto second_of_day = static_cast<int>(local_seconds - days * kSecondsPerDay);
  AS_DASSERT(second_of_day >= 0 && second_of_day < kSecondsPerDay);
  const CivilDate date = civil_from_days(days);
  LocalTime out;
  out.year = static_cast<int>(date.year);
  out.month = static_cast<int>(date.month);
  out.day = static_cast<int>(date.day);
  out.hour = second_of_day / 3600;
  out.minute = second_of_day / 60 % 60;
  out.second = second_of_day % 60;
  const unsigned weekday = weekday_from_days(days);
  out.weekday = weekday == 0 ? 7 : static_cast<int>(weekday);
  out.minute_of_day = second_of_day / 60;
  return out;
}

}  // namespace authswitch::risk
