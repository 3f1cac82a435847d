#pragma once
// ISO 8583:1993 action codes (DE 39, n3) and network-management function codes (DE 24, n3)
// against their ISO 8583:1987 counterparts (DE 39 response codes, an2; DE 70 network
// management information codes, n3). The switch decides in 1987 codes; a peer speaking a 1993
// dialect gets the 1993 code on the wire, and what it sends back is read into the 1987 code.
// This is the one table of that mapping (the switch, netsim and the tests use it).
//
// Sources, checked against each other: ISO 8583:1993 section 4.4, DE 39 action code table as
// reproduced in SAP's POS documentation ("Action Codes ... taken from the ISO8583-1993
// specification", help.sap.com/saphelp_pos22, 100-199 "used in 1110, 1120, 1121, 1140 and
// 1210, 1220, 1221, 1240 messages"), and First Data's ISO 8583:1993 response table in
// activemerchant (000 approved, 002 approved for partial amount, 100-129 declines, 200-210
// pick-ups, 400 accepted (for reversal), 800 accepted (for network management), 902-923).
// Function codes: 801 sign-on, 802 sign-off, 811 key change, 821 cutover, 831 echo test.
//
// Which code means "accepted" depends on the message class (MTI digit 2): 000 for
// authorizations, financials and their advices (x1xx, x2xx), 400 for reversals (x4xx), 800 for
// network management (x8xx). A 1987 code the table does not know goes out as 100 (do not
// honour): a decline stays a decline.
//
// Everything here is constexpr over fixed tables: no allocation, no exception, no lock, so it
// runs per message.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "iso8583/spec.h"

namespace authswitch::iso8583 {

// Whether `d` carries ISO 8583:1993 action codes: DE 39 is a 3-character field.
[[nodiscard]] inline bool uses_action_codes(const Dialect& d) noexcept {
  return d.field(39).defined && d.field(39).max_units == 3;
}

namespace action_codes_internal {

struct CodePair {
  std::string_view iso87;  // DE 39, 1987
  std::string_view iso93;  // DE 39, 1993
};

// 1987 response code -> 1993 action code; "00" is the class's "accepted" (below). Each 1993
// code appears once, so the table reads back unambiguously.
inline constexpr std::array<CodePair, 35> kCodes = {{
    {"01", "107"},  // refer to card issuer
    {"03", "109"},  // invalid merchant
    {"04", "200"},  // pick up (do not honour)
    {"05", "100"},  // do not honour
    {"07", "207"},  // pick up, special conditions
    {"08", "001"},  // honour with identification
    {"10", "002"},  // approved for partial amount
    {"11", "003"},  // approved (VIP)
    {"12", "902"},  // invalid transaction
    {"13", "110"},  // invalid amount
    {"14", "111"},  // invalid card number
    {"30", "904"},  // format error
    {"33", "201"},  // expired card, pick up
    {"34", "202"},  // suspected fraud, pick up
    {"38", "206"},  // allowable PIN tries exceeded, pick up
    {"40", "115"},  // requested function not supported
    {"41", "208"},  // lost card, pick up
    {"43", "209"},  // stolen card, pick up
    {"51", "116"},  // not sufficient funds
    {"54", "101"},  // expired card
    {"55", "117"},  // incorrect PIN
    {"56", "118"},  // no card record
    {"57", "119"},  // transaction not permitted to cardholder
    {"58", "120"},  // transaction not permitted to terminal
    {"59", "102"},  // suspected fraud
    {"61", "121"},  // exceeds withdrawal amount limit
    {"62", "104"},  // restricted card
    {"63", "122"},  // security violation
    {"65", "123"},  // exceeds withdrawal frequency limit
    {"75", "106"},  // allowable PIN tries exceeded
    {"90", "906"},  // cutover in process
    {"91", "907"},  // card issuer or switch inoperative
    {"92", "908"},  // transaction destination cannot be found for routing
    {"94", "913"},  // duplicate transmission
    {"96", "909"},  // system malfunction
}};

// Every code of either side appears once (the mapping reads back), and none is "00" or an
// "accepted" code, which depend on the message class.
[[nodiscard]] constexpr bool codes_are_unique() noexcept {
  for (std::size_t i = 0; i < kCodes.size(); ++i) {
    if (kCodes[i].iso87.size() != 2 || kCodes[i].iso93.size() != 3 || kCodes[i].iso87 == "00" ||
        kCodes[i].iso93 == "000" || kCodes[i].iso93 == "400" || kCodes[i].iso93 == "800") {
      return false;
    }
    for (std::size_t j = i + 1; j < kCodes.size(); ++j) {
      if (kCodes[i].iso87 == kCodes[j].iso87 || kCodes[i].iso93 == kCodes[j].iso93) {
        return false;
      }
    }
  }
  return true;
}
static_assert(codes_are_unique());

struct FunctionPair {
  std::string_view iso87;  // DE 70 (1987 network management information code)
  std::string_view iso93;  // DE 24 (1993 function code)
};

inline constexpr std::array<FunctionPair, 5> kFunctions = {{
    {"001", "801"},  // sign-on
    {"002", "802"},  // sign-off
    {"161", "811"},  // key change
    {"201", "821"},  // cutover
    {"301", "831"},  // echo test
}};

}  // namespace action_codes_internal

// The 1993 action code that says "accepted" for a message of this MTI's class.
[[nodiscard]] constexpr std::string_view accepted_action_code(std::uint16_t mti) noexcept {
  switch (mti / 100 % 10) {
    case 4:
      return "400";
    case 8:
      return "800";
    default:
      return "000";
  }
}

// The 1993 action code for 1987 response code `code` in a response of `mti`'s class.
[[nodiscard]] constexpr std::string_view action_code_of(std::string_view code,
                                                        std::uint16_t mti) noexcept {
  if (code == "00") {
    return accepted_action_code(mti);
  }
  for (const auto& p : action_codes_internal::kCodes) {
    if (p.iso87 == code) {
      return p.iso93;
    }
  }
  return "100";
}

// The 1987 response code for 1993 action code `action` received in a message of `mti`'s class:
// "00" only for that class's "accepted" (a 000 in an 1814 is not an acceptance); empty when the
// action code has no 1987 counterpart here.
[[nodiscard]] constexpr std::string_view response_code_of_action(std::string_view action,
                                                                 std::uint16_t mti) noexcept {
  if (action == accepted_action_code(mti)) {
    return "00";
  }
  for (const auto& p : action_codes_internal::kCodes) {
    if (p.iso93 == action) {
      return p.iso87;
    }
  }
  return {};
}

// DE 24 function code for a 1987 DE 70 network management code ("001" -> "801"), and back;
// empty when there is none.
[[nodiscard]] constexpr std::string_view function_code_of(std::string_view de70) noexcept {
  for (const auto& p : action_codes_internal::kFunctions) {
    if (p.iso87 == de70) {
      return p.iso93;
    }
  }
  return {};
}
[[nodiscard]] constexpr std::string_view network_code_of_function(std::string_view de24) noexcept {
  for (const auto& p : action_codes_internal::kFunctions) {
    if (p.iso93 == de24) {
      return p.iso87;
    }
  }
  return {};
}

}  // namespace authswitch::iso8583
