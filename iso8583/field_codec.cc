#include <algorithm>
#include <bit>
#include <cstring>

#include "iso8583/charset_internal.h"
#include "iso8583/field_codec_internal.h"

namespace authswitch::iso8583::internal {
namespace {

inline std::uint8_t u8(std::byte b) noexcept { return static_cast<std::uint8_t>(b); }

// Reads a length prefix; returns kOk and the value, or the error.
inline FieldStatus read_prefix(const FieldSpec& f, const std::byte* p,
                               std::uint32_t& units) noexcept {
  std::uint32_t v = 0;
  switch (f.prefix_encoding) {
    case PrefixEncoding::kAscii:
      for (unsigned i = 0; i < f.prefix_bytes; ++i) {
        const unsigned d = u8(p[i]) - unsigned{'0'};
        if (d > 9) {
          return {Errc::kBadLengthPrefix, i};
        }
        v = v * 10 + d;
      }
      break;
    case PrefixEncoding::kEbcdic:
      for (unsigned i = 0; i < f.prefix_bytes; ++i) {
        const unsigned d = u8(p[i]) - 0xF0U;
        if (d > 9) {
          return {Errc::kBadLengthPrefix, i};
        }
        v = v * 10 + d;
      }
      break;
    case PrefixEncoding::kBcd:
      for (unsigned i = 0; i < f.prefix_bytes; ++i) {
        const unsigned hi = u8(p[i]) >> 4U;
        const unsigned lo = u8(p[i]) & 0x0FU;
        if (hi > 9 || lo > 9) {
          return {Errc::kBadLengthPrefix, i};
        }
        v = v * 100 + hi * 10 + lo;
      }
      break;
    case PrefixEncoding::kBinary:
      for (unsigned i = 0; i < f.prefix_bytes; ++i) {
        v = (v << 8U) | u8(p[i]);
      }
      break;
  }
  units = v;
  return {};
}

inline void write_prefix(const FieldSpec& f, std::uint32_t units, std::byte* p) noexcept {
  std::uint32_t v = units;
  switch (f.prefix_encoding) {
    case PrefixEncoding::kAscii:
    case PrefixEncoding::kEbcdic: {
      const unsigned zero = f.prefix_encoding == PrefixEncoding::kAscii ? '0' : 0xF0U;
      for (unsigned i = f.prefix_bytes; i-- > 0;) {
        p[i] = static_cast<std::byte>(zero + v % 10);
        v /= 10;
      }
      break;
    }
    case PrefixEncoding::kBcd:
      for (unsigned i = f.prefix_bytes; i-- > 0;) {
        const unsigned lo = v % 10;
        v /= 10;
        const unsigned hi = v % 10;
        v /= 10;
        p[i] = static_cast<std::byte>((hi << 4U) | lo);
      }
      break;
    case PrefixEncoding::kBinary:
      for (unsigned i = f.prefix_bytes; i-- > 0;) {
        p[i] = static_cast<std::byte>(v & 0xFFU);
        v >>= 8U;
      }
      break;
  }
}

// memcpy/memset of the few bytes a field value has, without a libc call: overlapping 8- or
// 4-byte moves, which compilers turn into plain loads and stores.
inline void copy_small(std::byte* dst, const void* src, std::size_t n) noexcept {
  const auto* s = static_cast<const std::byte*>(src);
  if (n >= 8) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      std::memcpy(dst + i, s + i, 8);
    }
    if (i != n) {
      std::memcpy(dst + n - 8, s + n - 8, 8);
    }
  } else if (n >= 4) {
    std::memcpy(dst, s, 4);
    std::memcpy(dst + n - 4, s + n - 4, 4);
  } else {
    for (std::size_t i = 0; i < n; ++i) {
      dst[i] = s[i];
    }
  }
}

inline void fill_small(std::byte* dst, std::byte value, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    dst[i] = value;
  }
}

