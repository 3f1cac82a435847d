// Dialect files: the shipped dialects load with the specs they document, and bad dialect
// files are refused with an error naming the source, the line and the key.
#include "iso8583/dialect_loader.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "iso8583/message.h"
#include "iso8583/spec.h"

namespace authswitch::iso8583 {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr std::array<const char*, 4> kShipped = {"iso87-ascii", "iso87-ascii-binbitmap",
                                                 "iso87-bcd", "iso93-ebcdic"};

TEST(BuiltinDialects, ExactlyTheFourShippedOnes) {
  const auto names = builtin_dialect_names();
  EXPECT_THAT(names, UnorderedElementsAre("iso87-ascii", "iso87-ascii-binbitmap", "iso87-bcd",
                                          "iso93-ebcdic"));
  EXPECT_EQ(embedded_dialects().size(), 4U);
  for (const auto& e : embedded_dialects()) {
    EXPECT_FALSE(e.toml.empty()) << e.name;
  }
}

TEST(BuiltinDialects, EachLoadsUnderItsNameOnce) {
  for (const char* name : kShipped) {
    const Dialect& d = builtin_dialect(name);
    EXPECT_EQ(d.name(), name);
    EXPECT_FALSE(d.info().description.empty()) << name;
    EXPECT_EQ(&builtin_dialect(name), &d) << name << " is parsed once and kept";
    EXPECT_EQ(&find_dialect(name), &d) << name;
    // Every data element of the primary and secondary bitmaps is defined, 1 and 65 are not.
    EXPECT_FALSE(d.field(1).defined) << name;
    EXPECT_FALSE(d.field(65).defined) << name;
    for (int de = 2; de <= 128; ++de) {
      if (de != 65) {
        EXPECT_TRUE(d.field(de).defined) << name << " DE " << de;
        EXPECT_FALSE(d.field_name(de).empty()) << name << " DE " << de;
      }
    }
    EXPECT_EQ(d.info().max_bitmaps, 2) << name;
    EXPECT_EQ(d.info().max_message_bytes, 8192U) << name;
    EXPECT_EQ(d.info().header_bytes, 0) << name;
  }
}

TEST(BuiltinDialects, UnknownNameThrowsOutOfRange) {
  EXPECT_THROW((void)builtin_dialect("iso87-nope"), std::out_of_range);
  EXPECT_THROW((void)find_dialect("iso87-nope"), std::out_of_range);
}

TEST(BuiltinDialects, MessageLevelEncodings) {
  struct Row {
    const char* name;
    MtiEncoding mti;
    BitmapEncoding bitmap;
    std::size_t mti_bytes;
    std::size_t bitmap_bytes;
  };
  for (const Row& r :
       {Row{"iso87-ascii", MtiEncoding::kAscii, BitmapEncoding::kAsciiHex, 4, 16},
        Row{"iso87-ascii-binbitmap", MtiEncoding::kAscii, BitmapEncoding::kBinary, 4, 8},
        Row{"iso87-bcd", MtiEncoding::kBcd, BitmapEncoding::kBinary, 2, 8},
        Row{"iso93-ebcdic", MtiEncoding::kEbcdic, BitmapEncoding::kEbcdicHex, 4, 16}}) {
    const Dialect& d = builtin_dialect(r.name);
    EXPECT_EQ(d.info().mti_encoding, r.mti) << r.name;
    EXPECT_EQ(d.info().bitmap_encoding, r.bitmap) << r.name;
    EXPECT_EQ(d.mti_bytes(), r.mti_bytes) << r.name;
    EXPECT_EQ(d.bitmap_bytes(), r.bitmap_bytes) << r.name;
  }
}

TEST(BuiltinDialects, SpotCheckFieldSpecs) {
  const FieldSpec& pan = builtin_dialect("iso87-ascii").field(2);
  EXPECT_EQ(pan.type, ContentType::kN);
  EXPECT_EQ(pan.prefix_digits, 2);
  EXPECT_EQ(pan.prefix_bytes, 2);
  EXPECT_EQ(pan.max_units, 19U);
  EXPECT_EQ(pan.min_units, 0U);
  EXPECT_EQ(pan.encoding, Encoding::kAscii);
  EXPECT_EQ(pan.prefix_encoding, PrefixEncoding::kAscii);
  EXPECT_TRUE(pan.sensitive);
  EXPECT_FALSE(pan.is_fixed());

  const FieldSpec& amount = builtin_dialect("iso87-bcd").field(4);
  EXPECT_EQ(amount.type, ContentType::kN);
  EXPECT_EQ(amount.encoding, Encoding::kBcd);
  EXPECT_TRUE(amount.is_fixed());
  EXPECT_EQ(amount.max_units, 12U);
  EXPECT_EQ(amount.fixed_wire_bytes, 6U);
  EXPECT_EQ(amount.pad_side, PadSide::kLeft);
  EXPECT_FALSE(amount.sensitive);

  const FieldSpec& bcd_pan = builtin_dialect("iso87-bcd").field(2);
  EXPECT_EQ(bcd_pan.prefix_encoding, PrefixEncoding::kBcd);
  EXPECT_EQ(bcd_pan.prefix_bytes, 1);
  EXPECT_EQ(bcd_pan.unit, LengthUnit::kDigits);
  const FieldSpec& bcd_track = builtin_dialect("iso87-bcd").field(35);
  EXPECT_EQ(bcd_track.type, ContentType::kZ);
  EXPECT_EQ(bcd_track.unit, LengthUnit::kNibbles);
  EXPECT_EQ(bcd_track.pad_side, PadSide::kRight);
  EXPECT_EQ(bcd_track.pad_char, 'F');
  EXPECT_TRUE(bcd_track.sensitive);
  EXPECT_EQ(builtin_dialect("iso87-bcd").field(60).prefix_bytes, 2);  // LLL packed in 2 bytes
  EXPECT_EQ(builtin_dialect("iso87-bcd").field(28).encoding, Encoding::kAsciiSignBcd);
  EXPECT_EQ(builtin_dialect("iso87-bcd").field(28).fixed_wire_bytes, 5U);

  const FieldSpec& action = builtin_dialect("iso93-ebcdic").field(39);
  EXPECT_EQ(action.type, ContentType::kN);
  EXPECT_TRUE(action.is_fixed());
  EXPECT_EQ(action.max_units, 3U);
  EXPECT_EQ(action.encoding, Encoding::kEbcdic);
  EXPECT_EQ(builtin_dialect("iso93-ebcdic").field(2).prefix_encoding, PrefixEncoding::kEbcdic);

  EXPECT_EQ(builtin_dialect("iso87-ascii").field(52).encoding, Encoding::kAsciiHex);
  EXPECT_EQ(builtin_dialect("iso87-ascii").field(52).fixed_wire_bytes, 16U);
  EXPECT_EQ(builtin_dialect("iso87-ascii-binbitmap").field(52).encoding, Encoding::kBinary);
  EXPECT_EQ(builtin_dialect("iso87-ascii").field(43).pad_side, PadSide::kRight);
  EXPECT_EQ(builtin_dialect("iso87-ascii").field(43).pad_char, ' ');
  EXPECT_EQ(builtin_dialect("iso87-ascii").field(4).pad_char, '0');

  for (const char* name : kShipped) {
    const Dialect& d = builtin_dialect(name);
    const FieldSpec& icc = d.field(55);
    EXPECT_EQ(icc.type, ContentType::kB) << name;
    EXPECT_EQ(icc.composite, CompositeKind::kBerTlv) << name;
    EXPECT_EQ(d.composite(icc).kind, CompositeKind::kBerTlv) << name;
    EXPECT_EQ(icc.prefix_digits, 3) << name;
    EXPECT_EQ(icc.max_units, 255U) << name;
    const FieldSpec& pc = d.field(3);
    ASSERT_EQ(pc.composite, CompositeKind::kPositional) << name;
    const CompositeSpec& c = d.composite(pc);
    EXPECT_EQ(c.max_subfield, 3) << name;
    EXPECT_EQ(c.names[1], "Transaction type") << name;
  }
  // DE 95's fees accept a '0' sign (lenient_sign); DE 28's do not.
  const Dialect& ascii = builtin_dialect("iso87-ascii");
  const CompositeSpec& de95 = ascii.composite(ascii.field(95));
  EXPECT_NE(de95.subfields[3].sign_mask & cls::kDigit, 0);
  EXPECT_EQ(ascii.field(28).sign_mask & cls::kDigit, 0);
}

TEST(BuiltinDialects, EchoFieldsAreTheRequestKeys) {
  for (const char* name : kShipped) {
    const Dialect& d = builtin_dialect(name);
    for (const int de : {2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49}) {
      if (d.field(de).defined) {
        EXPECT_TRUE(d.echo_fields().test(static_cast<std::size_t>(de))) << name << " DE " << de;
        EXPECT_TRUE(d.field(de).echo) << name << " DE " << de;
      }
    }
    for (const int de : {14, 35, 38, 39, 52, 55, 64, 128}) {
      EXPECT_FALSE(d.echo_fields().test(static_cast<std::size_t>(de))) << name << " DE " << de;
    }
    EXPECT_EQ(d.echo_fields().count(), 12U) << name;
  }
}

// ---------------------------------------------------------------------------------------------
// Small dialects written inline.

TEST(LoadDialect, MinimalDialectAndDefaults) {
  const auto d = load_dialect(R"(
name = "minimal"
[message]
mti = "bcd"
bitmap = "binary"
max_bitmaps = 1
echo = [41]
[defaults]
prefix = "binary"
[defaults.n]
encoding = "bcd"
[fields]
2 = { type = "n", length = "LL", max = 19 }
4 = { type = "n", length = "fixed", max = 12, echo = false }
41 = { type = "ans", length = "fixed", max = 8 }
48 = { type = "ans", length = "LLL", max = 300, min = 2, encoding = "ebcdic" }
)",
                              "minimal.toml");
  EXPECT_EQ(d->name(), "minimal");
  EXPECT_EQ(d->info().max_bitmaps, 1);
  EXPECT_EQ(d->field(2).encoding, Encoding::kBcd);
  EXPECT_EQ(d->field(2).prefix_encoding, PrefixEncoding::kBinary);
  EXPECT_EQ(d->field(2).prefix_bytes, 1);
  EXPECT_EQ(d->field(48).prefix_bytes, 2);  // 300 needs two binary bytes
  EXPECT_EQ(d->field(48).min_units, 2U);
  EXPECT_EQ(d->field(48).encoding, Encoding::kEbcdic);
  EXPECT_EQ(d->field(41).encoding, Encoding::kAscii);
  EXPECT_TRUE(d->echo_fields().test(2));
  EXPECT_FALSE(d->echo_fields().test(4)) << "echo = false overrides the default";
  EXPECT_TRUE(d->echo_fields().test(41));
  EXPECT_FALSE(d->field(3).defined);
}

