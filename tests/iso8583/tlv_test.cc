#include "iso8583/tlv.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace {

using authswitch::iso8583::Errc;
using authswitch::iso8583::Error;
using authswitch::iso8583::find_tlv;
using authswitch::iso8583::length_byte_count;
using authswitch::iso8583::tag_byte_count;
using authswitch::iso8583::tlv_tag_valid;
using authswitch::iso8583::TlvObject;
using authswitch::iso8583::TlvReader;
using authswitch::iso8583::TlvWriter;
using authswitch::iso8583::validate_tlv;

using Bytes = std::vector<std::byte>;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  ADD_FAILURE() << "not a hex digit: " << c;
  return 0;
}

Bytes from_hex(std::string_view hex) {
  EXPECT_EQ(hex.size() % 2, 0U) << hex;
  Bytes out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::byte>(hex_digit(hex[i]) * 16 + hex_digit(hex[i + 1])));
  }
  return out;
}

std::string to_hex(std::span<const std::byte> bytes) {
  static constexpr std::string_view kDigits = "0123456789abcdef";
  std::string out;
  for (const std::byte b : bytes) {
    const auto v = std::to_integer<unsigned>(b);
    out.push_back(kDigits[v >> 4]);
    out.push_back(kDigits[v & 0xFU]);
  }
  return out;
}

Bytes filled(std::size_t size, std::uint8_t value) {
  Bytes out(size, static_cast<std::byte>(value));  // not braces: that would be a 2-byte list
  return out;
}

// Walks one level and returns every object, or the error.
struct Walk {
  std::vector<TlvObject> objects;
  std::optional<Error> error;
};

Walk walk_level(std::span<const std::byte> block) {
  Walk walk;
  TlvReader reader(block);
  TlvObject object;
  for (;;) {
    const auto got = reader.next(object);
    if (!got) {
      walk.error = got.error();
      return walk;
    }
    if (!*got) {
      return walk;
    }
    walk.objects.push_back(object);
  }
}

// ---------------------------------------------------------------------------------------------
// Golden blocks: the DE 55 values of vectors v03, v07 and v14 (tests/data/vectors/*.json).

struct ExpectedObject {
  std::uint32_t tag;
  std::size_t length;
  const char* value_hex;  // null: compared only through the round trips (track 2 data)
};

struct GoldenBlock {
  const char* name;
  std::string hex;
  std::vector<ExpectedObject> objects;
};

const std::vector<GoldenBlock>& golden_blocks() {
  static const std::vector<GoldenBlock> kBlocks = {
      {"v03", "9f02060000000123455f340102", {{0x9F02, 6, "000000012345"}, {0x5F34, 1, "02"}}},
      {"v07",
       "9a063231303732309f020c303030303030303030353031",
       {{0x9A, 6, "323130373230"}, {0x9F02, 12, "303030303030303030353031"}}},
      {"v14",
       std::string(
           "5f2a02097857134761739001010135d22122011955945800000f5f280208405f3401018202180084"
           "07a0000000031010950580800080009a032211119b0268009c01009f02060000000001289f080200"
           "969f0902008c9f100706010a03a0d8009f1a0203569f1e0845303239363935319f21031039389f26"
           "0886ba748bcada61049f2701809f3303e0f0c89f34035e00009f3501229f3602040f9f37043b391e"
           "1d9f4005f000f0a0019f4104000000059f42020840"),
       {{0x5F2A, 2, "0978"},         {0x57, 19, nullptr},
        {0x5F28, 2, "0840"},         {0x5F34, 1, "01"},
        {0x82, 2, "1800"},           {0x84, 7, "a0000000031010"},
        {0x95, 5, "8080008000"},     {0x9A, 3, "221111"},
        {0x9B, 2, "6800"},           {0x9C, 1, "00"},
        {0x9F02, 6, "000000000128"}, {0x9F08, 2, "0096"},
        {0x9F09, 2, "008c"},         {0x9F10, 7, "06010a03a0d800"},
        {0x9F1A, 2, "0356"},         {0x9F1E, 8, "4530323936393531"},
        {0x9F21, 3, "103938"},       {0x9F26, 8, "86ba748bcada6104"},
        {0x9F27, 1, "80"},           {0x9F33, 3, "e0f0c8"},
        {0x9F34, 3, "5e0000"},       {0x9F35, 1, "22"},
        {0x9F36, 2, "040f"},         {0x9F37, 4, "3b391e1d"},
        {0x9F40, 5, "f000f0a001"},   {0x9F41, 4, "00000005"},
        {0x9F42, 2, "0840"}}},
  };
  return kBlocks;
}

