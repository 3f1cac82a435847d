// Negative space of the codec: bad input must fail with the precise error code, field number
// and byte offset, never crash; the encoder must refuse values the field does not allow and
// never write past the caller's buffer.
#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "iso8583/composite.h"
#include "iso8583/dialect_loader.h"
#include "iso8583/error.h"
#include "iso8583/message.h"
#include "iso8583/spec.h"
#include "tests/iso8583/test_util.h"

namespace authswitch::iso8583 {
namespace {

using test::as_bytes;
using test::from_hex;
using test::to_hex;

constexpr std::string_view kPan = "4761739001010135";
constexpr std::string_view kTrack2 = "4761739001010135=22122011955945800000";  // 37 nibbles

const std::vector<std::byte>& icc_data() {
  static const std::vector<std::byte> kIcc = from_hex(
      "9F0206000000012345"
      "5F340102"
      "9F37043B391E1D");
  return kIcc;
}

std::string describe_error(const Error& e) {
  std::array<char, 128> buf;
  return std::string(describe(e, buf));
}

// Failure text for a Result: the error, rendered.
template <typename T>
std::string why(const Result<T>& r) {
  return r.has_value() ? std::string("ok") : describe_error(r.error());
}

// A typical purchase authorization (about 20 fields, a secondary bitmap for DE 102).
std::vector<std::byte> encode_typical(const Dialect& d, bool with_icc) {
  MessageBuilder b(d);
  b.reset(d.name() == "iso93-ebcdic" ? 1100 : 100);
  b.set_text(2, kPan);
  b.set_text(3, "000000");
  b.set_text(4, "000000012345");
  b.set_text(7, "1124101010");
  b.set_text(11, "000123");
  b.set_text(12, "101010");  // iso93 DE 12 is n12: zero-padded
  b.set_text(13, "1124");
  b.set_text(14, "2212");
  b.set_text(18, "5411");
  b.set_text(22, "051");  // iso93 DE 22 is an12: space-padded
  b.set_text(25, "00");
  b.set_text(32, "12345");
  b.set_text(35, kTrack2);
  b.set_text(37, "432910123456");
  b.set_text(41, "TERM0001");
  b.set_text(42, "MERCHANT0000001");
  b.set_text(43, "ACME STORE 12           LONDON        GB");
  b.set_text(49, "826");
  if (with_icc) {
    b.set_bytes(55, icc_data());
  }
  b.set_text(60, "RETAIL/POS 01");
  b.set_text(102, "ACCT-0001");
  std::vector<std::byte> out(2048);
  const auto n = b.encode(out);
  EXPECT_TRUE(n.has_value()) << d.name() << ": " << why(n);
  out.resize(n.has_value() ? *n : 0);
  return out;
}

// Where each part of a decoded message lies, to predict error offsets.
struct Part {
  int field;          // 0 for the MTI and the bitmaps
  std::size_t start;  // first byte (the length prefix for variable fields)
  std::size_t value;  // first value byte
  std::size_t end;
};

std::vector<Part> layout(const MessageView& m) {
  std::vector<Part> parts;
  const Dialect& d = m.dialect();
  std::size_t pos = d.info().header_bytes;
  parts.push_back({0, pos, pos, pos + d.mti_bytes()});
  pos += d.mti_bytes();
  for (int i = 0; i < m.bitmap_count(); ++i) {
    parts.push_back({0, pos, pos, pos + d.bitmap_bytes()});
    pos += d.bitmap_bytes();
  }
  const std::byte* base = m.bytes().data();
  for (int de = 2; de <= kMaxField; ++de) {
    if (m.has(de)) {
      const auto raw = m.raw_field(de);
      const auto start = static_cast<std::size_t>(raw.data() - base);
      const auto value = static_cast<std::size_t>(m.field(de).wire.data() - base);
      parts.push_back({de, start, value, start + raw.size()});
    }
  }
  return parts;
}

const Part* part_of(const std::vector<Part>& parts, int de) {
  for (const Part& p : parts) {
    if (p.field == de && de != 0) {
      return &p;
    }
  }
  return nullptr;
}

bool no_fields(const MessageView& m) {
  for (int de = 2; de <= kMaxField; ++de) {
    if (m.has(de) || m.field(de).present()) {
      return false;
    }
  }
  return true;
}

// Writes one 64-bit bitmap word in the dialect's bitmap encoding (uppercase hex).
void put_bitmap(BitmapEncoding enc, std::uint64_t word, std::byte* p) {
  if (enc == BitmapEncoding::kBinary) {
    for (int i = 7; i >= 0; --i) {
      p[i] = static_cast<std::byte>(word & 0xFFU);
      word >>= 8U;
    }
    return;
  }
  static constexpr std::string_view kHex = "0123456789ABCDEF";
  for (int i = 15; i >= 0; --i) {
    const char c = kHex[word & 0x0FU];
    std::uint8_t b = static_cast<std::uint8_t>(c);
    if (enc == BitmapEncoding::kEbcdicHex) {
      b = c <= '9' ? static_cast<std::uint8_t>(0xF0 + (c - '0'))
                   : static_cast<std::uint8_t>(0xC1 + (c - 'A'));
    }
    p[i] = static_cast<std::byte>(b);
    word >>= 4U;
  }
}

// ---------------------------------------------------------------------------------------------
// A typical message in each shipped dialect: truncation, trailing bytes, bitmaps, buffers.

struct TypicalCase {
  const char* dialect;
  bool icc;  // with DE 55
};

void PrintTo(const TypicalCase& c, std::ostream* os) { *os << c.dialect << (c.icc ? "+icc" : ""); }

class Typical : public ::testing::TestWithParam<TypicalCase> {
 protected:
  void SetUp() override {
    dialect_ = &builtin_dialect(GetParam().dialect);
    wire_ = encode_typical(*dialect_, GetParam().icc);
    ASSERT_FALSE(wire_.empty());
    const auto r = decode(*dialect_, wire_, msg_);
    ASSERT_TRUE(r.has_value()) << "the valid message must decode: " << why(r);
    ASSERT_EQ(*r, wire_.size());
    parts_ = layout(msg_);
  }

