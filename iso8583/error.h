#pragma once
// Codec errors: a small enum plus the field number and byte offset where decoding or encoding
// stopped. No strings and no allocation; `describe` renders one into a caller buffer when an
// error is reported (CLI, logs), never on the message path.
// Thread-safety: value types.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "base/result.h"

namespace authswitch::iso8583 {

enum class Errc : std::uint8_t {
  kOk = 0,
  kTruncated,        // the buffer ends inside the header, MTI, bitmap, a prefix or a value
  kBadHeader,        // fixed message header has characters its encoding does not allow
  kBadMti,           // MTI is not four decimal digits in the dialect's encoding
  kBadBitmap,        // bitmap characters are not hex digits in the bitmap's encoding
  kUndefinedField,   // a bitmap bit is set for a field the dialect does not define
  kTertiaryBitmap,   // bit 65 is set but the dialect allows only two bitmaps
  kBadLengthPrefix,  // length prefix has non-digit characters or nibbles
  kLengthTooLong,    // declared length exceeds the field's maximum
  kLengthTooShort,   // declared length is below the field's minimum
  kBadCharset,       // a character the field's content type does not allow
  kBadPadding,       // a BCD pad nibble that is not the configured pad value
  kTrailingBytes,    // bytes remain after the last field the bitmap announces
  kBadSubfield,      // a composite field's subfields do not fit its value
  kBadTlv,           // DE 55 (or another BER-TLV field) is not well formed
  kMessageTooLarge,  // the message exceeds the configured maximum size
  kBufferTooSmall,   // encode: the caller's output buffer is too small
  kMissingField,     // encode/build: a required field has no value
  kValueTooLong,     // encode: a value is longer than the field allows
  kValueTooShort,    // encode: a binary fixed field's value has the wrong size
  kNoResponseMti,    // build_response: the request MTI has no response (e.g. a notification)
  kBadFrameHeader,   // framing: the length header is not valid in its encoding
  kFrameTooLarge,    // framing: the declared frame length exceeds the maximum frame size
};

// Human-readable name of an error code, e.g. "bad-charset". Static storage.
[[nodiscard]] std::string_view errc_name(Errc e) noexcept;

// Where and why a decode or encode failed. `field` is 0 for the header, MTI and bitmap,
// otherwise the data element (1..192); `subfield` is set inside composite fields.
struct Error {
  Errc code = Errc::kOk;
  std::uint16_t field = 0;
  std::uint16_t subfield = 0;
  std::uint32_t offset = 0;  // byte offset from the start of the message (after framing)
};

template <typename T>
using Result = base::Result<T, Error>;

[[nodiscard]] inline base::Unexpected<Error> fail(Errc code, std::uint16_t field,
                                                  std::size_t offset,
                                                  std::uint16_t subfield = 0) noexcept {
  return base::unexpected(Error{code, field, subfield, static_cast<std::uint32_t>(offset)});
}

// Writes e.g. "field 2 at offset 21: bad-charset (a character type n does not allow)" into
// `out` (truncated to fit) and returns the written part. Never mentions field contents, so
// it is safe to log for any field, PAN included.
std::string_view describe(const Error& e, std::span<char> out) noexcept;

}  // namespace authswitch::iso8583