// Template 0x70 (READ RECORD response) holding track 2 equivalent data 0x57 and an
// application PAN 0x5A, both with dummy digits, followed by 0x9F37.
constexpr std::string_view kTemplate70 = "70115705111122223f5a0811112222333344449f370401020304";

}  // namespace

TEST(TlvGoldenTest, TableMatchesVectorSizes) {
  const auto& blocks = golden_blocks();
  ASSERT_EQ(blocks.size(), 3U);
  EXPECT_EQ(from_hex(blocks[0].hex).size(), 13U);
  EXPECT_EQ(from_hex(blocks[2].hex).size(), 181U);  // v14 wire_length
  EXPECT_EQ(blocks[2].objects.size(), 27U);
}

TEST(TlvReaderTest, WalksGoldenBlocks) {
  for (const GoldenBlock& golden : golden_blocks()) {
    SCOPED_TRACE(golden.name);
    const Bytes block = from_hex(golden.hex);
    const Walk walk = walk_level(block);
    ASSERT_FALSE(walk.error.has_value());
    ASSERT_EQ(walk.objects.size(), golden.objects.size());
    std::size_t offset = 0;
    for (std::size_t i = 0; i < walk.objects.size(); ++i) {
      const TlvObject& got = walk.objects[i];
      const ExpectedObject& want = golden.objects[i];
      SCOPED_TRACE(i);
      EXPECT_EQ(got.tag, want.tag);
      EXPECT_EQ(got.tag_bytes.size(), tag_byte_count(want.tag));
      EXPECT_EQ(got.value.size(), want.length);
      if (want.value_hex != nullptr) {
        EXPECT_EQ(to_hex(got.value), want.value_hex);
      }
      EXPECT_FALSE(got.constructed);
      // Objects are contiguous views into the block: tag, one length byte, value.
      EXPECT_EQ(got.raw.data(), block.data() + offset);
      EXPECT_EQ(got.raw.size(), got.tag_bytes.size() + 1 + got.value.size());
      EXPECT_EQ(got.value.data() + got.value.size(), got.raw.data() + got.raw.size());
      offset += got.raw.size();
    }
    EXPECT_EQ(offset, block.size());
  }
}

TEST(TlvReaderTest, EndIsStableAndOffsetReachesBlockSize) {
  const Bytes block = from_hex(golden_blocks()[0].hex);
  TlvReader reader(block);
  TlvObject object;
  for (int i = 0; i < 2; ++i) {
    const auto got = reader.next(object);
    ASSERT_TRUE(got.has_value());
    EXPECT_TRUE(*got);
  }
  for (int i = 0; i < 2; ++i) {
    const auto got = reader.next(object);
    ASSERT_TRUE(got.has_value());
    EXPECT_FALSE(*got);
  }
  EXPECT_EQ(reader.offset(), block.size());
}

TEST(TlvReaderTest, EmptyBlockHasNoObjects) {
  const Walk walk = walk_level({});
  EXPECT_FALSE(walk.error.has_value());
  EXPECT_TRUE(walk.objects.empty());
  EXPECT_TRUE(validate_tlv({}, 55).has_value());
}

TEST(TlvValidateTest, AcceptsGoldenBlocks) {
  for (const GoldenBlock& golden : golden_blocks()) {
    SCOPED_TRACE(golden.name);
    const Bytes block = from_hex(golden.hex);
    EXPECT_TRUE(validate_tlv(block, 55).has_value());
    EXPECT_TRUE(validate_tlv(block, 55, 1).has_value());
  }
}

TEST(TlvWriterTest, AppendRawReproducesGoldenBlocks) {
  for (const GoldenBlock& golden : golden_blocks()) {
    SCOPED_TRACE(golden.name);
    const Bytes block = from_hex(golden.hex);
    Bytes out(block.size());
    TlvWriter writer(out);
    for (const TlvObject& object : walk_level(block).objects) {
      writer.append_raw(object);
    }
    const auto size = writer.finish();
    ASSERT_TRUE(size.has_value());
    EXPECT_EQ(*size, block.size());
    EXPECT_EQ(to_hex(out), golden.hex);
  }
}

