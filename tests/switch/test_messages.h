#pragma once
// Test messages and test data for the switch's tests (processor_test.cc, server_test.cc,
// network_test.cc, reconciler_test.cc): one request's fields, encoded with MessageBuilder in
// iso87-ascii, and the Redis records of test accounts, cards and the default profile (as
// authswitch-admin would write them).
// Thread-safety: functions only; the Redis connection belongs to the caller's thread.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include "iso8583/dialect_loader.h"
#include "iso8583/message.h"
#include "limits/layout.h"
#include "limits/pan_token.h"
#include "tests/support/redis_server.h"

namespace authswitch::switching {

inline constexpr const char* kKeyHex =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
// Test card numbers (not real cards).
inline constexpr const char* kPanRich = "4761739001010119";    // account R: 1000.00
inline constexpr const char* kPanPoor = "4761739001010127";    // account P: 50.00
inline constexpr const char* kPanStolen = "4761739001010135";  // account R, stolen
inline constexpr const char* kPanUnknown = "4761739001010143";
inline constexpr const char* kAcquirer = "00012345678";  // zero-filled on purpose: keys strip zeros
inline constexpr const char* kAcquirerKey = "12345678";

inline const char* const kRules = R"(
version = "t1"
[lists]
gambling = ["7800..7802", 7995, 9406]
[[rule]]
id = "gambling"
when = "mcc in @gambling"
action = "decline"
code = "57"
)";

// One request's fields (text as MessageBuilder takes it); empty: absent.
struct Txn {
  std::uint16_t mti = 100;
  std::string pan = kPanRich;
  std::string de3 = "000000";
  std::string amount = "000000012500";
  std::string de7 = "1124153000";
  std::string stan = "000001";
  std::string acquirer = kAcquirer;
  std::string mcc = "5411";
  std::string expiry = "2812";
  std::string currency = "840";
  std::string de90;
  std::string de95;
  std::string de70;
  std::string de43 = "ACME STORE 42          SPRINGFIELD    US";

  [[nodiscard]] std::string key() const {
    return std::string(kAcquirerKey) + "-" + de7 + "-" + stan;
  }
  // DE 90 naming this request as the original.
  [[nodiscard]] std::string original_data() const {
    return "0100" + stan + de7 + acquirer + "00000000000";
  }
};

// An 0800 network-management request: DE 70 `de70` (001 sign-on, 002 sign-off, 301 echo).
inline Txn network_message(const std::string& de70, const std::string& stan) {
  Txn t;
  t.mti = 800;
  t.pan.clear();
  t.de3.clear();
  t.amount.clear();
  t.mcc.clear();
  t.expiry.clear();
  t.currency.clear();
  t.de70 = de70;
  t.stan = stan;
  return t;
}

// What `b` holds, encoded; a failure is a test failure (and an empty result).
inline std::vector<std::byte> encode_built(const iso8583::MessageBuilder& b) {
  std::vector<std::byte> out(4096);
  const auto n = b.encode(out);
  if (!n) {
    std::array<char, 128> why{};
    ADD_FAILURE() << "encode: " << iso8583::describe(n.error(), why);
  }
  out.resize(n.has_value() ? *n : 0);
  return out;
}

inline std::vector<std::byte> encode(const Txn& t) {
  const iso8583::Dialect& d = iso8583::builtin_dialect("iso87-ascii");
  iso8583::MessageBuilder b(d);
  b.reset(t.mti);
  const auto set = [&](int de, const std::string& v) {
    if (!v.empty()) {
      b.set_text(de, v);
    }
  };
  set(2, t.pan);
  set(3, t.de3);
  set(4, t.amount);
  set(7, t.de7);
  set(11, t.stan);
  set(14, t.expiry);
  set(18, t.mcc);
  if (t.mti != 800) {
    b.set_text(22, "051");  // literals: set() would reference a temporary
    b.set_text(25, "00");
  }
  set(32, t.acquirer);
  b.set_text(37, "123456789012");
  if (t.mti != 800) {
    b.set_text(41, "TERM0001");
    b.set_text(42, "MERCHANT0000001");
    set(43, t.de43);
  }
  set(49, t.currency);
  set(70, t.de70);
  set(90, t.de90);
  set(95, t.de95);
  return encode_built(b);
}

// The default limit profile with high limits.
inline void seed_profile(redisContext& redis) {
  std::vector<std::string> args = {"HSET", "as:p:default"};
  for (const std::string_view ch : limits::kChannelNames) {
    for (const std::string_view f : limits::kLimitFields) {
      args.push_back(std::string(ch) + "." + std::string(f));
      args.push_back(f == "dN" || f == "mN" ? "1000" : "100000000");
    }
  }
  ASSERT_EQ(support::redis_command(redis, args)->type, REDIS_REPLY_INTEGER);
  (void)support::redis_command(redis, {"SADD", limits::kProfilesKey, "default"});
}

inline void seed_account(redisContext& redis, const std::string& id, std::int64_t bal) {
  (void)support::redis_command(
      redis, {"HSET", "as:{a:" + id + "}", "cur", "840", "bal", std::to_string(bal), "held", "0",
              "st", "active", "od", "0"});
}

inline void seed_card(redisContext& redis, limits::CardDataCrypto& crypto, const char* pan,
                      const std::string& account, const std::string& status) {
  const auto token = crypto.tokenize(pan);
  ASSERT_TRUE(token.has_value());
  const std::string tok(token->view());
  (void)support::redis_command(redis,
                               {"HSET", "as:{c:" + tok + "}", "acct", account, "prof", "default"});
  (void)support::redis_command(
      redis, {"HSET", "as:{a:" + account + "}:c:" + tok, "st", status, "exp", "2812"});
}

}  // namespace authswitch::switching
