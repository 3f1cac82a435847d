#pragma once
// HttpEndpoint: the switch's operator HTTP server (issue 5; DESIGN.md section 6): Prometheus
// metrics at GET /metrics and liveness at GET /healthz, on a thread and io_context of its own so
// a scrape never runs on (or waits for) a shard thread.
//
//   GET /metrics  200, "text/plain; version=0.0.4; charset=utf-8", the body from `metrics`
//   GET /healthz  200 "ok\n" when `healthy` says so, else 503 "unavailable\n"
//   other paths   404;  a known path with another method: 405 (Allow: GET)
//   a request larger than Options::request_bytes_max (header or body): 413, then close
//   a request not complete within Options::read_timeout: the connection is closed
// One request per connection (every response says Connection: close). At most
// Options::connections_max connections at once; others are closed on accept.
//
// Ownership: owns its thread, io_context, listening socket and connections. The callbacks are
// copied in and called on the endpoint's thread, one at a time, so they must be safe to call
// from that thread while the rest of the switch runs (Metrics::render() is; an atomic flag read
// is). A callback that throws is answered 500.
//
// Thread-safety: construct, start(), stop() and destroy from one thread (the owner's); port()
// from any thread after construction.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "switch/config.h"

namespace authswitch::switching {

class HttpEndpoint {
 public:
  struct Options {
    HostPort listen{"127.0.0.1", 0};  // port 0: an ephemeral port (see port())
    std::chrono::milliseconds read_timeout{5'000};
    std::size_t request_bytes_max = 8192;
    std::size_t connections_max = 64;
  };

  // Binds and listens (nothing is served before start()). Throws std::runtime_error, naming the
  // address, when the host does not resolve or the bind fails; std::invalid_argument on a zero
  // limit or a missing callback.
  HttpEndpoint(Options options, std::function<std::string()> metrics,
               std::function<bool()> healthy);
  // Serves POST /-/reload by calling `reload` (which must not block; 202 Accepted). Call before
  // start(); without it /-/reload is 404.
  void on_reload(std::function<void()> reload);
  // Stops (see stop()).
  ~HttpEndpoint();
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;
  HttpEndpoint(HttpEndpoint&&) = delete;
  HttpEndpoint& operator=(HttpEndpoint&&) = delete;

  // Starts the thread that serves. REQUIRES: called at most once.
  void start();
  // Stops serving and joins the thread: open connections are abandoned (closed), whatever they
  // were doing. Returns promptly; idempotent; fine before start().
  void stop() noexcept;

  // The bound port (the ephemeral one when Options::listen.port was 0).
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

 private:
  class Impl;
  class Connection;
  std::unique_ptr<Impl> impl_;
  std::uint16_t port_ = 0;
};

}  // namespace authswitch::switching
