#include "switch/admin/admin.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iomanip>
#include <ostream>
#include <stdexcept>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "limits/holds_script.h"
#include "limits/layout.h"
#include "limits/redis_pipeline.h"

namespace authswitch::admin {

// The admin tool works on the limits module's data model throughout.
using namespace authswitch::limits;  // NOLINT(google-build-using-namespace)
namespace {

// The placeholder card token and transaction key of AccountKeys when only the account's own
// keys are wanted.
constexpr std::string_view kNoCard = "none";
constexpr std::string_view kNoTxn = "none";

std::string text(const redisReply& r) {
  if (r.type == REDIS_REPLY_STRING || r.type == REDIS_REPLY_STATUS) {
    return {r.str, r.len};
  }
  if (r.type == REDIS_REPLY_INTEGER) {
    return std::to_string(r.integer);
  }
  return {};
}

bool is_string(const redisReply& r) noexcept { return r.type == REDIS_REPLY_STRING; }

// A hiredis reply (and its elements, one level deep) as the limits module's Reply view, for
// parse_decision. Views into the hiredis reply, which must outlive it.
class ReplyView {
 public:
  explicit ReplyView(const redisReply& r) {
    static_assert(sizeof(r.integer) == sizeof(std::int64_t));
    elements_.reserve(r.type == REDIS_REPLY_ARRAY ? r.elements : 0);
    for (std::size_t i = 0; r.type == REDIS_REPLY_ARRAY && i < r.elements; ++i) {
      elements_.push_back(convert(*r.element[i]));
    }
    root_ = convert(r);
    root_.elements = elements_;
  }
  ReplyView(const ReplyView&) = delete;
  ReplyView& operator=(const ReplyView&) = delete;

  [[nodiscard]] const Reply& root() const noexcept { return root_; }

 private:
  static Reply convert(const redisReply& r) noexcept {
    Reply out;
    switch (r.type) {
      case REDIS_REPLY_STRING:
        out.type = Reply::Type::kString;
        break;
      case REDIS_REPLY_ARRAY:
        out.type = Reply::Type::kArray;
        break;
      case REDIS_REPLY_INTEGER:
        out.type = Reply::Type::kInteger;
        break;
      case REDIS_REPLY_STATUS:
        out.type = Reply::Type::kStatus;
        break;
      case REDIS_REPLY_ERROR:
        out.type = Reply::Type::kError;
        break;
      default:
        out.type = Reply::Type::kNil;
        break;
    }
    out.integer = r.integer;
    if (r.str != nullptr) {
      out.str = std::string_view(r.str, r.len);
    }
    return out;
  }

