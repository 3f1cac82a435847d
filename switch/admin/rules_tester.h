#pragma once
// `authswitch-admin rules test FILE.toml`: runs a rule set (risk/rules.h) over a file of
// authorizations so a rule change can be checked before it goes live, printing each decision
// with its reasons.
//
// Input: JSON lines, each an authorization as the iso8583 CLI prints a decoded message
// ({"mti": "0100", "fields": {"3": "000000", "4": "000000012500", ...}}), plus optional
//   "card": {"status": "active", "expiry": "2812"}   the card record (default: active, no expiry)
//   "time": "2026-11-24T15:30:00Z"                    the issuer's clock (default: now, UTC)
//   "id": "any text"                                  echoed in the output
// PAN fields (2, 35) are ignored and never printed. Velocity rules ([[velocity]]) run inside
// the holds script in Redis, with the card's history: they are listed, not evaluated, here.
//
// Thread-safety: none; one call per thread.

#include <cstdint>
#include <iosfwd>
#include <string>

#include "risk/rules.h"

namespace authswitch::admin {

struct RuleTestOptions {
  std::string network;      // response-code policy (default: the default policy)
  bool json = false;        // one JSON object per line instead of text
  std::int64_t now_ms = 0;  // clock for lines without "time"
};

// Evaluates every line of `in`; writes one result per line to `out`. A line that cannot be
// read is reported on `err` (with its number) and skipped. Returns 0 when every line was read,
// 2 otherwise.
int test_rules(const risk::RuleSet& set, std::istream& in, const RuleTestOptions& options,
               std::ostream& out, std::ostream& err);

}  // namespace authswitch::admin
