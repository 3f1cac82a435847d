// authswitch-admin: the operator's command line for the authswitch Redis data (issue 3).
//
//   authswitch-admin import profiles [FILE.csv]     limit profiles (default: the shipped ones)
//   authswitch-admin import cards FILE.csv          a card portfolio, all or nothing
//   authswitch-admin account show ID
//   authswitch-admin account credit|debit ID AMOUNT [--txn KEY]
//   authswitch-admin holds list ID [--all]
//   authswitch-admin card show|block|unblock PAN    (PAN "-": read it from stdin)
//   authswitch-admin card override PAN --rule ID [--country CC] --days N | --clear [--rule ID]
//   authswitch-admin profile show NAME | profile list
//   authswitch-admin rules check FILE.toml | rules test FILE.toml [--input F] [--network N]
//   [--json]
// Every command takes --redis HOST:PORT (default: [redis] address of --config FILE, by default
// config/authswitch.toml when it exists, else 127.0.0.1:6379). Card commands need the PAN token
// key: --token-key FILE, else the environment variable AS_PAN_TOKEN_KEY_HEX.
//
// Exit status: 0 ok; 1 a runtime or Redis error (the message names host:port), an unknown
// account or card, a refused change, a declined adjustment; 2 a usage error or bad input
// (nothing was changed).

#include <charconv>
#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>
#include <toml++/toml.h>
#include <unistd.h>

#include "limits/pan_token.h"
#include "risk/rules.h"
#include "switch/admin/admin.h"
#include "switch/admin/portfolio.h"
#include "switch/admin/redis_io.h"
#include "switch/admin/rules_tester.h"

namespace {

namespace admin = authswitch::admin;
using authswitch::limits::TokenKey;

constexpr std::string_view kDefaultConfig = "config/authswitch.toml";
constexpr std::string_view kDefaultRedis = "127.0.0.1:6379";
constexpr std::chrono::milliseconds kConnectTimeout{2'000};
constexpr std::chrono::milliseconds kCommandTimeout{10'000};

// A usage or input problem: exit status 2.
class BadInput : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string redis;
  std::string config;
  std::string token_key;
  std::string file;
  std::string id;
  std::string amount;
  std::string txn;
  bool all = false;
  std::string input;
  std::string network;
  bool json = false;
  std::string http;
  std::string rule;
  std::string country;
  std::int64_t days = 0;
  bool clear = false;
};

// The Redis address: --redis, else the config file's [redis] address, else the default.
std::string redis_address(const Options& o) {
  if (!o.redis.empty()) {
    return o.redis;
  }
  std::string path = o.config;
  if (path.empty()) {
    if (!std::filesystem::exists(kDefaultConfig)) {
      return std::string(kDefaultRedis);
    }
    path = kDefaultConfig;
  }
  try {
    const toml::table config = toml::parse_file(path);
    if (const toml::node* node = config["redis"]["address"].node(); node != nullptr) {
      if (const std::optional<std::string> a = node->value<std::string>(); a) {
        return *a;
      }
      throw BadInput(path + ": redis.address: not a string");
    }
    return std::string(kDefaultRedis);
  } catch (const toml::parse_error& e) {
    throw BadInput(path + ":" + std::to_string(e.source().begin.line) + ": " +
                   std::string(e.description()));
  }
}

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw BadInput(path + ": " + (ec ? ec.message() : std::string("not a regular file")));
  }
  std::ifstream in(path, std::ios::binary);
  const auto size = std::filesystem::file_size(path, ec);
  if (!in || ec) {
    throw BadInput(path + ": cannot read");
  }
  std::string text(size, '\0');
  in.read(text.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uintmax_t>(in.gcount()) != size) {
    throw BadInput(path + ": cannot read");
  }
  return text;
}

TokenKey token_key(const Options& o) {
  try {
    return o.token_key.empty() ? authswitch::limits::load_token_key_from_env()
                               : authswitch::limits::load_token_key(o.token_key);
  } catch (const std::runtime_error& e) {
    throw BadInput(std::string("PAN token key: ") + e.what());
  }
}

