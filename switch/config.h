#pragma once
// The switch's configuration (DESIGN.md section 6): one TOML file, config/authswitch.toml, with
// every value defaulted here in code, then command-line overrides (switch/cli_options.h).
// config/authswitch.toml is the documented reference of the file format.
//
// File format decisions:
//   - Every key has a default except a network's name, role and address, so an empty file is a
//     valid configuration; the server needs at least one [[network]] to run, which
//     require_network() checks after the overrides.
//   - Unknown keys are errors, so a misspelt key is never silently ignored.
//   - Durations are texts with a unit, one style everywhere: "150ms", "2s", "5m", "24h", "7d"
//     (units ms, s, m, h, d; a non-negative integer count). Their keys carry no unit
//     (`budget = "150ms"`); in code they are std::chrono::milliseconds. Sizes and counts are
//     integers whose key names the unit (`rotate_bytes`, `max_amount_minor`).
//   - Money is an integer count of minor units plus an ISO 4217 numeric currency written as a
//     3-digit text ("840", "008"), as carried in DE 49.
//   - Addresses are "HOST:PORT" ("[::1]:6379" for IPv6). Port 0 (any free port) is accepted
//     only where the switch listens (a listen network, [http] listen).
//   - Relative paths are relative to the working directory, as given. Files named by enabled
//     TLS settings and by keys.pan_token_key_file must exist at load time; they are never read
//     here, so key material never enters this structure.
//
// Errors: load_config() reports every problem at once by throwing ConfigError, one line per
// problem, "<source>:<line>: <key path>: <reason>" (line omitted when unknown), e.g.
//   authswitch.toml:14: network[1].framing: unknown framing "len3" (one of: none, ...)
// Networks are numbered from 0 in file order. A TOML syntax error is reported alone.
//
// Ownership and thread-safety: SwitchConfig and its parts are plain values. The process loads
// one at start-up (exceptions are allowed there); a running switch publishes an immutable
// snapshot (std::shared_ptr<const SwitchConfig>) and never mutates it. NetworkConfig::dialect
// points to a dialect owned by the codec's registry for the life of the process.

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "iso8583/framing.h"

namespace authswitch::iso8583 {
class Dialect;
}  // namespace authswitch::iso8583

namespace authswitch::switching {

// Every problem of a configuration, one per line (see the file comment).
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Limits on what a configuration may ask for (STYLE.md: a limit on everything).
inline constexpr std::uint32_t kShardsMax = 256;
inline constexpr std::uint32_t kCpuMax = 1023;  // CPU_SETSIZE - 1
inline constexpr std::size_t kNetworksMax = 64;
inline constexpr std::size_t kNameBytesMax = 64;  // network and instance names
inline constexpr std::uint32_t kInFlightMax = 65'536;
inline constexpr std::uint32_t kConnectionsMax = 4'096;

// "HOST:PORT". The host is kept without the brackets of an IPv6 literal.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;

  // "host:port", or "[host]:port" when the host contains a ':'.
  [[nodiscard]] std::string text() const;
};

// Parses "HOST:PORT" (port 0..65535; the caller decides whether 0 is allowed).
[[nodiscard]] std::optional<HostPort> parse_host_port(std::string_view text);

// Parses "150ms", "2s", "5m", "24h", "7d"; nullopt when malformed or too large.
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// The largest unit that represents `d` exactly: 86'400'000 ms -> "1d", 150 ms -> "150ms".
[[nodiscard]] std::string format_duration(std::chrono::milliseconds d);

// [switch]
struct InstanceConfig {
  std::uint32_t shards = 0;         // I/O threads; 0: one per core (see effective_shards)
  std::vector<std::uint32_t> cpus;  // shard i runs on cpus[i % size]; empty: not pinned
  std::string name = "authswitch";  // instance name in logs and metrics; [a-z0-9_-]
};

