#pragma once
// The holds script's typical authorization for tests and benchmarks: a purchase at a grocery
// (POS, MCC 5411, USD) on 2023-11-14, a 7-day hold, no partial approval, with the caller's
// limits. Views: `txn` must outlive the call built from the request.
// Thread-safety: a pure function.

#include <cstdint>
#include <string_view>

#include "limits/holds_script.h"

namespace authswitch::support {

[[nodiscard]] inline limits::AuthRequest sample_auth(std::string_view txn,
                                                     std::int64_t amount_minor,
                                                     const limits::ChannelLimits& limits) noexcept {
  limits::AuthRequest r;
  r.txn_key = txn;
  r.amount_minor = amount_minor;
  r.currency = "840";
  r.channel = "pos";
  r.mcc = "5411";
  r.presented_expiry = "";
  r.day = "20231114";
  r.month = "202311";
  r.current_yymm = "2311";
  r.partial_ok = false;
  r.hold_ttl_ms = 604'800'000;
  r.limits = limits;
  return r;
}

}  // namespace authswitch::support
