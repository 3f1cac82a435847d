// netsim: the card network (acquirer side) that drives the switch (issue 6).
//
//   netsim seed --cards N --out DIR --redis HOST:PORT [--admin PATH] [--seed N]
//   netsim scenario FILE... --target HOST:PORT --redis HOST:PORT [--admin PATH]
//   netsim load --target HOST:PORT --rate N --duration S [--connections N] [--json F] [--html F]
//               [--closed-loop --concurrency N] [--count N] [--cards F] [--mix F] [--seed N]
//
// Common connection options: --target HOST:PORT or --listen HOST:PORT, --dialect NAME,
// --framing NAME, --tls-ca/--tls-cert/--tls-key/--tls-server-name, --no-sign-on,
// --echo-interval MS. Exit status: 0 clean, 1 a failed check or run, 2 usage.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <unistd.h>

#include "iso8583/dialect_loader.h"
#include "iso8583/framing.h"
#include "simulators/netsim/load.h"
#include "simulators/netsim/scenario.h"
#include "simulators/stats/report.h"
#include "simulators/traffic/portfolio.h"

namespace {

namespace ns = authswitch::netsim;
namespace fs = std::filesystem;

constexpr int kExitClean = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct LinkArgs {
  std::string target, listen;
  std::string dialect = "iso87-ascii";
  std::string framing = "len2-binary";
  std::uint32_t connections = 1;
  std::string tls_ca, tls_cert, tls_key, tls_server_name;
  bool no_sign_on = false;
  std::uint32_t echo_interval_ms = 30'000;
};

void add_link_options(CLI::App& app, LinkArgs& a, bool connections) {
  auto* target = app.add_option("--target", a.target, "HOST:PORT of the switch to connect to");
  auto* listen =
      app.add_option("--listen", a.listen, "HOST:PORT to accept a dialling switch on instead");
  target->excludes(listen);
  app.add_option("--dialect", a.dialect, "a shipped dialect or FILE.toml")->capture_default_str();
  app.add_option("--framing", a.framing, "none, len2-binary, ... with +header=N, +max=N")
      ->capture_default_str();
  if (connections) {
    app.add_option("--connections", a.connections, "connections to open")
        ->check(CLI::Range(1, 4096))
        ->capture_default_str();
  }
  app.add_option("--tls-ca", a.tls_ca, "PEM bundle: use TLS and verify the switch with it")
      ->check(CLI::ExistingFile);
  auto* cert = app.add_option("--tls-cert", a.tls_cert, "our certificate (mutual TLS)")
                   ->check(CLI::ExistingFile);
  auto* key = app.add_option("--tls-key", a.tls_key, "its private key")->check(CLI::ExistingFile);
  cert->needs(key);
  key->needs(cert);
  app.add_option("--tls-server-name", a.tls_server_name, "name the switch's certificate carries");
  app.add_flag("--no-sign-on", a.no_sign_on, "do not send 0800 sign-on first");
  app.add_option("--echo-interval", a.echo_interval_ms, "ms idle before an 0800 echo; 0: never")
      ->capture_default_str();
}

// Throws std::runtime_error on a bad dialect or framing (reported as a usage error).
ns::LinkSetOptions link_options(const LinkArgs& a) {
  ns::LinkSetOptions o;
  if (a.target.empty() && a.listen.empty()) {
    throw std::invalid_argument("give --target HOST:PORT (or --listen HOST:PORT)");
  }
  o.target = a.target;
  o.listen = a.listen;
  o.connections = a.connections;
  o.tls.ca = a.tls_ca;
  o.tls.cert = a.tls_cert;
  o.tls.key = a.tls_key;
  o.tls.server_name = a.tls_server_name;
  try {
    o.link.dialect = &authswitch::iso8583::find_dialect(a.dialect);
  } catch (const std::exception& e) {
    throw std::invalid_argument("--dialect " + a.dialect + ": " + e.what());
  }
  const auto framing = authswitch::iso8583::parse_framing(a.framing);
  if (!framing) {
    throw std::invalid_argument("--framing " + a.framing + ": not a framing (one of: none, " +
                                "len2-binary, len2-bcd, len4-ascii, len4-binary, +header=N, " +
                                "+max=N)");
  }
  o.link.framing = *framing;
  o.link.sign_on = !a.no_sign_on;
  o.link.echo_interval = std::chrono::milliseconds(a.echo_interval_ms);
  o.link.write_buffer_bytes = std::max<std::size_t>(
      std::size_t{1} << 18U, 4 * authswitch::iso8583::max_buffered_bytes(o.link.framing));
  return o;
}

// authswitch-admin: next to this binary's build tree (<build>/simulators/netsim/netsim ->
// <build>/switch/admin/authswitch-admin), else on PATH.
std::string default_admin() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path build = self.parent_path().parent_path().parent_path();
    const fs::path candidate = build / "switch" / "admin" / "authswitch-admin";
    if (fs::exists(candidate, ec)) {
      return candidate.string();
    }
  }
  return "authswitch-admin";
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  return static_cast<bool>(out);
}

