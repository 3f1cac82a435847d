// Configuration loading: toml++ stays private to this file. Every problem is collected with
// its line and key path, and a configuration is returned only when there is none.
#include "switch/config.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include <toml++/toml.h>

#include "base/assert.h"
#include "base/cpu_affinity.h"
#include "iso8583/dialect_loader.h"

namespace authswitch::switching {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kSecond{1'000};
constexpr milliseconds kMinute{60'000};
constexpr milliseconds kHour{3'600'000};
constexpr milliseconds kDay{86'400'000};

constexpr std::string_view kDefaultCliDialect = "iso87-ascii";
constexpr std::string_view kDefaultCliFraming = "len2-binary";
constexpr std::int64_t kAmountMinorMax = 999'999'999'999;  // DE 4: 12 digits
constexpr std::int64_t kRotateBytesMin = 1LL << 20;
constexpr std::int64_t kRotateBytesMax = 1LL << 40;

// A value inside double quotes, with quotes, backslashes and control characters escaped as
// in a TOML basic string (so describe() output stays loadable and error lines stay one line).
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20U || u == 0x7fU) {
      std::array<char, 8> buf{};
      std::snprintf(buf.data(), buf.size(), "\\u%04x", static_cast<unsigned>(u));
      out += buf.data();
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string join(std::initializer_list<std::string_view> items) {
  std::string s;
  for (const std::string_view i : items) {
    s += (s.empty() ? "" : ", ") + std::string(i);
  }
  return s;
}

std::string_view type_phrase(toml::node_type t) {
  switch (t) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

// Collects "<source>[:<line>]: <path>: <reason>" lines.
class Problems {
 public:
  explicit Problems(std::string_view source) : source_(source) {}

  void add(const toml::node* where, std::string_view path, std::string_view what) {
    std::string s = source_;
    std::uint32_t line = 0;
    if (where != nullptr && where->source().begin.line > 0) {
      line = where->source().begin.line;
      s += ":" + std::to_string(line);
    }
    s += ": ";
    if (!path.empty()) {
      s += std::string(path) + ": ";
    }
    lines_.emplace_back(line, s + std::string(what));
  }

  // Throws the problems in file order (those without a line first, each group as found).
  void throw_if_any() {
    if (lines_.empty()) {
      return;
    }
    std::stable_sort(lines_.begin(), lines_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string s;
    for (const auto& [line, text] : lines_) {
      s += (s.empty() ? "" : "\n") + text;
    }
    throw ConfigError(s);
  }

 private:
  std::string source_;
  std::vector<std::pair<std::uint32_t, std::string>> lines_;
};

bool valid_name(std::string_view name) {
  return !name.empty() && name.size() <= kNameBytesMax &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
         });
}

std::string bad_name(std::string_view name) {
  return quote(name) + " is not a name (1.." + std::to_string(kNameBytesMax) +
         " characters of a-z 0-9 _ -)";
}

// The validators below are shared by the file and the command line. Each returns the reason
// when the value is bad.

std::optional<std::string> check_address(std::string_view text, bool listen, HostPort& out) {
  const std::optional<HostPort> a = parse_host_port(text);
  if (!a) {
    return quote(text) + " is not HOST:PORT";
  }
  if (a->port == 0 && !listen) {
    return quote(text) + ": port 0 (any free port) is only for listening";
  }
  out = *a;
  return std::nullopt;
}

std::optional<std::string> resolve_dialect(const std::string& name, const iso8583::Dialect*& out) {
  try {
    out = &iso8583::find_dialect(name);
    return std::nullopt;
  } catch (const std::out_of_range&) {
    std::string names;
    for (const std::string_view n : iso8583::builtin_dialect_names()) {
      names += std::string(n) + ", ";
    }
    return "unknown dialect " + quote(name) + " (one of: " + names + "or a file ending in .toml)";
  } catch (const iso8583::DialectError& e) {
    return e.what();
  }
}

std::optional<std::string> resolve_framing(std::string_view text, iso8583::Framing& out) {
  const iso8583::Result<iso8583::Framing> f = iso8583::parse_framing(text);
  if (f) {
    out = *f;
    return std::nullopt;
  }
  const std::size_t offset = std::min<std::size_t>(f.error().offset, text.size());
  if (offset == 0) {
    std::string names;
    for (const std::string_view n : iso8583::framing_names()) {
      names += (names.empty() ? "" : ", ") + std::string(n);
    }
    return "unknown framing " + quote(text.substr(0, text.find('+'))) + " (one of: " + names +
           "; optionally +header=N, +max=N)";
  }
  // The option holding the offending character runs from the '+' before it to the next '+'.
  const std::size_t plus = text.rfind('+', offset == 0 ? 0 : offset - 1);
  const std::size_t begin = plus == std::string_view::npos ? 0 : plus;
  const std::size_t end = std::min(text.find('+', begin + 1), text.size());
  return "bad framing option " + quote(text.substr(begin, end - begin)) + " in " + quote(text) +
         " (+header=0.." + std::to_string(iso8583::kFrameHeaderBytesMax) + ", +max=1.." +
         std::to_string(iso8583::kMaxFrameBytesLimit) +
         ", each at most once, header smaller than max)";
}

struct DurationRange {
  milliseconds min;
  milliseconds max;
  bool zero_ok = false;  // 0 is accepted besides min..max (meaning "off")
};

std::optional<std::string> check_duration(std::string_view text, const DurationRange& range,
                                          milliseconds& out) {
  const std::optional<milliseconds> d = parse_duration(text);
  if (!d) {
    return quote(text) +
           " is not a duration (a whole number and a unit: ms, s, m, h or d, e.g. \"150ms\")";
  }
  if ((*d < range.min || *d > range.max) && !(range.zero_ok && d->count() == 0)) {
    return quote(text) + " is out of range (" + (range.zero_ok ? "0 or " : "") +
           format_duration(range.min) + ".." + format_duration(range.max) + ")";
  }
  out = *d;
  return std::nullopt;
}

std::optional<std::string> check_file(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) {
    return quote(path) + " does not exist";
  }
  if (!std::filesystem::is_regular_file(status)) {
    return quote(path) + " is not a regular file";
  }
  return std::nullopt;
}

// One TOML table being read. Each reader names a key the table may have (finish() reports
// every other key), reports a wrong type or a bad value, and returns the value only when it
// is present and valid. A null table (an absent section) reads as empty.
class Section {
 public:
  Section(Problems& p, const toml::table* t, std::string path)
      : p_(p), t_(t), path_(std::move(path)) {}

