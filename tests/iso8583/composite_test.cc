// Composite fields: positional and bitmapped subfields, and the typed readers for DE 90
// (original data elements), DE 95 (replacement amounts) and track 2.
#include "iso8583/composite.h"

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "iso8583/dialect_loader.h"
#include "iso8583/error.h"
#include "iso8583/message.h"
#include "tests/iso8583/test_util.h"

namespace authswitch::iso8583 {
namespace {

using test::as_bytes;
using test::from_hex;

std::string describe_error(const Error& e) {
  std::array<char, 128> buf;
  return std::string(describe(e, buf));
}

std::string text(const FieldView& f) {
  std::array<char, 256> scratch;
  return std::string(text_value(f, scratch));
}

// Encodes `b` and decodes it into `m`; the bytes live in `wire`.
void encode_decode(const MessageBuilder& b, std::vector<std::byte>& wire, MessageView& m) {
  wire.assign(1024, std::byte{0});
  const auto n = b.encode(wire);
  ASSERT_TRUE(n.has_value()) << describe_error(n.error());
  wire.resize(*n);
  const auto r = decode(b.dialect(), wire, m);
  ASSERT_TRUE(r.has_value()) << describe_error(r.error());
}

std::size_t offset_of(const MessageView& m, int de) {
  return static_cast<std::size_t>(m.field(de).wire.data() - m.bytes().data());
}

// ---------------------------------------------------------------------------------------------
// DE 90, original data elements.

constexpr std::string_view kDe90 =
    "0100"
    "000123"
    "1124101010"
    "00000012345"
    "00000000000";

void fill_0420(MessageBuilder& b, std::string_view de90) {
  b.reset(420);
  b.set_text(2, "4761739001010135");
  b.set_text(3, "000000");
  b.set_text(4, "000000012345");
  b.set_text(7, "1124101512");
  b.set_text(11, "000124");
  b.set_text(32, "12345");
  b.set_text(37, "432910123456");
  b.set_text(41, "TERM0001");
  b.set_text(49, "826");
  b.set_text(90, de90);
}

TEST(OriginalData, ReadsTheFiveSubfieldsFromAnAsciiReversal) {
  const Dialect& d = builtin_dialect("iso87-ascii");
  MessageBuilder b(d);
  fill_0420(b, kDe90);
  std::vector<std::byte> wire;
  MessageView m;
  ASSERT_NO_FATAL_FAILURE(encode_decode(b, wire, m));
  const auto r = read_original_data(m);
  ASSERT_TRUE(r.has_value()) << describe_error(r.error());
  EXPECT_EQ(r->mti, 100);
  EXPECT_EQ(r->stan, 123U);
  EXPECT_EQ(r->transmission_time, 1124101010U);
  EXPECT_EQ(std::string(r->acquirer_id.begin(), r->acquirer_id.end()), "00000012345");
  EXPECT_EQ(std::string(r->forwarding_id.begin(), r->forwarding_id.end()), "00000000000");
  // The dialect also declares DE 90 positional: the generic composite view agrees.
  CompositeView cv;
  ASSERT_TRUE(decode_composite(m, 90, cv).has_value());
  EXPECT_EQ(text(cv.subfield(1)), "0100");
  EXPECT_EQ(text(cv.subfield(2)), "000123");
  EXPECT_EQ(text(cv.subfield(3)), "1124101010");
  EXPECT_EQ(text(cv.subfield(4)), "00000012345");
  EXPECT_EQ(text(cv.subfield(5)), "00000000000");
  EXPECT_FALSE(cv.has(6));
}

TEST(OriginalData, ReadsPackedBcdDe90) {
  const Dialect& d = builtin_dialect("iso87-bcd");
  MessageBuilder b(d);
  fill_0420(b,
            "0200"
            "004711"
            "0101235959"
            "00000054321"
            "00000098765");
  std::vector<std::byte> wire;
  MessageView m;
  ASSERT_NO_FATAL_FAILURE(encode_decode(b, wire, m));
  EXPECT_EQ(m.field(90).wire.size(), 21U);  // 42 digits packed
  EXPECT_EQ(test::to_hex(m.field(90).wire), "020000471101012359590000005432100000098765");
  const auto r = read_original_data(m);
  ASSERT_TRUE(r.has_value()) << describe_error(r.error());
  EXPECT_EQ(r->mti, 200);
  EXPECT_EQ(r->stan, 4711U);
  EXPECT_EQ(r->transmission_time, 101235959U);
  EXPECT_EQ(std::string(r->acquirer_id.begin(), r->acquirer_id.end()), "00000054321");
  EXPECT_EQ(std::string(r->forwarding_id.begin(), r->forwarding_id.end()), "00000098765");
}

TEST(OriginalData, AbsentFieldIsMissingField) {
  const Dialect& d = builtin_dialect("iso87-ascii");
  MessageBuilder b(d);
  b.reset(420);
  b.set_text(11, "000001");
  std::vector<std::byte> wire;
  MessageView m;
  ASSERT_NO_FATAL_FAILURE(encode_decode(b, wire, m));
  const auto r = read_original_data(m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kMissingField);
  EXPECT_EQ(r.error().field, 90);
  const auto a = read_replacement_amounts(m);
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().code, Errc::kMissingField);
  EXPECT_EQ(a.error().field, 95);
}

// DE 56, original data elements (ISO 8583:1993), in the shipped EBCDIC dialect.
void decode_1420(MessageBuilder& b, std::string_view de56, std::vector<std::byte>& wire,
                 MessageView& m) {
  b.reset(1420);
  b.set_text(11, "000124");
  b.set_text(12, "231124101512");
  if (!de56.empty()) {
    b.set_text(56, de56);
  }
  encode_decode(b, wire, m);
}

TEST(OriginalData93, ReadsMtiStanLocalTimeAndAcquirer) {
  MessageBuilder b(builtin_dialect("iso93-ebcdic"));
  std::vector<std::byte> wire;
  MessageView m;
  ASSERT_NO_FATAL_FAILURE(decode_1420(b,
                                      "1100"
                                      "000123"
                                      "231124101010"
                                      "05"
                                      "12345",
                                      wire, m));
  const auto r = read_original_data_93(m);
  ASSERT_TRUE(r.has_value()) << describe_error(r.error());
  EXPECT_EQ(r->mti, 1100);
  EXPECT_EQ(r->stan, 123U);
  EXPECT_EQ(r->local_time, 231124101010U);
  EXPECT_EQ(r->acquirer(), "12345");
}

TEST(OriginalData93, TheAcquirerIsOptionalAndItsLengthMustFit) {
  MessageBuilder b(builtin_dialect("iso93-ebcdic"));
  std::vector<std::byte> wire;
  MessageView m;
  ASSERT_NO_FATAL_FAILURE(decode_1420(b, "1200000007231124235959", wire, m));
  auto r = read_original_data_93(m);
  ASSERT_TRUE(r.has_value()) << describe_error(r.error());
  EXPECT_EQ(r->mti, 1200);
  EXPECT_EQ(r->acquirer(), "");
  for (const std::string_view bad : {"1200000007231124235959"
                                     "06"
                                     "12345",  // says 6, has 5
                                     "1200000007231124235959"
                                     "00",  // empty
                                     "1200000007231124235959"
                                     "1",                        // half a length
                                     "12000000072311242359"}) {  // short time
    ASSERT_NO_FATAL_FAILURE(decode_1420(b, bad, wire, m));
    r = read_original_data_93(m);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().field, 56) << bad;
  }
  ASSERT_NO_FATAL_FAILURE(decode_1420(b, "", wire, m));
  r = read_original_data_93(m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kMissingField);
}

