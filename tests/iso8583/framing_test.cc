#include "iso8583/framing.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "iso8583/dialect_loader.h"
#include "iso8583/error.h"
#include "iso8583/spec.h"

namespace authswitch::iso8583 {
namespace {

using Bytes = std::vector<std::byte>;

Bytes raw(std::initializer_list<unsigned> values) {
  Bytes out;
  for (const unsigned v : values) {
    out.push_back(static_cast<std::byte>(v));
  }
  return out;
}

Bytes text(std::string_view s) {
  Bytes out;
  for (const char c : s) {
    out.push_back(static_cast<std::byte>(c));
  }
  return out;
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) {
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

// A message body of `n` bytes that is easy to tell apart from a prefix or header.
Bytes filler(std::size_t n) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<std::byte>('a' + i % 26);
  }
  return out;
}

std::string str(std::span<const std::byte> bytes) {
  std::string out;
  for (const std::byte b : bytes) {
    out.push_back(static_cast<char>(b));
  }
  return out;
}

Framing framing_of(std::string_view name) {
  const auto f = parse_framing(name);
  EXPECT_TRUE(f.has_value()) << name;
  return f.has_value() ? *f : Framing{};
}

// A golden frame: real wire bytes written by hand, and what decode() must cut out of them.
struct GoldenFrame {
  std::string_view framing;
  Bytes prefix;  // the length prefix exactly as on the wire
  Bytes header;  // the fixed header (e.g. a TPDU)
  Bytes message;

  [[nodiscard]] Bytes wire() const { return cat({prefix, header, message}); }
};

std::vector<GoldenFrame> golden_frames() {
  const Bytes tpdu = raw({0x60, 0x00, 0x03, 0x00, 0x00});
  return {
      {"len2-binary", raw({0x00, 0x05}), {}, text("hello")},
      {"len2-binary", raw({0x01, 0x2C}), {}, filler(300)},
      {"len2-binary+max=65535", raw({0xFF, 0xFF}), {}, filler(65535)},
      {"len2-bcd", raw({0x00, 0x05}), {}, text("hello")},
      {"len2-bcd", raw({0x12, 0x34}), {}, filler(1234)},
      {"len2-bcd+max=9999", raw({0x99, 0x99}), {}, filler(9999)},
      {"len4-ascii", text("0005"), {}, text("hello")},
      {"len4-ascii", text("1234"), {}, filler(1234)},
      {"len4-binary", raw({0x00, 0x00, 0x00, 0x05}), {}, text("hello")},
      {"len4-binary+max=70000", raw({0x00, 0x01, 0x00, 0x01}), {}, filler(65537)},
      {"len2-binary+header=5", raw({0x00, 0x0A}), tpdu, text("hello")},
      {"len2-bcd+header=5", raw({0x00, 0x10}), tpdu, filler(5)},
      {"len4-ascii+header=5", text("0010"), tpdu, text("hello")},
      {"len4-binary+header=5+max=100", raw({0x00, 0x00, 0x00, 0x0A}), tpdu, text("hello")},
      {"len2-binary+header=1", raw({0x00, 0x02}), raw({0xEE}), text("x")},
  };
}

// The same frames, but with a prefix that counts itself.
std::vector<GoldenFrame> self_inclusive_frames() {
  return {
      {"len2-binary", raw({0x00, 0x07}), {}, text("hello")},
      {"len2-bcd", raw({0x00, 0x07}), {}, text("hello")},
      {"len4-ascii", text("0009"), {}, text("hello")},
      {"len4-binary", raw({0x00, 0x00, 0x00, 0x09}), {}, text("hello")},
  };
}

Framing golden_framing(const GoldenFrame& g, bool includes_self) {
  Framing f = framing_of(g.framing);
  f.length_includes_self = includes_self;
  return f;
}

void expect_complete(const FrameResult& r, std::span<const std::byte> buffer,
                     const GoldenFrame& g) {
  ASSERT_EQ(r.status, FrameStatus::kComplete) << errc_name(r.error.code);
  EXPECT_EQ(r.consumed, g.prefix.size() + g.header.size() + g.message.size());
  EXPECT_EQ(str(r.header), str(g.header));
  EXPECT_EQ(str(r.message), str(g.message));
  // Views into the caller's buffer, not copies.
  EXPECT_EQ(r.header.data(), buffer.data() + g.prefix.size());
  EXPECT_EQ(r.message.data(), buffer.data() + g.prefix.size() + g.header.size());
}

void check_golden(const GoldenFrame& g, bool includes_self) {
  SCOPED_TRACE(std::string(g.framing) + (includes_self ? " self-inclusive" : "") +
               " message bytes " + std::to_string(g.message.size()));
  const Framing framing = golden_framing(g, includes_self);
  const FrameDecoder decoder(framing);
  const Bytes wire = g.wire();

  // Whole frame.
  expect_complete(decoder.decode(wire), wire, g);

  // Every prefix shorter than the frame needs more; the decoder keeps no state, so the
  // full buffer afterwards is still complete.
  for (std::size_t n = 0; n < wire.size(); ++n) {
    const FrameResult r = decoder.decode(std::span<const std::byte>(wire).first(n));
    ASSERT_EQ(r.status, FrameStatus::kNeedMore) << "prefix " << n;
    ASSERT_EQ(r.consumed, 0U);
  }
  expect_complete(decoder.decode(wire), wire, g);

  // Two frames back to back: consume the first, then the second.
  const Bytes two = cat({wire, wire});
  const FrameResult first = decoder.decode(two);
  expect_complete(first, two, g);
  const auto rest = std::span<const std::byte>(two).subspan(first.consumed);
  expect_complete(decoder.decode(rest), rest, g);

  // A keep-alive, then the frame.
  Bytes keep_alive(g.prefix.size());
  const auto written = write_frame_header(framing, 0, keep_alive);
  ASSERT_TRUE(written.has_value());
  const Bytes with_keep_alive = cat({keep_alive, wire});
  const FrameResult ka = decoder.decode(with_keep_alive);
  EXPECT_EQ(ka.status, FrameStatus::kKeepAlive);
  EXPECT_EQ(ka.consumed, g.prefix.size());
  EXPECT_TRUE(ka.message.empty());
  const auto after = std::span<const std::byte>(with_keep_alive).subspan(ka.consumed);
  expect_complete(decoder.decode(after), after, g);

  // The encoder writes exactly the golden prefix.
  Bytes prefix(g.prefix.size() + 3);  // room to spare: only the prefix may be written
  const auto n = write_frame_header(framing, g.header.size() + g.message.size(), prefix);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, g.prefix.size());
  prefix.resize(*n);
  EXPECT_EQ(prefix, g.prefix);
}

