#include "switch/metrics.h"

#include <algorithm>
#include <charconv>
#include <stdexcept>
#include <utility>

#include "base/assert.h"

namespace authswitch::switching {
namespace {

constexpr std::size_t kShardsMax = 1024;
constexpr std::size_t kNetworksMax = 256;
constexpr std::size_t kQueuesMax = 64;
constexpr std::size_t kEventsMax = 64;
constexpr std::size_t kCodeSlots = kResponseCodes.size() + 1;       // + "other"
constexpr std::size_t kLatencySlots = kLatencyBoundsUs.size() + 2;  // + overflow, sum_us
constexpr std::size_t kBatchSlots = kBatchBounds.size() + 2;        // + overflow, sum
constexpr std::size_t kCellsPerLine = 8;
constexpr std::array<std::string_view, kMtiClassCount> kMtiLabels = {
    "0100", "0200", "0120", "0220", "0400", "0420", "0800", "other"};

// "42" -> 42. REQUIRES: two ASCII digits.
constexpr std::size_t two_digits(std::string_view c) {
  return static_cast<std::size_t>(c[0] - '0') * 10 + static_cast<std::size_t>(c[1] - '0');
}

// Two-digit code -> index in kResponseCodes (kResponseCodeOther when absent).
constexpr std::array<std::uint8_t, 100> make_code_table() {
  std::array<std::uint8_t, 100> t{};
  t.fill(static_cast<std::uint8_t>(kResponseCodeOther));
  for (std::size_t i = 0; i < kResponseCodes.size(); ++i) {
    const auto c = kResponseCodes[i];
    t[two_digits(c)] = static_cast<std::uint8_t>(i);
  }
  return t;
}
constexpr auto kCodeTable = make_code_table();

std::size_t to_index(MtiClass c) noexcept { return static_cast<std::size_t>(c); }

void append_uint(std::string& out, std::uint64_t v) {
  std::array<char, 24> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  out.append(buf.data(), r.ptr);
}

void append_int(std::string& out, std::int64_t v) {
  std::array<char, 24> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  out.append(buf.data(), r.ptr);
}

// An integer count of microseconds as exact decimal seconds: 50 -> "0.00005", 7500000 -> "7.5".
void append_seconds(std::string& out, std::uint64_t us) {
  append_uint(out, us / 1'000'000);
  std::uint64_t frac = us % 1'000'000;
  if (frac == 0) {
    return;
  }
  std::array<char, 6> digits{};
  for (std::size_t i = digits.size(); i-- > 0;) {
    digits[i] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  std::size_t n = digits.size();
  while (digits[n - 1] == '0') {
    --n;
  }
  out.push_back('.');
  out.append(digits.data(), n);
}

// A label value, escaped as text format 0.0.4 requires (backslash, quote, newline).
void append_label_value(std::string& out, std::string_view v) {
  out.push_back('"');
  for (const char c : v) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

void append_header(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help) {
  out.append("# HELP authswitch_").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE authswitch_").append(name).append(" ").append(type).append("\n");
}

void check_names(const std::vector<std::string>& names, std::size_t max, const char* what) {
  if (names.size() > max) {
    throw std::invalid_argument(std::string("Metrics: too many ") + what);
  }
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i].empty()) {
      throw std::invalid_argument(std::string("Metrics: empty ") + what + " name");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (names[i] == names[j]) {
        throw std::invalid_argument(std::string("Metrics: repeated ") + what + " name " + names[i]);
      }
    }
  }
}

}  // namespace

MtiClass classify_mti(std::string_view mti) noexcept {
  if (mti.size() != 4 || mti[0] != '0' || (mti[3] != '0' && mti[3] != '1')) {
    return MtiClass::kOther;
  }
  const std::string_view head = mti.substr(1, 2);
  if (head == "10") {
    return MtiClass::kAuthorization;
  }
  if (head == "20") {
    return MtiClass::kFinancial;
  }
  if (head == "12") {
    return MtiClass::kAuthorizationAdvice;
  }
  if (head == "22") {
    return MtiClass::kFinancialAdvice;
  }
  if (head == "40") {
    return MtiClass::kReversal;
  }
  if (head == "42") {
    return MtiClass::kReversalAdvice;
  }
  if (head == "80") {
    return MtiClass::kNetwork;
  }
  return MtiClass::kOther;
}

std::string_view mti_label(MtiClass c) noexcept {
  AS_ASSERT(to_index(c) < kMtiLabels.size());
  return kMtiLabels[to_index(c)];
}

