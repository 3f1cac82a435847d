#pragma once
// The members of BasicJournal<Record> (switch/journal.h) and the JSON helpers record formatters
// share. Included only by the .cc files that instantiate a journal (journal.cc, reconciler.cc),
// so the moodycamel queue stays out of every other translation unit.
// Thread-safety: as BasicJournal; the helpers are plain functions.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include <concurrentqueue/concurrentqueue.h>

#include "base/thread_name.h"
#include "switch/journal.h"

namespace authswitch::switching {

namespace journal_json {

// Appends `v` in decimal.
void put_number(std::string& out, std::int64_t v);
// Appends a JSON string of printable ASCII (other bytes become '?': journal texts are codes,
// ids, tokens and masked PANs).
void put_string(std::string& out, std::string_view s);
// Appends "2026-11-24T15:30:00.123Z" (UTC) for `ms` since the epoch.
void put_time(std::string& out, std::int64_t ms);
// The name of network `index`, or "?".
[[nodiscard]] std::string_view network_name(std::span<const std::string> networks,
                                            std::uint16_t index) noexcept;
// Opens a journal line with the members every record starts with: {"time":"...","network":...
// (the record's formatter appends the rest, each member after a ',', and the closing "}\n").
void put_line_start(std::string& out, std::int64_t time_ms, std::span<const std::string> networks,
                    std::uint16_t network);

}  // namespace journal_json

template <typename Record>
struct BasicJournal<Record>::Queue {
  Queue(std::size_t capacity, std::size_t producers) : q(capacity, producers, 0) {}
  moodycamel::ConcurrentQueue<Record> q;
};

template <typename Record>
struct BasicJournal<Record>::Producer::Token {
  explicit Token(moodycamel::ConcurrentQueue<Record>& q) : t(q) {}
  moodycamel::ProducerToken t;
};

template <typename Record>
BasicJournal<Record>::BasicJournal(Options options) : options_(std::move(options)) {
  static_assert(std::is_trivially_copyable_v<Record>, "records are copied through a queue");
  queue_ = std::make_unique<Queue>(options_.queue_capacity, options_.producers_max);
  file_ = std::make_unique<JournalFile>(options_.path, options_.rotate_bytes,
                                        options_.rotated_files_max, Record::kJournalName);
  writer_ = std::thread([this] {
    base::set_thread_name(Record::kThreadName);
    run();
  });
}

template <typename Record>
BasicJournal<Record>::~BasicJournal() {
  stop();
}

template <typename Record>
typename BasicJournal<Record>::Producer BasicJournal<Record>::producer() {
  return Producer(*this, std::make_unique<typename Producer::Token>(queue_->q));
}

template <typename Record>
BasicJournal<Record>::Producer::Producer(BasicJournal& journal,
                                         std::unique_ptr<Token> token) noexcept
    : journal_(&journal), token_(std::move(token)) {}

template <typename Record>
BasicJournal<Record>::Producer::Producer(Producer&&) noexcept = default;

template <typename Record>
BasicJournal<Record>::Producer::~Producer() = default;

template <typename Record>
bool BasicJournal<Record>::Producer::append(const Record& r) noexcept {
  if (!journal_->queue_->q.try_enqueue(token_->t, r)) {
    journal_->dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

template <typename Record>
void BasicJournal<Record>::stop() noexcept {
  if (stopping_.exchange(true)) {
    return;
  }
  if (writer_.joinable()) {
    writer_.join();
  }
}

template <typename Record>
typename BasicJournal<Record>::Stats BasicJournal<Record>::stats() const noexcept {
  return {written_.load(std::memory_order_relaxed), dropped_.load(std::memory_order_relaxed),
          file_->rotations(), file_->write_errors()};
}

// The writer polls: a blocking queue would wake it (a futex call on the producer's side, a
// context switch on 2 cores) for every record, once per message. Polling every kIdlePoll while
// the queue is empty costs ~500 wake-ups a second whatever the rate, and batches the lines of
// up to kIdlePoll of traffic into each write; a record reaches the file at most kIdlePoll late.
template <typename Record>
void BasicJournal<Record>::run() noexcept {
  constexpr std::size_t kBulk = 256;
  constexpr auto kIdlePoll = std::chrono::milliseconds(2);
  std::vector<Record> batch(kBulk);
  std::string text;
  text.reserve(kBulk * 256);
  for (;;) {
    const bool stopping = stopping_.load(std::memory_order_acquire);
    const std::size_t n = queue_->q.try_dequeue_bulk(batch.data(), kBulk);
    if (n == 0) {
      if (stopping) {
        return;  // stop() was asked before this empty poll: everything queued is written
      }
      std::this_thread::sleep_for(kIdlePoll);
      continue;
    }
    text.clear();
    for (std::size_t i = 0; i < n; ++i) {
      append_json_line(text, batch[i], options_.networks);
    }
    file_->write(text);
    written_.fetch_add(n, std::memory_order_relaxed);
  }
}

}  // namespace authswitch::switching
