#include "iso8583/composite.h"

#include <algorithm>
#include <bit>

#include "iso8583/field_codec_internal.h"

namespace authswitch::iso8583 {

FieldView CompositeView::subfield(int sub) const noexcept {
  if (!has(sub)) {
    return {};
  }
  const Slot& s = slots_[static_cast<std::size_t>(sub)];
  return {std::span<const std::byte>(base_ + s.offset, s.wire_len), s.units,
          &spec_->subfields[static_cast<std::size_t>(sub)]};
}

Result<void> decode_composite(const CompositeSpec& spec, std::span<const std::byte> value,
                              std::uint16_t field, CompositeView& out) noexcept {
  out.spec_ = &spec;
  out.base_ = value.data();
  out.present_.fill(false);
  out.bitmap_ = 0;
  out.header_ = {};
  std::size_t pos = 0;
  auto read_sub = [&](int sub) -> Result<void> {
    const FieldSpec& f = spec.subfields[static_cast<std::size_t>(sub)];
    const auto s16 = static_cast<std::uint16_t>(sub);
    if (!f.defined) {
      return fail(Errc::kUndefinedField, field, pos, s16);
    }
    internal::FieldExtent x;
    const internal::FieldStatus s = internal::read_field<true>(f, value, pos, x);
    if (s.code != Errc::kOk) {
      return fail(s.code == Errc::kTruncated ? Errc::kBadSubfield : s.code, field, s.offset, s16);
    }
    out.slots_[static_cast<std::size_t>(sub)] = {x.value_offset, x.wire_len, x.units};
    out.present_[static_cast<std::size_t>(sub)] = true;
    return {};
  };
  if (spec.kind == CompositeKind::kPositional) {
    // Subfields in order until the value ends; ending between subfields leaves the rest absent.
    for (int sub = 1; sub <= spec.max_subfield && pos < value.size(); ++sub) {
      if (auto r = read_sub(sub); !r) {
        return r;
      }
    }
  } else if (spec.kind == CompositeKind::kBitmapped) {
    if (value.size() < spec.header_bytes) {
      return fail(Errc::kBadSubfield, field, 0);
    }
    out.header_ = value.first(spec.header_bytes);
    pos = spec.header_bytes;
    const std::size_t bm_wire =
        internal::bitmap_wire_bytes(spec.bitmap_encoding, spec.bitmap_bytes);
    if (value.size() - pos < bm_wire) {
      return fail(Errc::kBadSubfield, field, pos);
    }
    if (!internal::read_bitmap_word(spec.bitmap_encoding, value.data() + pos, spec.bitmap_bytes,
                                    out.bitmap_)) {
      return fail(Errc::kBadBitmap, field, pos);
    }
    pos += bm_wire;
    std::uint64_t m = out.bitmap_;
    while (m != 0) {
      const int lz = std::countl_zero(m);
      m &= ~((std::uint64_t{1} << 63U) >> static_cast<unsigned>(lz));
      const int sub = lz + 1;
      if (sub > spec.max_subfield) {
        return fail(Errc::kUndefinedField, field, pos, static_cast<std::uint16_t>(sub));
      }
      if (auto r = read_sub(sub); !r) {
        return r;
      }
    }
  } else {
    return fail(Errc::kBadSubfield, field, 0);
  }
  if (pos != value.size()) {
    return fail(Errc::kBadSubfield, field, pos);
  }
  return {};
}

Result<void> decode_composite(const MessageView& msg, int de, CompositeView& out) noexcept {
  const FieldView f = msg.field(de);
  if (!f.present()) {
    return fail(Errc::kMissingField, static_cast<std::uint16_t>(de), 0);
  }
  if (f.spec->composite != CompositeKind::kPositional &&
      f.spec->composite != CompositeKind::kBitmapped) {
    return fail(Errc::kBadSubfield, static_cast<std::uint16_t>(de), 0);
  }
  auto r = decode_composite(msg.dialect().composite(*f.spec), f.wire,
                            static_cast<std::uint16_t>(de), out);
  if (!r) {
    Error e = r.error();
    e.offset += static_cast<std::uint32_t>(f.wire.data() - msg.bytes().data());
    return base::unexpected(e);
  }
  return {};
}

namespace {

// Parses a run of decimal digits; false on anything else.
bool parse_digits(std::string_view s, std::uint64_t& out) noexcept {
  if (s.empty() || s.size() > 19) {
    return false;
  }
  std::uint64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  out = v;
  return true;
}

}  // namespace

// Both DE 90 and DE 95 are 42 characters; they are read from their canonical text so any
// encoding works (ASCII, EBCDIC or BCD) without the dialect having to declare subfields.
Result<OriginalData> read_original_data(const MessageView& msg) noexcept {
  const FieldView f = msg.field(90);
  if (!f.present()) {
    return fail(Errc::kMissingField, 90, 0);
  }
  std::array<char, 64> scratch;
  const std::string_view t = text_value(f, scratch);
  const auto offset = static_cast<std::size_t>(f.wire.data() - msg.bytes().data());
  if (t.size() != 42) {
    return fail(Errc::kBadSubfield, 90, offset);
  }
  OriginalData d;
  std::uint64_t v = 0;
  if (!parse_digits(t.substr(0, 4), v)) {
    return fail(Errc::kBadCharset, 90, offset, 1);
  }
  d.mti = static_cast<std::uint16_t>(v);
  if (!parse_digits(t.substr(4, 6), v)) {
    return fail(Errc::kBadCharset, 90, offset, 2);
  }
  d.stan = static_cast<std::uint32_t>(v);
  if (!parse_digits(t.substr(10, 10), d.transmission_time)) {
    return fail(Errc::kBadCharset, 90, offset, 3);
  }
  if (!parse_digits(t.substr(20, 11), v)) {
    return fail(Errc::kBadCharset, 90, offset, 4);
  }
  if (!parse_digits(t.substr(31, 11), v)) {
    return fail(Errc::kBadCharset, 90, offset, 5);
  }
  std::copy_n(t.begin() + 20, 11, d.acquirer_id.begin());
  std::copy_n(t.begin() + 31, 11, d.forwarding_id.begin());
  return d;
}

Result<OriginalData93> read_original_data_93(const MessageView& msg) noexcept {
  const FieldView f = msg.field(56);
  if (!f.present()) {
    return fail(Errc::kMissingField, 56, 0);
  }
  std::array<char, 64> scratch;
  const std::string_view t = text_value(f, scratch);
  const auto offset = static_cast<std::size_t>(f.wire.data() - msg.bytes().data());
  if (t.size() != 22 && (t.size() < 24 || t.size() > 35)) {
    return fail(Errc::kBadSubfield, 56, offset);
  }
  OriginalData93 d;
  std::uint64_t v = 0;
  if (!parse_digits(t.substr(0, 4), v)) {
    return fail(Errc::kBadCharset, 56, offset, 1);
  }
  d.mti = static_cast<std::uint16_t>(v);
  if (!parse_digits(t.substr(4, 6), v)) {
    return fail(Errc::kBadCharset, 56, offset, 2);
  }
  d.stan = static_cast<std::uint32_t>(v);
  if (!parse_digits(t.substr(10, 12), d.local_time)) {
    return fail(Errc::kBadCharset, 56, offset, 3);
  }
  if (t.size() == 22) {
    return d;
  }
  if (!parse_digits(t.substr(22, 2), v) || v == 0 || v > 11) {
    return fail(Errc::kBadSubfield, 56, offset, 4);
  }
  if (t.size() != 24 + v || !parse_digits(t.substr(24), v)) {
    return fail(Errc::kBadSubfield, 56, offset, 4);
  }
  d.acquirer_len = static_cast<std::uint8_t>(t.size() - 24);
  std::copy_n(t.begin() + 24, d.acquirer_len, d.acquirer_id.begin());
  return d;
}

Result<ReplacementAmounts> read_replacement_amounts(const MessageView& msg) noexcept {
  const FieldView f = msg.field(95);
  if (!f.present()) {
    return fail(Errc::kMissingField, 95, 0);
  }
  std::array<char, 64> scratch;
  const std::string_view t = text_value(f, scratch);
  const auto offset = static_cast<std::size_t>(f.wire.data() - msg.bytes().data());
  if (t.size() != 42) {
    return fail(Errc::kBadSubfield, 95, offset);
  }
  ReplacementAmounts a;
  std::uint64_t v = 0;
  if (!parse_digits(t.substr(0, 12), v)) {
    return fail(Errc::kBadCharset, 95, offset, 1);
  }
  a.transaction_minor = static_cast<std::int64_t>(v);
  if (!parse_digits(t.substr(12, 12), v)) {
    return fail(Errc::kBadCharset, 95, offset, 2);
  }
  a.settlement_minor = static_cast<std::int64_t>(v);
  // Fees are x+n 8: 'C' or 'D' then 8 digits. Zero fees are often sent as "000000000".
  auto fee = [&](std::string_view s, std::uint16_t sub, std::int64_t& out) -> bool {
    const char sign = s[0];
    if (sign != 'C' && sign != 'D' && sign != '0') {
      return false;
    }
    if (!parse_digits(s.substr(1), v)) {
      return false;
    }
    out = sign == 'D' ? -static_cast<std::int64_t>(v) : static_cast<std::int64_t>(v);
    (void)sub;
    return true;
  };
  if (!fee(t.substr(24, 9), 3, a.transaction_fee_minor)) {
    return fail(Errc::kBadCharset, 95, offset, 3);
  }
  if (!fee(t.substr(33, 9), 4, a.settlement_fee_minor)) {
    return fail(Errc::kBadCharset, 95, offset, 4);
  }
  return a;
}

Result<Track2> parse_track2(std::string_view text) noexcept {
  if (!text.empty() && text.front() == ';') {
    text.remove_prefix(1);
  }
  if (!text.empty() && text.back() == '?') {
    text.remove_suffix(1);
  }
  while (!text.empty() && (text.back() == 'F' || text.back() == 'f')) {
    text.remove_suffix(1);
  }
  const std::size_t sep = text.find_first_of("=D");
  if (sep == std::string_view::npos || sep < 12 || sep > 19) {
    return fail(Errc::kBadSubfield, 35, 0, 1);
  }
  Track2 t;
  t.pan = text.substr(0, sep);
  for (const char c : t.pan) {
    if (c < '0' || c > '9') {
      return fail(Errc::kBadCharset, 35, 0, 1);
    }
  }
  std::string_view rest = text.substr(sep + 1);
  if (rest.size() < 7) {
    return fail(Errc::kBadSubfield, 35, static_cast<std::uint32_t>(sep + 1), 2);
  }
  for (std::size_t i = 0; i < 7; ++i) {
    if (rest[i] < '0' || rest[i] > '9') {
      return fail(Errc::kBadCharset, 35, static_cast<std::uint32_t>(sep + 1 + i), 2);
    }
  }
  t.expiry_yymm = rest.substr(0, 4);
  t.service_code = rest.substr(4, 3);
  t.discretionary = rest.substr(7);
  return t;
}

}  // namespace authswitch::iso8583
