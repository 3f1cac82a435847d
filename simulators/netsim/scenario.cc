#include "simulators/netsim/scenario.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <sstream>

#include <boost/asio/io_context.hpp>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "iso8583/action_codes.h"
#include "iso8583/dialect_loader.h"
#include "iso8583/message.h"
#include "simulators/traffic/portfolio.h"

namespace authswitch::netsim {

namespace {

// ---------------------------------------------------------------------------------------------
// Parsing.

[[nodiscard]] std::vector<std::string> split_words(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  std::string w;
  while (in >> w) {
    out.push_back(w);
  }
  return out;
}

[[nodiscard]] bool valid_ident(std::string_view s) {
  return !s.empty() && s.size() <= 20 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

[[nodiscard]] std::optional<std::int64_t> parse_int(std::string_view s) {
  std::int64_t v = 0;
  if (s.empty()) {
    return std::nullopt;
  }
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

[[nodiscard]] bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) { s_.file = file_; }

  Scenario parse(const std::string& text) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      ++line_;
      if (!line.empty() && line.back() == '\r') {
        line.pop_back();
      }
      const std::size_t hash = line.find('#');
      if (hash != std::string::npos) {
        line.resize(hash);
      }
      const std::vector<std::string> w = split_words(line);
      if (w.empty()) {
        continue;
      }
      const std::string& d = w[0];
      if (d == "dialect") {
        setup_only(d);
        dialect(w);
      } else if (d == "profile") {
        setup_only(d);
        profile(w);
      } else if (d == "account") {
        setup_only(d);
        account(w);
      } else if (d == "card") {
        setup_only(d);
        card(w);
      } else if (d == "send") {
        send(w);
      } else if (d == "expect") {
        expect(w);
      } else if (d == "balance") {
        balance(w);
      } else {
        fail("unknown directive '" + d +
             "' (one of: dialect, profile, account, card, send, expect, balance)");
      }
    }
    if (awaiting_expect_) {
      line_ = last_send_line_;
      fail("send has no expect line after it");
    }
    if (s_.steps.empty()) {
      line_ = 0;
      fail("no send line: a scenario needs at least one message");
    }
    return std::move(s_);
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw ScenarioError(file_ + ":" + std::to_string(line_) + ": " + why);
  }

  // `dialect NAME`: the shipped dialect the scenario is written for (its MTIs and codes).
  void dialect(const std::vector<std::string>& w) {
    if (w.size() != 2) {
      fail("dialect: give one shipped dialect name");
    }
    const std::vector<std::string_view> names = iso8583::builtin_dialect_names();
    if (std::find(names.begin(), names.end(), w[1]) == names.end()) {
      fail("dialect: '" + w[1] + "' is not a shipped dialect");
    }
    if (!s_.dialect.empty()) {
      fail("dialect given twice");
    }
    s_.dialect = w[1];
  }

  void setup_only(const std::string& d) const {
    if (!s_.steps.empty()) {
      fail(d + " must come before the first send");
    }
  }

  // key=value of word i.
  [[nodiscard]] std::pair<std::string, std::string> kv(const std::string& word) const {
    const std::size_t eq = word.find('=');
    if (eq == std::string::npos || eq == 0) {
      fail("expected KEY=VALUE, got '" + word + "'");
    }
    return {word.substr(0, eq), word.substr(eq + 1)};
  }

  std::string name_at(const std::vector<std::string>& w, std::size_t i, const char* what) const {
    if (w.size() <= i) {
      fail(std::string("missing ") + what);
    }
    if (!valid_ident(w[i])) {
      fail(std::string(what) + " '" + w[i] + "': use 1..20 of A-Z a-z 0-9 _ -");
    }
    return w[i];
  }

  [[nodiscard]] std::int64_t amount(const std::string& key, const std::string& v) const {
    const auto n = parse_int(v);
    if (!n || *n < 0) {
      fail(key + ": '" + v + "' is not an amount in minor units (an integer >= 0)");
    }
    return *n;
  }