  [[nodiscard]] std::string path(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }
  [[nodiscard]] const toml::table* table() const { return t_; }
  [[nodiscard]] bool has(std::string_view key) const { return t_ != nullptr && t_->contains(key); }

  // A problem with `key`, at its line (or the table's when the key is absent).
  void bad(std::string_view key, std::string_view what) {
    const toml::node* n = t_ != nullptr ? t_->get(key) : nullptr;
    p_.add(n != nullptr ? n : t_, path(key), what);
  }

  std::optional<std::string> text(std::string_view key) {
    const toml::node* n = get(key, toml::node_type::string, "a string");
    return n != nullptr ? std::optional<std::string>(n->as_string()->get()) : std::nullopt;
  }

  std::optional<std::string> nonempty_text(std::string_view key) {
    std::optional<std::string> s = text(key);
    if (s && s->empty()) {
      bad(key, "must not be empty");
      return std::nullopt;
    }
    return s;
  }

  std::optional<bool> boolean(std::string_view key) {
    const toml::node* n = get(key, toml::node_type::boolean, "a boolean");
    return n != nullptr ? std::optional<bool>(n->as_boolean()->get()) : std::nullopt;
  }

  std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max) {
    const toml::node* n = get(key, toml::node_type::integer, "an integer");
    if (n == nullptr) {
      return std::nullopt;
    }
    const std::int64_t v = n->as_integer()->get();
    if (v < min || v > max) {
      bad(key, std::to_string(v) + " is out of range (" + std::to_string(min) + ".." +
                   std::to_string(max) + ")");
      return std::nullopt;
    }
    return v;
  }

  // An array of integers, each in min..max (`noun` names one in messages: "CPU" gives
  // "expected a CPU number" and "CPU 1024 is out of range").
  std::optional<std::vector<std::int64_t>> integers(std::string_view key, std::int64_t min,
                                                    std::int64_t max, std::string_view noun) {
    const toml::node* n = get(key, toml::node_type::array, "an array");
    if (n == nullptr) {
      return std::nullopt;
    }
    std::vector<std::int64_t> out;
    for (const toml::node& e : *n->as_array()) {
      if (e.type() != toml::node_type::integer) {
        p_.add(&e, path(key),
               "expected a " + std::string(noun) + " number, got " +
                   std::string(type_phrase(e.type())));
        return std::nullopt;
      }
      const std::int64_t v = e.as_integer()->get();
      if (v < min || v > max) {
        p_.add(&e, path(key),
               std::string(noun) + " " + std::to_string(v) + " is out of range (" +
                   std::to_string(min) + ".." + std::to_string(max) + ")");
        return std::nullopt;
      }
      out.push_back(v);
    }
    return out;
  }