std::size_t response_code_index(std::string_view code) noexcept {
  if (code.size() != 2 || code[0] < '0' || code[0] > '9' || code[1] < '0' || code[1] > '9') {
    return kResponseCodeOther;
  }
  return kCodeTable[two_digits(code)];
}

// ShardMetrics ------------------------------------------------------------------------------

ShardMetrics::ShardMetrics(const Metrics& owner, std::size_t cells)
    : owner_(owner), cells_(cells), lines_((cells + kCellsPerLine - 1) / kCellsPerLine) {
  static_assert(sizeof(Line) == 64);
  static_assert(alignof(Line) == 64);
}

ShardMetrics::~ShardMetrics() = default;

std::atomic<std::uint64_t>& ShardMetrics::cell(std::size_t i) noexcept {
  AS_DASSERT(i < cells_);
  return lines_[i / kCellsPerLine].cells[i % kCellsPerLine];
}

std::uint64_t ShardMetrics::read(std::size_t i) const noexcept {
  AS_DASSERT(i < cells_);
  return lines_[i / kCellsPerLine].cells[i % kCellsPerLine].load(std::memory_order_relaxed);
}

void ShardMetrics::add(std::size_t i, std::uint64_t n) noexcept {
  cell(i).fetch_add(n, std::memory_order_relaxed);
}

void ShardMetrics::request(std::size_t network, MtiClass mti) noexcept {
  add(owner_.request_cell(network, mti), 1);
}

void ShardMetrics::response(std::size_t network, MtiClass mti, std::string_view code) noexcept {
  add(owner_.response_cell(network, mti, response_code_index(code)), 1);
}

void ShardMetrics::latency(std::size_t network, std::chrono::nanoseconds d) noexcept {
  const std::uint64_t ns = d.count() < 0 ? 0 : static_cast<std::uint64_t>(d.count());
  // First bound >= the observation (bounds are inclusive, "le"); compared in ns, exactly.
  const auto* it =
      std::lower_bound(kLatencyBoundsUs.begin(), kLatencyBoundsUs.end(), ns,
                       [](std::uint64_t bound_us, std::uint64_t v) { return bound_us * 1000 < v; });
  const auto bucket = static_cast<std::size_t>(it - kLatencyBoundsUs.begin());
  add(owner_.latency_cell(network, bucket), 1);
  add(owner_.latency_cell(network, kLatencySlots - 1), (ns + 500) / 1000);  // sum, rounded us
}

void ShardMetrics::batch(std::size_t size) noexcept {
  const auto* it = std::lower_bound(kBatchBounds.begin(), kBatchBounds.end(), size);
  add(owner_.batch_cell(static_cast<std::size_t>(it - kBatchBounds.begin())), 1);
  add(owner_.batch_cell(kBatchSlots - 1), size);
}

void ShardMetrics::redis_round_trip() noexcept { add(owner_.redis_at_, 1); }

void ShardMetrics::redis_error() noexcept { add(owner_.redis_at_ + 1, 1); }

void ShardMetrics::connections(std::size_t network, std::int64_t delta) noexcept {
  AS_ASSERT(network < owner_.networks_.size());
  // Two's complement: the sum over shards wraps back to the right signed value.
  add(owner_.connections_at_ + network, static_cast<std::uint64_t>(delta));
}

void ShardMetrics::queue_depth(std::size_t queue, std::int64_t value) noexcept {
  AS_ASSERT(queue < owner_.queues_.size());
  cell(owner_.queues_at_ + queue)
      .store(static_cast<std::uint64_t>(value), std::memory_order_relaxed);
}

void ShardMetrics::queue_depth(std::string_view name, std::int64_t value) noexcept {
  const auto q = owner_.queue_index(name);
  AS_ASSERT(q.has_value());
  queue_depth(*q, value);
}

void ShardMetrics::event_total(std::size_t event, std::uint64_t total) noexcept {
  AS_ASSERT(event < owner_.events_.size());
  cell(owner_.events_at_ + event).store(total, std::memory_order_relaxed);
}

// Metrics -----------------------------------------------------------------------------------