  std::vector<Reply> elements_;
  Reply root_;
};

// An integer from a reply element: Lua replies integers; hold records hold Lua's rendering of
// numbers (decimal, in exponent form only beyond 14 digits).
std::int64_t number(std::string_view s) noexcept {
  std::int64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec == std::errc() && r.ptr == s.data() + s.size()) {
    return v;
  }
  double d = 0;
  const auto rd = std::from_chars(s.data(), s.data() + s.size(), d);
  return rd.ec == std::errc() ? static_cast<std::int64_t>(d) : 0;
}

std::string utc_time(std::int64_t ms) {
  const auto secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  if (gmtime_r(&secs, &tm) == nullptr) {
    return "?";
  }
  std::array<char, 32> buf{};
  const std::size_t n = std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return {buf.data(), n};
}

std::string money(std::int64_t minor, std::string_view currency) {
  return std::to_string(minor) + " (" + std::string(currency) + ")";
}

// The account's keys (the card and transaction parts unused). REQUIRES: valid_name(id).
AccountKeys account_keys(std::string_view id, std::string_view card = kNoCard) {
  AccountKeys keys;
  const bool valid = keys.set(id, card, kNoTxn);
  AS_ASSERT(valid);
  return keys;
}

// A packed hold record of holds.lua: state|amount|posted|currency|mcc|expires|channel|day|
// month|created.
struct Hold {
  std::string id;
  char state = '?';
  std::int64_t amount_minor = 0;
  std::int64_t posted_minor = 0;
  std::string currency;
  std::string mcc;
  std::int64_t expires_ms = 0;
  std::string channel;
  std::int64_t created_ms = 0;
};

std::string_view state_name(char s) noexcept {
  switch (s) {
    case 'P':
      return "pending";
    case 'C':
      return "posted";
    case 'R':
      return "refund";
    case 'A':
      return "adjusted";
    case 'V':
      return "voided";
    case 'X':
      return "expired";
    default:
      return "unknown";
  }
}

Hold unpack_hold(std::string id, std::string_view record) {
  std::array<std::string_view, 10> f{};
  std::size_t n = 0;
  std::size_t pos = 0;
  while (n < f.size()) {
    const std::size_t bar = record.find('|', pos);
    f[n++] = record.substr(pos, bar == std::string_view::npos ? std::string_view::npos : bar - pos);
    if (bar == std::string_view::npos) {
      break;
    }
    pos = bar + 1;
  }
  Hold h;
  h.id = std::move(id);
  h.state = f[0].empty() ? '?' : f[0][0];
  h.amount_minor = number(f[1]);
  h.posted_minor = number(f[2]);
  h.currency = f[3];
  h.mcc = f[4];
  h.expires_ms = number(f[5]);
  h.channel = f[6];
  h.created_ms = number(f[9]);
  return h;
}

// Every hold record of the account, oldest first.
std::vector<Hold> read_holds(RedisSession& redis, const AccountKeys& keys) {
  const RedisReplyPtr r = redis.command({"HGETALL", keys.key(AccountKeys::kHolds)});
  std::vector<Hold> holds;
  for (std::size_t i = 0; i + 1 < r->elements; i += 2) {
    holds.push_back(unpack_hold(text(*r->element[i]), text(*r->element[i + 1])));
  }
  std::sort(holds.begin(), holds.end(), [](const Hold& a, const Hold& b) {
    return a.created_ms != b.created_ms ? a.created_ms < b.created_ms : a.id < b.id;
  });
  return holds;
}

std::string dash_if_empty(const std::string& s) { return s.empty() ? "-" : s; }

void print_hold(std::ostream& out, const Hold& h, bool with_state) {
  out << "  " << h.id;
  if (with_state) {
    out << "  " << state_name(h.state);
  }
  out << "  amount " << money(h.amount_minor, h.currency);
  if (with_state) {
    out << "  posted " << h.posted_minor << "  created " << utc_time(h.created_ms);
  }
  if (h.state == 'P') {
    out << "  expires " << utc_time(h.expires_ms);
  }
  out << "  channel " << dash_if_empty(h.channel) << "  mcc " << dash_if_empty(h.mcc) << '\n';
}

// Keys of one multi-key command, copied into one buffer.
class ArgList {
 public:
  void clear() {
    buf_.clear();
    ends_.clear();
  }
  void add(std::string_view s) {
    buf_.append(s);
    ends_.push_back(buf_.size());
  }
  [[nodiscard]] std::span<const std::string_view> views() {
    views_.resize(ends_.size());
    std::size_t begin = 0;
    for (std::size_t i = 0; i < ends_.size(); ++i) {
      views_[i] = std::string_view(buf_).substr(begin, ends_[i] - begin);
      begin = ends_[i];
    }
    return views_;
  }

 private:
  std::string buf_;
  std::vector<std::size_t> ends_;
  std::vector<std::string_view> views_;
};

// The pre-write checks and the writes of one cards import.
class CardImport {
 public:
  CardImport(RedisSession& redis, CardsFile& file, const ImportOptions& options)
      : redis_(redis), file_(file), options_(options) {}

  // Adds to file.errors what Redis says against the file; reads only.
  void check() {
    check_profiles();
    read_accounts();
    read_cards();
  }
  void write();

  [[nodiscard]] std::size_t new_accounts() const noexcept { return new_accounts_; }
  [[nodiscard]] std::size_t kept_accounts() const noexcept {
    return file_.accounts.size() - new_accounts_;
  }
  [[nodiscard]] std::size_t changed_cards() const noexcept { return changed_.size(); }

 private:
  template <typename KeyOf>
  std::vector<bool> probe(std::size_t n, KeyOf key_of);
  void check_profiles();
  void read_accounts();
  void read_cards();
  void write_account(Pipeline& p, std::uint32_t a);
  void announce_changes();