  void profile(const std::vector<std::string>& w) {
    ScenarioProfile p;
    p.name = name_at(w, 1, "profile name");
    if (p.name.rfind("scn-", 0) != 0) {
      fail("profile '" + p.name + "': scenario profile names start with scn- (" +
           "they are shared by every run)");
    }
    std::array<bool, 3> seen{};
    for (std::size_t i = 2; i < w.size(); ++i) {
      const auto [key, value] = kv(w[i]);
      const std::string& k = key;
      const std::string& v = value;
      const std::size_t ch = k == "pos" ? 0 : k == "cnp" ? 1 : k == "atm" ? 2 : 3;
      if (ch == 3) {
        fail("profile: unknown channel '" + k + "' (one of: pos, cnp, atm)");
      }
      std::size_t n = 0;
      std::istringstream parts(v);
      std::string part;
      while (std::getline(parts, part, '/')) {
        if (n == 5) {
          fail("profile " + k + ": expected 5 limits T/DA/DN/MA/MN");
        }
        p.limits[ch][n++] = amount(k, part);
      }
      if (n != 5) {
        fail("profile " + k + ": expected 5 limits T/DA/DN/MA/MN");
      }
      seen[ch] = true;
    }
    if (!seen[0] || !seen[1] || !seen[2]) {
      fail("profile " + p.name + ": give pos=, cnp= and atm=");
    }
    for (const auto& other : s_.profiles) {
      if (other.name == p.name) {
        fail("profile " + p.name + " declared twice");
      }
    }
    s_.profiles.push_back(p);
  }

  void account(const std::vector<std::string>& w) {
    ScenarioAccount a;
    a.name = name_at(w, 1, "account name");
    bool has_balance = false;
    for (std::size_t i = 2; i < w.size(); ++i) {
      const auto [key, value] = kv(w[i]);
      const std::string& k = key;
      const std::string& v = value;
      if (k == "balance") {
        a.balance_minor = amount(k, v);
        has_balance = true;
      } else if (k == "currency") {
        if (v.size() != 3 || !all_digits(v)) {
          fail("currency: '" + v + "' is not an ISO 4217 numeric code");
        }
        a.currency = v;
      } else {
        fail("account: unknown key '" + k + "' (one of: balance, currency)");
      }
    }
    if (!has_balance) {
      fail("account " + a.name + ": balance= is required");
    }
    if (find_account(a.name) != nullptr) {
      fail("account " + a.name + " declared twice");
    }
    s_.accounts.push_back(a);
  }

  void card(const std::vector<std::string>& w) {
    ScenarioCard c;
    c.name = name_at(w, 1, "card name");
    for (const auto& other : s_.cards) {
      if (other.name == c.name) {
        fail("card " + c.name + " declared twice");
      }
    }
    if (w.size() == 3 && w[2] == "unknown") {
      c.unknown = true;
      s_.cards.push_back(c);
      return;
    }
    for (std::size_t i = 2; i < w.size(); ++i) {
      const auto [key, value] = kv(w[i]);
      const std::string& k = key;
      const std::string& v = value;
      if (k == "account") {
        if (find_account(v) == nullptr) {
          fail("card " + c.name + ": no account '" + v + "' declared before it");
        }
        c.account = v;
      } else if (k == "status") {
        static const std::set<std::string> kStatuses = {"active", "blocked", "lost",
                                                        "stolen", "closed",  "inactive"};
        if (kStatuses.count(v) == 0) {
          fail("status: '" + v + "' (one of: active, blocked, lost, stolen, closed, inactive)");
        }
        c.status = v;
      } else if (k == "expiry") {
        if (v != "expired" && (v.size() != 4 || !all_digits(v))) {
          fail("expiry: '" + v + "' is not YYMM or 'expired'");
        }
        c.expiry = v;
      } else if (k == "profile") {
        if (std::none_of(s_.profiles.begin(), s_.profiles.end(),
                         [&](const ScenarioProfile& p) { return p.name == v; })) {
          fail("card " + c.name + ": no profile '" + v + "' declared before it");
        }
        c.profile = v;
      } else {
        fail("card: unknown key '" + k + "' (one of: account, status, expiry, profile)");
      }
    }
    if (c.account.empty()) {
      fail("card " + c.name + ": account= is required (or 'unknown')");
    }
    s_.cards.push_back(c);
  }

  [[nodiscard]] std::uint16_t mti_at(const std::vector<std::string>& w, std::size_t i) const {
    if (w.size() <= i) {
      fail("missing MTI");
    }
    if (w[i].size() != 4 || !all_digits(w[i])) {
      fail("MTI '" + w[i] + "' is not four digits");
    }
    return static_cast<std::uint16_t>(std::stoi(w[i]));
  }

