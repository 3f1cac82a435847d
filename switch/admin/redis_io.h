#pragma once
// Blocking Redis I/O for authswitch-admin (an operator's tool, not the message path): parsing
// HOST:PORT, connecting with deadlines, one command at a time, and a Pipeline that streams
// many commands (an import) with one batch on the wire while the next one is formatted.
//
// Errors: every function here throws RedisError on an I/O error, a timeout or an error reply;
// its message names the server (host:port) and Redis's error text. The tool maps it to exit
// status 1. Commands are passed as argument vectors (no format strings), so values need no
// escaping.
//
// Ownership: RedisConnection owns its hiredis context. RedisSession and Pipeline reference a
// context they do not own; it must outlive them.
// Thread-safety: none; one thread uses a connection and everything built on it.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <hiredis/hiredis.h>

namespace authswitch::admin {

class RedisError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct RedisAddress {
  std::string host;
  std::uint16_t port = 0;

  [[nodiscard]] std::string text() const { return host + ":" + std::to_string(port); }
};

// "HOST:PORT" with a non-empty host and a port 1..65535; nullopt otherwise.
[[nodiscard]] std::optional<RedisAddress> parse_redis_address(std::string_view text);

struct RedisContextFree {
  void operator()(redisContext* ctx) const noexcept { redisFree(ctx); }
};
struct RedisReplyFree {
  void operator()(redisReply* reply) const noexcept { freeReplyObject(reply); }
};
using RedisContextPtr = std::unique_ptr<redisContext, RedisContextFree>;
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyFree>;

// One HTTP/1.1 POST with an empty body to `address`, `path`; returns the whole response (status
// line first), or "" when nothing came back within `timeout`. Throws RedisError-free
// std::runtime_error when the connection is refused. For `rules reload`.
[[nodiscard]] std::string http_post(const RedisAddress& address, std::string_view path,
                                    std::chrono::milliseconds timeout);

// Connects within `connect_timeout`; every later read or write times out after
// `command_timeout`, so the tool never hangs. Throws RedisError.
[[nodiscard]] RedisContextPtr connect_redis(const RedisAddress& address,
                                            std::chrono::milliseconds connect_timeout,
                                            std::chrono::milliseconds command_timeout);

// One command at a time on a borrowed context.
class RedisSession {
 public:
  // `address` names the server in error messages.
  RedisSession(redisContext& ctx, std::string address) : ctx_(ctx), address_(std::move(address)) {}

  // Sends one command and returns its reply, which is never an error reply (that throws).
  [[nodiscard]] RedisReplyPtr command(std::span<const std::string_view> args);
  [[nodiscard]] RedisReplyPtr command(std::initializer_list<std::string_view> args) {
    return command(std::span<const std::string_view>(args.begin(), args.size()));
  }

  [[nodiscard]] redisContext& context() noexcept { return ctx_; }
  [[nodiscard]] const std::string& address() const noexcept { return address_; }

  // Throws RedisError naming the server and the context's I/O error.
  [[noreturn]] void fail_io(std::string_view what) const;
  // Throws RedisError naming the server and `reply`'s error text.
  [[noreturn]] void fail_reply(const redisReply& reply, std::string_view what) const;

 private:
  redisContext& ctx_;
  std::string address_;
};

// Streams commands: append() queues a command in hiredis's output buffer; every
// `batch_commands` commands the batch is written, and the replies of the batch before it are
// read, so Redis works on one batch while this thread formats the next one. Replies reach
// `on_reply` in order with the command's index (0-based, counting every append of this
// Pipeline); an error reply throws RedisError instead.
class Pipeline {
 public:
  using OnReply = std::function<void(std::size_t index, const redisReply& reply)>;

  Pipeline(RedisSession& session, std::size_t batch_commands, OnReply on_reply);
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // REQUIRES: 1 <= args.size() <= kArgsMax.
  void append(std::span<const std::string_view> args);
  void append(std::initializer_list<std::string_view> args) {
    append(std::span<const std::string_view>(args.begin(), args.size()));
  }
  // Writes what is queued and reads every outstanding reply.
  void finish();

  [[nodiscard]] std::size_t appended() const noexcept { return appended_; }

  static constexpr std::size_t kArgsMax = 1100;

 private:
  void flush();
  void read_one();

  RedisSession& session_;
  std::size_t batch_;
  OnReply on_reply_;
  std::size_t appended_ = 0;
  std::size_t flushed_ = 0;
  std::size_t received_ = 0;
  std::vector<const char*> argv_;
  std::vector<std::size_t> argv_len_;
};

}  // namespace authswitch::admin
