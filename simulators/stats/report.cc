#include "simulators/stats/report.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/assert.h"

namespace authswitch::netsim {

namespace {

// ---- Numbers ----

// v with `decimals` digits after the point ("%.*f"), for text, HTML and SVG coordinates.
std::string fixed(double v, int decimals) {
  AS_ASSERT(decimals >= 0);
  AS_ASSERT(decimals <= 9);
  if (!std::isfinite(v)) {
    return "0";
  }
  std::array<char, 64> buffer{};
  const int n = std::snprintf(buffer.data(), buffer.size(), "%.*f", decimals, v);
  AS_ASSERT(n > 0);
  return {buffer.data(), std::min(static_cast<std::size_t>(n), buffer.size() - 1)};
}

double to_us(std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

// Microseconds rounded to 3 decimals (nanosecond resolution), for JSON.
double to_us3(double ns) { return std::round(ns) / 1000.0; }

// Microseconds for a person: "412", "41.2", "4.12" (three significant digits below 100 us).
std::string us_text(std::uint64_t ns) {
  const double us = to_us(ns);
  if (us >= 100) {
    return fixed(us, 0);
  }
  return fixed(us, us >= 10 ? 1 : 2);
}

// A short label for an axis tick: no trailing zeros ("0.5", "20", "1500").
std::string tick_text(double v) {
  std::string s = fixed(v, 3);
  while (!s.empty() && s.back() == '0') {
    s.pop_back();
  }
  if (!s.empty() && s.back() == '.') {
    s.pop_back();
  }
  return s == "-0" ? "0" : s;
}

// The smallest 1, 2, 2.5 or 5 times a power of ten that is >= v: a step between axis ticks.
double nice_step(double v) {
  if (!(v > 0) || !std::isfinite(v)) {
    return 1;
  }
  const double power = std::pow(10.0, std::floor(std::log10(v)));
  for (const double nice : {1.0, 2.0, 2.5, 5.0}) {
    if (v <= nice * power * (1 + 1e-9)) {
      return nice * power;
    }
  }
  return 10 * power;
}

// The y axes have five intervals (a left and a right axis share the grid lines).
constexpr int kYIntervals = 5;

// The top of a y axis showing values up to v: five nice steps.
double y_axis_top(double v) { return kYIntervals * nice_step(v / kYIntervals); }

// ---- Text ----

void append_line(std::string& out, std::string_view line) {
  out.append(line);
  out.push_back('\n');
}

struct Problem {
  const char* name;
  std::uint64_t count;
};

std::vector<Problem> problems_of(const RunReport& r) {
  return {{"timeouts", r.timeouts},     {"late", r.late},
          {"duplicates", r.duplicates}, {"unmatched", r.unmatched},
          {"mismatches", r.mismatches}, {"errors", r.errors}};
}

std::size_t samples_shown(const RunReport& r) {
  return std::min(r.mismatch_samples.size(), RunReport::kMismatchSamplesMax);
}

void append_counts(std::string& out, const char* heading,
                   const std::map<std::string, std::uint64_t>& counts) {
  if (counts.empty()) {
    return;
  }
  append_line(out, heading);
  for (const auto& [key, count] : counts) {
    append_line(out, "  " + key + "  " + std::to_string(count));
  }
}

void append_text_latency(std::string& out, const LatencyHistogram& h) {
  append_line(out, "latency of matched responses (" + std::to_string(h.count()) + ")");
  if (h.count() == 0) {
    append_line(out, "  none recorded");
    return;
  }
  append_line(out,
              "  min " + us_text(h.min()) + " us  mean " + fixed(h.mean() / 1000.0, 1) + " us");
  append_line(out, "  p50 " + us_text(h.percentile(0.5)) + " us  p90 " +
                       us_text(h.percentile(0.9)) + " us  p99 " + us_text(h.percentile(0.99)) +
                       " us  p99.9 " + us_text(h.percentile(0.999)) + " us  max " +
                       us_text(h.max()) + " us");
}

void append_text_problems(std::string& out, const RunReport& r) {
  if (r.clean()) {
    append_line(out, "problems: none (clean)");
  } else {
    std::string line = "problems:";
    for (const Problem& p : problems_of(r)) {
      if (p.count != 0) {
        line += std::string(" ") + p.name + " " + std::to_string(p.count);
      }
    }
    append_line(out, line);
  }
  if (r.mismatch_samples.empty()) {
    return;
  }
  append_line(out, "mismatch samples (" + std::to_string(samples_shown(r)) + " of " +
                       std::to_string(r.mismatches) + " mismatches)");
  for (std::size_t i = 0; i < samples_shown(r); ++i) {
    append_line(out, "  " + r.mismatch_samples[i]);
  }
}

// ---- JSON ----

nlohmann::json latency_json(const LatencyHistogram& h) {
  nlohmann::json curve = nlohmann::json::array();
  for (const LatencyHistogram::CurvePoint& p : h.percentile_curve()) {
    curve.push_back({{"q", p.quantile}, {"us", to_us3(static_cast<double>(p.value_ns))}});
  }
  const auto us = [&](double q) { return to_us3(static_cast<double>(h.percentile(q))); };
  return {{"count", h.count()},          {"min_us", to_us3(static_cast<double>(h.min()))},
          {"mean_us", to_us3(h.mean())}, {"p50_us", us(0.5)},
          {"p90_us", us(0.9)},           {"p99_us", us(0.99)},
          {"p999_us", us(0.999)},        {"max_us", to_us3(static_cast<double>(h.max()))},
          {"curve", std::move(curve)}};
}

nlohmann::json timeline_json(const std::vector<TimelinePoint>& timeline) {
  nlohmann::json points = nlohmann::json::array();
  for (const TimelinePoint& p : timeline) {
    points.push_back({{"t_s", p.t_s},
                      {"sent", p.sent},
                      {"received", p.received},
                      {"p50_ns", p.p50_ns},
                      {"p99_ns", p.p99_ns},
                      {"max_ns", p.max_ns}});
  }
  return points;
}

// ---- HTML ----

// Escapes the five characters that matter in HTML text and attribute values.
std::string escape_html(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

void append_row(std::string& out, std::string_view name, std::string_view value_escaped) {
  out += "<tr><th>";
  out += escape_html(name);
  out += "</th><td>";
  out += value_escaped;
  out += "</td></tr>\n";
}

void append_html_parameters(std::string& out, const RunReport& r) {
  out += "<table>\n";
  append_row(out, "mode", escape_html(r.mode));
  append_row(out, "target", escape_html(r.target));
  append_row(out, "dialect", escape_html(r.dialect));
  append_row(out, "framing", escape_html(r.framing));
  append_row(out, "connections", std::to_string(r.connections));
  append_row(out, "offered rate", r.offered_rate > 0 ? fixed(r.offered_rate, 1) + " /s" : "-");
  append_row(out, "concurrency", std::to_string(r.concurrency));
  append_row(out, "duration", fixed(r.duration_s, 3) + " s");
  append_row(out, "sent", std::to_string(r.sent));
  append_row(out, "matched", std::to_string(r.matched));
  append_row(out, "throughput", fixed(r.throughput(), 1) + " /s");
  append_row(out, "clean", r.clean() ? "yes" : "<b>no</b>");
  out += "</table>\n";
}

void append_html_latency(std::string& out, const LatencyHistogram& h) {
  out += "<table>\n";
  append_row(out, "count", std::to_string(h.count()));
  append_row(out, "min", us_text(h.min()) + " us");
  append_row(out, "mean", fixed(h.mean() / 1000.0, 1) + " us");
  append_row(out, "p50", us_text(h.percentile(0.5)) + " us");
  append_row(out, "p90", us_text(h.percentile(0.9)) + " us");
  append_row(out, "p99", us_text(h.percentile(0.99)) + " us");
  append_row(out, "p99.9", us_text(h.percentile(0.999)) + " us");
  append_row(out, "p99.99", us_text(h.percentile(0.9999)) + " us");
  append_row(out, "max", us_text(h.max()) + " us");
  out += "</table>\n";
}

void append_html_counts(std::string& out, const char* heading,
                        const std::map<std::string, std::uint64_t>& counts) {
  out += "<div><h3>";
  out += heading;
  out += "</h3>\n<table>\n";
  for (const auto& [key, count] : counts) {
    append_row(out, key, std::to_string(count));
  }
  if (counts.empty()) {
    append_row(out, "-", "0");
  }
  out += "</table></div>\n";
}

void append_html_problems(std::string& out, const RunReport& r) {
  out += "<div><h3>problems</h3>\n<table>\n";
  for (const Problem& p : problems_of(r)) {
    append_row(out, p.name,
               p.count == 0 ? "0" : "<b class=\"bad\">" + std::to_string(p.count) + "</b>");
  }
  out += "</table></div>\n";
}

void append_html_samples(std::string& out, const RunReport& r) {
  if (r.mismatch_samples.empty()) {
    return;
  }
  out += "<h2>Mismatch samples (" + std::to_string(samples_shown(r)) + " of " +
         std::to_string(r.mismatches) + ")</h2>\n<ol class=\"samples\">\n";
  for (std::size_t i = 0; i < samples_shown(r); ++i) {
    out += "<li><code>" + escape_html(r.mismatch_samples[i]) + "</code></li>\n";
  }
  out += "</ol>\n";
}

// ---- SVG ----

// A chart's drawing area inside its SVG: pixel coordinates of the plot rectangle and the data
// ranges it shows. Only ever a local value while one chart is drawn.
struct Frame {
  static constexpr double kWidth = 800;
  static constexpr double kHeight = 400;
  static constexpr double kLeft = 70;
  static constexpr double kRight = 730;  // leaves room for a second y axis
  static constexpr double kTop = 40;
  static constexpr double kBottom = 320;
  double x_max = 1;
  double y_max = 1;
  double y2_max = 1;

  [[nodiscard]] double px(double x) const { return kLeft + (kRight - kLeft) * x / x_max; }
  [[nodiscard]] double py(double y) const { return kBottom - (kBottom - kTop) * y / y_max; }
  [[nodiscard]] double py2(double y) const { return kBottom - (kBottom - kTop) * y / y2_max; }
};

std::string coords(double x, double y) { return fixed(x, 1) + "," + fixed(y, 1); }

void svg_open(std::string& out, const char* id, const char* caption) {
  out += R"(<svg id=")";
  out += id;
  out += R"(" viewBox="0 0 )" + fixed(Frame::kWidth, 0) + " " + fixed(Frame::kHeight, 0) +
         "\" role=\"img\">\n<title>";
  out += caption;
  out += "</title>\n<text x=\"" + fixed(Frame::kWidth / 2, 0) +
         R"(" y="22" class="caption" text-anchor="middle">)";
  out += caption;
  out += "</text>\n<rect x=\"" + fixed(Frame::kLeft, 0) + "\" y=\"" + fixed(Frame::kTop, 0) +
         "\" width=\"" + fixed(Frame::kRight - Frame::kLeft, 0) + "\" height=\"" +
         fixed(Frame::kBottom - Frame::kTop, 0) + "\" class=\"plot\"/>\n";
}

void svg_text(std::string& out, double x, double y, const char* anchor, std::string_view text,
              std::string_view css_class = "tick") {
  out += "<text x=\"" + fixed(x, 1) + "\" y=\"" + fixed(y, 1) + "\" text-anchor=\"" + anchor +
         "\" class=\"" + std::string(css_class) + "\">" + escape_html(text) + "</text>\n";
}

void svg_line(std::string& out, double x1, double y1, double x2, double y2, const char* css) {
  out += "<line x1=\"" + fixed(x1, 1) + "\" y1=\"" + fixed(y1, 1) + "\" x2=\"" + fixed(x2, 1) +
         "\" y2=\"" + fixed(y2, 1) + "\" class=\"" + css + "\"/>\n";
}

// Horizontal grid lines and labels of the left y axis (and of the right one when `right` is
// set), five intervals from 0 to y_max.
void svg_y_axes(std::string& out, const Frame& f, const char* label, const char* right_label) {
  for (int i = 0; i <= kYIntervals; ++i) {
    const double y = f.y_max * i / kYIntervals;
    svg_line(out, Frame::kLeft, f.py(y), Frame::kRight, f.py(y), "grid");
    svg_text(out, Frame::kLeft - 6, f.py(y) + 4, "end", tick_text(y));
    if (right_label != nullptr) {
      svg_text(out, Frame::kRight + 6, f.py(y) + 4, "start", tick_text(f.y2_max * i / kYIntervals));
    }
  }
  const double middle = (Frame::kTop + Frame::kBottom) / 2;
  out += "<text transform=\"translate(16," + fixed(middle, 0) +
         ") rotate(-90)\" text-anchor=\"middle\" class=\"label\">" + label + "</text>\n";
  if (right_label != nullptr) {
    out += "<text transform=\"translate(" + fixed(Frame::kWidth - 12, 0) + "," + fixed(middle, 0) +
           ") rotate(90)\" text-anchor=\"middle\" class=\"label\">" + right_label + "</text>\n";
  }
}

void svg_x_label(std::string& out, const char* label) {
  svg_text(out, (Frame::kLeft + Frame::kRight) / 2, Frame::kBottom + 36, "middle", label, "label");
}

void svg_no_data(std::string& out, const char* what) {
  svg_text(out, (Frame::kLeft + Frame::kRight) / 2, (Frame::kTop + Frame::kBottom) / 2, "middle",
           what, "label");
}

// The x position of quantile q on the HDR percentile axis: log10(1 / (1 - q)). q = 1 (the
// maximum) has no finite position; it is drawn half a decade beyond 1 - 10^-6.
constexpr double kCurveMaxX = 6.5;

double curve_x(double q) {
  if (q >= 1) {
    return kCurveMaxX;
  }
  return std::min(std::log10(1.0 / (1.0 - q)), kCurveMaxX);
}

void append_percentile_svg(std::string& out, const LatencyHistogram& h) {
  svg_open(out, "percentile-curve", "Latency by percentile");
  Frame f;
  f.x_max = kCurveMaxX;
  f.y_max = y_axis_top(to_us(h.max()));
  svg_y_axes(out, f, "latency (us)", nullptr);
  struct Tick {
    double q;
    const char* text;
  };
  constexpr std::array<Tick, 9> kTicks = {{{0, "0%"},
                                           {0.5, "50%"},
                                           {0.9, "90%"},
                                           {0.99, "99%"},
                                           {0.999, "99.9%"},
                                           {0.9999, "99.99%"},
                                           {0.99999, "99.999%"},
                                           {0.999999, "99.9999%"},
                                           {1, "max"}}};
  for (const Tick& t : kTicks) {
    const double x = f.px(curve_x(t.q));
    svg_line(out, x, Frame::kTop, x, Frame::kBottom, "grid");
    svg_text(out, x, Frame::kBottom + 18, "middle", t.text);
  }
  svg_x_label(out, "percentile");
  const std::vector<LatencyHistogram::CurvePoint> curve = h.percentile_curve();
  if (curve.empty()) {
    svg_no_data(out, "no latency recorded");
  } else {
    out += R"(<polyline class="p99" points=")";
    for (const LatencyHistogram::CurvePoint& p : curve) {
      out += coords(f.px(curve_x(p.quantile)), f.py(to_us(p.value_ns))) + " ";
    }
    out += "\"/>\n";
  }
  out += "</svg>\n";
}

// An SVG path through the timeline's points i where has(i) holds, at height y(i); broken where
// has(i) does not hold (a second with no response has no latency to draw).
template <typename Y, typename Has>
std::string timeline_path(const std::vector<TimelinePoint>& timeline, const Frame& f, Y y,
                          Has has) {
  std::string d;
  bool pen_down = false;
  for (std::size_t i = 0; i < timeline.size(); ++i) {
    if (!has(i)) {
      pen_down = false;
      continue;
    }
    d += pen_down ? " L" : " M";
    d += coords(f.px(timeline[i].t_s), y(i));
    pen_down = true;
  }
  return d;
}

// Responses matched per second in each interval of the timeline (intervals may be shorter than
// a second at the end of a run).
std::vector<double> throughput_per_s(const std::vector<TimelinePoint>& timeline) {
  std::vector<double> rates;
  rates.reserve(timeline.size());
  double previous_s = 0;
  for (const TimelinePoint& p : timeline) {
    const double interval_s = p.t_s - previous_s;
    const auto received = static_cast<double>(p.received);
    rates.push_back(interval_s > 1e-9 ? received / interval_s : received);
    previous_s = p.t_s;
  }
  return rates;
}

void svg_legend(std::string& out) {
  struct Entry {
    const char* css;
    const char* text;
  };
  constexpr std::array<Entry, 4> kEntries = {
      {{"p50", "p50"}, {"p99", "p99"}, {"max", "max"}, {"rate", "throughput (/s, right axis)"}}};
  double x = Frame::kLeft;
  for (const Entry& e : kEntries) {
    svg_line(out, x, Frame::kHeight - 12, x + 20, Frame::kHeight - 12, e.css);
    svg_text(out, x + 24, Frame::kHeight - 8, "start", e.text);
    x += 90;
  }
}

void append_timeline_svg(std::string& out, const std::vector<TimelinePoint>& timeline) {
  svg_open(out, "latency-over-time", "Latency and throughput over time");
  const std::vector<double> rates = throughput_per_s(timeline);
  Frame f;
  for (const TimelinePoint& p : timeline) {
    f.x_max = std::max(f.x_max, p.t_s);
    f.y_max = std::max(f.y_max, to_us(std::max({p.p50_ns, p.p99_ns, p.max_ns})));
  }
  // About six ticks on the time axis, ending on the first tick at or after the last point.
  const double x_step = nice_step(f.x_max / 6);
  const int x_intervals = std::max(1, static_cast<int>(std::ceil(f.x_max / x_step - 1e-9)));
  f.x_max = x_step * x_intervals;
  f.y_max = y_axis_top(f.y_max);
  // Headroom above the highest rate, so a steady throughput does not run along the frame.
  const double rate_max = rates.empty() ? 1 : *std::max_element(rates.begin(), rates.end());
  f.y2_max = y_axis_top(rate_max * 1.1);
  svg_y_axes(out, f, "latency (us)", "throughput (/s)");
  for (int i = 0; i <= x_intervals; ++i) {
    const double t = x_step * i;
    svg_text(out, f.px(t), Frame::kBottom + 18, "middle", tick_text(t));
  }
  svg_x_label(out, "time (s)");
  if (timeline.empty()) {
    svg_no_data(out, "no timeline recorded");
  }
  const auto answered = [&](std::size_t i) { return timeline[i].received != 0; };
  const auto line = [&](const char* css, std::uint64_t TimelinePoint::*ns) {
    const auto y = [&](std::size_t i) { return f.py(to_us(timeline[i].*ns)); };
    out += std::string("<path class=\"") + css + "\" d=\"" +
           timeline_path(timeline, f, y, answered) + "\"/>\n";
  };
  line("max", &TimelinePoint::max_ns);
  line("p99", &TimelinePoint::p99_ns);
  line("p50", &TimelinePoint::p50_ns);
  const auto rate_y = [&](std::size_t i) { return f.py2(rates[i]); };
  const auto always = [](std::size_t) { return true; };
  out += R"(<path class="rate" d=")" + timeline_path(timeline, f, rate_y, always) + "\"/>\n";
  svg_legend(out);
  out += "</svg>\n";
}

