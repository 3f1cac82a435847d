#pragma once
// TCP framing of ISO 8583 messages: the length prefix (and optional fixed header such as a
// 5-byte TPDU) that delimits messages on a byte stream, and the incremental decoder that cuts
// frames out of a connection's receive buffer.
//
// A frame on the wire is
//   [length prefix: length_header_bytes(length)] [fixed header: header_bytes] [message]
// and the prefix's value counts the fixed header plus the message ("the body"), plus the
// prefix itself when `length_includes_self` is set. A body of zero bytes is a keep-alive.
//
// FrameDecoder holds no state between calls: the caller owns the receive buffer, calls
// decode() on everything buffered so far, drops `consumed` bytes after each complete frame or
// keep-alive, and reads more on kNeedMore (like Asio's request_parser, but restartable from
// the buffer alone). The header and message spans of a result are views into that buffer.
// Nothing here allocates or throws.
//
// Thread-safety: Framing, FrameDecoder and FrameResult are values; decode() is const and may
// be called from any thread. The Dialect a decoder points to is shared read-only.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "iso8583/error.h"

namespace authswitch::iso8583 {

class Dialect;

// How the length of a frame is carried in front of it.
enum class LengthHeader : std::uint8_t {
  kNone,        // no prefix: each message is measured from its own bitmap and fields
  kLen2Binary,  // 2-byte unsigned big-endian integer (0..65535)
  kLen2Bcd,     // 2 bytes of packed BCD, four decimal digits (0..9999)
  kLen4Ascii,   // 4 ASCII decimal digits (0..9999)
  kLen4Binary,  // 4-byte unsigned big-endian integer
};

inline constexpr std::size_t kLengthHeaderKinds = 5;
// Bounds accepted by parse_framing for `+header=N` and `+max=N`.
inline constexpr std::uint16_t kFrameHeaderBytesMax = 64;
inline constexpr std::uint32_t kMaxFrameBytesLimit = 1U << 20U;

// Wire size of the length prefix: 0, 2, 2, 4, 4.
[[nodiscard]] constexpr std::size_t length_header_bytes(LengthHeader length) noexcept {
  switch (length) {
    case LengthHeader::kNone:
      return 0;
    case LengthHeader::kLen2Binary:
    case LengthHeader::kLen2Bcd:
      return 2;
    case LengthHeader::kLen4Ascii:
    case LengthHeader::kLen4Binary:
      return 4;
  }
  return 0;
}

// A connection's framing, fixed at configuration time.
struct Framing {
  LengthHeader length = LengthHeader::kLen2Binary;
  // Fixed header between the length prefix and the message (e.g. a 5-byte TPDU). It is
  // counted by the length prefix and handed to the caller separately from the message.
  std::uint16_t header_bytes = 0;
  // Whether the prefix's value counts the prefix's own bytes too.
  bool length_includes_self = false;
  // Largest accepted body (fixed header + message), not counting the length prefix. A
  // receive buffer of max_buffered_bytes() always holds one whole frame.
  std::uint32_t max_frame_bytes = 8192;
};

// Receive buffer size that holds the largest frame, length prefix included.
[[nodiscard]] constexpr std::size_t max_buffered_bytes(const Framing& framing) noexcept {
  return length_header_bytes(framing.length) + framing.max_frame_bytes;
}

// Parses a framing name as written in configuration and on the command line: one of
// framing_names(), optionally followed, in any order and at most once each, by
// `+header=N` (fixed header bytes, 0..64) and `+max=N` (max_frame_bytes, 1..1048576), e.g.
// "len2-binary+header=5" or "len4-ascii+max=4096". The header must be smaller than the
// maximum. Fails with kBadFrameHeader and `offset` at the offending character.
// Configuration time only (it is noexcept and allocation-free all the same).
[[nodiscard]] Result<Framing> parse_framing(std::string_view text) noexcept;

// "none", "len2-binary", "len2-bcd", "len4-ascii" or "len4-binary". Static storage.
[[nodiscard]] std::string_view framing_name(LengthHeader length) noexcept;

// Every framing name, in LengthHeader order, for CLI help and validation messages.
[[nodiscard]] std::span<const std::string_view, kLengthHeaderKinds> framing_names() noexcept;

enum class FrameStatus : std::uint8_t {
  kComplete,   // one frame is whole: header and message are set
  kKeepAlive,  // a zero-length frame: drop `consumed` bytes, nothing to process
  kNeedMore,   // the prefix or the body is incomplete: read more (consumed is 0)
  kMalformed,  // the stream is bad from here on (see error): close the connection
};

// The outcome of one decode() call. The spans point into the caller's buffer.
struct [[nodiscard]] FrameResult {
  FrameStatus status = FrameStatus::kNeedMore;
  std::size_t consumed = 0;            // bytes of the buffer this frame used, prefix included
  std::span<const std::byte> header;   // the fixed header (header_bytes long), kComplete only
  std::span<const std::byte> message;  // the unframed message, kComplete only
  // kMalformed only. Framing errors have field 0 and an offset from the start of the frame;
  // with kNone, measure()'s errors pass through (offset from the start of the message).
  Error error;
};

// Cuts frames out of a receive buffer. See the file comment for the calling pattern.
// A value type (a Framing and a non-owning Dialect pointer), so copying is allowed.
class FrameDecoder {
 public:
  // REQUIRES: framing.header_bytes < framing.max_frame_bytes, framing.max_frame_bytes > 0.
  // REQUIRES: dialect != nullptr when framing.length is kNone; it must outlive the decoder.
  explicit FrameDecoder(const Framing& framing, const Dialect* dialect = nullptr) noexcept;

  // Looks at the bytes buffered so far (starting at a frame boundary) and reports whether
  // they start with a whole frame. Never reads past `buffered`; needs no more than
  // max_buffered_bytes(framing()) bytes to reach a verdict other than kNeedMore. An
  // oversized declared length is rejected as soon as the prefix has arrived, before any
  // of the body is buffered.
  [[nodiscard]] FrameResult decode(std::span<const std::byte> buffered) const noexcept;

  [[nodiscard]] const Framing& framing() const noexcept { return framing_; }

 private:
  [[nodiscard]] FrameResult decode_prefixed(std::span<const std::byte> buffered) const noexcept;
  [[nodiscard]] FrameResult decode_unframed(std::span<const std::byte> buffered) const noexcept;

  Framing framing_;
  const Dialect* dialect_;  // used only for LengthHeader::kNone
};

// Writes the length prefix for a body of `header_plus_message_bytes` (fixed header plus
// message; 0 writes a keep-alive) into the front of `out` and returns the bytes written
// (length_header_bytes(framing.length); 0 for kNone). Fails with kFrameTooLarge when the body
// exceeds framing.max_frame_bytes or the prefix cannot represent it (above 65535 for
// len2-binary, 9999 for len2-bcd and len4-ascii), and kBufferTooSmall when `out` is too short.
// REQUIRES: header_plus_message_bytes is 0 or larger than framing.header_bytes (0 only
// when framing.length is not kNone, which has no keep-alive).
[[nodiscard]] Result<std::size_t> write_frame_header(const Framing& framing,
                                                     std::size_t header_plus_message_bytes,
                                                     std::span<std::byte> out) noexcept;

inline FrameResult FrameDecoder::decode(std::span<const std::byte> buffered) const noexcept {
  if (framing_.length == LengthHeader::kNone) {
    return decode_unframed(buffered);
  }
  return decode_prefixed(buffered);
}

}  // namespace authswitch::iso8583