  RedisSession& redis_;
  CardsFile& file_;
  const ImportOptions& options_;
  std::vector<std::uint8_t> account_exists_;
  std::vector<std::uint32_t> changed_;     // cards whose profile changed
  std::vector<std::string_view> members_;  // SADD of one account's cards
  std::size_t new_accounts_ = 0;
};

// EXISTS over the keys of items [0, n), options_.probe_keys per command: whether any key of
// each chunk exists. Keys that do not exist cost Redis a lookup, not a command each.
template <typename KeyOf>
std::vector<bool> CardImport::probe(std::size_t n, KeyOf key_of) {
  const std::size_t chunk = options_.probe_keys;
  std::vector<bool> hit((n + chunk - 1) / chunk);
  Pipeline p(redis_, 8, [&](std::size_t i, const redisReply& r) {
    hit[i] = r.type != REDIS_REPLY_INTEGER || r.integer > 0;
  });
  ArgList args;
  KeyBuffer buf;
  for (std::size_t begin = 0; begin < n; begin += chunk) {
    args.clear();
    args.add("EXISTS");
    for (std::size_t i = begin; i < std::min(n, begin + chunk); ++i) {
      args.add(key_of(i, buf));
    }
    p.append(args.views());
  }
  p.finish();
  return hit;
}

void CardImport::check_profiles() {
  const RedisReplyPtr r = redis_.command({"SMEMBERS", kProfilesKey});
  std::vector<std::string> known;
  for (std::size_t i = 0; i < r->elements; ++i) {
    known.push_back(text(*r->element[i]));
  }
  std::vector<bool> missing(file_.profiles.size());
  for (std::size_t p = 0; p < file_.profiles.size(); ++p) {
    missing[p] = std::find(known.begin(), known.end(), file_.profiles[p]) == known.end();
  }
  for (const CardRow& card : file_.cards) {
    if (missing[card.profile]) {
      file_.errors.add(card.row, "profile",
                       "profile " + printable(file_.profiles[card.profile]) +
                           " does not exist (import profiles first)");
    }
  }
}

void CardImport::read_accounts() {
  const std::size_t n = file_.accounts.size();
  account_exists_.assign(n, 0);
  const std::vector<bool> hit = probe(n, [&](std::size_t i, KeyBuffer& buf) {
    const AccountKeys keys = account_keys(file_.accounts[i].id);
    const std::string_view k = keys.key(AccountKeys::kAccount);
    std::copy(k.begin(), k.end(), buf.begin());
    return std::string_view(buf.data(), k.size());
  });
  std::vector<std::uint32_t> asked;
  Pipeline p(redis_, options_.batch_commands, [&](std::size_t i, const redisReply& r) {
    if (!is_string(r)) {
      return;  // no such account (or one without a currency: it is recreated)
    }
    const AccountRow& a = file_.accounts[asked[i]];
    account_exists_[asked[i]] = 1;
    if (text(r) != a.currency_view()) {
      file_.errors.add(
          a.first_row, "currency",
          "account " + printable(a.id) + " exists with currency " + printable(text(r)));
    }
  });
  for (std::size_t i = 0; i < n; ++i) {
    if (hit[i / options_.probe_keys]) {
      asked.push_back(static_cast<std::uint32_t>(i));
      const AccountKeys keys = account_keys(file_.accounts[i].id);
      p.append({"HGET", keys.key(AccountKeys::kAccount), "cur"});
    }
  }
  p.finish();
}

void CardImport::read_cards() {
  const std::size_t n = file_.cards.size();
  const std::vector<bool> hit = probe(n, [&](std::size_t i, KeyBuffer& buf) {
    return card_directory_key(file_.cards[i].token.view(), buf);
  });
  std::vector<std::uint32_t> asked;
  Pipeline p(redis_, options_.batch_commands, [&](std::size_t i, const redisReply& r) {
    if (r.type != REDIS_REPLY_ARRAY || r.elements != 4 || !is_string(*r.element[0])) {
      return;  // a new card
    }
    const CardRow& card = file_.cards[asked[i]];
    const AccountRow& a = file_.accounts[card.account];
    if (text(*r.element[0]) != a.id) {
      file_.errors.add(card.row, "account",
                       "this card belongs to account " + printable(text(*r.element[0])));
    } else if (text(*r.element[1]) != file_.profiles[card.profile] ||
               text(*r.element[2]) != kCardStatuses[card.status] ||
               text(*r.element[3]) != card.expiry_view()) {
      // Switches cache profile, status and expiry: announce what changed.
      changed_.push_back(asked[i]);
    }
  });
  KeyBuffer buf;
  for (std::size_t i = 0; i < n; ++i) {
    if (hit[i / options_.probe_keys]) {
      asked.push_back(static_cast<std::uint32_t>(i));
      p.append({"HMGET", card_directory_key(file_.cards[i].token.view(), buf), kCardAccountField,
                kCardProfileField, kCardStatusField, kCardExpiryField});
    }
  }
  p.finish();
}

void CardImport::write() {
  Pipeline p(redis_, options_.batch_commands, [](std::size_t, const redisReply&) {});
  for (std::size_t a = 0; a < file_.accounts.size(); ++a) {
    write_account(p, static_cast<std::uint32_t>(a));
  }
  p.finish();
  announce_changes();
}

// The account (unless it exists: its balance is kept), then each card's state and directory
// entry, then the account's card set.
void CardImport::write_account(Pipeline& p, std::uint32_t a) {
  const AccountRow& account = file_.accounts[a];
  if (account_exists_[a] == 0) {
    ++new_accounts_;
    const AccountKeys keys = account_keys(account.id);
    const std::string balance = std::to_string(account.balance_minor);
    p.append({"HSET", keys.key(AccountKeys::kAccount), "cur", account.currency_view(), "bal",
              balance, "held", "0", "st", "active", "od", "0"});
  }
  KeyBuffer buf;
  KeyBuffer cards_buf;
  std::vector<std::string_view>& members = members_;
  members.clear();
  members.push_back("SADD");
  members.push_back(account_cards_key(account.id, cards_buf));
  for (std::uint32_t c = account.first_card; c != CardRow::kNone;
       c = file_.cards[c].next_in_account) {
    const CardRow& card = file_.cards[c];
    const AccountKeys keys = account_keys(account.id, card.token.view());
    p.append({"HSET", keys.key(AccountKeys::kCard), "st", kCardStatuses[card.status], "exp",
              card.expiry_view()});
    p.append({"HSET", card_directory_key(card.token.view(), buf), kCardAccountField, account.id,
              kCardProfileField, file_.profiles[card.profile], kCardStatusField,
              kCardStatuses[card.status], kCardExpiryField, card.expiry_view()});
    members.push_back(card.token.view());
    if (members.size() == Pipeline::kArgsMax) {
      p.append(members);
      members.resize(2);
    }
  }
  if (members.size() > 2) {
    p.append(members);
  }
}

// Every switch's card cache reloads what the change feed names (limits/layout.h).
void CardImport::announce_changes() {
  if (changed_.empty()) {
    return;
  }
  Pipeline p(redis_, options_.batch_commands, [](std::size_t, const redisReply&) {});
  const std::string maxlen = std::to_string(kChangesMaxLen);
  if (changed_.size() > kCardChangesMax) {
    p.append({"XADD", kChangesKey, "MAXLEN", "~", maxlen, "*", "kind", kChangeCards, "id", "*"});
  } else {
    for (const std::uint32_t c : changed_) {
      p.append({"XADD", kChangesKey, "MAXLEN", "~", maxlen, "*", "kind", kChangeCard, "id",
                file_.cards[c].token.view()});
    }
  }
  p.finish();
}

}  // namespace

