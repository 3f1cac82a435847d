#pragma once
// Dialect: the immutable, compiled description of one ISO 8583 dialect (message header, MTI
// and bitmap encodings, and a FieldSpec per data element). Built once at start-up by
// dialect_loader.h from a TOML file; the decoder and encoder only read it. A Dialect is
// shared by all threads after construction (read-only, so no synchronisation is needed).

#include <array>
#include <bitset>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace authswitch::iso8583 {

inline constexpr int kMaxField = 192;              // three bitmaps
inline constexpr int kFieldSlots = kMaxField + 1;  // index 0 unused, 1..192

// Content type (ISO 8583:1987 section 4.3 attribute notation).
enum class ContentType : std::uint8_t {
  kN,    // numeric digits
  kA,    // alphabetic (and space)
  kAn,   // alphanumeric
  kAns,  // alphanumeric and special (printable)
  kAnp,  // alphanumeric and pad (space)
  kNs,   // numeric and special
  kAs,   // alphabetic and special
  kB,    // binary
  kZ,    // track 2/3 code set (digits, '=' separator; 'D' in some dialects)
  kXn,   // 'C' (credit) or 'D' (debit) sign, then digits
};

// How a field's value is carried on the wire.
enum class Encoding : std::uint8_t {
  kAscii,
  kEbcdic,        // code page 037/500 (they agree on digits, letters and space)
  kBcd,           // packed BCD, two digits per byte; the pad side comes from Padding
  kBinary,        // raw bytes
  kAsciiHex,      // raw bytes carried as two ASCII hex characters each
  kAsciiSignBcd,  // x+n: one ASCII sign character, then packed BCD digits
};

// How a variable-length field's length prefix is carried.
enum class PrefixEncoding : std::uint8_t {
  kAscii,   // one ASCII digit per byte
  kEbcdic,  // one EBCDIC digit per byte
  kBcd,     // packed BCD
  kBinary,  // unsigned big-endian integer
};

// What the length (fixed length or prefix value) counts.
enum class LengthUnit : std::uint8_t {
  kBytes,    // characters or raw bytes (for ascii-hex: decoded bytes)
  kDigits,   // BCD digits without the pad nibble (x+n: the sign counts as one)
  kNibbles,  // as digits, but nibbles need not be decimal (e.g. a track 2 'D')
};

enum class PadSide : std::uint8_t { kNone, kLeft, kRight };

// Encoding of the MTI, bitmaps and message header.
enum class MtiEncoding : std::uint8_t { kAscii, kEbcdic, kBcd };
enum class BitmapEncoding : std::uint8_t { kBinary, kAsciiHex, kEbcdicHex };
enum class HeaderEncoding : std::uint8_t { kBinary, kAscii, kEbcdic };

enum class CompositeKind : std::uint8_t { kNone, kPositional, kBitmapped, kBerTlv };

// Character-class bits used by the validation tables (one byte per possible input byte).
namespace cls {
inline constexpr std::uint8_t kDigit = 1U << 0U;
inline constexpr std::uint8_t kAlpha = 1U << 1U;
inline constexpr std::uint8_t kSpace = 1U << 2U;
inline constexpr std::uint8_t kSpecial = 1U << 3U;   // printable, not digit/alpha/space
inline constexpr std::uint8_t kTrackSep = 1U << 4U;  // '=' and 'D' in track data
inline constexpr std::uint8_t kHex = 1U << 5U;
inline constexpr std::uint8_t kSign = 1U << 6U;  // 'C', 'D'
}  // namespace cls

// One data element (or subfield) as compiled from the dialect file. Kept small: the decoder
// touches one per present field.
struct FieldSpec {
  std::uint32_t max_units = 0;         // fixed length, or maximum for variable fields
  std::uint32_t min_units = 0;         // minimum for variable fields (default 0)
  std::uint32_t fixed_wire_bytes = 0;  // wire size of a fixed field (precomputed)
  std::uint8_t prefix_digits = 0;      // 0 = fixed; 1..6 = L..LLLLLL
  std::uint8_t prefix_bytes = 0;       // wire size of the length prefix
  PrefixEncoding prefix_encoding = PrefixEncoding::kAscii;
  Encoding encoding = Encoding::kAscii;
  LengthUnit unit = LengthUnit::kBytes;
  ContentType type = ContentType::kAns;
  PadSide pad_side = PadSide::kNone;
  char pad_char = ' ';          // ASCII pad character ('0', ' ', or 'F' for a BCD nibble)
  std::uint8_t class_mask = 0;  // allowed cls:: bits for character data
  std::uint8_t sign_mask = 0;   // allowed cls:: bits for the x+n sign character
  CompositeKind composite = CompositeKind::kNone;
  std::uint16_t composite_index = 0;  // into Dialect::composites()
  // Decode checks the composite's inner structure too. False for a positional composite
  // whose fixed subfields have the parent's type and encoding and tile it exactly (DE 3):
  // validating the parent already validated them.
  bool check_inner = false;
  bool defined = false;
  bool sensitive = false;  // never print in clear (PAN, track data, PIN block)
  bool echo = false;       // copied from request to response by the response builder

