#pragma once
// netsim's load engine (issue 6).
//
// LoadDriver is the engine without I/O: it takes requests from a RequestSource, sends them
// through a Transport, matches the answers (Matcher), checks each against its Expectation and
// records latency into a LatencyHistogram. Time is passed in, so tests drive it with a fake
// clock and a fake transport.
//
//  - Open loop (wrk2's coordinated-omission correction): request i has an intended send time
//    start + i/rate, and its latency counts from that intended time, not from when it was
//    actually sent. When netsim cannot send on time (the generator has nothing ready, every
//    connection is at its in-flight cap, the write buffers are full), the request still goes
//    as soon as possible and the wait counts as latency, as it would for a cardholder: a
//    stalled switch cannot hide its stall by slowing the load down.
//  - Closed loop: `concurrency` requests in flight at all times; latency counts from the
//    actual send. It finds the saturation throughput, not the latency at a given load.
//
// run_load() is the Boost.Asio part: one io_context on the calling thread, a LinkSet, one
// timer, the driver, the progress line and the report.
//
// Memory: the request pool (one Request per request that may be in flight), the matcher and
// the histograms are allocated before the run; sending and matching allocate nothing once the
// pool's strings are warm. Thread-safety: a driver belongs to one thread.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "iso8583/message.h"
#include "simulators/netsim/link.h"
#include "simulators/netsim/matcher.h"
#include "simulators/stats/histogram.h"
#include "simulators/stats/report.h"
#include "simulators/traffic/traffic.h"

namespace authswitch::netsim {

// Where requests come from: sim_traffic's TrafficGenerator in netsim, a stub in tests.
class RequestSource {
 public:
  RequestSource() = default;
  virtual ~RequestSource() = default;
  RequestSource(const RequestSource&) = delete;
  RequestSource& operator=(const RequestSource&) = delete;
  RequestSource(RequestSource&&) = delete;
  RequestSource& operator=(RequestSource&&) = delete;
  // Fills `out` (a reused Request) with the next request; false when none can go now.
  [[nodiscard]] virtual bool next(std::int64_t now_ms, Request& out) = 0;
  virtual void on_response(const Request& r, std::string_view code, std::int64_t amount_minor) = 0;
  virtual void on_lost(const Request& r) = 0;
};

class GeneratorSource final : public RequestSource {
 public:
  explicit GeneratorSource(TrafficGenerator& g) noexcept : g_(g) {}
  [[nodiscard]] bool next(std::int64_t now_ms, Request& out) override {
    return g_.next(now_ms, out);
  }
  void on_response(const Request& r, std::string_view code, std::int64_t amount) override {
    g_.on_response(r, code, amount);
  }
  void on_lost(const Request& r) override { g_.on_lost(r); }

 private:
  TrafficGenerator& g_;
};

// What the driver sends through: the LinkSet in netsim, a fake in tests.
class Transport {
 public:
  Transport() = default;
  virtual ~Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;
  Transport(Transport&&) = delete;
  Transport& operator=(Transport&&) = delete;
  [[nodiscard]] virtual std::size_t connections() const noexcept = 0;
  // Open and signed on.
  [[nodiscard]] virtual bool usable(std::size_t conn) const noexcept = 0;
  // Sends one unframed message; false when it cannot take it now.
  [[nodiscard]] virtual bool send(std::size_t conn,
                                  std::span<const std::byte> message) noexcept = 0;
};

struct LoadOptions {
  bool closed_loop = false;
  double rate_per_s = 100;         // open loop
  std::uint32_t concurrency = 16;  // closed loop: requests kept in flight
  double duration_s = 10;
  std::uint64_t count_max = 0;        // 0: no limit (the duration ends the run)
  std::uint32_t max_in_flight = 256;  // per connection
  std::uint64_t timeout_ns = 2'000'000'000;
};

// A snapshot for the progress line.
struct LoadProgress {
  double elapsed_s = 0;
  std::uint64_t sent = 0, matched = 0, in_flight = 0, problems = 0;
  double rate_per_s = 0;  // matched in the last second
  std::uint64_t p99_ns = 0;
};

class LoadDriver {
 public:
  LoadDriver(const LoadOptions& options, const iso8583::Dialect& dialect, RequestSource& source,
             Transport& transport);
  ~LoadDriver() = default;
  LoadDriver(const LoadDriver&) = delete;
  LoadDriver& operator=(const LoadDriver&) = delete;
  LoadDriver(LoadDriver&&) = delete;
  LoadDriver& operator=(LoadDriver&&) = delete;

  // The run starts: request 0 is intended at `now_ns`.
  void begin(std::uint64_t now_ns) noexcept;
  // Sends every request that is due and can go. Returns when it wants to run again: the next
  // intended send time, or shortly after now when something held a due request back.
  std::uint64_t pump(std::uint64_t now_ns, std::int64_t wall_ms) noexcept;
  // An answer from the switch, on connection `conn`.
  void on_message(std::size_t conn, const iso8583::MessageView& msg, std::uint64_t now_ns) noexcept;
  // Something unreadable arrived, or a connection broke.
  void on_error() noexcept { ++errors_; }
  // Times out overdue requests and closes timeline seconds. Call at least every 100 ms.
  void tick(std::uint64_t now_ns) noexcept;

