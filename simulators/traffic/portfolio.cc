#include "simulators/traffic/portfolio.h"

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "simulators/traffic/rng_internal.h"

extern char** environ;  // POSIX: the process environment, passed on to authswitch-admin

namespace authswitch::netsim {

namespace {

// The issuer identification number of the simulator's cards: 499900 is inside Visa's 4 range
// but not issued to any bank we know of; the generator's unknown cards use 499901.
constexpr std::string_view kTestBin = "499900";
constexpr std::string_view kCardsHeader = "pan,expiry,account,currency,balance,status,profile";
constexpr std::string_view kProfilesHeader =
    "profile,channel,per_transaction_max,day_amount_max,day_count_max,month_amount_max,"
    "month_count_max";
constexpr std::array<std::string_view, 6> kStatuses = {"active", "blocked", "lost",
                                                       "stolen", "closed",  "inactive"};

void append_uint(std::string& out, std::uint64_t v, std::size_t width = 0) {
  std::array<char, 24> buf{};
  std::size_t n = 0;
  do {
    buf[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (std::size_t i = n; i < width; ++i) {
    out.push_back('0');
  }
  while (n > 0) {
    out.push_back(buf[--n]);
  }
}

int current_yy() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  return (tm.tm_year + 1900) % 100;
}

std::string profiles_csv(const std::vector<LimitProfileDef>& profiles) {
  std::string out(kProfilesHeader);
  out.push_back('\n');
  for (const LimitProfileDef& p : profiles) {
    for (std::size_t c = 0; c < kChannels; ++c) {
      const ChannelLimits& l = p.channels[c];
      out += p.name;
      out.push_back(',');
      out += channel_name(static_cast<Channel>(c));
      for (const std::int64_t v : {l.per_transaction_max, l.day_amount_max, l.day_count_max,
                                   l.month_amount_max, l.month_count_max}) {
        out.push_back(',');
        append_uint(out, static_cast<std::uint64_t>(v));
      }
      out.push_back('\n');
    }
  }
  return out;
}

std::string cards_csv(const Portfolio& p) {
  std::string out;
  out.reserve(kCardsHeader.size() + 1 + p.cards.size() * 64);
  out += kCardsHeader;
  out.push_back('\n');
  for (const TestCard& c : p.cards) {
    out += c.pan;
    out.push_back(',');
    out += c.expiry;
    out.push_back(',');
    out += c.account;
    out.push_back(',');
    append_uint(out, c.currency, 3);
    out.push_back(',');
    append_uint(out, static_cast<std::uint64_t>(c.balance_minor));
    out.push_back(',');
    out += c.status;
    out.push_back(',');
    out += c.profile;
    out.push_back('\n');
  }
  return out;
}

void write_file(const std::filesystem::path& path, std::string_view text) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    throw std::runtime_error(path.string() + ": cannot open for writing: " + std::strerror(errno));
  }
  const std::size_t n = std::fwrite(text.data(), 1, text.size(), f);
  const bool closed = std::fclose(f) == 0;
  if (n != text.size() || !closed) {
    throw std::runtime_error(path.string() + ": write failed: " + std::strerror(errno));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error(path + ": cannot open");
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return std::move(ss).str();
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Runs `argv` (argv[0] the program), stdout and stderr inherited; returns its exit status, or
// 1 when it could not be started or was killed by a signal.
int run(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));  // posix_spawn's signature; not written
  }
  argv.push_back(nullptr);
  std::cout.flush();
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, args[0].c_str(), nullptr, nullptr, argv.data(), environ);
  if (rc != 0) {
    std::cerr << "seed: cannot start " << args[0] << ": " << std::strerror(rc) << '\n';
    return 1;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      std::cerr << "seed: waitpid: " << std::strerror(errno) << '\n';
      return 1;
    }
  }
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  std::cerr << "seed: " << args[0] << " was killed by signal " << WTERMSIG(status) << '\n';
  return 1;
}

// Splits a CSV line at ','.
std::vector<std::string_view> split(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = line.find(',', start);
    if (comma == std::string_view::npos) {
      out.push_back(line.substr(start));
      return out;
    }
    out.push_back(line.substr(start, comma - start));
    start = comma + 1;
  }
}

bool all_digits(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (const char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
  }
  return true;
}