  [[nodiscard]] int de_of(const std::string& k) const {
    const auto n = parse_int(k);
    if (!n || *n < 2 || *n > 128 || *n == 65) {
      fail("'" + k + "' is not a data element number (2..128, not 65)");
    }
    return static_cast<int>(*n);
  }

  void send(const std::vector<std::string>& w) {
    if (awaiting_expect_) {
      line_ = last_send_line_;
      fail("send has no expect line after it");
    }
    ScenarioStep st;
    st.kind = ScenarioStep::Kind::kSend;
    st.line = line_;
    st.label = name_at(w, 1, "send label");
    if (labels_.count(st.label) != 0) {
      fail("label " + st.label + " used twice");
    }
    st.mti = mti_at(w, 2);
    if (iso8583::response_mti(st.mti) == 0) {
      fail("MTI " + w[2] + " is not a request or advice (it has no response)");
    }
    for (std::size_t i = 3; i < w.size(); ++i) {
      const auto [key, value] = kv(w[i]);
      const std::string& k = key;
      const std::string& v = value;
      if (k == "card") {
        if (std::none_of(s_.cards.begin(), s_.cards.end(),
                         [&](const ScenarioCard& c) { return c.name == v; })) {
          fail("no card '" + v + "' declared");
        }
        st.card = v;
      } else if (k == "same") {
        if (labels_.count(v) == 0) {
          fail("same=" + v + ": no earlier send with that label");
        }
        st.same = v;
      } else {
        StepField f{de_of(k), v};
        if (v.empty()) {
          fail(std::string("DE ")
                   .append(k)
                   .append(": empty value (use ")
                   .append(k)
                   .append("=- to remove a field)"));
        }
        if (v[0] == '@' && labels_.count(v.substr(1)) == 0) {
          fail(std::string("DE ").append(k).append("=").append(v).append(
              ": no earlier send with that label"));
        }
        if (v[0] == '@' && f.de != 90 && f.de != 56) {
          fail("DE " + k + ": @LABEL references are for DE 90 (or 56, ISO 8583:1993) in a send");
        }
        if (v.rfind("remaining:", 0) == 0) {
          if (f.de != 95) {
            fail("DE " + k + ": remaining: is for DE 95");
          }
          (void)amount("remaining", v.substr(10));
        }
        st.fields.push_back(f);
      }
    }
    labels_.insert(st.label);
    awaiting_expect_ = true;
    last_send_line_ = line_;
    s_.steps.push_back(st);
  }

  void expect(const std::vector<std::string>& w) {
    if (!awaiting_expect_) {
      fail("expect without a send before it");
    }
    ScenarioStep st;
    st.kind = ScenarioStep::Kind::kExpect;
    st.line = line_;
    st.mti = mti_at(w, 1);
    st.label = s_.steps.back().label;
    for (std::size_t i = 2; i < w.size(); ++i) {
      const auto [key, value] = kv(w[i]);
      const std::string& k = key;
      const std::string& v = value;
      if (k == "available") {
        st.available = amount(k, v);
      } else if (k == "ledger") {
        st.ledger = amount(k, v);
      } else {
        StepField f{de_of(k), v};
        if (v.empty()) {
          fail("DE " + k + ": empty value");
        }
        if (v[0] == '@' && labels_.count(v.substr(1)) == 0) {
          fail(std::string("DE ").append(k).append("=").append(v).append(
              ": no earlier send with that label"));
        }
        st.fields.push_back(f);
      }
    }
    awaiting_expect_ = false;
    s_.steps.push_back(st);
  }

  void balance(const std::vector<std::string>& w) {
    if (awaiting_expect_) {
      line_ = last_send_line_;
      fail("send has no expect line after it");
    }
    ScenarioStep st;
    st.kind = ScenarioStep::Kind::kBalance;
    st.line = line_;
    st.label = name_at(w, 1, "account");
    if (find_account(st.label) == nullptr) {
      fail("balance: no account '" + st.label + "' declared");
    }
    if (w.size() < 3) {
      fail("balance: give at least one of balance=, held=, available=");
    }
    for (std::size_t i = 2; i < w.size(); ++i) {
      const auto [key, value] = kv(w[i]);
      const std::string& k = key;
      const std::string& v = value;
      if (k == "balance") {
        st.balance = amount(k, v);
      } else if (k == "held") {
        st.held = amount(k, v);
      } else if (k == "available") {
        st.available = amount(k, v);
      } else {
        fail("balance: unknown key '" + k + "' (one of: balance, held, available)");
      }
    }
    s_.steps.push_back(st);
  }

