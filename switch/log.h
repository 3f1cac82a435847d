#pragma once
// The switch's operational log (issue 5; DESIGN.md section 6): one JSON object per line on
// stderr, for connection and process events only (start-up, listening, connects, closes, TLS
// failures, reloads, shutdown), never per message. Fields, in this order:
//
//   {"event":"listening","network":"acq","address":"127.0.0.1:40211","level":"info",
//    "time":"2026-12-03T19:30:00.123Z","instance":"authswitch"}
//
// event first, then network (omitted when empty), the caller's extra fields in the order
// given, detail (omitted when empty), level, time (RFC 3339, UTC, milliseconds) and the
// instance name ([switch] name). Every string is JSON-escaped. Tools read the bound port of a
// listen network from its "listening" line ("address":"HOST:PORT").
//
// Never a PAN, track data or PIN block: callers pass addresses, network names, error names
// and counts only.
//
// Thread-safety: configure() at start-up, before other threads log; log() from any thread
// (one write(2) per line under a mutex; it allocates, which is fine off the message path).

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "switch/config.h"

namespace authswitch::switching {

using LogField = std::pair<std::string_view, std::string_view>;

// Sets the instance name and the lowest level written (lines below it are dropped).
void configure_log(std::string_view instance, LogLevel level);

// True when a line of `level` would be written.
[[nodiscard]] bool log_enabled(LogLevel level) noexcept;

// Writes one line (see the file comment). Never throws: a line that cannot be built or
// written is lost.
void log_event(LogLevel level, std::string_view event, std::string_view network,
               std::string_view detail, std::initializer_list<LogField> fields = {}) noexcept;

// The line log_event writes for these values at `time_ms` (ms since the Unix epoch), without
// the newline; for tests.
[[nodiscard]] std::string format_log_line(LogLevel level, std::string_view event,
                                          std::string_view network, std::string_view detail,
                                          std::initializer_list<LogField> fields,
                                          std::int64_t time_ms);

// Appends `text` to `out` as the inside of a JSON string (quotes, backslashes and control
// characters escaped; other bytes as they are).
void append_json_escaped(std::string& out, std::string_view text);

}  // namespace authswitch::switching
