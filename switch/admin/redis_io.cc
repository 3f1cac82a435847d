#include "switch/admin/redis_io.h"

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <utility>

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "base/assert.h"

namespace authswitch::admin {
namespace {

timeval to_timeval(std::chrono::milliseconds ms) noexcept {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

}  // namespace

std::optional<RedisAddress> parse_redis_address(std::string_view text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return std::nullopt;
  }
  const std::string_view port_text = text.substr(colon + 1);
  unsigned port = 0;
  const auto r = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (r.ec != std::errc() || r.ptr != port_text.data() + port_text.size() || port == 0 ||
      port > 65'535) {
    return std::nullopt;
  }
  return RedisAddress{std::string(text.substr(0, colon)), static_cast<std::uint16_t>(port)};
}

std::string http_post(const RedisAddress& address, std::string_view path,
                      std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(address.port);
  if (::getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    throw std::runtime_error(address.text() + ": cannot resolve");
  }
  const int fd = ::socket(found->ai_family, found->ai_socktype, found->ai_protocol);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const bool connected = fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0;
  ::freeaddrinfo(found);
  if (!connected) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) {
      ::close(fd);
    }
    throw std::runtime_error(address.text() + ": " + why);
  }
  const std::string request = "POST " + std::string(path) + " HTTP/1.1\r\nHost: " + address.host +
                              "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  std::string response;
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
      static_cast<ssize_t>(request.size())) {
    std::array<char, 4096> buf{};
    for (ssize_t n = 0; (n = ::recv(fd, buf.data(), buf.size(), 0)) > 0;) {
      response.append(buf.data(), static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return response;
}

RedisContextPtr connect_redis(const RedisAddress& address,
                              std::chrono::milliseconds connect_timeout,
                              std::chrono::milliseconds command_timeout) {
  RedisContextPtr ctx(
      redisConnectWithTimeout(address.host.c_str(), address.port, to_timeval(connect_timeout)));
  if (!ctx) {
    throw RedisError("redis " + address.text() + ": cannot allocate a connection");
  }
  if (ctx->err != 0) {
    throw RedisError("redis " + address.text() + ": " + ctx->errstr);
  }
  if (redisSetTimeout(ctx.get(), to_timeval(command_timeout)) != REDIS_OK) {
    throw RedisError("redis " + address.text() + ": cannot set the command timeout");
  }
  return ctx;
}

void RedisSession::fail_io(std::string_view what) const {
  std::string msg = "redis " + address_ + ": " + std::string(what) + ": ";
  msg += ctx_.err != 0 ? ctx_.errstr : "no reply";
  if (ctx_.err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    msg += " (timed out)";
  }
  throw RedisError(msg);
}

void RedisSession::fail_reply(const redisReply& reply, std::string_view what) const {
  throw RedisError("redis " + address_ + ": " + std::string(what) + ": " +
                   std::string(reply.str, reply.len));
}

RedisReplyPtr RedisSession::command(std::span<const std::string_view> args) {
  AS_ASSERT(!args.empty());
  std::vector<const char*> argv(args.size());
  std::vector<std::size_t> lens(args.size());
  for (std::size_t i = 0; i < args.size(); ++i) {
    argv[i] = args[i].data();
    lens[i] = args[i].size();
  }
  RedisReplyPtr reply(static_cast<redisReply*>(
      redisCommandArgv(&ctx_, static_cast<int>(args.size()), argv.data(), lens.data())));
  const std::string name(args[0]);
  if (!reply) {
    fail_io(name);
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    fail_reply(*reply, name);
  }
  return reply;
}

Pipeline::Pipeline(RedisSession& session, std::size_t batch_commands, OnReply on_reply)
    : session_(session), batch_(batch_commands), on_reply_(std::move(on_reply)) {
  AS_ASSERT(batch_ > 0);
  AS_ASSERT(on_reply_ != nullptr);
  argv_.resize(kArgsMax);
  argv_len_.resize(kArgsMax);
}

void Pipeline::append(std::span<const std::string_view> args) {
  AS_ASSERT(!args.empty());
  AS_ASSERT(args.size() <= kArgsMax);
  for (std::size_t i = 0; i < args.size(); ++i) {
    argv_[i] = args[i].data();
    argv_len_[i] = args[i].size();
  }
  if (redisAppendCommandArgv(&session_.context(), static_cast<int>(args.size()), argv_.data(),
                             argv_len_.data()) != REDIS_OK) {
    session_.fail_io("queueing a command");
  }
  ++appended_;
  if (appended_ - flushed_ >= batch_) {
    flush();
    // Leave the batch just written in flight; read the replies of the one before it.
    while (flushed_ - received_ > batch_) {
      read_one();
    }
  }
}

void Pipeline::finish() {
  flush();
  while (received_ < flushed_) {
    read_one();
  }
}

void Pipeline::flush() {
  int done = 0;
  while (done == 0) {
    if (redisBufferWrite(&session_.context(), &done) != REDIS_OK) {
      session_.fail_io("writing a batch of commands");
    }
  }
  flushed_ = appended_;
}

void Pipeline::read_one() {
  void* raw = nullptr;
  if (redisGetReply(&session_.context(), &raw) != REDIS_OK || raw == nullptr) {
    session_.fail_io("reading a batch of replies");
  }
  const RedisReplyPtr reply(static_cast<redisReply*>(raw));
  if (reply->type == REDIS_REPLY_ERROR) {
    session_.fail_reply(*reply, "command " + std::to_string(received_ + 1) + " of a batch");
  }
  on_reply_(received_, *reply);
  ++received_;
}

}  // namespace authswitch::admin
