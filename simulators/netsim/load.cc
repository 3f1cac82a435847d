#include "simulators/netsim/load.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <unistd.h>

#include "base/assert.h"
#include "simulators/traffic/portfolio.h"

namespace authswitch::netsim {

namespace {

constexpr std::uint64_t kNsPerSecond = 1'000'000'000;
constexpr std::uint64_t kRetryNs = 1'000'000;  // a held-back request is tried again after 1 ms
constexpr std::uint32_t kNoSlot = 0xFFFF'FFFFU;

std::string_view field_text(const iso8583::MessageView& m, int de, std::span<char> buf) noexcept {
  return m.has(de) ? iso8583::text_value(m.field(de), buf) : std::string_view();
}

}  // namespace

std::string mask_pan(std::string_view pan) {
  std::string out(pan);
  if (out.size() < 12) {
    std::fill(out.begin(), out.end(), '*');
    return out;
  }
  std::fill(out.begin() + 6, out.end() - 4, '*');
  return out;
}

LoadDriver::LoadDriver(const LoadOptions& options, const iso8583::Dialect& dialect,
                       RequestSource& source, Transport& transport)
    : options_(options),
      dialect_(dialect),
      source_(source),
      transport_(transport),
      matcher_(Matcher::Options{.capacity = static_cast<std::uint32_t>(std::clamp<std::uint64_t>(
                                    (options.closed_loop ? std::uint64_t{options.concurrency}
                                                         : std::uint64_t{options.max_in_flight} *
                                                               transport.connections()) *
                                        16,
                                    std::uint64_t{1} << 16U, std::uint64_t{1} << 22U)),
                                .timeout_ns = options.timeout_ns}),
      builder_(dialect),
      out_(dialect.info().max_message_bytes + 64),
      conn_in_flight_(transport.connections(), 0) {
  if (!options_.closed_loop && !(options_.rate_per_s > 0)) {
    throw std::invalid_argument("rate must be > 0");
  }
  if (options_.closed_loop && options_.concurrency == 0) {
    throw std::invalid_argument("concurrency must be > 0");
  }
  if (options_.max_in_flight == 0 || transport.connections() == 0) {
    throw std::invalid_argument("max-in-flight and connections must be > 0");
  }
  const std::size_t pool = options_.closed_loop
                               ? options_.concurrency
                               : std::size_t{options_.max_in_flight} * transport.connections();
  if (pool > (std::size_t{1} << 18U)) {
    // Each request slot holds a Request (~4 KiB of strings); the matcher remembers 16 per slot.
    throw std::invalid_argument("at most 262144 requests in flight (connections x max-in-flight)");
  }
  slots_.resize(pool);
  for (std::size_t i = 0; i < pool; ++i) {
    slots_[i].next_free = i + 1 < pool ? static_cast<std::uint32_t>(i + 1) : kNoSlot;
  }
  free_head_ = 0;
  period_ns_ = options_.closed_loop ? 0 : 1e9 / options_.rate_per_s;
  samples_.reserve(RunReport::kMismatchSamplesMax);
  timeline_.reserve(static_cast<std::size_t>(options_.duration_s) + 64);
}

void LoadDriver::begin(std::uint64_t now_ns) noexcept {
  start_ns_ = now_ns;
  end_ns_ = now_ns + static_cast<std::uint64_t>(options_.duration_s * 1e9);
  second_end_ns_ = now_ns + kNsPerSecond;
  last_response_ns_ = now_ns;
}

std::uint64_t LoadDriver::intended_ns(std::uint64_t i) const noexcept {
  return start_ns_ + static_cast<std::uint64_t>(std::llround(static_cast<double>(i) * period_ns_));
}

bool LoadDriver::sending_done(std::uint64_t now_ns) const noexcept {
  if (options_.count_max > 0 && sent_ >= options_.count_max) {
    return true;
  }
  if (options_.closed_loop) {
    return now_ns >= end_ns_;
  }
  // Open loop: the schedule ends at the duration; a request intended before it is still sent.
  return intended_ns(next_index_) >= end_ns_;
}

bool LoadDriver::finished(std::uint64_t now_ns) const noexcept {
  return sending_done(now_ns) && matcher_.pending() == 0;
}

std::size_t LoadDriver::pick_connection() noexcept {
  const std::size_t n = conn_in_flight_.size();
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t c = (rr_ + k) % n;
    if (conn_in_flight_[c] < options_.max_in_flight && transport_.usable(c)) {
      rr_ = c + 1;
      return c;
    }
  }
  return SIZE_MAX;
}

