// libFuzzer target for the ISO 8583 receive path: frame decoding, message decoding and what
// the switch does next with a decoded request (re-encode, response, DE 55 walk, composite
// subfields, text values).
//
// Input layout: byte 0 selects the dialect (bits 0-1: index into kDialectNames) and the
// framing (bits 2-7 modulo 6: index into kFramingNames). The rest is a receive buffer that is
// cut into frames the way a session does it (decode, drop `consumed`, repeat; stop on
// need-more or malformed), and each complete frame's message is decoded. The rest is also
// decoded whole, without framing, with every shipped dialect. The seeds in tests/fuzz/seeds/
// start with 0x04 + d: dialect d, len2-binary framing.
//
// Invariants (a violation is a codec bug and calls __builtin_trap()):
//  - a frame result's `consumed` is 0 unless complete or keep-alive, and never past the buffer;
//    a complete frame has the configured header and a non-empty message;
//  - decode() uses every byte it reports, and measure() agrees with it on the length;
//  - copying every present field into a MessageBuilder of the same dialect and encoding gives
//    the same bytes; only a non-canonical bitmap may differ (a secondary or tertiary bitmap
//    with no fields in it, lower-case hex digits): then the data bits, the header, MTI and
//    fields must still be byte-identical;
//  - rebuilding the message from the canonical value of every field (text_value or raw bytes)
//    encodes, decodes again and gives the same canonical values;
//  - a response built with build_response encodes (unless it would exceed the dialect's size
//    limit), decodes again, and survives write_frame_header + FrameDecoder unchanged;
//  - DE 55, already validated by decode(), walks as BER-TLV without an error at every level
//    (TlvReader, find_tlv);
//  - every present composite field decodes into its subfields;
//  - number_value, parse_track2 (DE 35), read_original_data (DE 90), read_original_data_93
//    (DE 56) and read_replacement_amounts (DE 95) return a value or an error, never crash;
//  - a copy into another shipped dialect (copy_from across dialects) that encodes also
//    decodes, unless a composite field's inner structure does not fit the target.
//
// Deterministic (no clock, no randomness) and allocation-free after start-up: the dialects and
// framings are loaded once into statics, and every buffer is a static array (libFuzzer calls
// this function from one thread).

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "iso8583/composite.h"
#include "iso8583/dialect_loader.h"
#include "iso8583/error.h"
#include "iso8583/framing.h"
#include "iso8583/message.h"
#include "iso8583/spec.h"
#include "iso8583/tlv.h"

