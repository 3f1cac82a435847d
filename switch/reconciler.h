#pragma once
// Reconciler: the work a shard owes Redis after answering without it (issue 5, "Deadlines and
// stand-in"; DESIGN.md sections 1 and 4), replayed once Redis answers again, and the
// reconciliation journal that lets an operator follow every such item from the file alone.
//
// What is owed (ReconKind), handed over by the processor (switch/processor.h) as a ReconItem:
//   kStandInApproval    an authorization (debit) answered 00 by stand-in whose script call was
//                       never made, failed, timed out or came back declined: replayed as
//                       holds.lua force_auth (force_debit) with the original transaction key and
//                       fingerprint, which places the hold whatever the balance says, or returns
//                       the original answer when the late original call approved (changes
//                       nothing: one hold, never two).
//   kUnconfirmedAdvice  an advice or reversal acknowledged without Redis: its capture (reverse)
//                       call replayed with its own replay key (idempotent).
//   kCompensation       a compensating full reversal ("<txn>-si") of a request answered 91 that
//                       failed: retried.
// Order does not matter for correctness: a reversal that runs before the authorization it
// reverses leaves a void record that the later force_auth finds (94 hold_exists: nothing owed),
// and a capture without its hold posts anyway.
//
// Per tick (on_tick, the shard's clock), while the pipeline is ready and not backing off, at
// most Options::per_tick_max items leave the queue (FIFO) and are submitted (at most
// Options::in_flight_max calls at once), each with deadline now + Options::call_timeout. An item
// without an account (the card was not cached when Redis went away) is first looked up in the
// card directory. A call that fails (error, timeout, disconnect, unparseable reply) goes back to
// the queue and the reconciler backs off (doubling from backoff_min to backoff_max; any answer
// resets it); an item failing attempts_max times is given up as unresolved.
//
// Nothing is dropped silently: the journal gets a line when an item is queued and one with its
// outcome: applied (the replay placed or posted it), replayed_original (Redis had it already:
// the late original call, or a reversal that came first), or unresolved (the queue was full,
// attempts_max failures, a refusal such as no account or another currency, a partial original,
// or items left at shutdown), each outcome also counted in Stats. With no journal (nullptr),
// only the counts remain. Lines never hold a PAN: the card token and the masked PAN.
//
// Memory: the queue (Options::capacity items, a power of two), the call slots and the script
// call are allocated at construction; enqueue, record, on_tick and the completions allocate
// nothing and throw nothing.
//
// Thread-safety: none; one reconciler per shard thread, over that thread's pipeline and
// directory, shared by the shard's processors. The journal producer is this thread's.
//
// Lifetime: the pipeline and the directory hold pointers to the reconciler's call slots: destroy
// the pipeline first (its destructor fails pending calls, which go back to the queue), then the
// reconciler, whose destructor journals what is left as unresolved ("shutdown"). The journal
// producer must outlive the reconciler.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "limits/card_directory.h"
#include "limits/holds_script.h"
#include "limits/layout.h"
#include "limits/pan_token.h"
#include "limits/redis_pipeline.h"
#include "switch/journal.h"

namespace authswitch::switching {

enum class ReconKind : std::uint8_t { kStandInApproval, kUnconfirmedAdvice, kCompensation };
enum class ReconState : std::uint8_t { kQueued, kApplied, kReplayedOriginal, kUnresolved };

// "stand_in_approval", "unconfirmed_advice", "compensation"; "queued", "applied",
// "replayed_original", "unresolved". Static storage.
[[nodiscard]] std::string_view to_string(ReconKind k) noexcept;
[[nodiscard]] std::string_view to_string(ReconState s) noexcept;

// Text in fixed storage, cut or refused when too long.
template <std::size_t N>
struct FixedText {
  std::array<char, N> chars{};
  std::uint8_t size = 0;