// Eight bytes at a time (SWAR): the common character checks on whole words, with the byte
// table only for the tail, for rarer classes, and to find the exact offset of a bad byte.
constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
constexpr std::uint64_t kHighBits = 0x8080808080808080ULL;
constexpr std::uint64_t kHighNibbles = 0xF0F0F0F0F0F0F0F0ULL;
constexpr std::uint64_t kLowNibbles = 0x0F0F0F0F0F0F0F0FULL;

inline std::uint64_t load64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Every low nibble of v is 0..9 (adding 6 to 10..15 carries into the high nibble).
inline bool low_nibbles_decimal(std::uint64_t v) noexcept {
  return (((v & kLowNibbles) + 6 * kOnes) & kHighNibbles) == 0;
}

inline bool ascii_digits8(std::uint64_t v) noexcept {
  return (v & kHighNibbles) == 3 * 0x10 * kOnes && low_nibbles_decimal(v);
}

inline bool ebcdic_digits8(std::uint64_t v) noexcept {
  return (v & kHighNibbles) == kHighNibbles && low_nibbles_decimal(v);
}

// Every byte is printable ASCII, 0x20..0x7E ("has less than" / "has more than" word tests).
inline bool ascii_printable8(std::uint64_t v) noexcept {
  const std::uint64_t below = (v - 0x20 * kOnes) & ~v & kHighBits;
  const std::uint64_t above = ((v + (0x7F - 0x7E) * kOnes) | v) & kHighBits;
  return (below | above) == 0;
}

inline bool bcd8(std::uint64_t v) noexcept {
  return low_nibbles_decimal(v) && low_nibbles_decimal(v >> 4U);
}

// Index of the first byte of p[0..n) that `word_ok` or the class table rejects, or n.
// `before` bytes ahead of p are readable (they belong to the same message): a value shorter
// than a word is then checked as one word, its leading bytes replaced by `filler`.
template <typename WordOk>
inline std::size_t scan(const std::array<std::uint8_t, 256>& table, std::uint8_t mask,
                        const std::byte* p, std::size_t n, std::size_t before, std::uint64_t filler,
                        WordOk word_ok) noexcept {
  std::size_t i = 0;
  while (i + 8 <= n && word_ok(load64(p + i))) {
    i += 8;
  }
  if (i == n) {
    return n;
  }
  if (i + 8 > n) {
    if (n >= 8 && word_ok(load64(p + n - 8))) {
      return n;  // the tail, checked as the last (overlapping) word
    }
    if (n < 8 && before >= 8 - n) {
      const unsigned lead_bits = 8U * static_cast<unsigned>(8 - n);
      const std::uint64_t lead = (std::uint64_t{1} << lead_bits) - 1;
      // Little-endian: the value is in the high bytes of the word that ends where it ends.
      static_assert(std::endian::native == std::endian::little);
      const std::uint64_t w = (load64(p + n - 8) & ~lead) | (filler & lead);
      if (word_ok(w)) {
        return n;
      }
    }
  }
  for (; i < n; ++i) {
    if ((table[u8(p[i])] & mask) == 0) {
      return i;
    }
  }
  return n;
}

constexpr std::uint8_t kPrintable = cls::kDigit | cls::kAlpha | cls::kSpace | cls::kSpecial;

// Index of the first byte whose class is not allowed, or n.
inline std::size_t first_bad_char(const std::array<std::uint8_t, 256>& table, std::uint8_t mask,
                                  const std::byte* p, std::size_t n,
                                  std::size_t before = 0) noexcept {
  const bool ascii = &table == &kAsciiClasses;
  if (mask == cls::kDigit) {
    return ascii ? scan(table, mask, p, n, before, '0' * kOnes, ascii_digits8)
                 : scan(table, mask, p, n, before, 0xF0 * kOnes, ebcdic_digits8);
  }
  if (ascii && (mask & kPrintable) == kPrintable) {
    return scan(table, mask, p, n, before, ' ' * kOnes, ascii_printable8);
  }
  return scan(table, mask, p, n, 0, 0, [](std::uint64_t) { return false; });
}

