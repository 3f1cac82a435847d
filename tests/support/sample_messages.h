#pragma once
// The typical authorization request used by the codec's allocation test and its benchmarks:
// about 20 fields, a 39-byte BER-TLV DE 55, in any shipped dialect (ISO 8583:1993 gets DE 12
// n12, DE 22 an12 and DE 24 instead of DE 25). Values are test data.
// Thread-safety: functions only; the builder belongs to the caller's thread.

#include <array>
#include <cstdint>
#include <span>

#include "iso8583/message.h"

namespace authswitch::support {

// DE 55: amount authorised (9F02), application cryptogram (9F26), AIP (82), ATC (9F36) and an
// issuer application data template 70 holding 9F10 (6 objects counting the template).
inline constexpr std::array<std::uint8_t, 39> kSampleIccData = {
    0x9F, 0x02, 0x06, 0x00, 0x00, 0x00, 0x01, 0x25, 0x00, 0x9F, 0x26, 0x08, 0x86,
    0xBA, 0x74, 0x8B, 0xCA, 0xDA, 0x61, 0x04, 0x82, 0x02, 0x18, 0x00, 0x9F, 0x36,
    0x02, 0x00, 0x42, 0x70, 0x07, 0x9F, 0x10, 0x04, 0x06, 0x01, 0x0A, 0x03};
inline constexpr std::size_t kSampleIccObjects = 6;

// Fills `b` with the request (0100, or 1100 for ISO 8583:1993): the per-message work a switch
// does when it builds a message from its own data.
inline void fill_sample_request(iso8583::MessageBuilder& b, bool iso93) noexcept {
  b.reset(iso93 ? 1100 : 100);
  b.set_text(2, "4761739001010119");
  b.set_text(3, "000000");
  b.set_text(4, "000000012500");
  b.set_text(7, "0612153045");
  b.set_text(11, "123456");
  if (iso93) {
    b.set_text(12, "240612153045");  // ISO 8583:1993 DE 12 n12, YYMMDDhhmmss
    b.set_text(13, "2401");          // DE 13 date, effective
    b.set_text(22, "510101511001");  // DE 22 an12, point of service data code
    b.set_text(24, "100");           // DE 24 function code: original authorisation
  } else {
    b.set_text(12, "153045");
    b.set_text(13, "0612");
    b.set_text(22, "051");
    b.set_text(25, "00");
  }
  b.set_text(14, "2712");
  b.set_text(18, "5411");
  b.set_text(19, "840");
  b.set_text(32, "12345678901");
  b.set_text(35, "4761739001010119=27122011234500000");
  b.set_text(37, "123456789012");
  b.set_text(41, "TERM0001");
  b.set_text(42, "MERCHANT0000001");
  b.set_text(43, "ACME STORE 42          SPRINGFIELD    US");
  b.set_text(49, "840");
  b.set_bytes(55, std::as_bytes(std::span(kSampleIccData)));
}

}  // namespace authswitch::support
