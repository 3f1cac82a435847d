// Links (simulators/netsim/link.h) talking to each other over loopback: one LinkSet listens
// (netsim waiting for a switch that dials out), the other connects. Both sign on and answer
// each other's 0800; idle links echo; other messages reach the handler; framing with a fixed
// header; and the same over TLS with a certificate made for the test.
#include "simulators/netsim/link.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include "iso8583/dialect_loader.h"
#include "simulators/netsim/scenario.h"

namespace authswitch::netsim {
namespace {

namespace fs = std::filesystem;

class Recorder final : public Link::Handler {
 public:
  void on_ready(Link&) override { ++ready; }
  void on_message(Link&, const iso8583::MessageView& msg) override {
    mtis.push_back(msg.mti());
    std::array<char, 16> buf{};
    stans.emplace_back(iso8583::text_value(msg.field(11), buf));
  }
  void on_bad_message(Link&, std::string_view why) override { bad.emplace_back(why); }
  void on_closed(Link&, std::string_view why) override { closed.emplace_back(why); }

  int ready = 0;
  std::vector<std::uint16_t> mtis;
  std::vector<std::string> stans;
  std::vector<std::string> bad;
  std::vector<std::string> closed;
};

LinkOptions link_options(const char* framing = "len2-binary") {
  LinkOptions o;
  o.dialect = &iso8583::builtin_dialect("iso87-ascii");
  o.framing = *iso8583::parse_framing(framing);
  return o;
}

// Runs `io` until `done()` or two seconds pass.
template <typename F>
bool run_until(boost::asio::io_context& io, F done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done() && std::chrono::steady_clock::now() < until) {
    io.run_one_for(std::chrono::milliseconds(10));
  }
  return done();
}

std::vector<std::byte> purchase(const iso8583::Dialect& d, const char* stan) {
  iso8583::MessageBuilder b(d);
  b.reset(100);
  b.set_text(2, "4999001040795570");
  b.set_text(3, "000000");
  b.set_text(4, "000000001000");
  b.set_text(7, "1203120000");
  b.set_text(11, stan);
  b.set_text(49, "840");
  std::vector<std::byte> out(1024);
  const auto n = b.encode(out);
  EXPECT_TRUE(n);
  out.resize(n ? *n : 0);
  return out;
}

struct Pair {
  boost::asio::io_context io;
  Recorder server_events, client_events;
  std::unique_ptr<LinkSet> server, client;