// DE 90 and DE 95 as free ans LLL fields, so the readers see values the shipped dialects
// would already reject at decode time.
constexpr std::string_view kLooseDialect = R"(
name = "loose-90-95"
[message]
mti = "ascii"
bitmap = "ascii-hex"
[fields]
11 = { type = "n", length = "fixed", max = 6 }
90 = { type = "ans", length = "LLL", max = 99 }
95 = { type = "ans", length = "LLL", max = 99 }
)";

struct BadText {
  std::string value;
  Errc code;
  int subfield;
};

TEST(OriginalData, WrongLengthOrNonDigitIsAnError) {
  const auto d = load_dialect(kLooseDialect, "inline");
  const std::string good(kDe90);
  auto with = [&good](std::size_t at, char c) {
    std::string s = good;
    s[at] = c;
    return s;
  };
  const std::vector<BadText> rows = {
      {good.substr(0, 41), Errc::kBadSubfield, 0},
      {good + "0", Errc::kBadSubfield, 0},
      {"", Errc::kBadSubfield, 0},
      {with(2, 'A'), Errc::kBadCharset, 1},
      {with(9, ' '), Errc::kBadCharset, 2},
      {with(15, '-'), Errc::kBadCharset, 3},
      {with(20, 'X'), Errc::kBadCharset, 4},
      {with(35, 'X'), Errc::kBadCharset, 5},  // the forwarding institution is subfield 5
  };
  for (const BadText& row : rows) {
    MessageBuilder b(*d);
    b.reset(420);
    b.set_text(11, "000001");
    b.set_text(90, row.value);
    std::vector<std::byte> wire;
    MessageView m;
    ASSERT_NO_FATAL_FAILURE(encode_decode(b, wire, m));
    const auto r = read_original_data(m);
    ASSERT_FALSE(r.has_value()) << "'" << row.value << "'";
    EXPECT_EQ(r.error().code, row.code) << row.value;
    EXPECT_EQ(r.error().field, 90) << row.value;
    EXPECT_EQ(r.error().subfield, row.subfield) << row.value;
    EXPECT_EQ(r.error().offset, offset_of(m, 90)) << row.value;
  }
}