  void duration(std::string_view key, const DurationRange& range, milliseconds& out) {
    const toml::node* n = get(key, toml::node_type::string, "a duration text such as \"150ms\"");
    if (n != nullptr) {
      if (auto why = check_duration(n->as_string()->get(), range, out)) {
        bad(key, *why);
      }
    }
  }

  void address(std::string_view key, bool listen, HostPort& out) {
    const toml::node* n = get(key, toml::node_type::string, "a \"HOST:PORT\" text");
    if (n != nullptr) {
      if (auto why = check_address(n->as_string()->get(), listen, out)) {
        bad(key, *why);
      }
    }
  }

  // A path that must name an existing file (when `must_exist`).
  void file(std::string_view key, bool must_exist, std::string& out) {
    if (std::optional<std::string> s = text(key)) {
      out = *s;
    }
    if (must_exist && !out.empty()) {
      if (auto why = check_file(out)) {
        bad(key, *why);
      }
    }
  }

  // A text that must be one of `names`; returns its index.
  std::optional<std::size_t> choice(std::string_view key, std::string_view what,
                                    std::initializer_list<std::string_view> names) {
    const std::optional<std::string> s = text(key);
    if (!s) {
      return std::nullopt;
    }
    const auto* it = std::find(names.begin(), names.end(), *s);
    if (it == names.end()) {
      bad(key, "unknown " + std::string(what) + " " + quote(*s) + " (one of: " + join(names) + ")");
      return std::nullopt;
    }
    return static_cast<std::size_t>(it - names.begin());
  }

  // A sub-table (`[a.b]` or `b = { ... }`); null when absent or not a table.
  const toml::table* sub_table(std::string_view key) {
    const toml::node* n = get(key, toml::node_type::table, "a table");
    return n != nullptr ? n->as_table() : nullptr;
  }

  // A key that is accepted but not read (e.g. [[network]], read separately).
  void allow(std::string_view key) { known_.push_back(key); }

  // Reports every key no reader asked for. Durations written the other common way
  // (`timeout_ms = 50`) get a hint.
  void finish() {
    if (t_ == nullptr) {
      return;
    }
    for (const auto& [k, node] : *t_) {
      const std::string_view key = k.str();
      if (std::find(known_.begin(), known_.end(), key) != known_.end()) {
        continue;
      }
      std::string why = "unknown key";
      const std::string_view stem = duration_stem(key);
      if (!stem.empty()) {
        why += " (durations are texts with a unit: " + std::string(stem) + " = \"150ms\")";
      } else if (!known_.empty()) {
        std::string names;
        for (const std::string_view n : known_) {
          names += (names.empty() ? "" : ", ") + std::string(n);
        }
        why += " (" + (path_.empty() ? std::string("sections") : "keys of " + path_) + ": " +
               names + ")";
      }
      p_.add(&node, path(key), why);
    }
  }

 private:
  // The node of `key` when it has type `type`; reports a wrong type.
  const toml::node* get(std::string_view key, toml::node_type type, std::string_view expected) {
    known_.push_back(key);
    if (t_ == nullptr) {
      return nullptr;
    }
    const toml::node* n = t_->get(key);
    if (n == nullptr) {
      return nullptr;
    }
    if (n->type() != type) {
      p_.add(n, path(key),
             "expected " + std::string(expected) + ", got " + std::string(type_phrase(n->type())));
      return nullptr;
    }
    return n;
  }

  // "timeout" for "timeout_ms" or "timeout_s" when "timeout" is a key of this table.
  [[nodiscard]] std::string_view duration_stem(std::string_view key) const {
    for (const std::string_view suffix : {std::string_view("_ms"), std::string_view("_s")}) {
      if (key.size() > suffix.size() && key.ends_with(suffix)) {
        const std::string_view stem = key.substr(0, key.size() - suffix.size());
        if (std::find(known_.begin(), known_.end(), stem) != known_.end()) {
          return stem;
        }
      }
    }
    return {};
  }

