#pragma once
// Processor: the per-shard message logic of the switch (issue 5; DESIGN.md sections 1, 3, 4),
// without sockets. It takes one decoded-to-be request at a time (handle), decides it with the
// fraud rules (risk::RuleSet) and one holds-script call on the account's keys through the
// shard's limits::RedisPipeline, and hands the encoded response (no framing) to a ResponseSink.
// The network layer feeds it frames, sends what it produces, and drives the pipeline.
//
// Per request:
//   copy into a free slot (fixed pool of Options::in_flight_max) -> iso8583::decode there ->
//   classify by MTI -> keys (DE 32/7/11, DE 90) -> PAN (DE 2, else DE 35) -> token ->
//   card directory (cached, or one HMGET; the slot waits) -> rules (auth/debit) -> one FCALL
//   of holds.lua -> decision -> response (DE 39, DE 38, DE 4 partial, DE 54 balance).
//   0800 is answered at once without Redis; so are format errors (30), unknown cards (14) and
//   unsupported messages (12).
//
// Batching (DESIGN.md section 1): handle() only submits; it never flushes. The caller flushes
// the pipeline once after each batch of handle() calls, and after driving the pipeline
// (completions may submit: due notes, compensating reversals). on_tick() flushes whatever the
// processor submitted since the last tick, so nothing waits longer than one tick.
//
// Deadlines and stand-in: every request must be answered by arrival + Options::budget. Its
// Redis calls carry that deadline, and on_tick answers any request still waiting at its deadline
// by the stand-in policy (whichever of on_tick and the pipeline's kTimeout comes first; the
// response is sent once). A money-taking call (auth, debit, refund) answered by stand-in decline
// is followed at once by a compensating full `reverse` of its hold (replay key "<txn>-si"): the
// pipeline is one ordered connection, so the reverse runs after the late call and no hold stays
// that nobody answered for. Advices and reversals are always acknowledged (counted in
// Stats::advices_unconfirmed when Redis did not confirm them). With Options::reconciler
// (switch/reconciler.h), whatever Redis owes after a stand-in answer is handed to it and
// journaled: a stand-in approval whose script call was never made, failed, timed out or came
// back declined (replayed as a forced authorization under the same key: placed once, or the
// late original's answer returned; a late approval is journaled as applied), an advice or
// reversal acknowledged without Redis (its call replayed), and a compensating reversal that
// failed (retried). Without one (nullptr) these are only counted. Known gap: the late call's
// replay record stays, so a repeat (x01) of a request answered 91 whose late call approved is
// answered from that record (00) although the hold was voided.
// Balance inquiries and refunds have no stand-in approval: they are answered 91.
//
// Format errors: a message the codec refuses is answered 30 when its header, MTI and bitmaps
// were read and the fields before the bad one include DE 7 and DE 11: the request is cut to
// those fields (their bitmap bits cleared) and they are echoed. A 30 never echoes a field the
// dialect marks sensitive (PAN, track data, PIN block). Trailing bytes after a complete
// message are a format error too. Anything less readable is HandleStatus::kUnreadable.
//
// Keys: the transaction key of a message is "<acquirer>-<DE 7>-<DE 11>", the acquirer being
// DE 32 without leading zeros ("0" when it is all zeros or absent); DE 90's acquirer (n11,
// zero-filled) is normalised the same way, so a reversal finds its authorization's hold whichever
// way the acquirer id was padded. Auth, debit, refund and balance use that key as the hold id and
// replay key. Captures and reversals name their hold through DE 90 (absent: their own key) and
// use their own key + "-C" / "-R" as replay key, so they never collide with the replay record of
// the message they refer to. The request fingerprint is FNV-1a 64 over the MTI without its
// repeat digit, the card token and DE 3, 4, 49, 90, 95: an x01/x21 repeat matches its original
// and gets the original answer. The approval code (DE 38) is the configured prefix followed by
// digits of a hash of the transaction key, so a replay answers the same code without storing it.
//
// Memory: every buffer is sized at construction (slots with their request copy, one response
// buffer, one HoldsCall and one ScriptArgs reused per call). handle, on_tick and the completions
// allocate nothing and throw nothing. (CardDataCrypto may allocate inside OpenSSL; see
// limits/pan_token.h.)
//
// Thread-safety: none, by design; one processor per shard thread, with that thread's pipeline,
// directory, rule reader and crypto. The sink is called on that thread.
//
// Lifetime: the pipeline and the directory hold pointers to the processor's completions.
// Destroy the pipeline before the processor (its destructor fails pending calls, which the
// processor answers by stand-in through the sink without submitting: a disconnected pipeline
// refuses submits), or destroy the processor only when in_flight() == 0 (asserted). The sink,
// directory, reader and crypto must outlive it.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "iso8583/message.h"
#include "limits/card_directory.h"
#include "limits/holds_script.h"
#include "limits/pan_token.h"
#include "limits/redis_pipeline.h"
#include "limits/sweeper.h"
#include "risk/rule_store.h"
#include "risk/rules.h"
#include "switch/journal.h"
#include "switch/metrics.h"
#include "switch/reconciler.h"