struct BadDialect {
  const char* name;
  std::string toml;
  int line;         // expected line in the message
  std::string key;  // expected key in the message ("" for TOML syntax errors)
  std::string why;  // a fragment of the reason
};

void PrintTo(const BadDialect& b, std::ostream* os) { *os << b.name; }

// Each text has its problem on line `line`; the file starts with a newline, so the first
// line of text is line 2.
const std::vector<BadDialect>& bad_dialects() {
  static const std::vector<BadDialect> kRows = {
      {"unknown_field_key", R"(
name = "bad"
[fields]
2 = { type = "n", length = "LL", max = 19, colour = "red" }
)",
       4, "fields.2.colour", "unknown key"},
      {"unknown_type", R"(
name = "bad"
[fields]
3 = { type = "n", length = "fixed", max = 6 }
4 = { type = "q", length = "fixed", max = 12 }
)",
       5, "fields.4.type", "unknown value 'q'"},
      {"max_does_not_fit_prefix", R"(
name = "bad"
[fields]
2 = { type = "n", length = "LL", max = 100 }
)",
       4, "fields.2.max", "max length 100 does not fit a 2-digit length prefix"},
      {"missing_max", R"(
name = "bad"
[fields]
2 = { type = "n", length = "LL" }
)",
       4, "fields.2.max", "missing"},
      {"missing_type", R"(
name = "bad"
[fields]
2 = { length = "LL", max = 19 }
)",
       4, "fields.2.type", "missing"},
      {"field_number_1", R"(
name = "bad"
[fields]
1 = { type = "b", length = "fixed", max = 8 }
)",
       4, "fields.1", "field numbers are 2..128"},
      {"field_number_65", R"(
name = "bad"
[fields]
2 = { type = "n", length = "LL", max = 19 }
65 = { type = "b", length = "fixed", max = 8 }
)",
       5, "fields.65", "1 and 65 are bitmap indicators"},
      {"field_number_200", R"(
name = "bad"
[fields]
200 = { type = "n", length = "fixed", max = 3 }
)",
       4, "fields.200", "field numbers are 2..128"},
      {"field_number_not_a_number", R"(
name = "bad"
[fields]
de2 = { type = "n", length = "fixed", max = 3 }
)",
       4, "fields.de2", "field numbers"},
      {"bcd_on_ans", R"(
name = "bad"
[fields]
43 = { type = "ans", length = "fixed", max = 40, encoding = "bcd" }
)",
       4, "fields.43", "bcd encoding needs type n, z or x+n"},
      {"binary_on_n", R"(
name = "bad"
[fields]
4 = { type = "n", length = "fixed", max = 12, encoding = "binary" }
)",
       4, "fields.4", "binary and ascii-hex encodings need type b"},
      {"bad_padding", R"(
name = "bad"
[fields]
4 = { type = "n", length = "fixed", max = 12, padding = "middle:0" }
)",
       4, "fields.4.padding", "unknown padding 'middle:0'"},
      {"bad_padding_char", R"(
name = "bad"
[fields]
4 = { type = "n", length = "fixed", max = 12, padding = "left:x" }
)",
       4, "fields.4.padding", "unknown padding"},
      {"toml_syntax_error", R"(
name = "bad"
[fields]
2 = { type = "n", length = "LL", max = }
)",
       4, "", ""},
      {"positional_subfields_with_gap", R"(
name = "bad"
[fields.3]
type = "n"
length = "fixed"
max = 6
composite = "positional"
[fields.3.subfields]
1 = { type = "n", length = "fixed", max = 2 }
3 = { type = "n", length = "fixed", max = 2 }
)",
       8, "fields.3.subfields", "without gaps (missing 2)"},
      {"unknown_message_key", R"(
name = "bad"
[message]
mti = "ascii"
colour = "red"
[fields]
2 = { type = "n", length = "LL", max = 19 }
)",
       5, "message.colour", "unknown key"},
      {"unknown_mti_encoding", R"(
name = "bad"
[message]
mti = "utf8"
[fields]
2 = { type = "n", length = "LL", max = 19 }
)",
       4, "message.mti", "unknown value 'utf8'"},
      {"echo_field_not_defined", R"(
name = "bad"
[message]
mti = "ascii"
echo = [2, 44]
[fields]
2 = { type = "n", length = "LL", max = 19 }
)",
       3, "message.echo", "field 44 is not defined"},
      {"echo_field_out_of_range", R"(
name = "bad"
[message]
echo = [2, 1]
[fields]
2 = { type = "n", length = "LL", max = 19 }
)",
       4, "message.echo", "must be between 2 and 192"},
      {"max_bitmaps_4", R"(
name = "bad"
[message]
max_bitmaps = 4
[fields]
2 = { type = "n", length = "LL", max = 19 }
)",
       4, "message.max_bitmaps", "must be between 1 and 3"},
      {"unknown_top_level_key", R"(
name = "bad"
colour = "red"
[fields]
2 = { type = "n", length = "LL", max = 19 }
)",
       3, "colour", "unknown key"},
      {"min_over_max", R"(
name = "bad"
[fields]
2 = { type = "n", length = "LL", max = 19, min = 20 }
)",
       4, "fields.2", "min length exceeds max length"},
      {"unknown_subfield_key", R"(
name = "bad"
[fields.3]
type = "n"
length = "fixed"
max = 6
composite = "positional"
[fields.3.subfields]
1 = { type = "n", length = "fixed", max = 6, size = 2 }
)",
       9, "fields.3.subfields.1.size", "unknown key"},
  };
  return kRows;
}