  const Dialect* dialect_ = nullptr;
  std::vector<std::byte> wire_;
  MessageView msg_;
  std::vector<Part> parts_;
};

TEST_P(Typical, HasTheExpectedShape) {
  EXPECT_EQ(msg_.bitmap_count(), 2);
  for (int de : {2, 3, 4, 7, 11, 12, 13, 14, 18, 22, 25, 32, 35, 37, 41, 42, 43, 49, 60, 102}) {
    EXPECT_TRUE(msg_.has(de)) << "DE " << de;
  }
  EXPECT_EQ(msg_.has(55), GetParam().icc);
  EXPECT_EQ(parts_.back().end, wire_.size());
}

TEST_P(Typical, EveryStrictPrefixIsTruncatedWhereItEnds) {
  for (std::size_t len = 0; len < wire_.size(); ++len) {
    // Each prefix in its own allocation, so ASan sees any read past its end.
    const auto copy = std::make_unique<std::byte[]>(std::max<std::size_t>(len, 1));
    std::copy_n(wire_.begin(), len, copy.get());
    MessageView m;
    const auto r = decode(*dialect_, std::span<const std::byte>(copy.get(), len), m);
    ASSERT_FALSE(r.has_value()) << "prefix of " << len << " bytes decoded";
    const Error& e = r.error();
    // The part the cut falls in; a cut inside a length prefix reports the prefix start.
    const auto it =
        std::find_if(parts_.begin(), parts_.end(), [len](const Part& p) { return len < p.end; });
    ASSERT_NE(it, parts_.end());
    const std::size_t expected_offset = len < it->value ? it->start : it->value;
    EXPECT_EQ(e.code, Errc::kTruncated) << "len " << len << ": " << describe_error(e);
    EXPECT_EQ(e.field, it->field) << "len " << len << ": " << describe_error(e);
    EXPECT_EQ(e.offset, expected_offset) << "len " << len << ": " << describe_error(e);
    EXPECT_LE(e.offset, len);
    EXPECT_TRUE(no_fields(m)) << "len " << len;
  }
}

TEST_P(Typical, OneTrailingByteIsTrailingBytesAtTheMessageEnd) {
  for (const int extra : {0x00, 0x30, 0xF0, 0xFF}) {
    auto longer = wire_;
    longer.push_back(static_cast<std::byte>(extra));
    MessageView m;
    const auto r = decode(*dialect_, longer, m);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, Errc::kTrailingBytes) << describe_error(r.error());
    EXPECT_EQ(r.error().field, 0);
    EXPECT_EQ(r.error().offset, wire_.size());
    EXPECT_TRUE(no_fields(m));
  }
}

TEST_P(Typical, FailedDecodeIntoAUsedViewLeavesNoFields) {
  ASSERT_TRUE(msg_.has(2));
  const std::vector<std::byte> cut(wire_.begin(), wire_.end() - 1);
  const auto r = decode(*dialect_, cut, msg_);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(no_fields(msg_));
  EXPECT_EQ(msg_.bitmap_words()[0], 0U);
}

TEST_P(Typical, Bit65WithTwoBitmapsIsTertiaryBitmap) {
  ASSERT_EQ(dialect_->info().max_bitmaps, 2);
  auto bad = wire_;
  const Part& secondary = parts_[2];
  put_bitmap(dialect_->info().bitmap_encoding, msg_.bitmap_words()[1] | (std::uint64_t{1} << 63U),
             bad.data() + secondary.start);
  MessageView m;
  const auto r = decode(*dialect_, bad, m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kTertiaryBitmap) << describe_error(r.error());
  EXPECT_EQ(r.error().field, 65);
  EXPECT_EQ(r.error().offset, secondary.start);
  EXPECT_TRUE(no_fields(m));
}

TEST_P(Typical, OversizedInputIsMessageTooLarge) {
  auto big = wire_;
  big.resize(dialect_->info().max_message_bytes + 1, std::byte{0x30});
  MessageView m;
  const auto r = decode(*dialect_, big, m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kMessageTooLarge);
  EXPECT_EQ(r.error().offset, dialect_->info().max_message_bytes);
}

// The part that does not fit a buffer of `size` bytes: the encoder checks the MTI, then all
// bitmaps at once, then one field at a time.
Part first_overflowing(const std::vector<Part>& parts, std::size_t size) {
  Part bitmaps = parts[1];
  std::size_t i = 2;
  while (i < parts.size() && parts[i].field == 0) {
    bitmaps.end = parts[i++].end;
  }
  if (size < parts[0].end) {
    return parts[0];
  }
  if (size < bitmaps.end) {
    return bitmaps;
  }
  for (; i < parts.size(); ++i) {
    if (size < parts[i].end) {
      return parts[i];
    }
  }
  return parts.back();
}

void check_every_short_buffer(const MessageBuilder& b, const std::vector<std::byte>& expected,
                              const std::vector<Part>& parts) {
  constexpr std::size_t kGuard = 32;
  constexpr auto kPattern = std::byte{0xA5};
  for (std::size_t size = 0; size < expected.size(); ++size) {
    std::vector<std::byte> buf(size + kGuard, kPattern);
    const auto r = b.encode(std::span(buf).first(size));
    ASSERT_FALSE(r.has_value()) << "size " << size;
    EXPECT_EQ(r.error().code, Errc::kBufferTooSmall) << "size " << size;
    const Part p = first_overflowing(parts, size);
    EXPECT_EQ(r.error().field, p.field) << "size " << size;
    EXPECT_EQ(r.error().offset, p.start) << "size " << size;
    EXPECT_TRUE(std::all_of(buf.begin() + static_cast<std::ptrdiff_t>(size), buf.end(),
                            [](std::byte x) { return x == kPattern; }))
        << "encode wrote past a buffer of " << size << " bytes";
    // And in an allocation of exactly `size` bytes, for ASan.
    const auto exact = std::make_unique<std::byte[]>(std::max<std::size_t>(size, 1));
    const auto r2 = b.encode(std::span<std::byte>(exact.get(), size));
    EXPECT_FALSE(r2.has_value());
  }
  std::vector<std::byte> buf(expected.size());
  const auto r = b.encode(buf);
  ASSERT_TRUE(r.has_value()) << why(r);
  EXPECT_EQ(to_hex(buf), to_hex(expected));
}

TEST_P(Typical, EncodeIntoEveryTooSmallBufferFailsAndWritesNothingPastIt) {
  // From canonical values.
  MessageBuilder b(*dialect_);
  b.reset(msg_.mti());
  std::vector<std::string> texts;
  texts.reserve(kFieldSlots);
  std::array<std::byte, 2048> scratch;
  std::vector<std::vector<std::byte>> blobs;
  blobs.reserve(kFieldSlots);
  for (int de = 2; de <= kMaxField; ++de) {
    if (!msg_.has(de)) {
      continue;
    }
    const auto v = canonical_value(msg_.field(de), scratch);
    if (dialect_->field(de).type == ContentType::kB) {
      blobs.emplace_back(v.begin(), v.end());
      b.set_bytes(de, blobs.back());
    } else {
      texts.emplace_back(reinterpret_cast<const char*>(v.data()), v.size());
      b.set_text(de, texts.back());
    }
  }
  check_every_short_buffer(b, wire_, parts_);
  // From the decoded view (raw wire copies).
  MessageBuilder copy(*dialect_);
  copy.reset(msg_.mti());
  for (int de = 2; de <= kMaxField; ++de) {
    if (msg_.has(de)) {
      copy.copy_from(msg_, de);
    }
  }
  check_every_short_buffer(copy, wire_, parts_);
}

INSTANTIATE_TEST_SUITE_P(
    Shipped, Typical,
    ::testing::Values(TypicalCase{"iso87-ascii", true}, TypicalCase{"iso87-ascii", false},
                      TypicalCase{"iso87-ascii-binbitmap", true},
                      TypicalCase{"iso87-ascii-binbitmap", false}, TypicalCase{"iso87-bcd", true},
                      TypicalCase{"iso87-bcd", false}, TypicalCase{"iso93-ebcdic", true},
                      TypicalCase{"iso93-ebcdic", false}),
    [](const ::testing::TestParamInfo<TypicalCase>& pi) {
      std::string name = pi.param.dialect;
      std::replace(name.begin(), name.end(), '-', '_');
      return name + (pi.param.icc ? "_icc" : "");
    });

// ---------------------------------------------------------------------------------------------
// Byte-level corruptions of the typical message (without DE 55), one per row.

struct Corruption {
  const char* name;
  const char* dialect;
  int de;                           // field whose bytes are replaced; 0: `at` is a message offset
  int at;                           // offset inside the field's raw bytes (length prefix included)
  std::vector<std::uint8_t> bytes;  // replacement
  Errc code;
  int field;     // expected error field
  int error_at;  // expected offset, relative like `at` (to the expected field, or absolute)
  int subfield = 0;
};

void PrintTo(const Corruption& c, std::ostream* os) { *os << c.name; }

const std::vector<Corruption>& corruptions() {
  static const std::vector<Corruption> kRows = {
      // iso87-ascii: MTI 0..3, bitmaps 4..19 and 20..35, DE 2 prefix at 36.
      {"ascii_mti_letter", "iso87-ascii", 0, 2, {'A'}, Errc::kBadMti, 0, 0},
      {"ascii_mti_space", "iso87-ascii", 0, 0, {' '}, Errc::kBadMti, 0, 0},
      {"ascii_bitmap_bad_hex", "iso87-ascii", 0, 11, {'G'}, Errc::kBadBitmap, 0, 4},
      {"ascii_bitmap_nul", "iso87-ascii", 0, 4, {0x00}, Errc::kBadBitmap, 0, 4},
      {"ascii_secondary_bitmap_bad_hex", "iso87-ascii", 0, 23, {'x'}, Errc::kBadBitmap, 0, 20},
      {"ascii_de2_prefix_20_over_max_19",
       "iso87-ascii",
       2,
       0,
       {'2', '0'},
       Errc::kLengthTooLong,
       2,
       0},
      {"ascii_de2_prefix_99", "iso87-ascii", 2, 0, {'9', '9'}, Errc::kLengthTooLong, 2, 0},
      {"ascii_de2_prefix_letter", "iso87-ascii", 2, 0, {'1', 'A'}, Errc::kBadLengthPrefix, 2, 1},
      {"ascii_de2_prefix_space", "iso87-ascii", 2, 0, {' ', '9'}, Errc::kBadLengthPrefix, 2, 0},
      {"ascii_de32_prefix_12_over_max_11",
       "iso87-ascii",
       32,
       0,
       {'1', '2'},
       Errc::kLengthTooLong,
       32,
       0},
      {"ascii_de60_lll_prefix_letter",
       "iso87-ascii",
       60,
       0,
       {'0', 'O', '9'},
       Errc::kBadLengthPrefix,
       60,
       1},
      {"ascii_de2_letter", "iso87-ascii", 2, 7, {'X'}, Errc::kBadCharset, 2, 7},
      {"ascii_de4_space", "iso87-ascii", 4, 11, {' '}, Errc::kBadCharset, 4, 11},
      {"ascii_de3_letter", "iso87-ascii", 3, 2, {'A'}, Errc::kBadCharset, 3, 2},
      {"ascii_de35_letter_in_track", "iso87-ascii", 35, 5, {'A'}, Errc::kBadCharset, 35, 5},
      {"ascii_de43_control_char", "iso87-ascii", 43, 3, {0x07}, Errc::kBadCharset, 43, 3},
      {"ascii_de43_del", "iso87-ascii", 43, 39, {0x7F}, Errc::kBadCharset, 43, 39},
      {"ascii_de43_high_byte", "iso87-ascii", 43, 0, {0xC1}, Errc::kBadCharset, 43, 0},
      {"ascii_de49_special_in_an", "iso87-ascii", 49, 1, {'$'}, Errc::kBadCharset, 49, 1},
      {"ascii_de102_newline", "iso87-ascii", 102, 4, {'\n'}, Errc::kBadCharset, 102, 4},
      // iso87-ascii-binbitmap: MTI 0..3, bitmaps 4..11 and 12..19, DE 2 prefix at 20.
      {"binbitmap_mti_letter", "iso87-ascii-binbitmap", 0, 3, {'x'}, Errc::kBadMti, 0, 0},
      {"binbitmap_de2_prefix_20",
       "iso87-ascii-binbitmap",
       2,
       0,
       {'2', '0'},
       Errc::kLengthTooLong,
       2,
       0},
      {"binbitmap_de2_letter", "iso87-ascii-binbitmap", 2, 2, {'a'}, Errc::kBadCharset, 2, 2},
      // iso87-bcd: MTI 0..1, bitmaps 2..9 and 10..17, DE 2 prefix at 18.
      {"bcd_mti_nibble", "iso87-bcd", 0, 1, {0xA0}, Errc::kBadMti, 0, 0},
      {"bcd_mti_low_nibble", "iso87-bcd", 0, 0, {0x0F}, Errc::kBadMti, 0, 0},
      {"bcd_de2_prefix_20", "iso87-bcd", 2, 0, {0x20}, Errc::kLengthTooLong, 2, 0},
      {"bcd_de2_prefix_nibble", "iso87-bcd", 2, 0, {0x1A}, Errc::kBadLengthPrefix, 2, 0},
      {"bcd_de60_lll_prefix_nibble", "iso87-bcd", 60, 1, {0xB3}, Errc::kBadLengthPrefix, 60, 1},
      {"bcd_de4_nibble_a", "iso87-bcd", 4, 3, {0x0A}, Errc::kBadCharset, 4, 3},
      {"bcd_de4_nibble_f", "iso87-bcd", 4, 5, {0xF5}, Errc::kBadCharset, 4, 5},
      {"bcd_de2_nibble_b", "iso87-bcd", 2, 3, {0x4B}, Errc::kBadCharset, 2, 3},
      {"bcd_de22_left_pad_nibble", "iso87-bcd", 22, 0, {0x10}, Errc::kBadPadding, 22, 0},
      {"bcd_de32_right_pad_nibble", "iso87-bcd", 32, 3, {0x55}, Errc::kBadPadding, 32, 3},
      {"bcd_de35_f_pad_nibble", "iso87-bcd", 35, 19, {0x00}, Errc::kBadPadding, 35, 19},
      {"bcd_de35_nibble_a_in_track", "iso87-bcd", 35, 1, {0xA7}, Errc::kBadCharset, 35, 1},
      {"bcd_de35_track_prefix_38_over_37", "iso87-bcd", 35, 0, {0x38}, Errc::kLengthTooLong, 35, 0},
      {"bcd_de41_control_char", "iso87-bcd", 41, 0, {0x1B}, Errc::kBadCharset, 41, 0},
      // iso93-ebcdic: MTI 0..3, bitmaps 4..19 and 20..35, DE 2 prefix at 36.
      {"ebcdic_mti_letter", "iso93-ebcdic", 0, 2, {0xC1}, Errc::kBadMti, 0, 0},
      {"ebcdic_mti_ascii_digit", "iso93-ebcdic", 0, 0, {'1'}, Errc::kBadMti, 0, 0},
      {"ebcdic_bitmap_g", "iso93-ebcdic", 0, 5, {0xC7}, Errc::kBadBitmap, 0, 4},
      {"ebcdic_bitmap_ascii_digit", "iso93-ebcdic", 0, 21, {'0'}, Errc::kBadBitmap, 0, 20},
      {"ebcdic_de2_prefix_20", "iso93-ebcdic", 2, 0, {0xF2, 0xF0}, Errc::kLengthTooLong, 2, 0},
      {"ebcdic_de2_prefix_ascii", "iso93-ebcdic", 2, 0, {'1', '6'}, Errc::kBadLengthPrefix, 2, 0},
      {"ebcdic_de2_letter", "iso93-ebcdic", 2, 6, {0xC1}, Errc::kBadCharset, 2, 6},
      {"ebcdic_de4_ascii_digit", "iso93-ebcdic", 4, 0, {'0'}, Errc::kBadCharset, 4, 0},
      {"ebcdic_de41_unmapped_byte", "iso93-ebcdic", 41, 2, {0x07}, Errc::kBadCharset, 41, 2},
      {"ebcdic_de37_special_in_anp", "iso93-ebcdic", 37, 0, {0x5B}, Errc::kBadCharset, 37, 0},
  };
  return kRows;
}

class Corrupt : public ::testing::TestWithParam<Corruption> {};

TEST_P(Corrupt, FailsWithCodeFieldAndOffset) {
  const Corruption& c = GetParam();
  const Dialect& d = builtin_dialect(c.dialect);
  const auto wire = encode_typical(d, false);
  MessageView good;
  ASSERT_TRUE(decode(d, wire, good).has_value());
  const auto parts = layout(good);
  std::size_t base = 0;
  if (c.de != 0) {
    const Part* p = part_of(parts, c.de);
    ASSERT_NE(p, nullptr) << "DE " << c.de << " not in the typical message";
    base = p->start;
  }
  auto bad = wire;
  ASSERT_LE(base + static_cast<std::size_t>(c.at) + c.bytes.size(), bad.size());
  for (std::size_t i = 0; i < c.bytes.size(); ++i) {
    bad[base + static_cast<std::size_t>(c.at) + i] = static_cast<std::byte>(c.bytes[i]);
  }
  ASSERT_NE(to_hex(bad), to_hex(wire)) << "the corruption must change a byte";
  std::size_t expected = static_cast<std::size_t>(c.error_at);
  if (c.field != 0) {
    const Part* p = part_of(parts, c.field);
    ASSERT_NE(p, nullptr);
    expected += p->start;
  }
  MessageView m;
  ASSERT_TRUE(decode(d, wire, m).has_value());
  const auto r = decode(d, bad, m);
  ASSERT_FALSE(r.has_value()) << c.name << " decoded";
  EXPECT_EQ(r.error().code, c.code) << describe_error(r.error());
  EXPECT_EQ(r.error().field, c.field) << describe_error(r.error());
  EXPECT_EQ(r.error().subfield, c.subfield) << describe_error(r.error());
  EXPECT_EQ(r.error().offset, expected) << describe_error(r.error());
  EXPECT_TRUE(no_fields(m));
  // measure() reads only lengths: it agrees on structural errors and never crashes.
  const auto mr = measure(d, bad);
  if (c.code == Errc::kLengthTooLong || c.code == Errc::kBadLengthPrefix ||
      c.code == Errc::kBadMti || c.code == Errc::kBadBitmap) {
    ASSERT_FALSE(mr.has_value());
    EXPECT_EQ(mr.error().code, c.code);
  }
}

INSTANTIATE_TEST_SUITE_P(Shipped, Corrupt, ::testing::ValuesIn(corruptions()),
                         [](const ::testing::TestParamInfo<Corruption>& pi) {
                           return std::string(pi.param.name);
                         });

// ---------------------------------------------------------------------------------------------
// Small hand-written messages.

Result<std::size_t> decode_text(const Dialect& d, std::string_view wire, MessageView& m) {
  return decode(d, as_bytes(wire), m);
}

TEST(Decode, EmptyInputIsTruncatedAtZero) {
  for (const auto name : builtin_dialect_names()) {
    MessageView m;
    const auto r = decode(builtin_dialect(name), {}, m);
    ASSERT_FALSE(r.has_value()) << name;
    EXPECT_EQ(r.error().code, Errc::kTruncated) << name;
    EXPECT_EQ(r.error().field, 0) << name;
    EXPECT_EQ(r.error().offset, 0U) << name;
    EXPECT_TRUE(no_fields(m));
  }
}

TEST(Decode, BadMtiInEachEncoding) {
  MessageView m;
  auto r = decode_text(builtin_dialect("iso87-ascii"), "01A02000000000000000000000", m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kBadMti);
  EXPECT_EQ(r.error().offset, 0U);
  r = decode(builtin_dialect("iso87-bcd"), from_hex("01A0200000000000000000"), m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kBadMti);
  r = decode(builtin_dialect("iso93-ebcdic"), from_hex("F0F1C1F0"), m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kBadMti);
}

// A dialect defining only DE 2, 3, 4, 11 and 41, with one bitmap.
constexpr std::string_view kSmallDialect = R"(
name = "small"
[message]
mti = "ascii"
bitmap = "ascii-hex"
max_bitmaps = 1
max_message_bytes = 64
[fields]
2 = { type = "n", length = "LL", max = 19 }
3 = { type = "n", length = "fixed", max = 6 }
4 = { type = "n", length = "fixed", max = 12 }
11 = { type = "n", length = "fixed", max = 6 }
41 = { type = "ans", length = "fixed", max = 8 }
)";