TEST(TlvWriterTest, AppendReproducesGoldenBlocks) {
  for (const GoldenBlock& golden : golden_blocks()) {
    SCOPED_TRACE(golden.name);
    const Bytes block = from_hex(golden.hex);
    Bytes out(block.size());  // exactly the size: minimal lengths need no more
    TlvWriter writer(out);
    for (const TlvObject& object : walk_level(block).objects) {
      writer.append(object.tag, object.value);
    }
    const auto size = writer.finish();
    ASSERT_TRUE(size.has_value());
    EXPECT_EQ(*size, block.size());
    EXPECT_EQ(to_hex(out), golden.hex);
  }
}

// ---------------------------------------------------------------------------------------------
// find_tlv

TEST(TlvFindTest, FindsTagsInV14) {
  const Bytes block = from_hex(golden_blocks()[2].hex);
  struct Case {
    std::uint32_t tag;
    const char* value_hex;  // null: absent
  };
  const std::vector<Case> cases = {
      {0x9F37, "3b391e1d"},                     // unpredictable number
      {0x5F2A, "0978"},                         // first object
      {0x9F42, "0840"},                         // last object
      {0x9C, "00"},         {0x9F03, nullptr},  // amount, other: not present
      {0x70, nullptr},      {0x9F, nullptr},    // a prefix of many tags is not a tag
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.tag);
    const auto found = find_tlv(block, c.tag);
    ASSERT_TRUE(found.has_value());
    if (c.value_hex == nullptr) {
      EXPECT_FALSE(found->has_value());
      continue;
    }
    ASSERT_TRUE(found->has_value());
    EXPECT_EQ((*found)->tag, c.tag);
    EXPECT_EQ(to_hex((*found)->value), c.value_hex);
  }
}

TEST(TlvReaderTest, ConstructedTemplateIsOneObjectWithChildren) {
  const Bytes block = from_hex(kTemplate70);
  const Walk top = walk_level(block);
  ASSERT_FALSE(top.error.has_value());
  ASSERT_EQ(top.objects.size(), 2U);
  const TlvObject& tmpl = top.objects[0];
  EXPECT_EQ(tmpl.tag, 0x70U);
  EXPECT_TRUE(tmpl.constructed);
  EXPECT_EQ(tmpl.value.size(), 17U);
  EXPECT_EQ(top.objects[1].tag, 0x9F37U);
  EXPECT_FALSE(top.objects[1].constructed);

  const Walk children = walk_level(tmpl.value);
  ASSERT_FALSE(children.error.has_value());
  ASSERT_EQ(children.objects.size(), 2U);
  EXPECT_EQ(children.objects[0].tag, 0x57U);
  EXPECT_EQ(to_hex(children.objects[0].value), "111122223f");
  EXPECT_EQ(children.objects[1].tag, 0x5AU);
  EXPECT_EQ(children.objects[1].value.size(), 8U);
  EXPECT_TRUE(validate_tlv(block, 55).has_value());
}

TEST(TlvFindTest, FindsInsideConstructedTemplate) {
  const Bytes block = from_hex(kTemplate70);
  const auto pan = find_tlv(block, 0x5A);
  ASSERT_TRUE(pan.has_value());
  ASSERT_TRUE(pan->has_value());
  EXPECT_EQ((*pan)->value.data(), block.data() + 11);
  EXPECT_EQ((*pan)->value.size(), 8U);

  const auto tmpl = find_tlv(block, 0x70);  // the template itself is found before its children
  ASSERT_TRUE(tmpl.has_value());
  ASSERT_TRUE(tmpl->has_value());
  EXPECT_TRUE((*tmpl)->constructed);
  EXPECT_EQ((*tmpl)->raw.size(), 19U);

  const auto after = find_tlv(block, 0x9F37);  // the walk climbs back out of the template
  ASSERT_TRUE(after.has_value());
  ASSERT_TRUE(after->has_value());
  EXPECT_EQ(to_hex((*after)->value), "01020304");
}

TEST(TlvFindTest, StopsAtTheTagAndReportsEarlierErrors) {
  // The tag is found before the malformed tail, which find does not examine.
  const Bytes ok_then_bad = from_hex("9a032211119f");
  const auto found = find_tlv(ok_then_bad, 0x9A);
  ASSERT_TRUE(found.has_value());
  EXPECT_TRUE(found->has_value());
  // Looking further reaches the malformed tail.
  const auto missing = find_tlv(ok_then_bad, 0x9C, 55);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, Errc::kBadTlv);
  EXPECT_EQ(missing.error().field, 55);
  EXPECT_EQ(missing.error().offset, 6U);
}