// ---------------------------------------------------------------------------------------------
// DE 95, replacement amounts.

struct Amounts {
  std::string de95;
  std::int64_t transaction;
  std::int64_t settlement;
  std::int64_t transaction_fee;
  std::int64_t settlement_fee;
};

TEST(ReplacementAmounts, ReadsAmountsAndSignedFees) {
  const std::vector<Amounts> rows = {
      {"000000010000"
       "000000009000"
       "C00000150"
       "D00000025",
       10000, 9000, 150, -25},
      {"000000007500"
       "000000007500"
       "D00000100"
       "C00000001",
       7500, 7500, -100, 1},
      {"000000000000"
       "000000000000"
       "000000000"
       "000000000",
       0, 0, 0, 0},
      {"999999999999"
       "000000000001"
       "C99999999"
       "D99999999",
       999999999999, 1, 99999999, -99999999},
  };
  for (const char* name : {"iso87-ascii", "iso87-bcd"}) {
    const Dialect& d = builtin_dialect(name);
    for (const Amounts& row : rows) {
      MessageBuilder b(d);
      b.reset(420);
      b.set_text(11, "000124");
      b.set_text(95, row.de95);
      std::vector<std::byte> wire;
      MessageView m;
      ASSERT_NO_FATAL_FAILURE(encode_decode(b, wire, m));
      const auto r = read_replacement_amounts(m);
      ASSERT_TRUE(r.has_value()) << name << " " << row.de95 << ": " << describe_error(r.error());
      EXPECT_EQ(r->transaction_minor, row.transaction) << name << " " << row.de95;
      EXPECT_EQ(r->settlement_minor, row.settlement) << name << " " << row.de95;
      EXPECT_EQ(r->transaction_fee_minor, row.transaction_fee) << name << " " << row.de95;
      EXPECT_EQ(r->settlement_fee_minor, row.settlement_fee) << name << " " << row.de95;
    }
  }
}

