#include "switch/admin/portfolio.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <thread>
#include <unordered_map>

#include <endian.h>

#include "base/assert.h"

namespace authswitch::admin {

// The admin tool works on the limits module's data model throughout.
using namespace authswitch::limits;  // NOLINT(google-build-using-namespace)
namespace {

constexpr std::string_view kNameRule = "1 to 32 of A-Z a-z 0-9 _ . -";
constexpr std::size_t kPrintableMax = 40;
// A value with this many digits may be a PAN (kPanDigitsMin), with or without separators.
constexpr std::size_t kHiddenDigits = kPanDigitsMin;

// Calls on_line(line_number, line) for each non-empty line ("\r\n" or "\n"); returns the
// number of non-empty lines.
template <typename OnLine>
std::size_t for_each_line(std::string_view text, OnLine on_line) {
  std::size_t number = 0;
  std::size_t lines = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    ++number;
    if (!line.empty()) {
      ++lines;
      if (!on_line(number, line)) {
        break;
      }
    }
    pos = end + 1;
  }
  return lines;
}

// Splits `line` at ','; fields beyond out.size() are counted but not stored.
std::size_t split_fields(std::string_view line, std::span<std::string_view> out) noexcept {
  std::size_t n = 0;
  std::size_t pos = 0;
  while (true) {
    const std::size_t comma = line.find(',', pos);
    const std::size_t end = comma == std::string_view::npos ? line.size() : comma;
    if (n < out.size()) {
      out[n] = line.substr(pos, end - pos);
    }
    ++n;
    if (comma == std::string_view::npos) {
      return n;
    }
    pos = comma + 1;
  }
}

// Maps the header's column names to `columns` (each exactly once): index[i] is the field
// position of columns[i]. Returns false (with errors) when the header does not fit.
template <std::size_t N>
bool map_header(std::string_view line, const std::array<std::string_view, N>& columns,
                std::array<std::size_t, N>& index, InputErrors& errors) {
  std::array<std::string_view, 64> fields{};
  const std::size_t count = split_fields(line, fields);
  constexpr std::size_t kUnset = ~std::size_t{0};
  index.fill(kUnset);
  bool ok = true;
  for (std::size_t f = 0; f < std::min(count, fields.size()); ++f) {
    const auto* it = std::find(columns.begin(), columns.end(), fields[f]);
    if (it == columns.end()) {
      errors.add(1, "", "unknown column " + printable(fields[f]));
      ok = false;
      continue;
    }
    const auto c = static_cast<std::size_t>(it - columns.begin());
    if (index[c] != kUnset) {
      errors.add(1, "", "column " + std::string(*it) + " appears twice");
      ok = false;
    }
    index[c] = f;
  }
  if (count > fields.size()) {
    errors.add(1, "", std::to_string(count) + " columns, expected " + std::to_string(N));
    ok = false;
  }
  for (std::size_t c = 0; c < N; ++c) {
    if (index[c] == kUnset) {
      errors.add(1, "", "missing column " + std::string(columns[c]));
      ok = false;
    }
  }
  return ok;
}

std::string header_text(std::span<const std::string_view> columns) {
  std::string s;
  for (const std::string_view c : columns) {
    s += s.empty() ? "" : ",";
    s += c;
  }
  return s;
}

bool all_digits(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A decimal integer 0..kBalanceMax (digits only: no sign, no spaces).
std::optional<std::int64_t> parse_amount(std::string_view s) noexcept {
  if (!all_digits(s)) {
    return std::nullopt;
  }
  std::int64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v > kBalanceMax) {
    return std::nullopt;
  }
  return v;
}

std::string not_an_amount(std::string_view value) {
  return printable(value) + " is not an integer from 0 to " + std::to_string(kBalanceMax);
}

}  // namespace

std::string_view shipped_profiles_csv() noexcept {
  for (const EmbeddedConfig& f : embedded_config_files()) {
    if (f.name == "profiles") {
      return f.text;
    }
  }
  return {};
}