class LoadDialectRejects : public ::testing::TestWithParam<BadDialect> {};

TEST_P(LoadDialectRejects, NamingSourceLineAndKey) {
  const BadDialect& b = GetParam();
  try {
    (void)load_dialect(b.toml, "bad-dialect.toml");
    FAIL() << b.name << " loaded";
  } catch (const DialectError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("bad-dialect.toml:" + std::to_string(b.line) + ":", 0), 0U)
        << "expected source and line " << b.line << " first: " << what;
    if (!b.key.empty()) {
      EXPECT_THAT(what, HasSubstr(": " + b.key + ": ")) << what;
    }
    EXPECT_THAT(what, HasSubstr(b.why));
  }
}

INSTANTIATE_TEST_SUITE_P(Inline, LoadDialectRejects, ::testing::ValuesIn(bad_dialects()),
                         [](const ::testing::TestParamInfo<BadDialect>& pi) {
                           return std::string(pi.param.name);
                         });

// As dialect_loader.h documents: the key of the value at fault, on its own line.
TEST(LoadDialect, MaxThatDoesNotFitNamesTheMaxKeyAndLine) {
  try {
    (void)load_dialect("name = \"bad\"\n[fields.2]\ntype = \"n\"\nlength = \"LL\"\nmax = 100\n",
                       "iso87-ascii.toml");
    FAIL() << "loaded";
  } catch (const DialectError& e) {
    EXPECT_EQ(std::string(e.what()),
              "iso87-ascii.toml:5: fields.2.max: max length 100 does not fit a 2-digit length "
              "prefix");
  }
}