Metrics::Metrics(std::size_t shards, std::vector<std::string> network_names,
                 std::vector<std::string> queue_names, std::vector<std::string> event_names)
    : networks_(std::move(network_names)),
      queues_(std::move(queue_names)),
      events_(std::move(event_names)) {
  if (shards == 0 || shards > kShardsMax) {
    throw std::invalid_argument("Metrics: shards must be 1..1024");
  }
  check_names(networks_, kNetworksMax, "network");
  check_names(queues_, kQueuesMax, "queue");
  check_names(events_, kEventsMax, "event");
  const std::size_t n = networks_.size();
  responses_at_ = n * kMtiClassCount;
  latency_at_ = responses_at_ + n * kMtiClassCount * kCodeSlots;
  batch_at_ = latency_at_ + n * kLatencySlots;
  redis_at_ = batch_at_ + kBatchSlots;
  connections_at_ = redis_at_ + 2;
  queues_at_ = connections_at_ + n;
  events_at_ = queues_at_ + queues_.size();
  cells_ = events_at_ + events_.size();
  shards_.reserve(shards);
  for (std::size_t i = 0; i < shards; ++i) {
    // Not make_unique: the constructor is private to Metrics (a friend).
    shards_.push_back(std::unique_ptr<ShardMetrics>(new ShardMetrics(*this, cells_)));
  }
}

Metrics::~Metrics() = default;

ShardMetrics& Metrics::shard(std::size_t i) noexcept {
  AS_ASSERT(i < shards_.size());
  return *shards_[i];
}

std::optional<std::size_t> Metrics::network_index(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < networks_.size(); ++i) {
    if (networks_[i] == name) {
      return i;
    }
  }
  return std::nullopt;
}

std::optional<std::size_t> Metrics::queue_index(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < queues_.size(); ++i) {
    if (queues_[i] == name) {
      return i;
    }
  }
  return std::nullopt;
}

std::size_t Metrics::request_cell(std::size_t network, MtiClass mti) const noexcept {
  AS_ASSERT(network < networks_.size());
  AS_DASSERT(to_index(mti) < kMtiClassCount);
  return network * kMtiClassCount + to_index(mti);
}

std::size_t Metrics::response_cell(std::size_t network, MtiClass mti,
                                   std::size_t code) const noexcept {
  AS_ASSERT(network < networks_.size());
  AS_DASSERT(code < kCodeSlots);
  return responses_at_ + (network * kMtiClassCount + to_index(mti)) * kCodeSlots + code;
}

std::size_t Metrics::latency_cell(std::size_t network, std::size_t bucket) const noexcept {
  AS_ASSERT(network < networks_.size());
  AS_DASSERT(bucket < kLatencySlots);
  return latency_at_ + network * kLatencySlots + bucket;
}

std::size_t Metrics::batch_cell(std::size_t bucket) const noexcept {
  AS_DASSERT(bucket < kBatchSlots);
  return batch_at_ + bucket;
}

std::uint64_t Metrics::sum(std::size_t cell) const noexcept {
  std::uint64_t total = 0;
  for (const auto& s : shards_) {
    total += s->read(cell);
  }
  return total;
}

std::string Metrics::render() const {
  std::string out;
  out.reserve(4096 + networks_.size() * 4096);
  render_counters(out);
  render_latency(out);
  render_batches(out);
  render_gauges(out);
  render_events(out);
  return out;
}

void Metrics::render_counters(std::string& out) const {
  append_header(out, "requests_total", "counter", "Requests received, by network and MTI class.");
  for (std::size_t n = 0; n < networks_.size(); ++n) {
    for (std::size_t m = 0; m < kMtiClassCount; ++m) {
      out.append("authswitch_requests_total{network=");
      append_label_value(out, networks_[n]);
      out.append(",mti=\"").append(kMtiLabels[m]).append("\"} ");
      append_uint(out, sum(request_cell(n, static_cast<MtiClass>(m))));
      out.push_back('\n');
    }
  }
  append_header(out, "responses_total", "counter",
                "Responses sent, by network, MTI class of the request and response code (DE 39).");
  for (std::size_t n = 0; n < networks_.size(); ++n) {
    for (std::size_t m = 0; m < kMtiClassCount; ++m) {
      for (std::size_t c = 0; c < kCodeSlots; ++c) {
        const std::uint64_t v = sum(response_cell(n, static_cast<MtiClass>(m), c));
        if (v == 0) {
          continue;  // 176 series per network otherwise; a series appears once non-zero
        }
        out.append("authswitch_responses_total{network=");
        append_label_value(out, networks_[n]);
        out.append(",mti=\"").append(kMtiLabels[m]).append("\",code=\"");
        out.append(c < kResponseCodes.size() ? kResponseCodes[c] : "other").append("\"} ");
        append_uint(out, v);
        out.push_back('\n');
      }
    }
  }
  append_header(out, "redis_round_trips_total", "counter", "Redis round trips completed.");
  out.append("authswitch_redis_round_trips_total ");
  append_uint(out, sum(redis_at_));
  out.push_back('\n');
  append_header(out, "redis_errors_total", "counter",
                "Redis calls failed (error reply, timeout, disconnect).");
  out.append("authswitch_redis_errors_total ");
  append_uint(out, sum(redis_at_ + 1));
  out.push_back('\n');
}