struct Admin::CardLookup {
  PanToken token;
  std::array<char, kPanDigitsMax> masked_buf{};
  std::string masked;
  std::string account;
  std::string profile;
};

Admin::Admin(redisContext& ctx, std::string address, std::ostream& out, std::ostream& err)
    : redis_(ctx, std::move(address)), out_(out), err_(err) {}

int Admin::report(std::string_view file_name, const InputErrors& errors) {
  for (const std::string& line : errors.lines(file_name)) {
    err_ << line << '\n';
  }
  return kExitBadInput;
}

int Admin::import_profiles(std::string_view file_name, std::string_view csv) {
  const ProfilesFile file = parse_profiles(csv);
  if (!file.errors.empty()) {
    return report(file_name, file.errors);
  }
  Pipeline p(redis_, 64, [&](std::size_t, const redisReply& r) {
    for (std::size_t i = 0; r.type == REDIS_REPLY_ARRAY && i < r.elements; ++i) {
      if (r.element[i]->type == REDIS_REPLY_ERROR) {
        redis_.fail_reply(*r.element[i], "importing profiles");
      }
    }
  });
  const std::string maxlen = std::to_string(kChangesMaxLen);
  for (const ProfileRow& profile : file.profiles) {
    KeyBuffer buf;
    const std::string_view key = profile_key(profile.name, buf);
    std::vector<std::string> fields;
    std::vector<std::string_view> args{"HSET", key};
    fields.reserve(2 * kChannelCount * kLimitCount);
    for (std::size_t c = 0; c < kChannelCount; ++c) {
      for (std::size_t l = 0; l < kLimitCount; ++l) {
        fields.push_back(std::string(kChannelNames[c]) + "." + std::string(kLimitFields[l]));
        fields.push_back(std::to_string(limit_at(profile.limits.channels[c], l)));
      }
    }
    args.insert(args.end(), fields.begin(), fields.end());
    // Replaced as a whole, so no field of an older layout survives.
    p.append({"MULTI"});
    p.append({"DEL", key});
    p.append(args);
    p.append({"SADD", kProfilesKey, profile.name});
    p.append({"XADD", kChangesKey, "MAXLEN", "~", maxlen, "*", "kind", kChangeProfile, "id",
              profile.name});
    p.append({"EXEC"});
  }
  p.finish();
  out_ << "imported " << file.profiles.size()
       << (file.profiles.size() == 1 ? " profile (" : " profiles (");
  for (std::size_t i = 0; i < file.profiles.size(); ++i) {
    out_ << (i == 0 ? "" : ", ") << file.profiles[i].name;
  }
  out_ << ")\n";
  return kExitOk;
}

