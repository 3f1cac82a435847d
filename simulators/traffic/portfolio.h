#pragma once
// Test portfolios for netsim (issue 6): deterministic generation of test cards and accounts,
// the files authswitch-admin imports (profiles.csv, cards.csv) plus test-cards.csv (the one
// place the simulator keeps test PANs in clear, by design), and seeding Redis by running
// `authswitch-admin import` as a subprocess (this library links no Redis client).
//
// A Portfolio is a value: built once at start-up (generate_portfolio or load), then only read
// (TrafficGenerator keeps a pointer to it, so it must outlive the generators).
// Thread-safety: const access from any thread.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace authswitch::netsim {

struct TestCard {
  std::string pan;      // 16 digits, Luhn-valid, from a test BIN range
  std::string expiry;   // YYMM
  std::string account;  // account id, e.g. "SIM-000123"
  std::uint16_t currency = 840;
  std::int64_t balance_minor = 0;  // the account's opening balance
  std::string status;              // active|blocked|lost|stolen|closed|inactive
  std::string profile;             // limit profile name
};

struct SeedOptions {
  std::uint64_t cards = 100'000;
  std::uint32_t cards_per_account = 2;
  std::uint64_t seed = 1;  // same seed, same portfolio (deterministic)
  double blocked_share = 0.01, lost_share = 0.002, stolen_share = 0.002, expired_share = 0.01;
  std::string out_dir = "netsim-data";   // writes profiles.csv, cards.csv (admin import format)
                                         // and test-cards.csv
  std::string admin_binary;              // authswitch-admin; empty: only write the files
  std::string redis = "127.0.0.1:6379";  // passed to authswitch-admin --redis
  // Accounts with a small balance (insufficient funds, partial approvals) and accounts on the
  // tight limit profile (over-limit, velocity abuse), as shares of the accounts.
  double low_balance_share = 0.02, tight_share = 0.02;
  // The year (two digits) valid expiries count from; 0: the current UTC year. Valid cards
  // expire 2 to 6 years after it, expired ones 1 to 3 years before it.
  int expiry_base_yy = 0;
  // The PAN token key comes from the environment (AS_PAN_TOKEN_KEY_HEX), as for the switch.
};

// Channels of a limit profile, in the order of the profiles CSV rows.
enum class Channel : std::uint8_t { kPos = 0, kCnp = 1, kAtm = 2 };
inline constexpr std::size_t kChannels = 3;
[[nodiscard]] std::string_view channel_name(Channel c) noexcept;  // "pos", "cnp", "atm"

// One row of the profiles CSV: the limits of one profile on one channel (minor units, counts).
struct ChannelLimits {
  std::int64_t per_transaction_max = 0;
  std::int64_t day_amount_max = 0;
  std::int64_t day_count_max = 0;
  std::int64_t month_amount_max = 0;
  std::int64_t month_count_max = 0;
};

struct LimitProfileDef {
  std::string name;
  std::array<ChannelLimits, kChannels> channels{};  // indexed by Channel
};

struct Portfolio {
  std::vector<TestCard> cards;  // accounts are groups of consecutive cards
  // profile name -> channel ("pos","cnp","atm") -> limits, as in the profiles CSV
  std::vector<LimitProfileDef> profiles;

  // The profile of that name, or null.
  [[nodiscard]] const LimitProfileDef* profile(std::string_view name) const noexcept;

  // Reads test-cards.csv written by seed (throws std::runtime_error with file:line on errors).
  // The profiles come from profiles.csv in the same directory when it exists, else the
  // simulator's built-in profiles (the ones seed writes).
  static Portfolio load(const std::string& test_cards_csv);
};

// Balances below this are the low-balance accounts (generate_portfolio gives them 0 .. $500).
inline constexpr std::int64_t kLowBalanceMax = 100'000;
// Profile names seed writes.
inline constexpr std::string_view kProfileSim = "sim";
inline constexpr std::string_view kProfileTight = "sim-tight";

// The limit profiles seed writes (profiles.csv): "sim" (roomy, for ordinary traffic) and
// "sim-tight" (small limits, for over-limit and velocity-abuse traffic).
[[nodiscard]] std::vector<LimitProfileDef> default_profiles();

[[nodiscard]] Portfolio generate_portfolio(const SeedOptions& o);

// Writes the files and, when admin_binary is set, runs `authswitch-admin --redis R import
// profiles F` and `import cards F`; prints progress and the time taken to stdout; returns the
// process exit code (0 ok).
[[nodiscard]] int seed(const SeedOptions& o);

// Luhn check digit helpers (ISO/IEC 7812-1 annex B).
[[nodiscard]] bool luhn_valid(std::string_view digits) noexcept;
[[nodiscard]] char luhn_check_digit(std::string_view digits_without_check) noexcept;

}  // namespace authswitch::netsim
