#pragma once
// RunReport: the outcome of one netsim run (issue 6), and its three renderings: a terminal
// summary (render_text), JSON for scripts (render_json) and a self-contained HTML page with
// inline SVG plots (render_html).
//
// Ownership: a RunReport is a plain value filled by the simulator after (or while) it runs; the
// render functions read it and return a new string. They allocate freely: they run once, at the
// end of a run, never on the message path.
// Thread-safety: none; fill and render a report on one thread.
//
// PANs: the report never masks anything. Whoever fills mismatch_samples must mask PANs first;
// the renderers copy the samples verbatim (HTML-escaped in render_html).

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "simulators/stats/histogram.h"

namespace authswitch::netsim {

// One second of a run, for the latency-over-time plot.
struct TimelinePoint {
  double t_s = 0;              // seconds since the run's start (end of this interval)
  std::uint64_t sent = 0;      // requests sent in the interval
  std::uint64_t received = 0;  // responses matched in the interval
  std::uint64_t p50_ns = 0, p99_ns = 0, max_ns = 0;  // latency of the responses in it
};

struct RunReport {
  std::string title;   // e.g. "netsim load"
  std::string mode;    // "open-loop" or "closed-loop" or "scenarios"
  std::string target;  // "127.0.0.1:8583"
  std::string dialect, framing;
  std::uint32_t connections = 0;
  double offered_rate = 0;        // requests/s asked for (open loop); 0 in closed loop
  std::uint32_t concurrency = 0;  // closed loop: requests kept in flight; open loop: the cap
  double duration_s = 0;          // from the first send to the last response or timeout
  std::uint64_t sent = 0;
  std::uint64_t matched = 0;     // responses matched to a request in time
  std::uint64_t timeouts = 0;    // requests with no response within the timeout
  std::uint64_t late = 0;        // responses that came after their request timed out
  std::uint64_t duplicates = 0;  // second responses to a request already answered
  std::uint64_t unmatched = 0;   // responses matching no request sent
  std::uint64_t mismatches = 0;  // responses whose code differs from the expected one
  std::uint64_t errors = 0;      // connection/send errors
  std::map<std::string, std::uint64_t> by_code;  // response code (DE 39) -> count
  std::map<std::string, std::uint64_t> by_kind;  // traffic kind ("purchase", ...) -> count
  std::vector<std::string> mismatch_samples;     // at most 20, PANs already masked
  LatencyHistogram latency;                      // of matched responses
  std::vector<TimelinePoint> timeline;

  // The most mismatch samples a report keeps and renders.
  static constexpr std::size_t kMismatchSamplesMax = 20;

  [[nodiscard]] double throughput() const noexcept;  // matched / duration_s (0 if duration 0)
  // No timeouts, late, duplicates, unmatched, mismatches or errors.
  [[nodiscard]] bool clean() const noexcept;
};

// A terminal-friendly summary: the run's parameters, throughput, p50/p90/p99/p99.9/max in
// microseconds (e.g. "p99 412 us"), then counts by code and kind, then the problems, then up to
// 20 mismatch samples.
[[nodiscard]] std::string render_text(const RunReport& r);

// One JSON object (nlohmann::json, dump(2)): every field above; latency as
// {"count","min_us","mean_us","p50_us","p90_us","p99_us","p999_us","max_us","curve":[{"q","us"}]}
// (microseconds as numbers with 3 decimals), "throughput_per_s", "clean". Timeline points keep
// their field names (t_s, sent, received, p50_ns, p99_ns, max_ns). Invalid UTF-8 in strings is
// replaced (U+FFFD), never thrown.
[[nodiscard]] std::string render_json(const RunReport& r);

// A self-contained HTML page (no external scripts, fonts or network): the summary table and two
// inline SVG plots drawn by this code (no JavaScript library): the percentile curve (x axis
// "percentile" in HDR style, a log scale of 1/(1-q) with ticks 50%, 90%, 99%, 99.9%, 99.99%; y
// axis latency in microseconds) and latency over time (p50, p99 and max lines per second, plus
// throughput per second on a second axis). Every text from the report is HTML-escaped.
[[nodiscard]] std::string render_html(const RunReport& r);

}  // namespace authswitch::netsim