int Admin::import_cards(std::string_view file_name, std::string_view csv, const TokenKey& key,
                        const ImportOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  CardsFile file = parse_cards(csv);
  tokenize_cards(file, key, options.tokenize_threads);
  if (!file.errors.empty()) {
    return report(file_name, file.errors);
  }
  CardImport import(redis_, file, options);
  import.check();
  if (!file.errors.empty()) {
    return report(file_name, file.errors);
  }
  import.write();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto rate =
      static_cast<std::int64_t>(static_cast<double>(file.cards.size()) / std::max(secs, 1e-6));
  out_ << "imported " << file.cards.size() << " cards (" << import.new_accounts()
       << " new accounts, " << import.kept_accounts() << " existing accounts kept) in "
       << std::fixed << std::setprecision(2) << secs << " s: " << rate << " cards/s\n";
  if (import.changed_cards() > 0) {
    out_ << "profile changed for " << import.changed_cards() << " existing cards: announced on "
         << kChangesKey << '\n';
  }
  return kExitOk;
}

int Admin::show_account(std::string_view id) {
  if (!valid_name(id, kAccountIdMax)) {
    err_ << "account " << printable(id) << ": not a valid account id\n";
    return kExitBadInput;
  }
  const AccountKeys keys = account_keys(id);
  const RedisReplyPtr a =
      redis_.command({"HMGET", keys.key(AccountKeys::kAccount), "cur", "bal", "held", "st", "od"});
  if (a->elements != 5 || !is_string(*a->element[0])) {
    err_ << "account " << id << ": not found on " << redis_.address() << '\n';
    return kExitRuntime;
  }
  const std::string cur = text(*a->element[0]);
  const std::int64_t bal = number(text(*a->element[1]));
  const std::int64_t held = number(text(*a->element[2]));
  const std::int64_t od = number(text(*a->element[4]));
  KeyBuffer buf;
  const RedisReplyPtr cards = redis_.command({"SCARD", account_cards_key(id, buf)});
  out_ << "account " << id << '\n'
       << "  status     " << dash_if_empty(text(*a->element[3])) << '\n'
       << "  currency   " << cur << '\n'
       << "  balance    " << money(bal, cur) << '\n'
       << "  held       " << money(held, cur) << '\n'
       << "  overdraft  " << money(od, cur) << '\n'
       << "  available  " << money(bal + od - held, cur) << '\n'
       << "  cards      " << cards->integer << '\n';
  std::vector<Hold> holds = read_holds(redis_, keys);
  std::erase_if(holds, [](const Hold& h) { return h.state != 'P'; });
  out_ << "pending holds: " << holds.size() << '\n';
  for (const Hold& h : holds) {
    print_hold(out_, h, false);
  }
  return kExitOk;
}

int Admin::list_holds(std::string_view id, bool all) {
  if (!valid_name(id, kAccountIdMax)) {
    err_ << "account " << printable(id) << ": not a valid account id\n";
    return kExitBadInput;
  }
  const AccountKeys keys = account_keys(id);
  const RedisReplyPtr exists = redis_.command({"EXISTS", keys.key(AccountKeys::kAccount)});
  if (exists->integer == 0) {
    err_ << "account " << id << ": not found on " << redis_.address() << '\n';
    return kExitRuntime;
  }
  std::vector<Hold> holds = read_holds(redis_, keys);
  if (!all) {
    std::erase_if(holds, [](const Hold& h) { return h.state != 'P'; });
  }
  out_ << "account " << id << ": " << holds.size() << (all ? " hold records" : " pending holds")
       << '\n';
  for (const Hold& h : holds) {
    print_hold(out_, h, all);
  }
  return kExitOk;
}