void Metrics::render_latency(std::string& out) const {
  append_header(out, "request_duration_seconds", "histogram",
                "Time from a request's arrival to its response, by network.");
  for (std::size_t n = 0; n < networks_.size(); ++n) {
    std::uint64_t cumulative = 0;
    const auto bucket_line = [&](std::string_view le_text, std::uint64_t le_us, bool inf) {
      out.append("authswitch_request_duration_seconds_bucket{network=");
      append_label_value(out, networks_[n]);
      out.append(",le=\"");
      if (inf) {
        out.append(le_text);
      } else {
        append_seconds(out, le_us);
      }
      out.append("\"} ");
      append_uint(out, cumulative);
      out.push_back('\n');
    };
    for (std::size_t b = 0; b < kLatencyBoundsUs.size(); ++b) {
      cumulative += sum(latency_cell(n, b));
      bucket_line({}, kLatencyBoundsUs[b], false);
    }
    cumulative += sum(latency_cell(n, kLatencyBoundsUs.size()));
    bucket_line("+Inf", 0, true);
    out.append("authswitch_request_duration_seconds_sum{network=");
    append_label_value(out, networks_[n]);
    out.append("} ");
    append_seconds(out, sum(latency_cell(n, kLatencySlots - 1)));
    out.append("\nauthswitch_request_duration_seconds_count{network=");
    append_label_value(out, networks_[n]);
    out.append("} ");
    append_uint(out, cumulative);
    out.push_back('\n');
  }
}

void Metrics::render_batches(std::string& out) const {
  append_header(out, "redis_batch_size", "histogram", "Redis calls sent per pipeline flush.");
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b < kBatchBounds.size(); ++b) {
    cumulative += sum(batch_cell(b));
    out.append("authswitch_redis_batch_size_bucket{le=\"");
    append_uint(out, kBatchBounds[b]);
    out.append("\"} ");
    append_uint(out, cumulative);
    out.push_back('\n');
  }
  cumulative += sum(batch_cell(kBatchBounds.size()));
  out.append("authswitch_redis_batch_size_bucket{le=\"+Inf\"} ");
  append_uint(out, cumulative);
  out.append("\nauthswitch_redis_batch_size_sum ");
  append_uint(out, sum(batch_cell(kBatchSlots - 1)));
  out.append("\nauthswitch_redis_batch_size_count ");
  append_uint(out, cumulative);
  out.push_back('\n');
}

void Metrics::render_gauges(std::string& out) const {
  append_header(out, "connections", "gauge", "Open connections, by network.");
  for (std::size_t n = 0; n < networks_.size(); ++n) {
    out.append("authswitch_connections{network=");
    append_label_value(out, networks_[n]);
    out.append("} ");
    append_int(out, static_cast<std::int64_t>(sum(connections_at_ + n)));
    out.push_back('\n');
  }
  if (queues_.empty()) {
    return;
  }
  append_header(out, "queue_depth", "gauge", "Items waiting in a queue, summed over shards.");
  for (std::size_t q = 0; q < queues_.size(); ++q) {
    out.append("authswitch_queue_depth{queue=");
    append_label_value(out, queues_[q]);
    out.append("} ");
    append_int(out, static_cast<std::int64_t>(sum(queues_at_ + q)));
    out.push_back('\n');
  }
}

void Metrics::render_events(std::string& out) const {
  if (events_.empty()) {
    return;
  }
  append_header(out, "events_total", "counter",
                "Connection, network-management, stand-in and reconciliation events, by event.");
  for (std::size_t e = 0; e < events_.size(); ++e) {
    out.append("authswitch_events_total{event=");
    append_label_value(out, events_[e]);
    out.append("} ");
    append_uint(out, sum(events_at_ + e));
    out.push_back('\n');
  }
}

}  // namespace authswitch::switching