std::uint64_t LoadDriver::pump(std::uint64_t now_ns, std::int64_t wall_ms) noexcept {
  if (options_.closed_loop) {
    while (!sending_done(now_ns) && matcher_.pending() < options_.concurrency) {
      if (!send_one(now_ns, now_ns, wall_ms)) {
        return now_ns + kRetryNs;
      }
    }
    return sending_done(now_ns) ? UINT64_MAX : now_ns + 100 * kRetryNs;
  }
  while (!sending_done(now_ns)) {
    const std::uint64_t due = intended_ns(next_index_);
    if (due > now_ns) {
      return due;
    }
    // Late or not, the request counts from its intended time.
    if (!send_one(due, now_ns, wall_ms)) {
      return now_ns + kRetryNs;
    }
    ++next_index_;
  }
  return UINT64_MAX;
}

bool LoadDriver::send_one(std::uint64_t start_ns, std::uint64_t now_ns,
                          std::int64_t wall_ms) noexcept {
  if (free_head_ == kNoSlot || !matcher_.has_room()) {
    return false;
  }
  const std::size_t conn = pick_connection();
  if (conn == SIZE_MAX) {
    return false;
  }
  const std::uint32_t slot = free_head_;
  Slot& s = slots_[slot];
  if (!source_.next(wall_ms, s.request)) {
    return false;
  }
  const auto n = encode_request(dialect_, s.request, builder_, out_);
  // The key is read back from the encoded request, exactly as the answer will be read.
  if (!n || !iso8583::decode(dialect_, {out_.data(), *n}, sent_view_)) {
    ++encode_errors_;
    ++errors_;
    source_.on_lost(s.request);
    return true;  // skip it: a generator bug must not stall the run
  }
  std::array<char, 16> b11{};
  std::array<char, 24> b41{};
  std::array<char, 16> b37{};
  const MatchKey key = make_key(request_class(sent_view_.mti()), field_text(sent_view_, 11, b11),
                                field_text(sent_view_, 41, b41), field_text(sent_view_, 37, b37));
  const Matcher::AddStatus added = matcher_.add(key, start_ns, now_ns, slot);
  if (added == Matcher::AddStatus::kKeyInUse) {
    // The generator never has two requests of one account in flight, so this is a key the
    // generator reused: count it and drop the request.
    ++errors_;
    source_.on_lost(s.request);
    return true;
  }
  if (added == Matcher::AddStatus::kFull) {
    source_.on_lost(s.request);  // has_room() said otherwise: cannot happen
    return false;
  }
  if (!transport_.send(conn, {out_.data(), *n})) {
    // Buffers full: the matcher already holds it, so it will time out rather than vanish.
    ++errors_;
  }
  free_head_ = s.next_free;
  s.conn = static_cast<std::uint32_t>(conn);
  ++conn_in_flight_[conn];
  ++sent_;
  ++second_sent_;
  ++by_kind_[static_cast<std::size_t>(s.request.kind)];
  return true;
}

void LoadDriver::release(std::uint32_t slot) noexcept {
  Slot& s = slots_[slot];
  AS_ASSERT(conn_in_flight_[s.conn] > 0);
  --conn_in_flight_[s.conn];
  s.next_free = free_head_;
  free_head_ = slot;
}

