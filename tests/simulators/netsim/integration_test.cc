// netsim against the real parts: a private redis-server, `netsim seed` through the real
// authswitch-admin, and the real authswitch binary (two shards) on a free loopback port. Every
// shipped scenario file passes (one test each), and a short open-loop load with the default
// mix (fraud patterns and follow-ups included) has no mismatch, unmatched, duplicate, late or
// timed-out answer. The switch is always stopped (SIGTERM, then SIGKILL), and so is Redis.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "iso8583/dialect_loader.h"
#include "iso8583/framing.h"
#include "simulators/netsim/load.h"
#include "simulators/netsim/scenario.h"
#include "tests/support/redis_server.h"

namespace authswitch::netsim {
namespace {

namespace fs = std::filesystem;

constexpr const char* kKeyHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("no free port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

bool accepts(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string tail(const std::string& path, std::size_t lines_max = 20) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(line);
  }
  std::string out;
  for (std::size_t i = lines.size() > lines_max ? lines.size() - lines_max : 0; i < lines.size();
       ++i) {
    out += lines[i] + "\n";
  }
  return out;
}

// Redis, a seeded portfolio and the authswitch binary, started once per test process on first
// use and stopped when the process ends (SwitchEnvironment::TearDown, or the parent-death
// signal if the test binary dies).
class SwitchUnderTest {
 public:
  // `dialect`: the switch's listening network's (netsim speaks it too).
  explicit SwitchUnderTest(std::string dialect = "iso87-ascii")
      : dialect_(std::move(dialect)),
        dir_(fs::temp_directory_path() /
             ("netsim_it_" + std::to_string(::getpid()) + "_" + std::to_string(instance_count++))) {
    fs::create_directories(dir_);
    // Inherited by authswitch-admin and the switch; set on the test's main thread before any
    // other thread reads the environment.
    ::setenv("AS_PAN_TOKEN_KEY_HEX", kKeyHex, 1);  // NOLINT(concurrency-mt-unsafe)
    redis_ = std::make_unique<support::RedisServer>();
    redis_address_ = "127.0.0.1:" + std::to_string(redis_->port());
    seed();
    start_switch();
  }
  ~SwitchUnderTest() {
    stop_switch();
    redis_.reset();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  SwitchUnderTest(const SwitchUnderTest&) = delete;
  SwitchUnderTest& operator=(const SwitchUnderTest&) = delete;
  SwitchUnderTest(SwitchUnderTest&&) = delete;
  SwitchUnderTest& operator=(SwitchUnderTest&&) = delete;

  [[nodiscard]] const std::string& dialect() const { return dialect_; }
  [[nodiscard]] std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  [[nodiscard]] const std::string& redis() const { return redis_address_; }
  [[nodiscard]] std::string cards_csv() const {
    return (dir_ / "data" / "test-cards.csv").string();
  }
  [[nodiscard]] std::string log_tail() const { return tail(log_); }
  [[nodiscard]] bool running() {
    if (pid_ <= 0) {
      return false;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }

  [[nodiscard]] LinkSetOptions links(std::uint32_t connections) const {
    LinkSetOptions o;
    o.target = target();
    o.connections = connections;
    o.link.dialect = &iso8583::builtin_dialect(dialect_);
    o.link.framing = *iso8583::parse_framing("len2-binary");
    return o;
  }

 private:
  // `netsim seed` of a small portfolio through the real authswitch-admin.
  void seed() {
    std::string out;
    const int rc =
        run_capture({AS_NETSIM_BINARY, "seed", "--cards", "600", "--out", (dir_ / "data").string(),
                     "--redis", redis_address_, "--admin", AS_ADMIN_BINARY, "--seed", "7"},
                    out);
    if (rc != 0 || !fs::exists(dir_ / "data" / "test-cards.csv")) {
      throw std::runtime_error("netsim seed failed (exit " + std::to_string(rc) + "): " + out);
    }
  }

  void start_switch() {
    const fs::path config = dir_ / "authswitch.toml";
    std::ofstream(config) << "[switch]\nshards = 2\n"
                          << "[redis]\naddress = \"" << redis_address_ << "\"\n"
                          << "[rules]\nfile = \"" << AS_SOURCE_DIR << "/config/rules.toml\"\n"
                          << "[http]\nlisten = \"127.0.0.1:0\"\n"
                          << "[audit]\npath = \"\"\n";
    log_ = (dir_ / "authswitch.log").string();
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = free_port();
      const std::string listen = "127.0.0.1:" + std::to_string(port_);
      const pid_t parent = ::getpid();
      pid_ = ::fork();
      if (pid_ < 0) {
        throw std::runtime_error("fork failed");
      }
      if (pid_ == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) {
          ::_exit(1);
        }
        const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
        const std::string cfg = config.string();
        ::execl(AS_SWITCH_BINARY, AS_SWITCH_BINARY, "--config", cfg.c_str(), "--listen",
                listen.c_str(), "--dialect", dialect_.c_str(), "--framing", "len2-binary",
                "--redis", redis_address_.c_str(), "--shards", "2", static_cast<char*>(nullptr));
        ::_exit(127);
      }
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (std::chrono::steady_clock::now() < until && running()) {
        if (accepts(port_)) {
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      stop_switch();  // it exited (port taken?) or never accepted: try another port
    }
    throw std::runtime_error("authswitch did not start; its log:\n" + tail(log_));
  }

  void stop_switch() noexcept {
    if (pid_ <= 0) {
      return;
    }
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 200; ++i) {  // 10 s to drain
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  static inline int instance_count = 0;
  std::string dialect_;
  fs::path dir_;
  std::unique_ptr<support::RedisServer> redis_;
  std::string redis_address_;
  std::string log_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// One shared switch per dialect (each with its own Redis and portfolio).
std::map<std::string, std::unique_ptr<SwitchUnderTest>>& the_switches() {
  static std::map<std::string, std::unique_ptr<SwitchUnderTest>> s;
  return s;
}

SwitchUnderTest& shared_switch(const std::string& dialect = "iso87-ascii") {
  std::unique_ptr<SwitchUnderTest>& s = the_switches()[dialect];
  if (!s) {
    s = std::make_unique<SwitchUnderTest>(dialect);
  }
  return *s;
}

class SwitchEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { the_switches().clear(); }
};
[[maybe_unused]] const ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new SwitchEnvironment);

// The scenario files of simulators/netsim/scenarios/`sub` (not its subfolders).
std::vector<std::string> scenario_files(const std::string& sub = "") {
  std::vector<std::string> out;
  for (const auto& e :
       fs::directory_iterator(std::string(AS_SOURCE_DIR) + "/simulators/netsim/scenarios" + sub)) {
    if (e.path().extension() == ".scn") {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

class ShippedScenario : public ::testing::TestWithParam<std::string> {};

TEST_P(ShippedScenario, PassesAgainstTheRealSwitch) {
  const Scenario s = load_scenario(GetParam());
  // A scenario that names its dialect runs against a switch speaking it; the others are
  // ISO 8583:1987 scenarios.
  SwitchUnderTest& sw = shared_switch(s.dialect.empty() ? "iso87-ascii" : s.dialect);
  ScenarioRunOptions o;
  o.links = sw.links(1);
  o.redis = sw.redis();
  o.admin = AS_ADMIN_BINARY;
  const ScenarioResult r = run_scenario(s, o);
  std::string failures;
  for (const std::string& f : r.failures) {
    failures += "  " + f + "\n";
  }
  EXPECT_TRUE(r.passed) << GetParam() << " failed:\n"
                        << failures << "switch log:\n"
                        << sw.log_tail();
  EXPECT_TRUE(sw.running());
}

std::string scenario_test_name(const ::testing::TestParamInfo<std::string>& p) {
  std::string name = fs::path(p.param).stem().string();
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

INSTANTIATE_TEST_SUITE_P(Netsim, ShippedScenario, ::testing::ValuesIn(scenario_files()),
                         scenario_test_name);
// ISO 8583:1993 scenarios (`dialect iso93-ebcdic`), against a switch listening in that dialect.
INSTANTIATE_TEST_SUITE_P(Netsim93, ShippedScenario, ::testing::ValuesIn(scenario_files("/iso93")),
                         scenario_test_name);

// ~3 s at 300 requests/s over 3 connections with the shipped mix: every answer must be the
// one the traffic model expects (in a 1993 dialect: the 1993 action code of it), and every
// request must be answered once, in time.
void expect_clean_short_load(const std::string& dialect) {
  SwitchUnderTest& sw = shared_switch(dialect);
  LoadRun run;
  run.links = sw.links(3);
  run.load.rate_per_s = 300;
  run.load.duration_s = 3;
  run.load.max_in_flight = 64;
  run.load.timeout_ns = 5'000'000'000;
  run.cards_csv = sw.cards_csv();
  run.seed = 11;
  run.dialect_name = dialect;
  run.framing_name = "len2-binary";
  RunReport r;
  run_load(run, r);
  std::string samples;
  for (const std::string& s : r.mismatch_samples) {
    samples += "  " + s + "\n";
  }
  EXPECT_GE(r.sent, 800U);
  EXPECT_EQ(r.matched, r.sent);
  EXPECT_EQ(r.mismatches, 0U) << samples;
  EXPECT_EQ(r.unmatched, 0U);
  EXPECT_EQ(r.duplicates, 0U);
  EXPECT_EQ(r.late, 0U);
  EXPECT_EQ(r.timeouts, 0U);
  EXPECT_EQ(r.errors, 0U);
  EXPECT_TRUE(r.clean()) << render_text(r);
  // The mix reached beyond plain purchases: declines and follow-ups were checked too.
  EXPECT_GE(r.by_kind.size(), 6U) << render_text(r);
  EXPECT_GE(r.by_code.size(), 3U) << render_text(r);
  EXPECT_EQ(r.latency.count(), r.matched);
  EXPECT_TRUE(sw.running()) << sw.log_tail();
}

TEST(NetsimLoad, ShortOpenLoopRunIsClean) { expect_clean_short_load("iso87-ascii"); }

// The same against a switch speaking ISO 8583:1993 (EBCDIC, MTI 1xxx, DE 39 action codes,
// sign-on by 1804 DE 24 801).
TEST(NetsimLoad, ShortOpenLoopRunIsCleanIso93) { expect_clean_short_load("iso93-ebcdic"); }

// The CLI end to end: a closed-loop run writes its JSON and HTML reports and exits 0. It gets
// a switch, Redis and portfolio of its own: the traffic model starts from the portfolio's
// opening balances, so a second run over accounts another run has used would not agree with
// Redis (seed afresh for each run).
TEST(NetsimLoad, CliClosedLoopWritesReports) {
  SwitchUnderTest sw;
  const fs::path dir = fs::temp_directory_path() / ("netsim_cli_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string json = (dir / "r.json").string();
  const std::string html = (dir / "r.html").string();
  std::string out;
  const int rc = run_capture({AS_NETSIM_BINARY,
                              "load",
                              "--target",
                              sw.target(),
                              "--dialect",
                              "iso87-ascii",
                              "--framing",
                              "len2-binary",
                              "--closed-loop",
                              "--concurrency",
                              "8",
                              "--connections",
                              "2",
                              "--duration",
                              "1",
                              "--count",
                              "400",
                              "--cards",
                              sw.cards_csv(),
                              "--seed",
                              "5",
                              "--json",
                              json,
                              "--html",
                              html},
                             out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("JSON report: " + json), std::string::npos) << out;
  EXPECT_NE(out.find("HTML report: " + html), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(json));
  EXPECT_TRUE(fs::exists(html));
  std::error_code ignored;
  fs::remove_all(dir, ignored);
}

TEST(NetsimCli, UsageErrorsExitTwo) {
  std::string out;
  EXPECT_EQ(run_capture({AS_NETSIM_BINARY, "load", "--rate", "-1"}, out), 2);
  EXPECT_EQ(run_capture({AS_NETSIM_BINARY, "frobnicate"}, out), 2);
  EXPECT_EQ(
      run_capture({AS_NETSIM_BINARY, "load", "--framing", "len3", "--target", "127.0.0.1:1"}, out),
      2);
}

}  // namespace
}  // namespace authswitch::netsim