namespace {

using authswitch::iso8583::BitmapEncoding;
using authswitch::iso8583::build_response;
using authswitch::iso8583::builtin_dialect;
using authswitch::iso8583::canonical_value;
using authswitch::iso8583::CompositeKind;
using authswitch::iso8583::CompositeView;
using authswitch::iso8583::ContentType;
using authswitch::iso8583::decode;
using authswitch::iso8583::decode_composite;
using authswitch::iso8583::Dialect;
using authswitch::iso8583::Errc;
using authswitch::iso8583::FieldView;
using authswitch::iso8583::find_tlv;
using authswitch::iso8583::FrameDecoder;
using authswitch::iso8583::FrameResult;
using authswitch::iso8583::FrameStatus;
using authswitch::iso8583::Framing;
using authswitch::iso8583::kMaxField;
using authswitch::iso8583::kTlvDepthMax;
using authswitch::iso8583::length_header_bytes;
using authswitch::iso8583::LengthHeader;
using authswitch::iso8583::measure;
using authswitch::iso8583::MessageBuilder;
using authswitch::iso8583::MessageView;
using authswitch::iso8583::number_value;
using authswitch::iso8583::parse_framing;
using authswitch::iso8583::parse_track2;
using authswitch::iso8583::read_original_data;
using authswitch::iso8583::read_original_data_93;
using authswitch::iso8583::read_replacement_amounts;
using authswitch::iso8583::response_mti;
using authswitch::iso8583::text_value;
using authswitch::iso8583::TlvObject;
using authswitch::iso8583::TlvReader;
using authswitch::iso8583::write_frame_header;

constexpr std::array<std::string_view, 4> kDialectNames = {"iso87-ascii", "iso87-ascii-binbitmap",
                                                           "iso87-bcd", "iso93-ebcdic"};
constexpr std::array<std::string_view, 6> kFramingNames = {
    "none", "len2-binary", "len2-bcd", "len4-ascii", "len4-binary", "len2-binary+header=5"};

// Large enough for any message the shipped dialects accept (max_message_bytes is 8192) plus
// the response fields, and for the canonical form of every field of one message (BCD doubles).
constexpr std::size_t kOutBytes = 16384;
constexpr std::size_t kArenaBytes = 32768;

// A violated invariant: a codec bug. Trapping gives libFuzzer a crash with a stack.
[[noreturn]] void bug() { __builtin_trap(); }

// Keeps a computed value alive so the call producing it is not optimised away.
volatile std::uint64_t g_sink = 0;
void keep(std::uint64_t v) { g_sink = g_sink + v; }

void check(bool ok) {
  if (!ok) [[unlikely]] {
    bug();
  }
}

struct Setup {
  std::array<const Dialect*, kDialectNames.size()> dialects{};
  std::array<Framing, kFramingNames.size()> framings{};
};

Setup make_setup() {
  Setup s;
  for (std::size_t i = 0; i < kDialectNames.size(); ++i) {
    s.dialects[i] = &builtin_dialect(kDialectNames[i]);
  }
  for (std::size_t i = 0; i < kFramingNames.size(); ++i) {
    const auto f = parse_framing(kFramingNames[i]);
    check(f.has_value());
    s.framings[i] = *f;
  }
  return s;
}

const Setup& setup() {
  static const Setup kSetup = make_setup();
  return kSetup;
}

// Static working memory (one thread). MessageView and MessageBuilder are a few KB each.
struct Scratch {
  MessageView again;
  MessageView response_view;
  CompositeView composite;
  std::array<std::byte, kOutBytes> out{};
  std::array<std::byte, kOutBytes> canon_out{};
  std::array<char, kOutBytes> text{};
  std::array<std::byte, kArenaBytes> arena{};
  std::array<std::byte, kOutBytes> left{};
  std::array<std::byte, kOutBytes> right{};
  std::array<std::byte, kOutBytes + 128> frame{};
};

Scratch& scratch() {
  static Scratch s;
  return s;
}

bool bytes_equal(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// Data bits of the bitmaps: indicator bits 1 and 65 masked out.
std::array<std::uint64_t, 3> data_bits(const MessageView& m) {
  constexpr std::uint64_t kTopBit = std::uint64_t{1} << 63U;
  auto w = m.bitmap_words();
  w[0] &= ~kTopBit;
  w[1] &= ~kTopBit;
  return w;
}

// True when the bitmap characters are what the encoder writes (upper-case hex digits).
bool bitmap_chars_canonical(const MessageView& m) {
  const Dialect& d = m.dialect();
  const BitmapEncoding enc = d.info().bitmap_encoding;
  if (enc == BitmapEncoding::kBinary) {
    return true;
  }
  const std::size_t start = d.info().header_bytes + d.mti_bytes();
  const std::size_t n = d.bitmap_bytes() * static_cast<std::size_t>(m.bitmap_count());
  for (const std::byte b : m.bytes().subspan(start, n)) {
    const auto c = std::to_integer<unsigned>(b);
    const bool ok = enc == BitmapEncoding::kAsciiHex
                        ? ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))
                        : ((c >= 0xF0 && c <= 0xF9) || (c >= 0xC1 && c <= 0xC6));
    if (!ok) {
      return false;
    }
  }
  return true;
}