// ---------------------------------------------------------------------------------------------
// Writer: templates, long forms, non-minimal lengths.

TEST(TlvWriterTest, BuildsConstructedTemplate) {
  std::array<std::byte, 64> out{};
  TlvWriter writer(out);
  writer.begin_constructed(0x70);
  writer.append(0x57, from_hex("111122223f"));
  writer.append(0x5A, from_hex("1111222233334444"));
  writer.end_constructed();
  writer.append(0x9F37, from_hex("01020304"));
  const auto size = writer.finish();
  ASSERT_TRUE(size.has_value());
  EXPECT_EQ(to_hex(std::span(out).first(*size)), kTemplate70);
}

TEST(TlvWriterTest, NestedTemplatesAndDepthLimit) {
  // Five levels: 70 > 71 > 72 > 73 > 9C.
  std::array<std::byte, 32> out{};
  TlvWriter writer(out);
  writer.begin_constructed(0x70);
  writer.begin_constructed(0x71);
  writer.begin_constructed(0x72);
  writer.begin_constructed(0x73);
  writer.append(0x9C, from_hex("00"));
  writer.end_constructed();
  writer.end_constructed();
  writer.end_constructed();
  writer.end_constructed();
  const auto size = writer.finish();
  ASSERT_TRUE(size.has_value());
  const auto block = std::span<const std::byte>(out).first(*size);
  EXPECT_EQ(to_hex(block), "70097107720573039c0100");

  EXPECT_TRUE(validate_tlv(block, 55, 5).has_value());
  const auto too_deep = validate_tlv(block, 55, 4);
  ASSERT_FALSE(too_deep.has_value());
  EXPECT_EQ(too_deep.error().code, Errc::kBadTlv);
  EXPECT_EQ(too_deep.error().offset, 8U);  // the object at level 5
  // find_tlv is bounded by the default depth (4) too.
  const auto found = find_tlv(block, 0x9C);
  ASSERT_FALSE(found.has_value());
  EXPECT_EQ(found.error().offset, 8U);
  const auto shallow = find_tlv(block, 0x73);
  ASSERT_TRUE(shallow.has_value());
  EXPECT_TRUE(shallow->has_value());
}

TEST(TlvWriterTest, LongValuesUseLongForms) {
  struct Case {
    std::size_t value_size;
    const char* header_hex;  // tag DF01 plus minimal length
  };
  const std::vector<Case> cases = {
      {0, "df0100"},       {127, "df017f"},       {128, "df018180"},
      {200, "df0181c8"},   {255, "df0181ff"},     {256, "df01820100"},
      {300, "df0182012c"}, {65535, "df0182ffff"}, {65536, "df0183010000"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.value_size);
    const Bytes value = filled(c.value_size, 0xA5);
    Bytes out(c.value_size + 8);
    TlvWriter writer(out);
    writer.append(0xDF01, value);
    const auto size = writer.finish();
    ASSERT_TRUE(size.has_value());
    const std::string header = c.header_hex;
    EXPECT_EQ(*size, header.size() / 2 + c.value_size);
    EXPECT_EQ(to_hex(std::span(out).first(header.size() / 2)), header);

    const auto found = find_tlv(std::span(out).first(*size), 0xDF01);
    ASSERT_TRUE(found.has_value());
    ASSERT_TRUE(found->has_value());
    EXPECT_EQ((*found)->value.size(), c.value_size);
    EXPECT_EQ((*found)->raw.size(), *size);
  }
}