// Number of pad nibbles in a BCD value and whether they lead.
struct BcdLayout {
  std::uint32_t digits;  // value nibbles
  std::uint32_t pads;    // pad nibbles
  bool pad_left;
};

inline BcdLayout bcd_layout(const FieldSpec& f, std::uint32_t wire_nibbles,
                            std::uint32_t digits) noexcept {
  const std::uint32_t d = std::min(digits, wire_nibbles);
  return {d, wire_nibbles - d, f.pad_side != PadSide::kRight};
}

inline std::uint8_t pad_nibble(const FieldSpec& f) noexcept {
  return f.pad_char == 'F' ? 0x0F : 0x00;
}

inline std::uint8_t nibble_at(const std::byte* p, std::uint32_t i) noexcept {
  const std::uint8_t b = u8(p[i / 2]);
  return (i % 2 == 0) ? static_cast<std::uint8_t>(b >> 4U) : static_cast<std::uint8_t>(b & 0x0FU);
}

// Whether each byte value is two valid nibbles: decimal, or for track data decimal or 'D'.
constexpr bool bcd_nibble_ok(unsigned n, bool track) noexcept {
  return n <= 9 || (track && n == 0x0D);
}
constexpr std::array<std::array<bool, 256>, 2> make_bcd_byte_tables() noexcept {
  std::array<std::array<bool, 256>, 2> t{};
  for (unsigned track = 0; track < 2; ++track) {
    for (unsigned b = 0; b < 256; ++b) {
      t[track][b] = bcd_nibble_ok(b >> 4U, track != 0) && bcd_nibble_ok(b & 0x0FU, track != 0);
    }
  }
  return t;
}
constexpr auto kBcdByteOk = make_bcd_byte_tables();

FieldStatus validate_bcd(const FieldSpec& f, const std::byte* p, std::uint32_t wire,
                         std::uint32_t digits) noexcept {
  if (f.unit == LengthUnit::kBytes) {
    digits = wire * 2;
  }
  const BcdLayout l = bcd_layout(f, wire * 2, digits);
  const std::uint32_t first = l.pad_left ? l.pads : 0;
  const std::uint8_t pad = pad_nibble(f);
  for (std::uint32_t i = 0; i < l.pads; ++i) {
    const std::uint32_t at = l.pad_left ? i : l.digits + i;
    if (nibble_at(p, at) != pad) {
      return {Errc::kBadPadding, at / 2};
    }
  }
  const bool track = f.type == ContentType::kZ;
  if (f.unit == LengthUnit::kNibbles && !track) {
    return {};
  }
  // Fast verdict: a leading or trailing half byte by nibble, whole bytes by table (eight at
  // a time where the value is long). Only a bad value walks nibbles to find the offset.
  const std::uint32_t end = first + l.digits;
  std::uint32_t i = first;
  unsigned bad = 0;
  if (i % 2 == 1 && i < end) {
    bad |= static_cast<unsigned>(!bcd_nibble_ok(nibble_at(p, i), track));
    ++i;
  }
  std::uint32_t b = i / 2;
  const std::uint32_t whole_end = end / 2;
  if (!track) {
    while (b + 8 <= whole_end && bcd8(load64(p + b))) {
      b += 8;
    }
  }
  const auto& table = kBcdByteOk[track ? 1 : 0];
  for (; b < whole_end; ++b) {
    bad |= static_cast<unsigned>(!table[u8(p[b])]);
  }
  if (end % 2 == 1 && end - 1 >= i) {
    bad |= static_cast<unsigned>(!bcd_nibble_ok(nibble_at(p, end - 1), track));
  }
  if (bad == 0) [[likely]] {
    return {};
  }
  for (i = first; i < end; ++i) {
    if (!bcd_nibble_ok(nibble_at(p, i), track)) {
      return {Errc::kBadCharset, i / 2};
    }
  }
  return {};
}

}  // namespace

