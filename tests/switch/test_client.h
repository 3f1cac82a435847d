#pragma once
// The test's end of a connection to the switch, for server_test.cc and network_test.cc: a
// blocking loopback client (or a connection a dial network made to the test's own listening
// socket), plain TCP or TLS through OpenSSL's C API, speaking len2-binary frames (a two-byte
// big-endian length, then the message); and Acceptor, the listening socket a dial network
// connects to.
// Ownership: owns its socket and its SSL object. Every read gives up after a timeout (10 s unless
// set_timeout() says otherwise), so no test waits forever.
// Thread-safety: one thread at a time per TestClient.

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "tests/switch/test_messages.h"

namespace authswitch::switching {

class TestClient {
 public:
  // Connects to 127.0.0.1:`port`; with `tls`, handshakes TLS as the client (handshake_ok() says
  // whether it finished).
  explicit TestClient(std::uint16_t port, SSL_CTX* tls = nullptr)
      : TestClient(Adopt{}, connect_loopback(port)) {
    if (tls != nullptr) {
      ssl_ = SSL_new(tls);
      SSL_set_fd(ssl_, fd_);
      SSL_set1_host(ssl_, "127.0.0.1");
      handshake_ok_ = SSL_connect(ssl_) == 1;
    }
  }
  // Wraps a socket the test accepted; with `tls`, handshakes TLS as the server.
  static std::unique_ptr<TestClient> accepted(int fd, SSL_CTX* tls = nullptr) {
    auto c = std::unique_ptr<TestClient>(new TestClient(Adopt{}, fd));
    if (tls != nullptr) {
      c->ssl_ = SSL_new(tls);
      SSL_set_fd(c->ssl_, fd);
      c->handshake_ok_ = SSL_accept(c->ssl_) == 1;
    }
    return c;
  }
  ~TestClient() {
    if (ssl_ != nullptr) {
      SSL_free(ssl_);
    }
    ::close(fd_);
  }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  [[nodiscard]] bool handshake_ok() const { return handshake_ok_; }
  void set_timeout(std::chrono::milliseconds t) const {
    timeval tv{static_cast<time_t>(t.count() / 1000),
               static_cast<suseconds_t>(t.count() % 1000 * 1000)};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  // `message` with its len2-binary length prefix.
  static std::vector<std::byte> frame(const std::vector<std::byte>& message) {
    std::vector<std::byte> out = {static_cast<std::byte>(message.size() >> 8U),
                                  static_cast<std::byte>(message.size() & 0xFFU)};
    out.insert(out.end(), message.begin(), message.end());
    return out;
  }

  // Each false when not every byte could be written.
  [[nodiscard]] bool send_raw(const std::vector<std::byte>& bytes) const {
    if (ssl_ != nullptr) {
      return SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size())) ==
             static_cast<int>(bytes.size());
    }
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  [[nodiscard]] bool send(const std::vector<std::byte>& message) const {
    return send_raw(frame(message));
  }
  [[nodiscard]] bool send(const Txn& t) const { return send(encode(t)); }

  // The next message, or empty on EOF, error or timeout.
  std::vector<std::byte> receive() const {
    std::array<std::byte, 2> len{};
    if (!read_exact(len.data(), 2)) {
      return {};
    }
    const auto n =
        (std::to_integer<std::size_t>(len[0]) << 8U) | std::to_integer<std::size_t>(len[1]);
    std::vector<std::byte> msg(n);
    if (!read_exact(msg.data(), n)) {
      return {};
    }
    return msg;
  }
  // Reads `frames` whole frames into `buf` (sized by the caller); no allocation. False on EOF,
  // error, timeout or a buffer too small.
  bool receive_raw(std::size_t frames, std::vector<std::byte>& buf) const {
    std::size_t at = 0;
    for (std::size_t i = 0; i < frames; ++i) {
      if (buf.size() - at < 2 || !read_exact(buf.data() + at, 2)) {
        return false;
      }
      const auto n =
          (std::to_integer<std::size_t>(buf[at]) << 8U) | std::to_integer<std::size_t>(buf[at + 1]);
      at += 2;
      if (buf.size() - at < n || !read_exact(buf.data() + at, n)) {
        return false;
      }
      at += n;
    }
    return true;
  }
  // True when the other side closed the connection (EOF or reset before any byte).
  // TLS: the peer ended the link with close_notify (not a truncation).
  [[nodiscard]] bool closed_cleanly() const {
    std::byte b{};
    const int r = SSL_read(ssl_, &b, 1);
    return r <= 0 && SSL_get_error(ssl_, r) == SSL_ERROR_ZERO_RETURN;
  }
  [[nodiscard]] bool closed_by_peer() const {
    std::byte b{};
    if (ssl_ != nullptr) {
      const int r = SSL_read(ssl_, &b, 1);
      if (r > 0) {
        return false;
      }
      const int e = SSL_get_error(ssl_, r);
      return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SSL ||
             (e == SSL_ERROR_SYSCALL && errno != EAGAIN && errno != EWOULDBLOCK);
    }
    const ssize_t r = ::recv(fd_, &b, 1, 0);
    return r == 0 || (r < 0 && errno == ECONNRESET);
  }

 private:
  struct Adopt {};  // tags the constructor that takes over a connected socket

  TestClient(Adopt /*tag*/, int fd) : fd_(fd) {
    set_timeout(std::chrono::seconds(10));  // sanitizer builds on a busy machine are slow
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  static int connect_loopback(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ADD_FAILURE() << "connect failed";
    }
    return fd;
  }
  bool read_exact(std::byte* p, std::size_t n) const {
    std::size_t got = 0;
    while (got < n) {
      const ssize_t r = ssl_ != nullptr ? SSL_read(ssl_, p + got, static_cast<int>(n - got))
                                        : ::recv(fd_, p + got, n - got, 0);
      if (r <= 0) {
        return false;
      }
      got += static_cast<std::size_t>(r);
    }
    return true;
  }

  int fd_ = -1;
  SSL* ssl_ = nullptr;
  bool handshake_ok_ = true;
};

// A listening socket on a free loopback port, for dial networks to connect to.
class Acceptor {
 public:
  Acceptor() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~Acceptor() { ::close(fd_); }
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;
  [[nodiscard]] std::uint16_t port() const { return port_; }
  // The next connection within `timeout`, or null.
  std::unique_ptr<TestClient> accept(std::chrono::milliseconds timeout,
                                     SSL_CTX* ctx = nullptr) const {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
      return nullptr;
    }
    const int fd = ::accept(fd_, nullptr, nullptr);
    return fd < 0 ? nullptr : TestClient::accepted(fd, ctx);
  }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace authswitch::switching