int cmd_seed(const ns::SeedOptions& o) {
  try {
    return ns::seed(o);
  } catch (const std::exception& e) {
    std::cerr << "netsim seed: " << e.what() << '\n';
    return kExitFailed;
  }
}

int cmd_scenario(const std::vector<std::string>& files, const LinkArgs& la,
                 const std::string& redis, const std::string& admin, std::uint32_t timeout_ms) {
  ns::ScenarioRunOptions o;
  try {
    o.links = link_options(la);
  } catch (const std::invalid_argument& e) {
    std::cerr << "netsim scenario: " << e.what() << '\n';
    return kExitUsage;
  }
  o.redis = redis;
  o.admin = admin.empty() ? default_admin() : admin;
  o.timeout = std::chrono::milliseconds(timeout_ms);
  std::vector<ns::Scenario> parsed;
  for (const std::string& f : files) {
    try {
      parsed.push_back(ns::load_scenario(f));
    } catch (const ns::ScenarioError& e) {
      std::cerr << e.what() << '\n';
      return kExitUsage;
    }
  }
  int failed = 0;
  for (const ns::Scenario& s : parsed) {
    try {
      const ns::ScenarioResult r = ns::run_scenario(s, o);
      std::printf("%s  %s  (%u steps, %.2f s)\n", r.passed ? "PASS" : "FAIL", r.file.c_str(),
                  r.steps_run, r.seconds);
      for (const std::string& f : r.failures) {
        std::printf("    %s\n", f.c_str());
      }
      failed += r.passed ? 0 : 1;
    } catch (const std::exception& e) {
      std::printf("FAIL  %s  (%s)\n", s.file.c_str(), e.what());
      ++failed;
    }
  }
  std::printf("%zu scenarios, %zu passed, %d failed\n", parsed.size(),
              parsed.size() - static_cast<std::size_t>(failed), failed);
  return failed == 0 ? kExitClean : kExitFailed;
}

struct LoadArgs {
  double rate = 100;
  double duration_s = 10;
  std::uint64_t count = 0;
  std::string cards = "netsim-data/test-cards.csv";
  std::string mix;
  std::uint64_t seed = 1;
  bool closed_loop = false;
  std::uint32_t concurrency = 16;
  std::uint32_t max_in_flight = 256;
  std::uint32_t timeout_ms = 2'000;
  std::string json, html;
  bool progress = false;
};

int cmd_load(const LinkArgs& la, const LoadArgs& a) {
  ns::LoadRun run;
  try {
    run.links = link_options(la);
  } catch (const std::invalid_argument& e) {
    std::cerr << "netsim load: " << e.what() << '\n';
    return kExitUsage;
  }
  run.load.closed_loop = a.closed_loop;
  run.load.rate_per_s = a.rate;
  run.load.concurrency = a.concurrency;
  run.load.duration_s = a.duration_s;
  run.load.count_max = a.count;
  run.load.max_in_flight = a.max_in_flight;
  run.load.timeout_ns = std::uint64_t{a.timeout_ms} * 1'000'000;
  run.cards_csv = a.cards;
  run.mix_file = a.mix;
  run.seed = a.seed;
  run.progress = a.progress || ::isatty(STDERR_FILENO) != 0;
  run.dialect_name = la.dialect;
  run.framing_name = la.framing;
  ns::RunReport report;
  try {
    ns::run_load(run, report);
  } catch (const std::exception& e) {
    std::cerr << "netsim load: " << e.what() << '\n';
    return kExitFailed;
  }
  std::cout << ns::render_text(report) << std::flush;
  if (!a.json.empty()) {
    if (!write_file(a.json, ns::render_json(report))) {
      std::cerr << "netsim load: cannot write " << a.json << '\n';
      return kExitFailed;
    }
    std::cout << "JSON report: " << a.json << '\n';
  }
  if (!a.html.empty()) {
    if (!write_file(a.html, ns::render_html(report))) {
      std::cerr << "netsim load: cannot write " << a.html << '\n';
      return kExitFailed;
    }
    std::cout << "HTML report: " << a.html << '\n';
  }
  return report.clean() ? kExitClean : kExitFailed;
}