  static_assert(N < 256);
  [[nodiscard]] std::string_view view() const noexcept { return {chars.data(), size}; }
  [[nodiscard]] bool empty() const noexcept { return size == 0; }
  // False (and unchanged) when `s` does not fit.
  bool assign(std::string_view s) noexcept {
    if (s.size() > N) {
      return false;
    }
    std::copy(s.begin(), s.end(), chars.begin());
    size = static_cast<std::uint8_t>(s.size());
    return true;
  }
  // Keeps what fits.
  void assign_cut(std::string_view s) noexcept { (void)assign(s.substr(0, std::min(s.size(), N))); }
};

// One unit of work owed to Redis: what the processor knows of the request. A value.
struct ReconItem {
  enum class Op : std::uint8_t { kForceAuth, kForceDebit, kCapture, kReverse };

  ReconKind kind = ReconKind::kStandInApproval;
  Op op = Op::kForceAuth;
  limits::Channel channel = limits::Channel::kPos;  // force_auth/force_debit: usage counters
  std::uint8_t attempts = 0;                        // failed calls so far
  std::uint16_t network = 0;                        // index of the request's network
  std::int64_t now_ms = 0;        // the request's issuer clock: its day, hold expiry, replay
  std::int64_t amount_minor = 0;  // auth, debit, capture: the amount; reverse: amount left
  std::array<char, 3> currency{'0', '0', '0'};  // ISO 4217 numeric
  FixedText<limits::kTxnKeyMax> replay_key;     // the call's transaction (replay) key
  FixedText<limits::kTxnKeyMax> hold_id;        // the hold it works on
  FixedText<limits::kAccountIdMax> account;     // empty: looked up in the card directory
  limits::PanToken token;
  FixedText<16> fingerprint;  // of the original call (holds.lua replay records)
  FixedText<4> mcc;
  FixedText<19> masked_pan;  // first 6 and last 4, or empty; never the PAN
};

// One line of the reconciliation journal.
struct ReconRecord {
  static constexpr std::string_view kJournalName = "reconciliation journal";
  static constexpr std::string_view kThreadName = "as-standin";

  std::int64_t time_ms = 0;     // when the line was written, ms since the epoch (UTC)
  std::int64_t request_ms = 0;  // the request's issuer clock
  std::uint16_t network = 0;
  ReconKind kind = ReconKind::kStandInApproval;
  ReconState state = ReconState::kQueued;
  ReconItem::Op op = ReconItem::Op::kForceAuth;
  std::uint8_t attempts = 0;
  std::int64_t amount_minor = 0;
  std::array<char, 3> currency{'0', '0', '0'};
  FixedText<limits::kTxnKeyMax> txn_key;
  FixedText<limits::kTxnKeyMax> hold_id;
  FixedText<limits::kAccountIdMax> account;
  limits::PanToken token;
  FixedText<19> masked_pan;
  FixedText<48> detail;  // why: the script's reason, the error, "late_original", ...
};

// {"time", "network", "kind", "state", "op", "txn", "hold", "account", "card_token",
//  "pan" (masked), "amount", "currency", "request_time", "attempts", "detail"}.
void append_json_line(std::string& out, const ReconRecord& r,
                      std::span<const std::string> networks);

extern template class BasicJournal<ReconRecord>;
using ReconJournal = BasicJournal<ReconRecord>;

class Reconciler {
 public:
  using Clock = limits::RedisPipeline::Clock;

  struct Options {
    std::size_t capacity = 4096;     // items waiting, at most (rounded up to a power of two)
    std::size_t in_flight_max = 32;  // calls (and card lookups) at once
    std::size_t per_tick_max = 16;   // items started per tick
    std::uint32_t attempts_max = 8;  // failed calls before an item is unresolved
    Clock::duration backoff_min = std::chrono::milliseconds(100);
    Clock::duration backoff_max = std::chrono::seconds(5);
    Clock::duration call_timeout = std::chrono::seconds(2);  // the housekeeping deadline
    std::int64_t hold_ttl_ms = 7LL * 86'400'000;             // as the processor's
    std::int64_t replay_window_ms = 8LL * 86'400'000;        // as the processor's
  };