template <typename T>
bool parse_int(std::string_view s, T& v) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// Calls `row(line_number, fields)` for each non-empty line after the header, which must be
// `header`. Throws "file:line: reason".
template <typename Row>
void read_csv(const std::string& path, std::string_view text, std::string_view header, Row row) {
  std::size_t pos = 0;
  std::size_t line_no = 0;
  bool header_seen = false;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.empty()) {
      continue;
    }
    if (!header_seen) {
      if (line != header) {
        throw std::runtime_error(path + ":" + std::to_string(line_no) + ": the header must be " +
                                 std::string(header));
      }
      header_seen = true;
      continue;
    }
    const auto fields = split(line);
    try {
      row(fields);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(path + ":" + std::to_string(line_no) + ": " + e.what());
    }
  }
  if (!header_seen) {
    throw std::runtime_error(path + ":1: empty file (no header)");
  }
}

std::vector<LimitProfileDef> parse_profiles(const std::string& path, std::string_view text) {
  std::vector<LimitProfileDef> out;
  read_csv(path, text, kProfilesHeader, [&](const std::vector<std::string_view>& f) {
    if (f.size() != 7) {
      throw std::invalid_argument("expected 7 columns, found " + std::to_string(f.size()));
    }
    std::size_t ch = kChannels;
    for (std::size_t c = 0; c < kChannels; ++c) {
      if (f[1] == channel_name(static_cast<Channel>(c))) {
        ch = c;
      }
    }
    if (ch == kChannels) {
      throw std::invalid_argument("channel must be pos, cnp or atm");
    }
    LimitProfileDef* p = nullptr;
    for (auto& q : out) {
      if (q.name == f[0]) {
        p = &q;
      }
    }
    if (p == nullptr) {
      p = &out.emplace_back();
      p->name = std::string(f[0]);
    }
    ChannelLimits& l = p->channels[ch];
    std::int64_t* dst[] = {&l.per_transaction_max, &l.day_amount_max, &l.day_count_max,
                           &l.month_amount_max, &l.month_count_max};
    for (std::size_t i = 0; i < 5; ++i) {
      if (!parse_int(f[2 + i], *dst[i]) || *dst[i] < 0) {
        throw std::invalid_argument("column " + std::to_string(3 + i) + ": not an integer >= 0");
      }
    }
  });
  return out;
}

}  // namespace

std::string_view channel_name(Channel c) noexcept {
  switch (c) {
    case Channel::kPos:
      return "pos";
    case Channel::kCnp:
      return "cnp";
    case Channel::kAtm:
      return "atm";
  }
  return "pos";
}

const LimitProfileDef* Portfolio::profile(std::string_view name) const noexcept {
  for (const auto& p : profiles) {
    if (p.name == name) {
      return &p;
    }
  }
  return nullptr;
}