// The PAN argument; "-" reads it from the first line of stdin (keeps it out of `ps`).
std::string pan_argument(const std::string& arg) {
  if (arg != "-") {
    return arg;
  }
  std::string line;
  std::getline(std::cin, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) {
    line.pop_back();
  }
  return line;
}

// AMOUNT: minor units, 1..kBalanceMax.
std::int64_t amount_argument(const std::string& s) {
  std::int64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v <= 0 || v > admin::kBalanceMax) {
    throw BadInput("AMOUNT: " + admin::printable(s) +
                   " is not an integer of minor units from 1 to " +
                   std::to_string(admin::kBalanceMax));
  }
  return v;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// CLI11's messages may quote arguments (e.g. unexpected extras): a PAN typed in the wrong
// place must not be echoed, so those are reported without their values.
std::string failure_message(const CLI::App* /*app*/, const CLI::Error& e) {
  std::string msg = e.get_exit_code() == static_cast<int>(CLI::ExitCodes::ExtrasError)
                        ? std::string("unexpected arguments (not shown)")
                        : std::string(e.what());
  return "authswitch-admin: " + msg + "\nRun with --help for more information.\n";
}

struct Commands {
  CLI::App* import_profiles = nullptr;
  CLI::App* import_cards = nullptr;
  CLI::App* account_show = nullptr;
  CLI::App* account_credit = nullptr;
  CLI::App* account_debit = nullptr;
  CLI::App* holds_list = nullptr;
  CLI::App* card_show = nullptr;
  CLI::App* card_block = nullptr;
  CLI::App* card_unblock = nullptr;
  CLI::App* card_override = nullptr;
  CLI::App* profile_show = nullptr;
  CLI::App* profile_list = nullptr;
  CLI::App* rules_test = nullptr;
  CLI::App* rules_check = nullptr;
  CLI::App* rules_reload = nullptr;
};

Commands define_commands(CLI::App& app, Options& o) {
  Commands c;
  auto* import = app.add_subcommand("import", "import limit profiles or cards from CSV");
  import->require_subcommand(1);
  c.import_profiles = import->add_subcommand(
      "profiles", "import limit profiles (profile,channel,per_transaction_max,...)");
  c.import_profiles->add_option("FILE", o.file, "CSV file (default: the shipped profiles)");
  c.import_cards = import->add_subcommand(
      "cards", "import cards (pan,expiry,account,currency,balance,status,profile), all or nothing");
  c.import_cards->add_option("FILE", o.file, "CSV file")->required();

  auto* account = app.add_subcommand("account", "show an account, credit or debit it");
  account->require_subcommand(1);
  c.account_show = account->add_subcommand("show", "balances, status, cards and pending holds");
  c.account_credit = account->add_subcommand("credit", "manual credit (holds script `adjust`)");
  c.account_debit = account->add_subcommand("debit", "manual debit (holds script `adjust`)");
  c.account_show->add_option("ID", o.id, "account id")->required();
  for (CLI::App* cmd : {c.account_credit, c.account_debit}) {
    cmd->add_option("ID", o.id, "account id")->required();
    cmd->add_option("AMOUNT", o.amount, "minor units, > 0")->required();
    cmd->add_option("--txn", o.txn, "transaction key (default adm-<unix ms>-<pid>)");
  }

  auto* holds = app.add_subcommand("holds", "an account's holds");
  holds->require_subcommand(1);
  c.holds_list = holds->add_subcommand("list", "pending holds (--all: every record)");
  c.holds_list->add_option("ID", o.id, "account id")->required();
  c.holds_list->add_flag("--all", o.all, "every hold record with its state");

  auto* card = app.add_subcommand("card", "show, block or unblock a card");
  card->require_subcommand(1);
  c.card_show = card->add_subcommand("show", "masked PAN, token, account, profile, status");
  c.card_block = card->add_subcommand("block", "active -> blocked");
  c.card_unblock = card->add_subcommand("unblock", "blocked -> active");
  c.card_override = card->add_subcommand(
      "override", "do not apply a fraud rule to the card for some days (e.g. travel), or --clear");
  for (CLI::App* cmd : {c.card_show, c.card_block, c.card_unblock, c.card_override}) {
    cmd->add_option("PAN", o.id, "card number, or - to read it from stdin")->required();
  }
  c.card_override->add_option("--rule", o.rule, "rule id");
  c.card_override->add_option("--country", o.country, "only in this merchant country (DE 43)");
  c.card_override->add_option("--days", o.days, "1 to 365");
  c.card_override->add_flag("--clear", o.clear, "end the rule's overrides (all without --rule)");

  auto* profile = app.add_subcommand("profile", "show or list limit profiles");
  profile->require_subcommand(1);
  c.profile_show = profile->add_subcommand("show", "a profile's limits, as import CSV");
  c.profile_show->add_option("NAME", o.id, "profile name")->required();
  c.profile_list = profile->add_subcommand("list", "every profile name");

  auto* rules = app.add_subcommand("rules", "check or test a fraud rule file");
  rules->require_subcommand(1);
  c.rules_check = rules->add_subcommand("check", "validate and compile FILE.toml, list its rules");
  c.rules_check->add_option("FILE", o.file, "rule file (TOML)")->required();
  c.rules_test = rules->add_subcommand(
      "test", "decide each authorization of a JSON lines file (iso8583 decode output)");
  c.rules_test->add_option("FILE", o.file, "rule file (TOML)")->required();
  c.rules_test->add_option("--input", o.input, "JSON lines file (default: stdin)");
  c.rules_test->add_option("--network", o.network, "response-code policy to use");
  c.rules_test->add_flag("--json", o.json, "one JSON object per decision");
  c.rules_reload = rules->add_subcommand(
      "reload", "ask a running switch to reload its rule file (POST /-/reload, as SIGHUP does)");
  c.rules_reload->add_option("--http", o.http,
                             "the switch's HTTP endpoint HOST:PORT (default 127.0.0.1:9464)");
  return c;
}

