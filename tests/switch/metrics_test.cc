// Metrics (switch/metrics.h) and HttpEndpoint (switch/http_endpoint.h): counters updated from
// two shard threads and summed by render(), the exact text format of a few series, histograms
// (cumulative buckets, _count, _sum in seconds), codes outside the table, and the HTTP endpoint
// on a loopback ephemeral port driven by a plain blocking POSIX client.
#include "switch/metrics.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "switch/http_endpoint.h"

namespace authswitch::switching {
namespace {

using namespace std::chrono_literals;

bool has_line(const std::string& text, std::string_view line) {
  return text.find("\n" + std::string(line) + "\n") != std::string::npos ||
         text.starts_with(std::string(line) + "\n");
}

TEST(MetricsTest, TwoShardThreadsSumInRender) {
  Metrics m(2, {"acq", "iss"});
  constexpr int kPerThread = 20'000;
  const auto work = [&m](std::size_t shard) {
    ShardMetrics& s = m.shard(shard);
    for (int i = 0; i < kPerThread; ++i) {
      s.request(0, MtiClass::kAuthorization);
      s.response(0, MtiClass::kAuthorization, "00");
      s.request(1, MtiClass::kFinancial);
      s.redis_round_trip();
    }
    s.response(1, MtiClass::kFinancial, "51");
  };
  std::thread a(work, 0);
  std::thread b(work, 1);
  // A scrape while they count must not trip anything (values are whole, maybe not final).
  const std::string during = m.render();
  EXPECT_FALSE(during.empty());
  a.join();
  b.join();

  const std::string text = m.render();
  EXPECT_TRUE(has_line(text, R"(authswitch_requests_total{network="acq",mti="0100"} 40000)"));
  EXPECT_TRUE(has_line(text, R"(authswitch_requests_total{network="iss",mti="0200"} 40000)"));
  EXPECT_TRUE(has_line(text, R"(authswitch_requests_total{network="acq",mti="0200"} 0)"));
  EXPECT_TRUE(
      has_line(text, R"(authswitch_responses_total{network="acq",mti="0100",code="00"} 40000)"));
  EXPECT_TRUE(
      has_line(text, R"(authswitch_responses_total{network="iss",mti="0200",code="51"} 2)"));
  EXPECT_TRUE(has_line(text, "authswitch_redis_round_trips_total 40000"));
  // Zero response series are left out.
  EXPECT_EQ(text.find(R"(code="05")"), std::string::npos);
}

TEST(MetricsTest, HelpTypeAndLabelFormat) {
  Metrics m(2, {"acq"}, {"audit"});
  m.shard(0).connections(0, 1);
  m.shard(0).connections(0, 1);
  m.shard(1).connections(0, -1);  // closed on another shard than it opened: the sum is right
  m.shard(0).queue_depth("audit", 3);
  m.shard(1).queue_depth(std::size_t{0}, 4);
  m.shard(0).queue_depth("audit", 5);  // replaces 3
  m.shard(1).redis_error();
  const std::string text = m.render();
  EXPECT_TRUE(text.starts_with("# HELP authswitch_requests_total "));
  for (const auto* line : {
           "# TYPE authswitch_requests_total counter",
           "# TYPE authswitch_responses_total counter",
           "# TYPE authswitch_request_duration_seconds histogram",
           "# TYPE authswitch_redis_batch_size histogram",
           "# TYPE authswitch_redis_round_trips_total counter",
           "# TYPE authswitch_redis_errors_total counter",
           "# TYPE authswitch_connections gauge",
           "# TYPE authswitch_queue_depth gauge",
           R"(authswitch_connections{network="acq"} 1)",
           R"(authswitch_queue_depth{queue="audit"} 9)",
           "authswitch_redis_errors_total 1",
           "authswitch_redis_round_trips_total 0",
       }) {
    EXPECT_TRUE(has_line(text, line)) << line;
  }
  EXPECT_TRUE(text.ends_with("\n"));
  // Every family has its HELP line right before its TYPE line.
  for (const auto* family : {"requests_total", "responses_total", "request_duration_seconds",
                             "redis_batch_size", "connections", "queue_depth"}) {
    const std::string help = std::string("# HELP authswitch_") + family + " ";
    const auto at = text.find(help);
    ASSERT_NE(at, std::string::npos) << family;
    const auto next = text.find('\n', at);
    EXPECT_TRUE(std::string_view(text).substr(next + 1).starts_with(
        std::string("# TYPE authswitch_") + family + " "))
        << family;
  }
}

TEST(MetricsTest, EventTotalsAreSummedOverShardsAndReplacedNotAdded) {
  Metrics m(2, {"acq"}, {}, {"echoes_sent", "closed_timeout"});
  m.shard(0).event_total(0, 3);
  m.shard(0).event_total(0, 5);  // a running total: replaces 3
  m.shard(1).event_total(0, 7);
  const std::string text = m.render();
  EXPECT_TRUE(has_line(text, "# TYPE authswitch_events_total counter"));
  EXPECT_TRUE(has_line(text, R"(authswitch_events_total{event="echoes_sent"} 12)")) << text;
  EXPECT_TRUE(has_line(text, R"(authswitch_events_total{event="closed_timeout"} 0)")) << text;
  EXPECT_THROW(Metrics(1, {"acq"}, {}, {"x", "x"}), std::invalid_argument);
  // No event names: no family at all.
  EXPECT_EQ(Metrics(1, {"acq"}).render().find("events_total"), std::string::npos);
}

TEST(MetricsTest, LatencyHistogramIsCumulativeWithSumInSeconds) {
  Metrics m(2, {"acq"});
  m.shard(0).latency(0, 40us);
  m.shard(1).latency(0, 50us);  // on the bound: le is inclusive
  m.shard(0).latency(0, 50001ns);
  m.shard(1).latency(0, 1ms);
  m.shard(0).latency(0, 20s);   // beyond the last bound: +Inf only
  m.shard(0).latency(0, -5us);  // clamped to 0
  const std::string text = m.render();
  const std::string p = R"(authswitch_request_duration_seconds_bucket{network="acq",le=")";
  EXPECT_TRUE(has_line(text, p + R"(0.00005"} 3)"));
  EXPECT_TRUE(has_line(text, p + R"(0.000075"} 4)"));
  EXPECT_TRUE(has_line(text, p + R"(0.00075"} 4)"));
  EXPECT_TRUE(has_line(text, p + R"(0.001"} 5)"));
  EXPECT_TRUE(has_line(text, p + R"(7.5"} 5)"));
  EXPECT_TRUE(has_line(text, p + R"(10"} 5)"));
  EXPECT_TRUE(has_line(text, p + R"(+Inf"} 6)"));
  EXPECT_TRUE(has_line(text, R"(authswitch_request_duration_seconds_count{network="acq"} 6)"));
  // 40 + 50 + 50 (50.001 rounded) + 1000 + 20'000'000 + 0 us.
  EXPECT_TRUE(has_line(text, R"(authswitch_request_duration_seconds_sum{network="acq"} 20.00114)"));