FieldStatus validate_value(const FieldSpec& f, std::span<const std::byte> value,
                           std::uint32_t units, std::size_t before) noexcept {
  const std::byte* p = value.data();
  const auto n = static_cast<std::uint32_t>(value.size());
  switch (f.encoding) {
    case Encoding::kAscii:
    case Encoding::kEbcdic: {
      if (f.class_mask == 0) {
        return {};
      }
      const auto& table = f.encoding == Encoding::kAscii ? kAsciiClasses : kEbcdicClasses;
      std::size_t start = 0;
      if (f.type == ContentType::kXn && n > 0) {
        if ((table[u8(p[0])] & f.sign_mask) == 0) {
          return {Errc::kBadCharset, 0};
        }
        start = 1;
      }
      const std::size_t bad =
          first_bad_char(table, f.class_mask, p + start, n - start, before + start);
      if (bad != n - start) {
        return {Errc::kBadCharset, static_cast<std::uint32_t>(start + bad)};
      }
      return {};
    }
    case Encoding::kBcd:
      return validate_bcd(f, p, n, units);
    case Encoding::kAsciiSignBcd:
      if (n == 0) {
        return {};
      }
      if ((kAsciiClasses[u8(p[0])] & f.sign_mask) == 0) {
        return {Errc::kBadCharset, 0};
      } else {
        const FieldStatus s = validate_bcd(f, p + 1, n - 1, units - 1);
        return {s.code, s.offset + 1};
      }
    case Encoding::kAsciiHex: {
      const std::size_t bad = first_bad_char(kAsciiClasses, cls::kHex, p, n);
      if (bad != n) {
        return {Errc::kBadCharset, static_cast<std::uint32_t>(bad)};
      }
      return {};
    }
    case Encoding::kBinary:
      return {};
  }
  return {};
}

template <bool kValidate>
FieldStatus read_field(const FieldSpec& f, std::span<const std::byte> data, std::size_t& pos,
                       FieldExtent& out) noexcept {
  const std::size_t size = data.size();
  std::size_t at = pos;
  std::uint32_t units = f.max_units;
  std::uint32_t wire = f.fixed_wire_bytes;
  if (!f.is_fixed()) {
    if (size - at < f.prefix_bytes) {
      return {Errc::kTruncated, static_cast<std::uint32_t>(at)};
    }
    const FieldStatus s = read_prefix(f, data.data() + at, units);
    if (s.code != Errc::kOk) {
      return {s.code, static_cast<std::uint32_t>(at + s.offset)};
    }
    if (units > f.max_units) {
      return {Errc::kLengthTooLong, static_cast<std::uint32_t>(at)};
    }
    if (units < f.min_units) {
      return {Errc::kLengthTooShort, static_cast<std::uint32_t>(at)};
    }
    at += f.prefix_bytes;
    wire = wire_bytes_for(f, units);
  }
  if (size - at < wire) {
    return {Errc::kTruncated, static_cast<std::uint32_t>(at)};
  }
  if constexpr (kValidate) {
    const FieldStatus s = validate_value(f, data.subspan(at, wire), units, at);
    if (s.code != Errc::kOk) {
      return {s.code, static_cast<std::uint32_t>(at + s.offset)};
    }
  }
  out.value_offset = static_cast<std::uint32_t>(at);
  out.wire_len = wire;
  out.units = units;
  pos = at + wire;
  return {};
}

template FieldStatus read_field<true>(const FieldSpec&, std::span<const std::byte>, std::size_t&,
                                      FieldExtent&) noexcept;
template FieldStatus read_field<false>(const FieldSpec&, std::span<const std::byte>, std::size_t&,
                                       FieldExtent&) noexcept;