TEST(Framing, GoldenFramesCompleteSplitBackToBackAndKeepAlive) {
  for (const GoldenFrame& g : golden_frames()) {
    check_golden(g, false);
  }
}

TEST(Framing, SelfInclusiveLengthGoldenFrames) {
  for (const GoldenFrame& g : self_inclusive_frames()) {
    check_golden(g, true);
  }
}

TEST(Framing, LengthHeaderWireSizes) {
  EXPECT_EQ(length_header_bytes(LengthHeader::kNone), 0U);
  EXPECT_EQ(length_header_bytes(LengthHeader::kLen2Binary), 2U);
  EXPECT_EQ(length_header_bytes(LengthHeader::kLen2Bcd), 2U);
  EXPECT_EQ(length_header_bytes(LengthHeader::kLen4Ascii), 4U);
  EXPECT_EQ(length_header_bytes(LengthHeader::kLen4Binary), 4U);
  Framing f;
  f.length = LengthHeader::kLen4Ascii;
  f.max_frame_bytes = 4096;
  EXPECT_EQ(max_buffered_bytes(f), 4100U);
}

TEST(Framing, ZeroLengthIsKeepAliveForEveryKind) {
  struct Case {
    std::string_view framing;
    bool includes_self;
    Bytes wire;
  };
  const std::vector<Case> cases = {
      {"len2-binary", false, raw({0x00, 0x00})},
      {"len2-bcd", false, raw({0x00, 0x00})},
      {"len4-ascii", false, text("0000")},
      {"len4-binary", false, raw({0, 0, 0, 0})},
      {"len2-binary+header=5", false, raw({0x00, 0x00})},
      // Self-inclusive: the prefix alone, or a bare zero.
      {"len2-binary", true, raw({0x00, 0x02})},
      {"len2-binary", true, raw({0x00, 0x00})},
      {"len4-ascii", true, text("0004")},
      {"len4-ascii", true, text("0000")},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.framing);
    Framing f = framing_of(c.framing);
    f.length_includes_self = c.includes_self;
    const FrameResult r = FrameDecoder(f).decode(c.wire);
    EXPECT_EQ(r.status, FrameStatus::kKeepAlive);
    EXPECT_EQ(r.consumed, c.wire.size());
  }
}