TEST(ReplacementAmounts, BadSignOrDigitNamesTheSubfield) {
  const auto d = load_dialect(kLooseDialect, "inline");
  const std::string good =
      "000000010000"
      "000000009000"
      "C00000150"
      "D00000025";
  auto with = [&good](std::size_t at, char c) {
    std::string s = good;
    s[at] = c;
    return s;
  };
  const std::vector<BadText> rows = {
      {good.substr(0, 41), Errc::kBadSubfield, 0}, {good + "5", Errc::kBadSubfield, 0},
      {with(0, 'A'), Errc::kBadCharset, 1},        {with(13, ' '), Errc::kBadCharset, 2},
      {with(24, 'X'), Errc::kBadCharset, 3},       {with(24, '+'), Errc::kBadCharset, 3},
      {with(30, 'C'), Errc::kBadCharset, 3},       {with(33, 'c'), Errc::kBadCharset, 4},
      {with(41, '?'), Errc::kBadCharset, 4},
  };
  for (const BadText& row : rows) {
    MessageBuilder b(*d);
    b.reset(420);
    b.set_text(11, "000001");
    b.set_text(95, row.value);
    std::vector<std::byte> wire;
    MessageView m;
    ASSERT_NO_FATAL_FAILURE(encode_decode(b, wire, m));
    const auto r = read_replacement_amounts(m);
    ASSERT_FALSE(r.has_value()) << "'" << row.value << "'";
    EXPECT_EQ(r.error().code, row.code) << row.value;
    EXPECT_EQ(r.error().field, 95) << row.value;
    EXPECT_EQ(r.error().subfield, row.subfield) << row.value;
    EXPECT_EQ(r.error().offset, offset_of(m, 95)) << row.value;
  }
}

// ---------------------------------------------------------------------------------------------
// Track 2.

struct Track2Case {
  std::string_view text;
  std::string_view pan, expiry, service, discretionary;
};

TEST(Track2, SplitsPanExpiryServiceCodeAndDiscretionaryData) {
  const std::vector<Track2Case> rows = {
      {"4761739001010135=22122011955945800000", "4761739001010135", "2212", "201", "1955945800000"},
      {"4761739001010135D22122011955945800000", "4761739001010135", "2212", "201", "1955945800000"},
      {"4761739001010135D2212201195594580000F", "4761739001010135", "2212", "201", "195594580000"},
      {";4761739001010135=22122011955945800000?", "4761739001010135", "2212", "201",
       "1955945800000"},
      {";4761739001010135=2212201F?", "4761739001010135", "2212", "201", ""},
      {"476173900101=2212201", "476173900101", "2212", "201", ""},
      {"4761739001010135123=3001101", "4761739001010135123", "3001", "101", ""},
  };
  for (const Track2Case& row : rows) {
    const auto r = parse_track2(row.text);
    ASSERT_TRUE(r.has_value()) << row.text << ": " << describe_error(r.error());
    EXPECT_EQ(r->pan, row.pan) << row.text;
    EXPECT_EQ(r->expiry_yymm, row.expiry) << row.text;
    EXPECT_EQ(r->service_code, row.service) << row.text;
    EXPECT_EQ(r->discretionary, row.discretionary) << row.text;
    // Views into the text passed in, not copies.
    EXPECT_GE(r->pan.data(), row.text.data());
    EXPECT_LT(r->pan.data(), row.text.data() + row.text.size());
  }
}

struct BadTrack2 {
  std::string_view text;
  Errc code;
  int subfield;
  std::uint32_t offset;
};

TEST(Track2, RejectsMalformedData) {
  const std::vector<BadTrack2> rows = {
      {"", Errc::kBadSubfield, 1, 0},
      {"47617390010101352212201195594580", Errc::kBadSubfield, 1, 0},  // no separator
      {"47617390010=2212201", Errc::kBadSubfield, 1, 0},               // PAN of 11 digits
      {"47617390010101351234=2212201", Errc::kBadSubfield, 1, 0},      // PAN of 20 digits
      {"476173900101013X=2212201", Errc::kBadCharset, 1, 0},           // letter in the PAN
      {"4761739001010135=22A2201", Errc::kBadCharset, 2, 19},          // letter in the expiry
      {"4761739001010135=2212X01", Errc::kBadCharset, 2, 21},          // letter in service code
      {"4761739001010135=221", Errc::kBadSubfield, 2, 17},             // expiry cut short
      {"4761739001010135=", Errc::kBadSubfield, 2, 17},
  };
  for (const BadTrack2& row : rows) {
    const auto r = parse_track2(row.text);
    ASSERT_FALSE(r.has_value()) << "'" << row.text << "' parsed";
    EXPECT_EQ(r.error().code, row.code) << row.text;
    EXPECT_EQ(r.error().field, 35) << row.text;
    EXPECT_EQ(r.error().subfield, row.subfield) << row.text;
    EXPECT_EQ(r.error().offset, row.offset) << row.text;
  }
}