void LoadDriver::on_message(std::size_t /*conn*/, const iso8583::MessageView& msg,
                            std::uint64_t now_ns) noexcept {
  std::array<char, 16> b11{};
  std::array<char, 24> b41{};
  std::array<char, 16> b37{};
  const MatchKey key = make_key(response_class(msg.mti()), field_text(msg, 11, b11),
                                field_text(msg, 41, b41), field_text(msg, 37, b37));
  const Matcher::Match m = matcher_.on_response(key);
  if (m.outcome != Matcher::Outcome::kMatched) {
    return;  // counted by the matcher
  }
  last_response_ns_ = now_ns;
  const std::uint64_t latency = now_ns > m.start_ns ? now_ns - m.start_ns : 0;
  latency_.record(latency);
  second_.record(latency);
  ++second_received_;
  std::array<char, 8> b39{};
  // In a 1993 dialect the action code, read as the 1987 code the model expects (only the exact
  // action code of an expected code matches: "051" is no 1993 code and counts as a mismatch).
  const std::string_view de39 = field_text(msg, 39, b39);
  const std::string_view code = response_code_of(dialect_, de39, msg.mti());
  if (code.size() == 2 && code[0] >= '0' && code[0] <= '9' && code[1] >= '0' && code[1] <= '9') {
    ++by_code_[static_cast<std::size_t>(code[0] - '0') * 10 +
               static_cast<std::size_t>(code[1] - '0')];
  } else {
    ++other_codes_;
  }
  Slot& s = slots_[m.tag];
  check(s.request, msg, code, de39);
  std::int64_t amount = -1;
  if (msg.has(4)) {
    if (const auto v = iso8583::number_value(msg.field(4)); v) {
      amount = static_cast<std::int64_t>(*v);
    }
  }
  source_.on_response(s.request, code, amount);
  release(m.tag);
}

void LoadDriver::check(const Request& r, const iso8583::MessageView& msg, std::string_view code,
                       std::string_view de39) noexcept {
  const Expectation& e = r.expected;
  bool ok = e.accepts(code);
  std::int64_t amount = -1;
  if (msg.has(4)) {
    if (const auto v = iso8583::number_value(msg.field(4)); v) {
      amount = static_cast<std::int64_t>(*v);
    }
  }
  const bool approved = code == "00" || code == "10";
  if (ok && e.amount_minor >= 0 && approved && amount != e.amount_minor) {
    ok = false;
  }
  if (ok) {
    return;
  }
  ++mismatches_;
  if (samples_.size() >= RunReport::kMismatchSamplesMax) {
    return;
  }
  // Rare (a failed run), so building a string here is fine.
  std::string expected;
  for (std::uint8_t i = 0; i < e.count; ++i) {
    if (i > 0) {
      expected += '|';
    }
    const std::string_view two(e.codes[i].data(), 2);
    // What the wire should have carried: the 1993 action code in a 1993 dialect.
    expected +=
        iso8583::uses_action_codes(dialect_) ? iso8583::action_code_of(two, msg.mti()) : two;
  }
  std::string line = std::string(kind_name(r.kind)) + " " + std::to_string(r.mti);
  if (r.present[11]) {
    line += " stan " + r.text[11];
  }
  if (r.present[2]) {
    line += " pan " + mask_pan(r.text[2]);
  }
  if (r.present[4]) {
    line += " amount " + r.text[4];
  }
  line += ": expected " + expected;
  if (e.amount_minor >= 0) {
    line += " DE4=" + std::to_string(e.amount_minor);
  }
  line += ", got " + std::string(de39.empty() ? "no DE 39" : de39);
  if (amount >= 0) {
    line += " DE4=" + std::to_string(amount);
  }
  samples_.push_back(std::move(line));
}

void LoadDriver::tick(std::uint64_t now_ns) noexcept {
  matcher_.expire(now_ns, [this](std::uint32_t tag, std::uint64_t) {
    source_.on_lost(slots_[tag].request);
    release(tag);
  });
  while (now_ns >= second_end_ns_) {
    close_second(second_end_ns_);
  }
}

void LoadDriver::close_second(std::uint64_t end_ns) noexcept {
  TimelinePoint p;
  p.t_s = static_cast<double>(end_ns - start_ns_) / 1e9;
  p.sent = second_sent_;
  p.received = second_received_;
  p.p50_ns = second_.percentile(0.50);
  p.p99_ns = second_.percentile(0.99);
  p.max_ns = second_.max();
  if (timeline_.size() < timeline_.capacity()) {
    timeline_.push_back(p);
  }
  last_second_received_ = second_received_;
  second_sent_ = 0;
  second_received_ = 0;
  second_.reset();
  second_end_ns_ = end_ns + kNsPerSecond;
}

LoadProgress LoadDriver::progress(std::uint64_t now_ns) const noexcept {
  LoadProgress p;
  p.elapsed_s = static_cast<double>(now_ns - start_ns_) / 1e9;
  p.sent = sent_;
  p.matched = matcher_.counts().matched;
  p.in_flight = matcher_.pending();
  const Matcher::Counts& c = matcher_.counts();
  p.problems = c.late + c.duplicates + c.unmatched + c.timeouts + mismatches_ + errors_;
  p.rate_per_s = static_cast<double>(last_second_received_);
  p.p99_ns = latency_.percentile(0.99);
  return p;
}