TEST(Framing, OversizedLengthRejectedWithOnlyThePrefixBuffered) {
  struct Case {
    std::string_view framing;
    Bytes too_large;  // declares max + 1
    Bytes at_max;     // declares exactly max: fine, wait for the body
  };
  const std::vector<Case> cases = {
      {"len2-binary+max=100", raw({0x00, 0x65}), raw({0x00, 0x64})},
      {"len2-binary", raw({0x20, 0x01}), raw({0x20, 0x00})},  // default max 8192
      {"len2-binary", raw({0xFF, 0xFF}), raw({0x00, 0x01})},
      {"len2-bcd+max=100", raw({0x01, 0x01}), raw({0x01, 0x00})},
      {"len2-bcd+max=8191", raw({0x81, 0x92}), raw({0x81, 0x91})},
      {"len4-ascii+max=100", text("0101"), text("0100")},
      {"len4-ascii", text("9999"), text("8192")},
      {"len4-binary+max=100", raw({0, 0, 0, 0x65}), raw({0, 0, 0, 0x64})},
      {"len4-binary", raw({0xFF, 0xFF, 0xFF, 0xFF}), raw({0, 0, 0x20, 0x00})},
      {"len4-binary+max=1048576", raw({0x00, 0x10, 0x00, 0x01}), raw({0x00, 0x10, 0x00, 0x00})},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.framing);
    const FrameDecoder decoder(framing_of(c.framing));
    const FrameResult big = decoder.decode(c.too_large);
    EXPECT_EQ(big.status, FrameStatus::kMalformed);
    EXPECT_EQ(big.error.code, Errc::kFrameTooLarge);
    EXPECT_EQ(big.consumed, 0U);
    const FrameResult ok = decoder.decode(c.at_max);
    EXPECT_EQ(ok.status, FrameStatus::kNeedMore);
  }
  // Self-inclusive: max applies to the body, the prefix is not counted against it.
  Framing f = framing_of("len2-binary+max=100");
  f.length_includes_self = true;
  EXPECT_EQ(FrameDecoder(f).decode(raw({0x00, 0x66})).status, FrameStatus::kNeedMore);
  EXPECT_EQ(FrameDecoder(f).decode(raw({0x00, 0x67})).error.code, Errc::kFrameTooLarge);
}

TEST(Framing, BadLengthDigitsAreBadFrameHeader) {
  struct Case {
    std::string_view framing;
    Bytes prefix;
    std::uint32_t offset;  // of the first bad byte
  };
  const std::vector<Case> cases = {
      {"len2-bcd", raw({0x0A, 0x00}), 0},  // low nibble A
      {"len2-bcd", raw({0xA0, 0x00}), 0},  // high nibble A
      {"len2-bcd", raw({0x00, 0x0F}), 1},  // an F pad nibble is not a digit either
      {"len2-bcd", raw({0x01, 0xF0}), 1},
      {"len2-bcd", raw({0xFF, 0xFF}), 0},
      {"len4-ascii", text("00a5"), 2},
      {"len4-ascii", text(" 005"), 0},  // no space padding
      {"len4-ascii", text("-005"), 0},
      {"len4-ascii", text("+005"), 0},
      {"len4-ascii", text("000:"), 3},                   // one past '9'
      {"len4-ascii", text("/000"), 0},                   // one before '0'
      {"len4-ascii", raw({0xF0, 0xF0, 0xF0, 0xF5}), 0},  // EBCDIC digits
      {"len4-ascii", raw({0x00, 0x00, 0x00, 0x05}), 0},  // binary, not ASCII
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.framing) + " offset " + std::to_string(c.offset));
    // Followed by plenty of body bytes: the prefix alone decides.
    const Bytes wire = cat({c.prefix, filler(64)});
    const FrameResult r = FrameDecoder(framing_of(c.framing)).decode(wire);
    EXPECT_EQ(r.status, FrameStatus::kMalformed);
    EXPECT_EQ(r.error.code, Errc::kBadFrameHeader);
    EXPECT_EQ(r.error.offset, c.offset);
    EXPECT_EQ(r.error.field, 0);
    EXPECT_EQ(r.consumed, 0U);
  }
}