// ---------------------------------------------------------------------------------------------
// Dialect files.

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    path_ = std::filesystem::temp_directory_path() /
            ("dialect_loader_test_" + std::to_string(stamp) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

constexpr std::string_view kFileDialect = R"(name = "from-file"
description = "written by dialect_loader_test"
[message]
mti = "ascii"
bitmap = "ascii-hex"
[fields]
3 = { type = "n", length = "fixed", max = 6 }
11 = { type = "n", length = "fixed", max = 6 }
)";

void write_file(const std::filesystem::path& p, std::string_view text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << p;
}

TEST(FindDialect, LoadsATomlFileOnceAndKeepsIt) {
  const TempDir dir;
  const auto path = (dir.path() / "from-file.toml").string();
  ASSERT_NO_FATAL_FAILURE(write_file(path, kFileDialect));
  const Dialect& d = find_dialect(path);
  EXPECT_EQ(d.name(), "from-file");
  EXPECT_TRUE(d.field(3).defined);
  EXPECT_TRUE(d.field(11).defined);
  EXPECT_FALSE(d.field(2).defined);
  EXPECT_EQ(&find_dialect(path), &d) << "a loaded file is kept for the process";
  // Usable for messages.
  MessageBuilder b(d);
  b.reset(800);
  b.set_text(11, "000042");
  std::array<std::byte, 64> buf;
  const auto n = b.encode(buf);
  ASSERT_TRUE(n.has_value());
  MessageView m;
  ASSERT_TRUE(decode(d, std::span<const std::byte>(buf).first(*n), m).has_value());
  EXPECT_TRUE(m.has(11));
  // load_dialect_file reads the same file into a new, independent Dialect.
  const auto again = load_dialect_file(path);
  EXPECT_EQ(again->name(), "from-file");
  EXPECT_NE(again.get(), &d);
}

TEST(FindDialect, BadOrMissingFileThrowsDialectErrorNamingThePath) {
  const TempDir dir;
  const auto bad = (dir.path() / "bad.toml").string();
  ASSERT_NO_FATAL_FAILURE(
      write_file(bad, "name = \"bad\"\n[fields]\n2 = { type = \"n\", length = \"LL\" }\n"));
  try {
    (void)find_dialect(bad);
    FAIL() << "loaded";
  } catch (const DialectError& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr(bad + ":3: fields.2.max"));
  }
  const auto missing = (dir.path() / "missing.toml").string();
  try {
    (void)find_dialect(missing);
    FAIL() << "loaded";
  } catch (const DialectError& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr(missing));
  }
}

}  // namespace
}  // namespace authswitch::iso8583
