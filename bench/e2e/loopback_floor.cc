// loopback_floor: the kernel's floor for the end-to-end benchmark (issue 6, bench/e2e). A bare
// echo over loopback TCP between two threads of this process, with messages of the size of a
// typical authorization frame: nothing but read(2) and write(2) on each side, so no switch can
// beat it. Prints one JSON object:
//   {"message_bytes":N,"pingpong":{"per_s":..,"p50_us":..,"p99_us":..,"p999_us":..},
//    "pipelined":{"depth":D,"per_s":..}}
// pingpong: one message in flight (a round trip each: the latency floor); pipelined: D
// messages kept in flight on one connection, each side reading and writing whole batches (the
// throughput floor of one connection).
// Usage: loopback_floor [SECONDS_PER_MODE] [MESSAGE_BYTES] [DEPTH]   (defaults 3 200 64)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

void no_delay(int fd) {
  const int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    die("setsockopt");
  }
}

bool write_all(int fd, const std::byte* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) {
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

bool read_all(int fd, std::byte* p, std::size_t n) {
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r <= 0) {
      return false;
    }
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

// Echoes whatever arrives until the peer closes.
void echo(int fd) {
  std::vector<std::byte> buf(64 * 1024);
  for (;;) {
    const ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
    if (r <= 0 || !write_all(fd, buf.data(), static_cast<std::size_t>(r))) {
      break;
    }
  }
  ::close(fd);
}

double at(std::vector<double>& v, double q) {
  if (v.empty()) {
    return 0;
  }
  const auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  const int seconds = argc > 1 ? std::atoi(argv[1]) : 3;
  const auto bytes = static_cast<std::size_t>(argc > 2 ? std::atoi(argv[2]) : 200);
  const auto depth = static_cast<std::size_t>(argc > 3 ? std::atoi(argv[3]) : 64);
  if (seconds <= 0 || bytes == 0 || depth == 0) {
    std::fprintf(stderr, "usage: loopback_floor [SECONDS_PER_MODE] [MESSAGE_BYTES] [DEPTH]\n");
    return 2;
  }

  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listener, 4) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    die("listen");
  }
  std::thread server([listener] {
    for (int i = 0; i < 2; ++i) {  // one connection per mode
      const int fd = ::accept(listener, nullptr, nullptr);
      if (fd < 0) {
        die("accept");
      }
      no_delay(fd);
      echo(fd);
    }
  });
  const auto connect_one = [&a] {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
      die("connect");
    }
    no_delay(fd);
    return fd;
  };
  std::vector<std::byte> msg(bytes, std::byte{0x30});
  std::vector<std::byte> in(bytes);

  // Ping-pong: one round trip at a time.
  std::vector<double> rtt_us;
  rtt_us.reserve(1U << 20U);
  int fd = connect_one();
  auto start = Clock::now();
  auto end = start + std::chrono::seconds(seconds);
  std::uint64_t n = 0;
  for (auto now = start; now < end; ++n) {
    if (!write_all(fd, msg.data(), bytes) || !read_all(fd, in.data(), bytes)) {
      die("ping-pong");
    }
    const auto after = Clock::now();
    rtt_us.push_back(std::chrono::duration<double, std::micro>(after - now).count());
    now = after;
  }
  const double pingpong_s = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  std::sort(rtt_us.begin(), rtt_us.end());

  // Pipelined: `depth` messages in flight; whatever arrives is read at once and as many
  // messages as came back whole are sent again in one write (batching on both sides, as a
  // switch does under load).
  fd = connect_one();
  std::vector<std::byte> batch_in(bytes * depth);
  std::vector<std::byte> batch_out(bytes * depth, std::byte{0x30});
  if (!write_all(fd, batch_out.data(), bytes * depth)) {
    die("pipelined");
  }
  std::uint64_t echoed = 0;
  std::size_t partial = 0;  // bytes of a message not yet whole
  start = Clock::now();
  end = start + std::chrono::seconds(seconds);
  while (Clock::now() < end) {
    const ssize_t r = ::recv(fd, batch_in.data(), batch_in.size(), 0);
    if (r <= 0) {
      die("pipelined");
    }
    partial += static_cast<std::size_t>(r);
    const std::size_t whole = partial / bytes;
    partial %= bytes;
    if (whole > 0 && !write_all(fd, batch_out.data(), whole * bytes)) {
      die("pipelined");
    }
    echoed += whole;
  }
  const double pipelined_s = std::chrono::duration<double>(Clock::now() - start).count();
  ::shutdown(fd, SHUT_WR);
  while (::recv(fd, in.data(), in.size(), 0) > 0) {
  }
  ::close(fd);
  server.join();
  ::close(listener);

  std::printf(
      "{\"message_bytes\":%zu,\"pingpong\":{\"per_s\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
      "\"p999_us\":%.1f},\"pipelined\":{\"depth\":%zu,\"per_s\":%.0f}}\n",
      bytes, static_cast<double>(n) / pingpong_s, at(rtt_us, 0.5), at(rtt_us, 0.99),
      at(rtt_us, 0.999), depth, static_cast<double>(echoed) / pipelined_s);
  return 0;
}
