#include "iso8583/framing.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "base/assert.h"
#include "iso8583/error.h"
#include "iso8583/message.h"

namespace authswitch::iso8583 {
namespace {

// Indexed by LengthHeader.
constexpr std::array<std::string_view, kLengthHeaderKinds> kNames = {
    "none", "len2-binary", "len2-bcd", "len4-ascii", "len4-binary"};
static_assert(static_cast<std::size_t>(LengthHeader::kLen4Binary) + 1 == kLengthHeaderKinds);

constexpr std::string_view kHeaderOption = "header=";
constexpr std::string_view kMaxOption = "max=";
// Longer numbers are rejected before they can overflow: every bound fits in 7 digits.
constexpr std::size_t kOptionDigitsMax = 7;

// Largest value each length prefix can carry.
constexpr std::uint64_t prefix_value_max(LengthHeader length) noexcept {
  switch (length) {
    case LengthHeader::kNone:
      return UINT64_MAX;
    case LengthHeader::kLen2Binary:
      return UINT16_MAX;
    case LengthHeader::kLen2Bcd:
    case LengthHeader::kLen4Ascii:
      return 9999;
    case LengthHeader::kLen4Binary:
      return UINT32_MAX;
  }
  return 0;
}

constexpr unsigned byte_value(std::byte b) noexcept { return std::to_integer<unsigned>(b); }

// Reads the value of a length prefix. Offsets in errors count from the start of the frame.
// REQUIRES: prefix.size() == length_header_bytes(length), length != kNone.
Result<std::uint64_t> read_prefix(LengthHeader length, std::span<const std::byte> prefix) noexcept {
  AS_ASSERT(length != LengthHeader::kNone);
  AS_ASSERT(prefix.size() == length_header_bytes(length));
  std::uint64_t value = 0;
  switch (length) {
    case LengthHeader::kLen2Binary:
    case LengthHeader::kLen4Binary:
      for (const std::byte b : prefix) {
        value = (value << 8U) | byte_value(b);
      }
      return value;
    case LengthHeader::kLen2Bcd:
      for (std::size_t i = 0; i < prefix.size(); ++i) {
        const std::uint64_t high = byte_value(prefix[i]) >> 4U;
        const std::uint64_t low = byte_value(prefix[i]) & 0x0FU;
        if (high > 9 || low > 9) {
          return fail(Errc::kBadFrameHeader, 0, i);
        }
        value = value * 100 + high * 10 + low;
      }
      return value;
    case LengthHeader::kLen4Ascii:
      for (std::size_t i = 0; i < prefix.size(); ++i) {
        const unsigned c = byte_value(prefix[i]);
        if (c < '0' || c > '9') {
          return fail(Errc::kBadFrameHeader, 0, i);
        }
        value = value * 10 + (c - '0');
      }
      return value;
    case LengthHeader::kNone:
      break;
  }
  return fail(Errc::kBadFrameHeader, 0, 0);
}

// Writes `value` as a length prefix. REQUIRES: value <= prefix_value_max(length) and
// out.size() == length_header_bytes(length).
void write_prefix(LengthHeader length, std::uint64_t value, std::span<std::byte> out) noexcept {
  AS_ASSERT(value <= prefix_value_max(length));
  AS_ASSERT(out.size() == length_header_bytes(length));
  switch (length) {
    case LengthHeader::kLen2Binary:
    case LengthHeader::kLen4Binary:
      for (std::size_t i = out.size(); i-- > 0;) {
        out[i] = static_cast<std::byte>(value & 0xFFU);
        value >>= 8U;
      }
      return;
    case LengthHeader::kLen2Bcd:
      for (std::size_t i = out.size(); i-- > 0;) {
        const auto low = static_cast<unsigned>(value % 10);
        const auto high = static_cast<unsigned>((value / 10) % 10);
        out[i] = static_cast<std::byte>((high << 4U) | low);
        value /= 100;
      }
      return;
    case LengthHeader::kLen4Ascii:
      for (std::size_t i = out.size(); i-- > 0;) {
        out[i] = static_cast<std::byte>('0' + static_cast<unsigned>(value % 10));
        value /= 10;
      }
      return;
    case LengthHeader::kNone:
      return;
  }
}

// Parses the decimal number of a `+key=N` option. `offset` is where `digits` starts in the
// framing text, for the error.
Result<std::uint32_t> parse_option_value(std::string_view digits, std::uint32_t min,
                                         std::uint32_t max, std::size_t offset) noexcept {
  if (digits.empty() || digits.size() > kOptionDigitsMax) {
    return fail(Errc::kBadFrameHeader, 0, offset);
  }
  std::uint32_t value = 0;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    const char c = digits[i];
    if (c < '0' || c > '9') {
      return fail(Errc::kBadFrameHeader, 0, offset + i);
    }
    value = value * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (value < min || value > max) {
    return fail(Errc::kBadFrameHeader, 0, offset);
  }
  return value;
}

FrameResult need_more() noexcept { return FrameResult{}; }

FrameResult malformed(const Error& error) noexcept {
  FrameResult r;
  r.status = FrameStatus::kMalformed;
  r.error = error;
  return r;
}

FrameResult malformed(Errc code, std::size_t offset) noexcept {
  return malformed(fail(code, 0, offset).error);
}

// A complete frame: `prefix_bytes` of length prefix, then `body_bytes` of fixed header and
// message. REQUIRES: the frame is inside `buffered` and the body is longer than the header.
FrameResult complete(std::span<const std::byte> buffered, std::size_t prefix_bytes,
                     std::size_t header_bytes, std::size_t body_bytes) noexcept {
  AS_ASSERT(body_bytes > header_bytes);
  AS_ASSERT(prefix_bytes + body_bytes <= buffered.size());
  FrameResult r;
  r.status = FrameStatus::kComplete;
  r.consumed = prefix_bytes + body_bytes;
  r.header = buffered.subspan(prefix_bytes, header_bytes);
  r.message = buffered.subspan(prefix_bytes + header_bytes, body_bytes - header_bytes);
  return r;
}

}  // namespace

Result<Framing> parse_framing(std::string_view text) noexcept {
  const std::size_t name_end = std::min(text.find('+'), text.size());
  const std::string_view name = text.substr(0, name_end);
  const auto it = std::find(kNames.begin(), kNames.end(), name);
  if (it == kNames.end()) {
    return fail(Errc::kBadFrameHeader, 0, 0);
  }
  Framing framing;
  framing.length = static_cast<LengthHeader>(it - kNames.begin());

  bool seen_header = false;
  bool seen_max = false;
  std::size_t header_offset = 0;
  for (std::size_t pos = name_end; pos < text.size();) {
    // text[pos] is the '+' that starts an option; the option runs to the next '+'.
    const std::size_t begin = pos + 1;
    const std::size_t end = std::min(text.find('+', begin), text.size());
    const std::string_view option = text.substr(begin, end - begin);
    if (option.starts_with(kHeaderOption) && !seen_header) {
      const std::size_t at = begin + kHeaderOption.size();
      const auto n =
          parse_option_value(option.substr(kHeaderOption.size()), 0, kFrameHeaderBytesMax, at);
      if (!n) {
        return base::unexpected(n.error());
      }
      framing.header_bytes = static_cast<std::uint16_t>(*n);
      seen_header = true;
      header_offset = at;
    } else if (option.starts_with(kMaxOption) && !seen_max) {
      const std::size_t at = begin + kMaxOption.size();
      const auto n =
          parse_option_value(option.substr(kMaxOption.size()), 1, kMaxFrameBytesLimit, at);
      if (!n) {
        return base::unexpected(n.error());
      }
      framing.max_frame_bytes = *n;
      seen_max = true;
    } else {
      // Unknown, empty or repeated option.
      return fail(Errc::kBadFrameHeader, 0, begin);
    }
    pos = end;
  }
  // A frame must have room for a message after its fixed header.
  if (framing.header_bytes >= framing.max_frame_bytes) {
    return fail(Errc::kBadFrameHeader, 0, header_offset);
  }
  return framing;
}

std::string_view framing_name(LengthHeader length) noexcept {
  const auto i = static_cast<std::size_t>(length);
  AS_ASSERT(i < kNames.size());
  return kNames[i];
}

std::span<const std::string_view, kLengthHeaderKinds> framing_names() noexcept { return kNames; }

FrameDecoder::FrameDecoder(const Framing& framing, const Dialect* dialect) noexcept
    : framing_(framing), dialect_(dialect) {
  AS_ASSERT(framing.header_bytes < framing.max_frame_bytes);
  AS_ASSERT(framing.length != LengthHeader::kNone || dialect != nullptr);
}

FrameResult FrameDecoder::decode_prefixed(std::span<const std::byte> buffered) const noexcept {
  const std::size_t prefix_bytes = length_header_bytes(framing_.length);
  if (buffered.size() < prefix_bytes) {
    return need_more();
  }
  const auto value = read_prefix(framing_.length, buffered.first(prefix_bytes));
  if (!value) {
    return malformed(value.error());
  }
  std::uint64_t body_bytes = *value;
  if (framing_.length_includes_self && body_bytes != 0) {
    // A self-inclusive prefix is never smaller than itself. A bare 0 is still accepted as
    // a keep-alive: some peers send one whatever their length convention.
    if (body_bytes < prefix_bytes) {
      return malformed(Errc::kBadFrameHeader, 0);
    }
    body_bytes -= prefix_bytes;
  }
  if (body_bytes == 0) {
    FrameResult r;
    r.status = FrameStatus::kKeepAlive;
    r.consumed = prefix_bytes;
    return r;
  }
  // Both checks come before waiting for the body, so a hostile length costs no buffering.
  if (body_bytes > framing_.max_frame_bytes) {
    return malformed(Errc::kFrameTooLarge, 0);
  }
  // The length must cover the fixed header and at least one byte of message.
  if (body_bytes <= framing_.header_bytes) {
    return malformed(Errc::kBadFrameHeader, 0);
  }
  const auto body = static_cast<std::size_t>(body_bytes);
  if (buffered.size() - prefix_bytes < body) {
    return need_more();
  }
  return complete(buffered, prefix_bytes, framing_.header_bytes, body);
}

FrameResult FrameDecoder::decode_unframed(std::span<const std::byte> buffered) const noexcept {
  AS_DASSERT(dialect_ != nullptr);
  const std::size_t header_bytes = framing_.header_bytes;
  // header_bytes < max_frame_bytes (constructor), so waiting for the header is bounded.
  if (buffered.size() < header_bytes) {
    return need_more();
  }
  const auto measured = measure(*dialect_, buffered.subspan(header_bytes));
  if (!measured) {
    if (measured.error().code != Errc::kTruncated) {
      return malformed(measured.error());
    }
    // The message is still incomplete with a full frame's worth buffered: it can only be
    // larger than allowed. Stop here rather than let the peer fill the buffer.
    if (buffered.size() >= framing_.max_frame_bytes) {
      return malformed(Errc::kFrameTooLarge, 0);
    }
    return need_more();
  }
  const std::size_t message_bytes = *measured;
  // measure()'s contract, not the peer's bytes: a zero length would make the caller spin.
  AS_ASSERT(message_bytes > 0);
  AS_ASSERT(message_bytes <= buffered.size() - header_bytes);
  if (header_bytes + message_bytes > framing_.max_frame_bytes) {
    return malformed(Errc::kFrameTooLarge, 0);
  }
  return complete(buffered, 0, header_bytes, header_bytes + message_bytes);
}

Result<std::size_t> write_frame_header(const Framing& framing,
                                       std::size_t header_plus_message_bytes,
                                       std::span<std::byte> out) noexcept {
  AS_ASSERT(header_plus_message_bytes == 0 || header_plus_message_bytes > framing.header_bytes);
  AS_ASSERT(header_plus_message_bytes != 0 || framing.length != LengthHeader::kNone);
  if (header_plus_message_bytes > framing.max_frame_bytes) {
    return fail(Errc::kFrameTooLarge, 0, 0);
  }
  const std::size_t prefix_bytes = length_header_bytes(framing.length);
  std::uint64_t value = header_plus_message_bytes;
  if (framing.length_includes_self) {
    value += prefix_bytes;
  }
  if (value > prefix_value_max(framing.length)) {
    return fail(Errc::kFrameTooLarge, 0, 0);
  }
  if (out.size() < prefix_bytes) {
    return fail(Errc::kBufferTooSmall, 0, 0);
  }
  write_prefix(framing.length, value, out.first(prefix_bytes));
  return prefix_bytes;
}

}  // namespace authswitch::iso8583
