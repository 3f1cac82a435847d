// ISO 8583:1993 peers over real sockets (a network with dialect = "iso93-ebcdic"): every answer
// carries the 1993 action code in DE 39 (n3), network management is 1804/1814 with the DE 24
// function code (801 sign-on, 802 sign-off, 831 echo test) and DE 39 800 for "accepted", both
// for what the switch receives and for what it originates (its sign-on on a dial network, its
// idle echoes). The switch decides with its ISO 8583:1987 codes inside; what the wire carries
// is checked here byte for byte after decoding in the 1993 dialect.
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "iso8583/dialect_loader.h"
#include "iso8583/message.h"
#include "switch/config.h"
#include "switch/server.h"
#include "tests/switch/server_fixture.h"
#include "tests/switch/test_client.h"
#include "tests/switch/test_messages.h"

namespace authswitch::switching {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

const iso8583::Dialect& dialect93() { return iso8583::builtin_dialect("iso93-ebcdic"); }

// A 1993 request: MTI 1xxx, DE 12 YYMMDDhhmmss, DE 22 point-of-service data code an12, no
// DE 25 (a message reason code in 1993). `fn`: DE 24 (function code) when not empty.
struct Txn93 {
  std::uint16_t mti = 1100;
  std::string pan = kPanRich;
  std::string de3 = "000000";
  std::string amount = "000000000100";
  std::string stan = "000001";
  std::string de7 = "1124153000";
  std::string mcc = "5411";
  std::string fn;
};

std::vector<std::byte> encode93(const Txn93& t) {
  iso8583::MessageBuilder b(dialect93());
  b.reset(t.mti);
  const auto set = [&](int de, const std::string& v) {
    if (!v.empty()) {
      b.set_text(de, v);
    }
  };
  const bool network = t.mti / 100 % 10 == 8;
  if (!network) {
    set(2, t.pan);
    set(3, t.de3);
    set(4, t.amount);
  }
  set(7, t.de7);
  set(11, t.stan);
  if (!network) {
    b.set_text(12, "261124153000");
    b.set_text(14, "2812");
    set(18, t.mcc);
    b.set_text(22, "510101511001");
  }
  set(24, t.fn);
  b.set_text(32, kAcquirer);
  if (!network) {
    b.set_text(37, "123456789012");
    b.set_text(41, "TERM0001");
    b.set_text(42, "MERCHANT0000001");
    b.set_text(43, "ACME STORE 42          SPRINGFIELD    US");
    b.set_text(49, "840");
  }
  return encode_built(b);
}

Txn93 network93(const std::string& fn, const std::string& stan) {
  Txn93 t;
  t.mti = 1804;
  t.fn = fn;
  t.stan = stan;
  return t;
}

// 1814 answering the switch's 1804 with DE 11 `stan`.
std::vector<std::byte> answer1814(const std::string& stan, const std::string& fn,
                                  const std::string& de39) {
  iso8583::MessageBuilder b(dialect93());
  b.reset(1814);
  b.set_text(7, "1203120000");
  b.set_text(11, stan);
  b.set_text(24, fn);
  b.set_text(39, de39);
  return encode_built(b);
}

struct Msg93 {
  std::uint16_t mti = 0;
  std::string de4, de11, de24, de38, de39;
  bool de70 = false;
};

Msg93 read93(const std::vector<std::byte>& bytes) {
  Msg93 m;
  if (bytes.empty()) {
    ADD_FAILURE() << "no message";
    return m;
  }
  iso8583::MessageView v;
  if (!iso8583::decode(dialect93(), bytes, v)) {
    ADD_FAILURE() << "message does not decode in iso93-ebcdic";
    return m;
  }
  std::array<char, 64> scratch{};
  const auto text = [&](int de) {
    return v.has(de) ? std::string(iso8583::text_value(v.field(de), scratch)) : std::string();
  };
  m.mti = v.mti();
  m.de4 = text(4);
  m.de11 = text(11);
  m.de24 = text(24);
  m.de38 = text(38);
  m.de39 = text(39);
  m.de70 = v.has(70);
  return m;
}

class Iso93Test : public ServerFixture {
 protected:
  void SetUp() override {
    ServerFixture::SetUp();
    seed_profile(redis());
    seed_account(redis(), "R93", 100'000'000);
    seed_account(redis(), "P93", 5'000);
    seed_card(redis(), crypto_, kPanRich, "R93", "active");
    seed_card(redis(), crypto_, kPanPoor, "P93", "active");
    seed_card(redis(), crypto_, kPanStolen, "R93", "stolen");
  }
  void start(const std::string& network) {
    start_server(load_config(
        "[switch]\nshards = 1\n[redis]\naddress = \"127.0.0.1:" + std::to_string(server().port()) +
            "\"\n[http]\nenabled = false\n[audit]\npath = \"\"\n[rules]\nfile = \"" + rules_path_ +
            "\"\n" + network,
        "iso93_test.toml"));
  }
  static std::string listen93(const std::string& extra) {
    return "[[network]]\nname = \"acq93\"\nrole = \"listen\"\naddress = \"127.0.0.1:0\"\n"
           "dialect = \"iso93-ebcdic\"\nbudget = \"500ms\"\necho_interval = \"0s\"\n" +
           extra;
  }
  static std::string dial93(std::uint16_t port, const std::string& extra) {
    return "[[network]]\nname = \"net93\"\nrole = \"dial\"\naddress = \"127.0.0.1:" +
           std::to_string(port) +
           "\"\ndialect = \"iso93-ebcdic\"\nbudget = \"500ms\"\necho_interval = \"0s\"\n" + extra;
  }
  // Sends `t` on `c` and returns the decoded answer.
  static Msg93 ask(const TestClient& c, const Txn93& t) {
    EXPECT_TRUE(c.send(encode93(t)));
    return read93(c.receive());
  }
};

// Approvals, declines and acknowledgements in ISO 8583:1993 action codes (DE 39 n3).
TEST_F(Iso93Test, ResponsesCarryActionCodes) {
  start(listen93(""));
  const auto c = std::make_unique<TestClient>(port_);
  Txn93 auth;
  auth.stan = "000101";
  const Msg93 approved = ask(*c, auth);
  EXPECT_EQ(approved.mti, 1110);
  EXPECT_EQ(approved.de39, "000");  // approved
  EXPECT_EQ(approved.de38.size(), 6U);

  Txn93 partial;  // $100.00 on an account holding $50.00: approved for $50.00
  partial.pan = kPanPoor;
  partial.stan = "000102";
  partial.amount = "000000010000";
  const Msg93 p = ask(*c, partial);
  EXPECT_EQ(p.de39, "002");  // approved for partial amount
  EXPECT_EQ(p.de4, "000000005000");

  Txn93 cash;  // cash is never approved partially: not sufficient funds
  cash.pan = kPanPoor;
  cash.stan = "000103";
  cash.de3 = "010000";
  cash.amount = "000000010000";
  EXPECT_EQ(ask(*c, cash).de39, "116");

  Txn93 unknown;
  unknown.pan = kPanUnknown;
  unknown.stan = "000104";
  EXPECT_EQ(ask(*c, unknown).de39, "111");  // invalid card number

  Txn93 stolen;
  stolen.pan = kPanStolen;
  stolen.stan = "000105";
  EXPECT_EQ(ask(*c, stolen).de39, "209");  // pick up, stolen card

  Txn93 gambling;
  gambling.stan = "000106";
  gambling.mcc = "7995";
  EXPECT_EQ(ask(*c, gambling).de39, "119");  // transaction not permitted to cardholder

  Txn93 unsupported;
  unsupported.stan = "000107";
  unsupported.de3 = "500000";
  EXPECT_EQ(ask(*c, unsupported).de39, "902");  // invalid transaction

  // A completion advice is acknowledged 000, a reversal accepted 400. Without DE 90 (not the
  // original's data in 1993), each names the authorization by carrying its DE 7 and DE 11.
  Txn93 completion = auth;
  completion.mti = 1220;
  const Msg93 ack = ask(*c, completion);
  EXPECT_EQ(ack.mti, 1230);
  EXPECT_EQ(ack.de39, "000");
  Txn93 reversal = partial;
  reversal.mti = 1420;
  const Msg93 rev = ask(*c, reversal);
  EXPECT_EQ(rev.mti, 1430);
  EXPECT_EQ(rev.de39, "400");  // accepted (for reversal)
}

// 1804 from the peer: DE 24 801 signs the connection on, 802 off, 831 is an echo test; each is
// answered 1814 with DE 24 echoed and DE 39 800. An unknown function code is refused (902).
// Requests before the sign-on are answered 907 (card issuer or switch inoperative).
TEST_F(Iso93Test, NetworkManagementByFunctionCode) {
  start(listen93("sign_on_required = true\n"));
  const auto c = std::make_unique<TestClient>(port_);
  Txn93 auth;
  auth.stan = "000201";
  EXPECT_EQ(ask(*c, auth).de39, "907");
  const Msg93 on = ask(*c, network93("801", "000202"));
  EXPECT_EQ(on.mti, 1814);
  EXPECT_EQ(on.de11, "000202");
  EXPECT_EQ(on.de24, "801");
  EXPECT_EQ(on.de39, "800");
  auth.stan = "000203";
  EXPECT_EQ(ask(*c, auth).de39, "000");
  const Msg93 echo = ask(*c, network93("831", "000204"));
  EXPECT_EQ(echo.mti, 1814);
  EXPECT_EQ(echo.de24, "831");
  EXPECT_EQ(echo.de39, "800");
  const Msg93 unknown = ask(*c, network93("899", "000205"));
  EXPECT_EQ(unknown.mti, 1814);
  EXPECT_EQ(unknown.de24, "899");
  EXPECT_EQ(unknown.de39, "902");
  const Msg93 off = ask(*c, network93("802", "000206"));
  EXPECT_EQ(off.de24, "802");
  EXPECT_EQ(off.de39, "800");
  auth.stan = "000207";
  EXPECT_EQ(ask(*c, auth).de39, "907");
}

// A dial network signs on with 1804 DE 24 801 (no DE 70: a country code in 1993) and is served
// once a 1814 with DE 39 800 answers it; any other action code (here 000, an approval, not a
// network-management acceptance) refuses the sign-on and closes the link.
TEST_F(Iso93Test, DialSignsOnWith1804AndNeeds800) {
  const Acceptor acceptor;
  start(dial93(acceptor.port(),
               "sign_on_required = true\nreconnect = { min = \"100ms\", max = \"1s\" }\n"));
  auto link = acceptor.accept(15s);
  ASSERT_NE(link, nullptr);
  const Msg93 first = read93(link->receive());
  EXPECT_EQ(first.mti, 1804);
  EXPECT_EQ(first.de24, "801");
  EXPECT_FALSE(first.de70);
  ASSERT_EQ(first.de11.size(), 6U);
  ASSERT_TRUE(link->send(answer1814(first.de11, "801", "000")));
  EXPECT_TRUE(link->closed_by_peer());
  EXPECT_EQ(switch_->totals().sign_ons, 0U);

  link = acceptor.accept(15s);
  ASSERT_NE(link, nullptr);
  const Msg93 again = read93(link->receive());
  EXPECT_EQ(again.mti, 1804);
  EXPECT_EQ(again.de24, "801");
  ASSERT_TRUE(link->send(answer1814(again.de11, "801", "800")));
  ASSERT_TRUE(wait_for([&] { return switch_->totals().sign_ons == 1; }));
  Txn93 auth;
  auth.stan = "000301";
  const Msg93 a = ask(*link, auth);
  EXPECT_EQ(a.mti, 1110);
  EXPECT_EQ(a.de39, "000");
}

// The switch's idle echo on a 1993 link is 1804 DE 24 831, matched by the 1814's DE 11.
TEST_F(Iso93Test, IdleEchoIs1804FunctionCode831) {
  start(
      "[[network]]\nname = \"acq93\"\nrole = \"listen\"\naddress = \"127.0.0.1:0\"\n"
      "dialect = \"iso93-ebcdic\"\nbudget = \"300ms\"\necho_interval = \"1s\"\n");
  const auto c = std::make_unique<TestClient>(port_);
  const Msg93 echo = read93(c->receive());
  EXPECT_EQ(echo.mti, 1804);
  EXPECT_EQ(echo.de24, "831");
  EXPECT_FALSE(echo.de70);
  ASSERT_TRUE(c->send(answer1814(echo.de11, "831", "800")));
  ASSERT_TRUE(wait_for([&] { return switch_->totals().echoes_answered == 1; }));
  EXPECT_EQ(switch_->totals().unmatched_responses, 0U);
}

}  // namespace
}  // namespace authswitch::switching