void InputErrors::add(std::size_t row, std::string_view column, std::string message) {
  entries_.push_back(Entry{InputError{row, std::string(column), std::move(message)}, count_});
  ++count_;
  if (entries_.size() >= 2 * kKept) {
    trim();
  }
}

void InputErrors::trim() {
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
    return a.error.row != b.error.row ? a.error.row < b.error.row : a.seq < b.seq;
  });
  if (entries_.size() > kKept) {
    entries_.resize(kKept);
  }
}

std::vector<InputError> InputErrors::kept() const {
  InputErrors copy = *this;
  copy.trim();
  std::vector<InputError> out;
  out.reserve(copy.entries_.size());
  for (Entry& e : copy.entries_) {
    out.push_back(std::move(e.error));
  }
  return out;
}

std::vector<std::string> InputErrors::lines(std::string_view file_name) const {
  std::vector<std::string> out;
  for (const InputError& e : kept()) {
    std::string line(file_name);
    line += ": ";
    if (e.row > 0) {
      line += "row " + std::to_string(e.row);
      line += e.column.empty() ? ": " : ", column " + e.column + ": ";
    }
    line += e.message;
    out.push_back(std::move(line));
  }
  if (count_ > out.size()) {
    out.push_back("... " + std::to_string(count_ - out.size()) + " more");
  }
  return out;
}

std::string printable(std::string_view value) {
  const auto digits = static_cast<std::size_t>(
      std::count_if(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }));
  if (digits >= kHiddenDigits) {
    return "(a value of " + std::to_string(value.size()) +
           " characters, not shown: it may be a PAN)";
  }
  if (value.empty()) {
    return "(empty)";
  }
  std::string s = "'";
  for (const char c : value.substr(0, kPrintableMax)) {
    s += (c >= 0x20 && c < 0x7F) ? c : '?';
  }
  s += value.size() > kPrintableMax ? "...'" : "'";
  return s;
}

std::string pan_problem(std::string_view pan) {
  if (pan.size() < kPanDigitsMin || pan.size() > kPanDigitsMax) {
    return std::to_string(pan.size()) + " characters, a PAN has 12 to 19 digits";
  }
  const auto* bad = std::find_if(pan.begin(), pan.end(), [](char c) { return c < '0' || c > '9'; });
  if (bad != pan.end()) {
    return "character " + std::to_string(bad - pan.begin() + 1) +
           " is not a digit, a PAN has 12 to 19 digits";
  }
  return {};
}

namespace {

// Checks one profile row (fields in the order profile, channel, kLimitColumns) and adds it to
// `file`; seen[p][c] is the row of profile p's channel c, 0 when none yet.
void add_profile_row(std::size_t row, std::span<const std::string_view> f, ProfilesFile& file,
                     std::vector<std::array<std::size_t, kChannelCount>>& seen) {
  bool ok = true;
  const std::string_view name = f[0];
  if (!valid_name(name, kProfileNameMax)) {
    file.errors.add(row, "profile", printable(name) + " is not " + std::string(kNameRule));
    ok = false;
  }
  const std::optional<Channel> ch = parse_channel(f[1]);
  if (!ch) {
    file.errors.add(row, "channel", printable(f[1]) + " is not one of pos cnp atm");
    ok = false;
  }
  ChannelLimits limits;
  for (std::size_t l = 0; l < kLimitCount; ++l) {
    const std::optional<std::int64_t> v = parse_amount(f[2 + l]);
    if (!v) {
      file.errors.add(row, kLimitColumns[l], not_an_amount(f[2 + l]));
      ok = false;
    } else {
      limit_at(limits, l) = *v;
    }
  }
  if (!ok) {
    return;
  }
  auto it = std::find_if(file.profiles.begin(), file.profiles.end(),
                         [&](const ProfileRow& p) { return p.name == name; });
  if (it == file.profiles.end()) {
    file.profiles.push_back(ProfileRow{name, {}});
    seen.push_back({});
    it = file.profiles.end() - 1;
  }
  const auto p = static_cast<std::size_t>(it - file.profiles.begin());
  const auto c = static_cast<std::size_t>(*ch);
  if (seen[p][c] != 0) {
    file.errors.add(row, "channel",
                    "profile '" + std::string(name) + "' has channel " +
                        std::string(kChannelNames[c]) + " already in row " +
                        std::to_string(seen[p][c]));
    return;
  }
  seen[p][c] = row;
  it->limits.channels[c] = limits;
}

}  // namespace