int Admin::find_card(std::string_view pan, const TokenKey& key, CardLookup& found) {
  if (const std::string problem = pan_problem(pan); !problem.empty()) {
    err_ << "PAN: " << problem << '\n';
    return kExitBadInput;
  }
  SoftwareCardCrypto crypto(key);
  const CardDataResult<PanToken> token = crypto.tokenize(pan);
  const CardDataResult<std::string_view> masked = mask_pan(pan, found.masked_buf);
  if (!token || !masked) {
    throw std::runtime_error(
        "cannot tokenize the PAN (" +
        std::string(card_data_errc_name(token ? masked.error() : token.error())) + ")");
  }
  found.token = *token;
  found.masked = std::string(*masked);
  KeyBuffer buf;
  const RedisReplyPtr r = redis_.command(
      {"HMGET", card_directory_key(found.token.view(), buf), kCardAccountField, kCardProfileField});
  if (r->elements != 2 || !is_string(*r->element[0])) {
    err_ << "card " << found.masked << ": not found on " << redis_.address() << '\n';
    return kExitRuntime;
  }
  found.account = text(*r->element[0]);
  found.profile = text(*r->element[1]);
  if (!valid_name(found.account, kAccountIdMax)) {
    err_ << "card " << found.masked << ": its directory entry names an invalid account\n";
    return kExitRuntime;
  }
  return kExitOk;
}

int Admin::show_card(std::string_view pan, const TokenKey& key) {
  CardLookup card;
  if (const int rc = find_card(pan, key, card); rc != kExitOk) {
    return rc;
  }
  const AccountKeys keys = account_keys(card.account, card.token.view());
  const RedisReplyPtr r = redis_.command({"HMGET", keys.key(AccountKeys::kCard), "st", "exp"});
  out_ << "card " << card.masked << '\n'
       << "  token    " << card.token.view() << '\n'
       << "  account  " << card.account << '\n'
       << "  profile  " << dash_if_empty(card.profile) << '\n'
       << "  status   " << dash_if_empty(text(*r->element[0])) << '\n'
       << "  expiry   " << dash_if_empty(text(*r->element[1])) << '\n';
  KeyBuffer kb;
  const std::string overrides = text(
      *redis_.command({"HGET", card_directory_key(card.token.view(), kb), kCardOverridesField}));
  out_ << "  overrides " << dash_if_empty(overrides) << '\n';
  return kExitOk;
}