// rules check / rules test: local only, no Redis.
int run_rules(const Commands& c, const Options& o) {
  std::unique_ptr<const authswitch::risk::RuleSet> set;
  try {
    set = authswitch::risk::load_rules(o.file);
  } catch (const authswitch::risk::RuleSetError& e) {
    std::cerr << e.what() << '\n';
    return admin::kExitBadInput;
  }
  if (c.rules_check->parsed()) {
    std::cout << o.file << ": version " << set->version() << ", " << set->rules().size()
              << " rules\n";
    for (const auto& r : set->rules()) {
      std::cout << "  " << r.id << (r.velocity ? " [velocity]" : "")
                << (r.mode == authswitch::risk::Mode::kShadow ? " [shadow]"
                    : r.mode == authswitch::risk::Mode::kOff  ? " [off]"
                                                              : "")
                << ": " << r.description << '\n';
    }
    return admin::kExitOk;
  }
  admin::RuleTestOptions options;
  options.network = o.network;
  options.json = o.json;
  options.now_ms = now_ms();
  if (o.input.empty()) {
    return admin::test_rules(*set, std::cin, options, std::cout, std::cerr);
  }
  std::ifstream in(o.input);
  if (!in) {
    throw BadInput(o.input + ": cannot open");
  }
  return admin::test_rules(*set, in, options, std::cout, std::cerr);
}

// rules reload: POST /-/reload to a switch's HTTP endpoint; 202 means the reload was asked
// for (its outcome is in the switch's log and /metrics).
int run_reload(const Options& o) {
  const std::string text = o.http.empty() ? std::string("127.0.0.1:9464") : o.http;
  const std::optional<admin::RedisAddress> address = admin::parse_redis_address(text);
  if (!address) {
    throw BadInput("--http: " + admin::printable(text) + " is not HOST:PORT");
  }
  const std::string response = admin::http_post(*address, "/-/reload", kConnectTimeout);
  const std::string status = response.substr(0, response.find('\r'));
  if (status.rfind("HTTP/1.1 202", 0) != 0) {
    std::cerr << "authswitch-admin: " << text << ": "
              << (status.empty() ? std::string("no answer") : status) << '\n';
    return admin::kExitRuntime;
  }
  std::cout << "reload requested from " << text << '\n';
  return admin::kExitOk;
}