ProfilesFile parse_profiles(std::string_view text) {
  constexpr std::size_t kColumns = 2 + kLimitCount;
  std::array<std::string_view, kColumns> names{"profile", "channel"};
  std::copy(kLimitColumns.begin(), kLimitColumns.end(), names.begin() + 2);
  ProfilesFile file;
  std::array<std::size_t, kColumns> index{};
  // Row of each (profile, channel) seen, 0 when not seen; in the order of file.profiles.
  std::vector<std::array<std::size_t, kChannelCount>> seen;
  bool header = true;
  const std::size_t lines = for_each_line(text, [&](std::size_t row, std::string_view line) {
    if (header) {
      header = false;
      return map_header(line, names, index, file.errors);
    }
    std::array<std::string_view, kColumns + 1> f{};
    const std::size_t count = split_fields(line, f);
    if (count != kColumns) {
      file.errors.add(
          row, "", std::to_string(count) + " fields, the header has " + std::to_string(kColumns));
      return true;
    }
    std::array<std::string_view, kColumns> cols{};
    for (std::size_t c = 0; c < kColumns; ++c) {
      cols[c] = f[index[c]];
    }
    add_profile_row(row, cols, file, seen);
    return true;
  });
  if (lines == 0) {
    file.errors.add(0, "", "the file is empty, expected the header " + header_text(names));
  } else if (lines == 1 && file.errors.empty()) {
    file.errors.add(0, "", "no profile rows after the header");
  }
  // Only for a file without row errors: a bad row's channel would be reported missing too.
  const bool rows_ok = file.errors.empty();
  for (std::size_t p = 0; rows_ok && p < file.profiles.size(); ++p) {
    for (std::size_t c = 0; c < kChannelCount; ++c) {
      if (seen[p][c] == 0) {
        file.errors.add(0, "",
                        "profile '" + std::string(file.profiles[p].name) +
                            "' has no row for channel " + std::string(kChannelNames[c]));
      }
    }
  }
  return file;
}

