#pragma once
// A private redis-server for tests that need a real Redis (issue 3): each RedisServer runs its
// own redis-server process on a free loopback port (127.0.0.1 only) with its own temporary data
// folder, RDB snapshots off and AOF as configured, and can stop it, crash it (SIGKILL) and
// restart it on the same port and folder, so AOF durability can be tested.
//
// Ownership: a RedisServer owns its process and its data folder; the destructor stops the one
// (SIGTERM, then SIGKILL after a timeout) and deletes the other. If the test process dies
// without running destructors (abort, SIGKILL), the kernel kills the server through the
// parent-death signal (PR_SET_PDEATHSIG); only the small data folder may then be left behind.
// The parent-death signal fires when the *thread* that started the process exits, so start
// servers from a thread that outlives them (gtest's main thread does).
//
// Thread-safety: none; one thread drives a RedisServer. Construction ignores SIGPIPE for the
// whole process: hiredis writes with write(2), and a write to a server killed by a test would
// otherwise kill the test binary.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hiredis/hiredis.h>
#include <sys/types.h>

namespace authswitch::support {

// Append-only file: off, or on with fsync once a second or before every reply.
enum class AofMode : std::uint8_t { kOff, kEverySecond, kAlways };

// The redis-server binary CMake found at configure time (Debian: /usr/bin/redis-server).
[[nodiscard]] std::string default_redis_server_binary();

struct RedisServerOptions {
  std::string binary = default_redis_server_binary();
  AofMode aof = AofMode::kOff;
  // Folder in which the data folder is created; empty means $TMPDIR, or /tmp.
  std::string temp_root;
  // Until the server answers PING; a sanitizer build of the test does not slow Redis down.
  std::chrono::milliseconds startup_timeout{10'000};
  // From SIGTERM to SIGKILL in stop().
  std::chrono::milliseconds stop_timeout{5'000};
  // Fresh ports tried when another process binds the chosen one first (a port is picked by
  // binding an ephemeral socket and closing it, so it can be taken before Redis binds it).
  int port_attempts = 8;
};

struct RedisContextFree {
  void operator()(redisContext* ctx) const noexcept { redisFree(ctx); }
};
struct RedisReplyFree {
  void operator()(redisReply* reply) const noexcept { freeReplyObject(reply); }
};
using RedisContextPtr = std::unique_ptr<redisContext, RedisContextFree>;
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyFree>;

class RedisServer {
 public:
  static constexpr const char* kHost = "127.0.0.1";

  // Creates the data folder and starts the server; returns once it answers PING (and is the
  // process we started). Throws std::runtime_error with redis-server's log tail on failure,
  // leaving nothing behind.
  explicit RedisServer(RedisServerOptions options = {});
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;
  RedisServer(RedisServer&&) = delete;
  RedisServer& operator=(RedisServer&&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] const std::string& data_dir() const noexcept { return data_dir_; }
  // redis-server's stdout and stderr, appended across restarts.
  [[nodiscard]] const std::string& log_path() const noexcept { return log_path_; }
  // The process id, or -1 when it is not running.
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  // True while the process lives; reaps it (and returns false) if it has exited on its own.
  [[nodiscard]] bool running() noexcept;

  // Graceful stop: SIGTERM (Redis flushes its AOF and exits), then SIGKILL after
  // stop_timeout. Idempotent.
  void stop() noexcept;

  // Crash: SIGKILL, no chance to flush anything. Idempotent.
  void kill9() noexcept;

  // Stops the server if it runs, then starts it again on the same port and data folder (so it
  // loads its AOF). Throws std::runtime_error if it does not come back, e.g. because another
  // process took the port meanwhile.
  void restart();

  // The last `lines_max` lines of the log (for failure messages).
  [[nodiscard]] std::string log_tail(std::size_t lines_max = 20) const;

  // A blocking hiredis connection whose connect and commands time out after `timeout`.
  // Throws std::runtime_error if the server cannot be reached.
  [[nodiscard]] RedisContextPtr connect(
      std::chrono::milliseconds timeout = std::chrono::milliseconds(2'000)) const;

 private:
  enum class Launch : std::uint8_t { kReady, kPortTaken };

  void start(bool fresh_port);
  [[nodiscard]] Launch launch();
  void spawn();
  [[nodiscard]] Launch wait_until_ready(std::size_t log_offset);
  [[nodiscard]] bool answers_as_ours() const;
  [[nodiscard]] bool reap_if_exited(int* status) noexcept;
  [[nodiscard]] std::string describe() const;
  void remove_data_dir() noexcept;

  RedisServerOptions options_;
  std::string data_dir_;
  std::string log_path_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// Sends one command, each argument passed as it is (no format string, so values need no
// escaping), and returns the reply, which may be an error reply. Throws std::runtime_error on
// an I/O error or timeout; the connection is unusable afterwards.
[[nodiscard]] RedisReplyPtr redis_command(redisContext& ctx,
                                          std::span<const std::string_view> args);
[[nodiscard]] RedisReplyPtr redis_command(redisContext& ctx,
                                          std::initializer_list<std::string_view> args);
[[nodiscard]] RedisReplyPtr redis_command(redisContext& ctx, const std::vector<std::string>& args);

// The server shared by every test of one binary that asks for it (see redis_fixture.h):
// started with default options on first use, stopped and deleted when the program exits.
// Tests that stop, crash or reconfigure a server start their own instead.
[[nodiscard]] RedisServer& shared_redis_server();

}  // namespace authswitch::support