TEST(Decode, BitForAnUndefinedFieldIsUndefinedField) {
  const auto d = load_dialect(kSmallDialect, "inline");
  MessageView m;
  // Bits 3, 4 and 7 (0x32): DE 7 is not defined; it would start after DE 3 and DE 4.
  const std::string wire =
      "0100"
      "3200000000000000"
      "000000"
      "000000001000"
      "1124101010";
  const auto r = decode_text(*d, wire, m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kUndefinedField);
  EXPECT_EQ(r.error().field, 7);
  EXPECT_EQ(r.error().offset, 38U);
  EXPECT_TRUE(no_fields(m));
  // The same with only defined fields decodes.
  const std::string ok =
      "0100"
      "3000000000000000"
      "000000"
      "000000001000";
  ASSERT_TRUE(decode_text(*d, ok, m).has_value());
  EXPECT_TRUE(m.has(4));
}

TEST(Decode, SecondaryBitmapWithOneBitmapAllowedIsUndefinedFieldOne) {
  const auto d = load_dialect(kSmallDialect, "inline");
  MessageView m;
  const auto r = decode_text(*d,
                             "0100"
                             "B000000000000000"
                             "0000000000000000"
                             "000000",
                             m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kUndefinedField);
  EXPECT_EQ(r.error().field, 1);
  EXPECT_EQ(r.error().offset, 4U);  // the bitmap holding bit 1
}