namespace authswitch::switching {

// Where responses go. Called exactly once per request handle() accepted, possibly from inside
// handle() (0800, format errors, unknown cards), otherwise from on_tick or from the pipeline's
// completions. `message` is the encoded response without framing, valid only during the call.
// The sink must not call back into the processor.
class ResponseSink {
 public:
  virtual void on_response(std::uint64_t request_id,
                           std::span<const std::byte> message) noexcept = 0;

 protected:
  ResponseSink() = default;
  ResponseSink(const ResponseSink&) = default;
  ResponseSink& operator=(const ResponseSink&) = default;
  ResponseSink(ResponseSink&&) = default;
  ResponseSink& operator=(ResponseSink&&) = default;
  virtual ~ResponseSink() = default;
};

// What handle() did with a message.
enum class HandleStatus : std::uint8_t {
  kAccepted,     // a response will be (or was already) passed to the sink, exactly once
  kBusy,         // every slot is in use: nothing was done and nothing will be sent; the network
                 // layer keeps the frame and retries after a response, or sheds the connection
  kUnreadable,   // the MTI or the key fields cannot be read (or the frame is larger than
                 // Options::max_message_bytes): nothing to answer; close that connection only
  kNotARequest,  // well formed, but its MTI has no response (a 0110, a 0810 answering our own
                 // echo): nothing is sent; the network layer decides what it means
};

[[nodiscard]] std::string_view to_string(HandleStatus s) noexcept;

// One connection's sign-on and network-management state (DESIGN.md section 1), owned by the
// network layer's connection (not by the processor: a shard serves many connections of a
// network) and passed to every handle() of that connection.
struct ConnectionState {
  // Financial requests (authorizations, financials, advices, reversals) are answered 91
  // without Redis until `signed_on`; 0800 is always answered.
  bool sign_on_required = false;
  // Listen: the peer's last 0800 was a sign-on (DE 70 001) rather than a sign-off (002).
  // Dial: the switch's own sign-on was answered 00 (set by the network layer).
  bool signed_on = false;
  // Whether the peer's 0800 001/002 change `signed_on` (listen: yes; dial: the switch signs on).
  bool peer_signs_on = true;
  // Requests answered 91 because the connection was not signed on.
  std::uint64_t refused_not_signed_on = 0;
  // Filled by handle() when it returns kNotARequest for a network-management response
  // (0810/0830), for the network layer to match with the 0800 it sent.
  std::uint16_t response_mti = 0;
  std::uint32_t response_stan = 0;  // DE 11; UINT32_MAX when absent or not a number
  bool response_approved = false;   // DE 39 = 00
};

// How a request is answered when Redis cannot decide it in time (DESIGN.md section 1).
struct StandInPolicy {
  enum class Kind : std::uint8_t {
    kDecline,      // 91, issuer unavailable
    kApproveUpTo,  // auth/debit up to approve_up_to_minor: 00 with an approval code; above: 91
  };
  Kind kind = Kind::kDecline;
  std::int64_t approve_up_to_minor = 0;
};

class Processor {
 public:
  using Clock = limits::RedisPipeline::Clock;

