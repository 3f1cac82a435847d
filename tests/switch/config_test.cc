// The switch's configuration (switch/config.h): the shipped config/authswitch.toml and its
// commented examples load with the documented values, an empty file gives the defaults, each
// kind of mistake is reported with its exact line, and several at once; command-line
// overrides; describe() round-trips and never shows key material.
#include "switch/config.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <gtest/gtest.h>
#include <unistd.h>

#include "iso8583/dialect_loader.h"
#include "iso8583/framing.h"
#include "switch/cli_options.h"

namespace authswitch::switching {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr std::string_view kSource = "authswitch.toml";
// A test key (never a production one).
constexpr const char* kKeyHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

std::string shipped_path() { return std::string(AS_SOURCE_DIR) + "/config/authswitch.toml"; }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The ConfigError message of loading `text`, or "" when it loads.
std::string error_of(std::string_view text) {
  try {
    (void)load_config(text, kSource);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

std::string override_error(SwitchConfig& config, const CliOverrides& o) {
  try {
    apply_overrides(config, o);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// A private directory with files, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("as_config_test_" + std::to_string(getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name, std::string_view content = "x") const {
    const fs::path p = path_ / name;
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }
  [[nodiscard]] std::string path() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

constexpr std::string_view kListenNetwork = R"(
[[network]]
name = "acq"
role = "listen"
address = "127.0.0.1:8583"
)";

void expect_defaults(const SwitchConfig& c) {
  EXPECT_EQ(c.instance.shards, 0U);
  EXPECT_EQ(c.instance.name, "authswitch");
  EXPECT_EQ(c.redis.address.host, "127.0.0.1");
  EXPECT_EQ(c.redis.address.port, 6379);
  EXPECT_EQ(c.redis.timeout, milliseconds(50));
  EXPECT_EQ(c.redis.connect_timeout, milliseconds(1'000));
  EXPECT_EQ(c.redis.replay_window, std::chrono::hours(24));
  EXPECT_EQ(c.redis.hold_ttl, std::chrono::hours(24 * 7));
  EXPECT_EQ(c.rules.file, "config/rules.toml");
  EXPECT_EQ(c.keys.pan_token_key_file, "");
  EXPECT_EQ(c.stand_in.policy, StandInChoice::kDecline);
  EXPECT_EQ(c.stand_in.max_amount_minor, 0);
  EXPECT_EQ(c.stand_in.currency, 0);
  EXPECT_EQ(c.stand_in.journal, "standin.jsonl");
  EXPECT_TRUE(c.http.enabled);
  EXPECT_EQ(c.http.listen.text(), "127.0.0.1:9464");
  EXPECT_EQ(c.audit.path, "audit.jsonl");
  EXPECT_EQ(c.audit.rotate_bytes, 256U << 20U);
  EXPECT_EQ(c.log.level, LogLevel::kInfo);
  EXPECT_EQ(c.log.format, LogFormat::kJson);
  EXPECT_TRUE(c.networks.empty());
}

TEST(Config, EmptyFileGivesTheDefaults) {
  const SwitchConfig c = load_config("", kSource);
  expect_defaults(c);
  EXPECT_THROW(require_network(c), ConfigError);
  EXPECT_GE(effective_shards(c), 1U);
}

TEST(Config, ShippedFileLoadsWithTheDocumentedDefaults) {
  const SwitchConfig c = load_config_file(shipped_path());
  expect_defaults(c);
  // Every value the file writes is the built-in default.
  EXPECT_EQ(describe(c), describe(load_config("", kSource)));
}

// The commented example networks of the shipped file load once uncommented (with the TLS
// files they name created in a private directory).
TEST(Config, ShippedExampleNetworksLoad) {
  const std::string text = slurp(shipped_path());
  const std::string begin = "# --- example networks ---\n";
  const std::string end = "# --- end of example networks ---";
  const std::size_t from = text.find(begin);
  const std::size_t to = text.find(end);
  ASSERT_NE(from, std::string::npos);
  ASSERT_NE(to, std::string::npos);
  std::istringstream block(text.substr(from + begin.size(), to - from - begin.size()));
  TempDir dir;
  std::string uncommented;
  for (std::string line; std::getline(block, line);) {
    ASSERT_TRUE(line == "#" || line.starts_with("# ")) << line;
    line = line.size() > 2 ? line.substr(2) : "";
    const std::string tls_dir = "/etc/authswitch/tls/";
    if (const std::size_t at = line.find(tls_dir); at != std::string::npos) {
      const std::size_t quote_at = line.find('"', at);
      const std::string name = line.substr(at + tls_dir.size(), quote_at - at - tls_dir.size());
      line.replace(at, quote_at - at, dir.file(name));
    }
    uncommented += line + "\n";
  }
  const SwitchConfig c = load_config(uncommented, "examples");
  ASSERT_EQ(c.networks.size(), 2U);
  const NetworkConfig& a = c.networks[0];
  EXPECT_EQ(a.name, "acquirer_a");
  EXPECT_EQ(a.role, NetworkRole::kListen);
  EXPECT_EQ(a.address.text(), "0.0.0.0:8583");
  EXPECT_EQ(a.dialect, &iso8583::builtin_dialect("iso87-ascii"));
  EXPECT_EQ(a.framing.length, iso8583::LengthHeader::kLen2Binary);
  EXPECT_FALSE(a.tls.enabled);
  const NetworkConfig& b = c.networks[1];
  EXPECT_EQ(b.name, "network_b");
  EXPECT_EQ(b.role, NetworkRole::kDial);
  EXPECT_EQ(b.address.host, "network-b.example");
  EXPECT_EQ(b.address.port, 7001);
  EXPECT_EQ(b.dialect, &iso8583::builtin_dialect("iso87-bcd"));
  EXPECT_EQ(b.framing.header_bytes, 5);
  EXPECT_EQ(b.budget, milliseconds(300));
  EXPECT_TRUE(b.sign_on_required);
  EXPECT_EQ(b.response_codes, "network_b");
  EXPECT_TRUE(b.tls.enabled);
  EXPECT_EQ(b.tls.cert, dir.path() + "/network-b.crt");
  EXPECT_EQ(b.tls.server_name, "network-b.example");
}

TEST(Config, NetworkDefaults) {
  const SwitchConfig c = load_config(kListenNetwork, kSource);
  ASSERT_EQ(c.networks.size(), 1U);
  const NetworkConfig& n = c.networks[0];
  EXPECT_EQ(n.name, "acq");
  EXPECT_EQ(n.role, NetworkRole::kListen);
  EXPECT_EQ(n.address.text(), "127.0.0.1:8583");
  EXPECT_EQ(n.dialect_name, "iso87-ascii");
  EXPECT_EQ(n.dialect, &iso8583::builtin_dialect("iso87-ascii"));
  EXPECT_EQ(n.framing_name, "len2-binary");
  EXPECT_EQ(n.framing.length, iso8583::LengthHeader::kLen2Binary);
  EXPECT_EQ(n.framing.max_frame_bytes, 8192U);
  EXPECT_EQ(n.budget, milliseconds(150));
  EXPECT_EQ(n.in_flight_max, 1024U);
  EXPECT_EQ(n.echo_interval, milliseconds(30'000));
  EXPECT_EQ(n.read_timeout, milliseconds(30'000));
  EXPECT_FALSE(n.sign_on_required);
  EXPECT_EQ(n.response_codes, "acq");
  EXPECT_FALSE(n.tls.enabled);
  EXPECT_TRUE(n.tls.verify_peer);
  EXPECT_EQ(n.max_connections, 64U);
  EXPECT_EQ(n.reconnect.min, milliseconds(100));
  EXPECT_EQ(n.reconnect.max, milliseconds(30'000));
  EXPECT_NO_THROW(require_network(c));
}

TEST(Config, EveryKeyIsRead) {
  TempDir dir;
  const std::string text = R"(
[switch]
shards = 4
cpus = [1, 0]
name = "sw-1"
[redis]
address = "[::1]:6380"
timeout = "20ms"
connect_timeout = "2s"
replay_window = "48h"
hold_ttl = "3d"
[rules]
file = "rules/prod.toml"
[keys]
pan_token_key_file = ")" + dir.file("token.hex", kKeyHex) +
                           R"("
[stand_in]
policy = "approve"
max_amount_minor = 5000
currency = "008"
journal = "/var/lib/authswitch/standin.jsonl"
[http]
enabled = false
listen = "0.0.0.0:0"
[audit]
path = ""
rotate_bytes = 0
[log]
level = "warn"
format = "json"
[[network]]
name = "b"
role = "dial"
address = "10.0.0.7:7001"
dialect = "iso93-ebcdic"
framing = "len4-ascii+max=4096+header=2"
budget = "2s"
in_flight_max = 16
echo_interval = "0s"
read_timeout = "250ms"
sign_on_required = true
response_codes = "network_b"
reconnect = { min = "1s", max = "1m" }
tls = { enabled = true, verify_peer = false, server_name = "b.example" }
)";
  const SwitchConfig c = load_config(text, kSource);
  EXPECT_EQ(c.instance.shards, 4U);
  EXPECT_EQ(effective_shards(c), 4U);
  EXPECT_EQ(c.instance.cpus, (std::vector<std::uint32_t>{1, 0}));
  EXPECT_EQ(c.instance.name, "sw-1");
  EXPECT_EQ(c.redis.address.host, "::1");
  EXPECT_EQ(c.redis.address.text(), "[::1]:6380");
  EXPECT_EQ(c.redis.timeout, milliseconds(20));
  EXPECT_EQ(c.redis.connect_timeout, milliseconds(2'000));
  EXPECT_EQ(c.redis.replay_window, std::chrono::hours(48));
  EXPECT_EQ(c.redis.hold_ttl, std::chrono::hours(72));
  EXPECT_EQ(c.rules.file, "rules/prod.toml");
  EXPECT_EQ(c.keys.pan_token_key_file, dir.path() + "/token.hex");
  EXPECT_EQ(c.stand_in.policy, StandInChoice::kApprove);
  EXPECT_EQ(c.stand_in.max_amount_minor, 5000);
  EXPECT_EQ(c.stand_in.currency, 8);
  EXPECT_EQ(c.stand_in.journal, "/var/lib/authswitch/standin.jsonl");
  EXPECT_FALSE(c.http.enabled);
  EXPECT_EQ(c.http.listen.port, 0);
  EXPECT_EQ(c.audit.path, "");
  EXPECT_EQ(c.audit.rotate_bytes, 0U);
  EXPECT_EQ(c.log.level, LogLevel::kWarn);
  ASSERT_EQ(c.networks.size(), 1U);
  const NetworkConfig& n = c.networks[0];
  EXPECT_EQ(n.role, NetworkRole::kDial);
  EXPECT_EQ(n.dialect, &iso8583::builtin_dialect("iso93-ebcdic"));
  EXPECT_EQ(n.framing.length, iso8583::LengthHeader::kLen4Ascii);
  EXPECT_EQ(n.framing.header_bytes, 2);
  EXPECT_EQ(n.framing.max_frame_bytes, 4096U);
  EXPECT_EQ(n.budget, milliseconds(2'000));
  EXPECT_EQ(n.in_flight_max, 16U);
  EXPECT_EQ(n.echo_interval, milliseconds(0));
  EXPECT_EQ(n.read_timeout, milliseconds(250));
  EXPECT_TRUE(n.sign_on_required);
  EXPECT_EQ(n.response_codes, "network_b");
  EXPECT_EQ(n.reconnect.min, milliseconds(1'000));
  EXPECT_EQ(n.reconnect.max, milliseconds(60'000));
  EXPECT_TRUE(n.tls.enabled);
  EXPECT_FALSE(n.tls.verify_peer);
  EXPECT_EQ(n.tls.server_name, "b.example");
}

struct BadCase {
  const char* what;
  std::string text;
  std::string message;
};

// One problem each, with its exact message.
TEST(Config, EachMistakeHasItsMessage) {
  const std::string net = std::string(kListenNetwork);
  const std::vector<BadCase> cases = {
      {"unknown key", "[redis]\nadress = \"h:1\"\n",
       "authswitch.toml:2: redis.adress: unknown key (keys of redis: address, timeout, "
       "connect_timeout, replay_window, hold_ttl, preload_cards)"},
      {"unknown section", "[redis2]\n",
       "authswitch.toml:1: redis2: unknown key (sections: switch, redis, rules, keys, stand_in, "
       "http, audit, log, network)"},
      {"unit in the key name", "[redis]\ntimeout_ms = 50\n",
       "authswitch.toml:2: redis.timeout_ms: unknown key (durations are texts with a unit: "
       "timeout = \"150ms\")"},
      {"unknown network key", net + "budget_msec = 3\n",
       "authswitch.toml:6: network[0].budget_msec: unknown key (keys of network[0]: name, role, "
       "address, dialect, framing, budget, in_flight_max, echo_interval, read_timeout, "
       "sign_on_required, response_codes, tls, reconnect, max_connections)"},
      {"wrong type", "[switch]\nshards = \"4\"\n",
       "authswitch.toml:2: switch.shards: expected an integer, got a string"},
      {"wrong type of a duration", "[redis]\ntimeout = 50\n",
       "authswitch.toml:2: redis.timeout: expected a duration text such as \"150ms\", got an "
       "integer"},
      {"section not a table", "redis = \"127.0.0.1:6379\"\n",
       "authswitch.toml:1: redis: expected a table, got a string"},
      {"out of range", "[switch]\nshards = 1000\n",
       "authswitch.toml:2: switch.shards: 1000 is out of range (0..256)"},
      {"cpus not an array", "[switch]\ncpus = 1\n",
       "authswitch.toml:2: switch.cpus: expected an array, got an integer"},
      {"a cpu not a number", "[switch]\ncpus = [1, \"2\"]\n",
       "authswitch.toml:2: switch.cpus: expected a CPU number, got a string"},
      {"a cpu out of range", "[switch]\ncpus = [\n  1,\n  1024,\n]\n",
       "authswitch.toml:4: switch.cpus: CPU 1024 is out of range (0..1023)"},
      {"a cpu twice", "[switch]\ncpus = [0, 1, 0]\n",
       "authswitch.toml:2: switch.cpus: CPU 0 is listed twice"},
      {"bad name", "[switch]\nname = \"Big Switch\"\n",
       "authswitch.toml:2: switch.name: \"Big Switch\" is not a name (1..64 characters of a-z "
       "0-9 _ -)"},
      {"bad address", "[redis]\naddress = \"localhost\"\n",
       "authswitch.toml:2: redis.address: \"localhost\" is not HOST:PORT"},
      {"bad port", "[redis]\naddress = \"localhost:65536\"\n",
       "authswitch.toml:2: redis.address: \"localhost:65536\" is not HOST:PORT"},
      {"port 0 to dial", "[redis]\naddress = \"localhost:0\"\n",
       "authswitch.toml:2: redis.address: \"localhost:0\": port 0 (any free port) is only for "
       "listening"},
      {"bad duration", "[redis]\ntimeout = \"50 ms\"\n",
       "authswitch.toml:2: redis.timeout: \"50 ms\" is not a duration (a whole number and a "
       "unit: ms, s, m, h or d, e.g. \"150ms\")"},
      {"duration out of range", "[redis]\ntimeout = \"1m\"\n",
       "authswitch.toml:2: redis.timeout: \"1m\" is out of range (1ms..10s)"},
      {"echo interval out of range", net + "echo_interval = \"500ms\"\n",
       "authswitch.toml:6: network[0].echo_interval: \"500ms\" is out of range (0 or 1s..1h)"},
      {"read timeout out of range", net + "read_timeout = \"10ms\"\n",
       "authswitch.toml:6: network[0].read_timeout: \"10ms\" is out of range (100ms..1h)"},
      {"bad stand-in policy", "[stand_in]\npolicy = \"maybe\"\n",
       "authswitch.toml:2: stand_in.policy: unknown policy \"maybe\" (one of: decline, approve)"},
      {"approve without limits", "[stand_in]\npolicy = \"approve\"\ncurrency = \"840\"\n",
       "authswitch.toml:1: stand_in.max_amount_minor: required when policy = \"approve\""},
      {"bad currency", "[stand_in]\ncurrency = \"USD\"\n",
       "authswitch.toml:2: stand_in.currency: \"USD\" is not an ISO 4217 numeric code (3 "
       "digits, e.g. \"840\")"},
      {"bad log level", "[log]\nlevel = \"verbose\"\n",
       "authswitch.toml:2: log.level: unknown level \"verbose\" (one of: debug, info, warn, "
       "error)"},
      {"small rotation", "[audit]\nrotate_bytes = 1000\n",
       "authswitch.toml:2: audit.rotate_bytes: 1000 is out of range (0 or 1048576..1099511627776)"},
      {"missing key file", "[keys]\npan_token_key_file = \"/nonexistent/token.hex\"\n",
       "authswitch.toml:2: keys.pan_token_key_file: \"/nonexistent/token.hex\" does not exist"},
      {"unknown dialect", net + "dialect = \"visa\"\n",
       "authswitch.toml:6: network[0].dialect: unknown dialect \"visa\" (one of: iso87-ascii, "
       "iso87-ascii-binbitmap, iso87-bcd, iso93-ebcdic, or a file ending in .toml)"},
      {"missing dialect file", net + "dialect = \"/nonexistent/d.toml\"\n",
       "authswitch.toml:6: network[0].dialect: /nonexistent/d.toml: cannot open dialect file"},
      {"unknown framing", net + "framing = \"len3\"\n",
       "authswitch.toml:6: network[0].framing: unknown framing \"len3\" (one of: none, "
       "len2-binary, len2-bcd, len4-ascii, len4-binary; optionally +header=N, +max=N)"},
      {"bad framing option", net + "framing = \"len2-binary+header=99\"\n",
       "authswitch.toml:6: network[0].framing: bad framing option \"+header=99\" in "
       "\"len2-binary+header=99\" (+header=0..64, +max=1..1048576, each at most once, header "
       "smaller than max)"},
      {"duplicate network name",
       net + "[[network]]\nname = \"acq\"\nrole = \"dial\"\naddress = \"h:1\"\n",
       "authswitch.toml:7: network[1].name: duplicate network name \"acq\" (also network[0])"},
      {"same listening address",
       net + "[[network]]\nname = \"acq2\"\nrole = \"listen\"\naddress = \"127.0.0.1:8583\"\n",
       "authswitch.toml:9: network[1].address: \"127.0.0.1:8583\" is also the address of network "
       "\"acq\""},
      {"missing network keys", "[[network]]\ndialect = \"iso87-ascii\"\n",
       "authswitch.toml:1: network[0].name: required\n"
       "authswitch.toml:1: network[0].role: required (\"listen\" or \"dial\")\n"
       "authswitch.toml:1: network[0].address: required"},
      {"bad role", net + "[[network]]\nname = \"b\"\nrole = \"connect\"\naddress = \"h:1\"\n",
       "authswitch.toml:8: network[1].role: unknown role \"connect\" (one of: listen, dial)"},
      {"network not an array", "[network]\nname = \"a\"\n",
       "authswitch.toml:1: network: expected [[network]] tables, got a table"},
      {"reconnect on a listen network", net + "reconnect = { min = \"1s\" }\n",
       "authswitch.toml:6: network[0].reconnect: only for role = \"dial\""},
      {"reconnect min above max",
       "[[network]]\nname = \"b\"\nrole = \"dial\"\naddress = \"h:1\"\n"
       "reconnect = { min = \"2m\", max = \"1m\" }\n",
       "authswitch.toml:5: network[0].reconnect.max: must not be less than reconnect.min (2m)"},
      {"max_connections on a dial network",
       "[[network]]\nname = \"b\"\nrole = \"dial\"\naddress = \"h:1\"\nmax_connections = 2\n",
       "authswitch.toml:5: network[0].max_connections: only for role = \"listen\""},
      {"tls without files", net + "tls = { enabled = true }\n",
       "authswitch.toml:6: network[0].tls.cert: required to listen with TLS\n"
       "authswitch.toml:6: network[0].tls.ca: required when tls.verify_peer = true"},
      {"tls files missing",
       net + "[network.tls]\nenabled = true\ncert = \"/nonexistent/c.pem\"\n"
             "key = \"/nonexistent/k.pem\"\nca = \"/nonexistent/ca.pem\"\n",
       "authswitch.toml:8: network[0].tls.cert: \"/nonexistent/c.pem\" does not exist\n"
       "authswitch.toml:9: network[0].tls.key: \"/nonexistent/k.pem\" does not exist\n"
       "authswitch.toml:10: network[0].tls.ca: \"/nonexistent/ca.pem\" does not exist"},
      {"tls server_name to listen", net + "tls = { server_name = \"x\" }\n",
       "authswitch.toml:6: network[0].tls.server_name: only for role = \"dial\""},
  };
  for (const BadCase& c : cases) {
    EXPECT_EQ(error_of(c.text), c.message) << c.what;
  }
}

TEST(Config, TlsFilesAreCheckedOnlyWhenEnabled) {
  const std::string net = std::string(kListenNetwork);
  EXPECT_EQ(error_of(net + "tls = { enabled = false, cert = \"/nonexistent/c.pem\" }\n"), "");
  TempDir dir;
  const std::string ok = net + "tls = { enabled = true, cert = \"" + dir.file("c.pem") +
                         "\", key = \"" + dir.file("k.pem") + "\", ca = \"" + dir.file("ca.pem") +
                         "\" }\n";
  EXPECT_EQ(error_of(ok), "");
  const std::string directory = net + "tls = { enabled = true, verify_peer = false, cert = \"" +
                                dir.path() + "\", key = \"" + dir.file("k.pem") + "\" }\n";
  EXPECT_EQ(error_of(directory),
            "authswitch.toml:6: network[0].tls.cert: \"" + dir.path() + "\" is not a regular file");
}

TEST(Config, SyntaxErrorsNameTheLine) {
  const std::string e = error_of("[redis]\naddress = \"127.0.0.1:6379\n");
  EXPECT_TRUE(e.starts_with("authswitch.toml:2: ")) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

TEST(Config, EveryProblemIsReportedAtOnce) {
  const std::string text = R"([switch]
shards = -1
[redis]
address = "redis"
timeout = "fast"
[stand_in]
policy = "approve"
[[network]]
name = "a"
role = "listen"
address = "0.0.0.0:8583"
framing = "len3"
dialect = "nope"
[[network]]
name = "a"
role = "dial"
address = "h:1"
colour = "blue"
)";
  EXPECT_EQ(error_of(text),
            "authswitch.toml:2: switch.shards: -1 is out of range (0..256)\n"
            "authswitch.toml:4: redis.address: \"redis\" is not HOST:PORT\n"
            "authswitch.toml:5: redis.timeout: \"fast\" is not a duration (a whole number and a "
            "unit: ms, s, m, h or d, e.g. \"150ms\")\n"
            "authswitch.toml:6: stand_in.max_amount_minor: required when policy = \"approve\"\n"
            "authswitch.toml:6: stand_in.currency: required when policy = \"approve\"\n"
            "authswitch.toml:12: network[0].framing: unknown framing \"len3\" (one of: none, "
            "len2-binary, len2-bcd, len4-ascii, len4-binary; optionally +header=N, +max=N)\n"
            "authswitch.toml:13: network[0].dialect: unknown dialect \"nope\" (one of: "
            "iso87-ascii, iso87-ascii-binbitmap, iso87-bcd, iso93-ebcdic, or a file ending in "
            ".toml)\n"
            "authswitch.toml:15: network[1].name: duplicate network name \"a\" (also network[0])\n"
            "authswitch.toml:18: network[1].colour: unknown key (keys of network[1]: name, role, "
            "address, dialect, framing, budget, in_flight_max, echo_interval, read_timeout, "
            "sign_on_required, response_codes, tls, reconnect, max_connections)");
}

TEST(Config, MissingFileIsAConfigError) {
  try {
    (void)load_config_file("/nonexistent/authswitch.toml");
    FAIL() << "loaded";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "/nonexistent/authswitch.toml: no such file");
  }
}

TEST(Overrides, ListenDefinesTheCliNetwork) {
  SwitchConfig c = load_config(kListenNetwork, kSource);
  CliOverrides o;
  o.listen = "127.0.0.1:9583";
  o.dialect = "iso87-bcd";
  o.framing = "len2-binary+header=5";
  o.redis = "10.1.2.3:6390";
  o.shards = 2;
  o.rules = "other-rules.toml";
  apply_overrides(c, o);
  ASSERT_EQ(c.networks.size(), 2U);
  EXPECT_EQ(c.networks[0].name, "acq");
  const NetworkConfig& n = c.networks[1];
  EXPECT_EQ(n.name, "cli");
  EXPECT_EQ(n.role, NetworkRole::kListen);
  EXPECT_EQ(n.address.text(), "127.0.0.1:9583");
  EXPECT_EQ(n.dialect, &iso8583::builtin_dialect("iso87-bcd"));
  EXPECT_EQ(n.framing.header_bytes, 5);
  EXPECT_EQ(n.response_codes, "cli");
  EXPECT_EQ(n.budget, milliseconds(150));
  EXPECT_EQ(c.redis.address.text(), "10.1.2.3:6390");
  EXPECT_EQ(c.instance.shards, 2U);
  EXPECT_EQ(c.rules.file, "other-rules.toml");
}

TEST(Overrides, ListenReplacesAFileNetworkNamedCli) {
  SwitchConfig c = load_config("[[network]]\nname = \"cli\"\nrole = \"dial\"\naddress = \"h:1\"\n" +
                                   std::string(kListenNetwork),
                               kSource);
  CliOverrides o;
  o.listen = "[::]:0";
  apply_overrides(c, o);
  ASSERT_EQ(c.networks.size(), 2U);
  EXPECT_EQ(c.networks[0].name, "acq");
  EXPECT_EQ(c.networks[1].name, "cli");
  EXPECT_EQ(c.networks[1].role, NetworkRole::kListen);
  EXPECT_EQ(c.networks[1].address.host, "::");
  EXPECT_EQ(c.networks[1].dialect_name, "iso87-ascii");
  EXPECT_EQ(c.networks[1].framing_name, "len2-binary");
  EXPECT_NO_THROW(require_network(c));
}

TEST(Overrides, NothingGivenChangesNothing) {
  SwitchConfig c = load_config(kListenNetwork, kSource);
  const std::string before = describe(c);
  apply_overrides(c, CliOverrides{});
  EXPECT_EQ(describe(c), before);
}

TEST(Overrides, ProblemsAreReportedTogetherAndChangeNothing) {
  SwitchConfig c = load_config(kListenNetwork, kSource);
  const std::string before = describe(c);
  CliOverrides o;
  o.listen = "127.0.0.1:8583";
  o.dialect = "visa";
  o.framing = "len3";
  o.redis = "localhost";
  o.shards = 999;
  EXPECT_EQ(override_error(c, o),
            "command line: --redis: \"localhost\" is not HOST:PORT\n"
            "command line: --shards: 999 is out of range (0..256)\n"
            "command line: --dialect: unknown dialect \"visa\" (one of: iso87-ascii, "
            "iso87-ascii-binbitmap, iso87-bcd, iso93-ebcdic, or a file ending in .toml)\n"
            "command line: --framing: unknown framing \"len3\" (one of: none, len2-binary, "
            "len2-bcd, len4-ascii, len4-binary; optionally +header=N, +max=N)\n"
            "command line: --listen: \"127.0.0.1:8583\" is also the address of network \"acq\"");
  EXPECT_EQ(describe(c), before);

  CliOverrides without_listen;
  without_listen.dialect = "iso87-ascii";
  without_listen.framing = "none";
  EXPECT_EQ(override_error(c, without_listen),
            "command line: --dialect: only with --listen\n"
            "command line: --framing: only with --listen");
}

TEST(Overrides, CliOptionsFillTheOverrides) {
  CLI::App app{"authswitch"};
  CliOverrides o;
  add_cli_options(app, o);
  std::vector<std::string> args = {
      "--listen", "0.0.0.0:8583", "--dialect", "iso87-bcd", "--framing", "len4-ascii",
      "--redis",  "r:6379",       "--shards",  "3",         "--rules",   "r.toml"};
  std::reverse(args.begin(), args.end());  // CLI11 takes a vector in reverse order
  app.parse(args);
  EXPECT_EQ(o.listen, "0.0.0.0:8583");
  EXPECT_EQ(o.dialect, "iso87-bcd");
  EXPECT_EQ(o.framing, "len4-ascii");
  EXPECT_EQ(o.redis, "r:6379");
  EXPECT_EQ(o.shards, 3U);
  EXPECT_EQ(o.rules, "r.toml");

  CLI::App bare{"authswitch"};
  CliOverrides none;
  add_cli_options(bare, none);
  std::vector<std::string> no_args;
  bare.parse(no_args);
  EXPECT_FALSE(none.listen.has_value());
  EXPECT_FALSE(none.shards.has_value());

  CLI::App needs{"authswitch"};
  CliOverrides dialect_only;
  add_cli_options(needs, dialect_only);
  std::vector<std::string> dialect_args = {"iso87-bcd", "--dialect"};
  EXPECT_THROW(needs.parse(dialect_args), CLI::RequiresError);
}

TEST(Describe, RoundTripsThroughLoad) {
  TempDir dir;
  const std::string text = std::string(kListenNetwork) + "tls = { enabled = true, cert = \"" +
                           dir.file("c.pem") + "\", key = \"" + dir.file("k.pem") + "\", ca = \"" +
                           dir.file("ca.pem") + "\" }\n" +
                           "[[network]]\nname = \"b\"\nrole = \"dial\"\naddress = \"h:1\"\n"
                           "framing = \"none\"\nbudget = \"1500ms\"\n"
                           "[stand_in]\npolicy = \"approve\"\nmax_amount_minor = 2500\n"
                           "currency = \"978\"\n";
  const SwitchConfig c = load_config(text, kSource);
  const std::string d = describe(c);
  const SwitchConfig again = load_config(d, "describe");
  EXPECT_EQ(describe(again), d);
  EXPECT_NE(d.find("budget = \"1500ms\""), std::string::npos) << d;
  EXPECT_NE(d.find("currency = \"978\""), std::string::npos) << d;
  EXPECT_NE(d.find("replay_window = \"1d\""), std::string::npos) << d;
}

TEST(Describe, ShowsPathsNeverKeyMaterial) {
  TempDir dir;
  const std::string key_file = dir.file("token.hex", kKeyHex);
  const std::string tls_key = dir.file("tls.key", "-----BEGIN PRIVATE KEY-----\nMIIEsecret\n");
  ASSERT_EQ(setenv("AS_PAN_TOKEN_KEY_HEX", kKeyHex, 1), 0);
  const SwitchConfig c = load_config("[keys]\npan_token_key_file = \"" + key_file + "\"\n" +
                                         std::string(kListenNetwork) +
                                         "tls = { enabled = true, verify_peer = false, cert = \"" +
                                         dir.file("c.pem") + "\", key = \"" + tls_key + "\" }\n",
                                     kSource);
  const std::string d = describe(c);
  EXPECT_NE(d.find(key_file), std::string::npos) << d;
  EXPECT_NE(d.find(tls_key), std::string::npos) << d;
  EXPECT_EQ(d.find(kKeyHex), std::string::npos) << d;
  EXPECT_EQ(d.find("0011223344"), std::string::npos) << d;
  EXPECT_EQ(d.find("PRIVATE KEY"), std::string::npos) << d;
  EXPECT_EQ(d.find("MIIE"), std::string::npos) << d;
  ASSERT_EQ(unsetenv("AS_PAN_TOKEN_KEY_HEX"), 0);
}

TEST(Values, Durations) {
  EXPECT_EQ(parse_duration("150ms"), milliseconds(150));
  EXPECT_EQ(parse_duration("2s"), milliseconds(2'000));
  EXPECT_EQ(parse_duration("5m"), milliseconds(300'000));
  EXPECT_EQ(parse_duration("24h"), milliseconds(86'400'000));
  EXPECT_EQ(parse_duration("7d"), milliseconds(604'800'000));
  EXPECT_EQ(parse_duration("0s"), milliseconds(0));
  for (const std::string_view bad :
       {"", "ms", "5", "-5s", "5 s", "5S", "1.5s", "5sec", "5s ", "99999999999999d"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
  }
  EXPECT_EQ(format_duration(milliseconds(0)), "0s");
  EXPECT_EQ(format_duration(milliseconds(150)), "150ms");
  EXPECT_EQ(format_duration(milliseconds(1'500)), "1500ms");
  EXPECT_EQ(format_duration(milliseconds(90'000)), "90s");
  EXPECT_EQ(format_duration(std::chrono::hours(24)), "1d");
  EXPECT_EQ(format_duration(std::chrono::hours(36)), "36h");
}

TEST(Values, Addresses) {
  EXPECT_EQ(parse_host_port("127.0.0.1:6379")->text(), "127.0.0.1:6379");
  EXPECT_EQ(parse_host_port("redis-1.internal:1")->host, "redis-1.internal");
  EXPECT_EQ(parse_host_port("[fe80::1]:80")->host, "fe80::1");
  EXPECT_EQ(parse_host_port("h:0")->port, 0);
  for (const std::string_view bad : {"", ":1", "h:", "h", "h:x", "h:-1", "h:65536", "h:123456",
                                     "::1:80", "[]:80", "h h:1", "h:1 "}) {
    EXPECT_FALSE(parse_host_port(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace authswitch::switching