TEST(Decode, LargerThanMaxMessageBytesIsMessageTooLarge) {
  const auto d = load_dialect(kSmallDialect, "inline");  // max_message_bytes = 64
  MessageView m;
  std::string wire =
      "0100"
      "4000000000000000"
      "19"
      "4761739001010135123";  // 41 bytes
  ASSERT_TRUE(decode_text(*d, wire, m).has_value());
  wire.append(64 - wire.size(), '0');
  auto r = decode_text(*d, wire, m);  // exactly 64: trailing bytes, not too large
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kTrailingBytes);
  EXPECT_EQ(r.error().offset, 41U);
  wire.push_back('0');
  r = decode_text(*d, wire, m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kMessageTooLarge);
  EXPECT_EQ(r.error().offset, 64U);
  EXPECT_TRUE(no_fields(m));
}

// DE 55 whose first object's length (6) runs past the 4 value bytes that follow.
TEST(Decode, MalformedIccDataIsBadTlvInField55) {
  const auto bad_tlv = from_hex("9F020600000001");
  for (const auto name : builtin_dialect_names()) {
    const Dialect& d = builtin_dialect(name);
    MessageBuilder b(d);
    b.reset(100);
    b.set_text(3, "000000");
    b.set_bytes(55, bad_tlv);  // the encoder does not look inside DE 55
    std::array<std::byte, 256> buf;
    const auto n = b.encode(buf);
    ASSERT_TRUE(n.has_value()) << name << ": " << why(n);
    MessageView m;
    const auto wire = std::span<const std::byte>(buf).first(*n);
    // Where DE 55's value starts: after MTI, one bitmap, DE 3 and the 3-digit prefix.
    const std::size_t value =
        d.mti_bytes() + d.bitmap_bytes() + d.field(3).fixed_wire_bytes + d.field(55).prefix_bytes;
    const std::size_t hex = d.field(55).encoding == Encoding::kAsciiHex ? 2 : 1;
    const auto r = decode(d, wire, m);
    ASSERT_FALSE(r.has_value()) << name;
    EXPECT_EQ(r.error().code, Errc::kBadTlv) << name << ": " << describe_error(r.error());
    EXPECT_EQ(r.error().field, 55) << name;
    EXPECT_EQ(r.error().offset, value + 2 * hex) << name << " (the length byte)";
    EXPECT_TRUE(no_fields(m));
  }
}

