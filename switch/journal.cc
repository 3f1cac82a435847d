#include "switch/journal.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include <concurrentqueue/blockingconcurrentqueue.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "risk/time_zone.h"

namespace authswitch::switching {
namespace {

constexpr std::size_t kBulk = 256;

template <std::size_t N>
std::uint8_t copy_cut(std::array<char, N>& out, std::string_view s) noexcept {
  const std::size_t n = std::min(s.size(), N);
  std::copy_n(s.begin(), n, out.begin());
  return static_cast<std::uint8_t>(n);
}

// Appends `v` in decimal.
void put_number(std::string& out, std::int64_t v) {
  std::array<char, 24> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  out.append(buf.data(), r.ptr);
}

// Appends a JSON string of printable ASCII (other bytes become '?': the journal's texts are
// codes, ids and masked PANs).
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

// "2026-11-24T15:30:00.123Z".
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

}  // namespace

void AuditRecord::set_masked_pan(std::string_view pan_masked) noexcept {
  masked_pan_len = copy_cut(masked_pan, pan_masked);
}

void AuditRecord::set_reasons(std::string_view text) noexcept {
  reasons_len = copy_cut(reasons, text);
}

struct Journal::Queue {
  Queue(std::size_t capacity, std::size_t producers) : q(capacity, producers, 0) {}
  moodycamel::BlockingConcurrentQueue<AuditRecord> q;
};

struct Journal::Producer::Token {
  explicit Token(moodycamel::BlockingConcurrentQueue<AuditRecord>& q) : t(q) {}
  moodycamel::ProducerToken t;
};

Journal::Journal(Options options) : options_(std::move(options)) {
  queue_ = std::make_unique<Queue>(options_.queue_capacity, options_.producers_max);
  fd_ = ::open(options_.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd_ < 0) {
    throw std::runtime_error("audit journal " + options_.path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd_, &st) == 0) {
    file_bytes_ = static_cast<std::uint64_t>(st.st_size);
  }
  writer_ = std::thread([this] { run(); });
}

Journal::~Journal() {
  stop();
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Journal::Producer Journal::producer() {
  return Producer(*this, std::make_unique<Producer::Token>(queue_->q));
}

Journal::Producer::Producer(Journal& journal, std::unique_ptr<Token> token) noexcept
    : journal_(&journal), token_(std::move(token)) {}
Journal::Producer::Producer(Producer&&) noexcept = default;
Journal::Producer::~Producer() = default;

bool Journal::Producer::append(const AuditRecord& r) noexcept {
  if (!journal_->queue_->q.try_enqueue(token_->t, r)) {
    journal_->dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void Journal::stop() noexcept {
  if (stopping_.exchange(true)) {
    return;
  }
  if (writer_.joinable()) {
    writer_.join();
  }
}

Journal::Stats Journal::stats() const noexcept {
  return {written_.load(std::memory_order_relaxed), dropped_.load(std::memory_order_relaxed),
          rotations_.load(std::memory_order_relaxed),
          write_errors_.load(std::memory_order_relaxed)};
}

void Journal::run() noexcept {
  std::vector<AuditRecord> batch(kBulk);
  std::string text;
  text.reserve(kBulk * 256);
  for (;;) {
    const bool stopping = stopping_.load(std::memory_order_acquire);
    const std::size_t n =
        queue_->q.wait_dequeue_bulk_timed(batch.data(), kBulk, std::chrono::milliseconds(20));
    if (n == 0) {
      if (stopping) {
        return;  // stop() was asked before this empty poll: everything queued is written
      }
      continue;
    }
    text.clear();
    for (std::size_t i = 0; i < n; ++i) {
      const AuditRecord& r = batch[i];
      text += R"({"time":")";
      put_time(text, r.time_ms);
      text += R"(","network":)";
      put_string(text, r.network < options_.networks.size() ? options_.networks[r.network] : "?");
      text += R"(,"mti":")";
      std::array<char, 5> mti{};
      std::snprintf(mti.data(), mti.size(), "%04u", static_cast<unsigned>(r.mti % 10'000));
      text.append(mti.data(), 4);
      text += R"(","pan":)";
      put_string(text, std::string_view(r.masked_pan.data(), r.masked_pan_len));
      text += R"(,"amount":)";
      put_number(text, r.amount_minor);
      text += R"(,"currency":)";
      put_number(text, r.currency);
      text += R"(,"code":)";
      put_string(text, std::string_view(r.code.data(), r.code.size()));
      text += R"(,"reasons":)";
      put_string(text, std::string_view(r.reasons.data(), r.reasons_len));
      text += R"(,"latency_us":)";
      put_number(text, r.latency_us);
      text += "}\n";
    }
    write_batch(text);
    written_.fetch_add(n, std::memory_order_relaxed);
  }
}

void Journal::write_batch(std::string_view text) noexcept {
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
  if (file_bytes_ >= options_.rotate_bytes) {
    rotate();
  }
}

void Journal::rotate() noexcept {
  const auto name = [&](std::size_t i) {
    return i == 0 ? options_.path : options_.path + "." + std::to_string(i);
  };
  if (options_.rotated_files_max > 0) {
    (void)std::remove(name(options_.rotated_files_max).c_str());
    for (std::size_t i = options_.rotated_files_max; i > 0; --i) {
      (void)std::rename(name(i - 1).c_str(), name(i).c_str());
    }
  }
  const int fd =
      ::open(options_.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) {
    write_errors_.fetch_add(1, std::memory_order_relaxed);
    return;  // keep writing to the renamed file
  }
  ::close(fd_);
  fd_ = fd;
  file_bytes_ = 0;
  rotations_.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace authswitch::switching