// Copies every present field (same dialect: raw wire bytes) and encodes: the bytes must come
// back unchanged, except for a non-canonical bitmap.
void check_reencode(const MessageView& msg) {
  Scratch& s = scratch();
  const Dialect& d = msg.dialect();
  MessageBuilder b(d);
  b.reset(msg.mti());
  b.set_header(msg.header());
  for (int de = 2; de <= kMaxField; ++de) {
    if (msg.has(de)) {
      b.copy_from(msg, de);
    }
  }
  const auto n = b.encode(s.out);
  check(n.has_value());
  const std::span<const std::byte> encoded = std::span<const std::byte>(s.out).first(*n);
  const auto again = decode(d, encoded, s.again);
  check(again.has_value());
  check(data_bits(msg) == data_bits(s.again));
  const std::span<const std::byte> in = msg.bytes();
  const std::size_t prefix = d.info().header_bytes + d.mti_bytes();
  check(bytes_equal(in.first(prefix), encoded.first(prefix)));
  const std::size_t in_fields =
      prefix + d.bitmap_bytes() * static_cast<std::size_t>(msg.bitmap_count());
  const std::size_t out_fields =
      prefix + d.bitmap_bytes() * static_cast<std::size_t>(s.again.bitmap_count());
  check(bytes_equal(in.subspan(in_fields), encoded.subspan(out_fields)));
  if (msg.bitmap_count() == s.again.bitmap_count() && bitmap_chars_canonical(msg)) {
    check(bytes_equal(in, encoded));
  }
}

// Rebuilds the message from canonical values (the encoder's input form) and checks that it
// encodes, decodes and yields the same canonical values. Values live in the static arena.
void check_canonical_rebuild(const MessageView& msg) {
  Scratch& s = scratch();
  const Dialect& d = msg.dialect();
  MessageBuilder b(d);
  b.reset(msg.mti());
  b.set_header(msg.header());
  std::span<std::byte> arena(s.arena);
  for (int de = 2; de <= kMaxField; ++de) {
    if (!msg.has(de)) {
      continue;
    }
    const FieldView f = msg.field(de);
    const auto v = canonical_value(f, arena);
    // The arena holds twice the largest message, so it never runs out.
    check(v.data() != nullptr || f.wire.empty());
    if (!v.empty() && v.data() == arena.data()) {
      arena = arena.subspan(v.size());
    }
    if (f.spec->is_binary()) {
      b.set_bytes(de, v);
    } else {
      b.set_text(de, std::string_view(reinterpret_cast<const char*>(v.data()), v.size()));
    }
  }
  const auto n = b.encode(s.canon_out);
  check(n.has_value());
  const auto again = decode(d, std::span<const std::byte>(s.canon_out).first(*n), s.again);
  check(again.has_value());
  check(data_bits(msg) == data_bits(s.again));
  for (int de = 2; de <= kMaxField; ++de) {
    if (msg.has(de)) {
      const auto a = canonical_value(msg.field(de), s.left);
      const auto c = canonical_value(s.again.field(de), s.right);
      check(a.data() != nullptr || msg.field(de).wire.empty());
      check(bytes_equal(a, c));
    }
  }
}

// Copies the message into the next shipped dialect (MessageBuilder::copy_from re-encodes
// each value from its canonical form). Values need not fit the other dialect's fields, so
// encode may fail; when it succeeds, the result must decode, except that encode does not check
// a composite field's inner structure, which decode does.
void check_foreign_copy(const MessageView& msg, const Dialect& target) {
  Scratch& s = scratch();
  if (target.info().header_bytes != msg.dialect().info().header_bytes) {
    return;
  }
  MessageBuilder b(target);
  b.reset(msg.mti());
  b.set_header(msg.header());
  for (int de = 2; de <= kMaxField; ++de) {
    if (msg.has(de) && target.field(de).defined) {
      b.copy_from(msg, de);
    }
  }
  const auto n = b.encode(s.out);
  if (!n) {
    return;
  }
  const auto again = decode(target, std::span<const std::byte>(s.out).first(*n), s.again);
  if (!again) {
    const auto field = static_cast<int>(again.error().field);
    check(field >= 2 && field <= kMaxField);
    check(target.field(field).composite != CompositeKind::kNone);
  }
}

