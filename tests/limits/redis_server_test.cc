// The Redis test harness (tests/support/redis_server.h) against the real redis-server: every
// later limits/ test relies on it starting, stopping, crashing and restarting Redis correctly,
// on loopback only, without leaving processes or folders behind.

#include "tests/support/redis_server.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/redis_fixture.h"

namespace authswitch::support {
namespace {

std::string_view text(const redisReply& reply) { return {reply.str, reply.len}; }

RedisReplyPtr run(redisContext& ctx, std::initializer_list<std::string_view> args) {
  return redis_command(ctx, args);
}

void expect_status(redisContext& ctx, std::initializer_list<std::string_view> args,
                   std::string_view status) {
  const RedisReplyPtr reply = run(ctx, args);
  ASSERT_EQ(reply->type, REDIS_REPLY_STATUS) << text(*reply);
  EXPECT_EQ(text(*reply), status);
}

std::optional<std::string> get(redisContext& ctx, std::string_view key) {
  const RedisReplyPtr reply = run(ctx, {"GET", key});
  if (reply->type == REDIS_REPLY_NIL) {
    return std::nullopt;
  }
  EXPECT_EQ(reply->type, REDIS_REPLY_STRING);
  return std::string(text(*reply));
}

// CONFIG GET name, as the running server has it.
std::string config(redisContext& ctx, std::string_view name) {
  const RedisReplyPtr reply = run(ctx, {"CONFIG", "GET", name});
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
    ADD_FAILURE() << "CONFIG GET " << name;
    return {};
  }
  return std::string(text(*reply->element[1]));
}

bool process_exists(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// A listening socket on 127.0.0.1:port with SO_REUSEADDR, as Redis binds; fd() < 0 and
// error() set if that failed.
class Listener {
 public:
  explicit Listener(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0) {
      error_ = errno;
      return;
    }
    const int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr = loopback(port);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 1) != 0) {
      error_ = errno;
    }
  }
  ~Listener() { close(); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  Listener(Listener&&) = delete;
  Listener& operator=(Listener&&) = delete;

  [[nodiscard]] int error() const { return error_; }
  void close() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_;
  int error_ = 0;
};