namespace {

enum CardColumn : std::size_t {
  kPan,
  kExpiry,
  kAccount,
  kCurrency,
  kBalance,
  kStatus,
  kProfile,
  kCardColumns
};
constexpr std::array<std::string_view, kCardColumns> kCardColumnNames{
    "pan", "expiry", "account", "currency", "balance", "status", "profile"};

// Checks one row's fields; fills `card` and returns true when every field is valid.
bool check_card_fields(std::size_t row, std::span<const std::string_view> f, CardRow& card,
                       InputErrors& errors) {
  bool ok = true;
  auto fail = [&](CardColumn c, std::string message) {
    errors.add(row, kCardColumnNames[c], std::move(message));
    ok = false;
  };
  if (std::string problem = pan_problem(f[kPan]); !problem.empty()) {
    fail(kPan, std::move(problem));
  }
  const std::string_view exp = f[kExpiry];
  if (exp.size() != 4 || !all_digits(exp)) {
    fail(kExpiry, printable(exp) + " is not YYMM");
  } else if (const int month = (exp[2] - '0') * 10 + (exp[3] - '0'); month < 1 || month > 12) {
    fail(kExpiry, "month " + std::string(exp.substr(2)) + " is not 01-12");
  } else {
    std::copy(exp.begin(), exp.end(), card.expiry.begin());
  }
  if (!valid_name(f[kAccount], kAccountIdMax)) {
    fail(kAccount, printable(f[kAccount]) + " is not " + std::string(kNameRule));
  }
  if (f[kCurrency].size() != 3 || !all_digits(f[kCurrency])) {
    fail(kCurrency, printable(f[kCurrency]) + " is not an ISO 4217 numeric code (3 digits)");
  }
  if (!parse_amount(f[kBalance])) {
    fail(kBalance, not_an_amount(f[kBalance]));
  }
  const auto* st = std::find(kCardStatuses.begin(), kCardStatuses.end(), f[kStatus]);
  if (st == kCardStatuses.end()) {
    fail(kStatus,
         printable(f[kStatus]) + " is not one of active blocked lost stolen closed inactive");
  } else {
    card.status = static_cast<std::uint8_t>(st - kCardStatuses.begin());
  }
  if (!f[kProfile].empty() && !valid_name(f[kProfile], kProfileNameMax)) {
    fail(kProfile, printable(f[kProfile]) + " is not " + std::string(kNameRule));
  }
  return ok;
}

// Adds a valid row's card to its account (created on first sight); reports an account given a
// different currency or balance than in its first row.
// Returns the account's index, or nullopt after such an error.
std::optional<std::uint32_t> add_to_account(
    std::size_t row, std::span<const std::string_view> f, CardsFile& file,
    std::unordered_map<std::string_view, std::uint32_t>& accounts) {
  const auto [it, inserted] =
      accounts.try_emplace(f[kAccount], static_cast<std::uint32_t>(file.accounts.size()));
  const std::int64_t balance = *parse_amount(f[kBalance]);
  if (inserted) {
    AccountRow a;
    a.id = f[kAccount];
    std::copy_n(f[kCurrency].begin(), 3, a.currency.begin());
    a.balance_minor = balance;
    a.first_row = static_cast<std::uint32_t>(row);
    file.accounts.push_back(a);
    return it->second;
  }
  const AccountRow& a = file.accounts[it->second];
  bool ok = true;
  if (a.currency_view() != f[kCurrency]) {
    file.errors.add(row, "currency",
                    "account " + printable(a.id) + " has currency " +
                        std::string(a.currency_view()) + " in row " + std::to_string(a.first_row));
    ok = false;
  }
  if (a.balance_minor != balance) {
    file.errors.add(row, "balance",
                    "account " + printable(a.id) + " has balance " +
                        std::to_string(a.balance_minor) + " in row " + std::to_string(a.first_row));
    ok = false;
  }
  return ok ? std::optional<std::uint32_t>(it->second) : std::nullopt;
}

}  // namespace

CardsFile parse_cards(std::string_view text) {
  CardsFile file;
  file.cards.reserve(static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) + 1);
  std::unordered_map<std::string_view, std::uint32_t> accounts;
  accounts.reserve(file.cards.capacity());
  std::unordered_map<std::string_view, std::uint32_t> profiles;
  std::uint32_t last_profile = 0;
  std::array<std::size_t, kCardColumns> index{};
  bool header = true;
  const std::size_t lines = for_each_line(text, [&](std::size_t row, std::string_view line) {
    if (header) {
      header = false;
      return map_header(line, kCardColumnNames, index, file.errors);
    }
    std::array<std::string_view, kCardColumns + 1> raw{};
    const std::size_t count = split_fields(line, raw);
    if (count != kCardColumns) {
      file.errors.add(
          row, "",
          std::to_string(count) + " fields, the header has " + std::to_string(kCardColumns));
      return true;
    }
    std::array<std::string_view, kCardColumns> f{};
    for (std::size_t c = 0; c < kCardColumns; ++c) {
      f[c] = raw[index[c]];
    }
    CardRow card;
    card.row = static_cast<std::uint32_t>(row);
    if (!check_card_fields(row, f, card, file.errors)) {
      return true;
    }
    const std::optional<std::uint32_t> account = add_to_account(row, f, file, accounts);
    if (!account) {
      return true;
    }
    card.pan = f[kPan];
    card.account = *account;
    // Rows mostly repeat the profile of the row before: look it up only when it differs.
    const std::string_view profile = f[kProfile].empty() ? kDefaultProfile : f[kProfile];
    if (file.profiles.empty() || profile != file.profiles[last_profile]) {
      const auto [p, added] =
          profiles.try_emplace(profile, static_cast<std::uint32_t>(file.profiles.size()));
      if (added) {
        file.profiles.push_back(profile);
      }
      last_profile = p->second;
    }
    card.profile = last_profile;
    AccountRow& a = file.accounts[card.account];
    const auto n = static_cast<std::uint32_t>(file.cards.size());
    if (a.last_card == CardRow::kNone) {
      a.first_card = n;
    } else {
      file.cards[a.last_card].next_in_account = n;
    }
    a.last_card = n;
    ++a.cards;
    file.cards.push_back(card);
    return true;
  });
  if (lines == 0) {
    file.errors.add(0, "",
                    "the file is empty, expected the header " + header_text(kCardColumnNames));
  } else if (lines == 1 && file.errors.empty()) {
    file.errors.add(0, "", "no card rows after the header");
  }
  return file;
}