void LoadDriver::fill_report(std::uint64_t now_ns, RunReport& r) {
  if (second_sent_ > 0 || second_received_ > 0) {
    close_second(now_ns);
  }
  const Matcher::Counts& c = matcher_.counts();
  r.offered_rate = options_.closed_loop ? 0 : options_.rate_per_s;
  r.concurrency = options_.closed_loop
                      ? options_.concurrency
                      : options_.max_in_flight * static_cast<std::uint32_t>(conn_in_flight_.size());
  const std::uint64_t end = std::max(last_response_ns_, std::min(now_ns, end_ns_));
  r.duration_s = static_cast<double>(end - start_ns_) / 1e9;
  r.sent = sent_;
  r.matched = c.matched;
  r.timeouts = c.timeouts;
  r.late = c.late;
  r.duplicates = c.duplicates;
  r.unmatched = c.unmatched;
  r.mismatches = mismatches_;
  r.errors = errors_;
  for (std::size_t i = 0; i < by_code_.size(); ++i) {
    if (by_code_[i] > 0) {
      const std::array<char, 2> code{static_cast<char>('0' + i / 10),
                                     static_cast<char>('0' + i % 10)};
      r.by_code[std::string(code.data(), 2)] += by_code_[i];
    }
  }
  if (other_codes_ > 0) {
    r.by_code["other"] += other_codes_;
  }
  for (std::size_t k = 0; k < kKindCount; ++k) {
    if (by_kind_[k] > 0) {
      r.by_kind[std::string(kind_name(static_cast<Kind>(k)))] += by_kind_[k];
    }
  }
  r.mismatch_samples = samples_;
  r.latency = latency_;
  r.timeline = timeline_;
}

// ---------------------------------------------------------------------------------------------
// run_load: the driver over real connections.

namespace {

std::uint64_t steady_ns() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

std::int64_t wall_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class LinkTransport final : public Transport {
 public:
  explicit LinkTransport(LinkSet& links) noexcept : links_(links) {}
  [[nodiscard]] std::size_t connections() const noexcept override { return links_.size(); }
  [[nodiscard]] bool usable(std::size_t conn) const noexcept override {
    return links_.link(conn).ready();
  }
  [[nodiscard]] bool send(std::size_t conn, std::span<const std::byte> message) noexcept override {
    try {
      return links_.link(conn).send(message);
    } catch (const std::exception&) {  // starting the write failed: the request times out
      return false;
    }
  }

 private:
  LinkSet& links_;
};

// Hands the links' events to the driver (the driver is created after the links).
class LoadHandler final : public Link::Handler {
 public:
  LoadDriver* driver = nullptr;
  LoadEvents events;
  std::string last_close;