// Frames an encoded response with the connection's framing and cuts it out again, as the peer
// would: the same message must come back.
void check_response_frame(const Framing& framing, std::span<const std::byte> message) {
  Scratch& s = scratch();
  const std::size_t prefix = length_header_bytes(framing.length);
  const std::size_t body = framing.header_bytes + message.size();
  if (framing.length == LengthHeader::kNone || body > framing.max_frame_bytes) {
    return;
  }
  const auto written = write_frame_header(framing, body, s.frame);
  if (!written) {
    // Only a body the prefix cannot represent (len2-bcd and len4-ascii stop at 9999).
    check(written.error().code == Errc::kFrameTooLarge);
    return;
  }
  check(*written == prefix);
  std::memset(s.frame.data() + prefix, 0x5A, framing.header_bytes);
  std::memcpy(s.frame.data() + prefix + framing.header_bytes, message.data(), message.size());
  const FrameDecoder decoder(framing);
  const FrameResult r = decoder.decode(std::span<const std::byte>(s.frame).first(prefix + body));
  check(r.status == FrameStatus::kComplete);
  check(r.consumed == prefix + body);
  check(bytes_equal(r.message, message));
}

// The response the switch would send: echoed fields, DE 39 and DE 38.
void check_response(const MessageView& msg, const Framing& framing) {
  if (response_mti(msg.mti()) == 0) {
    return;
  }
  Scratch& s = scratch();
  const Dialect& d = msg.dialect();
  // ISO 8583:1987 DE 39 is an 2 ("00"); ISO 8583:1993 DE 39 is the action code n 3 ("000").
  const std::string_view code = d.field(39).max_units == 3 ? "000" : "00";
  const std::string_view approval = d.field(38).defined ? "A1B2C3" : "";
  MessageBuilder b(d);
  const auto built = build_response(msg, code, approval, b);
  if (!built) {
    // The shipped dialects define DE 38 and DE 39, so only a missing response MTI can fail.
    check(built.error().code == Errc::kNoResponseMti);
    return;
  }
  const auto n = b.encode(s.out);
  if (!n) {
    // The request may already be near the size limit; the response adds DE 38 and DE 39.
    check(n.error().code == Errc::kMessageTooLarge);
    return;
  }
  const auto again = decode(d, std::span<const std::byte>(s.out).first(*n), s.response_view);
  check(again.has_value());
  check(s.response_view.mti() == response_mti(msg.mti()));
  check(s.response_view.has(39));
  check_response_frame(framing, std::span<const std::byte>(s.out).first(*n));
}

// Walks a BER-TLV block depth-first with one reader per level, as an application reading DE 55
// would. The block passed decode()'s validation, so no object may fail to parse.
void walk_tlv(std::span<const std::byte> block) {
  std::array<TlvReader, kTlvDepthMax + 1> readers{};
  readers[0] = TlvReader(block);
  std::size_t open = 1;
  std::size_t objects = 0;
  while (open > 0) {
    TlvObject o;
    const auto got = readers[open - 1].next(o);
    check(got.has_value());
    if (!*got) {
      --open;
      continue;
    }
    ++objects;
    check(!o.raw.empty() && o.raw.size() >= o.value.size());
    if (o.constructed && open < readers.size()) {
      readers[open] = TlvReader(o.value);
      ++open;
    }
  }
  check(objects <= block.size());
}

