// MessageView, MessageBuilder and the response builder over the shipped dialects.
#include "iso8583/message.h"

#include <array>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "iso8583/dialect_loader.h"
#include "tests/iso8583/test_util.h"

namespace authswitch::iso8583 {
namespace {

using test::to_hex;

std::string text(const MessageView& m, int de) {
  std::array<char, 1024> scratch;
  return std::string(text_value(m.field(de), scratch));
}

// A purchase authorization with the usual fields, in canonical form.
void fill_0100(MessageBuilder& b) {
  b.reset(100);
  b.set_text(2, "4761739001010135");
  b.set_text(3, "000000");
  b.set_number(4, 1234);  // zero-padded to n12 by the encoder
  b.set_text(7, "1124101010");
  b.set_number(11, 42);
  b.set_text(12, "101010");
  b.set_text(13, "1124");
  b.set_text(14, "2812");
  b.set_text(18, "5411");
  b.set_text(22, "051");
  b.set_text(25, "00");
  b.set_text(32, "123456");
  b.set_text(37, "432910123456");
  b.set_text(41, "TERM0001");
  b.set_text(42, "MERCHANT0000001");
  b.set_text(43, "CORNER SHOP            LONDON        GB");
  b.set_text(49, "826");
}

class ShippedDialect : public ::testing::TestWithParam<const char*> {};

TEST_P(ShippedDialect, BuildDecodeAndReadValues) {
  const Dialect& d = builtin_dialect(GetParam());
  MessageBuilder b(d);
  fill_0100(b);
  std::array<std::byte, 1024> buf;
  const auto n = b.encode(buf);
  ASSERT_TRUE(n.has_value()) << errc_name(n.error().code) << " field " << n.error().field;
  MessageView m;
  const auto r = decode(d, std::span(buf).first(*n), m);
  ASSERT_TRUE(r.has_value()) << errc_name(r.error().code) << " field " << r.error().field;
  EXPECT_EQ(m.mti(), 100);
  EXPECT_EQ(text(m, 2), "4761739001010135");
  EXPECT_EQ(text(m, 4), "000000001234");
  EXPECT_EQ(*number_value(m.field(4)), 1234U);
  EXPECT_EQ(*number_value(m.field(11)), 42U);
  EXPECT_EQ(text(m, 41), "TERM0001");
  // ISO 8583:1987 DE 43 is ans 40, padded on the right; 1993 makes it ans..99.
  const bool iso93 = std::string(GetParam()) == "iso93-ebcdic";
  EXPECT_EQ(text(m, 43), iso93 ? "CORNER SHOP            LONDON        GB"
                               : "CORNER SHOP            LONDON        GB ");
  EXPECT_FALSE(m.has(39));
  EXPECT_FALSE(m.field(39).present());
  EXPECT_EQ(m.bitmap_count(), 1);
}

TEST_P(ShippedDialect, ResponseEchoesRequestKeysAndSetsResponseCode) {
  const Dialect& d = builtin_dialect(GetParam());
  const bool iso93 = std::string(GetParam()) == "iso93-ebcdic";
  MessageBuilder b(d);
  fill_0100(b);
  b.set_text(22, iso93 ? "051101513344" : "051");
  b.set_text(12, iso93 ? "261124101010" : "101010");
  std::array<std::byte, 1024> req_buf;
  const auto n = b.encode(req_buf);
  ASSERT_TRUE(n.has_value()) << errc_name(n.error().code) << " field " << n.error().field;
  MessageView req;
  ASSERT_TRUE(decode(d, std::span(req_buf).first(*n), req).has_value());

  MessageBuilder resp(d);
  ASSERT_TRUE(build_response(req, iso93 ? "000" : "00", "A1B2C3", resp).has_value());
  std::array<std::byte, 1024> resp_buf;
  const auto rn = resp.encode(resp_buf);
  ASSERT_TRUE(rn.has_value()) << errc_name(rn.error().code) << " field " << rn.error().field;
  MessageView out;
  ASSERT_TRUE(decode(d, std::span(resp_buf).first(*rn), out).has_value());
  EXPECT_EQ(out.mti(), 110);
  for (int de : {2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49}) {
    ASSERT_TRUE(out.has(de)) << "DE " << de;
    EXPECT_EQ(to_hex(out.raw_field(de)), to_hex(req.raw_field(de))) << "DE " << de;
  }
  // Not echoed: expiry, MCC, entry mode, merchant name.
  for (int de : {14, 18, 22, 25, 43}) {
    EXPECT_FALSE(out.has(de)) << "DE " << de;
  }
  EXPECT_EQ(text(out, 39), iso93 ? "000" : "00");
  EXPECT_EQ(text(out, 38), "A1B2C3");
}

INSTANTIATE_TEST_SUITE_P(All, ShippedDialect,
                         ::testing::Values("iso87-ascii", "iso87-ascii-binbitmap", "iso87-bcd",
                                           "iso93-ebcdic"),
                         [](const auto& param_info) {
                           std::string s = param_info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

TEST(ResponseMti, MapsRequestsAndAdvicesAndRepeats) {
  EXPECT_EQ(response_mti(100), 110);
  EXPECT_EQ(response_mti(101), 110);
  EXPECT_EQ(response_mti(120), 130);
  EXPECT_EQ(response_mti(121), 130);
  EXPECT_EQ(response_mti(200), 210);
  EXPECT_EQ(response_mti(220), 230);
  EXPECT_EQ(response_mti(400), 410);
  EXPECT_EQ(response_mti(420), 430);
  EXPECT_EQ(response_mti(421), 430);
  EXPECT_EQ(response_mti(800), 810);
  EXPECT_EQ(response_mti(1100), 1110);
  EXPECT_EQ(response_mti(1804), 1814);  // the origin digit stays (4: other)
  EXPECT_EQ(response_mti(1805), 1814);  // a repeat's answer is the original's
  EXPECT_EQ(response_mti(402), 412);    // issuer-originated
  EXPECT_EQ(response_mti(1421), 1430);
  EXPECT_EQ(response_mti(110), 0);  // a response has no response
  EXPECT_EQ(response_mti(140), 0);  // nor a notification
}

TEST(BuildResponse, RejectsAResponseAsRequest) {
  const Dialect& d = builtin_dialect("iso87-ascii");
  MessageBuilder b(d);
  b.reset(110);
  b.set_text(11, "000001");
  std::array<std::byte, 256> buf;
  const auto n = b.encode(buf);
  ASSERT_TRUE(n.has_value());
  MessageView m;
  ASSERT_TRUE(decode(d, std::span(buf).first(*n), m).has_value());
  MessageBuilder out(d);
  const auto r = build_response(m, "00", "", out);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kNoResponseMti);
}

TEST(Builder, SecondaryBitmapAppearsOnlyWithFieldsAbove64) {
  const Dialect& d = builtin_dialect("iso87-ascii");
  MessageBuilder b(d);
  b.reset(800);
  b.set_text(7, "1124101010");
  b.set_text(11, "000001");
  std::array<std::byte, 256> buf;
  auto n = b.encode(buf);
  ASSERT_TRUE(n.has_value());
  // MTI + one 16-character bitmap + 10 + 6.
  EXPECT_EQ(*n, 4U + 16U + 16U);
  EXPECT_EQ(to_hex(std::span(buf).subspan(4, 16)), to_hex(test::as_bytes("0220000000000000")));
  b.set_text(70, "301");
  n = b.encode(buf);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 4U + 32U + 16U + 3U);
  EXPECT_EQ(to_hex(std::span(buf).subspan(4, 32)),
            to_hex(test::as_bytes("82200000000000000400000000000000")));
  b.clear(70);
  EXPECT_FALSE(b.has(70));
  n = b.encode(buf);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 4U + 16U + 16U);
}

TEST(Builder, BcdPackingAndTrackTwoSeparator) {
  const Dialect& d = builtin_dialect("iso87-bcd");
  MessageBuilder b(d);
  b.reset(200);
  b.set_text(2, "476173900101013");  // 15 digits: right pad nibble
  b.set_text(35, "4761739001010135=2212201");
  std::array<std::byte, 256> buf;
  const auto n = b.encode(buf);
  ASSERT_TRUE(n.has_value());
  // MTI 02 00, bitmap with bits 2 and 35, DE 2: length 15 (BCD) then 8 bytes ending in pad 0; DE
  // 35: 24 nibbles, '=' as D, and no pad (even).
  EXPECT_EQ(to_hex(std::span(buf).first(*n)),
            "0200"
            "4000000020000000"
            "15"
            "4761739001010130"
            "24"
            "4761739001010135d2212201");
  MessageView m;
  ASSERT_TRUE(decode(d, std::span(buf).first(*n), m).has_value());
  EXPECT_EQ(text(m, 2), "476173900101013");
  EXPECT_EQ(text(m, 35), "4761739001010135=2212201");
}

TEST(Builder, TrackTwoOddLengthPadsWithF) {
  const Dialect& d = builtin_dialect("iso87-bcd");
  MessageBuilder b(d);
  b.reset(200);
  b.set_text(35, "4761739001010135=2212201195");  // 27 characters
  std::array<std::byte, 256> buf;
  const auto n = b.encode(buf);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(to_hex(std::span(buf).subspan(10, *n - 10)), "274761739001010135d2212201195f");
}

TEST(Builder, EbcdicTextAndCopyAcrossDialects) {
  const Dialect& ascii = builtin_dialect("iso87-ascii");
  const Dialect& ebcdic = builtin_dialect("iso93-ebcdic");
  MessageBuilder a(ascii);
  a.reset(100);
  a.set_text(2, "4761739001010135");
  a.set_text(41, "TERM0001");
  std::array<std::byte, 256> abuf;
  const auto an = a.encode(abuf);
  ASSERT_TRUE(an.has_value());
  MessageView am;
  ASSERT_TRUE(decode(ascii, std::span(abuf).first(*an), am).has_value());

  MessageBuilder e(ebcdic);
  e.reset(1100);
  e.copy_from(am, 2);  // another dialect: re-encoded, not copied
  e.copy_from(am, 41);
  std::array<std::byte, 256> ebuf;
  const auto en = e.encode(ebuf);
  ASSERT_TRUE(en.has_value());
  MessageView em;
  ASSERT_TRUE(decode(ebcdic, std::span(ebuf).first(*en), em).has_value());
  EXPECT_EQ(text(em, 2), "4761739001010135");
  EXPECT_EQ(text(em, 41), "TERM0001");
  // "TERM0001" in code page 037.
  EXPECT_EQ(to_hex(em.field(41).wire), "e3c5d9d4f0f0f0f1");
}

TEST(MessageView, ReusedViewForgetsThePreviousMessage) {
  const Dialect& d = builtin_dialect("iso87-ascii");
  MessageBuilder b(d);
  fill_0100(b);
  std::array<std::byte, 1024> one;
  const auto n1 = b.encode(one);
  ASSERT_TRUE(n1.has_value());
  b.reset(800);
  b.set_text(11, "000007");
  std::array<std::byte, 256> two;
  const auto n2 = b.encode(two);
  ASSERT_TRUE(n2.has_value());
  MessageView m;
  ASSERT_TRUE(decode(d, std::span(one).first(*n1), m).has_value());
  ASSERT_TRUE(m.has(2));
  ASSERT_TRUE(decode(d, std::span(two).first(*n2), m).has_value());
  EXPECT_FALSE(m.has(2));
  EXPECT_EQ(text(m, 11), "000007");
}

TEST(NumberValue, RejectsNonNumericAndAbsent) {
  const Dialect& d = builtin_dialect("iso87-ascii");
  MessageBuilder b(d);
  b.reset(100);
  b.set_text(41, "TERM0001");
  std::array<std::byte, 256> buf;
  const auto n = b.encode(buf);
  ASSERT_TRUE(n.has_value());
  MessageView m;
  ASSERT_TRUE(decode(d, std::span(buf).first(*n), m).has_value());
  EXPECT_FALSE(number_value(m.field(41)).has_value());
  EXPECT_FALSE(number_value(m.field(4)).has_value());
}

}  // namespace
}  // namespace authswitch::iso8583