TEST(Framing, LengthNotCoveringTheFixedHeaderIsMalformed) {
  struct Case {
    std::string_view framing;
    bool includes_self;
    Bytes prefix;
  };
  const std::vector<Case> cases = {
      {"len2-binary+header=5", false, raw({0x00, 0x01})},
      {"len2-binary+header=5", false, raw({0x00, 0x04})},
      {"len2-binary+header=5", false, raw({0x00, 0x05})},  // a header and no message
      {"len2-bcd+header=5", false, raw({0x00, 0x03})},
      {"len4-ascii+header=5", false, text("0004")},
      {"len4-binary+header=5", false, raw({0, 0, 0, 0x05})},
      {"len2-binary+header=5", true, raw({0x00, 0x07})},
      // Self-inclusive lengths below the prefix's own size.
      {"len2-binary", true, raw({0x00, 0x01})},
      {"len4-ascii", true, text("0003")},
      {"len4-binary", true, raw({0, 0, 0, 0x02})},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.framing);
    Framing f = framing_of(c.framing);
    f.length_includes_self = c.includes_self;
    // Only the prefix is buffered: the verdict does not wait for the body.
    const FrameResult r = FrameDecoder(f).decode(c.prefix);
    EXPECT_EQ(r.status, FrameStatus::kMalformed);
    EXPECT_EQ(r.error.code, Errc::kBadFrameHeader);
  }
}

TEST(Framing, WriteFrameHeaderRoundTripsThroughDecode) {
  const auto kinds =
      std::to_array<std::string_view>({"len2-binary", "len2-bcd", "len4-ascii", "len4-binary"});
  const auto sizes =
      std::to_array<std::size_t>({1, 9, 10, 99, 100, 255, 256, 257, 999, 1000, 4095, 4096, 9999});
  const auto headers = std::to_array<std::uint16_t>({0, 5});
  for (const std::string_view kind : kinds) {
    for (const std::uint16_t header : headers) {
      for (const bool includes_self : {false, true}) {
        Framing f = framing_of(std::string(kind) + "+max=9999+header=" + std::to_string(header));
        f.length_includes_self = includes_self;
        const FrameDecoder decoder(f);
        for (const std::size_t size : sizes) {
          if (size <= header ||
              (includes_self && size + length_header_bytes(f.length) > 9999 &&
               f.length != LengthHeader::kLen4Binary && f.length != LengthHeader::kLen2Binary)) {
            continue;
          }
          SCOPED_TRACE(std::string(kind) + " header " + std::to_string(header) + " size " +
                       std::to_string(size) + (includes_self ? " self" : ""));
          Bytes wire(length_header_bytes(f.length));
          const auto n = write_frame_header(f, size, wire);
          ASSERT_TRUE(n.has_value());
          ASSERT_EQ(*n, wire.size());
          const Bytes body = filler(size);
          wire.insert(wire.end(), body.begin(), body.end());
          const FrameResult r = decoder.decode(wire);
          ASSERT_EQ(r.status, FrameStatus::kComplete);
          EXPECT_EQ(r.consumed, wire.size());
          EXPECT_EQ(r.header.size(), header);
          EXPECT_EQ(r.message.size(), size - header);
          EXPECT_EQ(str(r.message), str(std::span<const std::byte>(body).subspan(header)));
        }
      }
    }
  }
}