namespace {

// Reports each card whose token (so PAN) an earlier row has already.
void report_duplicates(CardsFile& file) {
  const std::size_t n = file.cards.size();
  // Duplicates: sort by token (then row) and compare neighbours. The sort keys hold the
  // token's first 16 hex characters, so most comparisons touch no card.
  struct Key {
    std::uint64_t hi = 0;
    std::uint64_t lo = 0;
    std::uint32_t card = 0;
  };
  std::vector<Key> keys(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string_view t = file.cards[i].token.view();
    keys[i].card = static_cast<std::uint32_t>(i);
    std::memcpy(&keys[i].hi, t.data(), sizeof(std::uint64_t));
    std::memcpy(&keys[i].lo, t.data() + sizeof(std::uint64_t), sizeof(std::uint64_t));
    keys[i].hi = be64toh(keys[i].hi);
    keys[i].lo = be64toh(keys[i].lo);
  }
  const auto& cards = file.cards;
  std::sort(keys.begin(), keys.end(), [&](const Key& a, const Key& b) {
    if (a.hi != b.hi || a.lo != b.lo) {
      return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
    }
    const int c = cards[a.card].token.view().compare(cards[b.card].token.view());
    return c != 0 ? c < 0 : cards[a.card].row < cards[b.card].row;
  });
  std::size_t first = 0;  // the first (lowest row) card of the current group of equal tokens
  for (std::size_t i = 1; i < n; ++i) {
    const CardRow& card = cards[keys[i].card];
    if (card.token == cards[keys[first].card].token) {
      file.errors.add(card.row, "pan",
                      "the same PAN as row " + std::to_string(cards[keys[first].card].row));
    } else {
      first = i;
    }
  }
}

}  // namespace

void tokenize_cards(CardsFile& file, const TokenKey& key, unsigned threads) {
  const std::size_t n = file.cards.size();
  if (threads == 0) {
    threads = std::thread::hardware_concurrency();
  }
  // A thread per 10,000 cards at most: below that, starting one costs more than it saves.
  threads = std::max(1U, std::min<unsigned>(threads, static_cast<unsigned>(n / 10'000 + 1)));
  std::vector<std::exception_ptr> failures(threads);
  std::vector<std::vector<std::pair<std::uint32_t, CardDataErrc>>> bad(threads);
  auto work = [&](unsigned t) {
    try {
      SoftwareCardCrypto crypto(key);
      for (std::size_t i = n * t / threads; i < n * (t + 1) / threads; ++i) {
        CardRow& card = file.cards[i];
        const CardDataResult<PanToken> token = crypto.tokenize(card.pan);
        if (token) {
          card.token = *token;
        } else {
          bad[t].emplace_back(card.row, token.error());
        }
        card.pan = {};
      }
    } catch (...) {
      failures[t] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) {
    pool.emplace_back(work, t);
  }
  work(0);
  for (std::thread& th : pool) {
    th.join();
  }
  for (const std::exception_ptr& e : failures) {
    if (e) {
      std::rethrow_exception(e);
    }
  }
  for (const auto& list : bad) {
    for (const auto& [row, errc] : list) {
      file.errors.add(row, "pan",
                      "cannot tokenize (" + std::string(card_data_errc_name(errc)) + ")");
    }
  }
  report_duplicates(file);
}

}  // namespace authswitch::admin