  Problems& p_;
  const toml::table* t_;
  std::string path_;
  std::vector<std::string_view> known_;
};

// Reads [name] of the root: null (and a problem) when it is not a table.
Section section(Section& root, Problems& p, std::string_view name) {
  return Section(p, root.sub_table(name), std::string(name));
}

void read_instance(Section& root, Problems& p, InstanceConfig& out) {
  Section s = section(root, p, "switch");
  if (auto v = s.integer("shards", 0, kShardsMax)) {
    out.shards = static_cast<std::uint32_t>(*v);
  }
  if (auto v = s.integers("cpus", 0, kCpuMax, "CPU")) {
    out.cpus.clear();
    for (const std::int64_t cpu : *v) {
      if (std::find(out.cpus.begin(), out.cpus.end(), cpu) != out.cpus.end()) {
        s.bad("cpus", "CPU " + std::to_string(cpu) + " is listed twice");
        return;
      }
      out.cpus.push_back(static_cast<std::uint32_t>(cpu));
    }
  }
  if (auto v = s.text("name")) {
    if (valid_name(*v)) {
      out.name = *v;
    } else {
      s.bad("name", bad_name(*v));
    }
  }
  s.finish();
}

void read_redis(Section& root, Problems& p, RedisConfig& out) {
  Section s = section(root, p, "redis");
  s.address("address", false, out.address);
  s.duration("timeout", {milliseconds(1), 10 * kSecond}, out.timeout);
  s.duration("connect_timeout", {milliseconds(1), kMinute}, out.connect_timeout);
  s.duration("replay_window", {kMinute, 30 * kDay}, out.replay_window);
  s.duration("hold_ttl", {kMinute, 90 * kDay}, out.hold_ttl);
  if (auto v = s.boolean("preload_cards")) {
    out.preload_cards = *v;
  }
  s.finish();
}

void read_rules_keys(Section& root, Problems& p, SwitchConfig& out) {
  Section rules = section(root, p, "rules");
  if (auto v = rules.nonempty_text("file")) {
    out.rules.file = *v;
  }
  rules.finish();
  Section keys = section(root, p, "keys");
  keys.file("pan_token_key_file", true, out.keys.pan_token_key_file);
  keys.finish();
}

void read_stand_in(Section& root, Problems& p, StandInConfig& out) {
  Section s = section(root, p, "stand_in");
  if (auto v = s.choice("policy", "policy", {"decline", "approve"})) {
    out.policy = *v == 0 ? StandInChoice::kDecline : StandInChoice::kApprove;
  }
  if (auto v = s.integer("max_amount_minor", 1, kAmountMinorMax)) {
    out.max_amount_minor = *v;
  }
  if (auto v = s.text("currency")) {
    const bool digits = v->size() == 3 && std::all_of(v->begin(), v->end(),
                                                      [](char c) { return c >= '0' && c <= '9'; });
    if (!digits || *v == "000") {
      s.bad("currency", quote(*v) + " is not an ISO 4217 numeric code (3 digits, e.g. \"840\")");
    } else {
      out.currency = static_cast<std::uint16_t>(std::stoi(*v));
    }
  }
  if (auto v = s.text("journal")) {
    out.journal = *v;
  }
  if (out.policy == StandInChoice::kApprove) {
    for (const std::string_view key : {"max_amount_minor", "currency"}) {
      if (!s.has(key)) {
        s.bad(key, "required when policy = \"approve\"");
      }
    }
  }
  s.finish();
}

void read_http_audit_log(Section& root, Problems& p, SwitchConfig& out) {
  Section http = section(root, p, "http");
  if (auto v = http.boolean("enabled")) {
    out.http.enabled = *v;
  }
  http.address("listen", true, out.http.listen);
  http.finish();

  Section audit = section(root, p, "audit");
  if (auto v = audit.text("path")) {
    out.audit.path = *v;
  }
  if (auto v = audit.integer("rotate_bytes", 0, kRotateBytesMax)) {
    if (*v != 0 && *v < kRotateBytesMin) {
      audit.bad("rotate_bytes", std::to_string(*v) + " is out of range (0 or " +
                                    std::to_string(kRotateBytesMin) + ".." +
                                    std::to_string(kRotateBytesMax) + ")");
    } else {
      out.audit.rotate_bytes = static_cast<std::uint64_t>(*v);
    }
  }
  audit.finish();

  Section log = section(root, p, "log");
  if (auto v = log.choice("level", "level", {"debug", "info", "warn", "error"})) {
    out.log.level = static_cast<LogLevel>(*v);
  }
  if (auto v = log.choice("format", "format", {"json"})) {
    out.log.format = static_cast<LogFormat>(*v);
  }
  log.finish();
}

void read_tls(Section& network, Problems& p, NetworkRole role, TlsConfig& out) {
  Section s(p, network.sub_table("tls"), network.path("tls"));
  if (auto v = s.boolean("enabled")) {
    out.enabled = *v;
  }
  if (auto v = s.boolean("verify_peer")) {
    out.verify_peer = *v;
  }
  s.file("cert", out.enabled, out.cert);
  s.file("key", out.enabled, out.key);
  s.file("ca", out.enabled, out.ca);
  if (auto v = s.text("server_name")) {
    out.server_name = *v;
    if (role == NetworkRole::kListen) {
      s.bad("server_name", "only for role = \"dial\"");
    }
  }
  if (out.enabled) {
    if (role == NetworkRole::kListen && out.cert.empty()) {
      s.bad("cert", "required to listen with TLS");
    }
    if (!out.cert.empty() && out.key.empty()) {
      s.bad("key", "required with tls.cert");
    }
    if (out.cert.empty() && !out.key.empty()) {
      s.bad("cert", "required with tls.key");
    }
    if (out.verify_peer && out.ca.empty()) {
      s.bad("ca", "required when tls.verify_peer = true");
    }
  }
  s.finish();
}

void read_reconnect(Section& network, Problems& p, NetworkRole role, ReconnectConfig& out) {
  if (network.has("reconnect") && role != NetworkRole::kDial) {
    network.bad("reconnect", "only for role = \"dial\"");
  }
  Section s(p, network.sub_table("reconnect"), network.path("reconnect"));
  const DurationRange range{milliseconds(1), 10 * kMinute};
  s.duration("min", range, out.min);
  s.duration("max", range, out.max);
  if (out.min > out.max) {
    s.bad("max", "must not be less than reconnect.min (" + format_duration(out.min) + ")");
  }
  s.finish();
}

// The keys every role has, after name, role and address.
void read_network_common(Section& s, NetworkConfig& out) {
  if (auto v = s.nonempty_text("dialect")) {
    out.dialect_name = *v;
  }
  if (auto why = resolve_dialect(out.dialect_name, out.dialect)) {
    s.bad("dialect", *why);
  }
  if (auto v = s.text("framing")) {
    out.framing_name = *v;
  }
  if (auto why = resolve_framing(out.framing_name, out.framing)) {
    s.bad("framing", *why);
  }
  s.duration("budget", {milliseconds(1), kMinute}, out.budget);
  if (auto v = s.integer("in_flight_max", 1, kInFlightMax)) {
    out.in_flight_max = static_cast<std::uint32_t>(*v);
  }
  s.duration("echo_interval", {kSecond, kHour, true}, out.echo_interval);
  s.duration("read_timeout", {milliseconds(100), kHour}, out.read_timeout);
  if (auto v = s.boolean("sign_on_required")) {
    out.sign_on_required = *v;
  }
  if (auto v = s.nonempty_text("response_codes")) {
    out.response_codes = *v;
  }
}

std::optional<NetworkConfig> read_network(const toml::node& node, std::size_t index, Problems& p) {
  const std::string path = "network[" + std::to_string(index) + "]";
  const toml::table* t = node.as_table();
  if (t == nullptr) {
    p.add(&node, path, "expected a table, got " + std::string(type_phrase(node.type())));
    return std::nullopt;
  }
  Section s(p, t, path);
  NetworkConfig out;
  if (auto v = s.text("name")) {
    if (valid_name(*v)) {
      out.name = *v;
    } else {
      s.bad("name", bad_name(*v));
    }
  } else if (!s.has("name")) {
    s.bad("name", "required");
  }
  if (auto v = s.choice("role", "role", {"listen", "dial"})) {
    out.role = *v == 0 ? NetworkRole::kListen : NetworkRole::kDial;
  } else if (!s.has("role")) {
    s.bad("role", "required (\"listen\" or \"dial\")");
  }
  s.address("address", out.role == NetworkRole::kListen, out.address);
  if (!s.has("address")) {
    s.bad("address", "required");
  }
  read_network_common(s, out);
  if (out.response_codes.empty()) {
    out.response_codes = out.name;
  }
  read_tls(s, p, out.role, out.tls);
  read_reconnect(s, p, out.role, out.reconnect);
  if (auto v = s.integer("max_connections", 1, kConnectionsMax)) {
    out.max_connections = static_cast<std::uint32_t>(*v);
    if (out.role != NetworkRole::kListen) {
      s.bad("max_connections", "only for role = \"listen\"");
    }
  }
  s.finish();
  return out;
}

// Checks between networks: unique names, distinct listening addresses, the count.
// `where(i)` is the node to report network i at (null on the command line), `path(i)` its path.
template <typename Where, typename Path>
void check_networks(const std::vector<NetworkConfig>& networks, Problems& p, Where where,
                    Path path) {
  if (networks.size() > kNetworksMax) {
    p.add(nullptr, "network",
          std::to_string(networks.size()) + " networks (at most " + std::to_string(kNetworksMax) +
              ")");
  }
  for (std::size_t i = 0; i < networks.size(); ++i) {
    const NetworkConfig& n = networks[i];
    for (std::size_t j = 0; j < i; ++j) {
      const NetworkConfig& m = networks[j];
      if (!n.name.empty() && n.name == m.name) {
        p.add(where(i, "name"), path(i, "name"),
              "duplicate network name " + quote(n.name) + " (also network[" + std::to_string(j) +
                  "])");
      }
      const bool both_listen =
          n.role == NetworkRole::kListen && m.role == NetworkRole::kListen && n.address.port != 0;
      if (both_listen && n.address.port == m.address.port && n.address.host == m.address.host) {
        p.add(where(i, "address"), path(i, "address"),
              quote(n.address.text()) + " is also the address of network " + quote(m.name));
      }
    }
  }
}

SwitchConfig read_root(const toml::table& root, Problems& p) {
  SwitchConfig out;
  Section s(p, &root, "");
  read_instance(s, p, out.instance);
  read_redis(s, p, out.redis);
  read_rules_keys(s, p, out);
  read_stand_in(s, p, out.stand_in);
  read_http_audit_log(s, p, out);
  s.allow("network");
  s.finish();

  const toml::node* networks = root.get("network");
  if (networks == nullptr) {
    return out;
  }
  const toml::array* a = networks->as_array();
  if (a == nullptr) {
    p.add(networks, "network",
          "expected [[network]] tables, got " + std::string(type_phrase(networks->type())));
    return out;
  }
  std::vector<const toml::table*> tables;
  for (std::size_t i = 0; i < a->size(); ++i) {
    if (std::optional<NetworkConfig> n = read_network(*a->get(i), i, p)) {
      out.networks.push_back(std::move(*n));
      tables.push_back(a->get(i)->as_table());
    }
  }
  check_networks(
      out.networks, p,
      [&](std::size_t i, std::string_view key) -> const toml::node* {
        return tables[i]->get(key) != nullptr ? tables[i]->get(key) : tables[i];
      },
      [](std::size_t i, std::string_view key) {
        return "network[" + std::to_string(i) + "]." + std::string(key);
      });
  return out;
}

std::string_view bool_text(bool b) { return b ? "true" : "false"; }

std::string currency_text(std::uint16_t currency) {
  std::array<char, 8> buf{};
  std::snprintf(buf.data(), buf.size(), "%03u", static_cast<unsigned>(currency));
  return buf.data();
}

void describe_network(std::ostringstream& o, const NetworkConfig& n) {
  o << "\n[[network]]\n"
    << "name = " << quote(n.name) << '\n'
    << "role = " << quote(role_name(n.role)) << '\n'
    << "address = " << quote(n.address.text()) << '\n'
    << "dialect = " << quote(n.dialect_name) << '\n'
    << "framing = " << quote(n.framing_name) << '\n'
    << "budget = " << quote(format_duration(n.budget)) << '\n'
    << "in_flight_max = " << n.in_flight_max << '\n'
    << "echo_interval = " << quote(format_duration(n.echo_interval)) << '\n'
    << "read_timeout = " << quote(format_duration(n.read_timeout)) << '\n'
    << "sign_on_required = " << bool_text(n.sign_on_required) << '\n'
    << "response_codes = " << quote(n.response_codes) << '\n';
  if (n.role == NetworkRole::kListen) {
    o << "max_connections = " << n.max_connections << '\n';
  } else {
    o << "reconnect = { min = " << quote(format_duration(n.reconnect.min))
      << ", max = " << quote(format_duration(n.reconnect.max)) << " }\n";
  }
  // Paths only: the key file's content is never read here.
  o << "tls = { enabled = " << bool_text(n.tls.enabled) << ", cert = " << quote(n.tls.cert)
    << ", key = " << quote(n.tls.key) << ", ca = " << quote(n.tls.ca)
    << ", verify_peer = " << bool_text(n.tls.verify_peer);
  if (n.role == NetworkRole::kDial) {
    o << ", server_name = " << quote(n.tls.server_name);
  }
  o << " }\n";
}

}  // namespace

