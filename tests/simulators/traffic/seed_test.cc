#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "simulators/traffic/portfolio.h"
#include "tests/support/redis_fixture.h"

namespace authswitch::netsim {
namespace {

namespace fs = std::filesystem;

constexpr const char* kKeyHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

class SeedIntoRedis : public support::SharedRedisTest {
 protected:
  void SetUp() override {
    support::SharedRedisTest::SetUp();
    std::string tmpl = (fs::temp_directory_path() / "sim_seed_redis.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    address_ = "127.0.0.1:" + std::to_string(server().port());
    ASSERT_EQ(setenv("AS_PAN_TOKEN_KEY_HEX", kKeyHex, 1), 0);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Runs authswitch-admin in the test's folder; returns its exit status and standard output.
  std::pair<int, std::string> admin(std::vector<std::string> args) {
    args.insert(args.begin(), {AS_ADMIN_BINARY, "--redis", address_});
    const fs::path out = dir_ / "admin.out";
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> argv;
      for (std::string& a : args) {
        argv.push_back(a.data());
      }
      argv.push_back(nullptr);
      const int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd < 0 || dup2(fd, 1) < 0 || chdir(dir_.c_str()) != 0) {
        _exit(127);
      }
      execv(argv[0], argv.data());
      _exit(127);
    }
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    std::ifstream in(out);
    std::stringstream ss;
    ss << in.rdbuf();
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, ss.str()};
  }

  fs::path dir_;
  std::string address_;
};

TEST_F(SeedIntoRedis, ImportsThroughTheRealAdminTool) {
  SeedOptions o;
  o.cards = 500;
  o.seed = 21;
  o.out_dir = (dir_ / "data").string();
  o.admin_binary = AS_ADMIN_BINARY;
  o.redis = address_;
  ASSERT_EQ(seed(o), 0);
  const Portfolio p = Portfolio::load((dir_ / "data" / "test-cards.csv").string());
  ASSERT_EQ(p.cards.size(), 500U);
  for (const std::size_t i : {std::size_t{0}, std::size_t{257}, std::size_t{499}}) {
    const TestCard& c = p.cards[i];
    const auto [rc, out] = admin({"account", "show", c.account});
    ASSERT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("account " + c.account), std::string::npos) << out;
    EXPECT_NE(out.find("balance    " + std::to_string(c.balance_minor) + " (840)"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("cards      2"), std::string::npos) << out;
  }
  const auto [rc, out] = admin({"profile", "show", std::string(kProfileTight)});
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("sim-tight,pos,20000"), std::string::npos) << out;
  // Seeding again changes nothing that exists (balances are kept) and succeeds.
  EXPECT_EQ(seed(o), 0);
}

TEST_F(SeedIntoRedis, AFailingImportIsReported) {
  SeedOptions o;
  o.cards = 10;
  o.out_dir = (dir_ / "data").string();
  o.admin_binary = AS_ADMIN_BINARY;
  o.redis = "127.0.0.1:1";  // nothing listens there
  EXPECT_NE(seed(o), 0);
  o.admin_binary = (dir_ / "no-such-binary").string();
  EXPECT_NE(seed(o), 0);
}

}  // namespace
}  // namespace authswitch::netsim