namespace {

inline int digit_nibble(const FieldSpec& f, std::uint8_t c) noexcept {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (f.type == ContentType::kZ && (c == '=' || c == 'D')) {
    return 0x0D;
  }
  if (f.unit == LengthUnit::kNibbles && f.type != ContentType::kZ) {
    const std::uint8_t h = hex_value(c);
    return h == 0xFF ? -1 : h;
  }
  return -1;
}

// Packs `text` as BCD into `wire` bytes at p with the spec's pad nibble; returns the index of
// a bad character or text.size(). Writes whole bytes (no read-modify-write); a bad character
// is only located after the loop, which stays branch-light for the common all-digits case.
std::size_t pack_bcd(const FieldSpec& f, std::string_view text, std::byte* p,
                     std::uint32_t wire) noexcept {
  const BcdLayout l = bcd_layout(f, wire * 2, static_cast<std::uint32_t>(text.size()));
  const unsigned pad = pad_nibble(f);
  const std::uint32_t first = l.pad_left ? l.pads : 0;  // nibble index of the first digit
  const std::uint32_t last = first + l.digits;
  const char* t = text.data();
  const bool plain = f.type != ContentType::kZ && f.unit != LengthUnit::kNibbles;
  unsigned bad = 0;
  auto nibble = [&](std::uint32_t k) -> unsigned {
    if (k < first || k >= last) {
      return pad;
    }
    const auto c = static_cast<std::uint8_t>(t[k - first]);
    if (plain) {
      const unsigned d = c - unsigned{'0'};
      bad |= static_cast<unsigned>(d > 9);
      return d & 0x0FU;
    }
    const int d = digit_nibble(f, c);
    bad |= static_cast<unsigned>(d < 0);
    return static_cast<unsigned>(d) & 0x0FU;
  };
  for (std::uint32_t j = 0; j < wire; ++j) {
    p[j] = static_cast<std::byte>((nibble(2 * j) << 4U) | nibble(2 * j + 1));
  }
  if (bad != 0) {
    for (std::uint32_t i = 0; i < l.digits; ++i) {
      if (digit_nibble(f, static_cast<std::uint8_t>(t[i])) < 0) {
        return i;
      }
    }
  }
  return text.size();
}

}  // namespace