TEST(Track2, ReadsTrack2FromEachShippedDialect) {
  for (const auto name : builtin_dialect_names()) {
    const Dialect& d = builtin_dialect(name);
    MessageBuilder b(d);
    b.reset(100);
    b.set_text(35, "4761739001010135=22122011955945800000");
    std::vector<std::byte> wire;
    MessageView m;
    ASSERT_NO_FATAL_FAILURE(encode_decode(b, wire, m));
    std::array<char, 64> scratch;
    const auto r = parse_track2(text_value(m.field(35), scratch));
    ASSERT_TRUE(r.has_value()) << name << ": " << describe_error(r.error());
    EXPECT_EQ(r->pan, "4761739001010135") << name;
    EXPECT_EQ(r->expiry_yymm, "2212") << name;
    EXPECT_EQ(r->service_code, "201") << name;
    EXPECT_EQ(r->discretionary, "1955945800000") << name;
  }
}

// ---------------------------------------------------------------------------------------------
// Positional: DE 3, processing code.

TEST(PositionalComposite, ProcessingCodeSubfieldsInEachShippedDialect) {
  for (const auto name : builtin_dialect_names()) {
    const Dialect& d = builtin_dialect(name);
    MessageBuilder b(d);
    b.reset(200);
    b.set_text(3, "002000");
    b.set_text(11, "000001");
    std::vector<std::byte> wire;
    MessageView m;
    ASSERT_NO_FATAL_FAILURE(encode_decode(b, wire, m));
    CompositeView cv;
    const auto r = decode_composite(m, 3, cv);
    ASSERT_TRUE(r.has_value()) << name << ": " << describe_error(r.error());
    EXPECT_EQ(cv.spec().kind, CompositeKind::kPositional);
    EXPECT_FALSE(cv.has(0));
    ASSERT_TRUE(cv.has(1) && cv.has(2) && cv.has(3)) << name;
    EXPECT_FALSE(cv.has(4)) << name;
    EXPECT_EQ(text(cv.subfield(1)), "00") << name;
    EXPECT_EQ(text(cv.subfield(2)), "20") << name;
    EXPECT_EQ(text(cv.subfield(3)), "00") << name;
    // Subfields are views into the message: one after another inside DE 3.
    const std::byte* de3 = m.field(3).wire.data();
    const std::size_t width = d.field(3).fixed_wire_bytes / 3;
    for (int s = 1; s <= 3; ++s) {
      EXPECT_EQ(cv.subfield(s).wire.data(), de3 + static_cast<std::size_t>(s - 1) * width)
          << name << " DE 3." << s;
      EXPECT_EQ(cv.subfield(s).wire.size(), width);
    }
  }
}

TEST(PositionalComposite, ShortValueLeavesTrailingSubfieldsAbsent) {
  const Dialect& d = builtin_dialect("iso87-ascii");
  CompositeView cv;
  const auto r = decode_composite(d.composite(d.field(3)), as_bytes("0020"), 3, cv);
  ASSERT_TRUE(r.has_value()) << describe_error(r.error());
  EXPECT_TRUE(cv.has(1));
  EXPECT_TRUE(cv.has(2));
  EXPECT_FALSE(cv.has(3));
  const auto cut = decode_composite(d.composite(d.field(3)), as_bytes("00200"), 3, cv);
  ASSERT_FALSE(cut.has_value());
  EXPECT_EQ(cut.error().code, Errc::kBadSubfield);
  EXPECT_EQ(cut.error().subfield, 3);
  EXPECT_EQ(cut.error().offset, 4U);
}

TEST(PositionalComposite, NotACompositeOrAbsent) {
  const Dialect& d = builtin_dialect("iso87-ascii");
  MessageBuilder b(d);
  b.reset(100);
  b.set_text(3, "000000");
  b.set_text(4, "000000000100");
  const auto icc = from_hex("9F02060000000001005F340101");
  b.set_bytes(55, icc);
  std::vector<std::byte> wire;
  MessageView m;
  ASSERT_NO_FATAL_FAILURE(encode_decode(b, wire, m));
  CompositeView cv;
  auto r = decode_composite(m, 4, cv);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kBadSubfield);
  EXPECT_EQ(r.error().field, 4);
  r = decode_composite(m, 55, cv);  // BER-TLV is read with tlv.h, not as subfields
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kBadSubfield);
  r = decode_composite(m, 90, cv);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kMissingField);
  EXPECT_EQ(r.error().field, 90);
}