// [redis]
struct RedisConfig {
  HostPort address{"127.0.0.1", 6379};
  std::chrono::milliseconds timeout{50};  // caps each call's deadline (1ms..10s)
  std::chrono::milliseconds connect_timeout{1'000};
  std::chrono::milliseconds replay_window{std::chrono::hours(24)};  // idempotency records
  std::chrono::milliseconds hold_ttl{std::chrono::hours(24 * 7)};   // unclaimed holds expire
  bool preload_cards = false;  // warm each shard's card cache from Redis after every (re)sync
};

// [rules]
struct RulesConfig {
  std::string file = "config/rules.toml";  // fraud rules (risk::load_rules); SIGHUP reloads it
};

// [keys]
struct KeysConfig {
  // File holding the PAN token key in hex; empty: the environment variable
  // AS_PAN_TOKEN_KEY_HEX. Only the path is kept here, never the key.
  std::string pan_token_key_file;
};

enum class StandInChoice : std::uint8_t {
  kDecline,  // answer 91 (issuer unavailable)
  kApprove,  // approve up to max_amount_minor in `currency`, record for reconciliation
};

// [stand_in]: what a request that missed its deadline is answered (DESIGN.md section 1).
struct StandInConfig {
  StandInChoice policy = StandInChoice::kDecline;
  std::int64_t max_amount_minor = 0;  // kApprove: largest amount approved (> 0)
  std::uint16_t currency = 0;         // kApprove: ISO 4217 numeric; other currencies decline
  // The reconciliation journal (switch/reconciler.h): JSON lines of every item Redis owes after
  // a stand-in answer and of its outcome. Empty: none (counted only).
  std::string journal = "standin.jsonl";
};

// [http]: Prometheus metrics (/metrics) and /healthz.
struct HttpConfig {
  bool enabled = true;
  HostPort listen{"127.0.0.1", 9464};
};

// [audit]: the JSON lines journal of decisions.
struct AuditConfig {
  std::string path = "audit.jsonl";            // empty: no journal (tests, benchmarks)
  std::uint64_t rotate_bytes = 256ULL << 20U;  // start a new file beyond this size; 0: never
};

enum class LogLevel : std::uint8_t { kDebug, kInfo, kWarn, kError };
enum class LogFormat : std::uint8_t { kJson };

// [log]: JSON lines on stderr.
struct LogConfig {
  LogLevel level = LogLevel::kInfo;
  LogFormat format = LogFormat::kJson;
};

enum class NetworkRole : std::uint8_t {
  kListen,  // the switch accepts connections (acquirers connect to it)
  kDial,    // the switch connects out and keeps the link up
};

// [network.tls] (written `tls = { ... }` or `[network.tls]`).
struct TlsConfig {
  bool enabled = false;
  std::string cert;  // PEM certificate chain; required to listen
  std::string key;   // PEM private key (path only); required with cert
  std::string ca;    // PEM CA bundle that verifies the peer; required with verify_peer
  // Verify the peer's certificate against `ca`. On a listen network this is mutual TLS: a
  // client without a valid certificate is refused.
  bool verify_peer = true;
  std::string server_name;  // dial only: SNI and the name checked; empty: the address's host
};

// [network.reconnect]: dial only. Back-off doubles from min to max after each failure.
struct ReconnectConfig {
  std::chrono::milliseconds min{100};
  std::chrono::milliseconds max{30'000};
};

// One [[network]]: a card network link the switch serves.
struct NetworkConfig {
  std::string name;  // unique, [a-z0-9_-], 1..64 bytes; in logs, metrics and the audit journal
  NetworkRole role = NetworkRole::kListen;
  HostPort address;
  std::string dialect_name = "iso87-ascii";         // a built-in dialect or a path ending in .toml
  const iso8583::Dialect* dialect = nullptr;        // resolved by load_config; never null after it
  std::string framing_name = "len2-binary";         // as written, e.g. "len2-binary+header=5"
  iso8583::Framing framing;                         // parsed from framing_name
  std::chrono::milliseconds budget{150};            // deadline = arrival + budget, then stand-in
  std::uint32_t in_flight_max = 1'024;              // per connection; beyond it reading pauses
  std::chrono::milliseconds echo_interval{30'000};  // 0800 echo on an idle link; 0: off
  // A connection holding a partial frame this long (a slow or stuck writer) is closed.
  std::chrono::milliseconds read_timeout{30'000};
  bool sign_on_required = false;  // traffic before a 0800 sign-on is refused / sent
  std::string response_codes;     // risk response-code policy; by default the network's name
  TlsConfig tls;
  ReconnectConfig reconnect;           // dial only
  std::uint32_t max_connections = 64;  // listen only
};

struct SwitchConfig {
  InstanceConfig instance;  // [switch]
  RedisConfig redis;
  RulesConfig rules;
  KeysConfig keys;
  StandInConfig stand_in;
  HttpConfig http;
  AuditConfig audit;
  LogConfig log;
  std::vector<NetworkConfig> networks;  // [[network]], in file order
};

// Parses and validates a configuration. `source` names it in error messages (usually the
// path). Throws ConfigError listing every problem.
[[nodiscard]] SwitchConfig load_config(std::string_view toml_text, std::string_view source);

// Reads `path` and calls load_config with the path as the source. Throws ConfigError, also
// when the file cannot be read.
[[nodiscard]] SwitchConfig load_config_file(const std::string& path);

// The command-line overrides (registered on a CLI::App by switch/cli_options.h). Unset
// fields leave the configuration as it is.
struct CliOverrides {
  std::optional<std::string> listen;    // --listen HOST:PORT: defines the network "cli"
  std::optional<std::string> dialect;   // --dialect NAME|FILE.toml: the "cli" network's dialect
  std::optional<std::string> framing;   // --framing NAME: the "cli" network's framing
  std::optional<std::string> redis;     // --redis HOST:PORT
  std::optional<std::uint32_t> shards;  // --shards N
  std::optional<std::string> rules;     // --rules FILE
};

// Name of the network that --listen defines.
inline constexpr std::string_view kCliNetworkName = "cli";

// Applies overrides. --listen defines a listening network named "cli" (replacing one of that
// name, keeping every other network) with --dialect and --framing, which default to
// iso87-ascii and len2-binary and are errors without --listen. Validates like load_config and
// throws ConfigError ("command line: --listen: ...") listing every problem; `config` is
// unchanged when it throws.
void apply_overrides(SwitchConfig& config, const CliOverrides& overrides);

// Throws ConfigError unless the configuration has at least one network: the check the server
// makes after the overrides (an empty file is valid for everything else, e.g. --print-config).
void require_network(const SwitchConfig& config);

// Empty when every CPU of config.instance.cpus is one this process may run on (its affinity,
// e.g. as taskset set it); otherwise "switch.cpus: CPU 5 is not available to this process
// (allowed: 0-1)". Server checks it before starting a thread.
[[nodiscard]] std::string check_cpus(const SwitchConfig& config);

// Shards to start: config.instance.shards, or one per core when it is 0.
[[nodiscard]] std::uint32_t effective_shards(const SwitchConfig& config) noexcept;

// The effective configuration as TOML (authswitch --print-config): every section and key with
// its value, loadable again by load_config. Paths only: never key material.
[[nodiscard]] std::string describe(const SwitchConfig& config);

// Text names, as written in the file.
[[nodiscard]] std::string_view role_name(NetworkRole role) noexcept;
[[nodiscard]] std::string_view stand_in_policy_name(StandInChoice policy) noexcept;
[[nodiscard]] std::string_view log_level_name(LogLevel level) noexcept;
[[nodiscard]] std::string_view log_format_name(LogFormat format) noexcept;

}  // namespace authswitch::switching