TEST(TlvWriterTest, LongTemplateMovesValueForLongForm) {
  struct Case {
    std::size_t child_size;
    const char* template_header_hex;
    std::size_t child_offset;
  };
  // A 200-byte child is 204 bytes of template value (81 CC); a 300-byte one is 305 (82 01 31).
  const std::vector<Case> cases = {{200, "7081cc", 3}, {300, "70820131", 4}, {10, "700d", 2}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.child_size);
    const Bytes child = filled(c.child_size, 0x5C);
    Bytes out(c.child_size + 16);
    TlvWriter writer(out);
    writer.begin_constructed(0x70);
    writer.append(0x9F4B, child);
    writer.end_constructed();
    writer.append(0x9C, from_hex("00"));
    const auto size = writer.finish();
    ASSERT_TRUE(size.has_value());
    const auto block = std::span<const std::byte>(out).first(*size);
    const std::string header = c.template_header_hex;
    EXPECT_EQ(to_hex(block.first(header.size() / 2)), header);
    EXPECT_TRUE(validate_tlv(block, 55).has_value());

    const auto inner = find_tlv(block, 0x9F4B);
    ASSERT_TRUE(inner.has_value());
    ASSERT_TRUE(inner->has_value());
    EXPECT_EQ((*inner)->raw.data(), block.data() + c.child_offset);
    EXPECT_EQ(to_hex((*inner)->value), to_hex(child));
    const auto last = find_tlv(block, 0x9C);
    ASSERT_TRUE(last.has_value());
    ASSERT_TRUE(last->has_value());
    EXPECT_EQ((*last)->raw.data() + 3, block.data() + block.size());
  }
}

TEST(TlvWriterTest, NonMinimalLengthKeptByAppendRawNormalisedByAppend) {
  struct Case {
    const char* wire_hex;
    const char* minimal_hex;
  };
  const std::vector<Case> cases = {
      {"9f028106000000000128", "9f0206000000000128"},
      {"5a820002aabb", "5a02aabb"},
      {"5a8400000001cc", "5a01cc"},
      {"df81810181020102", "df818101020102"},  // four-byte tag, too
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.wire_hex);
    const Bytes block = from_hex(c.wire_hex);
    const Walk walk = walk_level(block);
    ASSERT_FALSE(walk.error.has_value());
    ASSERT_EQ(walk.objects.size(), 1U);
    const TlvObject& object = walk.objects[0];
    EXPECT_EQ(object.raw.size(), block.size());

    std::array<std::byte, 16> raw_out{};
    TlvWriter raw_writer(raw_out);
    raw_writer.append_raw(object);
    const auto raw_size = raw_writer.finish();
    ASSERT_TRUE(raw_size.has_value());
    EXPECT_EQ(to_hex(std::span(raw_out).first(*raw_size)), c.wire_hex);

    std::array<std::byte, 16> minimal_out{};
    TlvWriter minimal_writer(minimal_out);
    minimal_writer.append(object.tag, object.value);
    const auto minimal_size = minimal_writer.finish();
    ASSERT_TRUE(minimal_size.has_value());
    EXPECT_EQ(to_hex(std::span(minimal_out).first(*minimal_size)), c.minimal_hex);
  }
}

TEST(TlvReaderTest, ParsesFourByteTagsAndLengthForms) {
  const Bytes block = from_hex("df8181017f" + std::string(254, 'e'));
  const Walk walk = walk_level(block);
  ASSERT_FALSE(walk.error.has_value());
  ASSERT_EQ(walk.objects.size(), 1U);
  EXPECT_EQ(walk.objects[0].tag, 0xDF818101U);
  EXPECT_EQ(walk.objects[0].tag_bytes.size(), 4U);
  EXPECT_FALSE(walk.objects[0].constructed);  // DF: private class, primitive
  EXPECT_EQ(walk.objects[0].value.size(), 127U);
}

// ---------------------------------------------------------------------------------------------
// Padding (EMV Book 3 Annex B, ISO/IEC 7816-4): 0x00 and 0xFF between objects are skipped.