  [[nodiscard]] const ScenarioAccount* find_account(const std::string& name) const {
    for (const auto& a : s_.accounts) {
      if (a.name == name) {
        return &a;
      }
    }
    return nullptr;
  }

  std::string file_;
  int line_ = 0;
  Scenario s_;
  std::set<std::string> labels_;
  bool awaiting_expect_ = false;
  int last_send_line_ = 0;
};

}  // namespace

Scenario parse_scenario(const std::string& text, const std::string& file) {
  return Parser(file).parse(text);
}

Scenario load_scenario(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw ScenarioError(path + ":0: cannot read the file");
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_scenario(text.str(), path);
}

// ---------------------------------------------------------------------------------------------
// Subprocesses.

int run_capture(const std::vector<std::string>& argv, std::string& output) {
  output.clear();
  std::array<int, 2> fds{};
  if (::pipe2(fds.data(), O_CLOEXEC) != 0) {
    return -1;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::array<char, 4096> buf{};
  for (;;) {
    const ssize_t n = ::read(fds[0], buf.data(), buf.size());
    if (n > 0) {
      output.append(buf.data(), static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

namespace {

// ---------------------------------------------------------------------------------------------
// Running.

using Fields = std::map<int, std::string>;

struct Received {
  std::uint16_t mti = 0;
  Fields fields;
};

class Collector final : public Link::Handler {
 public:
  std::deque<Received> inbox;
  std::string closed;
  std::vector<std::string> bad;

  void on_ready(Link&) override {}
  void on_message(Link&, const iso8583::MessageView& msg) override {
    Received r;
    r.mti = msg.mti();
    std::array<char, 1024> buf{};
    for (int de = 2; de <= 128; ++de) {
      if (de != 65 && msg.has(de)) {
        r.fields[de] = std::string(iso8583::text_value(msg.field(de), buf));
      }
    }
    inbox.push_back(std::move(r));
  }
  void on_bad_message(Link&, std::string_view why) override { bad.emplace_back(why); }
  void on_closed(Link&, std::string_view why) override { closed = std::string(why); }
};

[[nodiscard]] std::string fixed_digits(std::uint64_t v, std::size_t width) {
  std::string s(width, '0');
  for (std::size_t i = width; i > 0; --i) {
    s[i - 1] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
  return s;
}

// A masked rendering of a field for failure messages: DE 2 and DE 35 never in clear.
[[nodiscard]] std::string shown(int de, const std::string& v) {
  if (de == 2 || de == 35) {
    if (v.size() < 12) {
      std::string stars(v.size(), '*');
      return stars;
    }
    return v.substr(0, 6) + std::string(v.size() - 10, '*') + v.substr(v.size() - 4);
  }
  return v;
}

// DE 54 entries (20 characters: account type 2, amount type 2, currency 3, sign, 12 digits).
[[nodiscard]] std::int64_t de54_amount(const std::string& v, std::string_view type) {
  for (std::size_t at = 0; at + 20 <= v.size(); at += 20) {
    if (std::string_view(v).substr(at + 2, 2) == type) {
      const auto n = parse_int(std::string_view(v).substr(at + 8, 12));
      if (!n) {
        return -1;
      }
      return v[at + 7] == 'D' ? -*n : *n;
    }
  }
  return -1;
}

// "  balance    100000 (840)" -> 100000.
[[nodiscard]] std::optional<std::int64_t> show_value(const std::string& out,
                                                     const std::string& key) {
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string k;
    std::string v;
    if (words >> k >> v && k == key) {
      return parse_int(v);
    }
  }
  return std::nullopt;
}

struct CardData {
  std::string pan;
  std::string expiry;
};

class Runner {
 public:
  Runner(const Scenario& s, const ScenarioRunOptions& o)
      : s_(s),
        o_(o),
        // A scenario that names its dialect runs in it, whatever the options say.
        dialect_(s.dialect.empty() ? o.links.link.dialect : &iso8583::builtin_dialect(s.dialect)),
        iso93_(dialect_ != nullptr && iso8583::uses_action_codes(*dialect_)) {
    std::random_device rd;
    std::mt19937_64 rng((std::uint64_t{rd()} << 32U) ^ rd() ^
                        static_cast<std::uint64_t>(::getpid()));
    run_ = rng();
    r_.file = s.file;
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    ::gmtime_r(&now, &utc);
    const int yy = utc.tm_year % 100;
    future_expiry_ = fixed_digits(static_cast<std::uint64_t>((yy + 3) % 100), 2) + "12";
    past_expiry_ = fixed_digits(static_cast<std::uint64_t>((yy + 99) % 100), 2) + "01";
    // Per run: a random acquirer (DE 32) and STAN/RRN bases, so transaction keys never meet
    // those of another run on the same Redis.
    acquirer_ = "9" + fixed_digits(run_ % 10'000'000, 7);
    stan_ = static_cast<std::uint32_t>((run_ >> 24U) % 800'000);
    run_tag_ = fixed_digits((run_ >> 8U) % 10'000'000, 7);
  }

  ScenarioResult run() {
    const auto t0 = std::chrono::steady_clock::now();
    make_cards();
    if (!import()) {
      return finish(t0);
    }
    boost::asio::io_context io(1);
    Collector collector;
    if (iso93_ && s_.dialect.empty()) {
      failure(0, "an ISO 8583:1987 scenario cannot run in the 1993 dialect " +
                     std::string(dialect_->name()) + " (name it with a `dialect` line)");
      return finish(t0);
    }
    LinkSetOptions lo = o_.links;
    lo.connections = 1;
    lo.link.dialect = dialect_;
    lo.link.acquirer_id = acquirer_;
    LinkSet links(io, lo, collector);
    links.start();
    if (const std::string why = links.wait_ready(std::chrono::seconds(10)); !why.empty()) {
      failure(0, "the switch did not take the connection: " + why);
      return finish(t0);
    }
    for (const ScenarioStep& st : s_.steps) {
      ++r_.steps_run;
      const std::size_t before = r_.failures.size();
      switch (st.kind) {
        case ScenarioStep::Kind::kSend:
          send(st, links.link(0));
          break;
        case ScenarioStep::Kind::kExpect:
          expect(st, io, collector);
          break;
        case ScenarioStep::Kind::kBalance:
          balance(st);
          break;
      }
      if (r_.failures.size() > before && st.kind != ScenarioStep::Kind::kBalance &&
          !collector.closed.empty()) {
        break;  // the connection is gone: nothing after this can pass
      }
    }
    links.close_all();
    io.restart();
    io.poll();
    return finish(t0);
  }

 private:
  ScenarioResult finish(std::chrono::steady_clock::time_point t0) {
    r_.passed = r_.failures.empty();
    r_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r_;
  }

  void failure(int line, const std::string& what) {
    r_.failures.push_back(s_.file + ":" + std::to_string(line) + ": " + what);
  }

  [[nodiscard]] std::string account_id(const std::string& name) const {
    return "s" + run_tag_ + "-" + name;
  }
  static std::string profile_of(const ScenarioCard& c) {
    return c.profile.empty() ? "scn-default" : c.profile;
  }

  void make_cards() {
    std::uint64_t n = 0;
    for (const ScenarioCard& c : s_.cards) {
      // A test BIN, the run's number and the card's index, then the Luhn digit.
      const std::string body = "459999" + run_tag_ + fixed_digits(n++, 2);
      CardData d;
      d.pan = body + luhn_check_digit(body);
      d.expiry = c.expiry.empty()        ? future_expiry_
                 : c.expiry == "expired" ? past_expiry_
                                         : c.expiry;
      cards_[c.name] = d;
    }
  }

  bool import() {
    namespace fs = std::filesystem;
    fs::path dir = o_.work_dir.empty()
                       ? fs::temp_directory_path() /
                             ("netsim-scn-" + run_tag_ + "-" + std::to_string(::getpid()))
                       : fs::path(o_.work_dir);
    fs::create_directories(dir);
    const fs::path profiles = dir / "profiles.csv";
    const fs::path cards = dir / "cards.csv";
    {
      std::ofstream p(profiles);
      p << "profile,channel,per_transaction_max,day_amount_max,day_count_max,month_amount_max,"
           "month_count_max\n";
      // The shipped default limits (config/profiles.csv) under the scenarios' own name.
      p << "scn-default,pos,500000,1000000,50,5000000,500\n"
        << "scn-default,cnp,250000,500000,30,2500000,300\n"
        << "scn-default,atm,100000,100000,10,1000000,100\n";
      static constexpr std::array<const char*, 3> kChannels = {"pos", "cnp", "atm"};
      for (const ScenarioProfile& pr : s_.profiles) {
        for (std::size_t ch = 0; ch < 3; ++ch) {
          p << pr.name << ',' << kChannels[ch];
          for (const std::int64_t v : pr.limits[ch]) {
            p << ',' << v;
          }
          p << '\n';
        }
      }
    }
    bool any_card = false;
    {
      std::ofstream c(cards);
      c << "pan,expiry,account,currency,balance,status,profile\n";
      for (const ScenarioCard& sc : s_.cards) {
        if (sc.unknown) {
          continue;
        }
        const ScenarioAccount* a = account(sc.account);
        const CardData& d = cards_.at(sc.name);
        c << d.pan << ',' << d.expiry << ',' << account_id(a->name) << ',' << a->currency << ','
          << a->balance_minor << ',' << sc.status << ',' << profile_of(sc) << '\n';
        any_card = true;
      }
    }
    std::string out;
    int rc =
        run_capture({o_.admin, "import", "profiles", profiles.string(), "--redis", o_.redis}, out);
    if (rc != 0) {
      failure(0, "authswitch-admin import profiles failed (exit " + std::to_string(rc) + ")");
      return false;
    }
    if (any_card) {
      rc = run_capture({o_.admin, "import", "cards", cards.string(), "--redis", o_.redis}, out);
      if (rc != 0) {
        failure(0, "authswitch-admin import cards failed (exit " + std::to_string(rc) + ")");
        return false;
      }
    }
    if (o_.work_dir.empty()) {
      std::error_code ignored;
      fs::remove_all(dir, ignored);  // the CSV holds PANs: do not leave it behind
    }
    return true;
  }

  [[nodiscard]] const ScenarioAccount* account(const std::string& name) const {
    for (const auto& a : s_.accounts) {
      if (a.name == name) {
        return &a;
      }
    }
    return nullptr;
  }

  std::string next_stan() {
    stan_ = stan_ >= 899'999 ? 1 : stan_ + 1;
    return fixed_digits(stan_, 6);  // below 900000: netsim's own 0800s use the rest
  }

  static std::string now_de7() {
    std::array<char, 10> buf{};
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    return std::string(format_de7(ms, buf));
  }

  // DE 12 of ISO 8583:1993: local date and time YYMMDDhhmmss (UTC here).
  static std::string now_de12() {
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    ::gmtime_r(&now, &utc);
    return fixed_digits(static_cast<std::uint64_t>(utc.tm_year % 100), 2) +
           fixed_digits(static_cast<std::uint64_t>(utc.tm_mon + 1), 2) +
           fixed_digits(static_cast<std::uint64_t>(utc.tm_mday), 2) +
           fixed_digits(static_cast<std::uint64_t>(utc.tm_hour), 2) +
           fixed_digits(static_cast<std::uint64_t>(utc.tm_min), 2) +
           fixed_digits(static_cast<std::uint64_t>(utc.tm_sec), 2);
  }

  // The fields of a send: netsim's defaults (or those of `same=`), the card, then the line's.
  Fields fields_for(const ScenarioStep& st) {
    Fields f;
    const int cls = st.mti % 1000 / 100;
    if (!st.same.empty()) {
      f = sent_.at(st.same).fields;
    } else {
      const std::string de7 = now_de7();
      f[7] = de7;
      f[11] = next_stan();
      if (cls != 8 && iso93_) {
        // ISO 8583:1993: DE 12 YYMMDDhhmmss, DE 22 the point-of-service data code (chip,
        // attended, cardholder and card present); no DE 13 (date, effective) or DE 25 (a
        // message reason code).
        f[12] = now_de12();
      } else if (cls != 8) {
        f[12] = de7.substr(4, 6);
        f[13] = de7.substr(0, 4);
      }
      if (cls != 8) {
        f[32] = acquirer_;
        f[37] = run_tag_ + f[11].substr(1);  // 7 + 5 = 12 characters, unique per run
        f[41] = "TERM0001";
        f[42] = "MERCHANT0000001";
        f[43] = "NETSIM SCENARIO STORE  SPRINGFIELD    US";
        f[49] = "840";
        if (cls == 1 || cls == 2) {
          f[3] = "000000";
          f[18] = "5411";
          if (iso93_) {
            f[22] = "510101511001";
          } else {
            f[22] = "051";
            f[25] = "00";
          }
        }
      }
    }
    if (!st.card.empty()) {
      const CardData& d = cards_.at(st.card);
      f[2] = d.pan;
      f[14] = d.expiry;
    }
    for (const StepField& sf : st.fields) {
      if (sf.value == "-") {
        f.erase(sf.de);
      } else if (sf.value[0] == '@') {
        const Sent& original = sent_.at(sf.value.substr(1));
        f[sf.de] = sf.de == 56 ? original_data_93(original) : original_data(original);
      } else if (sf.value.rfind("remaining:", 0) == 0) {
        const auto v = parse_int(std::string_view(sf.value).substr(10));
        f[95] = fixed_digits(static_cast<std::uint64_t>(*v), 12) + std::string(12, '0') +
                "C00000000C00000000";
      } else {
        f[sf.de] = sf.value;
      }
    }
    return f;
  }

  struct Sent;
  // ISO 8583:1993 DE 56: original MTI, STAN, local date and time (DE 12), and the acquirer
  // (DE 32) with its two-digit length.
  static std::string original_data_93(const Sent& orig) {
    const auto get = [&](int de) {
      const auto it = orig.fields.find(de);
      return it == orig.fields.end() ? std::string() : it->second;
    };
    const std::string acq = get(32);
    return fixed_digits(orig.mti, 4) + get(11) + get(12) +
           fixed_digits(static_cast<std::uint64_t>(acq.size()), 2) + acq;
  }
  // ISO 8583:1987 DE 90: original MTI, STAN, transmission date and time, acquirer and
  // forwarding institution ids (11 digits each, zero-filled on the left).
  static std::string original_data(const Sent& orig) {
    const auto get = [&](int de) {
      const auto it = orig.fields.find(de);
      return it == orig.fields.end() ? std::string() : it->second;
    };
    const std::string acq = get(32);
    return fixed_digits(orig.mti, 4) + get(11) + get(7) + std::string(11 - acq.size(), '0') + acq +
           std::string(11, '0');
  }

  void send(const ScenarioStep& st, Link& link) {
    const Fields f = fields_for(st);
    const iso8583::Dialect& d = *dialect_;
    iso8583::MessageBuilder b(d);
    b.reset(st.mti);
    for (const auto& [de, v] : f) {
      if (!d.field(de).defined) {
        failure(st.line, "DE " + std::to_string(de) + " is not defined in the dialect");
        return;
      }
      b.set_text(de, v);
    }
    std::vector<std::byte> out(d.info().max_message_bytes + 64);
    const auto n = b.encode(out);
    if (!n) {
      std::array<char, 160> why{};
      failure(st.line, "cannot encode: " + std::string(iso8583::describe(n.error(), why)));
      return;
    }
    if (!link.send({out.data(), *n})) {
      failure(st.line, "cannot send (connection closed)");
      return;
    }
    sent_[st.label] = Sent{st.mti, f, {}, true};
  }

  static std::string field(const Fields& fs, int de) {
    const auto it = fs.find(de);
    return it == fs.end() ? std::string() : it->second;
  }

  // The next answer, or nullopt (and a failure) when none comes in time.
  std::optional<Received> next_answer(const ScenarioStep& st, boost::asio::io_context& io,
                                      Collector& c) {
    const auto until = std::chrono::steady_clock::now() + o_.timeout;
    while (c.inbox.empty() && c.closed.empty() && std::chrono::steady_clock::now() < until) {
      io.run_one_for(std::chrono::milliseconds(20));
    }
    if (c.inbox.empty()) {
      failure(st.line, "expected " + fixed_digits(st.mti, 4) + " to " + st.label + ": " +
                           (c.closed.empty()
                                ? "no answer within " + std::to_string(o_.timeout.count()) + " ms"
                                : "connection closed: " + c.closed));
      return std::nullopt;
    }
    Received got = std::move(c.inbox.front());
    c.inbox.pop_front();
    return got;
  }

  void expect(const ScenarioStep& st, boost::asio::io_context& io, Collector& c) {
    Sent& req = sent_[st.label];
    if (!req.ok) {
      return;  // the send failed and said so
    }
    std::optional<Received> got = next_answer(st, io, c);
    if (!got) {
      return;
    }
    if (got->mti != st.mti) {
      failure(st.line, "expected MTI " + fixed_digits(st.mti, 4) + ", got " +
                           fixed_digits(got->mti, 4) + " (DE 39 " + field(got->fields, 39) + ")");
    }
    for (const int de : {11, 37, 41}) {
      if (field(got->fields, de) != field(req.fields, de)) {
        failure(st.line, "the answer's DE " + std::to_string(de) + " '" + field(got->fields, de) +
                             "' is not the request's '" + field(req.fields, de) + "'");
      }
    }
    for (const StepField& sf : st.fields) {
      check_field(st, sf, got->fields);
    }
    check_de54(st, field(got->fields, 54));
    req.answer = std::move(got->fields);
  }

  void check_field(const ScenarioStep& st, const StepField& sf, const Fields& got) {
    const auto it = got.find(sf.de);
    const bool present = it != got.end();
    const std::string have = present ? it->second : std::string();
    const std::string de = "DE " + std::to_string(sf.de);
    if (sf.value == "present" || sf.value == "absent") {
      if (present != (sf.value == "present")) {
        failure(st.line,
                de + (present ? " is present ('" + shown(sf.de, have) + "')" : " is absent"));
      }
      return;
    }
    if (sf.value[0] == '@') {
      const std::string want = field(sent_.at(sf.value.substr(1)).answer, sf.de);
      if (!present || have != want) {
        failure(st.line, de + " is '" + shown(sf.de, have) + "', not '" + shown(sf.de, want) +
                             "' as in the answer to " + sf.value.substr(1));
      }
      return;
    }
    bool ok = false;
    std::istringstream alts(sf.value);
    std::string alt;
    while (std::getline(alts, alt, '|')) {
      if (sf.de == 39 && iso93_ && alt.size() == 2) {
        // A 1987 code in a 1993 scenario means its action code for this message class.
        alt = std::string(iso8583::action_code_of(alt, st.mti));
      }
      ok = ok || (present && have == alt);
    }
    if (!ok && sf.de != 39) {
      // Amounts compare as numbers when both are plain integers (never DE 39: "05" is not
      // "005", an ISO 8583:1993 approval).
      const auto want_n = parse_int(sf.value);
      const auto have_n = parse_int(have);
      ok = present && want_n && have_n && *want_n == *have_n;
    }
    if (!ok) {
      failure(st.line, de + " is " + (present ? "'" + shown(sf.de, have) + "'" : "absent") +
                           ", expected '" + sf.value + "'");
    }
  }

  void check_de54(const ScenarioStep& st, const std::string& de54) {
    if (st.available >= 0 && de54_amount(de54, "02") != st.available) {
      failure(st.line, "DE 54 available is " + std::to_string(de54_amount(de54, "02")) +
                           ", expected " + std::to_string(st.available));
    }
    if (st.ledger >= 0 && de54_amount(de54, "01") != st.ledger) {
      failure(st.line, "DE 54 ledger is " + std::to_string(de54_amount(de54, "01")) +
                           ", expected " + std::to_string(st.ledger));
    }
  }

  void balance(const ScenarioStep& st) {
    std::string out;
    const int rc =
        run_capture({o_.admin, "account", "show", account_id(st.label), "--redis", o_.redis}, out);
    if (rc != 0) {
      failure(st.line, "authswitch-admin account show failed (exit " + std::to_string(rc) + ")");
      return;
    }
    const auto check = [&](const char* key, std::int64_t want) {
      if (want < 0) {
        return;
      }
      const auto have = show_value(out, key);
      if (!have) {
        failure(st.line, std::string("no '") + key + "' in authswitch-admin account show");
      } else if (*have != want) {
        failure(st.line, "account " + st.label + ": " + key + " is " + std::to_string(*have) +
                             ", expected " + std::to_string(want));
      }
    };
    check("balance", st.balance);
    check("held", st.held);
    check("available", st.available);
  }

  struct Sent {
    std::uint16_t mti = 0;
    Fields fields;
    Fields answer;
    bool ok = false;
  };

  const Scenario& s_;
  const ScenarioRunOptions& o_;
  const iso8583::Dialect* dialect_;
  bool iso93_ = false;
  ScenarioResult r_;
  std::uint64_t run_ = 0;
  std::string run_tag_;
  std::string acquirer_;
  std::uint32_t stan_ = 0;
  std::string future_expiry_, past_expiry_;
  std::map<std::string, CardData> cards_;
  std::map<std::string, Sent> sent_;
};

}  // namespace

ScenarioResult run_scenario(const Scenario& s, const ScenarioRunOptions& options) {
  if (options.admin.empty() || options.redis.empty()) {
    throw std::runtime_error("scenarios need --admin and --redis");
  }
  return Runner(s, options).run();
}

}  // namespace authswitch::netsim