TEST(Framing, WriteFrameHeaderRejectsUnrepresentableLengths) {
  struct Case {
    std::string_view framing;
    std::size_t body;
    bool includes_self;
    Errc expected;
  };
  const std::vector<Case> cases = {
      {"len2-binary+max=1048576", 65535, false, Errc::kOk},
      {"len2-binary+max=1048576", 65536, false, Errc::kFrameTooLarge},
      {"len2-binary+max=1048576", 65533, true, Errc::kOk},
      {"len2-binary+max=1048576", 65534, true, Errc::kFrameTooLarge},  // 65536 with itself
      {"len2-bcd+max=1048576", 9999, false, Errc::kOk},
      {"len2-bcd+max=1048576", 10000, false, Errc::kFrameTooLarge},
      {"len2-bcd+max=1048576", 9998, true, Errc::kFrameTooLarge},
      {"len4-ascii+max=1048576", 9999, false, Errc::kOk},
      {"len4-ascii+max=1048576", 10000, false, Errc::kFrameTooLarge},
      {"len4-ascii+max=1048576", 9996, true, Errc::kFrameTooLarge},
      {"len4-binary+max=1048576", 1048576, false, Errc::kOk},
      {"len4-binary+max=1048576", 1048577, false, Errc::kFrameTooLarge},
      {"len2-binary+max=100", 100, false, Errc::kOk},
      {"len2-binary+max=100", 101, false, Errc::kFrameTooLarge},
      {"len4-binary", 8193, false, Errc::kFrameTooLarge},
      {"none+max=100", 100, false, Errc::kOk},
      {"none+max=100", 101, false, Errc::kFrameTooLarge},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.framing) + " body " + std::to_string(c.body));
    Framing f = framing_of(c.framing);
    f.length_includes_self = c.includes_self;
    std::array<std::byte, 8> out{};
    const auto n = write_frame_header(f, c.body, out);
    if (c.expected == Errc::kOk) {
      ASSERT_TRUE(n.has_value());
      EXPECT_EQ(*n, length_header_bytes(f.length));
    } else {
      ASSERT_FALSE(n.has_value());
      EXPECT_EQ(n.error().code, c.expected);
    }
  }
}

TEST(Framing, WriteFrameHeaderNeedsRoomForThePrefix) {
  std::array<std::byte, 4> out{};
  const auto two = write_frame_header(framing_of("len2-binary"), 10, std::span(out).first(1));
  ASSERT_FALSE(two.has_value());
  EXPECT_EQ(two.error().code, Errc::kBufferTooSmall);
  const auto four = write_frame_header(framing_of("len4-ascii"), 10, std::span(out).first(3));
  ASSERT_FALSE(four.has_value());
  EXPECT_EQ(four.error().code, Errc::kBufferTooSmall);
  // No prefix at all needs no room.
  const auto none = write_frame_header(framing_of("none"), 10, std::span(out).first(0));
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(*none, 0U);
}

TEST(Framing, ParseFramingAcceptsNamesAndOptions) {
  struct Case {
    std::string_view text;
    LengthHeader length;
    std::uint16_t header_bytes;
    std::uint32_t max_frame_bytes;
  };
  const std::vector<Case> cases = {
      {"none", LengthHeader::kNone, 0, 8192},
      {"len2-binary", LengthHeader::kLen2Binary, 0, 8192},
      {"len2-bcd", LengthHeader::kLen2Bcd, 0, 8192},
      {"len4-ascii", LengthHeader::kLen4Ascii, 0, 8192},
      {"len4-binary", LengthHeader::kLen4Binary, 0, 8192},
      {"len2-binary+header=5", LengthHeader::kLen2Binary, 5, 8192},
      {"len2-bcd+header=0", LengthHeader::kLen2Bcd, 0, 8192},
      {"len4-ascii+header=64", LengthHeader::kLen4Ascii, 64, 8192},
      {"len4-binary+max=1", LengthHeader::kLen4Binary, 0, 1},
      {"len4-binary+max=1048576", LengthHeader::kLen4Binary, 0, 1048576},
      {"len2-binary+header=5+max=4096", LengthHeader::kLen2Binary, 5, 4096},
      {"len2-binary+max=4096+header=5", LengthHeader::kLen2Binary, 5, 4096},
      {"len2-binary+header=005", LengthHeader::kLen2Binary, 5, 8192},
      {"none+header=5", LengthHeader::kNone, 5, 8192},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const auto f = parse_framing(c.text);
    ASSERT_TRUE(f.has_value()) << errc_name(f.error().code) << " at " << f.error().offset;
    EXPECT_EQ(f->length, c.length);
    EXPECT_EQ(f->header_bytes, c.header_bytes);
    EXPECT_EQ(f->max_frame_bytes, c.max_frame_bytes);
    EXPECT_FALSE(f->length_includes_self);
  }
}

