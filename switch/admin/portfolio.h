#pragma once
// The operator's input files for authswitch-admin, parsed and validated without Redis:
//   profiles CSV  profile,channel,per_transaction_max,day_amount_max,day_count_max,
//                 month_amount_max,month_count_max  (one row per profile and channel)
//   cards CSV     pan,expiry,account,currency,balance,status,profile  (one row per card)
// Columns are found by name in the header (row 1), in any order, each exactly once. Fields are
// separated by ',', lines by "\n" or "\r\n"; quoting is not supported; empty lines are skipped.
//
// Errors are values (InputErrors): each names the row (the header is row 1) and column, and
// never holds a PAN or any part of one: a bad PAN is described by its length or the position of
// its first non-digit. Values of other columns are echoed only when they cannot be a PAN (see
// printable()), so a file whose columns are shifted does not leak card numbers either.
//
// Ownership: parsed files hold string_views into the text they were parsed from, which must
// outlive them. Thread-safety: values; tokenize_cards() uses its own threads internally.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "limits/layout.h"
#include "limits/pan_token.h"

namespace authswitch::admin {

// The config files embedded at build time (config/profiles.csv), by file stem.
struct EmbeddedConfig {
  std::string_view name;
  std::string_view text;
};
std::span<const EmbeddedConfig> embedded_config_files() noexcept;
// The shipped config/profiles.csv.
[[nodiscard]] std::string_view shipped_profiles_csv() noexcept;

using limits::kCardStatuses;  // the card state `st` values (limits/layout.h)
// Balances stay below 2^53: the holds script does its arithmetic in Lua doubles.
inline constexpr std::int64_t kBalanceMax = (std::int64_t{1} << 53) - 1;

// One error of an input file. row 0: the file as a whole; column empty: the row as a whole.
struct InputError {
  std::size_t row = 0;
  std::string column;
  std::string message;
};

// Collects errors, keeping the kKept with the lowest row numbers (in order of rows, then of
// arrival) and counting all of them.
class InputErrors {
 public:
  static constexpr std::size_t kKept = 20;

  void add(std::size_t row, std::string_view column, std::string message);
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  [[nodiscard]] std::size_t count() const noexcept { return count_; }
  // The kept errors, sorted by row.
  [[nodiscard]] std::vector<InputError> kept() const;
  // "FILE: row 12, column expiry: month 13 is not 01-12" for each kept error, then
  // "... N more" when some were not kept.
  [[nodiscard]] std::vector<std::string> lines(std::string_view file_name) const;

 private:
  void trim();

  struct Entry {
    InputError error;
    std::size_t seq = 0;
  };
  std::vector<Entry> entries_;
  std::size_t count_ = 0;
};

// Why `pan` is not a PAN ("11 characters, a PAN has 12 to 19 digits"), or empty when it is one.
// The text holds no character of `pan`.
[[nodiscard]] std::string pan_problem(std::string_view pan);

// `value` in quotes when it may be shown, else a description that holds none of its characters
// (a run of 12 or more digits may be a PAN; long values are cut).
[[nodiscard]] std::string printable(std::string_view value);

struct ProfileRow {
  std::string_view name;
  limits::LimitProfile limits;
};

struct ProfilesFile {
  std::vector<ProfileRow> profiles;  // in order of first appearance
  InputErrors errors;
};

// Parses a profiles CSV: names valid_name(.., kProfileNameMax), each profile with each channel
// exactly once, every limit a decimal integer 0..kBalanceMax.
[[nodiscard]] ProfilesFile parse_profiles(std::string_view text);

// One card of a cards file. The PAN itself is not kept once tokenize_cards() ran.
struct CardRow {
  std::string_view pan;  // into the file's text; cleared by tokenize_cards()
  limits::PanToken token;
  std::array<char, 4> expiry{};  // YYMM
  std::uint32_t row = 0;         // line number in the file (header = 1)
  std::uint32_t account = 0;     // index into CardsFile::accounts
  std::uint32_t profile = 0;     // index into CardsFile::profiles
  std::uint32_t next_in_account = kNone;
  std::uint8_t status = 0;  // index into kCardStatuses

  static constexpr std::uint32_t kNone = 0xFFFF'FFFF;
  [[nodiscard]] std::string_view expiry_view() const noexcept { return {expiry.data(), 4}; }
};

// One account of a cards file, with what its rows said about it (they must agree).
struct AccountRow {
  std::string_view id;
  std::array<char, 3> currency{};
  std::int64_t balance_minor = 0;
  std::uint32_t first_row = 0;  // line number of the first row that names it
  std::uint32_t first_card = CardRow::kNone;
  std::uint32_t last_card = CardRow::kNone;
  std::uint32_t cards = 0;

  [[nodiscard]] std::string_view currency_view() const noexcept { return {currency.data(), 3}; }
};

struct CardsFile {
  std::vector<CardRow> cards;              // valid rows only, in file order
  std::vector<AccountRow> accounts;        // in order of first appearance
  std::vector<std::string_view> profiles;  // distinct profile names ("" in a row: default)
  InputErrors errors;
};

// Parses and checks a cards CSV on its own (no Redis): each field, one currency and one balance
// per account. Duplicate PANs are found by tokenize_cards(), which needs the key.
[[nodiscard]] CardsFile parse_cards(std::string_view text);

// Tokenizes every card's PAN with `key` on `threads` threads (0: one per core; each with its own
// SoftwareCardCrypto), clears the PAN views, and reports PANs that appear twice in the file.
void tokenize_cards(CardsFile& file, const limits::TokenKey& key, unsigned threads);

}  // namespace authswitch::admin