TEST(TlvReaderTest, SkipsPadding) {
  struct Case {
    const char* name;
    const char* hex;
    std::vector<std::uint32_t> tags;
  };
  const std::vector<Case> cases = {
      {"leading", "00009a03221111", {0x9A}},
      {"between", "9a03221111ff009c0100", {0x9A, 0x9C}},
      {"trailing", "9c0100ffff0000", {0x9C}},
      {"only padding", "00ff00ff", {}},
      {"value bytes are not padding", "9c01ff", {0x9C}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Bytes block = from_hex(c.hex);
    const Walk walk = walk_level(block);
    ASSERT_FALSE(walk.error.has_value());
    ASSERT_EQ(walk.objects.size(), c.tags.size());
    for (std::size_t i = 0; i < c.tags.size(); ++i) {
      EXPECT_EQ(walk.objects[i].tag, c.tags[i]);
    }
    EXPECT_TRUE(validate_tlv(block, 55).has_value());
  }
}

TEST(TlvReaderTest, SkipsPaddingInsideTemplates) {
  // EMV SU 69: padding inside a template counts in the template's length.
  const Bytes block = from_hex("700a009c0100ff9a03221111");
  EXPECT_TRUE(validate_tlv(block, 55).has_value());
  const auto found = find_tlv(block, 0x9A);
  ASSERT_TRUE(found.has_value());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ(to_hex((*found)->value), "221111");
}

// ---------------------------------------------------------------------------------------------
// Malformed blocks: kBadTlv with the byte offset inside the block.

TEST(TlvValidateTest, RejectsMalformedBlocks) {
  struct Case {
    const char* name;
    const char* hex;
    std::uint32_t offset;
    int max_depth;
    bool top_level_fails;  // whether a one-level TlvReader sees the error too
  };
  const std::vector<Case> cases = {
      {"truncated tag", "9f", 1, 4, true},
      {"truncated multi-byte tag", "df81", 2, 4, true},
      {"tag longer than 4 bytes", "df8181810100", 3, 4, true},
      {"truncated before length", "9f02", 2, 4, true},
      {"truncated single-byte tag length", "9a032211115a", 6, 4, true},
      {"truncated long-form length", "5a8201", 3, 4, true},
      {"indefinite length 0x80", "70800000", 1, 4, true},
      {"length of five bytes 0x85", "5a850000000001aa", 1, 4, true},
      {"length past end", "9f020600000001", 2, 4, true},
      {"second object past end", "9a032211119c0201", 6, 4, true},
      {"long-form length past end", "5a8180aabb", 1, 4, true},
      {"child overruns template", "70035a05019a03221111", 3, 4, false},
      {"truncated tag inside template", "70019f", 3, 4, false},
      {"depth limit exceeded", "70097107720573039c0100", 8, 4, false},
      {"template at depth 1", "70039c0100", 2, 1, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Bytes block = from_hex(c.hex);
    const auto result = validate_tlv(block, 55, c.max_depth);
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code, Errc::kBadTlv);
    EXPECT_EQ(result.error().field, 55);
    EXPECT_EQ(result.error().offset, c.offset);

    const Walk walk = walk_level(block);
    EXPECT_EQ(walk.error.has_value(), c.top_level_fails);
    if (walk.error.has_value()) {
      EXPECT_EQ(walk.error->offset, c.offset);
    }
  }
}

TEST(TlvValidateTest, ReportsCallersFieldNumber) {
  const Bytes block = from_hex("9f02");
  const auto result = validate_tlv(block, 112);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().field, 112);

  TlvReader reader(block, 111, 40);  // base offset: the block starts 40 bytes into the field
  TlvObject object;
  const auto got = reader.next(object);
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().field, 111);
  EXPECT_EQ(got.error().offset, 42U);
}

TEST(TlvReaderTest, ErrorIsSticky) {
  const Bytes block = from_hex("9c01009f");
  TlvReader reader(block);
  TlvObject object;
  const auto first = reader.next(object);
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(*first);
  for (int i = 0; i < 3; ++i) {
    const auto got = reader.next(object);
    ASSERT_FALSE(got.has_value());
    EXPECT_EQ(got.error().offset, 4U);
  }
  EXPECT_EQ(object.tag, 0x9CU);  // not overwritten by the failures
}

// ---------------------------------------------------------------------------------------------
// Writer overflow: kBufferTooSmall, sticky.

TEST(TlvWriterTest, OverflowIsSticky) {
  std::array<std::byte, 12> out{};
  TlvWriter writer(out, 55);
  writer.append(0x9A, from_hex("221111"));          // 5 bytes
  writer.append(0x9F02, from_hex("000000000128"));  // 9 bytes: does not fit
  EXPECT_TRUE(writer.failed());
  writer.append(0x9C, from_hex("00"));  // would fit, but the error stays
  const auto size = writer.finish();
  ASSERT_FALSE(size.has_value());
  EXPECT_EQ(size.error().code, Errc::kBufferTooSmall);
  EXPECT_EQ(size.error().field, 55);
  EXPECT_EQ(size.error().offset, 5U);
  EXPECT_EQ(writer.size(), 5U);
}