std::string HostPort::text() const {
  const std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

std::optional<HostPort> parse_host_port(std::string_view text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (host.empty() || host.find_first_not_of("0123456789abcdefABCDEF:.") != host.npos) {
      return std::nullopt;
    }
  } else if (host.empty() ||
             host.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789.-_") != host.npos) {
    return std::nullopt;
  }
  std::uint32_t p = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || port.size() > 5 || ec != std::errc() || end != port.data() + port.size() ||
      p > 65'535) {
    return std::nullopt;
  }
  return HostPort{std::string(host), static_cast<std::uint16_t>(p)};
}

std::optional<milliseconds> parse_duration(std::string_view text) {
  const std::size_t unit_at = text.find_first_not_of("0123456789");
  if (unit_at == 0 || unit_at == std::string_view::npos || unit_at > 12) {
    return std::nullopt;
  }
  std::int64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + unit_at, n);
  if (ec != std::errc() || end != text.data() + unit_at) {
    return std::nullopt;
  }
  const std::string_view unit = text.substr(unit_at);
  std::int64_t scale = 0;
  if (unit == "ms") {
    scale = 1;
  } else if (unit == "s") {
    scale = kSecond.count();
  } else if (unit == "m") {
    scale = kMinute.count();
  } else if (unit == "h") {
    scale = kHour.count();
  } else if (unit == "d") {
    scale = kDay.count();
  } else {
    return std::nullopt;
  }
  // 12 digits of days (up to 8.6e19 ms) would overflow 64 bits.
  if (n > std::numeric_limits<std::int64_t>::max() / scale) {
    return std::nullopt;
  }
  return milliseconds(n * scale);
}