TEST(Decode, ValidIccDataDecodesInEveryDialect) {
  for (const auto name : builtin_dialect_names()) {
    const Dialect& d = builtin_dialect(name);
    MessageBuilder b(d);
    b.reset(100);
    b.set_bytes(55, icc_data());
    std::array<std::byte, 256> buf;
    const auto n = b.encode(buf);
    ASSERT_TRUE(n.has_value()) << name;
    MessageView m;
    const auto r = decode(d, std::span<const std::byte>(buf).first(*n), m);
    ASSERT_TRUE(r.has_value()) << name << ": " << why(r);
    std::array<std::byte, 64> scratch;
    EXPECT_EQ(to_hex(canonical_value(m.field(55), scratch)), to_hex(icc_data())) << name;
  }
}

// DE 95 (an 42, positional: n12 n12 x+n9 x+n9): the outer type allows letters, the subfields
// do not, so the composite check reports the subfield.
TEST(Decode, PositionalCompositeSubfieldErrorNamesTheSubfield) {
  const Dialect& d = builtin_dialect("iso87-ascii");
  struct Row {
    std::size_t at;
    char c;
    int subfield;
  };
  for (const Row& row : {Row{8, 'A', 1}, Row{23, 'Z', 2}, Row{24, 'X', 3}, Row{30, 'C', 3},
                         Row{33, 'B', 4}, Row{41, 'D', 4}}) {
    std::string de95 =
        "000000010000"
        "000000009000"
        "C00000150"
        "D00000025";
    de95[row.at] = row.c;
    MessageBuilder b(d);
    b.reset(420);
    b.set_text(11, "000123");
    b.set_text(95, de95);
    std::array<std::byte, 256> buf;
    const auto n = b.encode(buf);
    ASSERT_TRUE(n.has_value()) << why(n);
    MessageView m;
    const auto r = decode(d, std::span<const std::byte>(buf).first(*n), m);
    ASSERT_FALSE(r.has_value()) << de95;
    // MTI 4, two bitmaps 32, DE 11 6: DE 95 starts at 42.
    EXPECT_EQ(r.error().code, Errc::kBadCharset) << de95 << ": " << describe_error(r.error());
    EXPECT_EQ(r.error().field, 95) << de95;
    EXPECT_EQ(r.error().subfield, row.subfield) << de95;
    EXPECT_EQ(r.error().offset, 42 + row.at) << de95;
  }
}