TEST(Framing, ParseFramingRejectsBadNamesAndOptions) {
  struct Case {
    std::string_view text;
    std::uint32_t offset;
  };
  const std::vector<Case> cases = {
      {"", 0},
      {"len2", 0},
      {"LEN2-BINARY", 0},
      {"len2-binary ", 0},
      {" len2-binary", 0},
      {"len3-binary", 0},
      {"+header=5", 0},
      {"len2-binary+", 12},
      {"len2-binary++header=5", 12},
      {"len2-binary+header", 12},
      {"len2-binary+header=", 19},
      {"len2-binary+header=x", 19},
      {"len2-binary+header=5x", 20},
      {"len2-binary+header=-1", 19},
      {"len2-binary+header=65", 19},
      {"len2-binary+header=99999999", 19},
      {"len2-binary+header=5+header=5", 21},
      {"len2-binary+max=0", 16},
      {"len2-binary+max=1048577", 16},
      {"len2-binary+max=4294967296", 16},
      {"len2-binary+max=10+max=10", 19},
      {"len2-binary+tpdu=5", 12},
      {"len2-binary+header=5+max=5", 19},  // no room for a message after the header
      {"len2-binary+max=5+header=6", 25},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const auto f = parse_framing(c.text);
    ASSERT_FALSE(f.has_value());
    EXPECT_EQ(f.error().code, Errc::kBadFrameHeader);
    EXPECT_EQ(f.error().offset, c.offset);
  }
}

TEST(Framing, NamesRoundTrip) {
  const auto names = framing_names();
  ASSERT_EQ(names.size(), 5U);
  EXPECT_EQ(names[0], "none");
  EXPECT_EQ(names[1], "len2-binary");
  EXPECT_EQ(names[2], "len2-bcd");
  EXPECT_EQ(names[3], "len4-ascii");
  EXPECT_EQ(names[4], "len4-binary");
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto length = static_cast<LengthHeader>(i);
    EXPECT_EQ(framing_name(length), names[i]);
    const auto f = parse_framing(names[i]);
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->length, length);
  }
}

TEST(FramingDeathTest, UnframedWithoutDialectIsAPreconditionFailure) {
  Framing f;
  f.length = LengthHeader::kNone;
  EXPECT_DEATH({ const FrameDecoder decoder(f); }, "assertion failed");
}

// -------------------------------------------------------------------------------------------
// LengthHeader::kNone: each message is measured with the dialect.

// An all-ASCII 0800 (network management) with DE 7, 11 and 70. MTI "0800"; bitmaps as
// hex characters: primary 8220000000000000 (bits 1, 7, 11), secondary 0400000000000000
// (bit 70); DE 7 "1124045930", DE 11 "000001", DE 70 "301". 4 + 16 + 16 + 10 + 6 + 3 = 55.
Bytes echo_0800() {
  return text(
      "0800"              // MTI
      "8220000000000000"  // primary bitmap: bits 1, 7, 11
      "0400000000000000"  // secondary bitmap: bit 70
      "1124045930"        // DE 7, transmission date and time
      "000001"            // DE 11, STAN
      "301");             // DE 70, network management code: echo test
}

Framing unframed(std::string_view options = "") {
  return framing_of(std::string("none") + std::string(options));
}

TEST(FramingUnframed, CompleteAndSplitAtEveryByte) {
  const Dialect& dialect = builtin_dialect("iso87-ascii");
  const FrameDecoder decoder(unframed(), &dialect);
  const Bytes wire = echo_0800();
  ASSERT_EQ(wire.size(), 55U);
  for (std::size_t n = 0; n < wire.size(); ++n) {
    const FrameResult r = decoder.decode(std::span<const std::byte>(wire).first(n));
    ASSERT_EQ(r.status, FrameStatus::kNeedMore) << "prefix " << n;
    ASSERT_EQ(r.consumed, 0U);
  }
  const FrameResult r = decoder.decode(wire);
  ASSERT_EQ(r.status, FrameStatus::kComplete) << errc_name(r.error.code);
  EXPECT_EQ(r.consumed, wire.size());
  EXPECT_EQ(r.message.size(), wire.size());
  EXPECT_EQ(r.message.data(), wire.data());
  EXPECT_TRUE(r.header.empty());
}

