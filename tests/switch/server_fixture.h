#pragma once
// gtest fixture for tests of a whole Server over sockets (server_test.cc, network_test.cc): the
// shared redis-server (support::SharedRedisTest), the test PAN-token key, a rule file of the
// test's own holding kRules, and a Server run on a thread of the test until stop() or the end
// of the test.
// Ownership: the fixture owns the Server, its thread and the rule file (removed in TearDown).
// Thread-safety: as gtest fixtures; the Server's own threads run between start_server() and
// stop().

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include <gtest/gtest.h>
#include <unistd.h>

#include "limits/pan_token.h"
#include "risk/rules.h"
#include "switch/config.h"
#include "switch/server.h"
#include "tests/support/redis_fixture.h"
#include "tests/switch/test_messages.h"

namespace authswitch::switching {

// Polls `done` every 2 ms until it holds or `limit` passes; returns its last value.
template <typename F>
bool wait_for(F done, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return done();
}

class ServerFixture : public support::SharedRedisTest {
 protected:
  void SetUp() override {
    support::SharedRedisTest::SetUp();
    std::ofstream(rules_path_) << kRules;
  }
  void TearDown() override {
    stop();
    switch_.reset();
    std::filesystem::remove(rules_path_);
    support::SharedRedisTest::TearDown();
  }

  // Makes config_ `config` and runs a Server of it, deciding with kRules, on thread_; port_ is
  // the first network's port when that network listens.
  void start_server(SwitchConfig config) {
    config_ = std::move(config);
    switch_ = std::make_unique<Server>(config_, risk::compile_rules(kRules, "rules.toml"), key_);
    if (config_.networks[0].role == NetworkRole::kListen) {
      port_ = switch_->listening_port(0);
    }
    thread_ = std::thread([this] { switch_->run(); });
  }
  // Stops the Server and joins its thread (once; the Server is kept for its totals).
  void stop() {
    if (thread_.joinable()) {
      switch_->stop();
      thread_.join();
    }
  }

  // The rule file the configuration names (the set the switch starts with is kRules).
  std::string rules_path_ = (std::filesystem::temp_directory_path() /
                             ("switch_test_rules_" + std::to_string(::getpid()) + ".toml"))
                                .string();
  limits::TokenKey key_ = limits::TokenKey::from_hex(kKeyHex, "test key");
  limits::SoftwareCardCrypto crypto_{key_};
  SwitchConfig config_;
  std::unique_ptr<Server> switch_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace authswitch::switching