  struct Options {
    Clock::duration budget = std::chrono::milliseconds(150);  // arrival -> response, at most
    std::int64_t hold_ttl_ms = 7LL * 86'400'000;              // a pending hold expires after
    std::int64_t replay_window_ms = 8LL * 86'400'000;         // replay records are kept
    std::size_t in_flight_max = 1024;                         // slots: requests being decided
    std::size_t max_message_bytes = 8192;                     // a larger frame is unreadable
    StandInPolicy stand_in;
    std::string network = "default";  // the rules' response-code policy (RuleSet::network_policy)
    std::string approval_prefix;      // 0..5 characters [A-Z0-9] before the approval digits
    bool partial_approval = true;     // purchases (DE 3 00/09) may be approved partially (10)
    // Deadline of the processor's own follow-up calls (compensating reversals, due notes).
    Clock::duration housekeeping_timeout = std::chrono::seconds(2);
    // Where every response is recorded (switch/journal.h), or nullptr; this shard's producer.
    Journal::Producer* audit = nullptr;
    std::uint16_t network_index = 0;  // the AuditRecord's and the metrics' network
    // This shard's Prometheus counters (switch/metrics.h), or nullptr.
    ShardMetrics* metrics = nullptr;
    // This shard's reconciler (switch/reconciler.h), or nullptr: what Redis owes after a
    // stand-in answer is then only counted.
    Reconciler* reconciler = nullptr;
  };

  // Counters of this shard (plain integers: read them on the shard thread, or copy them out).
  struct Stats {
    // Requests by class.
    std::uint64_t authorizations = 0;  // 0100/0101
    std::uint64_t financials = 0;      // 0200/0201
    std::uint64_t advices = 0;         // 0120/0121, 0220/0221
    std::uint64_t reversals = 0;       // 0400/0401, 0420/0421
    std::uint64_t network = 0;         // 0800
    std::uint64_t other = 0;           // answered 12
    std::uint64_t not_signed_on = 0;   // financial requests answered 91: no sign-on yet
    // Responses by code class.
    std::uint64_t approved = 0;       // 00, 10 (acknowledged advices and reversals included)
    std::uint64_t declined = 0;       // business declines (05, 14, 51, 57, 59, 61, ...)
    std::uint64_t system_errors = 0;  // 91, 96
    std::uint64_t format_errors = 0;  // 30 sent
    // What went wrong.
    std::uint64_t unreadable = 0;             // kUnreadable returned
    std::uint64_t not_requests = 0;           // kNotARequest returned
    std::uint64_t busy = 0;                   // kBusy returned
    std::uint64_t queue_waits = 0;            // holds calls that waited for room in the Redis queue
    std::uint64_t library_failures = 0;       // a rule set's holds library could not be registered
    std::uint64_t redis_errors = 0;           // script calls failed (error reply, disconnect, ...)
    std::uint64_t timeouts = 0;               // requests that reached their deadline undecided
    std::uint64_t stand_in_approvals = 0;     // approved by stand-in: to reconcile
    std::uint64_t stand_in_declines = 0;      // declined 91 by stand-in
    std::uint64_t advices_unconfirmed = 0;    // advices/reversals acknowledged without Redis
    std::uint64_t compensations = 0;          // compensating reversals submitted
    std::uint64_t compensation_failures = 0;  // ... that failed: a hold may need reconciliation
    std::uint64_t late_replies = 0;           // script replies after the response was sent
    std::uint64_t reconciliations = 0;        // items handed to the reconciler (queued)
    std::uint64_t reconcile_refused = 0;      // ... refused: its queue was full (unresolved)
    std::uint64_t due_note_errors = 0;
    std::uint64_t card_errors = 0;    // card records unusable (profile gone, bad record): 96
    std::uint64_t audit_dropped = 0;  // journal queue full: the response went out unrecorded
  };

  // Registers limits::holds_library() on `pipeline` (startup: may throw) and allocates every
  // slot. Throws std::invalid_argument on bad options.
  Processor(const iso8583::Dialect& dialect, limits::RedisPipeline& pipeline,
            limits::CardDirectory& directory, risk::RuleStore::Reader& rules,
            limits::CardDataCrypto& crypto, Options options, ResponseSink& sink);
  ~Processor();
  Processor(const Processor&) = delete;
  Processor& operator=(const Processor&) = delete;
  Processor(Processor&&) = delete;
  Processor& operator=(Processor&&) = delete;