  struct Stats {
    std::uint64_t queued = 0;             // items accepted by enqueue()
    std::uint64_t applied = 0;            // the replay placed or posted it
    std::uint64_t replayed_original = 0;  // Redis had it already
    std::uint64_t unresolved = 0;         // given up (each journaled): all causes below
    std::uint64_t queue_full = 0;         // ... of which refused or re-queued into a full queue
    std::uint64_t exhausted = 0;          // ... of which failed attempts_max times
    std::uint64_t failures = 0;           // failed calls (retried)
    std::uint64_t journal_dropped = 0;    // journal lines lost (its queue was full)
  };

  // Registers limits::holds_library() on `pipeline` (startup: may throw) and allocates the queue
  // and the call slots. `journal` may be nullptr (counted only). Throws std::invalid_argument on
  // bad options.
  Reconciler(limits::RedisPipeline& pipeline, limits::CardDirectory& directory,
             ReconJournal::Producer* journal, Options options);
  ~Reconciler();
  Reconciler(const Reconciler&) = delete;
  Reconciler& operator=(const Reconciler&) = delete;
  Reconciler(Reconciler&&) = delete;
  Reconciler& operator=(Reconciler&&) = delete;

  // Queues `item` and journals it as queued. False when the queue is full: journaled (and
  // counted) as unresolved instead. Never submits: on_tick does.
  bool enqueue(const ReconItem& item) noexcept;

  // Journals an outcome that needed no replay (e.g. the late original call approved after the
  // stand-in answer: kApplied), counted like the reconciler's own outcomes.
  void record(const ReconItem& item, ReconState state, std::string_view detail) noexcept;

  // Submits what is due (see above) and flushes what it submitted. Call it every few ms.
  void on_tick(Clock::time_point now) noexcept;

  // Items waiting or being replayed.
  [[nodiscard]] std::size_t pending() const noexcept { return count_ + in_flight_; }
  [[nodiscard]] const Stats& stats() const noexcept { return stats_; }

 private:
  class Call;

  void start(Call& c) noexcept;
  void submit(Call& c) noexcept;
  void on_card(Call& c, const limits::CardLoadResult& r) noexcept;
  void on_reply(Call& c, const limits::Reply& r) noexcept;
  void on_error(Call& c, limits::ClientErrc e, std::string_view message) noexcept;
  void outcome(Call& c, const limits::Decision& d) noexcept;
  void failed(Call& c, std::string_view detail) noexcept;
  void finish(Call& c, ReconState state, std::string_view detail) noexcept;
  void release(Call& c) noexcept;
  bool push(const ReconItem& item) noexcept;
  void journal(const ReconItem& item, ReconState state, std::string_view detail) noexcept;

  limits::RedisPipeline& pipeline_;
  limits::CardDirectory& directory_;
  ReconJournal::Producer* journal_;
  Options options_;
  std::string_view function_;

  std::unique_ptr<ReconItem[]> queue_;  // ring of capacity_ items
  std::size_t capacity_ = 0;
  std::size_t head_ = 0;  // index of the oldest item (masked)
  std::size_t count_ = 0;

  std::unique_ptr<Call[]> calls_;
  std::unique_ptr<std::uint32_t[]> free_calls_;
  std::size_t free_count_ = 0;
  std::size_t in_flight_ = 0;

  std::unique_ptr<limits::HoldsCall> call_;  // reused per submit
  std::array<char, 8> day_{};                // YYYYMMDD
  std::array<char, 8> month_{};              // YYYYMM
  std::array<char, 8> yymm_{};

  Clock::time_point now_{};
  Clock::time_point resume_at_{};  // backing off until then
  Clock::duration backoff_{};
  bool submitted_ = false;
  Stats stats_;
};

}  // namespace authswitch::switching