int run(const Commands& c, const Options& o) {
  if (c.rules_reload->parsed()) {
    return run_reload(o);
  }
  if (c.rules_check->parsed() || c.rules_test->parsed()) {
    return run_rules(c, o);
  }
  // Local input first: a bad file or key fails before any connection.
  std::string file_text;
  std::string file_name;
  std::optional<TokenKey> key;
  if (c.import_profiles->parsed()) {
    file_name = o.file.empty() ? "config/profiles.csv (built in)" : o.file;
    file_text = o.file.empty() ? std::string(admin::shipped_profiles_csv()) : read_file(o.file);
  } else if (c.import_cards->parsed()) {
    file_name = o.file;
    file_text = read_file(o.file);
  }
  if (c.import_cards->parsed() || c.card_show->parsed() || c.card_block->parsed() ||
      c.card_unblock->parsed() || c.card_override->parsed()) {
    key.emplace(token_key(o));
  }
  const std::string address_text = redis_address(o);
  const std::optional<admin::RedisAddress> address = admin::parse_redis_address(address_text);
  if (!address) {
    throw BadInput("--redis: " + admin::printable(address_text) + " is not HOST:PORT");
  }
  const admin::RedisContextPtr ctx =
      admin::connect_redis(*address, kConnectTimeout, kCommandTimeout);
  admin::Admin a(*ctx, address->text(), std::cout, std::cerr);
  if (c.import_profiles->parsed()) {
    return a.import_profiles(file_name, file_text);
  }
  if (c.import_cards->parsed()) {
    return a.import_cards(file_name, file_text, *key);
  }
  if (c.account_show->parsed()) {
    return a.show_account(o.id);
  }
  if (c.account_credit->parsed() || c.account_debit->parsed()) {
    const std::int64_t amount = amount_argument(o.amount);
    const std::int64_t now = now_ms();
    const std::string txn =
        o.txn.empty() ? "adm-" + std::to_string(now) + "-" + std::to_string(getpid()) : o.txn;
    return a.adjust_balance(o.id, c.account_credit->parsed() ? amount : -amount, txn, now);
  }
  if (c.holds_list->parsed()) {
    return a.list_holds(o.id, o.all);
  }
  if (c.card_show->parsed()) {
    return a.show_card(pan_argument(o.id), *key);
  }
  if (c.card_override->parsed()) {
    return a.set_card_override(pan_argument(o.id), *key, {o.rule, o.country, o.days, o.clear},
                               now_ms());
  }
  if (c.card_block->parsed() || c.card_unblock->parsed()) {
    return a.set_card_blocked(pan_argument(o.id), c.card_block->parsed(), *key);
  }
  if (c.profile_show->parsed()) {
    return a.show_profile(o.id);
  }
  return a.list_profiles();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"authswitch-admin: cards, accounts, holds and limit profiles in Redis; rule files"};
  // Options of the top level may also follow a subcommand (`account show 1 --redis H:P`).
  app.fallthrough();
  app.require_subcommand(1);
  app.failure_message(failure_message);
  Options o;
  app.add_option("--redis", o.redis,
                 "HOST:PORT (default: [redis] address of --config, else 127.0.0.1:6379)");
  app.add_option("--config", o.config, "TOML file (default: config/authswitch.toml if it exists)");
  app.add_option("--token-key", o.token_key,
                 "file holding the PAN token key in hex (default: $AS_PAN_TOKEN_KEY_HEX)");
  const Commands commands = define_commands(app, o);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? admin::kExitOk : admin::kExitBadInput;
  }
  try {
    return run(commands, o);
  } catch (const BadInput& e) {
    std::cerr << "authswitch-admin: " << e.what() << '\n';
    return admin::kExitBadInput;
  } catch (const std::exception& e) {
    std::cerr << "authswitch-admin: " << e.what() << '\n';
    return admin::kExitRuntime;
  }
}