  // One message (no framing). `request_id` is the caller's handle for the response (e.g.
  // connection and sequence); `arrival` when its frame was read (the deadline is arrival +
  // budget); `now_ms` the issuer's wall clock (ms since the Unix epoch, UTC), passed to the
  // holds script and the rules. Never blocks; never flushes the pipeline.
  // `connection`: the state of the connection the message came on (sign-on enforcement and
  // network-management responses); nullptr: the processor's own one, never enforcing sign-on
  // (tests and benchmarks without connections).
  [[nodiscard]] HandleStatus handle(std::uint64_t request_id, std::span<const std::byte> message,
                                    Clock::time_point arrival, std::int64_t now_ms,
                                    ConnectionState* connection = nullptr) noexcept;

  // Encodes a switch-originated 0800 (network management request: DE 7 from `now_ms` in UTC,
  // DE 11 = `stan` % 1000000, DE 70 = `code`, e.g. "001" sign-on, "301" echo) into `out`
  // without framing. Returns its size, or 0 when it does not fit. No allocation.
  [[nodiscard]] std::size_t encode_network_request(std::string_view code, std::uint32_t stan,
                                                   std::int64_t now_ms,
                                                   std::span<std::byte> out) noexcept;

  // Answers the requests whose deadline passed by stand-in, then flushes what the processor
  // submitted since the last tick. Call it every few ms, with the pipeline's clock.
  void on_tick(Clock::time_point now) noexcept;

  // Requests accepted and not yet finished (answered, and every Redis call back).
  [[nodiscard]] std::size_t in_flight() const noexcept { return in_use_; }
  // The last 0800 sign-on (001) / sign-off (002) seen by handle() calls without a connection.
  [[nodiscard]] bool signed_on() const noexcept { return own_connection_.signed_on; }
  [[nodiscard]] const Stats& stats() const noexcept { return stats_; }

 private:
  struct Slot;
  class Op;
  class CardWait;
  enum class OpKind : std::uint8_t;

  // Intake.
  HandleStatus on_undecodable(Slot& s, const iso8583::Error& e) noexcept;
  void on_network(Slot& s, ConnectionState& c) noexcept;
  void on_network_response(const Slot& s, ConnectionState& c) noexcept;
  void start_financial(Slot& s) noexcept;
  [[nodiscard]] bool read_keys(Slot& s) noexcept;
  [[nodiscard]] bool read_amounts(Slot& s) noexcept;
  [[nodiscard]] bool read_card(Slot& s) noexcept;
  static void fingerprint(Slot& s) noexcept;
  void on_card_loaded(Slot& s, const limits::CardLoadResult& r) noexcept;
  void on_card(Slot& s, const limits::CardLoadResult& r) noexcept;
  void answer_card_error(Slot& s) noexcept;
  void submit_script(Slot& s) noexcept;
  // Builds and submits the holds call; false when the Redis queue was full (nothing sent,
  // nothing answered). Any other failure answers the request (stand-in, 96).
  [[nodiscard]] bool try_submit_script(Slot& s) noexcept;
  void wait_for_queue(Slot& s) noexcept;
  void retry_waiting() noexcept;
  [[nodiscard]] bool build_auth_call(Slot& s) noexcept;
  void adopt_rules(const risk::RuleSet& set);
  void try_adopt_rules(const risk::RuleSet& set) noexcept;

