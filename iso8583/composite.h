#pragma once
// Composite fields: values with an inner structure described by the dialect.
//  - positional: subfields one after another (DE 3 as 3 x n2, DE 90, DE 95);
//  - bitmapped: optional header bytes, a sub-bitmap, then the subfields it announces
//    (Postilion DE 127, jPOS-style DE 55 with subfields);
//  - BER-TLV: DE 55 chip data, read with iso8583/tlv.h.
// Plus typed readers for the composites every switch needs: DE 90 original data elements,
// DE 95 replacement amounts and track 2 data.
// Everything here reads views into the message buffer; nothing allocates.
// Thread-safety: value types, one thread each.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "iso8583/error.h"
#include "iso8583/message.h"
#include "iso8583/spec.h"

namespace authswitch::iso8583 {

inline constexpr int kMaxSubfield = 99;

class CompositeView {
 public:
  CompositeView() = default;
  CompositeView(const CompositeView&) = delete;
  CompositeView& operator=(const CompositeView&) = delete;

  [[nodiscard]] const CompositeSpec& spec() const noexcept { return *spec_; }
  [[nodiscard]] std::span<const std::byte> header() const noexcept { return header_; }
  // Sub-bitmap as carried (bitmapped composites), left-aligned in a 64-bit word.
  [[nodiscard]] std::uint64_t bitmap() const noexcept { return bitmap_; }
  [[nodiscard]] bool has(int sub) const noexcept {
    return sub >= 1 && sub <= kMaxSubfield && present_[static_cast<std::size_t>(sub)];
  }
  [[nodiscard]] FieldView subfield(int sub) const noexcept;

 private:
  friend Result<void> decode_composite(const CompositeSpec&, std::span<const std::byte>,
                                       std::uint16_t, CompositeView&) noexcept;
  struct Slot {
    std::uint32_t offset;
    std::uint32_t wire_len;
    std::uint32_t units;
  };
  const CompositeSpec* spec_ = nullptr;
  const std::byte* base_ = nullptr;
  std::span<const std::byte> header_;
  std::uint64_t bitmap_ = 0;
  std::array<bool, kMaxSubfield + 1> present_{};
  std::array<Slot, kMaxSubfield + 1> slots_;  // valid only where present_ is set
};

// Decodes and validates the subfields of a composite value. Error offsets are relative to the
// start of `value`; `field` is reported as the error's field.
[[nodiscard]] Result<void> decode_composite(const CompositeSpec& spec,
                                            std::span<const std::byte> value, std::uint16_t field,
                                            CompositeView& out) noexcept;

// Decodes the composite field `de` of a decoded message (offsets relative to the message).
[[nodiscard]] Result<void> decode_composite(const MessageView& msg, int de,
                                            CompositeView& out) noexcept;

// DE 90, original data elements (ISO 8583:1987, n 42): the key of the message a reversal or
// advice refers to.
struct OriginalData {
  std::uint16_t mti = 0;
  std::uint32_t stan = 0;                // DE 11 of the original
  std::uint64_t transmission_time = 0;   // DE 7 of the original, MMDDhhmmss
  std::array<char, 11> acquirer_id{};    // DE 32 of the original, right-aligned, zero-filled
  std::array<char, 11> forwarding_id{};  // DE 33 of the original
};
[[nodiscard]] Result<OriginalData> read_original_data(const MessageView& msg) noexcept;

// DE 56, original data elements (ISO 8583:1993, n..35): the key of the message a reversal,
// completion or advice refers to: its MTI (n4), STAN (n6), local date and time (DE 12, n12
// YYMMDDhhmmss) and, optionally, its acquiring institution (DE 32: a two-digit length, then up
// to 11 digits).
struct OriginalData93 {
  std::uint16_t mti = 0;
  std::uint32_t stan = 0;
  std::uint64_t local_time = 0;        // DE 12 of the original, YYMMDDhhmmss
  std::array<char, 11> acquirer_id{};  // DE 32 of the original, its first acquirer_len digits
  std::uint8_t acquirer_len = 0;       // 0: not given
  [[nodiscard]] std::string_view acquirer() const noexcept {
    return {acquirer_id.data(), acquirer_len};
  }
};
[[nodiscard]] Result<OriginalData93> read_original_data_93(const MessageView& msg) noexcept;

// DE 95, replacement amounts (ISO 8583:1987, an 42): what a partial reversal leaves standing.
// Amounts are minor units of the message's currencies (DE 49 / DE 50).
struct ReplacementAmounts {
  std::int64_t transaction_minor = 0;
  std::int64_t settlement_minor = 0;
  std::int64_t transaction_fee_minor = 0;  // signed: 'C' credit is positive, 'D' debit negative
  std::int64_t settlement_fee_minor = 0;
};
[[nodiscard]] Result<ReplacementAmounts> read_replacement_amounts(const MessageView& msg) noexcept;

// Track 2 (DE 35, or EMV tag 57 after unpacking): PAN, separator ('=' or 'D'), expiry YYMM,
// service code, discretionary data. Views point into the text passed in.
struct Track2 {
  std::string_view pan;
  std::string_view expiry_yymm;
  std::string_view service_code;
  std::string_view discretionary;
};
// `text` is track 2 in canonical form (as text_value returns it; a trailing 'F' pad and
// start/end sentinels ';' '?' are tolerated).
[[nodiscard]] Result<Track2> parse_track2(std::string_view text) noexcept;

}  // namespace authswitch::iso8583