TEST(DecodeComposite, BadSubfieldCharacterInProcessingCode) {
  const Dialect& d = builtin_dialect("iso87-ascii");
  const CompositeSpec& spec = d.composite(d.field(3));
  CompositeView cv;
  const auto r = decode_composite(spec, as_bytes("00A000"), 3, cv);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kBadCharset);
  EXPECT_EQ(r.error().field, 3);
  EXPECT_EQ(r.error().subfield, 2);
  EXPECT_EQ(r.error().offset, 2U);
  const auto r2 = decode_composite(spec, as_bytes("0020001"), 3, cv);
  ASSERT_FALSE(r2.has_value());
  EXPECT_EQ(r2.error().code, Errc::kBadSubfield);
  EXPECT_EQ(r2.error().offset, 6U);
}

TEST(Describe, NamesFieldAndOffsetButNeverTheContent) {
  const Dialect& d = builtin_dialect("iso87-ascii");
  // DE 2 prefix at 20, value at 22; 'X' replaces the sixth PAN digit.
  std::string wire =
      "0100"
      "4000000000000000"
      "16" +
      std::string(kPan);
  wire[27] = 'X';
  MessageView m;
  const auto r = decode_text(d, wire, m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kBadCharset);
  EXPECT_EQ(r.error().offset, 27U);
  const std::string text = describe_error(r.error());
  EXPECT_EQ(text.rfind("field 2 at offset 27: bad-charset", 0), 0U) << text;
  // No run of PAN digits (nor the bad character's neighbourhood) appears.
  for (std::size_t i = 0; i + 4 <= kPan.size(); ++i) {
    EXPECT_EQ(text.find(kPan.substr(i, 4)), std::string::npos) << text;
  }
  EXPECT_EQ(text.find("4761"), std::string::npos);
  EXPECT_EQ(text.find('X'), std::string::npos) << text;
}