// ---------------------------------------------------------------------------------------------
// Bitmapped: a private field with an 8-byte binary sub-bitmap (Postilion DE 127 style).

constexpr std::string_view kBitmappedDialect = R"(
name = "bitmapped"
[message]
mti = "ascii"
bitmap = "binary"

[fields]
3 = { type = "n", length = "fixed", max = 6 }

[fields.48]
name = "Additional data, private"
type = "b"
length = "LLL"
max = 999
composite = "bitmapped"
sub_bitmap_bytes = 8
sub_bitmap = "binary"

[fields.48.subfields]
2 = { name = "Merchant reference", type = "ans", length = "LL", max = 20 }
25 = { name = "Free text", type = "ans", length = "LLLL", max = 500 }
)";

// MTI (4) + primary bitmap (8) + DE 48 length prefix (3): DE 48's value starts at 15.
constexpr std::size_t kDe48Value = 15;

std::vector<std::byte> de48(std::string_view bitmap_hex, std::string_view rest) {
  auto v = from_hex(bitmap_hex);
  const auto r = as_bytes(rest);
  v.insert(v.end(), r.begin(), r.end());
  return v;
}

class Bitmapped : public ::testing::Test {
 protected:
  void SetUp() override { dialect_ = load_dialect(kBitmappedDialect, "inline"); }

  // Encodes a message carrying DE 48 = value; the builder does not look inside composites.
  std::vector<std::byte> message(const std::vector<std::byte>& value) {
    MessageBuilder b(*dialect_);
    b.reset(100);
    b.set_bytes(48, value);
    std::vector<std::byte> wire(1024);
    const auto n = b.encode(wire);
    EXPECT_TRUE(n.has_value());
    wire.resize(n.has_value() ? *n : 0);
    return wire;
  }

  std::unique_ptr<Dialect> dialect_;
};

TEST_F(Bitmapped, PresentAndAbsentSubfields) {
  struct Row {
    std::vector<std::byte> value;
    std::string sub2;   // empty: absent
    std::string sub25;  // empty: absent
  };
  const std::vector<Row> rows = {
      {de48("4000008000000000",
            "05HELLO"
            "0003ABC"),
       "HELLO", "ABC"},
      {de48("4000000000000000", "05HELLO"), "HELLO", ""},
      {de48("0000008000000000", "0010Free text!"), "", "Free text!"},
      {de48("0000000000000000", ""), "", ""},
  };
  for (const Row& row : rows) {
    const auto wire = message(row.value);
    MessageView m;
    const auto r = decode(*dialect_, wire, m);
    ASSERT_TRUE(r.has_value()) << describe_error(r.error());
    CompositeView cv;
    const auto cr = decode_composite(m, 48, cv);
    ASSERT_TRUE(cr.has_value()) << describe_error(cr.error());
    EXPECT_EQ(cv.spec().kind, CompositeKind::kBitmapped);
    EXPECT_EQ(cv.has(2), !row.sub2.empty());
    EXPECT_EQ(cv.has(25), !row.sub25.empty());
    for (int s = 1; s <= kMaxSubfield; ++s) {
      if (s != 2 && s != 25) {
        EXPECT_FALSE(cv.has(s)) << "subfield " << s;
      }
    }
    if (cv.has(2)) {
      EXPECT_EQ(text(cv.subfield(2)), row.sub2);
      // After the 8-byte sub-bitmap and the 2-digit prefix.
      EXPECT_EQ(cv.subfield(2).wire.data(), wire.data() + kDe48Value + 8 + 2);
    }
    if (cv.has(25)) {
      EXPECT_EQ(text(cv.subfield(25)), row.sub25);
    }
    EXPECT_FALSE(cv.subfield(3).present());
  }
  // The sub-bitmap, left-aligned.
  const auto wire = message(de48("4000008000000000",
                                 "05HELLO"
                                 "0003ABC"));
  MessageView m;
  ASSERT_TRUE(decode(*dialect_, wire, m).has_value());
  CompositeView cv;
  ASSERT_TRUE(decode_composite(m, 48, cv).has_value());
  EXPECT_EQ(cv.bitmap(), 0x4000008000000000U);
  EXPECT_TRUE(cv.header().empty());
}

