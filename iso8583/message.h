#pragma once
// Zero-copy decoding of one ISO 8583 message into a MessageView, and encoding from a
// MessageBuilder into a caller-provided buffer.
//
// A MessageView holds a pointer to the caller's buffer and, per present field, the offset and
// size of its value there: no byte is copied and nothing is allocated. The buffer must outlive
// the view. Decoding validates every field against its FieldSpec (length, charset, padding,
// composite structure, BER-TLV well-formedness) and fails with the field and byte offset.
// A view is reused across messages: decode() overwrites it and never clears the slot array.
//
// Thread-safety: a MessageView or MessageBuilder belongs to one thread; the Dialect they
// point to is shared read-only.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "iso8583/error.h"
#include "iso8583/spec.h"

namespace authswitch::iso8583 {

// The wire bytes of one present field, and its length in the field's units.
struct FieldView {
  std::span<const std::byte> wire;  // the value, without its length prefix
  std::uint32_t units = 0;          // length in the field's unit (digits, bytes, ...)
  const FieldSpec* spec = nullptr;  // null when the field is absent

  [[nodiscard]] bool present() const noexcept { return spec != nullptr; }
};

class MessageView {
 public:
  MessageView() = default;
  MessageView(const MessageView&) = delete;
  MessageView& operator=(const MessageView&) = delete;

  [[nodiscard]] const Dialect& dialect() const noexcept { return *dialect_; }
  // MTI as a number: 100 for "0100", 1100 for "1100".
  [[nodiscard]] std::uint16_t mti() const noexcept { return mti_; }
  // The four MTI digits.
  [[nodiscard]] std::array<char, 4> mti_text() const noexcept;
  [[nodiscard]] std::span<const std::byte> header() const noexcept {
    return {base_, dialect_->info().header_bytes};
  }
  // Bit i (1..192) of the combined bitmaps, indicator bits 1 and 65 included.
  [[nodiscard]] bool bit(int i) const noexcept {
    const auto u = static_cast<unsigned>(i - 1);
    return ((bitmap_[u / 64] >> (63U - (u % 64))) & 1U) != 0;
  }
  [[nodiscard]] bool has(int de) const noexcept { return de > 1 && de != 65 && bit(de); }
  [[nodiscard]] FieldView field(int de) const noexcept;
  // Whole raw message (header, MTI, bitmaps and fields).
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {base_, size_}; }
  // The three 64-bit bitmap words as carried (word 1 and 2 are zero when absent).
  [[nodiscard]] const std::array<std::uint64_t, 3>& bitmap_words() const noexcept {
    return bitmap_;
  }
  [[nodiscard]] int bitmap_count() const noexcept { return bitmap_count_; }
  // Raw wire bytes of a field including its length prefix (for same-dialect copies).
  [[nodiscard]] std::span<const std::byte> raw_field(int de) const noexcept;

 private:
  friend Result<std::size_t> decode(const Dialect&, std::span<const std::byte>,
                                    MessageView&) noexcept;
  struct Slot {
    std::uint32_t offset;  // of the length prefix
    std::uint32_t value_offset;
    std::uint32_t wire_len;  // value bytes
    std::uint32_t units;
  };

  const Dialect* dialect_ = nullptr;
  const std::byte* base_ = nullptr;
  std::uint32_t size_ = 0;
  std::uint16_t mti_ = 0;
  int bitmap_count_ = 0;
  std::array<std::uint64_t, 3> bitmap_{};
  std::array<Slot, kFieldSlots> slots_;  // valid only where the bitmap bit is set
};

// Decodes and validates one whole message (no framing) from `bytes` into `out`. Every byte
// must be used: extra bytes are kTrailingBytes. Returns the number of bytes consumed.
[[nodiscard]] Result<std::size_t> decode(const Dialect& dialect, std::span<const std::byte> bytes,
                                         MessageView& out) noexcept;

// For unframed streams: how long the message at the start of `bytes` is, without validating
// contents. kTruncated means more bytes are needed; other errors mean the stream is bad.
[[nodiscard]] Result<std::size_t> measure(const Dialect& dialect,
                                          std::span<const std::byte> bytes) noexcept;

// ---------------------------------------------------------------------------------------------
// Encoding.

// Collects field values (views into caller memory, never copies except for the small numbers
// formatted by set_number) and encodes them. Values are given in canonical form:
//  - character fields (n, a, an, ans, z, x+n, ...): ASCII text; the encoder converts to EBCDIC
//    or packs BCD as the field requires, and pads fixed fields as the dialect says;
//  - binary fields (b): raw bytes (the encoder writes hex characters for ascii-hex fields).
// A value is referenced, not copied: it must live until encode() returns.
class MessageBuilder {
 public:
  explicit MessageBuilder(const Dialect& dialect) noexcept : dialect_(&dialect) {}
  MessageBuilder(const MessageBuilder&) = delete;
  MessageBuilder& operator=(const MessageBuilder&) = delete;