  // No more requests will be started (duration or count reached).
  [[nodiscard]] bool sending_done(std::uint64_t now_ns) const noexcept;
  // Sending is done and nothing is in flight any more.
  [[nodiscard]] bool finished(std::uint64_t now_ns) const noexcept;
  [[nodiscard]] std::size_t in_flight() const noexcept { return matcher_.pending(); }
  [[nodiscard]] const Matcher::Counts& counts() const noexcept { return matcher_.counts(); }
  [[nodiscard]] const LatencyHistogram& latency() const noexcept { return latency_; }
  [[nodiscard]] std::uint64_t sent() const noexcept { return sent_; }
  [[nodiscard]] std::uint64_t mismatches() const noexcept { return mismatches_; }
  [[nodiscard]] std::uint64_t errors() const noexcept { return errors_; }
  [[nodiscard]] LoadProgress progress(std::uint64_t now_ns) const noexcept;
  // The intended send time of request i (open loop).
  [[nodiscard]] std::uint64_t intended_ns(std::uint64_t i) const noexcept;

  // Fills the counts, codes, kinds, samples, latency and timeline of `r` (the caller sets the
  // run's description: title, target, dialect, ...). Closes the last timeline second.
  void fill_report(std::uint64_t now_ns, RunReport& r);

 private:
  struct Slot {
    Request request;
    std::uint32_t conn = 0;
    std::uint32_t next_free = 0;
  };
  // Picks a usable connection under its in-flight cap, round robin; SIZE_MAX if none.
  [[nodiscard]] std::size_t pick_connection() noexcept;
  [[nodiscard]] bool send_one(std::uint64_t start_ns, std::uint64_t now_ns,
                              std::int64_t wall_ms) noexcept;
  void release(std::uint32_t slot) noexcept;
  // `code`: DE 39 as the 1987 code (response_code_of); `de39`: as received.
  void check(const Request& r, const iso8583::MessageView& msg, std::string_view code,
             std::string_view de39) noexcept;
  void close_second(std::uint64_t end_ns) noexcept;

  LoadOptions options_;
  const iso8583::Dialect& dialect_;
  RequestSource& source_;
  Transport& transport_;
  Matcher matcher_;
  iso8583::MessageBuilder builder_;
  iso8583::MessageView sent_view_;
  std::vector<std::byte> out_;
  std::vector<Slot> slots_;
  std::uint32_t free_head_ = 0;
  std::vector<std::uint32_t> conn_in_flight_;
  std::size_t rr_ = 0;
  std::uint64_t start_ns_ = 0;
  std::uint64_t end_ns_ = 0;
  double period_ns_ = 0;
  std::uint64_t next_index_ = 0;  // open loop: the next request of the schedule
  std::uint64_t sent_ = 0;
  std::uint64_t mismatches_ = 0;
  std::uint64_t errors_ = 0;
  std::uint64_t encode_errors_ = 0;
  std::array<std::uint64_t, 100> by_code_{};
  std::uint64_t other_codes_ = 0;
  std::array<std::uint64_t, kKindCount> by_kind_{};
  std::vector<std::string> samples_;
  LatencyHistogram latency_;
  // Timeline: the current second.
  LatencyHistogram second_;
  std::uint64_t second_end_ns_ = 0;
  std::uint64_t second_sent_ = 0;
  std::uint64_t second_received_ = 0;
  std::uint64_t last_second_received_ = 0;
  std::vector<TimelinePoint> timeline_;
  std::uint64_t last_response_ns_ = 0;
};

// A whole load run over the network (netsim load).
struct LoadRun {
  LinkSetOptions links;
  LoadOptions load;
  std::string cards_csv;  // test-cards.csv (from netsim seed)
  std::string mix_file;   // empty: the shipped defaults
  std::uint64_t seed = 1;
  bool progress = false;  // a progress line per second on stderr
  std::string dialect_name, framing_name;
};

// What the links tell the event loop (run_load's Link::Handler sets it; tests set it).
struct LoadEvents {
  bool dirty = false;        // something was answered or became ready: pump again
  std::uint64_t closed = 0;  // connections closed
};

// The event loop of one run: a timer wakes the driver for the next intended send, timeouts
// and the progress line; answers (events.dirty) wake it too, so freed capacity is used at
// once. run() returns when the driver is finished, the drain deadline passed, or all `links`
// closed. The loop may be destroyed while a completed wait of its timer is still queued in
// `io`: that handler then does nothing.
class LoadLoop {
 public:
  LoadLoop(boost::asio::io_context& io, const LoadRun& run, LoadDriver& driver, LoadEvents& events,
           std::size_t links);
  ~LoadLoop();
  LoadLoop(const LoadLoop&) = delete;
  LoadLoop& operator=(const LoadLoop&) = delete;
  LoadLoop(LoadLoop&&) = delete;
  LoadLoop& operator=(LoadLoop&&) = delete;

  void run();

 private:
  void on_timer();
  void arm(std::uint64_t when);
  // Pump, time out, progress; returns when to run again.
  std::uint64_t step();
  void print_progress(std::uint64_t now) const;

  boost::asio::io_context& io_;
  const LoadRun& run_;
  LoadDriver& driver_;
  LoadEvents& events_;
  std::size_t links_;
  boost::asio::steady_timer timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool tty_;
  bool done_ = false;
  std::uint64_t next_progress_ = 0;
  std::uint64_t drain_deadline_ = UINT64_MAX;
  std::uint64_t armed_for_ = UINT64_MAX;
};

// Runs it and fills `report`. Throws std::runtime_error when it cannot start (files,
// addresses, the links not coming up).
void run_load(const LoadRun& run, RunReport& report);

// "476173******0119": first 6 and last 4 digits of a PAN, the rest masked; a value too short
// to be a PAN is masked whole.
[[nodiscard]] std::string mask_pan(std::string_view pan);

}  // namespace authswitch::netsim