struct BadComposite {
  const char* name;
  std::vector<std::byte> value;
  Errc code;
  int subfield;
  std::uint32_t offset;  // inside DE 48's value
};

TEST_F(Bitmapped, MalformedValuesFailWithSubfieldAndOffset) {
  const std::vector<BadComposite> rows = {
      {"undefined_subfield_3",
       de48("6000000000000000",
            "05HELLO"
            "X"),
       Errc::kUndefinedField, 3, 15},
      {"undefined_subfield_1", de48("C000000000000000", "05HELLO"), Errc::kUndefinedField, 1, 8},
      {"subfield_30_past_the_last", de48("0000000400000000", "05HELLO"), Errc::kUndefinedField, 30,
       8},
      {"bytes_left_over",
       de48("4000000000000000",
            "05HELLO"
            "XY"),
       Errc::kBadSubfield, 0, 15},
      {"bytes_without_bitmap_bits", de48("0000000000000000", "0"), Errc::kBadSubfield, 0, 8},
      {"subfield_value_cut", de48("4000000000000000", "10HELLO"), Errc::kBadSubfield, 2, 10},
      {"subfield_prefix_cut",
       de48("4000008000000000",
            "05HELLO"
            "000"),
       Errc::kBadSubfield, 25, 15},
      {"sub_bitmap_cut", from_hex("4000000000"), Errc::kBadSubfield, 0, 0},
      {"subfield_prefix_letter", de48("4000000000000000", "0AHELLO"), Errc::kBadLengthPrefix, 2, 9},
      {"subfield_too_long", de48("4000000000000000", "21" + std::string(21, 'A')),
       Errc::kLengthTooLong, 2, 8},
      {"subfield_control_char", de48("4000000000000000", "05HEL\x01O"), Errc::kBadCharset, 2, 13},
  };
  const CompositeSpec& spec = dialect_->composite(dialect_->field(48));
  for (const BadComposite& row : rows) {
    // Directly: offsets relative to the value.
    CompositeView cv;
    const auto r = decode_composite(spec, row.value, 48, cv);
    ASSERT_FALSE(r.has_value()) << row.name;
    EXPECT_EQ(r.error().code, row.code) << row.name << ": " << describe_error(r.error());
    EXPECT_EQ(r.error().field, 48) << row.name;
    EXPECT_EQ(r.error().subfield, row.subfield) << row.name;
    EXPECT_EQ(r.error().offset, row.offset) << row.name;
    // Inside a message: decode() validates the composite, offsets relative to the message.
    const auto wire = message(row.value);
    MessageView m;
    const auto dr = decode(*dialect_, wire, m);
    ASSERT_FALSE(dr.has_value()) << row.name;
    EXPECT_EQ(dr.error().code, row.code) << row.name << ": " << describe_error(dr.error());
    EXPECT_EQ(dr.error().field, 48) << row.name;
    EXPECT_EQ(dr.error().subfield, row.subfield) << row.name;
    EXPECT_EQ(dr.error().offset, kDe48Value + row.offset) << row.name;
    EXPECT_FALSE(m.has(48));
  }
}

TEST_F(Bitmapped, DescribeNamesFieldAndSubfield) {
  const auto wire = message(de48("6000000000000000",
                                 "05HELLO"
                                 "X"));
  MessageView m;
  const auto r = decode(*dialect_, wire, m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(describe_error(r.error()), "field 48.3 at offset 30: undefined-field");
}

TEST_F(Bitmapped, PlainFieldIsNotAComposite) {
  MessageBuilder b(*dialect_);
  b.reset(100);
  b.set_text(3, "000000");
  std::vector<std::byte> wire;
  MessageView m;
  ASSERT_NO_FATAL_FAILURE(encode_decode(b, wire, m));
  CompositeView cv;
  const auto r = decode_composite(m, 3, cv);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kBadSubfield);
}

}  // namespace
}  // namespace authswitch::iso8583