  explicit Pair(const LinkOptions& lo, const TlsOptions& server_tls = {},
                const TlsOptions& client_tls = {}, std::uint32_t connections = 2) {
    LinkSetOptions s;
    s.listen = "127.0.0.1:0";
    s.connections = connections;
    s.link = lo;
    s.tls = server_tls;
    server = std::make_unique<LinkSet>(io, s, server_events);
    server->start();
    LinkSetOptions c;
    c.target = "127.0.0.1:" + std::to_string(server->listening_port());
    c.connections = connections;
    c.link = lo;
    c.tls = client_tls;
    client = std::make_unique<LinkSet>(io, c, client_events);
    client->start();
  }
};

TEST(Links, ListenAndConnectSignOnBothWays) {
  Pair p(link_options());
  ASSERT_TRUE(run_until(p.io, [&] { return p.server_events.ready + p.client_events.ready == 4; }))
      << p.server_events.ready << " " << p.client_events.ready;
  EXPECT_TRUE(p.client->link(0).ready());
  EXPECT_TRUE(p.server->link(1).ready());
  // Each side answered the other's sign-on itself.
  EXPECT_EQ(p.client->link(0).stats().network_answered, 1U);
  EXPECT_EQ(p.server->link(0).stats().network_answered, 1U);
  EXPECT_TRUE(p.server_events.mtis.empty());  // network management never reaches the handler

  const auto msg = purchase(*link_options().dialect, "000042");
  ASSERT_TRUE(p.client->link(1).send(msg));
  ASSERT_TRUE(run_until(p.io, [&] { return !p.server_events.mtis.empty(); }));
  EXPECT_EQ(p.server_events.mtis[0], 100);
  EXPECT_EQ(p.server_events.stans[0], "000042");

  p.client->close_all();
  ASSERT_TRUE(run_until(p.io, [&] { return p.server_events.closed.size() == 2; }));
  EXPECT_EQ(p.server_events.closed[0], "closed by the switch");
}

TEST(Links, IdleLinksEcho) {
  LinkOptions lo = link_options();
  lo.echo_interval = std::chrono::milliseconds(50);
  Pair p(lo, {}, {}, 1);
  ASSERT_TRUE(run_until(p.io, [&] { return p.client->link(0).stats().echoes_answered >= 2; }));
  EXPECT_GE(p.server->link(0).stats().network_answered, 3U);  // sign-on and the echoes
  EXPECT_TRUE(p.client_events.bad.empty());
}

TEST(Links, WithoutSignOnTheLinkIsReadyAtOnce) {
  LinkOptions lo = link_options();
  lo.sign_on = false;
  Pair p(lo, {}, {}, 1);
  ASSERT_TRUE(run_until(p.io, [&] { return p.client_events.ready == 1; }));
  EXPECT_EQ(p.server->link(0).stats().network_answered, 0U);
}

TEST(Links, FixedFrameHeader) {
  Pair p(link_options("len4-ascii+header=5"), {}, {}, 1);
  ASSERT_TRUE(run_until(p.io, [&] { return p.client_events.ready == 1; }));
  ASSERT_TRUE(p.client->link(0).send(purchase(*link_options().dialect, "000007")));
  ASSERT_TRUE(run_until(p.io, [&] { return !p.server_events.mtis.empty(); }));
  EXPECT_EQ(p.server_events.stans[0], "000007");
}

TEST(Links, BadAddressesAndOptionsThrow) {
  boost::asio::io_context io;
  Recorder r;
  LinkSetOptions o;
  o.link = link_options();
  EXPECT_THROW(LinkSet(io, o, r), std::runtime_error);  // neither target nor listen
  o.target = "127.0.0.1";
  LinkSet no_port(io, o, r);
  EXPECT_THROW(no_port.start(), std::runtime_error);
  o.target.clear();
  o.listen = "127.0.0.1:0";
  o.tls.ca = "/nonexistent/ca.pem";
  EXPECT_THROW(LinkSet(io, o, r), std::runtime_error);
}

TEST(Links, ConnectionRefusedIsReported) {
  boost::asio::io_context io;
  Recorder r;
  LinkSetOptions o;
  o.link = link_options();
  o.target = "127.0.0.1:1";
  LinkSet links(io, o, r);
  links.start();
  const std::string why = links.wait_ready(std::chrono::seconds(5));
  EXPECT_NE(why.find("connection 0: connect:"), std::string::npos) << why;
}

TEST(Links, TlsWithACertificateForTheTest) {
  const fs::path dir = fs::temp_directory_path() / ("netsim_tls_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string cert = (dir / "cert.pem").string();
  const std::string key = (dir / "key.pem").string();
  std::string out;
  const int rc = run_capture(
      {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
       "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"},
      out);
  if (rc != 0) {
    GTEST_SKIP() << "openssl could not make a certificate";
  }
  TlsOptions server;
  server.cert = cert;
  server.key = key;
  TlsOptions client;
  client.ca = cert;
  client.server_name = "localhost";
  {
    Pair p(link_options(), server, client, 1);
    ASSERT_TRUE(run_until(p.io, [&] { return p.client_events.ready + p.server_events.ready == 2; }))
        << (p.client_events.closed.empty() ? "" : p.client_events.closed[0]);
    ASSERT_TRUE(p.client->link(0).send(purchase(*link_options().dialect, "000009")));
    ASSERT_TRUE(run_until(p.io, [&] { return !p.server_events.mtis.empty(); }));
    EXPECT_EQ(p.server_events.stans[0], "000009");
  }
  {
    // A name the certificate does not carry fails the handshake.
    client.server_name = "switch.example";
    Pair p(link_options(), server, client, 1);
    ASSERT_TRUE(run_until(p.io, [&] { return !p.client_events.closed.empty(); }));
    EXPECT_NE(p.client_events.closed[0].find("TLS handshake"), std::string::npos)
        << p.client_events.closed[0];
    EXPECT_EQ(p.client_events.ready, 0);
  }
  std::error_code ignored;
  fs::remove_all(dir, ignored);
}

}  // namespace
}  // namespace authswitch::netsim