int Admin::set_card_override(std::string_view pan, const TokenKey& key, const OverrideChange& c,
                             std::int64_t now_ms) {
  if (!c.clear && (c.rule.empty() || c.days <= 0)) {
    err_ << "card override: --rule ID and --days N (1 to 365) are required, or --clear\n";
    return kExitBadInput;
  }
  const bool rule_ok =
      c.rule.empty() ||
      (c.rule.size() <= kRuleIdMax && std::all_of(c.rule.begin(), c.rule.end(), [](char ch) {
         return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
       }));
  const bool country_ok =
      c.country.size() <= 3 && std::all_of(c.country.begin(), c.country.end(),
                                           [](char ch) { return ch >= 'A' && ch <= 'Z'; });
  if (!rule_ok || !country_ok || c.days > 365) {
    err_ << "card override: --rule is a rule id (a-z 0-9 - _), --country 2 or 3 capital letters "
            "(ISO 3166 alpha, as DE 43 carries it), --days 1 to 365\n";
    return kExitBadInput;
  }
  CardLookup card;
  if (const int rc = find_card(pan, key, card); rc != kExitOk) {
    return rc;
  }
  KeyBuffer kb;
  const std::string directory(card_directory_key(card.token.view(), kb));
  for (int attempt = 0; attempt < 5; ++attempt) {
    (void)redis_.command({"WATCH", directory});
    const std::string current = text(*redis_.command({"HGET", directory, kCardOverridesField}));
    // Keep what is still running and is not replaced; drop expired entries.
    std::vector<std::string> kept;
    std::string_view rest = current;
    while (!rest.empty()) {
      const std::size_t end = std::min(rest.find(';'), rest.size());
      const std::string_view entry = rest.substr(0, end);
      rest.remove_prefix(std::min(end + 1, rest.size()));
      const std::size_t c1 = entry.find(',');
      const std::size_t c2 = c1 == std::string_view::npos ? c1 : entry.find(',', c1 + 1);
      std::int64_t expires = 0;
      if (c2 == std::string_view::npos ||
          std::from_chars(entry.data() + c2 + 1, entry.data() + entry.size(), expires).ec !=
              std::errc() ||
          expires <= now_ms) {
        continue;
      }
      const std::string_view rule = entry.substr(0, c1);
      const std::string_view country = entry.substr(c1 + 1, c2 - c1 - 1);
      const bool replaced =
          c.clear ? (c.rule.empty() || rule == c.rule) : (rule == c.rule && country == c.country);
      if (!replaced) {
        kept.emplace_back(entry);
      }
    }
    std::int64_t expires_ms = 0;
    if (!c.clear) {
      expires_ms = now_ms + c.days * 86'400'000LL;
      kept.push_back(c.rule + "," + c.country + "," + std::to_string(expires_ms));
    }
    if (kept.size() > kCardOverridesMax) {
      (void)redis_.command({"UNWATCH"});
      err_ << "card " << card.masked << ": at most " << kCardOverridesMax
           << " overrides may run at once; clear one first (card override PAN --clear --rule ID)\n";
      return kExitRuntime;
    }
    std::string field;
    for (const std::string& e : kept) {
      field += (field.empty() ? "" : ";") + e;
    }
    (void)redis_.command({"MULTI"});
    if (field.empty()) {
      (void)redis_.command({"HDEL", directory, kCardOverridesField});
    } else {
      (void)redis_.command({"HSET", directory, kCardOverridesField, field});
    }
    // Every switch's card cache reloads the card from this entry (limits/card_directory.h).
    (void)redis_.command({"XADD", kChangesKey, "MAXLEN", "~", std::to_string(kChangesMaxLen), "*",
                          "kind", kChangeCard, "id", card.token.view()});
    const RedisReplyPtr exec = redis_.command({"EXEC"});
    if (exec->type == REDIS_REPLY_ARRAY) {
      if (c.clear) {
        out_ << "card " << card.masked << ": "
             << (c.rule.empty() ? std::string("overrides cleared")
                                : "override of rule " + c.rule + " cleared")
             << " (" << kept.size() << " running)\n";
      } else {
        out_ << "card " << card.masked << ": rule " << c.rule << " not applied"
             << (c.country.empty() ? std::string() : " in " + c.country) << " for " << c.days
             << " days (" << kept.size() << " running)\n";
      }
      return kExitOk;
    }
  }
  err_ << "card " << card.masked << ": changed concurrently, try again\n";
  return kExitRuntime;
}

int Admin::set_card_blocked(std::string_view pan, bool blocked, const TokenKey& key) {
  CardLookup card;
  if (const int rc = find_card(pan, key, card); rc != kExitOk) {
    return rc;
  }
  const AccountKeys keys = account_keys(card.account, card.token.view());
  const std::string_view state_key = keys.key(AccountKeys::kCard);
  const std::string_view from = blocked ? "active" : "blocked";
  const std::string_view to = blocked ? "blocked" : "active";
  // Compare and set under WATCH: a concurrent change of the card makes EXEC fail; then retry.
  for (int attempt = 0; attempt < 5; ++attempt) {
    (void)redis_.command({"WATCH", state_key});
    const std::string st = text(*redis_.command({"HGET", state_key, "st"}));
    if (st == to) {
      (void)redis_.command({"UNWATCH"});
      out_ << "card " << card.masked << " is already " << to << '\n';
      return kExitOk;
    }
    if (st != from) {
      (void)redis_.command({"UNWATCH"});
      err_ << "card " << card.masked << " is " << (st.empty() ? "without a state" : st)
           << (blocked ? ": only an active card can be blocked\n"
                       : ": only a blocked card can be unblocked\n");
      return kExitRuntime;
    }
    KeyBuffer kb;
    (void)redis_.command({"MULTI"});
    (void)redis_.command({"HSET", state_key, "st", to});
    // The directory's copy for the switches' rules, and the feed entry that reloads it there.
    (void)redis_.command({"HSET", card_directory_key(card.token.view(), kb), kCardStatusField, to});
    (void)redis_.command({"XADD", kChangesKey, "MAXLEN", "~", std::to_string(kChangesMaxLen), "*",
                          "kind", kChangeCard, "id", card.token.view()});
    const RedisReplyPtr exec = redis_.command({"EXEC"});
    if (exec->type == REDIS_REPLY_ARRAY) {
      out_ << "card " << card.masked << " " << (blocked ? "blocked" : "unblocked") << " (was "
           << from << ")\n";
      return kExitOk;
    }
  }
  err_ << "card " << card.masked << ": changed concurrently, try again\n";
  return kExitRuntime;
}

