#include "simulators/stats/report.h"

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace authswitch::netsim {
namespace {

// Latencies chosen at the top of their histogram buckets, so percentiles come back exact:
// 900 x 200703 ns, 95 x 411647 ns, 4 x 700415 ns and one 2 ms outlier.
constexpr std::uint64_t kFastNs = 200'703;    // 196 * 1024 - 1
constexpr std::uint64_t kSlowNs = 411'647;    // 201 * 2048 - 1
constexpr std::uint64_t kSlowerNs = 700'415;  // 171 * 4096 - 1
constexpr std::uint64_t kMaxNs = 2'000'000;

// A masked sample as netsim writes it; the report must carry it verbatim.
constexpr std::string_view kSample = "stan 000123 pan 999900******2222 expected 00 got 51";

RunReport sample_report() {
  RunReport r;
  r.title = "netsim load";
  r.mode = "open-loop";
  r.target = "127.0.0.1:8583";
  r.dialect = "visa-like";
  r.framing = "2-byte-length";
  r.connections = 4;
  r.offered_rate = 2000;
  r.concurrency = 256;
  r.duration_s = 0.5;
  r.sent = 1002;
  r.matched = 1000;
  r.timeouts = 1;
  r.late = 2;
  r.duplicates = 3;
  r.unmatched = 4;
  r.mismatches = 5;
  r.errors = 6;
  r.by_code = {{"00", 990}, {"51", 10}};
  r.by_kind = {{"purchase", 800}, {"refund", 200}};
  r.mismatch_samples = {std::string(kSample), "second sample"};
  r.latency.record_n(kFastNs, 900);
  r.latency.record_n(kSlowNs, 95);
  r.latency.record_n(kSlowerNs, 4);
  r.latency.record(kMaxNs);
  r.timeline = {{0.25, 501, 499, kFastNs, kSlowNs, kSlowerNs},
                {0.5, 501, 501, kFastNs, kSlowerNs, kMaxNs}};
  return r;
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::size_t occurrences(std::string_view haystack, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t at = haystack.find(needle); at != std::string_view::npos;
       at = haystack.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

TEST(RunReport, TheSampleLatenciesAreExact) {
  const RunReport r = sample_report();
  EXPECT_EQ(r.latency.percentile(0.5), kFastNs);
  EXPECT_EQ(r.latency.percentile(0.9), kFastNs);
  EXPECT_EQ(r.latency.percentile(0.99), kSlowNs);
  EXPECT_EQ(r.latency.percentile(0.999), kSlowerNs);
  EXPECT_EQ(r.latency.max(), kMaxNs);
}

TEST(RunReport, ThroughputIsMatchedPerSecond) {
  RunReport r = sample_report();
  EXPECT_DOUBLE_EQ(r.throughput(), 2000.0);
  r.duration_s = 0;
  EXPECT_EQ(r.throughput(), 0.0);
  r.duration_s = -1;
  EXPECT_EQ(r.throughput(), 0.0);
}

TEST(RunReport, CleanMeansNoProblemOfAnyKind) {
  RunReport r;
  r.sent = 10;
  r.matched = 10;
  EXPECT_TRUE(r.clean());
  const std::array<std::uint64_t RunReport::*, 6> problems = {
      &RunReport::timeouts,  &RunReport::late,       &RunReport::duplicates,
      &RunReport::unmatched, &RunReport::mismatches, &RunReport::errors};
  for (const auto problem : problems) {
    RunReport dirty = r;
    dirty.*problem = 1;
    EXPECT_FALSE(dirty.clean());
  }
  // Counts by code do not matter: a decline is a business outcome, not a problem.
  r.by_code["51"] = 3;
  EXPECT_TRUE(r.clean());
}

TEST(RenderText, HoldsTheNumbers) {
  const RunReport r = sample_report();
  const std::string text = render_text(r);
  for (const std::string_view part : {"netsim load",
                                      "open-loop",
                                      "127.0.0.1:8583",
                                      "visa-like",
                                      "2-byte-length",
                                      "connections 4",
                                      "offered 2000.0/s",
                                      "concurrency 256",
                                      "sent 1002",
                                      "matched 1000",
                                      "throughput 2000.0/s",
                                      "p50 201 us",
                                      "p90 201 us",
                                      "p99 412 us",
                                      "p99.9 700 us",
                                      "max 2000 us",
                                      "min 201 us",
                                      "00  990",
                                      "51  10",
                                      "purchase  800",
                                      "refund  200",
                                      "timeouts 1",
                                      "late 2",
                                      "duplicates 3",
                                      "unmatched 4",
                                      "mismatches 5",
                                      "errors 6",
                                      "second sample"}) {
    EXPECT_TRUE(contains(text, part)) << part << "\n" << text;
  }
  EXPECT_TRUE(contains(text, kSample));
}

TEST(RenderText, CleanEmptyRun) {
  RunReport r;
  r.title = "netsim scenarios";
  const std::string text = render_text(r);
  EXPECT_TRUE(contains(text, "netsim scenarios"));
  EXPECT_TRUE(contains(text, "none recorded"));
  EXPECT_TRUE(contains(text, "problems: none"));
}

TEST(RenderJson, ParsesBackWithEveryField) {
  const RunReport r = sample_report();
  const nlohmann::json j = nlohmann::json::parse(render_json(r));
  EXPECT_EQ(j.at("title"), "netsim load");
  EXPECT_EQ(j.at("mode"), "open-loop");
  EXPECT_EQ(j.at("target"), "127.0.0.1:8583");
  EXPECT_EQ(j.at("dialect"), "visa-like");
  EXPECT_EQ(j.at("framing"), "2-byte-length");
  EXPECT_EQ(j.at("connections"), 4);
  EXPECT_EQ(j.at("offered_rate"), 2000.0);
  EXPECT_EQ(j.at("concurrency"), 256);
  EXPECT_EQ(j.at("duration_s"), 0.5);
  EXPECT_EQ(j.at("sent"), 1002);
  EXPECT_EQ(j.at("matched"), 1000);
  EXPECT_EQ(j.at("timeouts"), 1);
  EXPECT_EQ(j.at("late"), 2);
  EXPECT_EQ(j.at("duplicates"), 3);
  EXPECT_EQ(j.at("unmatched"), 4);
  EXPECT_EQ(j.at("mismatches"), 5);
  EXPECT_EQ(j.at("errors"), 6);
  EXPECT_EQ(j.at("by_code"), (nlohmann::json{{"00", 990}, {"51", 10}}));
  EXPECT_EQ(j.at("by_kind"), (nlohmann::json{{"purchase", 800}, {"refund", 200}}));
  EXPECT_EQ(j.at("mismatch_samples"), (nlohmann::json{kSample, "second sample"}));
  EXPECT_EQ(j.at("throughput_per_s"), 2000.0);
  EXPECT_EQ(j.at("clean"), false);
  EXPECT_EQ(j.size(), 24U);
}

TEST(RenderJson, LatencyInMicroseconds) {
  const RunReport r = sample_report();
  const nlohmann::json latency = nlohmann::json::parse(render_json(r)).at("latency");
  EXPECT_EQ(latency.at("count"), 1000);
  EXPECT_DOUBLE_EQ(latency.at("min_us").get<double>(), 200.703);
  EXPECT_DOUBLE_EQ(latency.at("p50_us").get<double>(), 200.703);
  EXPECT_DOUBLE_EQ(latency.at("p90_us").get<double>(), 200.703);
  EXPECT_DOUBLE_EQ(latency.at("p99_us").get<double>(), 411.647);
  EXPECT_DOUBLE_EQ(latency.at("p999_us").get<double>(), 700.415);
  EXPECT_DOUBLE_EQ(latency.at("max_us").get<double>(), 2000.0);
  const double mean_ns = (900.0 * kFastNs + 95.0 * kSlowNs + 4.0 * kSlowerNs + kMaxNs) / 1000;
  EXPECT_NEAR(latency.at("mean_us").get<double>(), mean_ns / 1000, 0.0005);
  // Three decimals: whole nanoseconds.
  const double mean_us_1000 = latency.at("mean_us").get<double>() * 1000;
  EXPECT_NEAR(mean_us_1000, std::round(mean_us_1000), 1e-6);
  const nlohmann::json& curve = latency.at("curve");
  const auto expected = r.latency.percentile_curve();
  ASSERT_EQ(curve.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(curve[i].at("q").get<double>(), expected[i].quantile);
    EXPECT_DOUBLE_EQ(curve[i].at("us").get<double>(),
                     static_cast<double>(expected[i].value_ns) / 1000);
  }
  EXPECT_DOUBLE_EQ(curve.back().at("us").get<double>(), 2000.0);
}

TEST(RenderJson, Timeline) {
  const nlohmann::json timeline =
      nlohmann::json::parse(render_json(sample_report())).at("timeline");
  ASSERT_EQ(timeline.size(), 2U);
  EXPECT_EQ(timeline[0].at("t_s"), 0.25);
  EXPECT_EQ(timeline[0].at("sent"), 501);
  EXPECT_EQ(timeline[0].at("received"), 499);
  EXPECT_EQ(timeline[0].at("p50_ns"), kFastNs);
  EXPECT_EQ(timeline[0].at("p99_ns"), kSlowNs);
  EXPECT_EQ(timeline[0].at("max_ns"), kSlowerNs);
  EXPECT_EQ(timeline[1].at("t_s"), 0.5);
  EXPECT_EQ(timeline[1].at("max_ns"), kMaxNs);
}

TEST(RenderJson, EmptyCleanRun) {
  const nlohmann::json j = nlohmann::json::parse(render_json(RunReport{}));
  EXPECT_EQ(j.at("clean"), true);
  EXPECT_EQ(j.at("throughput_per_s"), 0.0);
  EXPECT_EQ(j.at("latency").at("count"), 0);
  EXPECT_EQ(j.at("latency").at("max_us"), 0.0);
  EXPECT_TRUE(j.at("latency").at("curve").empty());
  EXPECT_TRUE(j.at("timeline").empty());
  EXPECT_TRUE(j.at("by_code").is_object());
  EXPECT_TRUE(j.at("mismatch_samples").is_array());
}

TEST(RenderJson, InvalidUtf8IsReplacedNotThrown) {
  RunReport r;
  r.mismatch_samples = {std::string("bad \xff byte")};
  std::string json;
  ASSERT_NO_THROW(json = render_json(r));
  const nlohmann::json j = nlohmann::json::parse(json);
  EXPECT_EQ(j.at("mismatch_samples").size(), 1U);
}

TEST(RenderHtml, SelfContainedWithTwoPlots) {
  const RunReport r = sample_report();
  const std::string html = render_html(r);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0U);
  EXPECT_TRUE(contains(html, "</html>"));
  EXPECT_EQ(occurrences(html, "<svg"), 2U);
  EXPECT_EQ(occurrences(html, "</svg>"), 2U);
  EXPECT_EQ(occurrences(html, "<table"), occurrences(html, "</table>"));
  EXPECT_FALSE(contains(html, "http://"));
  EXPECT_FALSE(contains(html, "https://"));
  EXPECT_FALSE(contains(html, "<script"));
  EXPECT_FALSE(contains(html, "<link"));
  EXPECT_FALSE(contains(html, "@import"));
  for (const std::string_view tick : {">50%<", ">90%<", ">99%<", ">99.9%<", ">99.99%<"}) {
    EXPECT_TRUE(contains(html, tick)) << tick;
  }
  EXPECT_TRUE(contains(html, "percentile"));
  EXPECT_TRUE(contains(html, "latency (us)"));
  EXPECT_TRUE(contains(html, "throughput"));
  EXPECT_TRUE(contains(html, "<polyline"));
  EXPECT_GE(occurrences(html, "<path"), 4U);  // p50, p99, max and throughput
  EXPECT_TRUE(contains(html, "412"));         // p99 in the summary table
  EXPECT_TRUE(contains(html, "127.0.0.1:8583"));
}

TEST(RenderHtml, EscapesEveryTextFromTheReport) {
  RunReport r = sample_report();
  r.title = "<script>alert(1)</script>";
  r.mode = "<b>mode</b>";
  r.target = "a&b";
  r.by_code["<i>"] = 1;
  r.by_kind["\"quoted\""] = 1;
  r.mismatch_samples.emplace_back("<img src=x onerror=alert(2)>");
  const std::string html = render_html(r);
  EXPECT_FALSE(contains(html, "<script"));
  EXPECT_FALSE(contains(html, "<b>mode"));
  EXPECT_FALSE(contains(html, "<i>"));
  EXPECT_FALSE(contains(html, "<img"));
  EXPECT_FALSE(contains(html, "\"quoted\""));
  EXPECT_TRUE(contains(html, "&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_TRUE(contains(html, "a&amp;b"));
  EXPECT_TRUE(contains(html, "&lt;img src=x onerror=alert(2)&gt;"));
  EXPECT_TRUE(contains(html, "&quot;quoted&quot;"));
}

TEST(RenderHtml, EmptyRunStillHasBothPlots) {
  const std::string html = render_html(RunReport{});
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0U);
  EXPECT_EQ(occurrences(html, "<svg"), 2U);
  EXPECT_TRUE(contains(html, "no latency recorded"));
  EXPECT_FALSE(contains(html, "nan"));
  EXPECT_FALSE(contains(html, "inf"));
}

TEST(RenderHtml, LatencyLinesBreakOverSecondsWithoutResponses) {
  RunReport r = sample_report();
  r.timeline = {{1, 10, 10, 1'000, 2'000, 3'000},
                {2, 10, 0, 0, 0, 0},
                {3, 10, 10, 1'000, 2'000, 3'000},
                {4, 10, 10, 1'000, 2'000, 3'000}};
  const std::string html = render_html(r);
  const std::size_t p50 = html.find(R"(class="p50" d=")");
  ASSERT_NE(p50, std::string::npos);
  const std::string_view path(html.data() + p50, html.find('"', p50 + 16) - p50);
  EXPECT_EQ(occurrences(path, "M"), 2U) << path;
  EXPECT_EQ(occurrences(path, "L"), 1U) << path;
  // The throughput line goes through every second, zeros included.
  const std::size_t rate = html.find(R"(class="rate" d=")");
  ASSERT_NE(rate, std::string::npos);
  const std::string_view rate_path(html.data() + rate, html.find('"', rate + 17) - rate);
  EXPECT_EQ(occurrences(rate_path, "L"), 3U) << rate_path;
}

// Masking is the caller's job: a sample comes out exactly as it went in, even one that still
// holds a full 16-digit number (a made-up one, not a card's).
TEST(Reports, NeverAlterAMismatchSample) {
  RunReport r;
  const std::string raw = "stan 000042 pan 9999000011112222 expected 00 got 05";
  r.mismatches = 2;
  r.mismatch_samples = {raw, std::string(kSample)};
  const std::vector<std::string> before = r.mismatch_samples;
  const std::string text = render_text(r);
  const std::string json = render_json(r);
  const std::string html = render_html(r);
  EXPECT_EQ(r.mismatch_samples, before);
  EXPECT_TRUE(contains(text, raw));
  EXPECT_TRUE(contains(text, kSample));
  EXPECT_EQ(nlohmann::json::parse(json).at("mismatch_samples"), (nlohmann::json{raw, kSample}));
  EXPECT_TRUE(contains(html, raw));  // nothing in it to escape
  EXPECT_TRUE(contains(html, kSample));
}

TEST(Reports, KeepAtMostTwentySamples) {
  RunReport r;
  r.mismatches = 30;
  for (int i = 0; i < 30; ++i) {
    r.mismatch_samples.push_back("sample #" + std::to_string(i) + ";");
  }
  const std::string text = render_text(r);
  const std::string html = render_html(r);
  EXPECT_TRUE(contains(text, "sample #19;"));
  EXPECT_FALSE(contains(text, "sample #20;"));
  EXPECT_TRUE(contains(html, "sample #19;"));
  EXPECT_FALSE(contains(html, "sample #20;"));
  EXPECT_EQ(nlohmann::json::parse(render_json(r)).at("mismatch_samples").size(), 20U);
}

}  // namespace
}  // namespace authswitch::netsim
