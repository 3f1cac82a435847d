#pragma once
// Reading and writing one field (length prefix + value) against its FieldSpec. Shared by the
// message codec (message.cc) and the composite subfield codec (composite.cc).
// Internal: include only from iso8583/*.cc. All functions are noexcept and allocation-free.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "iso8583/error.h"
#include "iso8583/spec.h"

namespace authswitch::iso8583::internal {

struct FieldExtent {
  std::uint32_t value_offset = 0;  // offset of the value (after the prefix)
  std::uint32_t wire_len = 0;      // value bytes
  std::uint32_t units = 0;         // length in the field's unit
};

// Outcome of reading a field: the error code (kOk on success) and where it was found.
struct FieldStatus {
  Errc code = Errc::kOk;
  std::uint32_t offset = 0;
};

// Reads the field starting at `pos` of `data` (length prefix, then value) and, when
// kValidate, checks its content against the spec. On success `pos` moves past the field.
template <bool kValidate>
FieldStatus read_field(const FieldSpec& f, std::span<const std::byte> data, std::size_t& pos,
                       FieldExtent& out) noexcept;

// Checks a value's content (charset, BCD nibbles, padding). Offsets are relative to
// `value`; the caller adds where the value starts. `before` bytes ahead of the value are
// readable (part of the same buffer), which lets short values be checked as one word.
FieldStatus validate_value(const FieldSpec& f, std::span<const std::byte> value,
                           std::uint32_t units, std::size_t before = 0) noexcept;

// Writes a field (prefix and value) at `out[pos]` from its canonical form: ASCII text for
// character fields, raw bytes for binary ones. On success `pos` moves past the field.
FieldStatus write_field(const FieldSpec& f, std::span<const std::byte> value,
                        std::span<std::byte> out, std::size_t& pos) noexcept;

// Canonical form of a value (see text_value in message.h); returns the bytes written to
// scratch, or a view of `wire` when no conversion is needed. Empty on overflow.
std::span<const std::byte> canonical(const FieldSpec& f, std::span<const std::byte> wire,
                                     std::uint32_t units, std::span<std::byte> scratch) noexcept;

// Reads a bitmap of `bytes` decoded bytes at p (twice as many characters for the hex
// encodings) into the top of a 64-bit word; false on a bad hex digit.
bool read_bitmap_word(BitmapEncoding enc, const std::byte* p, unsigned bytes,
                      std::uint64_t& out) noexcept;

// Wire size of a bitmap of `bytes` decoded bytes.
[[nodiscard]] constexpr std::size_t bitmap_wire_bytes(BitmapEncoding enc, unsigned bytes) noexcept {
  return enc == BitmapEncoding::kBinary ? bytes : std::size_t{bytes} * 2;
}

}  // namespace authswitch::iso8583::internal
