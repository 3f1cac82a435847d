#pragma once
// Server: the switch's network layer (issue 5; DESIGN.md section 1). Listens on every
// `listen` network of the configuration, spreads accepted connections over N shard threads,
// and on each shard moves bytes between the connections and the shard's Processors (one per
// network), whose Redis pipeline it drives from the same io_context.
//
// Per shard (one thread, one io_context, shared nothing): its connections, its
// limits::RedisPipeline (the socket waited on through a posix::stream_descriptor), its
// limits::CardDirectory, its risk::RuleStore reader, its CardDataCrypto and a Processor per
// network. A read handler cuts every whole frame out of what arrived (iso8583::FrameDecoder),
// hands each to the processor, then flushes the pipeline once (smart batching: at low load a
// batch is one message, under load it grows); responses are appended to the connection's
// write buffer and leave in one write per connection turn. A 1 ms timer drives deadlines
// (stand-in), reconnects and the card cache's change feed.
//
// Bad input: a frame the framing refuses (oversized, garbage length) or a message the processor
// calls unreadable closes that connection only, with a log line; others never notice. A
// connection whose requests fill the processor stops being read until responses free slots.
//
// Stop: stop() (or SIGTERM/SIGINT when run() installed its handler) closes the listeners, stops
// reading, waits until every accepted request was answered and written (bounded by the longest
// budget plus a margin), then returns from run(). Nothing accepted is lost.
//
// Operations: Prometheus metrics on /metrics and /healthz ([http], switch/http_endpoint.h), an
// audit journal line per response ([audit], switch/journal.h).
//
// Rules: SIGHUP (or reload_rules()) reloads the rule file and swaps the whole set in.
//
// Not yet (issue 5 continues): dial networks, TLS, sign-on enforcement and idle echoes.
//
// Thread-safety: construct, run() and listening_port() from one thread; stop() from any
// thread.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "limits/pan_token.h"
#include "risk/rules.h"
#include "switch/config.h"

namespace authswitch::switching {

class Server {
 public:
  // Binds every listen network (port 0: an ephemeral port, see listening_port) and creates the
  // shards. Throws std::runtime_error (with the address) when a bind fails.
  Server(const SwitchConfig& config, std::unique_ptr<const risk::RuleSet> rules,
         const limits::TokenKey& token_key);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  Server(Server&&) = delete;
  Server& operator=(Server&&) = delete;

  // Runs until stop() (or a signal, when `handle_signals`), then drains and returns.
  void run(bool handle_signals = false);
  // Asks run() to stop: no new connections or requests; everything accepted is answered.
  void stop() noexcept;
  // Reloads the rule file ([rules] file; also on SIGHUP when run() handles signals): compiled on
  // run()'s thread and swapped in whole (risk::RuleStore), so no request is decided by a
  // half-loaded set; a file that does not compile changes nothing and is logged. Any thread.
  void reload_rules() noexcept;

  // The port network `index` (in configuration order, listen networks only) is bound to.
  [[nodiscard]] std::uint16_t listening_port(std::size_t index) const;
  // The port of /metrics and /healthz ([http]), or 0 when disabled.
  [[nodiscard]] std::uint16_t http_port() const;

  // Totals over the shards, for logs and tests (read after run() returned, or approximately).
  struct Totals {
    std::uint64_t connections = 0;
    std::uint64_t requests = 0;
    std::uint64_t responses = 0;
    std::uint64_t closed_bad_input = 0;
    std::uint64_t rule_reloads = 0;
    std::uint64_t rule_reload_failures = 0;
  };
  [[nodiscard]] Totals totals() const noexcept;

 private:
  class Shard;
  class Session;
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace authswitch::switching