void inspect_fields(const MessageView& msg) {
  Scratch& s = scratch();
  const Dialect& d = msg.dialect();
  for (int de = 2; de <= kMaxField; ++de) {
    if (!msg.has(de)) {
      continue;
    }
    const FieldView f = msg.field(de);
    check(f.present());
    const std::string_view t = text_value(f, s.text);
    check(t.data() != nullptr || f.wire.empty());
    if (f.spec->type == ContentType::kN) {
      const auto number = number_value(f);
      keep(number.has_value() ? *number : 0);
    }
    if (de == 35) {
      // Track 2 as the PIN/CVV checks read it; any text may come in, so only no crash counts.
      const auto track = parse_track2(t);
      keep(track.has_value() ? track->pan.size() : 0);
    }
    switch (f.spec->composite) {
      case CompositeKind::kNone:
        break;
      case CompositeKind::kBerTlv: {
        const auto raw = canonical_value(f, std::as_writable_bytes(std::span(s.text)));
        walk_tlv(raw);
        const auto amount = find_tlv(raw, 0x9F02);  // EMV amount, authorised
        check(amount.has_value());
        break;
      }
      case CompositeKind::kPositional:
      case CompositeKind::kBitmapped: {
        const auto r = decode_composite(msg, de, s.composite);
        check(r.has_value());
        for (int sub = 1; sub <= d.composite(*f.spec).max_subfield; ++sub) {
          if (s.composite.has(sub)) {
            const std::string_view st = text_value(s.composite.subfield(sub), s.text);
            check(st.data() != nullptr || s.composite.subfield(sub).wire.empty());
          }
        }
        break;
      }
    }
  }
  // The typed readers a reversal or advice goes through (DE 90 or DE 56, DE 95); bad contents
  // are errors, never crashes.
  if (msg.has(90)) {
    const auto original = read_original_data(msg);
    keep(original.has_value() ? original->stan : 0);
  }
  if (msg.has(56)) {
    const auto original = read_original_data_93(msg);
    keep(original.has_value() ? original->local_time + original->acquirer_len : 0);
  }
  if (msg.has(95)) {
    const auto amounts = read_replacement_amounts(msg);
    keep(amounts.has_value() ? static_cast<std::uint64_t>(amounts->transaction_minor) : 0);
  }
}

// Everything the switch does with one message's bytes.
void exercise_message(const Dialect& d, const Framing& framing, std::span<const std::byte> bytes) {
  const Setup& st = setup();
  MessageView msg;
  const auto r = decode(d, bytes, msg);
  const auto measured = measure(d, bytes);
  if (!r) {
    return;
  }
  check(*r == bytes.size());
  check(measured.has_value() && *measured == bytes.size());
  inspect_fields(msg);
  check_reencode(msg);
  check_canonical_rebuild(msg);
  check_response(msg, framing);
  for (std::size_t i = 0; i < st.dialects.size(); ++i) {
    if (st.dialects[i] == &d) {
      check_foreign_copy(msg, *st.dialects[(i + 1) % st.dialects.size()]);
    }
  }
}

void run_frames(const Dialect& d, const Framing& framing, std::span<const std::byte> buffer) {
  const FrameDecoder decoder(framing, &d);
  std::span<const std::byte> rest = buffer;
  while (!rest.empty()) {
    const FrameResult r = decoder.decode(rest);
    if (r.status == FrameStatus::kNeedMore || r.status == FrameStatus::kMalformed) {
      check(r.consumed == 0);
      break;
    }
    check(r.consumed > 0 && r.consumed <= rest.size());
    if (r.status == FrameStatus::kComplete) {
      check(r.header.size() == framing.header_bytes);
      check(!r.message.empty());
      check(r.message.data() + r.message.size() <= rest.data() + r.consumed);
      exercise_message(d, framing, r.message);
    }
    rest = rest.subspan(r.consumed);
  }
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the entry point libFuzzer calls.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const Setup& st = setup();
  const unsigned selector = data[0];
  const Dialect& dialect = *st.dialects[selector & 0x03U];
  const Framing& framing = st.framings[(selector >> 2U) % kFramingNames.size()];
  const std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  run_frames(dialect, framing, rest);
  for (const Dialect* d : st.dialects) {
    exercise_message(*d, framing, rest);
  }
  return 0;
}