std::string format_duration(milliseconds d) {
  const std::int64_t ms = d.count();
  if (ms == 0) {
    return "0s";
  }
  for (const auto& [scale, unit] : {std::pair{kDay, "d"}, std::pair{kHour, "h"},
                                    std::pair{kMinute, "m"}, std::pair{kSecond, "s"}}) {
    if (ms % scale.count() == 0) {
      return std::to_string(ms / scale.count()) + unit;
    }
  }
  return std::to_string(ms) + "ms";
}

SwitchConfig load_config(std::string_view toml_text, std::string_view source) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream s;
    s << source << ':' << e.source().begin.line << ": " << e.description();
    throw ConfigError(s.str());
  }
  Problems p(source);
  SwitchConfig config = read_root(root, p);
  p.throw_if_any();
  for (const NetworkConfig& n : config.networks) {
    AS_ASSERT(n.dialect != nullptr);
    AS_ASSERT(!n.response_codes.empty());
  }
  return config;
}

SwitchConfig load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    const bool exists = std::filesystem::exists(path, ec);
    throw ConfigError(path + ": " + (exists ? "cannot read the file" : "no such file"));
  }
  std::ostringstream s;
  s << in.rdbuf();
  return load_config(s.str(), path);
}

void apply_overrides(SwitchConfig& config, const CliOverrides& overrides) {
  Problems p("command line");
  SwitchConfig out = config;
  if (overrides.redis) {
    if (auto why = check_address(*overrides.redis, false, out.redis.address)) {
      p.add(nullptr, "--redis", *why);
    }
  }
  if (overrides.shards) {
    if (*overrides.shards > kShardsMax) {
      p.add(nullptr, "--shards",
            std::to_string(*overrides.shards) + " is out of range (0.." +
                std::to_string(kShardsMax) + ")");
    }
    out.instance.shards = *overrides.shards;
  }
  if (overrides.rules) {
    if (overrides.rules->empty()) {
      p.add(nullptr, "--rules", "must not be empty");
    }
    out.rules.file = *overrides.rules;
  }
  if (!overrides.listen) {
    if (overrides.dialect) {
      p.add(nullptr, "--dialect", "only with --listen");
    }
    if (overrides.framing) {
      p.add(nullptr, "--framing", "only with --listen");
    }
  } else {
    NetworkConfig n;
    n.name = kCliNetworkName;
    n.role = NetworkRole::kListen;
    n.response_codes = kCliNetworkName;
    n.dialect_name = overrides.dialect.value_or(std::string(kDefaultCliDialect));
    n.framing_name = overrides.framing.value_or(std::string(kDefaultCliFraming));
    if (auto why = check_address(*overrides.listen, true, n.address)) {
      p.add(nullptr, "--listen", *why);
    }
    if (auto why = resolve_dialect(n.dialect_name, n.dialect)) {
      p.add(nullptr, "--dialect", *why);
    }
    if (auto why = resolve_framing(n.framing_name, n.framing)) {
      p.add(nullptr, "--framing", *why);
    }
    auto same = [](const NetworkConfig& m) { return m.name == kCliNetworkName; };
    out.networks.erase(std::remove_if(out.networks.begin(), out.networks.end(), same),
                       out.networks.end());
    out.networks.push_back(std::move(n));
    // Only the new network can clash with the others, and it is the last one.
    const std::size_t cli = out.networks.size() - 1;
    check_networks(
        out.networks, p, [](std::size_t, std::string_view) { return nullptr; },
        [&](std::size_t i, std::string_view key) {
          return i == cli ? std::string(key == "address" ? "--listen" : "--listen (name)")
                          : "network[" + std::to_string(i) + "]." + std::string(key);
        });
  }
  p.throw_if_any();
  config = std::move(out);
}

