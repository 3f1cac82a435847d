#include "iso8583/message.h"

#include <bit>
#include <cstring>

#include "base/assert.h"
#include "base/compiler.h"
#include "iso8583/charset_internal.h"
#include "iso8583/composite.h"
#include "iso8583/field_codec_internal.h"
#include "iso8583/tlv.h"

namespace authswitch::iso8583 {
namespace {

using internal::FieldExtent;
using internal::FieldStatus;

inline std::uint8_t u8(std::byte b) noexcept { return static_cast<std::uint8_t>(b); }

// Reads the MTI at p (enough bytes are known to be there); false if not 4 decimal digits.
inline bool read_mti(MtiEncoding enc, const std::byte* p, std::uint16_t& mti) noexcept {
  unsigned v = 0;
  if (enc == MtiEncoding::kBcd) {
    for (int i = 0; i < 2; ++i) {
      const unsigned hi = u8(p[i]) >> 4U;
      const unsigned lo = u8(p[i]) & 0x0FU;
      if (hi > 9 || lo > 9) {
        return false;
      }
      v = v * 100 + hi * 10 + lo;
    }
  } else {
    const unsigned zero = enc == MtiEncoding::kAscii ? '0' : 0xF0U;
    for (int i = 0; i < 4; ++i) {
      const unsigned d = u8(p[i]) - zero;
      if (d > 9) {
        return false;
      }
      v = v * 10 + d;
    }
  }
  mti = static_cast<std::uint16_t>(v);
  return true;
}

inline void write_mti(MtiEncoding enc, std::uint16_t mti, std::byte* p) noexcept {
  const unsigned d[4] = {mti / 1000U % 10U, mti / 100U % 10U, mti / 10U % 10U, mti % 10U};
  if (enc == MtiEncoding::kBcd) {
    p[0] = static_cast<std::byte>((d[0] << 4U) | d[1]);
    p[1] = static_cast<std::byte>((d[2] << 4U) | d[3]);
    return;
  }
  const unsigned zero = enc == MtiEncoding::kAscii ? '0' : 0xF0U;
  for (int i = 0; i < 4; ++i) {
    p[i] = static_cast<std::byte>(zero + d[i]);
  }
}

}  // namespace

namespace {

inline void write_bitmap_word(BitmapEncoding enc, std::uint64_t v, std::byte* p) noexcept {
  if (enc == BitmapEncoding::kBinary) {
    for (int i = 7; i >= 0; --i) {
      p[i] = static_cast<std::byte>(v & 0xFFU);
      v >>= 8U;
    }
    return;
  }
  for (int i = 15; i >= 0; --i) {
    const char c = internal::kHexUpper[v & 0x0FU];
    p[i] = static_cast<std::byte>(enc == BitmapEncoding::kEbcdicHex
                                      ? internal::kAsciiToEbcdic[static_cast<std::uint8_t>(c)]
                                      : static_cast<std::uint8_t>(c));
    v >>= 4U;
  }
}

constexpr std::uint64_t kTopBit = std::uint64_t{1} << 63U;

// Calls fn(de) for every data field announced by three bitmap words, in ascending order
// (bits 1 and 65 announce bitmaps and are skipped). Stops and returns false when fn does.
template <typename Fn>
[[gnu::always_inline]] inline bool for_each_field(const std::array<std::uint64_t, 3>& words,
                                                  Fn&& fn) noexcept {
  for (unsigned w = 0; w < 3; ++w) {
    std::uint64_t m = words[w];
    if (w < 2) {
      m &= ~kTopBit;
    }
    while (m != 0) {
      const auto lz = static_cast<unsigned>(std::countl_zero(m));
      m &= ~(kTopBit >> lz);
      if (!fn(static_cast<int>(w * 64 + lz + 1))) {
        return false;
      }
    }
  }
  return true;
}

// Checks a decoded field's inner structure (composite or BER-TLV).
Result<void> validate_inner(const Dialect& d, const FieldSpec& f, std::span<const std::byte> value,
                            int de, std::size_t value_offset) noexcept {
  const auto field = static_cast<std::uint16_t>(de);
  if (f.composite == CompositeKind::kBerTlv) {
    // BER-TLV is read from the decoded bytes: carried as hex characters, they are decoded
    // into a bounded stack buffer first.
    std::array<std::byte, 1024> scratch;
    std::span<const std::byte> tlv = value;
    if (f.encoding == Encoding::kAsciiHex) {
      if (value.size() / 2 > scratch.size()) {
        return fail(Errc::kBadTlv, field, value_offset);
      }
      tlv = internal::canonical(f, value, static_cast<std::uint32_t>(value.size() / 2), scratch);
    }
    auto r = validate_tlv(tlv, field);
    if (!r) {
      Error e = r.error();
      if (f.encoding == Encoding::kAsciiHex) {
        e.offset *= 2;  // decoded bytes -> hex characters on the wire
      }
      e.offset += static_cast<std::uint32_t>(value_offset);
      return base::unexpected(e);
    }
    return {};
  }
  CompositeView cv;
  auto r = decode_composite(d.composite(f), value, field, cv);
  if (!r) {
    Error e = r.error();
    e.offset += static_cast<std::uint32_t>(value_offset);
    return base::unexpected(e);
  }
  return {};
}

}  // namespace

std::array<char, 4> MessageView::mti_text() const noexcept {
  return {static_cast<char>('0' + mti_ / 1000 % 10), static_cast<char>('0' + mti_ / 100 % 10),
          static_cast<char>('0' + mti_ / 10 % 10), static_cast<char>('0' + mti_ % 10)};
}

FieldView MessageView::field(int de) const noexcept {
  if (de < 2 || de > kMaxField || !has(de)) {
    return {};
  }
  const Slot& s = slots_[static_cast<std::size_t>(de)];
  return {std::span<const std::byte>(base_ + s.value_offset, s.wire_len), s.units,
          &dialect_->field(de)};
}

std::span<const std::byte> MessageView::raw_field(int de) const noexcept {
  if (de < 2 || de > kMaxField || !has(de)) {
    return {};
  }
  const Slot& s = slots_[static_cast<std::size_t>(de)];
  return {base_ + s.offset, s.value_offset + s.wire_len - s.offset};
}

namespace {

template <bool kValidate>
Result<std::size_t> walk(const Dialect& dialect, std::span<const std::byte> bytes,
                         const std::byte*& base, std::uint32_t& size, std::uint16_t& mti,
                         int& bitmap_count, std::array<std::uint64_t, 3>& bitmap,
                         auto&& record) noexcept {
  const DialectInfo& info = dialect.info();
  const std::size_t n = bytes.size();
  const std::byte* p = bytes.data();
  if (kValidate && n > info.max_message_bytes) {
    return fail(Errc::kMessageTooLarge, 0, info.max_message_bytes);
  }
  std::size_t pos = 0;
  // Header.
  if (n < info.header_bytes) {
    return fail(Errc::kTruncated, 0, 0);
  }
  if (kValidate && info.header_encoding != HeaderEncoding::kBinary) {
    const auto& table = info.header_encoding == HeaderEncoding::kAscii ? internal::kAsciiClasses
                                                                       : internal::kEbcdicClasses;
    for (std::size_t i = 0; i < info.header_bytes; ++i) {
      if (table[u8(p[i])] == 0) {
        return fail(Errc::kBadHeader, 0, i);
      }
    }
  }
  pos = info.header_bytes;
  // MTI.
  const std::size_t mti_bytes = dialect.mti_bytes();
  if (n - pos < mti_bytes) {
    return fail(Errc::kTruncated, 0, pos);
  }
  if (!read_mti(info.mti_encoding, p + pos, mti)) {
    return fail(Errc::kBadMti, 0, pos);
  }
  pos += mti_bytes;
  // Bitmaps: bit 1 announces the secondary bitmap, bit 65 the tertiary one.
  const std::size_t bm_bytes = dialect.bitmap_bytes();
  bitmap = {0, 0, 0};
  bitmap_count = 0;
  for (int i = 0; i < 3; ++i) {
    if (i > 0 && (bitmap[static_cast<std::size_t>(i - 1)] & kTopBit) == 0) {
      break;
    }
    if (i >= info.max_bitmaps) {
      return fail(i == 1 ? Errc::kUndefinedField : Errc::kTertiaryBitmap,
                  static_cast<std::uint16_t>(i == 1 ? 1 : 65), pos - bm_bytes);
    }
    if (n - pos < bm_bytes) {
      return fail(Errc::kTruncated, 0, pos);
    }
    if (!internal::read_bitmap_word(info.bitmap_encoding, p + pos, 8,
                                    bitmap[static_cast<std::size_t>(i)])) {
      return fail(Errc::kBadBitmap, 0, pos);
    }
    pos += bm_bytes;
    ++bitmap_count;
  }
  // Fields, in bitmap order.
  for (unsigned w = 0; w < 3; ++w) {
    std::uint64_t m = bitmap[w];
    if (w < 2) {
      m &= ~kTopBit;  // bits 1 and 65 are indicators, not data
    }
    while (m != 0) {
      const auto lz = static_cast<unsigned>(std::countl_zero(m));
      m &= ~(kTopBit >> lz);
      const int de = static_cast<int>(w * 64 + lz + 1);
      const FieldSpec& f = dialect.field(de);
      if (!f.defined) {
        return fail(Errc::kUndefinedField, static_cast<std::uint16_t>(de), pos);
      }
      const std::size_t start = pos;
      FieldExtent x;
      const FieldStatus s = internal::read_field<kValidate>(f, bytes, pos, x);
      if (s.code != Errc::kOk) [[unlikely]] {
        return fail(s.code, static_cast<std::uint16_t>(de), s.offset);
      }
      if constexpr (kValidate) {
        if (f.check_inner) {
          auto r = validate_inner(dialect, f, bytes.subspan(x.value_offset, x.wire_len), de,
                                  x.value_offset);
          if (!r) {
            return base::unexpected(r.error());
          }
        }
      }
      record(de, start, x);
    }
  }
  base = p;
  size = static_cast<std::uint32_t>(pos);
  return pos;
}

}  // namespace

Result<std::size_t> decode(const Dialect& dialect, std::span<const std::byte> bytes,
                           MessageView& out) noexcept {
  out.dialect_ = &dialect;
  auto r = walk<true>(dialect, bytes, out.base_, out.size_, out.mti_, out.bitmap_count_,
                      out.bitmap_, [&out](int de, std::size_t start, const FieldExtent& x) {
                        out.slots_[static_cast<std::size_t>(de)] = {
                            static_cast<std::uint32_t>(start), x.value_offset, x.wire_len, x.units};
                      });
  if (!r) {
    out.bitmap_ = {0, 0, 0};  // a failed decode leaves an empty view, never a half one
    out.base_ = bytes.data();
    out.size_ = 0;
    return r;
  }
  if (*r != bytes.size()) {
    out.bitmap_ = {0, 0, 0};
    return fail(Errc::kTrailingBytes, 0, *r);
  }
  return r;
}

Result<std::size_t> measure(const Dialect& dialect, std::span<const std::byte> bytes) noexcept {
  const std::byte* base = nullptr;
  std::uint32_t size = 0;
  std::uint16_t mti = 0;
  int count = 0;
  std::array<std::uint64_t, 3> bitmap{};
  return walk<false>(dialect, bytes, base, size, mti, count, bitmap,
                     [](int, std::size_t, const FieldExtent&) {});
}

// ---------------------------------------------------------------------------------------------

void MessageBuilder::reset(std::uint16_t mti) noexcept {
  mti_ = mti;
  present_ = {0, 0, 0};
  header_ = {};
  foreign_ = nullptr;
  numbers_used_ = 0;
}

bool MessageBuilder::bit(int de) const noexcept {
  const auto u = static_cast<unsigned>(de - 1);
  return ((present_[u / 64] >> (63U - u % 64)) & 1U) != 0;
}

void MessageBuilder::set_bit(int de) noexcept {
  const auto u = static_cast<unsigned>(de - 1);
  present_[u / 64] |= kTopBit >> (u % 64);
}

bool MessageBuilder::has(int de) const noexcept {
  return de >= 2 && de <= kMaxField && de != 65 && bit(de);
}

void MessageBuilder::clear(int de) noexcept {
  AS_ASSERT(de >= 2 && de <= kMaxField);
  const auto u = static_cast<unsigned>(de - 1);
  present_[u / 64] &= ~(kTopBit >> (u % 64));
}

void MessageBuilder::set_text(int de, std::string_view ascii) noexcept {
  AS_ASSERT(de >= 2 && de <= kMaxField && de != 65);
  AS_ASSERT(dialect_->field(de).defined);
  values_[static_cast<std::size_t>(de)] = {ascii.data(), static_cast<std::uint32_t>(ascii.size()),
                                           Kind::kText};
  set_bit(de);
}

void MessageBuilder::set_bytes(int de, std::span<const std::byte> raw) noexcept {
  AS_ASSERT(de >= 2 && de <= kMaxField && de != 65);
  AS_ASSERT(dialect_->field(de).defined);
  values_[static_cast<std::size_t>(de)] = {raw.data(), static_cast<std::uint32_t>(raw.size()),
                                           Kind::kBytes};
  set_bit(de);
}

void MessageBuilder::set_number(int de, std::uint64_t value) noexcept {
  AS_ASSERT(numbers_used_ < kNumberSlots);
  auto& buf = numbers_[static_cast<std::size_t>(numbers_used_++)];
  std::size_t i = buf.size();
  do {
    buf[--i] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  set_text(de, std::string_view(buf.data() + i, buf.size() - i));
}

void MessageBuilder::copy_from(const MessageView& msg, int de) noexcept {
  AS_ASSERT(msg.has(de));
  AS_ASSERT(dialect_->field(de).defined);
  if (&msg.dialect() == dialect_) {
    const auto raw = msg.raw_field(de);
    values_[static_cast<std::size_t>(de)] = {raw.data(), static_cast<std::uint32_t>(raw.size()),
                                             Kind::kRawWire};
  } else {
    AS_ASSERT(foreign_ == nullptr || foreign_ == &msg);
    foreign_ = &msg;
    values_[static_cast<std::size_t>(de)] = {nullptr, 0, Kind::kForeign};
  }
  set_bit(de);
}

Result<std::size_t> MessageBuilder::encode(std::span<std::byte> out) const noexcept {
  const DialectInfo& info = dialect_->info();
  std::size_t pos = 0;
  const std::size_t cap = out.size();
  if (info.header_bytes > 0) {
    if (header_.size() != info.header_bytes) {
      return fail(Errc::kMissingField, 0, 0);
    }
    if (cap < header_.size()) {
      return fail(Errc::kBufferTooSmall, 0, 0);
    }
    std::memcpy(out.data(), header_.data(), header_.size());
    pos = header_.size();
  }
  if (mti_ > 9999) {
    return fail(Errc::kBadMti, 0, pos);
  }
  if (cap - pos < dialect_->mti_bytes()) {
    return fail(Errc::kBufferTooSmall, 0, pos);
  }
  write_mti(info.mti_encoding, mti_, out.data() + pos);
  pos += dialect_->mti_bytes();
  std::array<std::uint64_t, 3> words = present_;
  words[0] &= ~kTopBit;
  words[1] &= ~kTopBit;
  int count = words[2] != 0 ? 3 : (words[1] != 0 ? 2 : 1);
  if (count > info.max_bitmaps) {
    const int de = count == 3 ? 129 + std::countl_zero(words[2]) : 65 + std::countl_zero(words[1]);
    return fail(Errc::kUndefinedField, static_cast<std::uint16_t>(de), pos);
  }
  if (count >= 2) {
    words[0] |= kTopBit;
  }
  if (count == 3) {
    words[1] |= kTopBit;
  }
  const std::size_t bm_bytes = dialect_->bitmap_bytes();
  if (cap - pos < bm_bytes * static_cast<std::size_t>(count)) {
    return fail(Errc::kBufferTooSmall, 0, pos);
  }
  for (int i = 0; i < count; ++i) {
    write_bitmap_word(info.bitmap_encoding, words[static_cast<std::size_t>(i)], out.data() + pos);
    pos += bm_bytes;
  }
  Error error;
  const bool ok = for_each_field(words, [&](int de) AS_ALWAYS_INLINE {
    const auto field = static_cast<std::uint16_t>(de);
    const FieldSpec& f = dialect_->field(de);
    const Value& v = values_[static_cast<std::size_t>(de)];
    FieldStatus s;
    switch (v.kind) {
      case Kind::kRawWire:
        if (cap - pos < v.size) {
          error = Error{Errc::kBufferTooSmall, field, 0, static_cast<std::uint32_t>(pos)};
          return false;
        }
        std::memcpy(out.data() + pos, v.data, v.size);
        pos += v.size;
        return true;
      case Kind::kText:
      case Kind::kBytes:
        s = internal::write_field(
            f, std::span<const std::byte>(static_cast<const std::byte*>(v.data), v.size), out, pos);
        break;
      case Kind::kForeign: {
        std::array<std::byte, 1024> scratch;
        const FieldView fv = foreign_->field(de);
        const auto canon = internal::canonical(*fv.spec, fv.wire, fv.units, scratch);
        if (canon.data() == nullptr && !fv.wire.empty()) {
          error = Error{Errc::kValueTooLong, field, 0, static_cast<std::uint32_t>(pos)};
          return false;
        }
        s = internal::write_field(f, canon, out, pos);
        break;
      }
    }
    if (s.code != Errc::kOk) {
      // Encode errors report the offset inside the value; the field says where.
      error = Error{s.code, field, 0,
                    s.code == Errc::kBufferTooSmall ? static_cast<std::uint32_t>(pos) : s.offset};
      return false;
    }
    return true;
  });
  if (!ok) {
    return base::unexpected(error);
  }
  if (pos > info.max_message_bytes) {
    return fail(Errc::kMessageTooLarge, 0, pos);
  }
  return pos;
}

Result<void> build_response(const MessageView& request, std::string_view response_code,
                            std::string_view approval_code, MessageBuilder& out) noexcept {
  const std::uint16_t mti = response_mti(request.mti());
  if (mti == 0) {
    return fail(Errc::kNoResponseMti, 0, request.dialect().info().header_bytes);
  }
  AS_ASSERT(&out.dialect() == &request.dialect());
  out.reset(mti);
  out.set_header(request.header());
  const auto& echo = request.dialect().echo_fields();
  for_each_field(request.bitmap_words(), [&](int de) AS_ALWAYS_INLINE {
    if (echo.test(static_cast<std::size_t>(de)) && de != 38 && de != 39) {
      out.copy_from(request, de);
    }
    return true;
  });
  if (!request.dialect().field(39).defined) {
    return fail(Errc::kUndefinedField, 39, 0);
  }
  out.set_text(39, response_code);
  if (!approval_code.empty()) {
    if (!request.dialect().field(38).defined) {
      return fail(Errc::kUndefinedField, 38, 0);
    }
    out.set_text(38, approval_code);
  }
  return {};
}

std::span<const std::byte> canonical_value(const FieldView& f,
                                           std::span<std::byte> scratch) noexcept {
  if (!f.present()) {
    return {};
  }
  return internal::canonical(*f.spec, f.wire, f.units, scratch);
}

std::string_view text_value(const FieldView& f, std::span<char> scratch) noexcept {
  const auto v = canonical_value(f, std::as_writable_bytes(scratch));
  return {reinterpret_cast<const char*>(v.data()), v.size()};  // NOLINT: bytes are ASCII text
}

Result<std::uint64_t> number_value(const FieldView& f) noexcept {
  if (!f.present()) {
    return fail(Errc::kMissingField, 0, 0);
  }
  std::array<char, 24> scratch;
  const std::string_view t = text_value(f, scratch);
  if (t.empty() || t.size() > 19) {
    return fail(Errc::kBadCharset, 0, 0);
  }
  std::uint64_t v = 0;
  for (const char c : t) {
    if (c < '0' || c > '9') {
      return fail(Errc::kBadCharset, 0, 0);
    }
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

}  // namespace authswitch::iso8583
