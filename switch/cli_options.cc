// CLI11 front of CliOverrides. CLI11 is used only here and in executables.
#include "switch/cli_options.h"

#include <string>

#include <CLI/CLI.hpp>

namespace authswitch::switching {

void add_cli_options(CLI::App& app, CliOverrides& overrides) {
  CLI::Option* listen = app.add_option(
      "--listen", overrides.listen,
      "HOST:PORT: serve a listening network named \"cli\" (replacing a [[network]] of that name)");
  app.add_option("--dialect", overrides.dialect,
                 "the cli network's dialect: a built-in name or FILE.toml (default iso87-ascii)")
      ->needs(listen);
  app.add_option("--framing", overrides.framing,
                 "the cli network's framing, e.g. len2-binary, len4-ascii+header=5 (default "
                 "len2-binary)")
      ->needs(listen);
  app.add_option("--redis", overrides.redis, "HOST:PORT of Redis (overrides [redis] address)");
  app.add_option("--shards", overrides.shards,
                 "I/O threads, 0: one per core (overrides [switch] shards)");
  app.add_option("--rules", overrides.rules, "fraud rule file (overrides [rules] file)");
}

}  // namespace authswitch::switching
