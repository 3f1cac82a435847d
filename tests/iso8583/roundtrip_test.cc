// Property tests over the shipped dialects: random valid messages survive encode -> decode ->
// encode unchanged, and decoding arbitrary bytes never crashes and never accepts something it
// cannot reproduce. Seeds are fixed; failures print the seed and the iteration.
#include <algorithm>
#include <array>
#include <bitset>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "iso8583/composite.h"
#include "iso8583/dialect_loader.h"
#include "iso8583/error.h"
#include "iso8583/message.h"
#include "iso8583/spec.h"
#include "iso8583/tlv.h"
#include "tests/iso8583/test_util.h"

namespace authswitch::iso8583 {
namespace {

using test::to_hex;

constexpr std::uint32_t kSeed = 0x8583'2026U;
constexpr int kValidMessages = 2000;
constexpr int kRandomInputs = 5000;
constexpr int kFlippedInputs = 5000;
constexpr int kFlipsPerMessage = 5;  // flipped copies of each generated message
constexpr std::array<std::uint16_t, 9> kMtis = {100, 110, 200, 210, 400, 410, 420, 800, 810};

std::string describe_error(const Error& e) {
  std::array<char, 128> buf;
  return std::string(describe(e, buf));
}

bool same(std::span<const std::byte> a, std::span<const std::byte> b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

std::string as_string(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// One field of a generated message: what the builder is given and what decoding must give back.
struct Value {
  int de = 0;
  bool binary = false;
  std::string text;            // character fields
  std::vector<std::byte> raw;  // binary fields
  std::string expected;        // canonical form after decoding (raw bytes for b fields)
};

class Generator {
 public:
  explicit Generator(std::uint32_t seed) : rng_(seed) {}

  // Plain modulo (a negligible bias) rather than the std distributions, which are slow in an
  // unoptimised debug build.
  std::uint32_t uniform(std::uint32_t lo, std::uint32_t hi) {
    return lo + static_cast<std::uint32_t>(rng_() % (std::uint64_t{hi} - lo + 1));
  }
  bool chance(double p) { return static_cast<double>(rng_()) < p * 4294967296.0; }
  std::byte byte() { return static_cast<std::byte>(uniform(0, 255)); }
  char pick(std::string_view from) {
    return from[uniform(0, static_cast<std::uint32_t>(from.size() - 1))];
  }

  // `n` characters a field of type `t` allows (x+n: the sign counts as one).
  std::string chars(ContentType t, std::uint32_t n, std::string_view signs = "CD") {
    static constexpr std::string_view kDigits = "0123456789";
    static constexpr std::string_view kAlnum =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    static constexpr std::string_view kAlnumSpace =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ";
    static constexpr std::string_view kLettersSpace =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ";
    static constexpr std::string_view kPrintable =
        " !\"#$%&'()*+,-./"
        "0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
    static constexpr std::string_view kNumSpecial = "0123456789 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    static constexpr std::string_view kAlphaSpecial =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    std::string s;
    // Four characters per draw: generation dominates the test's run time.
    auto fill = [&](std::string_view from, std::uint32_t count) {
      const std::size_t at = s.size();
      s.resize(at + count);
      std::uint32_t bits = 0;
      for (std::uint32_t i = 0; i < count; ++i) {
        if (i % 4 == 0) {
          bits = static_cast<std::uint32_t>(rng_());
        }
        s[at + i] = from[(bits & 0xFFU) % from.size()];
        bits >>= 8U;
      }
    };
    switch (t) {
      case ContentType::kN:
        fill(kDigits, n);
        break;
      case ContentType::kA:
        fill(kLettersSpace, n);
        break;
      case ContentType::kAn:
        fill(kAlnum, n);
        break;
      case ContentType::kAns:
        fill(kPrintable, n);
        break;
      case ContentType::kAnp:
        fill(kAlnumSpace, n);
        break;
      case ContentType::kNs:
        fill(kNumSpecial, n);
        break;
      case ContentType::kAs:
        fill(kAlphaSpecial, n);
        break;
      case ContentType::kZ:
        fill(kDigits, n);
        if (n > 0) {
          s[uniform(0, n - 1)] = '=';
        }
        break;
      case ContentType::kXn:
        if (n > 0) {
          s.push_back(pick(signs));
          fill(kDigits, n - 1);
        }
        break;
      case ContentType::kB: {
        const auto raw = random_bytes(n);
        s.assign(reinterpret_cast<const char*>(raw.data()), raw.size());
        break;
      }
    }
    return s;
  }

  // A well-formed BER-TLV block of at most `cap` bytes: primitives and templates of primitives,
  // short and long length forms, now and then a 0x00 padding byte between objects.
  std::vector<std::byte> tlv_block(std::size_t cap) {
    static const std::vector<std::vector<std::uint8_t>> kPrimitive = {
        {0x82},       {0x84},       {0x95},       {0x9A},
        {0x9C},       {0x5F, 0x2A}, {0x5F, 0x34}, {0x9F, 0x02},
        {0x9F, 0x03}, {0x9F, 0x10}, {0x9F, 0x1A}, {0x9F, 0x26},
        {0x9F, 0x27}, {0x9F, 0x36}, {0x9F, 0x37}, {0xDF, 0x81, 0x01}};
    static const std::vector<std::vector<std::uint8_t>> kTemplate = {
        {0x70}, {0x77}, {0xE1}, {0xBF, 0x0C}};
    std::vector<std::byte> out;
    const std::uint32_t objects = uniform(0, 6);
    for (std::uint32_t i = 0; i < objects; ++i) {
      std::vector<std::byte> obj;
      if (chance(0.1)) {
        obj.push_back(std::byte{0x00});
      }
      if (chance(0.2)) {
        std::vector<std::byte> inner;
        const std::uint32_t children = uniform(1, 3);
        for (std::uint32_t c = 0; c < children; ++c) {
          append(inner, kPrimitive[uniform(0, static_cast<std::uint32_t>(kPrimitive.size() - 1))],
                 random_bytes(uniform(0, 12)));
        }
        append(obj, kTemplate[uniform(0, static_cast<std::uint32_t>(kTemplate.size() - 1))], inner);
      } else {
        const std::uint32_t len = chance(0.1) ? uniform(120, 200) : uniform(0, 16);
        append(obj, kPrimitive[uniform(0, static_cast<std::uint32_t>(kPrimitive.size() - 1))],
               random_bytes(len));
      }
      if (out.size() + obj.size() <= cap) {
        out.insert(out.end(), obj.begin(), obj.end());
      }
    }
    return out;
  }

  std::vector<std::byte> random_bytes(std::size_t n) {
    std::vector<std::byte> v(n);
    std::uint32_t bits = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (i % 4 == 0) {
        bits = static_cast<std::uint32_t>(rng_());
      }
      v[i] = static_cast<std::byte>(bits & 0xFFU);
      bits >>= 8U;
    }
    return v;
  }

 private:
  static void append(std::vector<std::byte>& out, const std::vector<std::uint8_t>& tag,
                     const std::vector<std::byte>& value) {
    for (const std::uint8_t t : tag) {
      out.push_back(static_cast<std::byte>(t));
    }
    const std::size_t n = value.size();
    if (n < 0x80) {
      out.push_back(static_cast<std::byte>(n));
    } else if (n <= 0xFF) {
      out.push_back(std::byte{0x81});
      out.push_back(static_cast<std::byte>(n));
    } else {
      out.push_back(std::byte{0x82});
      out.push_back(static_cast<std::byte>(n >> 8U));
      out.push_back(static_cast<std::byte>(n & 0xFFU));
    }
    out.insert(out.end(), value.begin(), value.end());
  }

  std::mt19937 rng_;
};

// The canonical form of `text` once a fixed field has padded it to its length. A signed
// amount (x+n) keeps its sign first: "C150" in x+n 9 is "C00000150".
std::string padded(const FieldSpec& f, const std::string& text) {
  if (!f.is_fixed() || text.size() >= f.max_units) {
    return text;
  }
  const std::string pad(f.max_units - text.size(), f.pad_char);
  if (f.pad_side == PadSide::kRight) {
    return text + pad;
  }
  if (f.type == ContentType::kXn) {
    return text.substr(0, 1) + pad + text.substr(1);
  }
  return pad + text;
}

// Wire bytes of a field with a value of `units` units, prefix included.
std::size_t wire_cost(const FieldSpec& f, std::uint32_t units) {
  return f.is_fixed() ? f.fixed_wire_bytes : f.prefix_bytes + std::size_t{wire_bytes_for(f, units)};
}

// A length for a variable field: mostly short, sometimes the minimum or the maximum, and never
// more than `budget` wire bytes. Returns false when not even the minimum fits.
bool pick_length(Generator& g, const FieldSpec& f, std::size_t budget, std::uint32_t& len) {
  const std::uint32_t lo = f.min_units;
  const std::uint32_t hi = f.max_units;
  if (g.chance(0.05)) {
    len = hi;
  } else if (g.chance(0.1)) {
    len = lo;
  } else {
    len = g.uniform(lo, std::max(lo, std::min(hi, 40U)));
  }
  while (len > lo && wire_cost(f, len) > budget) {
    len = std::max(lo, len / 2);
  }
  return wire_cost(f, len) <= budget;
}

// A random valid value for field `de`, or false when it is skipped (no room left, or a kind of
// field the generator does not cover).
bool make_value(Generator& g, const Dialect& d, int de, std::size_t& budget, Value& v) {
  const FieldSpec& f = d.field(de);
  v.de = de;
  v.binary = f.type == ContentType::kB;
  if (f.composite == CompositeKind::kBitmapped) {
    return false;  // none in the shipped dialects
  }
  if (f.composite == CompositeKind::kPositional) {
    // Each subfield at its full fixed length; x+n fees may also carry a '0' sign (DE 95).
    const CompositeSpec& c = d.composite(f);
    for (int s = 1; s <= c.max_subfield; ++s) {
      const FieldSpec& sf = c.subfields[static_cast<std::size_t>(s)];
      EXPECT_TRUE(sf.is_fixed()) << d.name() << " DE " << de << "." << s;
      const bool lenient = (sf.sign_mask & cls::kDigit) != 0;
      v.text += g.chars(sf.type, sf.max_units, lenient ? "CD0" : "CD");
    }
    EXPECT_EQ(v.text.size(), f.max_units) << d.name() << " DE " << de;
    v.expected = v.text;
  } else if (v.binary) {
    std::uint32_t len = f.max_units;
    if (!f.is_fixed() && !pick_length(g, f, budget, len)) {
      return false;
    }
    if (f.composite == CompositeKind::kBerTlv) {
      v.raw = g.tlv_block(len);
    } else {
      v.raw = g.random_bytes(len);
    }
    v.expected = as_string(v.raw);
  } else {
    std::uint32_t len = f.max_units;
    if (f.is_fixed()) {
      // Shorter values are padded by the encoder. A signed amount needs at least its sign.
      if (f.pad_side != PadSide::kNone && g.chance(0.3)) {
        len = g.uniform(f.type == ContentType::kXn ? 1 : 0, f.max_units);
      }
    } else if (!pick_length(g, f, budget, len)) {
      return false;
    }
    v.text = g.chars(f.type, len);
    v.expected = padded(f, v.text);
  }
  const auto units = static_cast<std::uint32_t>(v.binary ? v.raw.size() : v.text.size());
  const std::size_t cost = wire_cost(f, units);
  if (cost > budget) {
    return false;
  }
  budget -= cost;
  return true;
}

std::string context(std::string_view dialect, std::uint32_t seed, int iteration) {
  std::ostringstream s;
  s << dialect << " seed " << seed << " iteration " << iteration;
  return s.str();
}

std::vector<std::byte> encode_all(const MessageBuilder& b, std::string& error) {
  std::vector<std::byte> out(16384);
  const auto r = b.encode(out);
  if (!r) {
    error = describe_error(r.error());
    return {};
  }
  out.resize(*r);
  return out;
}

// Writes one bitmap word in the dialect's encoding, uppercase hex as the encoder does.
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
    auto b = static_cast<std::uint8_t>(c);
    if (enc == BitmapEncoding::kEbcdicHex) {
      b = c <= '9' ? static_cast<std::uint8_t>(0xF0 + (c - '0'))
                   : static_cast<std::uint8_t>(0xC1 + (c - 'A'));
    }
    p[i] = static_cast<std::byte>(b);
    word >>= 4U;
  }
}

// True when the bitmaps of a decoded message are exactly what the encoder would write for its
// fields: uppercase hex digits, and no trailing bitmap without fields.
bool canonical_bitmaps(const MessageView& m) {
  const Dialect& d = m.dialect();
  const std::size_t start = d.info().header_bytes + d.mti_bytes();
  const std::size_t bm = d.bitmap_bytes();
  const auto words = m.bitmap_words();
  for (int i = 0; i < m.bitmap_count(); ++i) {
    std::array<std::byte, 16> expected{};
    put_bitmap(d.info().bitmap_encoding, words[static_cast<std::size_t>(i)], expected.data());
    const auto actual = m.bytes().subspan(start + static_cast<std::size_t>(i) * bm, bm);
    if (!std::equal(actual.begin(), actual.end(), expected.begin())) {
      return false;
    }
  }
  const int last = m.bitmap_count() - 1;
  return last == 0 || (words[static_cast<std::size_t>(last)] & ~(std::uint64_t{1} << 63U)) != 0;
}

std::vector<std::byte> copy_encode(const MessageView& m, std::string& error) {
  MessageBuilder copy(m.dialect());
  copy.reset(m.mti());
  copy.set_header(m.header());
  for (int de = 2; de <= kMaxField; ++de) {
    if (m.has(de)) {
      copy.copy_from(m, de);
    }
  }
  return encode_all(copy, error);
}

// Whatever `bytes` are: decode and measure must not crash; on success every byte is used,
// every field reads, composites and DE 55 re-validate, and copying every field reproduces the
// input (exactly, unless its bitmaps were not in canonical form).
::testing::AssertionResult decode_any(const Dialect& d, std::span<const std::byte> bytes) {
  MessageView m;
  const auto r = decode(d, bytes, m);
  const auto mr = measure(d, bytes);
  if (!r) {
    if (r.error().offset > bytes.size()) {
      return ::testing::AssertionFailure()
             << "error offset past the input: " << describe_error(r.error());
    }
    for (int de = 2; de <= kMaxField; ++de) {
      if (m.has(de)) {
        return ::testing::AssertionFailure() << "failed decode left DE " << de;
      }
    }
    return ::testing::AssertionSuccess();
  }
  if (*r != bytes.size()) {
    return ::testing::AssertionFailure() << "consumed " << *r << " of " << bytes.size();
  }
  if (!mr || *mr != bytes.size()) {
    return ::testing::AssertionFailure() << "measure disagrees with decode: "
                                         << (mr ? std::to_string(*mr) : describe_error(mr.error()));
  }
  std::array<std::byte, 4096> scratch;
  for (int de = 2; de <= kMaxField; ++de) {
    if (!m.has(de)) {
      continue;
    }
    const FieldView f = m.field(de);
    const auto v = canonical_value(f, scratch);
    if (v.data() == nullptr && !f.wire.empty()) {
      return ::testing::AssertionFailure() << "DE " << de << " has no canonical value";
    }
    if (f.spec->composite == CompositeKind::kPositional ||
        f.spec->composite == CompositeKind::kBitmapped) {
      CompositeView cv;
      if (const auto cr = decode_composite(m, de, cv); !cr) {
        return ::testing::AssertionFailure()
               << "DE " << de
               << " decoded but its composite does not: " << describe_error(cr.error());
      }
    } else if (f.spec->composite == CompositeKind::kBerTlv) {
      if (const auto tr = validate_tlv(v, static_cast<std::uint16_t>(de)); !tr) {
        return ::testing::AssertionFailure()
               << "DE " << de
               << " decoded but is not valid BER-TLV: " << describe_error(tr.error());
      }
    }
  }
  std::string error;
  const auto again = copy_encode(m, error);
  if (!error.empty()) {
    return ::testing::AssertionFailure() << "re-encoding a decoded message failed: " << error;
  }
  if (canonical_bitmaps(m)) {
    if (!same(again, bytes)) {
      return ::testing::AssertionFailure()
             << "re-encoded\n  " << to_hex(again) << "\nfrom input\n  " << to_hex(bytes);
    }
    return ::testing::AssertionSuccess();
  }
  // Lowercase hex or an empty secondary bitmap: the fields must still be identical.
  MessageView m2;
  const auto r2 = decode(d, again, m2);
  if (!r2) {
    return ::testing::AssertionFailure()
           << "re-encoded message does not decode: " << describe_error(r2.error());
  }
  for (int de = 2; de <= kMaxField; ++de) {
    if (m.has(de) != m2.has(de) || (m.has(de) && !same(m.raw_field(de), m2.raw_field(de)))) {
      return ::testing::AssertionFailure() << "DE " << de << " changed on re-encoding";
    }
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------

class RoundTrip : public ::testing::TestWithParam<const char*> {
 protected:
  [[nodiscard]] std::uint32_t seed() const {
    const auto names = builtin_dialect_names();
    const auto it = std::find(names.begin(), names.end(), std::string_view(GetParam()));
    return kSeed + static_cast<std::uint32_t>(it - names.begin());
  }

  // A random valid message: its values, and the builder referencing them.
  std::vector<Value> generate(Generator& g, const Dialect& d, MessageBuilder& b) {
    std::vector<Value> values;
    values.reserve(kFieldSlots);
    std::size_t budget = d.info().max_message_bytes - 64;
    b.reset(kMtis[g.uniform(0, static_cast<std::uint32_t>(kMtis.size() - 1))]);
    const int last = d.info().max_bitmaps >= 2 ? 128 : 64;
    for (int de = 2; de <= last; ++de) {
      if (de == 65 || !d.field(de).defined || !g.chance(0.3)) {
        continue;
      }
      Value v;
      if (make_value(g, d, de, budget, v)) {
        values.push_back(std::move(v));
      }
    }
    for (const Value& v : values) {
      if (v.binary) {
        b.set_bytes(v.de, v.raw);
      } else {
        b.set_text(v.de, v.text);
      }
    }
    return values;
  }
};

::testing::AssertionResult check_valid(const Dialect& d, const MessageBuilder& b,
                                       const std::vector<Value>& values) {
  std::string error;
  const auto wire = encode_all(b, error);
  if (!error.empty()) {
    return ::testing::AssertionFailure() << "encode failed: " << error;
  }
  MessageView m;
  const auto r = decode(d, wire, m);
  if (!r) {
    return ::testing::AssertionFailure() << "decode failed: " << describe_error(r.error());
  }
  if (*r != wire.size()) {
    return ::testing::AssertionFailure() << "consumed " << *r << " of " << wire.size();
  }
  if (m.mti() != b.mti()) {
    return ::testing::AssertionFailure() << "MTI " << m.mti() << " != " << b.mti();
  }
  // Exactly the fields that were set, each with its canonical value.
  std::bitset<kFieldSlots> set_fields;
  for (const Value& v : values) {
    set_fields.set(static_cast<std::size_t>(v.de));
  }
  for (int de = 2; de <= kMaxField; ++de) {
    if (m.has(de) != set_fields.test(static_cast<std::size_t>(de))) {
      return ::testing::AssertionFailure() << "DE " << de << " presence differs";
    }
  }
  std::array<std::byte, 4096> scratch;
  std::vector<std::string> canon;
  canon.reserve(values.size());
  for (const Value& v : values) {
    const auto got = canonical_value(m.field(v.de), scratch);
    canon.push_back(as_string(got));
    if (canon.back() != v.expected) {
      return ::testing::AssertionFailure()
             << "DE " << v.de << ": set '" << v.text << "' (hex " << to_hex(test::as_bytes(v.text))
             << "), expected canonical '" << v.expected << "', got '" << canon.back() << "'";
    }
  }
  if (const auto mr = measure(d, wire); !mr || *mr != wire.size()) {
    return ::testing::AssertionFailure() << "measure disagrees with decode";
  }
  // Copying every field of the view reproduces the bytes.
  const auto copied = copy_encode(m, error);
  if (!error.empty() || !same(copied, wire)) {
    return ::testing::AssertionFailure() << "copy_from re-encoding differs " << error << "\n  "
                                         << to_hex(copied) << "\n  " << to_hex(wire);
  }
  // So does encoding the canonical values again.
  MessageBuilder again(d);
  again.reset(m.mti());
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (values[i].binary) {
      again.set_bytes(values[i].de, test::as_bytes(canon[i]));
    } else {
      again.set_text(values[i].de, canon[i]);
    }
  }
  const auto reencoded = encode_all(again, error);
  if (!error.empty() || !same(reencoded, wire)) {
    return ::testing::AssertionFailure() << "re-encoding canonical values differs " << error;
  }
  return ::testing::AssertionSuccess();
}

TEST_P(RoundTrip, RandomValidMessagesSurviveEncodeDecodeEncode) {
  const Dialect& d = builtin_dialect(GetParam());
  Generator g(seed());
  std::size_t fields = 0;
  for (int i = 0; i < kValidMessages; ++i) {
    MessageBuilder b(d);
    const auto values = generate(g, d, b);
    fields += values.size();
    const auto ok = check_valid(d, b, values);
    ASSERT_TRUE(ok) << context(GetParam(), seed(), i);
  }
  // About 30% of the defined fields per message.
  EXPECT_GT(fields, static_cast<std::size_t>(kValidMessages) * 25);
}

TEST_P(RoundTrip, RandomBytesNeverCrashAndAreReproducedWhenAccepted) {
  const Dialect& d = builtin_dialect(GetParam());
  Generator g(seed() ^ 0x5A5A5A5AU);
  // A valid MTI to start some inputs with, so they get past it.
  MessageBuilder empty(d);
  empty.reset(100);
  std::string error;
  const auto mti_and_bitmap = encode_all(empty, error);
  ASSERT_TRUE(error.empty()) << error;
  const std::size_t mti = d.mti_bytes();
  for (int i = 0; i < kRandomInputs; ++i) {
    auto bytes = g.random_bytes(g.uniform(0, 300));
    const int mode = i % 3;
    if (mode >= 1 && bytes.size() >= mti) {
      std::copy_n(mti_and_bitmap.begin(), mti, bytes.begin());
    }
    if (mode == 2 && bytes.size() >= mti + d.bitmap_bytes()) {
      // A well-formed primary bitmap (no secondary) announcing a few random fields.
      std::uint64_t word = 0;
      for (int k = 0; k < 3; ++k) {
        word |= std::uint64_t{1} << g.uniform(0, 62);
      }
      put_bitmap(d.info().bitmap_encoding, word, bytes.data() + mti);
    }
    const auto ok = decode_any(d, bytes);
    ASSERT_TRUE(ok) << context(GetParam(), seed() ^ 0x5A5A5A5AU, i) << "\n  input "
                    << to_hex(bytes);
  }
}

TEST_P(RoundTrip, ValidMessagesWithFlippedBytesNeverCrash) {
  const Dialect& d = builtin_dialect(GetParam());
  const std::uint32_t s = seed() ^ 0xF11FF11FU;
  Generator g(s);
  int accepted = 0;
  std::vector<std::byte> valid;
  for (int i = 0; i < kFlippedInputs; ++i) {
    if (i % kFlipsPerMessage == 0) {
      MessageBuilder b(d);
      const auto values = generate(g, d, b);
      std::string error;
      valid = encode_all(b, error);
      ASSERT_TRUE(error.empty()) << context(GetParam(), s, i) << ": " << error;
    }
    auto bytes = valid;
    const std::uint32_t flips = g.uniform(1, 3);
    for (std::uint32_t k = 0; k < flips; ++k) {
      const auto at = g.uniform(0, static_cast<std::uint32_t>(bytes.size() - 1));
      bytes[at] ^= static_cast<std::byte>(g.uniform(1, 255));
    }
    MessageView probe;
    accepted += decode(d, bytes, probe).has_value() ? 1 : 0;
    const auto ok = decode_any(d, bytes);
    ASSERT_TRUE(ok) << context(GetParam(), s, i) << "\n  input " << to_hex(bytes);
  }
  // Flips inside free-text fields keep the message valid; most others break it.
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, kFlippedInputs);
}

INSTANTIATE_TEST_SUITE_P(Shipped, RoundTrip,
                         ::testing::Values("iso87-ascii", "iso87-ascii-binbitmap", "iso87-bcd",
                                           "iso93-ebcdic"),
                         [](const ::testing::TestParamInfo<const char*>& pi) {
                           std::string name = pi.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// The oracle for accepted inputs: non-canonical bitmaps (lowercase hex, an empty secondary
// bitmap) are not reproduced byte for byte, but the fields must be.
TEST(RoundTripOracle, NonCanonicalBitmapsAreComparedFieldByField) {
  const Dialect& d = builtin_dialect("iso87-ascii");
  const std::string lower =
      "0100"
      "0f00000000000000"
      "000000012345"
      "000000012345"
      "1124101010"
      "00000001";
  const std::string empty_secondary =
      "0800"
      "8000000000000000"
      "0000000000000000";
  for (const std::string& wire : {lower, empty_secondary}) {
    MessageView m;
    const auto r = decode(d, test::as_bytes(wire), m);
    ASSERT_TRUE(r.has_value()) << wire << ": " << describe_error(r.error());
    EXPECT_FALSE(canonical_bitmaps(m)) << wire;
    std::string error;
    const auto again = copy_encode(m, error);
    EXPECT_NE(as_string(again), wire);
    EXPECT_TRUE(decode_any(d, test::as_bytes(wire))) << wire;
  }
}

// The generator itself: padding rules the property test relies on.
TEST(RoundTripGenerator, PaddedCanonicalForms) {
  const Dialect& d = builtin_dialect("iso87-ascii");
  EXPECT_EQ(padded(d.field(4), "12345"), "000000012345");
  EXPECT_EQ(padded(d.field(41), "T1"), "T1      ");
  EXPECT_EQ(padded(d.field(28), "C150"), "C00000150");
  EXPECT_EQ(padded(d.field(2), "4761"), "4761");
  Generator g(kSeed);
  const auto block = g.tlv_block(255);
  EXPECT_LE(block.size(), 255U);
  EXPECT_TRUE(validate_tlv(block, 55).has_value());
}

}  // namespace
}  // namespace authswitch::iso8583
