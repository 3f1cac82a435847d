#pragma once
// BER-TLV reading and writing for DE 55 (ICC system related data) and other chip-data fields:
// the ISO/IEC 8825-1 subset that EMV 4.3 Book 3 Annex B uses.
//
// - Tags are 1 to 4 bytes. When bits b5..b1 of the first byte are all 1 (0x1F), subsequent
//   bytes follow while their bit b8 is set (Annex B1). A tag is held as the big-endian value of
//   its bytes: tag 9F02 is 0x9F02.
// - Lengths are the short form (0x00..0x7F) or the long form 0x81..0x84 followed by 1..4 length
//   bytes (Annex B2). The indefinite form 0x80 and 0x85..0xFF are rejected. Non-minimal long
//   forms (0x81 0x05) are accepted when reading; TlvObject::raw keeps them byte-exact.
// - Bit b6 (0x20) of the first tag byte marks a constructed object, whose value is a template
//   of further objects.
// - Padding: 0x00 bytes may occur before, between or after objects (EMV Book 3 Annex B; EMV
//   SU 69 restricts them to templates), and ISO/IEC 7816-4 also allows 0xFF. Neither is a valid
//   first tag byte, so the reader skips both at every level, including the top level of DE 55
//   where some terminals leave them.
//
// Errors are Errc::kBadTlv (malformed input) or Errc::kBufferTooSmall (writer output full), with
// the field number given to the constructor (55 by default) and the byte offset inside the TLV
// block: the byte that could not be parsed, or the block's end when it is truncated. The caller
// adds the field's position in the message.
//
// Nothing allocates: objects are views into the caller's block, and the writer writes into a
// caller buffer. All types are single-thread values; the spans must outlive them.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "iso8583/error.h"

namespace authswitch::iso8583 {

inline constexpr std::uint16_t kTlvFieldDefault = 55;
inline constexpr std::size_t kTlvTagBytesMax = 4;
inline constexpr std::size_t kTlvLengthBytesMax = 5;  // 0x84 plus four length bytes
// Levels of objects validate_tlv and find_tlv accept by default: the top level is 1, so a
// template 0x70 holding primitives is 2 levels.
inline constexpr int kTlvDepthDefault = 4;
inline constexpr int kTlvDepthMax = 8;
// Templates a TlvWriter can have open at once.
inline constexpr std::size_t kTlvWriterNestingMax = 4;

// One object as it was on the wire. All spans point into the block the reader was given.
struct TlvObject {
  std::uint32_t tag = 0;                 // big-endian value of the tag bytes (9F02 -> 0x9F02)
  std::span<const std::byte> tag_bytes;  // the tag bytes
  std::span<const std::byte> raw;        // tag + length + value, exactly as received
  std::span<const std::byte> value;      // the value; a template when constructed
  bool constructed = false;              // bit 0x20 of the first tag byte
};

// Walks the objects at one level of a block, skipping 0x00 / 0xFF padding. To descend into a
// constructed object, make a reader over its `value` (pass the value's offset in the outer
// block as `base_offset` so errors keep block-relative offsets). An error is sticky: next()
// returns it again on every later call.
// A value type over a borrowed span; one thread at a time.
class TlvReader {
 public:
  TlvReader() noexcept = default;
  explicit TlvReader(std::span<const std::byte> block, std::uint16_t field = kTlvFieldDefault,
                     std::size_t base_offset = 0) noexcept
      : block_(block), base_offset_(base_offset), field_(field) {}

  // Reads the next object into `out`: true when there was one, false at the end of the block.
  // `out` is only written on true.
  [[nodiscard]] Result<bool> next(TlvObject& out) noexcept;

  // Position of the next unread byte, relative to the start of this reader's span.
  [[nodiscard]] std::size_t offset() const noexcept { return pos_; }

 private:
  [[nodiscard]] base::Unexpected<Error> fail_at(std::size_t pos) noexcept;

