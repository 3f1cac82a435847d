#include "iso8583/spec.h"

#include <string>
#include <utility>

#include "iso8583/charset_internal.h"

namespace authswitch::iso8583 {
namespace {

std::uint8_t type_classes(ContentType t) {
  switch (t) {
    case ContentType::kN:
      return cls::kDigit;
    case ContentType::kA:
      return cls::kAlpha | cls::kSpace;
    case ContentType::kAn:
      return cls::kDigit | cls::kAlpha;
    case ContentType::kAns:
      return cls::kDigit | cls::kAlpha | cls::kSpace | cls::kSpecial;
    case ContentType::kAnp:
      return cls::kDigit | cls::kAlpha | cls::kSpace;
    case ContentType::kNs:
      return cls::kDigit | cls::kSpecial | cls::kSpace;
    case ContentType::kAs:
      return cls::kAlpha | cls::kSpecial | cls::kSpace;
    case ContentType::kZ:
      return cls::kDigit | cls::kTrackSep;
    case ContentType::kXn:
      return cls::kDigit;
    case ContentType::kB:
      return 0;
  }
  return 0;
}

std::uint8_t default_prefix_bytes(const FieldSpec& f) {
  switch (f.prefix_encoding) {
    case PrefixEncoding::kAscii:
    case PrefixEncoding::kEbcdic:
      return f.prefix_digits;
    case PrefixEncoding::kBcd:
      return static_cast<std::uint8_t>((f.prefix_digits + 1) / 2);
    case PrefixEncoding::kBinary:
      return f.prefix_digits <= 2 ? 1 : 2;
  }
  return f.prefix_digits;
}

}  // namespace

std::string finalize_field_spec(FieldSpec& f) {
  if (f.prefix_digits > 6) {
    return "length prefix has more than 6 digits";
  }
  if (f.max_units == 0) {
    return "max length must be at least 1";
  }
  if (f.prefix_digits == 0) {
    f.prefix_bytes = 0;
  } else {
    if (!max_fits_prefix(f)) {
      return "max length " + std::to_string(f.max_units) + " does not fit a " +
             std::to_string(f.prefix_digits) + "-digit length prefix";
    }
    if (f.min_units > f.max_units) {
      return "min length exceeds max length";
    }
    const std::uint8_t expected = default_prefix_bytes(f);
    if (f.prefix_bytes == 0) {
      f.prefix_bytes = expected;
    }
    const bool one_per_digit =
        f.prefix_encoding == PrefixEncoding::kAscii || f.prefix_encoding == PrefixEncoding::kEbcdic;
    if (one_per_digit && f.prefix_bytes != f.prefix_digits) {
      return "an ascii or ebcdic length prefix has one byte per digit";
    }
    if (f.prefix_encoding == PrefixEncoding::kBcd && f.prefix_bytes * 2 < f.prefix_digits) {
      return "bcd length prefix has too few bytes for its digits";
    }
    if (f.prefix_encoding == PrefixEncoding::kBinary &&
        (f.prefix_bytes > 4 ||
         (f.prefix_bytes < 4 && f.max_units >= (1U << (8U * f.prefix_bytes))))) {
      return "binary length prefix is too small for the max length";
    }
  }
  const bool bcd = f.encoding == Encoding::kBcd || f.encoding == Encoding::kAsciiSignBcd;
  if (bcd && f.type != ContentType::kN && f.type != ContentType::kZ && f.type != ContentType::kXn) {
    return "bcd encoding needs type n, z or x+n";
  }
  if (f.encoding == Encoding::kAsciiSignBcd && f.type != ContentType::kXn) {
    return "ascii-sign-bcd encoding needs type x+n";
  }
  if (f.is_binary() && f.type != ContentType::kB) {
    return "binary and ascii-hex encodings need type b";
  }
  if (!bcd && f.unit != LengthUnit::kBytes) {
    return "digits and nibbles units apply only to bcd encodings";
  }
  if (f.pad_side != PadSide::kNone && bcd && f.pad_char != '0' && f.pad_char != 'F') {
    return "a bcd pad nibble is 0 or F";
  }
  f.class_mask = type_classes(f.type);
  if (f.pad_side != PadSide::kNone && !bcd && f.class_mask != 0) {
    // Pad characters are valid in the field (a space-padded numeric, say); only the pad's
    // primary class is added, never the auxiliary ones (hex, sign, track separator).
    constexpr std::uint8_t kPrimary = cls::kDigit | cls::kAlpha | cls::kSpace | cls::kSpecial;
    f.class_mask = static_cast<std::uint8_t>(
        f.class_mask | (internal::ascii_class(static_cast<std::uint8_t>(f.pad_char)) & kPrimary));
  }
  if (f.type == ContentType::kXn && f.sign_mask == 0) {
    f.sign_mask = cls::kSign;
  }
  f.fixed_wire_bytes = f.is_fixed() ? wire_bytes_for(f, f.max_units) : 0;
  f.defined = true;
  return {};
}

Dialect::Dialect(DialectInfo info, std::array<FieldSpec, kFieldSlots> fields,
                 std::array<std::string, kFieldSlots> names, std::vector<CompositeSpec> composites)
    : info_(std::move(info)),
      fields_(fields),
      names_(std::move(names)),
      composites_(std::move(composites)) {
  for (int de = 1; de <= kMaxField; ++de) {
    if (fields_[static_cast<std::size_t>(de)].echo) {
      echo_.set(static_cast<std::size_t>(de));
    }
  }
}

}  // namespace authswitch::iso8583