constexpr std::string_view kStyle = R"(<style>
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1000px; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: left; }
td { font-family: monospace; text-align: right; }
.grid-3 { display: flex; gap: 2em; flex-wrap: wrap; }
.bad { color: #b00; }
.samples code { white-space: pre-wrap; }
svg { width: 100%; max-width: 800px; display: block; margin: 1em 0; font-size: 12px; }
svg .plot { fill: none; stroke: #888; }
svg .grid { stroke: #e4e4e4; }
svg .caption { font-size: 15px; font-weight: bold; }
svg .label { font-size: 13px; }
svg polyline, svg path { fill: none; stroke-width: 2; }
svg .p50 { stroke: #1f77b4; }
svg .p99 { stroke: #ff7f0e; }
svg .max { stroke: #d62728; }
svg .rate { stroke: #777; stroke-dasharray: 5 3; stroke-width: 1.5; }
</style>
)";

}  // namespace

double RunReport::throughput() const noexcept {
  return duration_s > 0 ? static_cast<double>(matched) / duration_s : 0.0;
}

bool RunReport::clean() const noexcept {
  return timeouts == 0 && late == 0 && duplicates == 0 && unmatched == 0 && mismatches == 0 &&
         errors == 0;
}

std::string render_text(const RunReport& r) {
  std::string out;
  append_line(out, r.title);
  append_line(out, "  mode " + r.mode + "  target " + r.target + "  dialect " + r.dialect +
                       "  framing " + r.framing);
  std::string load = "  connections " + std::to_string(r.connections);
  if (r.offered_rate > 0) {
    load += "  offered " + fixed(r.offered_rate, 1) + "/s";
  }
  load += "  concurrency " + std::to_string(r.concurrency) + "  duration " +
          fixed(r.duration_s, 3) + " s";
  append_line(out, load);
  append_line(out, "  sent " + std::to_string(r.sent) + "  matched " + std::to_string(r.matched) +
                       "  throughput " + fixed(r.throughput(), 1) + "/s");
  append_text_latency(out, r.latency);
  append_counts(out, "by code", r.by_code);
  append_counts(out, "by kind", r.by_kind);
  append_text_problems(out, r);
  return out;
}

std::string render_json(const RunReport& r) {
  nlohmann::json samples = nlohmann::json::array();
  for (std::size_t i = 0; i < samples_shown(r); ++i) {
    samples.push_back(r.mismatch_samples[i]);
  }
  const nlohmann::json j = {
      {"title", r.title},
      {"mode", r.mode},
      {"target", r.target},
      {"dialect", r.dialect},
      {"framing", r.framing},
      {"connections", r.connections},
      {"offered_rate", r.offered_rate},
      {"concurrency", r.concurrency},
      {"duration_s", r.duration_s},
      {"sent", r.sent},
      {"matched", r.matched},
      {"timeouts", r.timeouts},
      {"late", r.late},
      {"duplicates", r.duplicates},
      {"unmatched", r.unmatched},
      {"mismatches", r.mismatches},
      {"errors", r.errors},
      {"by_code", r.by_code},
      {"by_kind", r.by_kind},
      {"mismatch_samples", std::move(samples)},
      {"latency", latency_json(r.latency)},
      {"timeline", timeline_json(r.timeline)},
      {"throughput_per_s", r.throughput()},
      {"clean", r.clean()},
  };
  // Invalid UTF-8 (a raw byte in a sample) is replaced rather than thrown at the end of a run.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string render_html(const RunReport& r) {
  std::string out = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  out += "<title>" + escape_html(r.title) + "</title>\n";
  out += kStyle;
  out += "</head>\n<body>\n<h1>" + escape_html(r.title) + "</h1>\n";
  out += "<div class=\"grid-3\"><div><h2>Run</h2>\n";
  append_html_parameters(out, r);
  out += "</div><div><h2>Latency</h2>\n";
  append_html_latency(out, r.latency);
  out += "</div></div>\n<div class=\"grid-3\">\n";
  append_html_counts(out, "by response code (DE 39)", r.by_code);
  append_html_counts(out, "by kind", r.by_kind);
  append_html_problems(out, r);
  out += "</div>\n<h2>Plots</h2>\n";
  append_percentile_svg(out, r.latency);
  append_timeline_svg(out, r.timeline);
  append_html_samples(out, r);
  out += "</body>\n</html>\n";
  return out;
}

}  // namespace authswitch::netsim