struct Commands {
  ns::SeedOptions seed;
  bool no_import = false;
  CLI::App* seed_cmd = nullptr;

  LinkArgs scn_links;
  std::vector<std::string> scn_files;
  std::string scn_redis = "127.0.0.1:6379";
  std::string scn_admin;
  std::uint32_t scn_timeout_ms = 5'000;
  CLI::App* scn_cmd = nullptr;

  LinkArgs load_links;
  LoadArgs load;
};

void add_seed(CLI::App& app, Commands& c) {
  c.seed_cmd = app.add_subcommand("seed", "write a test portfolio and import it");
  CLI::App& s = *c.seed_cmd;
  s.add_option("--cards", c.seed.cards, "cards to make")->capture_default_str();
  s.add_option("--cards-per-account", c.seed.cards_per_account)->capture_default_str();
  s.add_option("--out", c.seed.out_dir, "folder for the CSV files")->capture_default_str();
  s.add_option("--redis", c.seed.redis, "HOST:PORT")->capture_default_str();
  s.add_option("--admin", c.seed.admin_binary, "authswitch-admin (default: the build's)");
  s.add_option("--seed", c.seed.seed, "same seed, same portfolio")->capture_default_str();
  s.add_flag("--no-import", c.no_import, "only write the files");
}

void add_scenario(CLI::App& app, Commands& c) {
  c.scn_cmd = app.add_subcommand("scenario", "run send/expect scenario files");
  CLI::App& s = *c.scn_cmd;
  s.add_option("FILE", c.scn_files, "scenario files (.scn)")->required()->check(CLI::ExistingFile);
  add_link_options(s, c.scn_links, false);
  s.add_option("--redis", c.scn_redis, "HOST:PORT for authswitch-admin")->capture_default_str();
  s.add_option("--admin", c.scn_admin, "authswitch-admin (default: the build's)");
  s.add_option("--timeout", c.scn_timeout_ms, "ms to wait for each answer")->capture_default_str();
}

void add_load(CLI::App& app, Commands& c) {
  CLI::App& l = *app.add_subcommand("load", "open- or closed-loop load with a latency report");
  LoadArgs& a = c.load;
  add_link_options(l, c.load_links, true);
  l.add_option("--rate", a.rate, "requests/s (open loop)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  l.add_option("--duration", a.duration_s, "seconds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  l.add_option("--count", a.count, "stop after this many requests (0: no limit)");
  l.add_option("--cards", a.cards, "test-cards.csv written by netsim seed")->capture_default_str();
  l.add_option("--mix", a.mix, "traffic mix TOML (default: the shipped mix)");
  l.add_option("--seed", a.seed, "random seed of the traffic")->capture_default_str();
  l.add_flag("--closed-loop", a.closed_loop, "keep --concurrency requests in flight");
  l.add_option("--concurrency", a.concurrency, "closed loop: requests in flight")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  l.add_option("--max-in-flight", a.max_in_flight, "per connection")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  l.add_option("--timeout", a.timeout_ms, "ms before a request counts as timed out")
      ->check(CLI::Range(1, 600'000))
      ->capture_default_str();
  l.add_option("--json", a.json, "write the JSON report here");
  l.add_option("--html", a.html, "write the HTML report here");
  l.add_flag("--progress", a.progress, "progress line even when not on a terminal");
}

int run(int argc, char** argv) {
  CLI::App app{"netsim: the card network that drives authswitch (seed, scenarios, load)"};
  app.require_subcommand(1);
  Commands c;
  add_seed(app, c);
  add_scenario(app, c);
  add_load(app, c);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitClean : kExitUsage;
  }
  if (c.seed_cmd->parsed()) {
    if (c.no_import) {
      c.seed.admin_binary.clear();
    } else if (c.seed.admin_binary.empty()) {
      c.seed.admin_binary = default_admin();
    }
    return cmd_seed(c.seed);
  }
  if (c.scn_cmd->parsed()) {
    return cmd_scenario(c.scn_files, c.scn_links, c.scn_redis, c.scn_admin, c.scn_timeout_ms);
  }
  return cmd_load(c.load_links, c.load);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "netsim: " << e.what() << '\n';
    return kExitFailed;
  }
}
