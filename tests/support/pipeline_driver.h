#pragma once
// Drives a RedisPipeline (limits/redis_pipeline.h) from a test the way the switch's event loop
// will: tick, poll(2) its socket briefly, dispatch readable/writable. Header-only; each
// function is bounded in time, so a test never hangs on a dead Redis.
// Thread-safety: the caller's thread drives the client, as the client requires.

#include <chrono>

#include <poll.h>

#include "limits/redis_pipeline.h"

namespace authswitch::support {

// One pass of the event loop: tick, poll the socket for up to `wait`, dispatch.
inline void pump(limits::RedisPipeline& c,
                 std::chrono::milliseconds wait = std::chrono::milliseconds(2)) {
  using Clock = limits::RedisPipeline::Clock;
  c.on_tick(Clock::now());
  if (c.fd() < 0) {
    ::poll(nullptr, 0, static_cast<int>(wait.count()));
    return;
  }
  pollfd p{};
  p.fd = c.fd();
  p.events = static_cast<short>(POLLIN | (c.wants_write() ? POLLOUT : 0));
  if (::poll(&p, 1, static_cast<int>(wait.count())) > 0) {
    if ((p.revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
      c.on_readable(Clock::now());
    }
    if ((p.revents & POLLOUT) != 0 && c.fd() >= 0) {
      c.on_writable(Clock::now());
    }
  }
}

// Pumps until `done()` or until `limit` passes; returns done().
template <typename Pred>
bool drive(limits::RedisPipeline& c, Pred done,
           std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  using Clock = limits::RedisPipeline::Clock;
  const auto end = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > end) {
      return false;
    }
    pump(c);
  }
  return true;
}

}  // namespace authswitch::support