  std::span<const std::byte> block_;
  std::size_t pos_ = 0;
  std::size_t base_offset_ = 0;
  Error error_{};
  std::uint16_t field_ = kTlvFieldDefault;
};

// Checks that `block` is a well-formed sequence of objects, descending into constructed
// objects (depth-first, no recursion) up to `max_depth` levels. An object deeper than that is
// kBadTlv at its offset. Used by the message decoder to validate DE 55 eagerly.
// REQUIRES: 1 <= max_depth <= kTlvDepthMax.
[[nodiscard]] Result<void> validate_tlv(std::span<const std::byte> block, std::uint16_t field,
                                        int max_depth = kTlvDepthDefault) noexcept;

// Finds the first object with `tag`, depth-first in wire order (a template is visited before
// its children), up to kTlvDepthDefault levels. Returns nullopt when absent. Malformed bytes met
// before the tag is found are an error; bytes after it are not examined, so validate first
// when the whole block must be well formed.
[[nodiscard]] Result<std::optional<TlvObject>> find_tlv(
    std::span<const std::byte> block, std::uint32_t tag,
    std::uint16_t field = kTlvFieldDefault) noexcept;

// Number of bytes that encode `tag` (its big-endian value without leading zero bytes).
// REQUIRES: tag != 0.
[[nodiscard]] constexpr std::size_t tag_byte_count(std::uint32_t tag) noexcept {
  AS_ASSERT(tag != 0);
  if (tag <= 0xFFu) {
    return 1;
  }
  if (tag <= 0xFFFFu) {
    return 2;
  }
  return tag <= 0xFFFFFFu ? 3 : 4;
}

// Number of bytes of the minimal length field for a value of `value_size` bytes.
// REQUIRES: value_size <= 0xFFFFFFFF.
[[nodiscard]] constexpr std::size_t length_byte_count(std::size_t value_size) noexcept {
  AS_ASSERT(value_size <= 0xFFFFFFFFu);
  if (value_size < 0x80u) {
    return 1;
  }
  if (value_size <= 0xFFu) {
    return 2;
  }
  if (value_size <= 0xFFFFu) {
    return 3;
  }
  return value_size <= 0xFFFFFFu ? 4 : 5;
}

// True when `tag` is a well-formed BER-TLV tag of 1..4 bytes that this reader would parse back
// to the same value: a single byte without 0x1F in b5..b1, or a 0x1F first byte, subsequent
// bytes with b8 set except the last. 0x00 and 0xFF first bytes are padding, never tags.
[[nodiscard]] bool tlv_tag_valid(std::uint32_t tag) noexcept;

// Writes objects into a caller buffer, always with minimal length fields except append_raw,
// which copies the original bytes. The first error (output full) is sticky: later calls do
// nothing and finish() returns it. Templates may nest up to kTlvWriterNestingMax deep; each
// reserves one length byte and, when it closes longer than 127 bytes, its value is moved up to
// make room for the long form.
// Owns nothing; writes only inside `out`. One thread at a time.
class TlvWriter {
 public:
  explicit TlvWriter(std::span<std::byte> out, std::uint16_t field = kTlvFieldDefault) noexcept
      : out_(out), field_(field) {}
  TlvWriter(const TlvWriter&) = delete;
  TlvWriter& operator=(const TlvWriter&) = delete;
  TlvWriter(TlvWriter&&) = delete;
  TlvWriter& operator=(TlvWriter&&) = delete;
  ~TlvWriter() = default;

  // Appends tag, minimal length and value. `value` may alias the output buffer.
  // REQUIRES: tlv_tag_valid(tag).
  void append(std::uint32_t tag, std::span<const std::byte> value) noexcept;
  // Appends `object.raw` unchanged (unknown tags and non-minimal lengths survive byte-exact).
  // REQUIRES: object.raw is not empty.
  void append_raw(const TlvObject& object) noexcept;
  // Opens a template; objects appended until end_constructed() form its value.
  // REQUIRES: tlv_tag_valid(tag), the tag is constructed, fewer than kTlvWriterNestingMax open.
  void begin_constructed(std::uint32_t tag) noexcept;
  // Closes the innermost open template and writes its length.
  // REQUIRES: a template is open.
  void end_constructed() noexcept;

  // The number of bytes written, or the first error.
  // REQUIRES: every template is closed.
  [[nodiscard]] Result<std::size_t> finish() const noexcept;

  [[nodiscard]] std::size_t size() const noexcept { return pos_; }
  [[nodiscard]] bool failed() const noexcept { return error_.code != Errc::kOk; }

 private:
  // Records the first error; the writer stops writing.
  void fail_at(std::size_t pos) noexcept;
  // True when `n` more bytes fit; otherwise records kBufferTooSmall.
  [[nodiscard]] bool reserve(std::size_t n) noexcept;
  void put_tag(std::uint32_t tag) noexcept;
  void put_length(std::size_t value_size) noexcept;

  std::span<std::byte> out_;
  std::size_t pos_ = 0;
  std::array<std::size_t, kTlvWriterNestingMax> open_length_pos_{};  // reserved length bytes
  std::size_t open_count_ = 0;
  Error error_{};
  std::uint16_t field_ = kTlvFieldDefault;
};

}  // namespace authswitch::iso8583