TEST(Describe, RendersHeaderSubfieldAndTruncatesToTheBuffer) {
  std::array<char, 128> buf;
  EXPECT_EQ(describe(Error{Errc::kBadMti, 0, 0, 0}, buf), "offset 0: bad-mti");
  EXPECT_EQ(describe(Error{Errc::kBadCharset, 95, 3, 66}, buf),
            "field 95.3 at offset 66: bad-charset");
  std::array<char, 10> small;
  small.fill('#');
  const auto s = describe(Error{Errc::kLengthTooLong, 2, 0, 20}, small);
  EXPECT_EQ(s, "field 2 a");
  EXPECT_EQ(small[9], '\0');
  EXPECT_TRUE(describe(Error{}, std::span<char>()).empty());
}

// ---------------------------------------------------------------------------------------------
// Encoder negatives.

struct BadValue {
  const char* name;
  const char* dialect;
  int de;
  std::string value;  // canonical text
  Errc code;
  std::uint32_t offset;  // inside the value
};

void PrintTo(const BadValue& v, std::ostream* os) { *os << v.name; }

class EncodeRejects : public ::testing::TestWithParam<BadValue> {};

TEST_P(EncodeRejects, ValueWithCodeFieldAndOffset) {
  const BadValue& v = GetParam();
  const Dialect& d = builtin_dialect(v.dialect);
  MessageBuilder b(d);
  b.reset(100);
  b.set_text(11, "000001");
  b.set_text(v.de, v.value);
  std::vector<std::byte> buf(1024, std::byte{0xA5});
  const auto r = b.encode(buf);
  ASSERT_FALSE(r.has_value()) << v.name << " encoded";
  EXPECT_EQ(r.error().code, v.code) << describe_error(r.error());
  EXPECT_EQ(r.error().field, v.de);
  EXPECT_EQ(r.error().offset, v.offset);
}

const std::vector<BadValue>& bad_values() {
  static const std::vector<BadValue> kRows = {
      {"ascii_de4_13_digits", "iso87-ascii", 4, "1234567890123", Errc::kValueTooLong, 0},
      {"ascii_de2_20_digits", "iso87-ascii", 2, "47617390010101351234", Errc::kValueTooLong, 0},
      {"ascii_de41_9_chars", "iso87-ascii", 41, "TERMINAL1", Errc::kValueTooLong, 0},
      {"ascii_de4_letters", "iso87-ascii", 4, "00000000ABCD", Errc::kBadCharset, 8},
      {"ascii_de2_letter_o", "iso87-ascii", 2, "47617390O1010135", Errc::kBadCharset, 8},
      {"ascii_de49_dollar", "iso87-ascii", 49, "US$", Errc::kBadCharset, 2},
      {"ascii_de43_tab", "iso87-ascii", 43, "ACME\tSTORE", Errc::kBadCharset, 4},
      {"ascii_de28_no_sign", "iso87-ascii", 28, "100000150", Errc::kBadCharset, 0},
      {"ascii_de35_letter", "iso87-ascii", 35, "4761739001010135=2212A", Errc::kBadCharset, 21},
      {"bcd_de4_13_digits", "iso87-bcd", 4, "1234567890123", Errc::kValueTooLong, 0},
      {"bcd_de2_20_digits", "iso87-bcd", 2, "47617390010101351234", Errc::kValueTooLong, 0},
      {"bcd_de4_letter", "iso87-bcd", 4, "0000000A0000", Errc::kBadCharset, 7},
      {"bcd_de35_letter", "iso87-bcd", 35, "4761739001010135=22A2", Errc::kBadCharset, 19},
      {"bcd_de28_no_sign", "iso87-bcd", 28, "X00000150", Errc::kBadCharset, 0},
      {"bcd_de28_letter_after_sign", "iso87-bcd", 28, "C0000A150", Errc::kBadCharset, 5},
      {"ebcdic_de39_letter", "iso93-ebcdic", 39, "0A0", Errc::kBadCharset, 1},
      {"ebcdic_de43_100_chars", "iso93-ebcdic", 43, std::string(100, 'A'), Errc::kValueTooLong, 0},
      {"ebcdic_de43_non_ascii", "iso93-ebcdic", 43, "CAF\xC9", Errc::kBadCharset, 3},
      {"binbitmap_de12_7_digits", "iso87-ascii-binbitmap", 12, "1010101", Errc::kValueTooLong, 0},
  };
  return kRows;
}

INSTANTIATE_TEST_SUITE_P(Shipped, EncodeRejects, ::testing::ValuesIn(bad_values()),
                         [](const ::testing::TestParamInfo<BadValue>& pi) {
                           return std::string(pi.param.name);
                         });

