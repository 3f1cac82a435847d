#include "switch/journal.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "risk/time_zone.h"
#include "switch/journal_internal.h"

namespace authswitch::switching {
namespace {

template <std::size_t N>
std::uint8_t copy_cut(std::array<char, N>& out, std::string_view s) noexcept {
  const std::size_t n = std::min(s.size(), N);
  std::copy_n(s.begin(), n, out.begin());
  return static_cast<std::uint8_t>(n);
}

}  // namespace

namespace journal_json {

void put_number(std::string& out, std::int64_t v) {
  std::array<char, 24> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  out.append(buf.data(), r.ptr);
}

void put_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c < 0x20 || c > 0x7E) {
      out += '?';
    } else {
      out += c;
    }
  }
  out += '"';
}

void put_time(std::string& out, std::int64_t ms) {
  const std::int64_t days = ms >= 0 ? ms / 86'400'000 : (ms - 86'399'999) / 86'400'000;
  const std::int64_t in_day = ms - days * 86'400'000;
  const risk::CivilDate d = risk::civil_from_days(days);
  std::array<char, 32> buf{};
  const int n = std::snprintf(
      buf.data(), buf.size(), "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%03lldZ",
      static_cast<long long>(d.year), d.month, d.day, static_cast<long long>(in_day / 3'600'000),
      static_cast<long long>(in_day / 60'000 % 60), static_cast<long long>(in_day / 1'000 % 60),
      static_cast<long long>(in_day % 1'000));
  out.append(buf.data(), static_cast<std::size_t>(std::max(n, 0)));
}

std::string_view network_name(std::span<const std::string> networks, std::uint16_t index) noexcept {
  return index < networks.size() ? std::string_view(networks[index]) : std::string_view("?");
}

void put_line_start(std::string& out, std::int64_t time_ms, std::span<const std::string> networks,
                    std::uint16_t network) {
  out += R"({"time":")";
  put_time(out, time_ms);
  out += R"(","network":)";
  put_string(out, network_name(networks, network));
}

}  // namespace journal_json

void AuditRecord::set_masked_pan(std::string_view pan_masked) noexcept {
  masked_pan_len = copy_cut(masked_pan, pan_masked);
}

void AuditRecord::set_reasons(std::string_view text) noexcept {
  reasons_len = copy_cut(reasons, text);
}

void AuditRecord::set_rules_version(std::string_view version) noexcept {
  rules_version_len = copy_cut(rules_version, version);
}

void append_json_line(std::string& out, const AuditRecord& r,
                      std::span<const std::string> networks) {
  using journal_json::put_number;
  using journal_json::put_string;
  journal_json::put_line_start(out, r.time_ms, networks, r.network);
  out += R"(,"mti":")";
  std::array<char, 5> mti{};
  std::snprintf(mti.data(), mti.size(), "%04u", static_cast<unsigned>(r.mti % 10'000));
  out.append(mti.data(), 4);
  out += R"(","pan":)";
  put_string(out, std::string_view(r.masked_pan.data(), r.masked_pan_len));
  out += R"(,"amount":)";
  put_number(out, r.amount_minor);
  out += R"(,"currency":)";
  put_number(out, r.currency);
  out += R"(,"code":)";
  put_string(out, std::string_view(r.code.data(), r.code.size()));
  out += R"(,"reasons":)";
  put_string(out, std::string_view(r.reasons.data(), r.reasons_len));
  if (r.rules_generation != 0) {
    out += R"(,"rules":)";
    put_string(out, std::string_view(r.rules_version.data(), r.rules_version_len));
    out += R"(,"rules_generation":)";
    put_number(out, static_cast<std::int64_t>(r.rules_generation));
  }
  out += R"(,"latency_us":)";
  put_number(out, r.latency_us);
  out += "}\n";
}

// ---------------------------------------------------------------------------------------------
// JournalFile

JournalFile::JournalFile(std::string path, std::uint64_t rotate_bytes,
                         std::size_t rotated_files_max, std::string_view what)
    : path_(std::move(path)), rotate_bytes_(rotate_bytes), rotated_files_max_(rotated_files_max) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd_ < 0) {
    throw std::runtime_error(std::string(what) + " " + path_ + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd_, &st) == 0) {
    file_bytes_ = static_cast<std::uint64_t>(st.st_size);
  }
}

JournalFile::~JournalFile() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

void JournalFile::write(std::string_view text) noexcept {
  while (!text.empty()) {
    const ssize_t n = ::write(fd_, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      write_errors_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    text.remove_prefix(static_cast<std::size_t>(n));
    file_bytes_ += static_cast<std::uint64_t>(n);
  }
  if (file_bytes_ >= rotate_bytes_) {
    rotate();
  }
}

void JournalFile::rotate() noexcept {
  const auto name = [&](std::size_t i) { return i == 0 ? path_ : path_ + "." + std::to_string(i); };
  if (rotated_files_max_ > 0) {
    (void)std::remove(name(rotated_files_max_).c_str());
    for (std::size_t i = rotated_files_max_; i > 0; --i) {
      (void)std::rename(name(i - 1).c_str(), name(i).c_str());
    }
  }
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) {
    write_errors_.fetch_add(1, std::memory_order_relaxed);
    return;  // keep writing to the renamed file
  }
  ::close(fd_);
  fd_ = fd;
  file_bytes_ = 0;
  rotations_.fetch_add(1, std::memory_order_relaxed);
}

template class BasicJournal<AuditRecord>;

}  // namespace authswitch::switching
