// authswitch: the authorization switch (issue 5).
//
//   authswitch [--config FILE] [--listen HOST:PORT --dialect NAME --framing NAME]
//              [--redis HOST:PORT] [--shards N] [--rules FILE] [--print-config]
//
// Loads the configuration (config/authswitch.toml by default; a missing default file means the
// built-in defaults), applies the command-line overrides, loads the fraud rules and the PAN
// token key, and serves until SIGTERM or SIGINT, then drains in-flight requests and exits 0.
// A bad configuration or rule file fails at start with every problem on its own line (exit 2).

#include <filesystem>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "limits/pan_token.h"
#include "risk/rules.h"
#include "switch/cli_options.h"
#include "switch/config.h"
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
    auto rules = authswitch::risk::load_rules(config.rules.file);
    const authswitch::limits::TokenKey key =
        config.keys.pan_token_key_file.empty()
            ? authswitch::limits::load_token_key_from_env()
            : authswitch::limits::load_token_key(config.keys.pan_token_key_file);
    sw::Server server(config, std::move(rules), key);
    for (std::size_t i = 0; i < config.networks.size(); ++i) {
      if (config.networks[i].role == sw::NetworkRole::kListen) {
        std::cerr << R"({"level":"info","event":"listening","network":")" << config.networks[i].name
                  << R"(","port":)" << server.listening_port(i) << "}\n";
      }
    }
    server.run(/*handle_signals=*/true);
    const sw::Server::Totals t = server.totals();
    std::cerr << R"({"level":"info","event":"stopped","connections":)" << t.connections
              << R"(,"requests":)" << t.requests << R"(,"responses":)" << t.responses << "}\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "authswitch: " << e.what() << '\n';
    return 2;
  }
}
