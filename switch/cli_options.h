#pragma once
// The command-line overrides of the configuration (CliOverrides, switch/config.h) as CLI11
// options, so the authswitch binary's main.cc stays thin:
//
//   CLI::App app{"authswitch"};
//   CliOverrides overrides;
//   add_cli_options(app, overrides);
//   app.parse(argc, argv);
//   SwitchConfig config = load_config_file(path);
//   apply_overrides(config, overrides);
//
// CLI11 stays out of config.h (and of this header: it is forward declared).
// Thread-safety: start-up only; `overrides` must outlive the app's parse().

#include "switch/config.h"

namespace CLI {
class App;
}  // namespace CLI

namespace authswitch::switching {

// Registers --listen HOST:PORT, --dialect NAME, --framing NAME, --redis HOST:PORT, --shards N
// and --rules FILE, each filling its CliOverrides field when given. Values are checked by
// apply_overrides (one message naming every problem), not by CLI11; --dialect and --framing
// also need --listen.
void add_cli_options(CLI::App& app, CliOverrides& overrides);

}  // namespace authswitch::switching