  // Forgets every field (cheap: clears three words) and sets a new MTI.
  void reset(std::uint16_t mti) noexcept;
  void set_mti(std::uint16_t mti) noexcept { mti_ = mti; }
  // REQUIRES: header.size() == dialect header size; referenced, not copied.
  void set_header(std::span<const std::byte> header) noexcept { header_ = header; }
  // REQUIRES: 2 <= de <= 192, de != 65, and the dialect defines de.
  void set_text(int de, std::string_view ascii) noexcept;
  void set_bytes(int de, std::span<const std::byte> raw) noexcept;
  // Formats a non-negative number as decimal digits into internal storage (zero-padded to
  // the field's fixed length on encode). At most kNumberSlots numbers per message.
  void set_number(int de, std::uint64_t value) noexcept;
  // Copies a field of a decoded message. Same dialect: the wire bytes (prefix included) are
  // referenced as they are; otherwise the value is re-encoded at encode time.
  void copy_from(const MessageView& msg, int de) noexcept;
  void clear(int de) noexcept;
  [[nodiscard]] bool has(int de) const noexcept;
  [[nodiscard]] std::uint16_t mti() const noexcept { return mti_; }
  [[nodiscard]] const Dialect& dialect() const noexcept { return *dialect_; }

  // Encodes into `out`; returns the number of bytes written. Validates each value against its
  // spec first (charset, length), so a builder never produces a message decode() rejects.
  [[nodiscard]] Result<std::size_t> encode(std::span<std::byte> out) const noexcept;

  static constexpr int kNumberSlots = 16;

 private:
  enum class Kind : std::uint8_t { kText, kBytes, kRawWire, kForeign };
  struct Value {
    const void* data;
    std::uint32_t size;
    Kind kind;
  };
  [[nodiscard]] bool bit(int de) const noexcept;
  void set_bit(int de) noexcept;

  const Dialect* dialect_;
  std::uint16_t mti_ = 0;
  std::span<const std::byte> header_;
  std::array<std::uint64_t, 3> present_{};
  std::array<Value, kFieldSlots> values_;
  const MessageView* foreign_ = nullptr;  // source view for kForeign copies
  int numbers_used_ = 0;
  std::array<std::array<char, 20>, kNumberSlots> numbers_{};
};

// Prepares `out` as the response to `request`: response MTI (0100 -> 0110, 0101 -> 0110,
// 0120 -> 0130, 1100 -> 1110, 1804 -> 1814, ...), the echoed fields (DE 2, 3, 4, 7, 11, 12, 13, 32,
// 37, 41, 42, 49 and every field the dialect marks echo), DE 39 = `response_code`, and DE 38 when
// `approval_code` is not empty. The strings are referenced: they must outlive encode().
[[nodiscard]] Result<void> build_response(const MessageView& request,
                                          std::string_view response_code,
                                          std::string_view approval_code,
                                          MessageBuilder& out) noexcept;

// Response MTI for a request or advice MTI, or 0 when there is none. The origin digit is kept
// without its repeat bit (ISO 8583:1987 and :1993 section 4.1: 0 acquirer, 2 issuer, 4 other;
// odd: a repeat): 0101 -> 0110, 0402 -> 0412, 1804 -> 1814.
[[nodiscard]] constexpr std::uint16_t response_mti(std::uint16_t mti) noexcept {
  const auto function = static_cast<std::uint16_t>((mti / 10) % 10);
  if (function != 0 && function != 2) {
    return 0;
  }
  const auto origin = static_cast<std::uint16_t>(mti % 10 - mti % 2);
  return static_cast<std::uint16_t>(mti - mti % 100 + (function + 1) * 10 + origin);
}

// ---------------------------------------------------------------------------------------------
// Reading values.

// The field's value in canonical form: text for character fields (EBCDIC translated, BCD
// unpacked with the pad nibble dropped, a track 2 'D' nibble shown as '='), and raw bytes for
// binary fields. ASCII character and binary fields are returned as views into the message
// (no copy); the others are written into `scratch`. Returns an empty view if the field is
// absent or scratch is too small.
[[nodiscard]] std::span<const std::byte> canonical_value(const FieldView& f,
                                                         std::span<std::byte> scratch) noexcept;
[[nodiscard]] std::string_view text_value(const FieldView& f, std::span<char> scratch) noexcept;

// A numeric field's value (n, up to 19 digits). Fails on non-digits or absence.
[[nodiscard]] Result<std::uint64_t> number_value(const FieldView& f) noexcept;

}  // namespace authswitch::iso8583