  void on_ready(Link&) override { events.dirty = true; }
  void on_message(Link& link, const iso8583::MessageView& msg) override {
    if (driver != nullptr) {
      driver->on_message(link.index(), msg, steady_ns());
      events.dirty = true;
    }
  }
  void on_bad_message(Link&, std::string_view why) override {
    if (driver != nullptr) {
      driver->on_error();
    }
    std::fprintf(stderr, "netsim: bad message: %.*s\n", static_cast<int>(why.size()), why.data());
  }
  void on_closed(Link& link, std::string_view why) override {
    ++events.closed;
    last_close = std::string(why);
    if (driver != nullptr) {
      driver->on_error();
      std::fprintf(stderr, "netsim: connection %u closed: %.*s\n", link.index(),
                   static_cast<int>(why.size()), why.data());
    }
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// LoadLoop

LoadLoop::LoadLoop(boost::asio::io_context& io, const LoadRun& run, LoadDriver& driver,
                   LoadEvents& events, std::size_t links)
    : io_(io),
      run_(run),
      driver_(driver),
      events_(events),
      links_(links),
      timer_(io),
      tty_(::isatty(STDERR_FILENO) != 0) {}

LoadLoop::~LoadLoop() {
  // A wait that already completed sits in the io_context's queue with success and runs on a
  // later poll(); the token tells it this loop is gone.
  *alive_ = false;
  timer_.cancel();
}

void LoadLoop::run() {
  const std::uint64_t start = steady_ns();
  driver_.begin(start);
  next_progress_ = start + kNsPerSecond;
  on_timer();
  while (!done_) {
    io_.run_one();
    if (events_.dirty && !done_) {
      const std::uint64_t when = step();
      if (!done_ && when < armed_for_) {
        timer_.cancel();  // its handler sees operation_aborted; re-armed here
        arm(when);
      }
    }
    if (events_.closed == links_) {
      break;  // every connection is gone
    }
  }
  done_ = true;     // a wait that completed already must not step a finished run
  timer_.cancel();  // one still armed ends with operation_aborted
  if (run_.progress && tty_) {
    std::fputc('\n', stderr);
  }
}

void LoadLoop::on_timer() {
  const std::uint64_t when = step();
  if (done_) {
    io_.stop();
    return;
  }
  arm(when);
}

void LoadLoop::arm(std::uint64_t when) {
  armed_for_ = when;
  const std::uint64_t now = steady_ns();
  timer_.expires_after(std::chrono::nanoseconds(when > now ? when - now : 0));
  // The wait may complete after the run ended, and even after this loop is destroyed (run()
  // returned right after an answer when the timer had fired in the same turn of the
  // io_context, and run_load's final poll() runs it): `alive` says whether `this` still is.
  timer_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
    if (ec || !*alive || done_) {
      return;
    }
    on_timer();
  });
}

std::uint64_t LoadLoop::step() {
  const std::uint64_t now = steady_ns();
  driver_.tick(now);
  const std::uint64_t want = driver_.pump(now, wall_ms());
  events_.dirty = false;
  if (now >= next_progress_) {
    if (run_.progress) {
      print_progress(now);
    }
    while (next_progress_ <= now) {
      next_progress_ += kNsPerSecond;
    }
  }
  if (driver_.sending_done(now) && drain_deadline_ == UINT64_MAX) {
    drain_deadline_ = now + run_.load.timeout_ns + kNsPerSecond;
  }
  if (driver_.finished(now) || now >= drain_deadline_) {
    done_ = true;
    return UINT64_MAX;
  }
  // Wake for the next send, the next timeout check, or the next progress line.
  return std::min({want, now + 50'000'000, next_progress_});
}

// On a terminal the line rewrites itself; elsewhere (--progress into a log) one line a second.
void LoadLoop::print_progress(std::uint64_t now) const {
  const LoadProgress p = driver_.progress(now);
  std::fprintf(stderr,
               "%s%6.1f s  sent %llu  matched %llu  %8.0f/s  in flight %llu  p99 %.3f ms  "
               "problems %llu%s",
               tty_ ? "\r" : "", p.elapsed_s, static_cast<unsigned long long>(p.sent),
               static_cast<unsigned long long>(p.matched), p.rate_per_s,
               static_cast<unsigned long long>(p.in_flight), static_cast<double>(p.p99_ns) / 1e6,
               static_cast<unsigned long long>(p.problems), tty_ ? "   " : "\n");
}

void run_load(const LoadRun& run, RunReport& report) {
  const Portfolio portfolio = Portfolio::load(run.cards_csv);
  TrafficConfig mix =
      run.mix_file.empty() ? TrafficConfig::defaults() : TrafficConfig::load(run.mix_file);
  TrafficGenerator generator(portfolio, std::move(mix), run.seed);
  GeneratorSource source(generator);

  boost::asio::io_context io(1);
  LoadHandler handler;
  LinkSet links(io, run.links, handler);
  links.start();
  if (const std::string why = links.wait_ready(std::chrono::seconds(10)); !why.empty()) {
    throw std::runtime_error("the switch did not take the connections: " + why);
  }
  LinkTransport transport(links);
  LoadDriver driver(run.load, *run.links.link.dialect, source, transport);
  handler.driver = &driver;

  report.title = "netsim load";
  report.mode = run.load.closed_loop ? "closed-loop" : "open-loop";
  report.target = run.links.target.empty() ? run.links.listen : run.links.target;
  report.dialect = run.dialect_name;
  report.framing = run.framing_name;
  report.connections = static_cast<std::uint32_t>(links.size());

  LoadLoop loop(io, run, driver, handler.events, links.size());
  loop.run();

  driver.fill_report(steady_ns(), report);
  handler.driver = nullptr;  // closing now is no error
  links.close_all();
  io.restart();
  io.poll();
}

}  // namespace authswitch::netsim
