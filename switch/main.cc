// authswitch: the authorization switch (issue 5).
//
//   authswitch [--config FILE] [--listen HOST:PORT --dialect NAME --framing NAME]
//              [--redis HOST:PORT] [--shards N] [--rules FILE] [--print-config]
//
// Loads the configuration (config/authswitch.toml by default; a missing default file means the
// built-in defaults), applies the command-line overrides, loads the fraud rules and the PAN
// token key, and serves until SIGTERM or SIGINT, then drains in-flight requests and exits 0.
// A bad configuration or rule file fails at start with every problem on its own line (exit 2).
//
// Logs are JSON lines on stderr (switch/log.h). Once every listen network is bound, one line
// per listen network gives its address, so tools read the port when the file says port 0:
//   {"event":"listening","network":"acq","address":"127.0.0.1:40211","tls":"false",...}
// Dial networks get a "dialing" line. At exit: {"event":"stopped",...} with the totals.

#include <filesystem>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "limits/pan_token.h"
#include "risk/rules.h"
#include "switch/cli_options.h"
#include "switch/config.h"
#include "switch/log.h"
#include "switch/server.h"

int main(int argc, char** argv) {
  namespace sw = authswitch::switching;
  CLI::App app{"authswitch: ISO 8583 debit-card authorization switch"};
  std::string config_path;
  bool print_config = false;
  app.add_option("--config", config_path,
                 "TOML file (default: config/authswitch.toml if it exists)");
  app.add_flag("--print-config", print_config, "print the effective configuration and exit");
  sw::CliOverrides overrides;
  sw::add_cli_options(app, overrides);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (config_path.empty() && std::filesystem::exists("config/authswitch.toml")) {
      config_path = "config/authswitch.toml";
    }
    sw::SwitchConfig config =
        config_path.empty() ? sw::load_config("", "(defaults)") : sw::load_config_file(config_path);
    sw::apply_overrides(config, overrides);
    if (print_config) {
      std::cout << sw::describe(config);
      return 0;
    }
    sw::require_network(config);
    sw::configure_log(config.instance.name, config.log.level);
    auto rules = authswitch::risk::load_rules(config.rules.file);
    // The audit journal names each decision's set by version and generation; this line and
    // rules_reloaded tie them together.
    sw::log_event(sw::LogLevel::kInfo, "rules_loaded", "", std::string(rules->version()),
                  {{"generation", std::to_string(rules->generation())}});
    const authswitch::limits::TokenKey key =
        config.keys.pan_token_key_file.empty()
            ? authswitch::limits::load_token_key_from_env()
            : authswitch::limits::load_token_key(config.keys.pan_token_key_file);
    sw::Server server(config, std::move(rules), key);
    for (std::size_t i = 0; i < config.networks.size(); ++i) {
      const sw::NetworkConfig& n = config.networks[i];
      const std::string tls = n.tls.enabled ? "true" : "false";
      if (n.role == sw::NetworkRole::kListen) {
        const sw::HostPort bound{n.address.host, server.listening_port(i)};
        sw::log_event(sw::LogLevel::kInfo, "listening", n.name, "",
                      {{"address", bound.text()}, {"tls", tls}});
      } else {
        sw::log_event(sw::LogLevel::kInfo, "dialing", n.name, "",
                      {{"address", n.address.text()}, {"tls", tls}});
      }
    }
    server.run(/*handle_signals=*/true);
    const sw::Server::Totals t = server.totals();
    sw::log_event(sw::LogLevel::kInfo, "stopped", "", "",
                  {{"connections", std::to_string(t.connections)},
                   {"requests", std::to_string(t.requests)},
                   {"responses", std::to_string(t.responses)}});
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "authswitch: " << e.what() << '\n';
    return 2;
  }
}