FieldStatus write_field(const FieldSpec& f, std::span<const std::byte> value,
                        std::span<std::byte> out, std::size_t& pos) noexcept {
  const auto n = static_cast<std::uint32_t>(value.size());
  // Fast path, the most common field: ASCII text of exactly its fixed length (DE 3, 4, 7, 11,
  // 12, 13, 41, 42, ...). Copy, then check the copy in place a word at a time.
  if (f.encoding == Encoding::kAscii && f.prefix_digits == 0 && n == f.max_units &&
      f.type != ContentType::kXn && f.class_mask != 0) {
    if (out.size() - pos < n) {
      return {Errc::kBufferTooSmall, static_cast<std::uint32_t>(pos)};
    }
    std::byte* p = out.data() + pos;
    copy_small(p, value.data(), n);
    const std::size_t bad = first_bad_char(kAsciiClasses, f.class_mask, p, n, pos);
    if (bad != n) {
      return {Errc::kBadCharset, static_cast<std::uint32_t>(bad)};
    }
    pos += n;
    return {};
  }
  const bool binary = f.is_binary();
  // Character fields: the x+n sign is checked here; the other characters where they are
  // written (BCD packing rejects what it cannot pack; ASCII and EBCDIC output is checked in
  // place below, a word at a time, which a short caller string could not be).
  const std::uint32_t sign = (!binary && f.type == ContentType::kXn && n > 0) ? 1 : 0;
  if (sign != 0) {
    const std::uint8_t c = static_cast<std::uint8_t>(value[0]);
    if ((kAsciiClasses[c] & (f.sign_mask == 0 ? cls::kSign : f.sign_mask)) == 0) {
      return {Errc::kBadCharset, 0};
    }
  }
  if (!binary && f.type == ContentType::kXn && n == 0 && f.is_fixed()) {
    return {Errc::kValueTooShort, 0};  // a fixed x+n value needs at least its sign
  }
  std::uint32_t units = n;
  std::uint32_t pad_chars = 0;
  if (f.is_fixed()) {
    if (n > f.max_units) {
      return {Errc::kValueTooLong, 0};
    }
    if (n < f.max_units) {
      if (binary || f.pad_side == PadSide::kNone) {
        return {Errc::kValueTooShort, 0};
      }
      pad_chars = f.max_units - n;
    }
    units = f.max_units;
  } else {
    if (n > f.max_units) {
      return {Errc::kValueTooLong, 0};
    }
    if (n < f.min_units) {
      return {Errc::kValueTooShort, 0};
    }
    if (f.encoding == Encoding::kBcd && f.unit == LengthUnit::kBytes) {
      units = (n + 1) / 2;
    }
  }
  const std::uint32_t wire = wire_bytes_for(f, units);
  if (out.size() - pos < f.prefix_bytes + std::size_t{wire}) {
    return {Errc::kBufferTooSmall, static_cast<std::uint32_t>(pos)};
  }
  std::byte* p = out.data() + pos;
  if (!f.is_fixed()) {
    write_prefix(f, units, p);
    p += f.prefix_bytes;
  }
  const auto* src = reinterpret_cast<const char*>(value.data());  // NOLINT: byte view of text
  switch (f.encoding) {
    case Encoding::kAscii:
    case Encoding::kEbcdic: {
      const bool ebcdic = f.encoding == Encoding::kEbcdic;
      const bool left = f.pad_side == PadSide::kLeft;
      std::byte* dst = p;
      const auto pad = static_cast<std::uint8_t>(f.pad_char);
      const std::byte pad_byte = static_cast<std::byte>(ebcdic ? kAsciiToEbcdic[pad] : pad);
      // x+n keeps its sign first: left padding goes between the sign and the digits.
      const std::uint32_t lead = left ? sign : 0;
      if (left) {
        fill_small(dst + lead, pad_byte, pad_chars);
        dst += pad_chars;
      }
      if (ebcdic && f.class_mask != 0) {
        for (std::uint32_t i = 0; i < n; ++i) {
          std::byte* const at = i < lead ? p + i : dst + i;
          *at = static_cast<std::byte>(kAsciiToEbcdic256[static_cast<std::uint8_t>(src[i])]);
        }
      } else if (ebcdic) {
        // Untyped bytes: printable ASCII is translated, anything else is carried as it is.
        for (std::uint32_t i = 0; i < n; ++i) {
          const auto c = static_cast<std::uint8_t>(src[i]);
          const std::uint8_t e = kAsciiToEbcdic256[c];
          std::byte* const at = i < lead ? p + i : dst + i;
          *at = static_cast<std::byte>(e == 0 ? c : e);
        }
      } else if (n > 0) {
        if (lead != 0) {
          p[0] = static_cast<std::byte>(src[0]);
        }
        copy_small(dst + lead, src + lead, n - lead);
      }
      if (!left) {
        fill_small(dst + n, pad_byte, pad_chars);
      }
      if (f.class_mask != 0) {
        // The written characters (pads included, which are in the class), after the sign.
        const std::byte* chars = p + sign;
        const std::size_t len = wire - sign;
        const std::size_t bad =
            first_bad_char(ebcdic ? kEbcdicClasses : kAsciiClasses, f.class_mask, chars, len,
                           static_cast<std::size_t>(chars - out.data()));
        if (bad != len) {
          const std::size_t skipped = left ? pad_chars : 0;
          return {Errc::kBadCharset, static_cast<std::uint32_t>(sign + bad - skipped)};
        }
      }
      break;
    }
    case Encoding::kBcd: {
      const std::size_t bad = pack_bcd(f, std::string_view(src, n), p, wire);
      if (bad != n) {
        return {Errc::kBadCharset, static_cast<std::uint32_t>(bad)};
      }
      break;
    }
    case Encoding::kAsciiSignBcd: {
      if (n == 0) {
        break;
      }
      p[0] = static_cast<std::byte>(src[0]);
      const std::size_t bad = pack_bcd(f, std::string_view(src + 1, n - 1), p + 1, wire - 1);
      if (bad != n - 1) {
        return {Errc::kBadCharset, static_cast<std::uint32_t>(bad + 1)};
      }
      break;
    }
    case Encoding::kBinary:
      copy_small(p, value.data(), n);
      break;
    case Encoding::kAsciiHex:
      for (std::uint32_t i = 0; i < n; ++i) {
        const std::uint8_t b = u8(value[i]);
        p[2 * i] = static_cast<std::byte>(kHexUpper[b >> 4U]);
        p[2 * i + 1] = static_cast<std::byte>(kHexUpper[b & 0x0FU]);
      }
      break;
  }
  pos += f.prefix_bytes + std::size_t{wire};
  return {};
}

