#pragma once
// Journals (issue 5): JSON lines written by their own thread, so shard threads never block on a
// disk (DESIGN.md section 1: "moodycamel queues for everything that leaves a shard").
//
// BasicJournal<Record> carries one fixed-size record type. Two exist:
//   Journal (= BasicJournal<AuditRecord>): the audit journal, one line per answered request
//     (time, network, MTI, masked PAN, amount, currency, response code, reasons, latency);
//   ReconJournal (switch/reconciler.h): the reconciliation journal of stand-in decisions and
//     other work owed to Redis.
//
// Shards append records through their own Producer (a moodycamel explicit producer token) with
// try_enqueue into a queue sized at construction: no lock, no allocation, no syscall per record.
// A full queue drops the record and counts it (backpressure; the journal never grows). The
// writer thread takes records in bulk, formats them, appends them to the file with one write(2)
// per batch, and rotates the file by size (path -> path.1 -> ... -> path.N, the oldest removed);
// the file side is JournalFile, shared by every record type. A record never holds a PAN: only
// its masked form (first 6, last 4).
//
// A Record type is trivially copyable, has `static constexpr std::string_view kJournalName`
// (for error messages), and a function found by argument-dependent lookup
//   void append_json_line(std::string& out, const Record& r, std::span<const std::string> networks)
// that appends its line (with the '\n'); it runs on the writer thread (it may allocate there).
// The template's members are defined in switch/journal_internal.h and instantiated explicitly
// next to each record type's formatter (journal.cc, reconciler.cc).
//
// Thread-safety: one Producer per producing thread; stats() from any thread; stop() from one.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace authswitch::switching {

struct AuditRecord {
  static constexpr std::string_view kJournalName = "audit journal";
  static constexpr std::string_view kThreadName = "as-audit";

  std::int64_t time_ms = 0;  // when the response was sent, ms since the epoch (UTC)
  std::uint32_t latency_us = 0;
  std::uint16_t network = 0;  // index into Journal::Options::networks
  std::uint16_t mti = 0;      // of the request, e.g. 100
  std::int64_t amount_minor = 0;
  std::uint16_t currency = 0;  // ISO 4217 numeric
  std::array<char, 2> code{'0', '0'};
  std::uint8_t masked_pan_len = 0;
  std::array<char, 19> masked_pan{};  // "476173******0119"; never the clear PAN
  std::uint8_t reasons_len = 0;
  std::array<char, 96> reasons{};  // rule ids or the script's reason, ';'-separated
  // The rule set that decided: its file's `version` text and its generation in this process
  // (risk::RuleSet::generation; 0: no rules ran, e.g. a reversal). The version is empty when the
  // set was replaced before the answer (a reload in between), and so are the rule ids.
  std::uint8_t rules_version_len = 0;
  std::array<char, 40> rules_version{};
  std::uint64_t rules_generation = 0;

  // Copy `pan_masked` (already masked by limits::mask_pan), `reasons` and `version`, cut to
  // size.
  void set_masked_pan(std::string_view pan_masked) noexcept;
  void set_reasons(std::string_view text) noexcept;
  void set_rules_version(std::string_view version) noexcept;
};

// The audit journal's line for `r`.
void append_json_line(std::string& out, const AuditRecord& r,
                      std::span<const std::string> networks);

// The file side of a journal, used by its writer thread only: appends, rotates by size, counts.
class JournalFile {
 public:
  // Opens (appends to) `path`. Throws std::runtime_error naming `what` when it cannot.
  JournalFile(std::string path, std::uint64_t rotate_bytes, std::size_t rotated_files_max,
              std::string_view what);
  ~JournalFile();
  JournalFile(const JournalFile&) = delete;
  JournalFile& operator=(const JournalFile&) = delete;
  JournalFile(JournalFile&&) = delete;
  JournalFile& operator=(JournalFile&&) = delete;

  // Appends `text` (one batch of lines) and rotates when the file reached rotate_bytes.
  void write(std::string_view text) noexcept;

  [[nodiscard]] std::uint64_t rotations() const noexcept {
    return rotations_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t write_errors() const noexcept {
    return write_errors_.load(std::memory_order_relaxed);
  }

 private:
  void rotate() noexcept;

  std::string path_;
  std::uint64_t rotate_bytes_;
  std::size_t rotated_files_max_;
  int fd_ = -1;
  std::uint64_t file_bytes_ = 0;
  std::atomic<std::uint64_t> rotations_{0};
  std::atomic<std::uint64_t> write_errors_{0};
};

template <typename Record>
class BasicJournal {
 public:
  struct Options {
    std::string path;                        // the live file; rotated ones get .1, .2, ...
    std::uint64_t rotate_bytes = 256 << 20;  // rotate once the live file is at least this big
    std::size_t rotated_files_max = 5;
    std::size_t queue_capacity = 1 << 16;  // records in flight between shards and the writer
    std::size_t producers_max = 64;
    std::vector<std::string> networks;  // names by the record's network index
  };

  struct Stats {
    std::uint64_t written = 0;
    std::uint64_t dropped = 0;  // queue full
    std::uint64_t rotations = 0;
    std::uint64_t write_errors = 0;
  };

  // Opens (appends to) the file and starts the writer thread. Throws std::runtime_error when the
  // file cannot be opened.
  explicit BasicJournal(Options options);
  // Writes everything queued, then stops.
  ~BasicJournal();
  BasicJournal(const BasicJournal&) = delete;
  BasicJournal& operator=(const BasicJournal&) = delete;
  BasicJournal(BasicJournal&&) = delete;
  BasicJournal& operator=(BasicJournal&&) = delete;

  class Producer {
   public:
    // False (and counted as dropped) when the queue is full. Wait-free, no allocation.
    bool append(const Record& r) noexcept;
    ~Producer();
    Producer(Producer&&) noexcept;
    Producer& operator=(Producer&&) = delete;
    Producer(const Producer&) = delete;
    Producer& operator=(const Producer&) = delete;

   private:
    friend class BasicJournal;
    struct Token;
    Producer(BasicJournal& journal, std::unique_ptr<Token> token) noexcept;
    BasicJournal* journal_;
    std::unique_ptr<Token> token_;
  };

  // Startup: one per producing thread (at most Options::producers_max).
  [[nodiscard]] Producer producer();

  // Writes everything queued and stops the writer (idempotent; the destructor calls it).
  void stop() noexcept;
  [[nodiscard]] Stats stats() const noexcept;

 private:
  struct Queue;
  void run() noexcept;

  Options options_;
  std::unique_ptr<Queue> queue_;
  std::unique_ptr<JournalFile> file_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> written_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::thread writer_;
};

extern template class BasicJournal<AuditRecord>;
using Journal = BasicJournal<AuditRecord>;

}  // namespace authswitch::switching
