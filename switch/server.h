#pragma once
// Server: the switch's network layer (issue 5; DESIGN.md section 1). Listens on every
// `listen` network of the configuration, spreads accepted connections over N shard threads,
// and on each shard moves bytes between the connections and the shard's Processors (one per
// network), whose Redis pipeline it drives from the same io_context.
//
// Per shard (one thread, one io_context, shared nothing): its connections, its
// limits::RedisPipeline (the socket waited on through a posix::stream_descriptor), its
// limits::CardDirectory, its risk::RuleStore reader, its CardDataCrypto, its Reconciler (what
// Redis owes after stand-in answers, replayed once it answers again; no journal file yet) and
// a Processor per network. A read handler cuts every whole frame out of what arrived
// (iso8583::FrameDecoder), hands each to the processor, then flushes the pipeline once (smart
// batching: at low load a batch is one message, under load it grows); responses are appended to the
// connection's write buffer and leave in one write per connection turn. A 1 ms timer drives
// deadlines (stand-in), reconnects and the card cache's change feed.
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
// TLS (OpenSSL through Boost.Asio ssl) on listen and dial networks ([network.tls]): a
// listen network with verify_peer is mutual TLS (a client without a certificate signed by
// `ca` is refused); a dial network sends SNI and checks the server's name (server_name, else
// the address's host). A failed handshake closes that connection only, with a log line; a
// handshake not done within 5 s closes it too.
//
// Dial networks: each is owned by one shard (network index % shards), which keeps one link up:
// it connects (5 s connect timeout), handshakes, signs on when sign_on_required (0800, DE 70
// 001, its own DE 7 and DE 11; traffic is served once an 0810 with DE 39 00 matches, and
// requests that arrive before are answered 91; no 0810 within max(4 x budget, 3 s): closed)
// and serves requests arriving on the link exactly like a listen connection. A lost link or a
// failed attempt is re-dialled after a back-off doubling from reconnect.min to reconnect.max,
// reset to min after a link that served (signed on, or established when no sign-on).
//
// Sign-on (listen, sign_on_required): per connection (ConnectionState): before an 0800
// sign-on (DE 70 001) on that connection, and after a sign-off (002), financial requests,
// advices and reversals are answered 91 without touching Redis; 0800 is always answered.
//
// Idle echoes (echo_interval > 0): a connection that received nothing for echo_interval gets
// an 0800 echo (DE 70 301, its own DE 11 counter per connection), again every echo_interval
// while it stays silent. The 0810 is matched by DE 11; an echo unanswered within the network's
// budget is a miss, and three misses in a row close the link (a dial link then reconnects).
// An 0810 that matches nothing the switch sent is counted (the first per connection logged).
//
// ISO 8583:1993 dialects (DE 39 n3, iso8583/action_codes.h): the same flows as 1804/1814 with
// the DE 24 function code (801 sign-on, 802 sign-off, 831 echo test) in place of DE 70, and DE
// 39 800 as the only acceptance of a 1804; every DE 39 the switch sends is an action code.
//
// Slow peers: a connection holding a partial frame for longer than read_timeout (the clock
// restarts with every whole frame) is closed with a log line (a slow writer). A slow reader is
// bounded by its write buffer (256 KiB): a response that does not fit closes the connection.
// Timers run on the shard's tick, with 10 ms resolution; no timer object per connection.
//
// Logs: connection events as JSON lines (switch/log.h), never per message.
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
    std::uint64_t closed_timeout = 0;      // handshake, read_timeout, sign-on or echoes unanswered
    std::uint64_t closed_slow_reader = 0;  // a response did not fit the write buffer
    std::uint64_t tls_failures = 0;        // TLS handshakes that failed
    std::uint64_t dial_connects = 0;       // dial links connected (TCP)
    std::uint64_t dial_failures = 0;       // dial attempts that failed
    std::uint64_t sign_ons = 0;            // the switch's sign-ons answered 00 (dial)
    std::uint64_t refused_not_signed_on = 0;  // requests answered 91: no sign-on
    std::uint64_t echoes_sent = 0;
    std::uint64_t echoes_answered = 0;
    std::uint64_t echoes_missed = 0;
    std::uint64_t unmatched_responses = 0;  // 0810s matching no 0800 the switch sent
    std::uint64_t rule_reloads = 0;
    std::uint64_t rule_reload_failures = 0;
    std::uint64_t refused_max_connections = 0;  // accepted then closed: network at max_connections
  };
  [[nodiscard]] Totals totals() const noexcept;

 private:
  class Shard;
  class Session;
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace authswitch::switching