void require_network(const SwitchConfig& config) {
  if (config.networks.empty()) {
    throw ConfigError(
        "no network to serve: add a [[network]] table to the configuration or pass --listen "
        "HOST:PORT");
  }
}

std::string check_cpus(const SwitchConfig& config) {
  const std::vector<std::uint32_t> allowed = base::allowed_cpus();
  for (const std::uint32_t cpu : config.instance.cpus) {
    if (std::find(allowed.begin(), allowed.end(), cpu) == allowed.end()) {
      return "switch.cpus: CPU " + std::to_string(cpu) +
             " is not available to this process (allowed: " + base::cpu_list_text(allowed) + ")";
    }
  }
  return {};
}

std::uint32_t effective_shards(const SwitchConfig& config) noexcept {
  if (config.instance.shards != 0) {
    return config.instance.shards;
  }
  const unsigned cores = std::thread::hardware_concurrency();
  return std::clamp<std::uint32_t>(cores, 1, kShardsMax);
}

std::string describe(const SwitchConfig& config) {
  std::ostringstream o;
  const SwitchConfig& c = config;
  o << "# authswitch effective configuration (file defaults and overrides applied)\n"
    << "[switch]\n"
    << "shards = " << c.instance.shards << "  # 0: one per core (" << effective_shards(c) << ")\n"
    << "cpus = [";
  for (std::size_t i = 0; i < c.instance.cpus.size(); ++i) {
    o << (i == 0 ? "" : ", ") << c.instance.cpus[i];
  }
  o << "]  # shard i on cpus[i % size]; []: not pinned\n"
    << "name = " << quote(c.instance.name) << '\n'
    << "\n[redis]\n"
    << "address = " << quote(c.redis.address.text()) << '\n'
    << "timeout = " << quote(format_duration(c.redis.timeout)) << '\n'
    << "connect_timeout = " << quote(format_duration(c.redis.connect_timeout)) << '\n'
    << "replay_window = " << quote(format_duration(c.redis.replay_window)) << '\n'
    << "hold_ttl = " << quote(format_duration(c.redis.hold_ttl)) << '\n'
    << "preload_cards = " << (c.redis.preload_cards ? "true" : "false") << '\n'
    << "\n[rules]\n"
    << "file = " << quote(c.rules.file) << '\n'
    << "\n[keys]\n"
    << "pan_token_key_file = " << quote(c.keys.pan_token_key_file)
    << (c.keys.pan_token_key_file.empty() ? "  # empty: from $AS_PAN_TOKEN_KEY_HEX" : "") << '\n'
    << "\n[stand_in]\n"
    << "policy = " << quote(stand_in_policy_name(c.stand_in.policy)) << '\n'
    << "journal = " << quote(c.stand_in.journal) << '\n';
  if (c.stand_in.max_amount_minor != 0) {
    o << "max_amount_minor = " << c.stand_in.max_amount_minor << '\n';
  }
  if (c.stand_in.currency != 0) {
    o << "currency = " << quote(currency_text(c.stand_in.currency)) << '\n';
  }
  o << "\n[http]\n"
    << "enabled = " << bool_text(c.http.enabled) << '\n'
    << "listen = " << quote(c.http.listen.text()) << '\n'
    << "\n[audit]\n"
    << "path = " << quote(c.audit.path) << '\n'
    << "rotate_bytes = " << c.audit.rotate_bytes << '\n'
    << "\n[log]\n"
    << "level = " << quote(log_level_name(c.log.level)) << '\n'
    << "format = " << quote(log_format_name(c.log.format)) << '\n';
  for (const NetworkConfig& n : c.networks) {
    describe_network(o, n);
  }
  return o.str();
}

std::string_view role_name(NetworkRole role) noexcept {
  return role == NetworkRole::kListen ? "listen" : "dial";
}

std::string_view stand_in_policy_name(StandInChoice policy) noexcept {
  return policy == StandInChoice::kDecline ? "decline" : "approve";
}

std::string_view log_level_name(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

std::string_view log_format_name(LogFormat format) noexcept {
  switch (format) {
    case LogFormat::kJson:
      return "json";
  }
  return "json";
}

}  // namespace authswitch::switching