std::vector<LimitProfileDef> default_profiles() {
  std::vector<LimitProfileDef> out(2);
  // "sim": room for hours of load on every card (ordinary traffic must never meet a limit).
  out[0].name = std::string(kProfileSim);
  out[0].channels[0] = {500'000, 100'000'000, 100'000, 2'000'000'000, 2'000'000};
  out[0].channels[1] = {250'000, 100'000'000, 100'000, 2'000'000'000, 2'000'000};
  out[0].channels[2] = {100'000, 50'000'000, 50'000, 1'000'000'000, 1'000'000};
  // "sim-tight": small limits, so over-limit (61) and velocity abuse (65) are easy to reach.
  out[1].name = std::string(kProfileTight);
  out[1].channels[0] = {20'000, 60'000, 5, 2'000'000, 200};
  out[1].channels[1] = {10'000, 30'000, 3, 1'000'000, 100};
  out[1].channels[2] = {20'000, 40'000, 2, 500'000, 60};
  return out;
}

bool luhn_valid(std::string_view digits) noexcept {
  if (digits.size() < 2) {
    return false;
  }
  return luhn_check_digit(digits.substr(0, digits.size() - 1)) == digits.back();
}

char luhn_check_digit(std::string_view digits_without_check) noexcept {
  unsigned sum = 0;
  bool twice = true;  // the rightmost digit of the body is doubled
  for (std::size_t i = digits_without_check.size(); i-- > 0;) {
    const char c = digits_without_check[i];
    if (c < '0' || c > '9') {
      return '?';
    }
    unsigned d = static_cast<unsigned>(c - '0');
    if (twice) {
      d *= 2;
      if (d > 9) {
        d -= 9;
      }
    }
    sum += d;
    twice = !twice;
  }
  return static_cast<char>('0' + (10 - sum % 10) % 10);
}

Portfolio generate_portfolio(const SeedOptions& o) {
  if (o.cards_per_account == 0) {
    throw std::invalid_argument("seed: cards_per_account must be at least 1");
  }
  if (o.cards > 100'000'000) {
    throw std::invalid_argument("seed: at most 100,000,000 cards");
  }
  Portfolio p;
  p.profiles = default_profiles();
  p.cards.resize(o.cards);
  Rng rng(o.seed);
  const int base_yy = o.expiry_base_yy > 0 ? o.expiry_base_yy : current_yy();
  // PAN bodies: index * 3^18 + offset (mod 10^9) is a bijection on 9-digit numbers, so every
  // card is distinct without a set, and neighbours do not look sequential.
  constexpr std::uint64_t kSpace = 1'000'000'000;
  const std::uint64_t offset = rng.below(kSpace);
  std::int64_t balance = 0;
  std::string_view profile;
  std::string account;
  std::array<char, 32> buf{};
  for (std::uint64_t i = 0; i < o.cards; ++i) {
    TestCard& c = p.cards[i];
    const std::uint64_t a = i / o.cards_per_account;
    if (i % o.cards_per_account == 0) {
      account = "SIM-";
      append_uint(account, a, 7);
      const double u = rng.unit();
      if (u < o.low_balance_share) {
        balance = static_cast<std::int64_t>(rng.below(50'001));  // $0 .. $500
        profile = kProfileSim;
      } else if (u < o.low_balance_share + o.tight_share) {
        balance = 200'000 + static_cast<std::int64_t>(rng.below(800'001));  // $2,000 .. $10,000
        profile = kProfileTight;
      } else {
        balance = 5'000'000 + static_cast<std::int64_t>(rng.below(95'000'001));  // $50K .. $1M
        profile = kProfileSim;
      }
    }
    c.account = account;
    c.balance_minor = balance;
    c.profile = std::string(profile);
    c.currency = 840;
    const std::uint64_t body = (i * 387'420'489ULL + offset) % kSpace;
    c.pan.assign(kTestBin);
    append_uint(c.pan, body, 9);
    c.pan.push_back(luhn_check_digit(c.pan));
    const double s = rng.unit();
    if (s < o.blocked_share) {
      c.status = "blocked";
    } else if (s < o.blocked_share + o.lost_share) {
      c.status = "lost";
    } else if (s < o.blocked_share + o.lost_share + o.stolen_share) {
      c.status = "stolen";
    } else {
      c.status = "active";
    }
    const bool expired = c.status == "active" && rng.chance(o.expired_share);
    const int yy = expired ? base_yy - 1 - static_cast<int>(rng.below(3))
                           : base_yy + 2 + static_cast<int>(rng.below(5));
    const int mm = 1 + static_cast<int>(rng.below(12));
    std::snprintf(buf.data(), buf.size(), "%02d%02d", (yy + 100) % 100, mm);
    c.expiry.assign(buf.data(), 4);
  }
  return p;
}

Portfolio Portfolio::load(const std::string& test_cards_csv) {
  Portfolio p;
  const std::string text = read_file(test_cards_csv);
  std::size_t lines = 0;
  for (const char ch : text) {
    lines += ch == '\n' ? 1 : 0;
  }
  p.cards.reserve(lines);
  read_csv(test_cards_csv, text, kCardsHeader, [&](const std::vector<std::string_view>& f) {
    if (f.size() != 7) {
      throw std::invalid_argument("expected 7 columns, found " + std::to_string(f.size()));
    }
    TestCard c;
    // Never echo the PAN column: describe it.
    if (f[0].size() < 12 || f[0].size() > 19 || !all_digits(f[0])) {
      throw std::invalid_argument("pan: not 12 to 19 digits (" + std::to_string(f[0].size()) +
                                  " characters)");
    }
    if (!luhn_valid(f[0])) {
      throw std::invalid_argument("pan: fails the Luhn check");
    }
    c.pan = std::string(f[0]);
    if (f[1].size() != 4 || !all_digits(f[1])) {
      throw std::invalid_argument("expiry: not YYMM");
    }
    c.expiry = std::string(f[1]);
    if (f[2].empty() || f[2].size() > 40) {
      throw std::invalid_argument("account: empty or longer than 40 characters");
    }
    c.account = std::string(f[2]);
    if (f[3].size() != 3 || !parse_int(f[3], c.currency)) {
      throw std::invalid_argument("currency: not a 3-digit ISO 4217 code");
    }
    if (!parse_int(f[4], c.balance_minor) || c.balance_minor < 0) {
      throw std::invalid_argument("balance: not an integer >= 0");
    }
    bool known = false;
    for (const std::string_view s : kStatuses) {
      known = known || s == f[5];
    }
    if (!known) {
      throw std::invalid_argument(
          "status: not one of active, blocked, lost, stolen, closed, "
          "inactive");
    }
    c.status = std::string(f[5]);
    c.profile = f[6].empty() ? std::string("default") : std::string(f[6]);
    p.cards.push_back(std::move(c));
  });
  const std::filesystem::path profiles =
      std::filesystem::path(test_cards_csv).parent_path() / "profiles.csv";
  if (std::filesystem::exists(profiles)) {
    p.profiles = parse_profiles(profiles.string(), read_file(profiles.string()));
  } else {
    p.profiles = default_profiles();
  }
  return p;
}

int seed(const SeedOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    const Portfolio p = generate_portfolio(o);
    const double generated_ms = ms_since(t0);
    const std::size_t accounts = (p.cards.size() + o.cards_per_account - 1) / o.cards_per_account;
    std::cout << "seed: generated " << p.cards.size() << " cards in " << accounts
              << " accounts (seed " << o.seed << ") in " << static_cast<long>(generated_ms)
              << " ms\n";
    const auto t1 = std::chrono::steady_clock::now();
    const std::filesystem::path dir(o.out_dir);
    std::filesystem::create_directories(dir);
    write_file(dir / "profiles.csv", profiles_csv(p.profiles));
    const std::string cards = cards_csv(p);
    write_file(dir / "cards.csv", cards);
    // The same rows: test-cards.csv is what netsim reads back (Portfolio::load); cards.csv is
    // what the operator's tool imports, and may be edited or deleted after seeding.
    write_file(dir / "test-cards.csv", cards);
    std::cout << "seed: wrote " << (dir / "profiles.csv").string() << ", "
              << (dir / "cards.csv").string() << " and " << (dir / "test-cards.csv").string()
              << " in " << static_cast<long>(ms_since(t1)) << " ms\n";
    if (o.admin_binary.empty()) {
      std::cout << "seed: no authswitch-admin given: files only\n";
      return 0;
    }
    const auto t2 = std::chrono::steady_clock::now();
    std::cout << "seed: importing profiles into " << o.redis << '\n';
    int rc = run({o.admin_binary, "--redis", o.redis, "import", "profiles",
                  (dir / "profiles.csv").string()});
    if (rc != 0) {
      std::cerr << "seed: authswitch-admin import profiles failed (exit " << rc << ")\n";
      return rc;
    }
    std::cout << "seed: importing " << p.cards.size() << " cards into " << o.redis << '\n';
    const auto t3 = std::chrono::steady_clock::now();
    rc = run({o.admin_binary, "--redis", o.redis, "import", "cards", (dir / "cards.csv").string()});
    if (rc != 0) {
      std::cerr << "seed: authswitch-admin import cards failed (exit " << rc << ")\n";
      return rc;
    }
    const double import_ms = ms_since(t3);
    std::cout << "seed: imported " << p.cards.size() << " cards in " << static_cast<long>(import_ms)
              << " ms ("
              << static_cast<long>(
                     import_ms > 0 ? static_cast<double>(p.cards.size()) * 1000.0 / import_ms : 0.0)
              << " cards/s); profiles and cards in " << static_cast<long>(ms_since(t2)) << " ms\n";
    std::cout << "seed: done in " << static_cast<long>(ms_since(t0)) << " ms\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "seed: " << e.what() << '\n';
    return 2;
  }
}

}  // namespace authswitch::netsim