TEST(TlvWriterTest, OverflowCases) {
  const Bytes value128 = filled(128, 0x11);
  const Bytes raw_block = from_hex("9f0206000000000128");
  const TlvObject raw_object = walk_level(raw_block).objects.at(0);
  struct Case {
    const char* name;
    std::size_t capacity;
    void (*build)(TlvWriter&, std::span<const std::byte>, const TlvObject&);
  };
  const std::vector<Case> cases = {
      {"append header", 1,
       [](TlvWriter& w, std::span<const std::byte>, const TlvObject&) { w.append(0x9F02, {}); }},
      {"append_raw", 8,
       [](TlvWriter& w, std::span<const std::byte>, const TlvObject& o) { w.append_raw(o); }},
      {"begin_constructed", 1,
       [](TlvWriter& w, std::span<const std::byte>, const TlvObject&) {
         w.begin_constructed(0x70);
         w.end_constructed();
       }},
      // 70 + 1 reserved byte + 9F4B 81 80 + 128 bytes fits in 134, but the long form of the
      // template's length (70 81 84) needs one byte more.
      {"template grows to long form", 134,
       [](TlvWriter& w, std::span<const std::byte> v, const TlvObject&) {
         w.begin_constructed(0x70);
         w.append(0x9F4B, v);
         w.end_constructed();
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Bytes out(c.capacity);
    TlvWriter writer(out);
    c.build(writer, value128, raw_object);
    const auto size = writer.finish();
    ASSERT_FALSE(size.has_value());
    EXPECT_EQ(size.error().code, Errc::kBufferTooSmall);
  }
  // One byte more and the template fits.
  Bytes out(135);
  TlvWriter writer(out);
  writer.begin_constructed(0x70);
  writer.append(0x9F4B, value128);
  writer.end_constructed();
  const auto size = writer.finish();
  ASSERT_TRUE(size.has_value());
  EXPECT_EQ(*size, 135U);
  EXPECT_EQ(to_hex(std::span(out).first(6)), "7081849f4b81");
}

TEST(TlvWriterTest, EmptyWriterFinishesWithZero) {
  TlvWriter writer(std::span<std::byte>{});
  const auto size = writer.finish();
  ASSERT_TRUE(size.has_value());
  EXPECT_EQ(*size, 0U);
}

TEST(TlvWriterTest, AppendValueMayAliasOutput) {
  // Rewrite a block in place, dropping its first object: values move down over their source.
  Bytes buf = from_hex("9a032211119c0100df0181c8" + std::string(400, '7'));
  const Walk walk = walk_level(buf);
  ASSERT_EQ(walk.objects.size(), 3U);
  TlvWriter writer(buf);
  writer.append(walk.objects[1].tag, walk.objects[1].value);
  writer.append(walk.objects[2].tag, walk.objects[2].value);
  const auto size = writer.finish();
  ASSERT_TRUE(size.has_value());
  EXPECT_EQ(to_hex(std::span(buf).first(*size)), "9c0100df0181c8" + std::string(400, '7'));
}

// ---------------------------------------------------------------------------------------------
// Tag helpers.

TEST(TlvTagTest, ByteCountsAndValidity) {
  struct Case {
    std::size_t bytes;
    std::uint32_t tag;
    bool valid;
  };
  const std::vector<Case> cases = {
      {1, 0x5A, true},     {1, 0x70, true},      {1, 0x9F, false},    // 9F announces a second byte
      {2, 0x9F02, true},   {2, 0x5F2A, true},    {2, 0x9F81, false},  // 81 announces a third byte
      {2, 0x5A01, false},                                             // 5A is a one-byte tag
      {3, 0xDF8101, true}, {3, 0xDF0101, false}, {4, 0xDF818101, true}, {4, 0xDF818181, false},
      {2, 0xFF01, false},  // FF is padding, never a first tag byte
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.tag);
    EXPECT_EQ(tag_byte_count(c.tag), c.bytes);
    EXPECT_EQ(tlv_tag_valid(c.tag), c.valid);
  }
  EXPECT_FALSE(tlv_tag_valid(0));
}

TEST(TlvTagTest, LengthByteCounts) {
  EXPECT_EQ(length_byte_count(0), 1U);
  EXPECT_EQ(length_byte_count(0x7F), 1U);
  EXPECT_EQ(length_byte_count(0x80), 2U);
  EXPECT_EQ(length_byte_count(0xFF), 2U);
  EXPECT_EQ(length_byte_count(0x100), 3U);
  EXPECT_EQ(length_byte_count(0xFFFF), 3U);
  EXPECT_EQ(length_byte_count(0x10000), 4U);
  EXPECT_EQ(length_byte_count(0x1000000), 5U);
}
