#include "iso8583/tlv.h"

#include <cstring>

namespace authswitch::iso8583 {
namespace {

constexpr std::uint8_t kTagNumberMask = 0x1F;    // b5..b1 all set: subsequent tag bytes follow
constexpr std::uint8_t kTagMoreBit = 0x80;       // b8 of a subsequent byte: another byte follows
constexpr std::uint8_t kConstructedBit = 0x20;   // b6 of the first tag byte
constexpr std::uint8_t kLengthLongForm = 0x80;   // b8 of the first length byte
constexpr std::uint8_t kLengthCountMask = 0x7F;  // long form: number of length bytes

[[nodiscard]] constexpr std::uint8_t u8(std::byte b) noexcept {
  return std::to_integer<std::uint8_t>(b);
}

// 0x00 and 0xFF between objects carry no meaning (EMV 4.3 Book 3 Annex B; ISO/IEC 7816-4).
[[nodiscard]] constexpr bool is_padding(std::byte b) noexcept {
  return b == std::byte{0x00} || b == std::byte{0xFF};
}

[[nodiscard]] std::size_t offset_in(std::span<const std::byte> block,
                                    std::span<const std::byte> part) noexcept {
  AS_DASSERT(part.data() >= block.data());
  return static_cast<std::size_t>(part.data() - block.data());
}

// Depth-first walk over every object of `block`, without recursion: one reader per open level.
// `visit(object)` returns true to stop. Returns true when stopped, false at the end.
template <typename Visit>
[[nodiscard]] Result<bool> walk(std::span<const std::byte> block, std::uint16_t field,
                                int max_depth, Visit&& visit) noexcept {
  AS_ASSERT(max_depth >= 1);
  AS_ASSERT(max_depth <= kTlvDepthMax);
  const auto depth_max = static_cast<std::size_t>(max_depth);
  // One more slot than levels, so an object one level too deep is read and reported.
  std::array<TlvReader, kTlvDepthMax + 1> readers{};
  readers[0] = TlvReader(block, field, 0);
  std::size_t open = 1;  // readers in use; readers[open - 1] reads level `open`
  while (open > 0) {
    TlvObject object;
    const Result<bool> got = readers[open - 1].next(object);
    if (!got) {
      return base::unexpected(got.error());
    }
    if (!*got) {
      --open;
      continue;
    }
    if (open > depth_max) {
      return fail(Errc::kBadTlv, field, offset_in(block, object.raw));
    }
    if (visit(object)) {
      return true;
    }
    if (object.constructed) {
      readers[open] = TlvReader(object.value, field, offset_in(block, object.value));
      ++open;
    }
  }
  return false;
}

}  // namespace

base::Unexpected<Error> TlvReader::fail_at(std::size_t pos) noexcept {
  pos_ = block_.size();
  error_ = Error{Errc::kBadTlv, field_, 0, static_cast<std::uint32_t>(base_offset_ + pos)};
  return base::unexpected(error_);
}

Result<bool> TlvReader::next(TlvObject& out) noexcept {
  if (error_.code != Errc::kOk) [[unlikely]] {
    return base::unexpected(error_);
  }
  const std::size_t size = block_.size();
  while (pos_ < size && is_padding(block_[pos_])) {
    ++pos_;
  }
  if (pos_ == size) {
    return false;
  }

  // Tag (EMV Book 3 Annex B1).
  const std::size_t start = pos_;
  std::size_t p = start;
  const std::uint8_t first = u8(block_[p++]);
  std::uint32_t tag = first;
  if ((first & kTagNumberMask) == kTagNumberMask) {
    std::uint8_t b = 0;
    do {
      if (p == size) {
        return fail_at(p);  // truncated tag
      }
      b = u8(block_[p++]);
      tag = (tag << 8) | b;
    } while ((b & kTagMoreBit) != 0 && p - start < kTlvTagBytesMax);
    if ((b & kTagMoreBit) != 0) {
      return fail_at(p - 1);  // a fifth tag byte would follow
    }
  }
  const std::size_t tag_end = p;

  // Length (EMV Book 3 Annex B2).
  if (p == size) {
    return fail_at(p);  // truncated before the length
  }
  const std::size_t length_pos = p;
  const std::uint8_t l0 = u8(block_[p++]);
  std::size_t length = l0;
  if ((l0 & kLengthLongForm) != 0) {
    const std::size_t count = l0 & kLengthCountMask;
    if (count == 0 || count > kTlvLengthBytesMax - 1) {
      return fail_at(length_pos);  // indefinite form, or more than 4 length bytes
    }
    if (size - p < count) {
      return fail_at(size);  // truncated length bytes
    }
    length = 0;
    for (std::size_t i = 0; i < count; ++i) {
      length = (length << 8) | u8(block_[p++]);
    }
  }
  if (length > size - p) {
    return fail_at(length_pos);  // the value runs past the end of the block
  }

  out.tag = tag;
  out.tag_bytes = block_.subspan(start, tag_end - start);
  out.value = block_.subspan(p, length);
  out.raw = block_.subspan(start, p + length - start);
  out.constructed = (first & kConstructedBit) != 0;
  pos_ = p + length;
  AS_DASSERT(pos_ <= size);
  return true;
}

// The message decoder validates DE 55 on every message, so this is a lean single loop over the
// bytes with a stack of template ends, rather than a walk of TlvReaders (which costs a
// Result per object). It accepts and rejects exactly what the readers do, at the same offsets.
Result<void> validate_tlv(std::span<const std::byte> block, std::uint16_t field,
                          int max_depth) noexcept {
  AS_ASSERT(max_depth >= 1);
  AS_ASSERT(max_depth <= kTlvDepthMax);
  const std::byte* b = block.data();
  std::array<std::size_t, kTlvDepthMax + 1> ends;  // ends[d]: end of the object open at level d
  std::size_t depth = 0;
  ends[0] = block.size();
  std::size_t p = 0;
  for (;;) {
    while (p == ends[depth]) {
      if (depth == 0) {
        return {};
      }
      --depth;
    }
    const std::size_t end = ends[depth];
    if (is_padding(b[p])) {
      ++p;
      continue;
    }
    const std::size_t start = p;
    const std::uint8_t first = u8(b[p++]);
    if ((first & kTagNumberMask) == kTagNumberMask) {
      std::uint8_t t = 0;
      do {
        if (p == end) {
          return fail(Errc::kBadTlv, field, p);
        }
        t = u8(b[p++]);
      } while ((t & kTagMoreBit) != 0 && p - start < kTlvTagBytesMax);
      if ((t & kTagMoreBit) != 0) {
        return fail(Errc::kBadTlv, field, p - 1);
      }
    }
    if (p == end) {
      return fail(Errc::kBadTlv, field, p);
    }
    const std::size_t length_pos = p;
    const std::uint8_t l0 = u8(b[p++]);
    std::size_t length = l0;
    if ((l0 & kLengthLongForm) != 0) {
      const std::size_t count = l0 & kLengthCountMask;
      if (count == 0 || count > kTlvLengthBytesMax - 1) {
        return fail(Errc::kBadTlv, field, length_pos);
      }
      if (end - p < count) {
        return fail(Errc::kBadTlv, field, end);
      }
      length = 0;
      for (std::size_t i = 0; i < count; ++i) {
        length = (length << 8U) | u8(b[p++]);
      }
    }
    if (length > end - p) {
      return fail(Errc::kBadTlv, field, length_pos);
    }
    if (depth + 1 > static_cast<std::size_t>(max_depth)) {
      return fail(Errc::kBadTlv, field, start);
    }
    if ((first & kConstructedBit) != 0) {
      ends[++depth] = p + length;
    } else {
      p += length;
    }
  }
}

Result<std::optional<TlvObject>> find_tlv(std::span<const std::byte> block, std::uint32_t tag,
                                          std::uint16_t field) noexcept {
  std::optional<TlvObject> found;
  const Result<bool> walked =
      walk(block, field, kTlvDepthDefault, [&found, tag](const TlvObject& object) noexcept {
        if (object.tag != tag) {
          return false;
        }
        found = object;
        return true;
      });
  if (!walked) {
    return base::unexpected(walked.error());
  }
  AS_DASSERT(*walked == found.has_value());
  return found;
}

bool tlv_tag_valid(std::uint32_t tag) noexcept {
  if (tag == 0) {
    return false;
  }
  const std::size_t n = tag_byte_count(tag);
  const auto byte_at = [tag, n](std::size_t i) {
    return static_cast<std::uint8_t>(tag >> (8 * (n - 1 - i)));
  };
  const std::uint8_t first = byte_at(0);
  if (first == 0xFF) {
    return false;  // padding, never a first tag byte
  }
  if (n == 1) {
    return (first & kTagNumberMask) != kTagNumberMask;
  }
  if ((first & kTagNumberMask) != kTagNumberMask) {
    return false;
  }
  for (std::size_t i = 1; i + 1 < n; ++i) {
    if ((byte_at(i) & kTagMoreBit) == 0) {
      return false;
    }
  }
  return (byte_at(n - 1) & kTagMoreBit) == 0;
}

void TlvWriter::fail_at(std::size_t pos) noexcept {
  if (!failed()) {
    error_ = Error{Errc::kBufferTooSmall, field_, 0, static_cast<std::uint32_t>(pos)};
  }
}

bool TlvWriter::reserve(std::size_t n) noexcept {
  if (n > out_.size() - pos_) {
    fail_at(pos_);
    return false;
  }
  return true;
}

void TlvWriter::put_tag(std::uint32_t tag) noexcept {
  const std::size_t n = tag_byte_count(tag);
  for (std::size_t i = 0; i < n; ++i) {
    out_[pos_++] = static_cast<std::byte>(tag >> (8 * (n - 1 - i)));
  }
}

void TlvWriter::put_length(std::size_t value_size) noexcept {
  const std::size_t n = length_byte_count(value_size);
  if (n == 1) {
    out_[pos_++] = static_cast<std::byte>(value_size);
    return;
  }
  out_[pos_++] = static_cast<std::byte>(kLengthLongForm | (n - 1));
  for (std::size_t i = 1; i < n; ++i) {
    out_[pos_++] = static_cast<std::byte>(value_size >> (8 * (n - 1 - i)));
  }
}

void TlvWriter::append(std::uint32_t tag, std::span<const std::byte> value) noexcept {
  AS_ASSERT(tlv_tag_valid(tag));
  if (failed()) {
    return;
  }
  const std::size_t header = tag_byte_count(tag) + length_byte_count(value.size());
  if (!reserve(header + value.size())) {
    return;
  }
  // Copy the value first: it may alias the output at or after the header's position.
  if (!value.empty()) {
    std::memmove(out_.data() + pos_ + header, value.data(), value.size());
  }
  put_tag(tag);
  put_length(value.size());
  pos_ += value.size();
}

void TlvWriter::append_raw(const TlvObject& object) noexcept {
  AS_ASSERT(!object.raw.empty());
  if (failed() || !reserve(object.raw.size())) {
    return;
  }
  std::memmove(out_.data() + pos_, object.raw.data(), object.raw.size());
  pos_ += object.raw.size();
}

void TlvWriter::begin_constructed(std::uint32_t tag) noexcept {
  AS_ASSERT(tlv_tag_valid(tag));
  AS_ASSERT((static_cast<std::uint8_t>(tag >> (8 * (tag_byte_count(tag) - 1))) & kConstructedBit) !=
            0);
  AS_ASSERT(open_count_ < kTlvWriterNestingMax);
  // Balance is tracked even after an error so that end_constructed's assertion stays exact.
  if (failed() || !reserve(tag_byte_count(tag) + 1)) {
    open_length_pos_[open_count_++] = pos_;
    return;
  }
  put_tag(tag);
  open_length_pos_[open_count_++] = pos_;
  out_[pos_++] = std::byte{0};  // patched by end_constructed
}

void TlvWriter::end_constructed() noexcept {
  AS_ASSERT(open_count_ > 0);
  const std::size_t length_pos = open_length_pos_[--open_count_];
  if (failed()) {
    return;
  }
  const std::size_t value_start = length_pos + 1;
  const std::size_t value_size = pos_ - value_start;
  const std::size_t extra = length_byte_count(value_size) - 1;
  if (extra > 0) {
    // Longer than 127 bytes: move the value up to make room for the long form.
    if (!reserve(extra)) {
      return;
    }
    std::memmove(out_.data() + value_start + extra, out_.data() + value_start, value_size);
  }
  const std::size_t end = pos_ + extra;
  pos_ = length_pos;
  put_length(value_size);
  AS_DASSERT(pos_ == value_start + extra);
  pos_ = end;
}

Result<std::size_t> TlvWriter::finish() const noexcept {
  AS_ASSERT(open_count_ == 0);
  if (failed()) {
    return base::unexpected(error_);
  }
  AS_DASSERT(pos_ <= out_.size());
  return pos_;
}

}  // namespace authswitch::iso8583
