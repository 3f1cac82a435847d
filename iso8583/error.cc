#include "iso8583/error.h"

#include <algorithm>
#include <cstdio>

namespace authswitch::iso8583 {

std::string_view errc_name(Errc e) noexcept {
  switch (e) {
    case Errc::kOk:
      return "ok";
    case Errc::kTruncated:
      return "truncated";
    case Errc::kBadHeader:
      return "bad-header";
    case Errc::kBadMti:
      return "bad-mti";
    case Errc::kBadBitmap:
      return "bad-bitmap";
    case Errc::kUndefinedField:
      return "undefined-field";
    case Errc::kTertiaryBitmap:
      return "tertiary-bitmap-not-allowed";
    case Errc::kBadLengthPrefix:
      return "bad-length-prefix";
    case Errc::kLengthTooLong:
      return "length-too-long";
    case Errc::kLengthTooShort:
      return "length-too-short";
    case Errc::kBadCharset:
      return "bad-charset";
    case Errc::kBadPadding:
      return "bad-padding";
    case Errc::kTrailingBytes:
      return "trailing-bytes";
    case Errc::kBadSubfield:
      return "bad-subfield";
    case Errc::kBadTlv:
      return "bad-tlv";
    case Errc::kMessageTooLarge:
      return "message-too-large";
    case Errc::kBufferTooSmall:
      return "buffer-too-small";
    case Errc::kMissingField:
      return "missing-field";
    case Errc::kValueTooLong:
      return "value-too-long";
    case Errc::kValueTooShort:
      return "value-too-short";
    case Errc::kNoResponseMti:
      return "no-response-mti";
    case Errc::kBadFrameHeader:
      return "bad-frame-header";
    case Errc::kFrameTooLarge:
      return "frame-too-large";
  }
  return "unknown";
}

std::string_view describe(const Error& e, std::span<char> out) noexcept {
  if (out.empty()) {
    return {};
  }
  int n = 0;
  const std::string_view name = errc_name(e.code);
  const int name_len = static_cast<int>(name.size());
  if (e.field == 0) {
    n = std::snprintf(out.data(), out.size(), "offset %u: %.*s", static_cast<unsigned>(e.offset),
                      name_len, name.data());
  } else if (e.subfield == 0) {
    n = std::snprintf(out.data(), out.size(), "field %u at offset %u: %.*s",
                      static_cast<unsigned>(e.field), static_cast<unsigned>(e.offset), name_len,
                      name.data());
  } else {
    n = std::snprintf(out.data(), out.size(), "field %u.%u at offset %u: %.*s",
                      static_cast<unsigned>(e.field), static_cast<unsigned>(e.subfield),
                      static_cast<unsigned>(e.offset), name_len, name.data());
  }
  if (n < 0) {
    return {};
  }
  return {out.data(), std::min(static_cast<std::size_t>(n), out.size() - 1)};
}

}  // namespace authswitch::iso8583