  // Every bucket line: one per bound plus +Inf, never decreasing.
  std::size_t lines = 0;
  std::uint64_t last = 0;
  for (std::size_t at = text.find(p); at != std::string::npos; at = text.find(p, at + 1)) {
    const auto value_at = text.find("} ", at) + 2;
    const std::uint64_t v = std::stoull(text.substr(value_at, text.find('\n', at) - value_at));
    EXPECT_GE(v, last);
    last = v;
    ++lines;
  }
  EXPECT_EQ(lines, kLatencyBoundsUs.size() + 1);
}

TEST(MetricsTest, BatchHistogram) {
  Metrics m(1, {"acq"});
  m.shard(0).batch(1);
  m.shard(0).batch(3);
  m.shard(0).batch(300);
  const std::string text = m.render();
  EXPECT_TRUE(has_line(text, R"(authswitch_redis_batch_size_bucket{le="1"} 1)"));
  EXPECT_TRUE(has_line(text, R"(authswitch_redis_batch_size_bucket{le="2"} 1)"));
  EXPECT_TRUE(has_line(text, R"(authswitch_redis_batch_size_bucket{le="4"} 2)"));
  EXPECT_TRUE(has_line(text, R"(authswitch_redis_batch_size_bucket{le="256"} 2)"));
  EXPECT_TRUE(has_line(text, R"(authswitch_redis_batch_size_bucket{le="+Inf"} 3)"));
  EXPECT_TRUE(has_line(text, "authswitch_redis_batch_size_sum 304"));
  EXPECT_TRUE(has_line(text, "authswitch_redis_batch_size_count 3"));
}

TEST(MetricsTest, CodeOutsideTheTableCountsAsOther) {
  Metrics m(1, {"acq"});
  m.shard(0).response(0, MtiClass::kReversal, "99");
  m.shard(0).response(0, MtiClass::kReversal, "A1");
  m.shard(0).response(0, MtiClass::kReversal, "");
  m.shard(0).response(0, MtiClass::kReversal, "000");
  m.shard(0).response(0, MtiClass::kReversal, "96");
  const std::string text = m.render();
  EXPECT_TRUE(
      has_line(text, R"(authswitch_responses_total{network="acq",mti="0400",code="other"} 4)"));
  EXPECT_TRUE(
      has_line(text, R"(authswitch_responses_total{network="acq",mti="0400",code="96"} 1)"));
  EXPECT_EQ(response_code_index("00"), 0U);
  EXPECT_EQ(response_code_index("96"), kResponseCodes.size() - 1);
  EXPECT_EQ(response_code_index("01"), kResponseCodeOther);
}

TEST(MetricsTest, ClassifiesMtis) {
  EXPECT_EQ(classify_mti("0100"), MtiClass::kAuthorization);
  EXPECT_EQ(classify_mti("0101"), MtiClass::kAuthorization);
  EXPECT_EQ(classify_mti("0201"), MtiClass::kFinancial);
  EXPECT_EQ(classify_mti("0121"), MtiClass::kAuthorizationAdvice);
  EXPECT_EQ(classify_mti("0220"), MtiClass::kFinancialAdvice);
  EXPECT_EQ(classify_mti("0401"), MtiClass::kReversal);
  EXPECT_EQ(classify_mti("0421"), MtiClass::kReversalAdvice);
  EXPECT_EQ(classify_mti("0800"), MtiClass::kNetwork);
  EXPECT_EQ(classify_mti("0110"), MtiClass::kOther);
  EXPECT_EQ(classify_mti("0102"), MtiClass::kOther);
  EXPECT_EQ(classify_mti("010"), MtiClass::kOther);
  EXPECT_EQ(mti_label(MtiClass::kReversalAdvice), "0420");
  EXPECT_EQ(mti_label(MtiClass::kOther), "other");
}

TEST(MetricsTest, RejectsBadConstruction) {
  EXPECT_THROW(Metrics(0, {"acq"}), std::invalid_argument);
  EXPECT_THROW(Metrics(1, {"acq", "acq"}), std::invalid_argument);
  EXPECT_THROW(Metrics(1, {""}), std::invalid_argument);
  EXPECT_THROW(Metrics(1, {"acq"}, {"q", "q"}), std::invalid_argument);
  const Metrics m(1, {"acq", "iss"}, {"audit"});
  EXPECT_EQ(m.network_index("iss"), 1U);
  EXPECT_FALSE(m.network_index("nope").has_value());
  EXPECT_EQ(m.queue_index("audit"), 0U);
}

// A blocking loopback client: connects, sends, reads until the server closes (or 2 s pass).
class Client {
 public:
  explicit Client(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    EXPECT_GE(fd_, 0);
    timeval tv{};
    tv.tv_sec = 2;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
    EXPECT_TRUE(connected_);
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Client(Client&&) = delete;
  Client& operator=(Client&&) = delete;

  // False when the server closed or reset the connection before everything was sent.
  bool send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Everything until EOF, a reset or the receive timeout.
  std::string read_all() {
    std::string out;
    std::array<char, 4096> buf{};
    for (;;) {
      const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
      if (n <= 0) {
        return out;
      }
      out.append(buf.data(), static_cast<std::size_t>(n));
    }
  }

 private:
  int fd_;
  bool connected_ = false;
};

std::string http_exchange(std::uint16_t port, std::string_view request) {
  Client c(port);
  c.send(request);
  return c.read_all();
}

std::string get(std::uint16_t port, std::string_view path) {
  return http_exchange(port, "GET " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
}

std::string body_of(const std::string& response) {
  const auto at = response.find("\r\n\r\n");
  return at == std::string::npos ? std::string() : response.substr(at + 4);
}

class HttpEndpointTest : public ::testing::Test {
 protected:
  HttpEndpointTest()
      : metrics_(2, {"acq"}),
        endpoint_(
            HttpEndpoint::Options{.read_timeout = 300ms}, [this] { return metrics_.render(); },
            [this] { return healthy_.load(std::memory_order_relaxed); }) {
    endpoint_.start();
  }

  Metrics metrics_;
  std::atomic<bool> healthy_{true};
  HttpEndpoint endpoint_;
};

TEST_F(HttpEndpointTest, ServesMetrics) {
  metrics_.shard(1).request(0, MtiClass::kNetwork);
  ASSERT_NE(endpoint_.port(), 0);
  const std::string r = get(endpoint_.port(), "/metrics");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 200 OK\r\n")) << r.substr(0, 80);
  EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            std::string::npos);
  EXPECT_NE(r.find("Connection: close\r\n"), std::string::npos);
  EXPECT_EQ(body_of(r), metrics_.render());
  EXPECT_TRUE(has_line(body_of(r), R"(authswitch_requests_total{network="acq",mti="0800"} 1)"));
}

TEST_F(HttpEndpointTest, HealthzFollowsTheCallback) {
  std::string r = get(endpoint_.port(), "/healthz");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 200 OK\r\n")) << r.substr(0, 80);
  EXPECT_EQ(body_of(r), "ok\n");
  healthy_.store(false, std::memory_order_relaxed);
  r = get(endpoint_.port(), "/healthz");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n")) << r.substr(0, 80);
  EXPECT_EQ(body_of(r), "unavailable\n");
}

TEST_F(HttpEndpointTest, UnknownPathIs404AndPostIs405) {
  EXPECT_TRUE(get(endpoint_.port(), "/nope").starts_with("HTTP/1.1 404 Not Found\r\n"));
  const std::string r = http_exchange(
      endpoint_.port(), "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n")) << r.substr(0, 80);
  EXPECT_NE(r.find("Allow: GET\r\n"), std::string::npos);
}

TEST_F(HttpEndpointTest, OversizedRequestIsRefused) {
  Client c(endpoint_.port());
  const std::string big =
      "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(std::size_t{64} * 1024, 'a') +
      "\r\n\r\n";
  c.send(big);  // the server may close before it all went out
  const std::string r = c.read_all();
  // 413, unless the reset of the unread bytes overtook it: either way, refused.
  EXPECT_TRUE(r.empty() || r.starts_with("HTTP/1.1 413 Payload Too Large\r\n")) << r.substr(0, 80);
  EXPECT_EQ(r.find("200 OK"), std::string::npos);
  // And the endpoint still serves.
  EXPECT_TRUE(get(endpoint_.port(), "/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
}

TEST_F(HttpEndpointTest, SlowClientIsCutOffByTheReadTimeout) {
  Client c(endpoint_.port());
  c.send("GET /metr");
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(c.read_all(), "");  // closed by the server at 300 ms, before the 2 s receive timeout
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
}

TEST_F(HttpEndpointTest, StopWithAClientConnectedReturnsPromptly) {
  Client c(endpoint_.port());
  c.send("GET /met");
  std::this_thread::sleep_for(20ms);  // let the endpoint accept and start reading
  const auto start = std::chrono::steady_clock::now();
  endpoint_.stop();
  endpoint_.stop();  // idempotent
  EXPECT_LT(std::chrono::steady_clock::now() - start, 200ms);
  EXPECT_EQ(c.read_all(), "");  // closed without an answer
}

}  // namespace
}  // namespace authswitch::switching