int Admin::adjust_balance(std::string_view id, std::int64_t amount_minor, std::string_view txn,
                          std::int64_t now_ms) {
  AS_ASSERT(amount_minor != 0);
  AccountKeys keys;
  if (!valid_name(id, kAccountIdMax) || !keys.set(id, kNoCard, txn)) {
    err_ << "account " << printable(id) << " or transaction key " << printable(txn)
         << ": not valid (1 to 64 printable characters without { } : or space)\n";
    return kExitBadInput;
  }
  const RedisReplyPtr cur = redis_.command({"HGET", keys.key(AccountKeys::kAccount), "cur"});
  if (!is_string(*cur)) {
    err_ << "account " << id << ": not found on " << redis_.address() << '\n';
    return kExitRuntime;
  }
  const std::string currency = text(*cur);
  const limits::FunctionLibrary& library = limits::holds_library();
  const RedisReplyPtr loaded = redis_.command({"FUNCTION", "LOAD", "REPLACE", library.text});
  if (!is_string(*loaded) || text(*loaded) != library.library) {
    throw RedisError("redis " + redis_.address() +
                     ": the holds library did not load (Redis 7 or later is needed)");
  }
  // The fingerprint covers the whole request: the same --txn with another amount is a
  // duplicate (94), with the same one a replay (the first answer, nothing changed).
  const std::string fingerprint =
      "adjust|" + std::string(txn) + "|" + std::to_string(amount_minor) + "|" + currency;
  const CallContext ctx{library.function,      id,         kNoCard, txn, now_ms,
                        kAdjustReplayWindowMs, fingerprint};
  HoldsCall call;
  const bool valid = call.set_adjust(ctx, amount_minor, currency);
  AS_ASSERT(valid);  // keys.set() accepted the same parts above
  const RedisReplyPtr r = redis_.command(call.args());
  const ReplyView view(*r);
  Decision d;
  if (!parse_decision(view.root(), d)) {
    throw RedisError("redis " + redis_.address() + ": unexpected reply of the holds script");
  }
  const std::int64_t magnitude = amount_minor > 0 ? amount_minor : -amount_minor;
  out_ << (amount_minor > 0 ? "credit " : "debit ") << money(magnitude, currency) << " account "
       << id << " txn " << txn << ": " << d.code() << (d.approved() ? " approved" : " declined");
  if (!d.reason_text().empty()) {
    out_ << " (" << d.reason_text() << ")";
  }
  out_ << "; balance " << money(d.balance_minor, currency) << ", available "
       << money(d.available_minor, currency) << '\n';
  return d.approved() ? kExitOk : kExitRuntime;
}

int Admin::show_profile(std::string_view name) {
  if (!valid_name(name, kProfileNameMax)) {
    err_ << "profile " << printable(name) << ": not a valid profile name\n";
    return kExitBadInput;
  }
  KeyBuffer buf;
  const RedisReplyPtr r = redis_.command({"HGETALL", profile_key(name, buf)});
  if (r->elements == 0) {
    err_ << "profile " << name << ": not found on " << redis_.address() << '\n';
    return kExitRuntime;
  }
  std::vector<std::string> storage;
  storage.reserve(r->elements);
  for (std::size_t i = 0; i < r->elements; ++i) {
    storage.push_back(text(*r->element[i]));
  }
  const std::vector<std::string_view> views(storage.begin(), storage.end());
  const auto profile = parse_profile_fields(views);
  if (!profile) {
    err_ << "profile " << name << ": its hash in Redis is malformed\n";
    return kExitRuntime;
  }
  // The import format, so the output can be edited and imported again.
  out_ << "profile,channel";
  for (const std::string_view column : kLimitColumns) {
    out_ << ',' << column;
  }
  out_ << '\n';
  for (std::size_t c = 0; c < kChannelCount; ++c) {
    out_ << name << ',' << kChannelNames[c];
    for (std::size_t l = 0; l < kLimitCount; ++l) {
      out_ << ',' << limit_at(profile->channels[c], l);
    }
    out_ << '\n';
  }
  return kExitOk;
}

int Admin::list_profiles() {
  const RedisReplyPtr r = redis_.command({"SMEMBERS", kProfilesKey});
  std::vector<std::string> names;
  for (std::size_t i = 0; i < r->elements; ++i) {
    names.push_back(text(*r->element[i]));
  }
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    out_ << n << '\n';
  }
  return kExitOk;
}

}  // namespace authswitch::admin
