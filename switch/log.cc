#include "switch/log.h"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <mutex>

#include <unistd.h>

namespace authswitch::switching {
namespace {

std::mutex g_mutex;
std::string g_instance = "authswitch";  // guarded by g_mutex after start-up
std::atomic<LogLevel> g_level{LogLevel::kInfo};

void append_time(std::string& out, std::int64_t time_ms) {
  const std::time_t secs = static_cast<std::time_t>(time_ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  std::array<char, 40> buf{};
  const std::size_t n = std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%S", &tm);
  out.append(buf.data(), n);
  const auto ms = static_cast<int>(time_ms % 1000);
  out += '.';
  out += static_cast<char>('0' + ms / 100);
  out += static_cast<char>('0' + ms / 10 % 10);
  out += static_cast<char>('0' + ms % 10);
  out += 'Z';
}

void append_field(std::string& out, std::string_view key, std::string_view value) {
  out += ",\"";
  append_json_escaped(out, key);
  out += "\":\"";
  append_json_escaped(out, value);
  out += '"';
}

}  // namespace

void append_json_escaped(std::string& out, std::string_view text) {
  static constexpr std::string_view kHex = "0123456789abcdef";
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20U || u == 0x7FU) {
      out += "\\u00";
      out += kHex[u >> 4U];
      out += kHex[u & 0xFU];
    } else {
      out += c;
    }
  }
}

void configure_log(std::string_view instance, LogLevel level) {
  const std::lock_guard lock(g_mutex);
  g_instance = instance;
  g_level.store(level, std::memory_order_relaxed);
}

bool log_enabled(LogLevel level) noexcept {
  return level >= g_level.load(std::memory_order_relaxed);
}

std::string format_log_line(LogLevel level, std::string_view event, std::string_view network,
                            std::string_view detail, std::initializer_list<LogField> fields,
                            std::int64_t time_ms) {
  std::string line = "{\"event\":\"";
  append_json_escaped(line, event);
  line += '"';
  if (!network.empty()) {
    append_field(line, "network", network);
  }
  for (const auto& [key, value] : fields) {
    append_field(line, key, value);
  }
  if (!detail.empty()) {
    append_field(line, "detail", detail);
  }
  append_field(line, "level", log_level_name(level));
  line += ",\"time\":\"";
  append_time(line, time_ms);
  line += '"';
  append_field(line, "instance", g_instance);
  line += '}';
  return line;
}

void log_event(LogLevel level, std::string_view event, std::string_view network,
               std::string_view detail, std::initializer_list<LogField> fields) noexcept {
  if (!log_enabled(level)) {
    return;
  }
  try {
    const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
    const std::lock_guard lock(g_mutex);
    std::string line = format_log_line(level, event, network, detail, fields, now_ms);
    line += '\n';
    std::size_t at = 0;
    while (at < line.size()) {
      const ssize_t n = ::write(STDERR_FILENO, line.data() + at, line.size() - at);
      if (n <= 0) {
        break;
      }
      at += static_cast<std::size_t>(n);
    }
  } catch (...) {
    // Out of memory while logging: the line is lost, the switch goes on.
  }
}

}  // namespace authswitch::switching