// A temporary folder for data folders and fake binaries, removed with everything in it.
class Scratch {
 public:
  Scratch() : path_(std::filesystem::temp_directory_path().string() + "/authswitch-test-XXXXXX") {
    if (::mkdtemp(path_.data()) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Scratch(Scratch&&) = delete;
  Scratch& operator=(Scratch&&) = delete;

  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] bool empty() const { return std::filesystem::is_empty(path_); }

  // Writes an executable shell script standing in for redis-server.
  [[nodiscard]] std::string script(const std::string& name, std::string_view body) const {
    std::string file = path_ + "/" + name;
    {
      std::ofstream out(file);
      out << "#!/bin/sh\n" << body;
    }
    ::chmod(file.c_str(), 0700);
    return file;
  }

 private:
  std::string path_;
};

// What the constructor throws, as text; empty if it did not throw.
std::string start_failure(RedisServerOptions options) {
  try {
    const RedisServer server(std::move(options));
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return {};
}

TEST(RedisServerTest, StartsOnLoopbackAndServesCommands) {
  RedisServer server;
  EXPECT_GT(server.port(), 0);
  EXPECT_TRUE(server.running());
  EXPECT_TRUE(std::filesystem::is_directory(server.data_dir()));
  const RedisContextPtr ctx = server.connect();
  expect_status(*ctx, {"PING"}, "PONG");
  expect_status(*ctx, {"SET", "greeting", "hello world"}, "OK");
  EXPECT_EQ(get(*ctx, "greeting"), "hello world");
  EXPECT_EQ(get(*ctx, "absent"), std::nullopt);
  // Arguments travel as they are: binary-safe, no format string.
  const std::string binary("a\0b%s\r\n", 7);
  expect_status(*ctx, {"SET", "binary", binary}, "OK");
  EXPECT_EQ(get(*ctx, "binary"), binary);
  // The configuration the harness promises.
  EXPECT_EQ(config(*ctx, "bind"), "127.0.0.1");
  EXPECT_EQ(config(*ctx, "save"), "");
  EXPECT_EQ(config(*ctx, "appendonly"), "no");
  EXPECT_EQ(config(*ctx, "port"), std::to_string(server.port()));
  EXPECT_EQ(std::filesystem::canonical(config(*ctx, "dir")),
            std::filesystem::canonical(server.data_dir()));
}

TEST(RedisServerTest, ErrorRepliesAreRepliesNotExceptions) {
  RedisServer server;
  const RedisContextPtr ctx = server.connect();
  expect_status(*ctx, {"SET", "word", "abc"}, "OK");
  const RedisReplyPtr reply = run(*ctx, {"INCR", "word"});
  EXPECT_EQ(reply->type, REDIS_REPLY_ERROR);
}

TEST(RedisServerTest, TwoServersGetTheirOwnPortsAndData) {
  RedisServer a;
  RedisServer b;
  EXPECT_NE(a.port(), b.port());
  EXPECT_NE(a.data_dir(), b.data_dir());
  const RedisContextPtr ca = a.connect();
  const RedisContextPtr cb = b.connect();
  expect_status(*ca, {"SET", "owner", "a"}, "OK");
  EXPECT_EQ(get(*cb, "owner"), std::nullopt);
}

TEST(RedisServerTest, StopShutsDownGracefullyAndFreesThePort) {
  RedisServer server;
  const std::uint16_t port = server.port();
  const pid_t pid = server.pid();
  EXPECT_EQ(Listener(port).error(), EADDRINUSE);
  server.stop();
  EXPECT_FALSE(server.running());
  EXPECT_EQ(server.pid(), -1);
  EXPECT_FALSE(process_exists(pid));
  EXPECT_NE(server.log_tail().find("bye bye"), std::string::npos) << server.log_tail();
  EXPECT_THROW((void)server.connect(), std::runtime_error);
  EXPECT_EQ(Listener(port).error(), 0);
  server.stop();  // idempotent
  server.kill9();
  EXPECT_FALSE(server.running());
}

TEST(RedisServerTest, WritesToAKilledServerFailAsErrorsNotSignals) {
  RedisServer server;
  const RedisContextPtr ctx = server.connect();
  expect_status(*ctx, {"PING"}, "PONG");
  server.kill9();
  EXPECT_FALSE(server.running());
  // SIGPIPE is ignored, so the write fails with EPIPE or ECONNRESET instead of killing us.
  EXPECT_THROW((void)run(*ctx, {"SET", "k", std::string(1 << 16, 'x')}), std::runtime_error);
}

TEST(RedisServerTest, KilledServerRestartsFromItsAppendOnlyFile) {
  RedisServerOptions options;
  options.aof = AofMode::kAlways;
  RedisServer server(options);
  const std::uint16_t port = server.port();
  {
    const RedisContextPtr ctx = server.connect();
    EXPECT_EQ(config(*ctx, "appendonly"), "yes");
    EXPECT_EQ(config(*ctx, "appendfsync"), "always");
    for (int i = 0; i < 100; ++i) {
      expect_status(*ctx, {"SET", "hold:" + std::to_string(i), std::to_string(i * 100)}, "OK");
    }
    const RedisReplyPtr incr = run(*ctx, {"INCRBY", "available", "-2500"});
    ASSERT_EQ(incr->type, REDIS_REPLY_INTEGER);
  }
  const pid_t killed = server.pid();
  server.kill9();  // right after the replies: only what was fsynced can survive
  EXPECT_FALSE(process_exists(killed));
  server.restart();
  EXPECT_TRUE(server.running());
  EXPECT_EQ(server.port(), port);
  EXPECT_NE(server.pid(), killed);
  const RedisContextPtr ctx = server.connect();
  EXPECT_EQ(get(*ctx, "hold:0"), "0");
  EXPECT_EQ(get(*ctx, "hold:99"), "9900");
  EXPECT_EQ(get(*ctx, "available"), "-2500");
  EXPECT_EQ(run(*ctx, {"DBSIZE"})->integer, 101);
}

// The control for the test above: without an AOF nothing survives, so restart() really starts
// a fresh process that reads its data folder.
TEST(RedisServerTest, KilledServerWithoutAppendOnlyFileLosesEverything) {
  RedisServer server;
  {
    const RedisContextPtr ctx = server.connect();
    expect_status(*ctx, {"SET", "hold:1", "100"}, "OK");
  }
  server.kill9();
  server.restart();
  const RedisContextPtr ctx = server.connect();
  EXPECT_EQ(get(*ctx, "hold:1"), std::nullopt);
}

TEST(RedisServerTest, GracefulRestartKeepsEverySecondWrites) {
  RedisServerOptions options;
  options.aof = AofMode::kEverySecond;
  RedisServer server(options);
  {
    const RedisContextPtr ctx = server.connect();
    EXPECT_EQ(config(*ctx, "appendfsync"), "everysec");
    expect_status(*ctx, {"SET", "hold:7", "700"}, "OK");
  }
  server.restart();  // SIGTERM: Redis writes and fsyncs its AOF before it exits
  const RedisContextPtr ctx = server.connect();
  EXPECT_EQ(get(*ctx, "hold:7"), "700");
}

TEST(RedisServerTest, RestartFailsClearlyWhenThePortWasTaken) {
  RedisServer server;
  server.stop();
  Listener squatter(server.port());
  ASSERT_EQ(squatter.error(), 0);
  std::string message;
  try {
    server.restart();
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  squatter.close();
  EXPECT_NE(message.find("another process holds the port"), std::string::npos) << message;
  EXPECT_NE(message.find("Address already in use"), std::string::npos) << message;
  EXPECT_FALSE(server.running());
  server.restart();  // the port is free again
  EXPECT_TRUE(server.running());
}

// Another process may bind the picked port before redis-server does. A stand-in binary loses
// that race on its first start (printing what redis-server prints), then runs the real one.
TEST(RedisServerTest, LosingThePortRaceRetriesOnAnotherPort) {
  const Scratch scratch;
  const std::string marker = scratch.path() + "/lost-once";
  RedisServerOptions options;
  options.binary = scratch.script(
      "racing-redis", "if [ ! -e '" + marker + "' ]; then\n  touch '" + marker +
                          "'\n  echo '# Could not create server TCP listening socket: bind: "
                          "Address already in use'\n  exit 1\nfi\nexec '" +
                          default_redis_server_binary() + "' \"$@\"\n");
  RedisServer server(options);
  EXPECT_TRUE(std::filesystem::exists(marker));
  const RedisContextPtr ctx = server.connect();
  expect_status(*ctx, {"PING"}, "PONG");
  EXPECT_NE(server.log_tail().find("Address already in use"), std::string::npos);

  std::filesystem::remove(marker);
  options.port_attempts = 1;
  const std::string message = start_failure(options);
  EXPECT_NE(message.find("another process holds the port"), std::string::npos) << message;
}

TEST(RedisServerTest, DestructorStopsTheServerAndRemovesItsDataFolder) {
  const Scratch scratch;
  RedisServerOptions options;
  options.temp_root = scratch.path();
  options.aof = AofMode::kAlways;
  pid_t pid = -1;
  std::string data_dir;
  {
    RedisServer server(options);
    pid = server.pid();
    data_dir = server.data_dir();
    EXPECT_EQ(data_dir.rfind(scratch.path() + "/authswitch-redis-", 0), 0U) << data_dir;
    const RedisContextPtr ctx = server.connect();
    expect_status(*ctx, {"SET", "k", "v"}, "OK");
    EXPECT_TRUE(std::filesystem::exists(data_dir + "/appendonlydir"));
  }
  EXPECT_FALSE(process_exists(pid));
  EXPECT_FALSE(std::filesystem::exists(data_dir));
  EXPECT_TRUE(scratch.empty());
}

TEST(RedisServerTest, MissingBinaryFailsClearlyAndLeavesNothingBehind) {
  const Scratch scratch;
  RedisServerOptions options;
  options.binary = scratch.path() + "/no-such-redis-server";
  options.temp_root = scratch.path();
  const std::string message = start_failure(options);
  EXPECT_NE(message.find("cannot execute redis-server '" + options.binary + "'"), std::string::npos)
      << message;
  EXPECT_NE(message.find("No such file or directory"), std::string::npos) << message;
  EXPECT_TRUE(scratch.empty());
}

TEST(RedisServerTest, BinaryThatExitsAtStartupReportsItsOutput) {
  const Scratch scratch;
  const Scratch temp_root;
  RedisServerOptions options;
  options.binary =
      scratch.script("fake-redis", "echo 'fake redis: refusing to start' >&2\nexit 3\n");
  options.temp_root = temp_root.path();
  const std::string message = start_failure(options);
  EXPECT_NE(message.find("exited during startup (exit status 3)"), std::string::npos) << message;
  EXPECT_NE(message.find("fake redis: refusing to start"), std::string::npos) << message;
  EXPECT_TRUE(temp_root.empty());
}

TEST(RedisServerTest, ServerThatNeverAnswersTimesOutAndIsKilled) {
  const Scratch scratch;
  const Scratch temp_root;
  const std::string pid_file = scratch.path() + "/pid";
  RedisServerOptions options;
  options.binary = scratch.script("silent-redis", "echo $$ > '" + pid_file + "'\nexec sleep 30\n");
  options.startup_timeout = std::chrono::milliseconds(300);
  options.temp_root = temp_root.path();
  const auto started = std::chrono::steady_clock::now();
  const std::string message = start_failure(options);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  EXPECT_NE(message.find("did not answer PING within 300 ms"), std::string::npos) << message;
  pid_t pid = -1;
  std::ifstream(pid_file) >> pid;
  ASSERT_GT(pid, 0);
  EXPECT_FALSE(process_exists(pid));
  EXPECT_TRUE(temp_root.empty());
}

// --- The shared server -----------------------------------------------------------------------

TEST_F(SharedRedisTest, IsOneServerForTheWholeBinary) {
  EXPECT_EQ(&server(), &shared_redis_server());
  EXPECT_TRUE(server().running());
  expect_status(redis(), {"PING"}, "PONG");
}

// Both tests write a key and expect to start from nothing: each gets a flushed database in
// whichever order, and whether or not they share a process.
TEST_F(SharedRedisTest, StartsEachTestWithAnEmptyDatabase) {
  EXPECT_EQ(run(redis(), {"DBSIZE"})->integer, 0);
  expect_status(redis(), {"SET", "left-behind", "1"}, "OK");
}

TEST_F(SharedRedisTest, StartsEachTestWithAnEmptyDatabaseAgain) {
  EXPECT_EQ(run(redis(), {"DBSIZE"})->integer, 0);
  expect_status(redis(), {"SET", "left-behind", "2"}, "OK");
}

}  // namespace
}  // namespace authswitch::support