  [[nodiscard]] bool is_fixed() const noexcept { return prefix_digits == 0; }
  [[nodiscard]] bool is_binary() const noexcept {
    return encoding == Encoding::kBinary || encoding == Encoding::kAsciiHex;
  }
};

// A composite field's inner layout: positional (subfields one after another), bitmapped
// (optional header bytes, a sub-bitmap, then the subfields it announces), or BER-TLV.
struct CompositeSpec {
  CompositeKind kind = CompositeKind::kNone;
  std::uint8_t header_bytes = 0;
  std::uint8_t bitmap_bytes = 0;  // decoded bitmap bytes (hex encodings use twice as many)
  BitmapEncoding bitmap_encoding = BitmapEncoding::kBinary;
  std::uint16_t max_subfield = 0;
  std::vector<FieldSpec> subfields;  // index = subfield number (0 unused)
  std::vector<std::string> names;    // index = subfield number
};

struct DialectInfo {
  std::string name;
  std::string description;
  std::uint8_t header_bytes = 0;
  HeaderEncoding header_encoding = HeaderEncoding::kBinary;
  MtiEncoding mti_encoding = MtiEncoding::kAscii;
  BitmapEncoding bitmap_encoding = BitmapEncoding::kBinary;
  std::uint8_t max_bitmaps = 2;
  std::uint32_t max_message_bytes = 8192;
};

class Dialect {
 public:
  Dialect(DialectInfo info, std::array<FieldSpec, kFieldSlots> fields,
          std::array<std::string, kFieldSlots> names, std::vector<CompositeSpec> composites);

  Dialect(const Dialect&) = delete;
  Dialect& operator=(const Dialect&) = delete;
  Dialect(Dialect&&) noexcept = default;
  Dialect& operator=(Dialect&&) noexcept = delete;
  ~Dialect() = default;

  [[nodiscard]] const DialectInfo& info() const noexcept { return info_; }
  [[nodiscard]] std::string_view name() const noexcept { return info_.name; }
  // REQUIRES: 1 <= de <= 192.
  [[nodiscard]] const FieldSpec& field(int de) const noexcept {
    return fields_[static_cast<std::size_t>(de)];
  }
  [[nodiscard]] std::string_view field_name(int de) const noexcept {
    return names_[static_cast<std::size_t>(de)];
  }
  [[nodiscard]] const CompositeSpec& composite(const FieldSpec& f) const noexcept {
    return composites_[f.composite_index];
  }
  // Fields the response builder copies from a request.
  [[nodiscard]] const std::bitset<kFieldSlots>& echo_fields() const noexcept { return echo_; }
  // Wire size of the MTI and of one bitmap in this dialect.
  [[nodiscard]] std::size_t mti_bytes() const noexcept {
    return info_.mti_encoding == MtiEncoding::kBcd ? 2 : 4;
  }
  [[nodiscard]] std::size_t bitmap_bytes() const noexcept {
    return info_.bitmap_encoding == BitmapEncoding::kBinary ? 8 : 16;
  }

 private:
  DialectInfo info_;
  std::array<FieldSpec, kFieldSlots> fields_;
  std::array<std::string, kFieldSlots> names_;
  std::vector<CompositeSpec> composites_;
  std::bitset<kFieldSlots> echo_;
};

// Fills derived members (fixed_wire_bytes, prefix_bytes when 0, class masks) and checks the
// combination is coherent. Returns an empty string, or the reason it is not.
std::string finalize_field_spec(FieldSpec& f);

// Whether a variable field's max length can be written in its length prefix's digits.
[[nodiscard]] constexpr bool max_fits_prefix(const FieldSpec& f) noexcept {
  std::uint64_t limit = 1;
  for (int i = 0; i < f.prefix_digits; ++i) {
    limit *= 10;
  }
  return f.prefix_digits == 0 || f.max_units < limit;
}

// Wire bytes taken by a value of `units` length units in field `f` (without the prefix).
[[nodiscard]] constexpr std::uint32_t wire_bytes_for(const FieldSpec& f,
                                                     std::uint32_t units) noexcept {
  switch (f.encoding) {
    case Encoding::kAsciiHex:
      return units * 2;
    case Encoding::kBcd:
      return f.unit == LengthUnit::kBytes ? units : (units + 1) / 2;
    case Encoding::kAsciiSignBcd:
      return units == 0 ? 0 : 1 + units / 2;  // sign byte + ceil((units - 1) / 2)
    case Encoding::kAscii:
    case Encoding::kEbcdic:
    case Encoding::kBinary:
      return units;
  }
  return units;
}

}  // namespace authswitch::iso8583