TEST(FramingUnframed, BackToBackMessages) {
  const Dialect& dialect = builtin_dialect("iso87-ascii");
  const FrameDecoder decoder(unframed(), &dialect);
  const Bytes two = cat({echo_0800(), echo_0800()});
  const FrameResult first = decoder.decode(two);
  ASSERT_EQ(first.status, FrameStatus::kComplete) << errc_name(first.error.code);
  EXPECT_EQ(first.consumed, 55U);
  const auto rest = std::span<const std::byte>(two).subspan(first.consumed);
  const FrameResult second = decoder.decode(rest);
  ASSERT_EQ(second.status, FrameStatus::kComplete) << errc_name(second.error.code);
  EXPECT_EQ(second.consumed, 55U);
  EXPECT_EQ(second.message.data(), two.data() + 55);
  // Part of a third message: wait for the rest.
  const Bytes partial = cat({echo_0800(), text("0800")});
  EXPECT_EQ(decoder.decode(partial).consumed, 55U);
  const auto tail = std::span<const std::byte>(partial).subspan(55);
  EXPECT_EQ(decoder.decode(tail).status, FrameStatus::kNeedMore);
}

TEST(FramingUnframed, FixedHeaderIsSplitOff) {
  const Dialect& dialect = builtin_dialect("iso87-ascii");
  const FrameDecoder decoder(unframed("+header=5"), &dialect);
  const Bytes tpdu = raw({0x60, 0x00, 0x03, 0x00, 0x00});
  const Bytes wire = cat({tpdu, echo_0800()});
  for (std::size_t n = 0; n < wire.size(); ++n) {
    ASSERT_EQ(decoder.decode(std::span<const std::byte>(wire).first(n)).status,
              FrameStatus::kNeedMore)
        << "prefix " << n;
  }
  const FrameResult r = decoder.decode(wire);
  ASSERT_EQ(r.status, FrameStatus::kComplete) << errc_name(r.error.code);
  EXPECT_EQ(r.consumed, 60U);
  EXPECT_EQ(str(r.header), str(tpdu));
  EXPECT_EQ(r.message.size(), 55U);
  EXPECT_EQ(r.message.data(), wire.data() + 5);
}

TEST(FramingUnframed, TooLargeOnceMaxIsBufferedWithoutAnEnd) {
  const Dialect& dialect = builtin_dialect("iso87-ascii");
  const FrameDecoder decoder(unframed("+max=40"), &dialect);
  const Bytes wire = echo_0800();
  for (std::size_t n = 0; n <= wire.size(); ++n) {
    SCOPED_TRACE("prefix " + std::to_string(n));
    const FrameResult r = decoder.decode(std::span<const std::byte>(wire).first(n));
    if (n < 40) {
      EXPECT_EQ(r.status, FrameStatus::kNeedMore);
    } else {
      EXPECT_EQ(r.status, FrameStatus::kMalformed);
      EXPECT_EQ(r.error.code, Errc::kFrameTooLarge);
    }
  }
  // Exactly the message size is allowed.
  const FrameDecoder fits(unframed("+max=55"), &dialect);
  EXPECT_EQ(fits.decode(wire).status, FrameStatus::kComplete);
}

TEST(FramingUnframed, MeasureErrorsAreMalformed) {
  const Dialect& dialect = builtin_dialect("iso87-ascii");
  const FrameDecoder decoder(unframed(), &dialect);
  Bytes wire = echo_0800();
  wire[4 + 3] = static_cast<std::byte>('G');  // not a hex digit in the primary bitmap
  const FrameResult r = decoder.decode(wire);
  EXPECT_EQ(r.status, FrameStatus::kMalformed);
  EXPECT_EQ(r.error.code, Errc::kBadBitmap);
  EXPECT_EQ(r.consumed, 0U);
}

}  // namespace
}  // namespace authswitch::iso8583