TEST(Encode, BinaryFixedFieldOfTheWrongSizeIsRejected) {
  for (const auto name : builtin_dialect_names()) {
    const Dialect& d = builtin_dialect(name);
    const auto seven = from_hex("01020304050607");
    const auto nine = from_hex("010203040506070809");
    MessageBuilder b(d);
    b.reset(100);
    b.set_bytes(52, seven);
    std::array<std::byte, 256> buf;
    auto r = b.encode(buf);
    ASSERT_FALSE(r.has_value()) << name;
    EXPECT_EQ(r.error().code, Errc::kValueTooShort) << name;
    EXPECT_EQ(r.error().field, 52) << name;
    b.set_bytes(52, nine);
    r = b.encode(buf);
    ASSERT_FALSE(r.has_value()) << name;
    EXPECT_EQ(r.error().code, Errc::kValueTooLong) << name;
    EXPECT_EQ(r.error().field, 52) << name;
  }
}

TEST(Encode, IccDataLongerThanMaxIsValueTooLong) {
  for (const auto name : builtin_dialect_names()) {
    const Dialect& d = builtin_dialect(name);
    const std::vector<std::byte> big(d.field(55).max_units + 1, std::byte{0x5A});
    MessageBuilder b(d);
    b.reset(100);
    b.set_bytes(55, big);
    std::vector<std::byte> buf(2048);
    const auto r = b.encode(buf);
    ASSERT_FALSE(r.has_value()) << name;
    EXPECT_EQ(r.error().code, Errc::kValueTooLong) << name;
    EXPECT_EQ(r.error().field, 55) << name;
  }
}

// An x+n amount needs its sign: an empty value must not become a message without one.
TEST(Encode, EmptySignedAmountIsRejected) {
  for (const char* name : {"iso87-ascii", "iso87-ascii-binbitmap", "iso87-bcd"}) {
    const Dialect& d = builtin_dialect(name);
    ASSERT_EQ(d.field(28).type, ContentType::kXn);
    MessageBuilder b(d);
    b.reset(100);
    b.set_text(28, "");
    std::vector<std::byte> buf(256, std::byte{0xA5});
    const auto r = b.encode(buf);
    if (r.has_value()) {
      // Accepting it is only acceptable if the result is a valid message.
      MessageView m;
      const auto dr = decode(d, std::span<const std::byte>(buf).first(*r), m);
      ADD_FAILURE() << name << ": empty x+n DE 28 encoded as "
                    << to_hex(std::span<const std::byte>(buf).first(*r))
                    << ", which decodes as: " << why(dr);
    } else {
      EXPECT_EQ(r.error().field, 28) << name;
    }
  }
}

TEST(Encode, BadMtiIsRejected) {
  MessageBuilder b(builtin_dialect("iso87-ascii"));
  b.reset(10000);
  std::array<std::byte, 64> buf;
  const auto r = b.encode(buf);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kBadMti);
}

TEST(Encode, MessageLargerThanMaxIsMessageTooLarge) {
  const auto d = load_dialect(kSmallDialect, "inline");  // max_message_bytes = 64
  MessageBuilder b(*d);
  b.reset(100);
  b.set_text(2, "4761739001010135123");
  b.set_text(3, "000000");
  b.set_text(4, "000000012345");
  b.set_text(11, "000001");
  b.set_text(41, "TERM0001");  // 4 + 16 + 21 + 6 + 12 + 6 + 8 = 73 bytes
  std::array<std::byte, 256> buf;
  const auto r = b.encode(buf);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kMessageTooLarge);
  EXPECT_EQ(r.error().offset, 73U);
  b.clear(41);
  b.clear(11);  // 59 bytes
  const auto ok = b.encode(buf);
  ASSERT_TRUE(ok.has_value()) << why(ok);
  EXPECT_EQ(*ok, 59U);
}

// A dialect built directly (bypassing the loader, which refuses such a field) that defines
// DE 70 but allows only the primary bitmap: the encoder must refuse to set bit 1.
TEST(Encode, FieldAbove64WithOneBitmapIsRejected) {
  DialectInfo info;
  info.name = "one-bitmap";
  info.mti_encoding = MtiEncoding::kAscii;
  info.bitmap_encoding = BitmapEncoding::kAsciiHex;
  info.max_bitmaps = 1;
  std::array<FieldSpec, kFieldSlots> fields{};
  std::array<std::string, kFieldSlots> names{};
  for (const int de : {3, 70}) {
    FieldSpec f;
    f.type = ContentType::kN;
    f.max_units = de == 3 ? 6 : 3;
    f.pad_side = PadSide::kLeft;
    f.pad_char = '0';
    ASSERT_EQ(finalize_field_spec(f), "");
    fields[static_cast<std::size_t>(de)] = f;
  }
  const Dialect d(std::move(info), fields, names, std::vector<CompositeSpec>(1));
  MessageBuilder b(d);
  b.reset(800);
  b.set_text(3, "990000");
  b.set_text(70, "301");
  std::array<std::byte, 128> buf;
  buf.fill(std::byte{0xA5});
  const auto r = b.encode(buf);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kUndefinedField);
  EXPECT_EQ(r.error().field, 70);
  EXPECT_EQ(r.error().offset, 4U);  // where the bitmaps would start
  b.clear(70);
  const auto ok = b.encode(buf);
  ASSERT_TRUE(ok.has_value()) << why(ok);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), *ok),
            "0800"
            "2000000000000000"
            "990000");
}

TEST(EncodeDeathTest, SettingAFieldTheDialectDoesNotDefineAborts) {
  const auto d = load_dialect(kSmallDialect, "inline");
  MessageBuilder b(*d);
  b.reset(100);
  EXPECT_DEATH(b.set_text(70, "301"), "defined");
}

}  // namespace
}  // namespace authswitch::iso8583