  // Outcomes.
  void on_op_reply(Slot& s, OpKind k, const limits::Reply& r) noexcept;
  void on_op_error(Slot& s, OpKind k, limits::ClientErrc e, bool noscript) noexcept;
  void on_decision(Slot& s, const limits::Decision& d) noexcept;
  [[nodiscard]] std::string_view additional_amounts(const Slot& s,
                                                    const limits::Decision& d) noexcept;
  [[nodiscard]] std::string_view approval_code(const Slot& s) noexcept;
  void stand_in(Slot& s) noexcept;
  void compensate(Slot& s) noexcept;
  void owe(Slot& s) noexcept;
  void settle_late(Slot& s, const limits::Decision* d) noexcept;
  void reconcile(const Slot& s, ReconKind kind, ReconState outcome = ReconState::kQueued,
                 std::string_view detail = {}) noexcept;
  void note_due(Slot& s) noexcept;
  void respond(Slot& s, std::string_view code, bool approval) noexcept;
  void respond_built(Slot& s, std::string_view code) noexcept;
  [[nodiscard]] std::string_view wire_code(const Slot& s, std::string_view code) const noexcept;
  void audit(const Slot& s, std::string_view code) noexcept;
  [[nodiscard]] const risk::RuleSet* decided_by(const Slot& s) noexcept;
  void maybe_free(Slot& s) noexcept;
  [[nodiscard]] Clock::time_point housekeeping_deadline() const noexcept;

  const iso8583::Dialect& dialect_;
  limits::RedisPipeline& pipeline_;
  limits::CardDirectory& directory_;
  risk::RuleStore::Reader& rules_;
  limits::CardDataCrypto& crypto_;
  Options options_;
  ResponseSink& sink_;
  // The holds library of the rule set in use (its velocity definitions built in; see
  // limits::make_holds_library), registered on the pipeline; function_ names its function.
  limits::FunctionLibrary library_;
  std::string_view function_;
  bool library_ok_ = false;  // false: the last rule set's library could not be registered
  Clock::time_point adopt_retry_at_{};  // when the tick tries again after a failure
  // ISO 8583:1993 dialect (DE 39 n3): responses carry action codes, network management is
  // 1804/1814 by DE 24 (iso8583/action_codes.h). Internally every code is the 1987 one.
  const bool action_codes_;
  // The date and time in transaction keys: DE 7 (transmission, MMDDhhmmss) in ISO 8583:1987,
  // DE 12 (local transaction, YYMMDDhhmmss) in 1993 dialects, whose reversals and completions
  // name their original by its DE 12 (DE 56) where 1987 names it by its DE 7 (DE 90).
  const int key_time_de_;

  std::unique_ptr<Slot[]> slots_;
  // Each slot's deadline while it may still need a stand-in answer, else Clock's max: on_tick
  // scans this dense array (8 bytes a slot) instead of the slots themselves (kilobytes each),
  // which cost a cache miss per slot per tick. Set on intake, cleared lazily by on_tick.
  std::unique_ptr<Clock::time_point[]> deadlines_;
  std::unique_ptr<std::uint32_t[]> free_;
  std::size_t free_count_ = 0;
  std::size_t in_use_ = 0;
  // Slots whose holds call found the Redis queue full, in arrival order (a ring of
  // in_flight_max: a slot is in it at most once). While any waits, later calls queue behind
  // them, so Redis still runs one card's messages in the order they came.
  std::unique_ptr<std::uint32_t[]> waiting_;
  std::size_t waiting_head_ = 0;
  std::size_t waiting_count_ = 0;
  std::unique_ptr<std::byte[]> in_buffers_;  // in_flight_max x max_message_bytes

  // Reused per call; each use is finished (encoded or submitted) before the next.
  iso8583::MessageBuilder builder_;
  std::unique_ptr<std::byte[]> out_;  // the response being encoded
  std::size_t out_size_ = 0;
  std::unique_ptr<std::byte[]> scratch_;  // a format-error request cut to its readable part
  std::unique_ptr<limits::HoldsCall> call_;
  std::unique_ptr<risk::ScriptArgs> script_args_;
  limits::DueNote due_;
  std::array<char, 6> approval_{};
  std::array<char, 40> de54_{};
  std::array<char, 8> day_{};    // YYYYMMDD
  std::array<char, 6> month_{};  // YYYYMM
  std::array<char, 4> yymm_{};

  std::uint64_t policy_generation_ = 0;  // of the set network_policy_ and library_ were made for
  std::uint16_t network_policy_ = 0;
  Clock::time_point now_{};
  bool submitted_ = false;          // something was submitted since the last on_tick flush
  ConnectionState own_connection_;  // for handle() calls without a connection
  Stats stats_;
};

}  // namespace authswitch::switching