std::span<const std::byte> canonical(const FieldSpec& f, std::span<const std::byte> wire,
                                     std::uint32_t units, std::span<std::byte> scratch) noexcept {
  const std::byte* p = wire.data();
  const auto n = static_cast<std::uint32_t>(wire.size());
  switch (f.encoding) {
    case Encoding::kAscii:
    case Encoding::kBinary:
      return wire;
    case Encoding::kEbcdic:
      if (scratch.size() < n) {
        return {};
      }
      for (std::uint32_t i = 0; i < n; ++i) {
        const std::uint8_t a = kEbcdicToAscii[u8(p[i])];
        scratch[i] = static_cast<std::byte>(a == 0 && f.type == ContentType::kB ? u8(p[i]) : a);
      }
      return scratch.first(n);
    case Encoding::kAsciiHex:
      if (scratch.size() < n / 2) {
        return {};
      }
      for (std::uint32_t i = 0; i < n / 2; ++i) {
        scratch[i] =
            static_cast<std::byte>((hex_value(u8(p[2 * i])) << 4U) | hex_value(u8(p[2 * i + 1])));
      }
      return scratch.first(n / 2);
    case Encoding::kBcd:
    case Encoding::kAsciiSignBcd: {
      std::uint32_t out_at = 0;
      const std::byte* digits_p = p;
      std::uint32_t digits_wire = n;
      std::uint32_t digits = f.unit == LengthUnit::kBytes ? n * 2 : units;
      if (f.encoding == Encoding::kAsciiSignBcd) {
        if (n == 0 || scratch.empty()) {
          return scratch.first(0);
        }
        scratch[out_at++] = p[0];
        ++digits_p;
        --digits_wire;
        digits = units - 1;
      }
      const BcdLayout l = bcd_layout(f, digits_wire * 2, digits);
      if (scratch.size() < out_at + l.digits) {
        return {};
      }
      const std::uint32_t first = l.pad_left ? l.pads : 0;
      for (std::uint32_t i = 0; i < l.digits; ++i) {
        const std::uint8_t nib = nibble_at(digits_p, first + i);
        char c = kHexUpper[nib];
        if (f.type == ContentType::kZ && nib == 0x0D) {
          c = '=';
        }
        scratch[out_at++] = static_cast<std::byte>(c);
      }
      return scratch.first(out_at);
    }
  }
  return {};
}

bool read_bitmap_word(BitmapEncoding enc, const std::byte* p, unsigned bytes,
                      std::uint64_t& out) noexcept {
  std::uint64_t v = 0;
  if (enc == BitmapEncoding::kBinary) {
    for (unsigned i = 0; i < bytes; ++i) {
      v = (v << 8U) | u8(p[i]);
    }
  } else {
    const bool ebcdic = enc == BitmapEncoding::kEbcdicHex;
    for (unsigned i = 0; i < bytes * 2; ++i) {
      std::uint8_t c = u8(p[i]);
      if (ebcdic) {
        c = kEbcdicToAscii[c];
      }
      const unsigned h = hex_value(c);
      if (h > 15) {
        return false;
      }
      v = (v << 4U) | h;
    }
  }
  out = bytes >= 8 ? v : v << (64U - 8U * bytes);
  return true;
}

}  // namespace authswitch::iso8583::internal
