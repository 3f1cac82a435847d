#include "switch/server.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <thread>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <openssl/ssl.h>

#include "base/assert.h"
#include "base/cpu_affinity.h"
#include "base/thread_name.h"
#include "iso8583/framing.h"
#include "limits/card_directory.h"
#include "limits/card_warmer.h"
#include "limits/redis_pipeline.h"
#include "limits/sweeper.h"
#include "risk/rule_store.h"
#include "switch/http_endpoint.h"
#include "switch/journal.h"
#include "switch/log.h"
#include "switch/metrics.h"
#include "switch/processor.h"
#include "switch/reconciler.h"

namespace authswitch::switching {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using Clock = limits::RedisPipeline::Clock;
using namespace std::chrono_literals;

constexpr auto kTick = 1ms;
// Queue depths reported on /metrics (authswitch_queue_depth{queue}), by index.
constexpr std::size_t kQueueRedis = 0;       // calls sent to Redis, not answered yet
constexpr std::size_t kQueueRequests = 1;    // requests read and not yet answered
constexpr std::size_t kQueueReconciler = 2;  // items owed to Redis after stand-in answers
constexpr std::array<std::string_view, 3> kQueueNames = {"redis_in_flight", "requests_deciding",
                                                         "reconciler_pending"};
// Events counted on /metrics (authswitch_events_total{event}), by index: running totals the
// shards publish every kTimerTicks ticks from the counters their parts keep.
enum Event : std::size_t {
  kEvClosedBadInput,
  kEvClosedTimeout,
  kEvClosedSlowReader,
  kEvRefusedMaxConnections,
  kEvTlsFailures,
  kEvDialConnects,
  kEvDialFailures,
  kEvSignOns,
  kEvRefusedNotSignedOn,
  kEvEchoesSent,
  kEvEchoesAnswered,
  kEvEchoesMissed,
  kEvUnmatchedResponses,
  kEvDeadlines,
  kEvStandInApprovals,
  kEvStandInDeclines,
  kEvRedisQueueWaits,
  kEvHoldsLibraryFailures,
  kEvProcessorBusy,
  kEvAdvicesUnconfirmed,
  kEvLateRedisReplies,
  kEvCompensations,
  kEvCompensationFailures,
  kEvReconcileQueued,
  kEvReconcileApplied,
  kEvReconcileAlreadyApplied,
  kEvReconcileUnresolved,
  kEvReconcileCallFailures,
  kEvCardMisses,
  kEvCardsPreloaded,
  kEvCardErrors,
  kEvAuditDropped,
  kEvRuleReloads,
  kEvRuleReloadFailures,
  kEventCount
};
constexpr std::array<std::string_view, kEventCount> kEventNames = {"closed_bad_input",
                                                                   "closed_timeout",
                                                                   "closed_slow_reader",
                                                                   "refused_max_connections",
                                                                   "tls_handshake_failures",
                                                                   "dial_connects",
                                                                   "dial_failures",
                                                                   "sign_ons",
                                                                   "refused_not_signed_on",
                                                                   "echoes_sent",
                                                                   "echoes_answered",
                                                                   "echoes_missed",
                                                                   "unmatched_responses",
                                                                   "deadlines_reached",
                                                                   "stand_in_approvals",
                                                                   "stand_in_declines",
                                                                   "redis_queue_waits",
                                                                   "holds_library_failures",
                                                                   "processor_busy",
                                                                   "advices_unconfirmed",
                                                                   "late_redis_replies",
                                                                   "compensating_reversals",
                                                                   "compensation_failures",
                                                                   "reconcile_queued",
                                                                   "reconcile_applied",
                                                                   "reconcile_already_applied",
                                                                   "reconcile_unresolved",
                                                                   "reconcile_call_failures",
                                                                   "card_cache_misses",
                                                                   "cards_preloaded",
                                                                   "card_errors",
                                                                   "audit_dropped",
                                                                   "rule_reloads",
                                                                   "rule_reload_failures"};
// Connection timers (handshake, read_timeout, echoes, sign-on, dialling) are checked every
// kTimerTicks ticks: their resolution is 10 ms, which is plenty for limits of 100 ms and more.
constexpr unsigned kTimerTicks = 10;
constexpr std::size_t kWriteBufferBytes = 256 * 1024;
constexpr std::size_t kReadChunkBytes = 16 * 1024;
constexpr std::size_t kOwnMessageBytes = 512;  // a switch-originated 0800
// A TLS handshake not finished by then closes the connection (it holds a slot meanwhile).
constexpr auto kHandshakeTimeout = 5s;
// A dial attempt whose TCP connect has not completed by then is abandoned (then back-off).
constexpr auto kConnectTimeout = 5s;
// The 0810 to the switch's sign-on must come within max(4 x budget, this).
constexpr auto kSignOnTimeoutMin = 3s;
constexpr auto kTlsCloseGrace = 1s;  // a peer's close_notify in answer to ours
// Idle echoes unanswered (each within the network's budget) in a row before the link closes.
constexpr unsigned kEchoMissesMax = 3;

std::int64_t wall_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The TLS context of a network (shared by its connections on every shard: OpenSSL's SSL_CTX
// may be used by many SSL objects on many threads once it is set up). Throws at start-up.
std::unique_ptr<ssl::context> make_tls_context(const NetworkConfig& n) {
  if (!n.tls.enabled) {
    return nullptr;
  }
  const bool listen = n.role == NetworkRole::kListen;
  auto ctx =
      std::make_unique<ssl::context>(listen ? ssl::context::tls_server : ssl::context::tls_client);
  boost::system::error_code ec;
  // TLS 1.2 and 1.3 only.
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                   ec);
  std::string_view what = "options";
  if (!ec && !n.tls.cert.empty()) {
    what = "tls.cert";
    ctx->use_certificate_chain_file(n.tls.cert, ec);
    if (!ec) {
      what = "tls.key";
      ctx->use_private_key_file(n.tls.key, ssl::context::pem, ec);
    }
  }
  if (!ec && n.tls.verify_peer) {
    what = "tls.ca";
    ctx->load_verify_file(n.tls.ca, ec);
    if (!ec) {
      // On a listen network this is mutual TLS: no certificate, no connection.
      ctx->set_verify_mode(
          listen ? ssl::verify_peer | ssl::verify_fail_if_no_peer_cert : ssl::verify_peer, ec);
    }
  } else if (!ec) {
    ctx->set_verify_mode(ssl::verify_none, ec);
  }
  if (ec) {
    throw std::runtime_error("network " + n.name + ": TLS: " + std::string(what) + ": " +
                             ec.message());
  }
  return ctx;
}

}  // namespace

// Why a connection closed, which decides its log level and counter.
enum class CloseKind : std::uint8_t {
  kNormal,    // drained, peer closed
  kBadInput,  // framing or message unreadable
  kTimeout,   // handshake, read_timeout, echoes or sign-on unanswered
  kTls,       // TLS handshake failed
  kError,     // I/O error, write buffer full, sign-on refused
};

// A connection, accepted or dialled: its socket (plain or TLS), its receive buffer cut into
// frames, a double write buffer, and its sign-on and echo state. Lives on one shard; kept
// alive by its pending operations and by the shard's table.
class Server::Session : public std::enable_shared_from_this<Server::Session> {
 public:
  Session(Server::Shard& shard, std::size_t network, tcp::socket socket, ssl::context* tls,
          bool dial, std::uint32_t slot, std::uint32_t generation);

  // Handshakes (TLS), then signs on (dial, sign_on_required) and reads.
  void start();
  // A response from the processor (unframed message).
  void respond(std::span<const std::byte> message) noexcept;
  // The shard's deferred pass (see Shard::defer_write): write what respond() buffered.
  void flush_writes() noexcept;
  // Paused because the processor had no free slot (HandleStatus::kBusy): the shard calls this
  // once slots may have freed up, since with nothing of its own in flight no response of its
  // own would ever resume it.
  [[nodiscard]] bool waiting_for_slot() const noexcept { return waiting_for_slot_; }
  void retry_after_busy() noexcept;
  // Stop reading; close once everything accepted is answered and written.
  void drain() noexcept;
  // Deadlines: handshake, partial frame (read_timeout), sign-on answer, idle echoes.
  void on_timer(Clock::time_point now) noexcept;
  [[nodiscard]] bool idle() const noexcept {
    return outstanding_ == 0 && !writing_ && fill_len_ == 0;
  }
  // A read still pending while draining: its completion closes the session (a TLS link with
  // close_notify, which cannot be started while the read is outstanding).
  [[nodiscard]] bool reading() const noexcept { return reading_; }
  [[nodiscard]] std::size_t network() const noexcept { return network_; }
  [[nodiscard]] bool dial() const noexcept { return dial_; }
  // The link did its job (established, and signed on when required): resets the back-off.
  [[nodiscard]] bool served() const noexcept { return served_; }
  [[nodiscard]] std::uint64_t id_base() const noexcept {
    return (std::uint64_t{slot_} << 32U) | generation_;
  }
  void close(std::string_view why, CloseKind kind) noexcept;

 private:
  [[nodiscard]] const NetworkConfig& net() const noexcept;
  tcp::socket& lowest() noexcept { return tls_ != nullptr ? tls_->next_layer() : plain_; }
  void on_handshake(const boost::system::error_code& ec);
  void on_established();
  void read();
  void on_read(const boost::system::error_code& ec, std::size_t n);
  void process() noexcept;
  void on_not_a_request() noexcept;
  [[nodiscard]] bool append_frame(std::span<const std::byte> message) noexcept;
  void send_own(std::string_view de70, std::uint32_t stan) noexcept;
  [[nodiscard]] std::uint32_t next_stan() noexcept {
    stan_ = stan_ % 999'999U + 1;
    return stan_;
  }
  void start_write();
  // close() of a TLS link on purpose: close_notify first. False when nothing was started.
  bool close_tls_gracefully() noexcept;
  void close_if_drained() noexcept;
  void stop_waiting_for_slot() noexcept;

  Server::Shard& shard_;
  std::size_t network_;
  bool dial_;
  tcp::socket plain_;                              // moved into tls_ when TLS
  std::unique_ptr<ssl::stream<tcp::socket>> tls_;  // null: plain TCP
  std::string peer_;                               // "ip:port", for logs
  iso8583::FrameDecoder decoder_;
  std::vector<std::byte> read_buf_;
  std::size_t read_len_ = 0;
  std::array<std::vector<std::byte>, 2> write_bufs_;
  std::size_t fill_ = 0;  // the buffer responses are appended to
  std::size_t fill_len_ = 0;
  std::array<std::byte, kOwnMessageBytes> own_{};  // the 0800 being sent
  bool established_ = false;                       // TCP connected and TLS handshake done
  bool served_ = false;
  bool writing_ = false;
  bool write_queued_ = false;  // in the shard's deferred pass already
  bool reading_ = false;
  bool paused_ = false;  // the processor was busy or the cap reached: resume after a response
  bool waiting_for_slot_ = false;  // paused by the processor being busy (counted by the shard)
  bool draining_ = false;
  bool closed_ = false;
  std::size_t outstanding_ = 0;    // accepted requests not answered yet
  std::vector<std::byte> header_;  // the fixed frame header of the last request, echoed
  std::size_t in_flight_max_;      // the network's per-connection cap
  std::uint32_t slot_;
  std::uint32_t generation_;
  ConnectionState conn_;  // sign-on state; the 0810s the processor saw
  // Timers (checked by on_timer).
  Clock::time_point created_;
  Clock::time_point last_rx_;
  Clock::time_point partial_since_{};  // a partial frame waits since; epoch: none
  // The switch's own 0800s: DE 11 counter, the sign-on (dial) and the idle echo.
  std::uint32_t stan_ = 0;
  bool sign_on_pending_ = false;
  std::uint32_t sign_on_stan_ = 0;
  Clock::time_point sign_on_deadline_{};
  bool echo_pending_ = false;
  std::uint32_t echo_stan_ = 0;
  Clock::time_point echo_deadline_{};
  Clock::time_point next_echo_{};
  unsigned echo_misses_ = 0;
  bool unmatched_logged_ = false;
};

class Server::Shard {
 public:
  Shard(Server::Impl& server, std::size_t index);
  ~Shard();

  void start_thread();
  void join();
  asio::io_context& io() noexcept { return io_; }
  // On the shard's thread. Null when stopping.
  std::shared_ptr<Session> adopt(std::size_t network, tcp::socket socket, bool dial);
  void begin_drain() noexcept;
  [[nodiscard]] bool drained() const noexcept { return drained_.load(std::memory_order_acquire); }
  // Redis connected with its scripts loaded and the card cache synced (set by the tick).
  [[nodiscard]] bool ready() const noexcept { return ready_.load(std::memory_order_acquire); }

  Processor& processor(std::size_t network) noexcept { return *processors_[network]; }
  const NetworkConfig& network(std::size_t network) const noexcept;
  ssl::context* tls(std::size_t network) const noexcept;
  void flush() noexcept {
    pipeline_->flush();
    count_redis();
    drive_redis();
  }
  // Smart batching across connections: the Redis flush and the response writes wait for the
  // end of this pass of the event loop (every socket epoll reported ready has been read and
  // every Redis reply read has been answered), so one pass costs one write to Redis and one
  // write per connection, not one per read or per reply. One posted handler per pass (asio
  // recycles its memory: no allocation).
  void defer_flush() noexcept { schedule_deferred(); }
  void defer_write(std::uint32_t slot) noexcept {
    dirty_.push_back(slot);  // capacity kept: grows only to the most connections answered at once
    schedule_deferred();
  }
  void release(std::uint32_t slot) noexcept;
  // Sessions paused on a busy processor try again (after a pass or tick that may have freed
  // slots). Nothing to do, and no scan, when none waits.
  void retry_slot_waiters() noexcept;
  void add_slot_waiter() noexcept { ++slot_waiters_; }
  void remove_slot_waiter() noexcept { --slot_waiters_; }
  void count_response() noexcept { stats_.responses.fetch_add(1, std::memory_order_relaxed); }
  void count_request() noexcept { stats_.requests.fetch_add(1, std::memory_order_relaxed); }
  void count_bad_input() noexcept {
    stats_.closed_bad_input.fetch_add(1, std::memory_order_relaxed);
  }
  [[nodiscard]] bool stopping() const noexcept { return stopping_; }
  void check_drained() noexcept;

  struct alignas(64) Stats {
    std::atomic<std::uint64_t> connections{0};
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> responses{0};
    std::atomic<std::uint64_t> closed_bad_input{0};
    std::atomic<std::uint64_t> closed_timeout{0};
    std::atomic<std::uint64_t> closed_slow_reader{0};
    std::atomic<std::uint64_t> tls_failures{0};
    std::atomic<std::uint64_t> dial_connects{0};
    std::atomic<std::uint64_t> dial_failures{0};
    std::atomic<std::uint64_t> sign_ons{0};
    std::atomic<std::uint64_t> refused_not_signed_on{0};
    std::atomic<std::uint64_t> echoes_sent{0};
    std::atomic<std::uint64_t> echoes_answered{0};
    std::atomic<std::uint64_t> echoes_missed{0};
    std::atomic<std::uint64_t> unmatched_responses{0};
  };
  Stats& stats() noexcept { return stats_; }
  const Stats& stats() const noexcept { return stats_; }

 private:
  // Routes a processor's responses to the session the request came from.
  class Sink final : public ResponseSink {
   public:
    explicit Sink(Shard& shard) : shard_(shard) {}
    void on_response(std::uint64_t request_id,
                     std::span<const std::byte> message) noexcept override {
      shard_.route(request_id, message);
    }

   private:
    Shard& shard_;
  };

  // A dial network this shard owns (index % shards): at most one link, re-dialled after a
  // back-off doubling from reconnect.min to reconnect.max, reset after a link that served.
  struct Dialer {
    std::size_t network = 0;
    std::optional<tcp::socket> connecting;
    std::optional<tcp::resolver> resolver;  // a host name: resolved anew for each attempt
    bool resolving = false;
    Clock::time_point connect_deadline{};  // of the resolution, then of the connect
    Clock::time_point next_attempt{};
    std::chrono::milliseconds backoff{};
    bool live = false;  // a session of this dialer exists
  };

  void route(std::uint64_t request_id, std::span<const std::byte> message) noexcept;
  void schedule_deferred() noexcept;
  void run_deferred() noexcept;
  void drive_redis() noexcept;
  // Feeds the Redis metrics from the pipeline's and processors' counters: calls sent since the
  // last flush (one batch), replies received, failed or timed-out calls. A few integer
  // subtractions; no syscall.
  void count_redis() noexcept;
  // This shard's queue depths (calls in flight to Redis, requests being decided, reconciler).
  void report_queues() noexcept;
  void report_events(ShardMetrics& m) noexcept;
  void on_tick() noexcept;
  void on_timers(Clock::time_point now) noexcept;
  void start_dial(Dialer& d, Clock::time_point now);
  // Connects to the first of `endpoints` that answers (a name's addresses, or one address).
  template <typename Endpoints>
  void connect(Dialer& d, const Endpoints& endpoints, Clock::time_point now);
  void on_dial_connect(Dialer& d, const boost::system::error_code& ec);
  void retry_later(Dialer& d, Clock::time_point now) noexcept;
  void on_dial_closed(std::size_t network, bool served) noexcept;

  Server::Impl& server_;
  std::size_t index_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  asio::steady_timer timer_;
  unsigned ticks_ = 0;
  asio::posix::stream_descriptor redis_socket_;
  int redis_fd_ = -1;
  std::uint64_t redis_connects_ = 0;
  bool redis_read_wait_ = false;
  bool redis_write_wait_ = false;
  // The warmer outlives the directory, whose destructor fails the loads it still holds (the
  // warmer's among them); the pipeline goes first of all (see ~Shard).
  std::unique_ptr<limits::CardWarmer> warmer_;  // [redis] preload_cards; null: off
  std::unique_ptr<limits::RedisPipeline> pipeline_;
  std::unique_ptr<limits::CardDirectory> directory_;
  std::optional<risk::RuleStore::Reader> reader_;
  std::unique_ptr<limits::SoftwareCardCrypto> crypto_;
  std::unique_ptr<limits::Sweeper> sweeper_;
  // The reconciliation journal's producer of this shard ([stand_in] journal); it outlives the
  // reconciler, which writes through it.
  std::optional<ReconJournal::Producer> recon_journal_;
  // What Redis owes after stand-in answers (failed compensations, stand-in approvals,
  // unconfirmed advices), replayed once Redis answers again; shared by the shard's processors.
  std::unique_ptr<Reconciler> reconciler_;
  // What count_redis() has already reported to the metrics.
  std::uint64_t counted_submitted_ = 0;
  std::uint64_t counted_replies_ = 0;
  std::uint64_t counted_errors_ = 0;
  std::optional<Journal::Producer> audit_;
  Sink sink_;
  std::vector<std::unique_ptr<Processor>> processors_;
  std::vector<std::unique_ptr<Dialer>> dialers_;
  std::vector<std::shared_ptr<Session>> sessions_;  // by slot; null when free
  std::vector<std::uint32_t> generations_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<std::uint32_t> dirty_;  // sessions with responses to write in the deferred pass
  std::size_t slot_waiters_ = 0;      // sessions with waiting_for_slot()
  bool deferred_posted_ = false;
  bool stopping_ = false;
  Clock::time_point drain_deadline_{};
  std::atomic<bool> drained_{false};
  std::atomic<bool> ready_{false};
  Stats stats_;
};

class Server::Impl {
 public:
  Impl(const SwitchConfig& config, std::unique_ptr<const risk::RuleSet> rules,
       const limits::TokenKey& key);

  const SwitchConfig config;
  risk::RuleStore rules;
  const limits::TokenKey& token_key;
  std::unique_ptr<Journal> journal;             // before the shards: they hold its producers
  std::unique_ptr<ReconJournal> recon_journal;  // likewise ([stand_in] journal)
  std::unique_ptr<Metrics> metrics;             // before the shards: they update their ShardMetrics
  std::unique_ptr<HttpEndpoint> http;
  std::vector<std::unique_ptr<ssl::context>> tls;  // by network index (null: plain TCP)
  // Live connections per listen network (max_connections): counted up by the acceptor, down by
  // the shard that releases the session (also while the shards are destroyed).
  std::unique_ptr<std::atomic<std::uint32_t>[]> live;
  std::atomic<bool> accepting{false};  // Redis ready (or given up on): listen and dial
  // The shards outlive io: an accept still pending when io is destroyed holds a socket of a
  // shard's io_context, which must still exist (use after free under ASan otherwise).
  std::vector<std::unique_ptr<Shard>> shards;
  asio::io_context io;  // acceptors and signals, on run()'s thread
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;  // by network index (null: not listen)
  std::size_t next_shard = 0;
  std::atomic<bool> stop_requested{false};
  std::optional<asio::steady_timer> stop_poll;

  void accept(std::size_t network);
  void do_stop();
  void wait_drained();
  void do_reload() noexcept;
  void wait_hangup(asio::signal_set& hangups);

  std::atomic<std::uint64_t> refused_max_connections{0};
  std::atomic<std::uint64_t> reloads{0};
  std::atomic<std::uint64_t> reload_failures{0};
};

// ---------------------------------------------------------------------------------------------
// Session

Server::Session::Session(Server::Shard& shard, std::size_t network, tcp::socket socket,
                         ssl::context* tls, bool dial, std::uint32_t slot, std::uint32_t generation)
    : shard_(shard),
      network_(network),
      dial_(dial),
      plain_(std::move(socket)),
      decoder_(shard.network(network).framing, shard.network(network).dialect),
      read_buf_(iso8583::max_buffered_bytes(shard.network(network).framing) + kReadChunkBytes),
      header_(shard.network(network).framing.header_bytes),
      in_flight_max_(std::max<std::size_t>(shard.network(network).in_flight_max, 1)),
      slot_(slot),
      generation_(generation) {
  for (auto& b : write_bufs_) {
    b.resize(kWriteBufferBytes);
  }
  boost::system::error_code ec;
  plain_.set_option(tcp::no_delay(true), ec);
  const tcp::endpoint remote = plain_.remote_endpoint(ec);
  if (!ec) {
    peer_ = remote.address().to_string() + ":" + std::to_string(remote.port());
  }
  if (tls != nullptr) {
    tls_ = std::make_unique<ssl::stream<tcp::socket>>(std::move(plain_), *tls);
    // Asio turns on SSL_MODE_RELEASE_BUFFERS, so OpenSSL frees a connection's record buffers
    // whenever they drain and mallocs them again for the next record: allocations per message.
    // A card network's link is never idle for long; keep the buffers (~34 KB per connection).
    SSL_clear_mode(tls_->native_handle(), SSL_MODE_RELEASE_BUFFERS);
  }
  conn_.sign_on_required = net().sign_on_required;
  conn_.peer_signs_on = !dial_;
}

const NetworkConfig& Server::Session::net() const noexcept { return shard_.network(network_); }

void Server::Session::start() {
  created_ = Clock::now();
  last_rx_ = created_;
  if (tls_ == nullptr) {
    on_established();
    return;
  }
  if (dial_) {
    const TlsConfig& t = net().tls;
    const std::string& name = t.server_name.empty() ? net().address.host : t.server_name;
    boost::system::error_code not_ip;
    (void)asio::ip::make_address(name, not_ip);
    if (not_ip) {
      // SNI, for host names only (RFC 6066 section 3). SSL_set_tlsext_host_name is a macro
      // over SSL_ctrl with a C cast.
      (void)SSL_ctrl(tls_->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                     const_cast<char*>(name.c_str()));
    }
    if (t.verify_peer) {
      boost::system::error_code ec;
      tls_->set_verify_callback(ssl::host_name_verification(name), ec);
    }
  }
  tls_->async_handshake(
      dial_ ? ssl::stream_base::client : ssl::stream_base::server,
      [self = shared_from_this()](const boost::system::error_code& ec) { self->on_handshake(ec); });
}

void Server::Session::on_handshake(const boost::system::error_code& ec) {
  if (closed_) {
    return;
  }
  if (ec) {
    shard_.stats().tls_failures.fetch_add(1, std::memory_order_relaxed);
    close("TLS handshake failed: " + ec.message(), CloseKind::kTls);
    return;
  }
  on_established();
}

void Server::Session::on_established() {
  established_ = true;
  const auto now = Clock::now();
  last_rx_ = now;
  next_echo_ = now + net().echo_interval;
  if (dial_) {
    log_event(LogLevel::kInfo, "dial_connected", net().name, "",
              {{"address", peer_}, {"tls", tls_ != nullptr ? "true" : "false"}});
    if (conn_.sign_on_required) {
      // Sign on first (DE 70 001; 1993: 1804 DE 24 801); requests that arrive meanwhile are
      // answered 91 (907).
      sign_on_pending_ = true;
      sign_on_stan_ = next_stan();
      sign_on_deadline_ = now + std::max<Clock::duration>(kSignOnTimeoutMin, 4 * net().budget);
      send_own("001", sign_on_stan_);
    } else {
      served_ = true;
    }
  } else if (log_enabled(LogLevel::kDebug)) {
    log_event(LogLevel::kDebug, "connection_accepted", net().name, "", {{"peer", peer_}});
  }
  read();
}

void Server::Session::read() {
  if (reading_ || closed_ || draining_ || paused_ || !established_) {
    return;
  }
  if (read_len_ == read_buf_.size()) {
    close("receive buffer full", CloseKind::kBadInput);  // bounded frames: cannot happen
    return;
  }
  reading_ = true;
  const auto buffer = asio::buffer(read_buf_.data() + read_len_, read_buf_.size() - read_len_);
  auto handler = [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
    self->on_read(ec, n);
  };
  if (tls_ != nullptr) {
    tls_->async_read_some(buffer, std::move(handler));
  } else {
    plain_.async_read_some(buffer, std::move(handler));
  }
}

void Server::Session::on_read(const boost::system::error_code& ec, std::size_t n) {
  reading_ = false;
  if (ec) {
    if (!draining_) {
      const bool eof = ec == asio::error::eof || ec == ssl::error::stream_truncated;
      close(eof ? "peer closed" : ec.message(), eof ? CloseKind::kNormal : CloseKind::kError);
    } else {
      close_if_drained();
    }
    return;
  }
  last_rx_ = Clock::now();
  echo_misses_ = 0;  // the peer is alive
  read_len_ += n;
  process();
  shard_.defer_flush();  // one pipelined write to Redis for everything this pass read
  read();
}

void Server::Session::process() noexcept {
  std::size_t offset = 0;
  while (!closed_ && !paused_) {
    const std::span<const std::byte> buffered(read_buf_.data() + offset, read_len_ - offset);
    const iso8583::FrameResult f = decoder_.decode(buffered);
    if (f.status == iso8583::FrameStatus::kNeedMore) {
      break;
    }
    if (f.status == iso8583::FrameStatus::kMalformed) {
      close(std::string("bad frame: ") + std::string(iso8583::errc_name(f.error.code)),
            CloseKind::kBadInput);
      return;
    }
    if (f.status == iso8583::FrameStatus::kComplete) {
      if (outstanding_ >= in_flight_max_) {
        paused_ = true;  // the network's in-flight cap: read on after a response
        break;
      }
      std::copy(f.header.begin(), f.header.end(), header_.begin());
      const auto now = Clock::now();
      const std::uint64_t refused = conn_.refused_not_signed_on;
      ++outstanding_;  // before handle(): the response may come from inside it
      const HandleStatus s =
          shard_.processor(network_).handle(id_base(), f.message, now, wall_ms(), &conn_);
      if (s == HandleStatus::kBusy) {
        --outstanding_;
        paused_ = true;  // keep the frame; resume after a response frees a slot
        if (!waiting_for_slot_) {
          waiting_for_slot_ = true;  // any response frees one: the shard retries us too
          shard_.add_slot_waiter();
        }
        break;
      }
      if (s == HandleStatus::kUnreadable) {
        --outstanding_;
        close("unreadable message", CloseKind::kBadInput);
        return;
      }
      if (s == HandleStatus::kNotARequest) {
        --outstanding_;
        on_not_a_request();
      } else {
        shard_.count_request();
        if (conn_.refused_not_signed_on != refused) {
          shard_.stats().refused_not_signed_on.fetch_add(1, std::memory_order_relaxed);
        }
      }
    }
    offset += f.consumed;
  }
  if (offset > 0) {
    std::memmove(read_buf_.data(), read_buf_.data() + offset, read_len_ - offset);
    read_len_ -= offset;
  }
  // A partial frame starts the read_timeout clock; progress (a whole frame) restarts it.
  if (read_len_ == 0 || paused_) {
    partial_since_ = {};
  } else if (offset > 0 || partial_since_ == Clock::time_point{}) {
    partial_since_ = Clock::now();
  }
}

// A message without a response: an 0810 answers the switch's sign-on or echo (matched by DE
// 11); an unmatched 0810 is counted (and the first of a connection logged: its STAN only). In an
// ISO 8583:1993 dialect the same holds for 1814 (the processor reports it as 810, approved only
// for action code 800).
void Server::Session::on_not_a_request() noexcept {
  if (conn_.response_mti != 810) {
    return;  // a 0110 or similar sent to the switch: nothing to do
  }
  conn_.response_mti = 0;
  const std::uint32_t stan = conn_.response_stan;
  if (sign_on_pending_ && stan == sign_on_stan_) {
    sign_on_pending_ = false;
    if (!conn_.response_approved) {
      close("sign-on refused (0810 DE 39 not 00; 1814 not 800)", CloseKind::kError);
      return;
    }
    conn_.signed_on = true;
    served_ = true;
    shard_.stats().sign_ons.fetch_add(1, std::memory_order_relaxed);
    log_event(LogLevel::kInfo, "signed_on", net().name, "", {{"address", peer_}});
    return;
  }
  if (echo_pending_ && stan == echo_stan_) {
    echo_pending_ = false;
    echo_misses_ = 0;
    shard_.stats().echoes_answered.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  shard_.stats().unmatched_responses.fetch_add(1, std::memory_order_relaxed);
  // Logged once per connection (a peer sending a stream of them must not flood the log);
  // all are counted.
  if (!unmatched_logged_ && log_enabled(LogLevel::kWarn)) {
    unmatched_logged_ = true;
    log_event(LogLevel::kWarn, "unmatched_0810", net().name,
              stan == UINT32_MAX ? "no DE 11" : "DE 11 " + std::to_string(stan), {{"peer", peer_}});
  }
}

void Server::Session::on_timer(Clock::time_point now) noexcept {
  if (closed_) {
    return;
  }
  const NetworkConfig& n = net();
  if (!established_) {
    if (now - created_ > kHandshakeTimeout) {
      close("TLS handshake timed out", CloseKind::kTimeout);
    }
    return;
  }
  if (partial_since_ != Clock::time_point{} && now - partial_since_ > n.read_timeout) {
    close("partial frame held longer than read_timeout (slow writer)", CloseKind::kTimeout);
    return;
  }
  if (sign_on_pending_ && now > sign_on_deadline_) {
    close("no 0810 (1814) to the sign-on", CloseKind::kTimeout);
    return;
  }
  if (draining_) {
    return;
  }
  if (echo_pending_ && now > echo_deadline_) {
    echo_pending_ = false;
    ++echo_misses_;
    shard_.stats().echoes_missed.fetch_add(1, std::memory_order_relaxed);
    if (echo_misses_ >= kEchoMissesMax) {
      close("3 echoes in a row unanswered", CloseKind::kTimeout);
      return;
    }
  }
  if (n.echo_interval.count() > 0 && !echo_pending_ && !sign_on_pending_ &&
      now - last_rx_ >= n.echo_interval && now >= next_echo_) {
    echo_pending_ = true;
    echo_stan_ = next_stan();
    echo_deadline_ = now + n.budget;
    next_echo_ = now + n.echo_interval;
    shard_.stats().echoes_sent.fetch_add(1, std::memory_order_relaxed);
    send_own("301", echo_stan_);
  }
}

// A switch-originated 0800 (sign-on 001, echo 301; 1993: 1804 with DE 24 801, 831) into the
// write buffer.
void Server::Session::send_own(std::string_view de70, std::uint32_t stan) noexcept {
  const std::size_t n =
      shard_.processor(network_).encode_network_request(de70, stan, wall_ms(), own_);
  if (n == 0) {
    close("the dialect cannot carry an 0800 (DE 7, 11, 70; 1993: DE 24)", CloseKind::kError);
    return;
  }
  if (append_frame({own_.data(), n}) && !writing_) {
    start_write();
  }
}

// Frames `message` (the last request's fixed header echoed) into the fill buffer. False when
// the connection closed instead: the buffer is full (a slow reader) or the frame too large.
bool Server::Session::append_frame(std::span<const std::byte> message) noexcept {
  const iso8583::Framing& framing = net().framing;
  std::vector<std::byte>& buf = write_bufs_[fill_];
  const std::size_t body = header_.size() + message.size();
  const std::size_t prefix = iso8583::length_header_bytes(framing.length);
  if (buf.size() - fill_len_ < prefix + body) {
    shard_.stats().closed_slow_reader.fetch_add(1, std::memory_order_relaxed);
    close("write buffer full (slow reader)", CloseKind::kError);
    return false;
  }
  const auto written = iso8583::write_frame_header(
      framing, body, std::span(buf.data() + fill_len_, buf.size() - fill_len_));
  if (!written) {
    close("response larger than the framing allows", CloseKind::kError);
    return false;
  }
  std::size_t at = fill_len_ + *written;
  std::copy(header_.begin(), header_.end(), buf.begin() + static_cast<std::ptrdiff_t>(at));
  at += header_.size();
  std::memcpy(buf.data() + at, message.data(), message.size());
  fill_len_ = at + message.size();
  return true;
}

void Server::Session::respond(std::span<const std::byte> message) noexcept {
  AS_ASSERT(outstanding_ > 0);
  --outstanding_;
  shard_.count_response();
  if (closed_ || !append_frame(message)) {
    return;
  }
  if (!writing_ && !write_queued_) {
    write_queued_ = true;
    shard_.defer_write(slot_);
  }
  if (paused_) {
    stop_waiting_for_slot();
    paused_ = false;
    process();
    read();
  }
}

void Server::Session::retry_after_busy() noexcept {
  if (!waiting_for_slot_ || closed_) {
    return;
  }
  stop_waiting_for_slot();
  paused_ = false;
  process();  // busy again: waits again
  read();
}

void Server::Session::stop_waiting_for_slot() noexcept {
  if (waiting_for_slot_) {
    waiting_for_slot_ = false;
    shard_.remove_slot_waiter();
  }
}

void Server::Session::flush_writes() noexcept {
  write_queued_ = false;
  if (!writing_) {
    start_write();
  }
}

void Server::Session::start_write() {
  if (fill_len_ == 0 || closed_) {
    return;
  }
  writing_ = true;
  const std::size_t send = fill_;
  const std::size_t len = fill_len_;
  fill_ ^= 1U;
  fill_len_ = 0;
  auto handler = [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
    self->writing_ = false;
    if (ec) {
      self->close(ec.message(), CloseKind::kError);
      return;
    }
    self->start_write();
    self->close_if_drained();
  };
  const auto buffer = asio::buffer(write_bufs_[send].data(), len);
  if (tls_ != nullptr) {
    asio::async_write(*tls_, buffer, std::move(handler));
  } else {
    asio::async_write(plain_, buffer, std::move(handler));
  }
}

void Server::Session::drain() noexcept {
  draining_ = true;
  boost::system::error_code ignored;
  lowest().shutdown(tcp::socket::shutdown_receive, ignored);  // a pending read ends now
  close_if_drained();
}

// Whichever ends last of the pending read and the last write closes a draining session: a
// TLS close_notify cannot be started while either is outstanding.
void Server::Session::close_if_drained() noexcept {
  if (draining_ && idle() && !reading_) {
    close("drained", CloseKind::kNormal);
  }
}

void Server::Session::close(std::string_view why, CloseKind kind) noexcept {
  if (closed_) {
    return;
  }
  closed_ = true;
  stop_waiting_for_slot();
  if (kind == CloseKind::kBadInput) {
    shard_.count_bad_input();
  } else if (kind == CloseKind::kTimeout) {
    shard_.stats().closed_timeout.fetch_add(1, std::memory_order_relaxed);
  }
  const LogLevel level =
      kind == CloseKind::kNormal ? (dial_ ? LogLevel::kInfo : LogLevel::kDebug) : LogLevel::kWarn;
  if (log_enabled(level)) {
    log_event(level, "connection_closed", net().name, why,
              {{"peer", peer_}, {"role", dial_ ? "dial" : "listen"}});
  }
  if (tls_ != nullptr && established_ && kind == CloseKind::kNormal && !writing_ && !reading_ &&
      close_tls_gracefully()) {
    shard_.release(slot_);  // the handlers keep the session alive until the socket is closed
    return;
  }
  boost::system::error_code ignored;
  lowest().shutdown(tcp::socket::shutdown_both, ignored);
  lowest().close(ignored);
  shard_.release(slot_);
}

// A TLS link closed on purpose (drained, or the peer closed) ends with close_notify, so the
// peer sees a clean end and not a truncation; a peer that does not answer it within
// kTlsCloseGrace is cut. False (nothing started) when out of memory: close abruptly then.
bool Server::Session::close_tls_gracefully() noexcept {
  try {
    auto self = shared_from_this();
    auto timer = std::make_shared<asio::steady_timer>(shard_.io(), kTlsCloseGrace);
    timer->async_wait([self](const boost::system::error_code&) {
      boost::system::error_code ignored;
      self->lowest().close(ignored);  // aborts the shutdown still waiting for the peer
    });
    tls_->async_shutdown([self, timer](const boost::system::error_code&) {
      timer->cancel();
      boost::system::error_code ignored;
      self->lowest().shutdown(tcp::socket::shutdown_both, ignored);
      self->lowest().close(ignored);
    });
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Shard

Server::Shard::Shard(Server::Impl& server, std::size_t index)
    : server_(server),
      index_(index),
      work_(asio::make_work_guard(io_)),
      timer_(io_),
      redis_socket_(io_),
      sink_(*this) {
  const SwitchConfig& config = server.config;
  limits::RedisPipeline::Options o;
  o.host = config.redis.address.host;
  o.port = config.redis.address.port;
  o.connect_timeout = config.redis.connect_timeout;
  // A request's calls (the card's HMGET on a miss, then the holds script with its velocity
  // arguments) take about 1.1 KB of the output buffer until Redis reads them. The pipeline's
  // 256 KiB default filled with 256 requests in flight while Redis was busy, and a full buffer
  // answers by stand-in (91s seen in the benchmark's closed loop): 8 MiB holds ~7,000.
  o.output_buffer_bytes = std::size_t{8} << 20;
  pipeline_ = std::make_unique<limits::RedisPipeline>(o);
  directory_ =
      std::make_unique<limits::CardDirectory>(*pipeline_, limits::CardDirectory::Options{});
  if (config.redis.preload_cards) {
    warmer_ = std::make_unique<limits::CardWarmer>(*pipeline_, *directory_,
                                                   limits::CardWarmer::Options{});
  }
  reader_.emplace(server.rules.reader());
  crypto_ = std::make_unique<limits::SoftwareCardCrypto>(server.token_key);
  if (server.journal != nullptr) {
    audit_.emplace(server.journal->producer());
  }
  Reconciler::Options ro;
  ro.hold_ttl_ms = config.redis.hold_ttl.count();
  ro.replay_window_ms = config.redis.replay_window.count();
  if (server.recon_journal != nullptr) {
    recon_journal_.emplace(server.recon_journal->producer());
  }
  // Without a journal ([stand_in] journal = ""), items and outcomes are counted only.
  reconciler_ = std::make_unique<Reconciler>(*pipeline_, *directory_,
                                             recon_journal_ ? &*recon_journal_ : nullptr, ro);
  for (const NetworkConfig& n : config.networks) {
    Processor::Options p;
    p.budget = n.budget;
    p.hold_ttl_ms = config.redis.hold_ttl.count();
    p.replay_window_ms = config.redis.replay_window.count();
    p.in_flight_max = std::max<std::size_t>(n.in_flight_max, 1) * 4;
    p.max_message_bytes = n.framing.max_frame_bytes;
    p.network = n.response_codes;
    p.audit = audit_ ? &*audit_ : nullptr;
    p.metrics = &server.metrics->shard(index);
    p.network_index = static_cast<std::uint16_t>(processors_.size());
    p.reconciler = reconciler_.get();
    if (config.stand_in.policy == StandInChoice::kApprove) {
      p.stand_in.kind = StandInPolicy::Kind::kApproveUpTo;
      p.stand_in.approve_up_to_minor = config.stand_in.max_amount_minor;
    }
    processors_.push_back(std::make_unique<Processor>(*n.dialect, *pipeline_, *directory_, *reader_,
                                                      *crypto_, p, sink_));
  }
  if (index == 0) {
    sweeper_ = std::make_unique<limits::Sweeper>(*pipeline_, limits::Sweeper::Options{});
  }
  const std::size_t shards = effective_shards(config);
  for (std::size_t i = 0; i < config.networks.size(); ++i) {
    if (config.networks[i].role == NetworkRole::kDial && i % shards == index) {
      auto d = std::make_unique<Dialer>();
      d->network = i;
      d->backoff = config.networks[i].reconnect.min;
      dialers_.push_back(std::move(d));
    }
  }
}

Server::Shard::~Shard() {
  // The pipeline holds the completions of the processors, the sweeper, the reconciler and the
  // card directory: it goes first (see processor.h), failing what is still in flight to owners
  // that are all still alive; a disconnected pipeline refuses what they submit in return.
  pipeline_.reset();
  sweeper_.reset();
}

const NetworkConfig& Server::Shard::network(std::size_t network) const noexcept {
  return server_.config.networks[network];
}

ssl::context* Server::Shard::tls(std::size_t network) const noexcept {
  return server_.tls[network].get();
}

void Server::Shard::start_thread() {
  timer_.expires_after(kTick);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) {
      on_tick();
    }
  });
  thread_ = std::thread([this] {
    base::set_thread_name("as-shard-" + std::to_string(index_));
    const std::vector<std::uint32_t>& cpus = server_.config.instance.cpus;
    if (!cpus.empty()) {
      const std::uint32_t cpu = cpus[index_ % cpus.size()];
      if (!base::pin_this_thread(cpu)) {  // check_cpus passed: the CPU went offline since
        log_event(LogLevel::kError, "shard_not_pinned", "", "cannot pin to a CPU",
                  {{"shard", std::to_string(index_)}, {"cpu", std::to_string(cpu)}});
      }
    }
    io_.run();
  });
}

void Server::Shard::join() {
  if (thread_.joinable()) {
    thread_.join();
  }
}

std::shared_ptr<Server::Session> Server::Shard::adopt(std::size_t network, tcp::socket socket,
                                                      bool dial) {
  if (stopping_) {
    return nullptr;  // closed by the socket's destructor
  }
  std::uint32_t slot = 0;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(sessions_.size());
    sessions_.emplace_back();
    generations_.push_back(0);
  }
  ++generations_[slot];
  stats_.connections.fetch_add(1, std::memory_order_relaxed);
  server_.metrics->shard(index_).connections(network, 1);
  auto s = std::make_shared<Session>(*this, network, std::move(socket), tls(network), dial, slot,
                                     generations_[slot]);
  sessions_[slot] = s;
  s->start();
  return s;
}

void Server::Shard::release(std::uint32_t slot) noexcept {
  if (slot < sessions_.size() && sessions_[slot] != nullptr) {
    const std::size_t network = sessions_[slot]->network();
    const bool dial = sessions_[slot]->dial();
    const bool served = sessions_[slot]->served();
    server_.metrics->shard(index_).connections(network, -1);
    if (!dial) {
      server_.live[network].fetch_sub(1, std::memory_order_acq_rel);
    }
    sessions_[slot].reset();
    ++generations_[slot];  // responses still owed to the closed session are dropped
    free_slots_.push_back(slot);
    if (dial) {
      on_dial_closed(network, served);
    }
  }
}

void Server::Shard::route(std::uint64_t request_id, std::span<const std::byte> message) noexcept {
  const auto slot = static_cast<std::uint32_t>(request_id >> 32U);
  const auto generation = static_cast<std::uint32_t>(request_id & 0xFFFF'FFFFU);
  if (slot < sessions_.size() && sessions_[slot] != nullptr && generations_[slot] == generation) {
    const std::shared_ptr<Session> s = sessions_[slot];  // respond() may close and release it
    s->respond(message);
  } else {
    count_response();  // answered, but the connection is gone
  }
}

void Server::Shard::schedule_deferred() noexcept {
  if (!deferred_posted_) {
    deferred_posted_ = true;
    asio::post(io_, [this] { run_deferred(); });
  }
}

void Server::Shard::run_deferred() noexcept {
  deferred_posted_ = false;
  retry_slot_waiters();  // the responses of this pass freed processor slots
  flush();  // Redis first: its work is the longer leg, and runs while the responses are written
  for (std::size_t i = 0; i < dirty_.size(); ++i) {  // by index: nothing below appends, but
    const std::uint32_t slot = dirty_[i];            // a reallocation would not hurt either
    if (slot < sessions_.size() && sessions_[slot] != nullptr) {
      const std::shared_ptr<Session> s = sessions_[slot];  // a failed write may release it
      s->flush_writes();
    }
  }
  dirty_.clear();
}

void Server::Shard::retry_slot_waiters() noexcept {
  for (std::size_t i = 0; slot_waiters_ > 0 && i < sessions_.size(); ++i) {
    if (sessions_[i] != nullptr && sessions_[i]->waiting_for_slot()) {
      const std::shared_ptr<Session> s = sessions_[i];  // processing may close and release it
      s->retry_after_busy();
    }
  }
}

void Server::Shard::drive_redis() noexcept {
  if (drained_.load(std::memory_order_relaxed)) {
    // check_drained() let go of the Redis socket so that the io_context runs out of work; a
    // deferred pass that runs after it must not register it again (the shard would never end).
    return;
  }
  const int fd = pipeline_->fd();
  const std::uint64_t connects = pipeline_->stats().connects;
  if (fd != redis_fd_ || connects != redis_connects_) {
    // A new socket (a reconnect may reuse the number): forget the old registration without
    // closing anything (the pipeline owns its socket).
    if (redis_socket_.is_open()) {
      boost::system::error_code ignored;
      redis_socket_.cancel(ignored);
      (void)redis_socket_.release();
    }
    redis_read_wait_ = false;
    redis_write_wait_ = false;
    redis_fd_ = fd;
    redis_connects_ = connects;
    if (fd >= 0) {
      boost::system::error_code ec;
      redis_socket_.assign(fd, ec);
      if (ec) {
        redis_fd_ = -1;
        return;
      }
    }
  }
  if (redis_fd_ < 0) {
    return;  // the tick drives the reconnect
  }
  if (!redis_read_wait_) {
    redis_read_wait_ = true;
    redis_socket_.async_wait(asio::posix::stream_descriptor::wait_read,
                             [this, fd](const boost::system::error_code& ec) {
                               if (fd != redis_fd_) {
                                 return;  // a wait of an earlier socket
                               }
                               redis_read_wait_ = false;
                               if (ec) {
                                 return;
                               }
                               pipeline_->on_readable(Clock::now());
                               defer_flush();  // completions may have submitted
                             });
  }
  if (pipeline_->wants_write() && !redis_write_wait_) {
    redis_write_wait_ = true;
    redis_socket_.async_wait(asio::posix::stream_descriptor::wait_write,
                             [this, fd](const boost::system::error_code& ec) {
                               if (fd != redis_fd_) {
                                 return;
                               }
                               redis_write_wait_ = false;
                               if (ec) {
                                 return;
                               }
                               pipeline_->on_writable(Clock::now());
                               drive_redis();
                             });
  }
}

void Server::Shard::count_redis() noexcept {
  ShardMetrics& m = server_.metrics->shard(index_);
  const limits::RedisPipeline::Stats& st = pipeline_->stats();
  if (st.submitted > counted_submitted_) {
    m.batch(static_cast<std::size_t>(st.submitted - counted_submitted_));
    counted_submitted_ = st.submitted;
  }
  for (; counted_replies_ < st.replies; ++counted_replies_) {
    m.redis_round_trip();
  }
  std::uint64_t errors = 0;
  for (const auto& p : processors_) {
    errors += p->stats().redis_errors + p->stats().timeouts;
  }
  for (; counted_errors_ < errors; ++counted_errors_) {
    m.redis_error();
  }
}

void Server::Shard::report_queues() noexcept {
  ShardMetrics& m = server_.metrics->shard(index_);
  std::size_t deciding = 0;
  for (const auto& p : processors_) {
    deciding += p->in_flight();
  }
  m.queue_depth(kQueueRedis, static_cast<std::int64_t>(pipeline_->in_flight()));
  m.queue_depth(kQueueRequests, static_cast<std::int64_t>(deciding));
  m.queue_depth(kQueueReconciler, static_cast<std::int64_t>(reconciler_->pending()));
  report_events(m);
}

void Server::Shard::report_events(ShardMetrics& m) noexcept {
  const auto load = [](const std::atomic<std::uint64_t>& a) {
    return a.load(std::memory_order_relaxed);
  };
  m.event_total(kEvClosedBadInput, load(stats_.closed_bad_input));
  m.event_total(kEvClosedTimeout, load(stats_.closed_timeout));
  m.event_total(kEvClosedSlowReader, load(stats_.closed_slow_reader));
  m.event_total(kEvTlsFailures, load(stats_.tls_failures));
  m.event_total(kEvDialConnects, load(stats_.dial_connects));
  m.event_total(kEvDialFailures, load(stats_.dial_failures));
  m.event_total(kEvSignOns, load(stats_.sign_ons));
  m.event_total(kEvRefusedNotSignedOn, load(stats_.refused_not_signed_on));
  m.event_total(kEvEchoesSent, load(stats_.echoes_sent));
  m.event_total(kEvEchoesAnswered, load(stats_.echoes_answered));
  m.event_total(kEvEchoesMissed, load(stats_.echoes_missed));
  m.event_total(kEvUnmatchedResponses, load(stats_.unmatched_responses));
  Processor::Stats p{};
  for (const auto& proc : processors_) {
    const Processor::Stats& s = proc->stats();
    p.timeouts += s.timeouts;
    p.stand_in_approvals += s.stand_in_approvals;
    p.stand_in_declines += s.stand_in_declines;
    p.queue_waits += s.queue_waits;
    p.library_failures += s.library_failures;
    p.busy += s.busy;
    p.advices_unconfirmed += s.advices_unconfirmed;
    p.late_replies += s.late_replies;
    p.compensations += s.compensations;
    p.compensation_failures += s.compensation_failures;
    p.card_errors += s.card_errors;
    p.audit_dropped += s.audit_dropped;
  }
  m.event_total(kEvDeadlines, p.timeouts);
  m.event_total(kEvStandInApprovals, p.stand_in_approvals);
  m.event_total(kEvStandInDeclines, p.stand_in_declines);
  m.event_total(kEvRedisQueueWaits, p.queue_waits);
  m.event_total(kEvHoldsLibraryFailures, p.library_failures);
  m.event_total(kEvProcessorBusy, p.busy);
  m.event_total(kEvAdvicesUnconfirmed, p.advices_unconfirmed);
  m.event_total(kEvLateRedisReplies, p.late_replies);
  m.event_total(kEvCompensations, p.compensations);
  m.event_total(kEvCompensationFailures, p.compensation_failures);
  m.event_total(kEvCardErrors, p.card_errors);
  m.event_total(kEvAuditDropped, p.audit_dropped);
  const Reconciler::Stats& r = reconciler_->stats();
  m.event_total(kEvReconcileQueued, r.queued);
  m.event_total(kEvReconcileApplied, r.applied);
  m.event_total(kEvReconcileAlreadyApplied, r.replayed_original);
  m.event_total(kEvReconcileUnresolved, r.unresolved);
  m.event_total(kEvReconcileCallFailures, r.failures);
  m.event_total(kEvCardMisses, directory_->stats().misses);
  m.event_total(kEvCardsPreloaded, warmer_ != nullptr ? warmer_->stats().loaded : 0);
  if (index_ == 0) {  // the server's own counters, published once
    m.event_total(kEvRefusedMaxConnections,
                  server_.refused_max_connections.load(std::memory_order_relaxed));
    m.event_total(kEvRuleReloads, server_.reloads.load(std::memory_order_relaxed));
    m.event_total(kEvRuleReloadFailures, server_.reload_failures.load(std::memory_order_relaxed));
  }
}

void Server::Shard::on_tick() noexcept {
  const auto now = Clock::now();
  pipeline_->on_tick(now);
  directory_->on_tick(now);
  if (warmer_ != nullptr) {
    const bool was_done = warmer_->done();
    warmer_->on_tick(now);
    if (warmer_->done() && !was_done) {
      log_event(
          LogLevel::kInfo, "card_cache_warm", "",
          std::to_string(directory_->size()) + " cards cached by shard " + std::to_string(index_));
    }
  }
  (void)reader_->current();  // an idle shard still moves to the newest rule set
  for (auto& p : processors_) {
    p->on_tick(now);
  }
  reconciler_->on_tick(now);
  if (sweeper_ != nullptr) {
    sweeper_->on_tick(now, wall_ms());
  }
  // Slots also free without a response (a late Redis reply to an answered request): a waiting
  // session is retried at least every tick.
  retry_slot_waiters();
  if (++ticks_ % kTimerTicks == 0) {
    on_timers(now);
    report_queues();
  }
  flush();
  ready_.store(pipeline_->ready() && directory_->ready(), std::memory_order_release);
  if (stopping_) {
    check_drained();
    if (drained_.load(std::memory_order_relaxed)) {
      return;  // no more ticks: the io_context runs out of work
    }
  }
  timer_.expires_after(kTick);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) {
      on_tick();
    }
  });
}

// Every kTimerTicks: the sessions' deadlines and echoes, and the dialers.
void Server::Shard::on_timers(Clock::time_point now) noexcept {
  for (std::size_t i = 0; i < sessions_.size(); ++i) {
    if (sessions_[i] != nullptr) {
      const std::shared_ptr<Session> s = sessions_[i];  // on_timer may close and release it
      s->on_timer(now);
    }
  }
  for (auto& d : dialers_) {
    if (stopping_ || d->live) {
      continue;
    }
    if (d->resolving) {
      if (now > d->connect_deadline) {
        d->resolver->cancel();  // the handler sees operation_aborted and retries later
      }
      continue;
    }
    if (d->connecting) {
      if (now > d->connect_deadline) {
        boost::system::error_code ignored;
        d->connecting->close(ignored);  // the connect handler sees operation_aborted
      }
      continue;
    }
    if (server_.accepting.load(std::memory_order_acquire) && now >= d->next_attempt) {
      try {
        start_dial(*d, now);
      } catch (const std::exception& e) {
        // Out of memory or a resolver failure outside the error_code paths: try again later.
        log_event(LogLevel::kWarn, "dial_failed", network(d->network).name, e.what());
        d->connecting.reset();
        retry_later(*d, now);
      }
    }
  }
}

// Connects a dial network's link. A numeric address connects at once; a host name is resolved
// asynchronously first (asio's resolver thread: getaddrinfo never blocks the shard), then
// here, blocking this shard for the lookup (once per attempt, never per message); use numeric
// addresses where a slow resolver matters.
template <typename Endpoints>
void Server::Shard::connect(Dialer& d, const Endpoints& endpoints, Clock::time_point now) {
  d.connecting.emplace(io_);
  d.connect_deadline = now + kConnectTimeout;
  asio::async_connect(*d.connecting, endpoints,
                      [this, &d](const boost::system::error_code& e, const tcp::endpoint&) {
                        on_dial_connect(d, e);
                      });
}

void Server::Shard::start_dial(Dialer& d, Clock::time_point now) {
  const NetworkConfig& n = network(d.network);
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(n.address.host, ec);
  if (!ec) {
    connect(d, std::array<tcp::endpoint, 1>{tcp::endpoint(address, n.address.port)}, now);
    return;
  }
  if (!d.resolver) {
    d.resolver.emplace(io_);
  }
  d.resolving = true;
  d.connect_deadline = now + kConnectTimeout;
  d.resolver->async_resolve(
      n.address.host, std::to_string(n.address.port),
      [this, &d](const boost::system::error_code& e, const tcp::resolver::results_type& results) {
        d.resolving = false;
        if (stopping_) {
          return;
        }
        const auto at = Clock::now();
        if (e || results.empty()) {
          const NetworkConfig& net = network(d.network);
          stats_.dial_failures.fetch_add(1, std::memory_order_relaxed);
          log_event(
              LogLevel::kWarn, "dial_failed", net.name,
              "cannot resolve: " + (e == asio::error::operation_aborted ? std::string("timed out")
                                    : e                                 ? e.message()
                                        : std::string("no address")),
              {{"address", net.address.text()}});
          retry_later(d, at);
          return;
        }
        try {
          connect(d, results, at);  // every address, in the resolver's order, one deadline
        } catch (const std::exception& x) {
          log_event(LogLevel::kWarn, "dial_failed", network(d.network).name, x.what());
          d.connecting.reset();
          retry_later(d, at);
        }
      });
}

void Server::Shard::on_dial_connect(Dialer& d, const boost::system::error_code& ec) {
  tcp::socket socket = std::move(*d.connecting);
  d.connecting.reset();
  const auto now = Clock::now();
  if (stopping_) {
    return;
  }
  if (ec) {
    stats_.dial_failures.fetch_add(1, std::memory_order_relaxed);
    const NetworkConfig& n = network(d.network);
    log_event(
        LogLevel::kWarn, "dial_failed", n.name,
        ec == asio::error::operation_aborted ? "connect timed out" : ec.message(),
        {{"address", n.address.text()},
         {"retry_in",
          format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(d.backoff))}});
    retry_later(d, now);
    return;
  }
  stats_.dial_connects.fetch_add(1, std::memory_order_relaxed);
  d.live = true;  // before adopt: the session may close (and call on_dial_closed) inside it
  if (adopt(d.network, std::move(socket), true) == nullptr) {
    d.live = false;
  }
}

void Server::Shard::retry_later(Dialer& d, Clock::time_point now) noexcept {
  const ReconnectConfig& r = network(d.network).reconnect;
  d.next_attempt = now + d.backoff;
  d.backoff = std::min<std::chrono::milliseconds>(d.backoff * 2, r.max);
}

void Server::Shard::on_dial_closed(std::size_t network_index, bool served) noexcept {
  for (auto& d : dialers_) {
    if (d->network == network_index) {
      d->live = false;
      if (served) {
        d->backoff = network(network_index).reconnect.min;
      }
      retry_later(*d, Clock::now());
    }
  }
}

void Server::Shard::begin_drain() noexcept {
  stopping_ = true;
  for (auto& d : dialers_) {
    if (d->resolving) {
      d->resolver->cancel();
    }
    if (d->connecting) {
      boost::system::error_code ignored;
      d->connecting->close(ignored);
    }
  }
  std::chrono::milliseconds longest{0};
  for (const NetworkConfig& n : server_.config.networks) {
    longest = std::max(longest, n.budget);
  }
  drain_deadline_ = Clock::now() + longest + 2s;
  // Copy: draining may close sessions, which edits the table.
  const std::vector<std::shared_ptr<Session>> live = sessions_;
  for (const auto& s : live) {
    if (s != nullptr) {
      s->drain();
    }
  }
}

void Server::Shard::check_drained() noexcept {
  // Owed reconciliation work is waited for too (bounded by the drain deadline: with Redis
  // down it is left, counted as unresolved).
  bool busy = reconciler_->pending() > 0;
  for (const auto& p : processors_) {
    busy = busy || p->in_flight() > 0;
  }
  for (const auto& s : sessions_) {
    // An idle session still reading closes itself when its read ends (drain() shut down the
    // receive side); closing it from here would cut a TLS link without close_notify.
    busy = busy || (s != nullptr && (!s->idle() || s->reading()));
  }
  if (busy && Clock::now() < drain_deadline_) {
    return;
  }
  const std::vector<std::shared_ptr<Session>> live = sessions_;
  for (const auto& s : live) {
    if (s != nullptr) {
      s->close(busy ? "drain deadline passed" : "drained",
               busy ? CloseKind::kError : CloseKind::kNormal);
    }
  }
  boost::system::error_code ignored;
  redis_socket_.cancel(ignored);
  (void)redis_socket_.release();
  redis_fd_ = -1;
  work_.reset();
  drained_.store(true, std::memory_order_release);
}

// ---------------------------------------------------------------------------------------------
// Server

Server::Impl::Impl(const SwitchConfig& cfg, std::unique_ptr<const risk::RuleSet> rule_set,
                   const limits::TokenKey& key)
    : config(cfg),
      rules(std::move(rule_set)),
      token_key(key),
      live(std::make_unique<std::atomic<std::uint32_t>[]>(cfg.networks.size())) {
  if (std::string why = check_cpus(config); !why.empty()) {
    throw std::runtime_error(why);
  }
  if (!config.audit.path.empty()) {
    Journal::Options j;
    j.path = config.audit.path;
    j.rotate_bytes = config.audit.rotate_bytes == 0 ? UINT64_MAX : config.audit.rotate_bytes;
    for (const NetworkConfig& n : config.networks) {
      j.networks.push_back(n.name);
    }
    journal = std::make_unique<Journal>(std::move(j));
  }
  if (!config.stand_in.journal.empty()) {
    ReconJournal::Options r;
    r.path = config.stand_in.journal;
    r.rotate_bytes = config.audit.rotate_bytes == 0 ? UINT64_MAX : config.audit.rotate_bytes;
    r.queue_capacity = 4096;  // a record is ~300 bytes; stand-in is the exception, not the flow
    for (const NetworkConfig& n : config.networks) {
      r.networks.push_back(n.name);
    }
    recon_journal = std::make_unique<ReconJournal>(std::move(r));
  }
  for (std::size_t i = 0; i < config.networks.size(); ++i) {
    const NetworkConfig& n = config.networks[i];
    tls.push_back(make_tls_context(n));
    if (n.role != NetworkRole::kListen) {
      acceptors.emplace_back();
      continue;
    }
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(n.address.host, ec);
    if (ec) {
      throw std::runtime_error("network " + n.name + ": " + n.address.text() +
                               ": not a numeric address (" + ec.message() + ")");
    }
    auto acceptor = std::make_unique<tcp::acceptor>(io);
    const tcp::endpoint endpoint(address, n.address.port);
    acceptor->open(endpoint.protocol(), ec);
    if (!ec) {
      acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
      acceptor->bind(endpoint, ec);
    }
    if (!ec) {
      acceptor->listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
      throw std::runtime_error("network " + n.name + ": cannot listen on " + n.address.text() +
                               ": " + ec.message());
    }
    acceptors.push_back(std::move(acceptor));
  }
  const std::size_t n = effective_shards(config);
  std::vector<std::string> names;
  for (const NetworkConfig& net : config.networks) {
    names.push_back(net.name);
  }
  metrics = std::make_unique<Metrics>(
      n, std::move(names),
      std::vector<std::string>{std::string(kQueueNames[kQueueRedis]),
                               std::string(kQueueNames[kQueueRequests]),
                               std::string(kQueueNames[kQueueReconciler])},
      std::vector<std::string>(kEventNames.begin(), kEventNames.end()));
  for (std::size_t i = 0; i < n; ++i) {
    shards.push_back(std::make_unique<Shard>(*this, i));
  }
  if (config.http.enabled) {
    HttpEndpoint::Options h;
    h.listen = config.http.listen;
    http = std::make_unique<HttpEndpoint>(
        h, [this] { return metrics->render(); },
        [this] {
          return !stop_requested.load() && std::all_of(shards.begin(), shards.end(),
                                                       [](const auto& s) { return s->ready(); });
        });
  }
}

void Server::Impl::accept(std::size_t network) {
  Shard& shard = *shards[next_shard++ % shards.size()];
  acceptors[network]->async_accept(
      shard.io(), [this, network, &shard](const boost::system::error_code& ec, tcp::socket s) {
        if (ec) {
          if (ec != asio::error::operation_aborted) {
            log_event(LogLevel::kWarn, "accept_failed", config.networks[network].name,
                      ec.message());
            accept(network);
          }
          return;
        }
        if (live[network].fetch_add(1, std::memory_order_acq_rel) >=
            config.networks[network].max_connections) {
          live[network].fetch_sub(1, std::memory_order_acq_rel);
          refused_max_connections.fetch_add(1, std::memory_order_relaxed);
          log_event(LogLevel::kWarn, "connection_refused", config.networks[network].name,
                    "max_connections reached");
          boost::system::error_code ignored;
          s.close(ignored);
          accept(network);
          return;
        }
        asio::post(shard.io(), [this, &shard, network, sock = std::move(s)]() mutable {
          if (shard.adopt(network, std::move(sock), false) == nullptr) {
            live[network].fetch_sub(1, std::memory_order_acq_rel);  // stopping: not adopted
          }
        });
        accept(network);
      });
}

// SIGHUP: reload the rule file; again for the next one.
void Server::Impl::wait_hangup(asio::signal_set& hangups) {
  hangups.async_wait([this, &hangups](const boost::system::error_code& ec, int) {
    if (!ec) {
      do_reload();
      wait_hangup(hangups);
    }
  });
}

// On run()'s thread (RuleStore has one writer). A file that does not compile changes nothing:
// the shards keep deciding with the set they have.
void Server::Impl::do_reload() noexcept {
  try {
    auto next = risk::load_rules(config.rules.file);
    // The audit journal names a decision's set by version and generation: the log ties them.
    const std::string version(next->version());
    const std::string generation = std::to_string(next->generation());
    rules.publish(std::move(next));
    reloads.fetch_add(1, std::memory_order_relaxed);
    log_event(LogLevel::kInfo, "rules_reloaded", "", version, {{"generation", generation}});
  } catch (const std::exception& e) {
    reload_failures.fetch_add(1, std::memory_order_relaxed);
    // The error names file, line and rule; it holds no card data (escaped by the logger).
    log_event(LogLevel::kError, "rules_reload_failed", "", e.what());
  }
}

void Server::Impl::do_stop() {
  for (auto& a : acceptors) {
    if (a != nullptr) {
      boost::system::error_code ignored;
      a->close(ignored);
    }
  }
  for (auto& shard : shards) {
    Shard* s = shard.get();
    asio::post(s->io(), [s] { s->begin_drain(); });
  }
  wait_drained();
}

void Server::Impl::wait_drained() {
  const bool all =
      std::all_of(shards.begin(), shards.end(), [](const auto& s) { return s->drained(); });
  if (all) {
    io.stop();
    return;
  }
  stop_poll.emplace(io, 2ms);
  stop_poll->async_wait([this](const boost::system::error_code&) { wait_drained(); });
}

Server::Server(const SwitchConfig& config, std::unique_ptr<const risk::RuleSet> rules,
               const limits::TokenKey& token_key)
    : impl_(std::make_unique<Impl>(config, std::move(rules), token_key)) {}

Server::~Server() = default;

std::uint16_t Server::listening_port(std::size_t index) const {
  const auto& a = impl_->acceptors.at(index);
  if (a == nullptr) {
    throw std::invalid_argument("network " + std::to_string(index) + " does not listen");
  }
  return a->local_endpoint().port();
}

void Server::run(bool handle_signals) {
  for (auto& shard : impl_->shards) {
    shard->start_thread();
  }
  // Accept only once every shard has Redis and its card cache (or the connect timeout has
  // passed: then requests are answered by stand-in until Redis comes). Connections made
  // meanwhile wait in the listen backlog.
  const auto give_up = Clock::now() + impl_->config.redis.connect_timeout + 1s;
  while (Clock::now() < give_up && !impl_->stop_requested.load() &&
         !std::all_of(impl_->shards.begin(), impl_->shards.end(),
                      [](const auto& s) { return s->ready(); })) {
    std::this_thread::sleep_for(1ms);
  }
  impl_->accepting.store(true, std::memory_order_release);  // and the shards start dialling
  for (std::size_t i = 0; i < impl_->acceptors.size(); ++i) {
    if (impl_->acceptors[i] != nullptr) {
      impl_->accept(i);
    }
  }
  if (impl_->http != nullptr) {
    impl_->http->on_reload([this] { reload_rules(); });
    impl_->http->start();
  }
  std::optional<asio::signal_set> signals;
  std::optional<asio::signal_set> hangups;
  if (handle_signals) {
    signals.emplace(impl_->io, SIGTERM, SIGINT);
    signals->async_wait([this](const boost::system::error_code& ec, int) {
      if (!ec) {
        stop();
      }
    });
    hangups.emplace(impl_->io, SIGHUP);
    impl_->wait_hangup(*hangups);
  }
  // stop() may have been called before run(): honour it.
  asio::post(impl_->io, [this] {
    if (impl_->stop_requested.load()) {
      impl_->do_stop();
    }
  });
  auto guard = asio::make_work_guard(impl_->io);
  impl_->io.run();
  for (auto& shard : impl_->shards) {
    shard->join();
  }
  if (impl_->http != nullptr) {
    impl_->http->stop();
  }
}

void Server::reload_rules() noexcept {
  asio::post(impl_->io, [this] { impl_->do_reload(); });
}

void Server::stop() noexcept {
  if (impl_->stop_requested.exchange(true)) {
    return;
  }
  asio::post(impl_->io, [this] { impl_->do_stop(); });
}

std::uint16_t Server::http_port() const { return impl_->http != nullptr ? impl_->http->port() : 0; }

Server::Totals Server::totals() const noexcept {
  Totals t;
  for (const auto& s : impl_->shards) {
    t.connections += s->stats().connections.load(std::memory_order_relaxed);
    t.requests += s->stats().requests.load(std::memory_order_relaxed);
    t.responses += s->stats().responses.load(std::memory_order_relaxed);
    t.closed_bad_input += s->stats().closed_bad_input.load(std::memory_order_relaxed);
    t.closed_timeout += s->stats().closed_timeout.load(std::memory_order_relaxed);
    t.closed_slow_reader += s->stats().closed_slow_reader.load(std::memory_order_relaxed);
    t.tls_failures += s->stats().tls_failures.load(std::memory_order_relaxed);
    t.dial_connects += s->stats().dial_connects.load(std::memory_order_relaxed);
    t.dial_failures += s->stats().dial_failures.load(std::memory_order_relaxed);
    t.sign_ons += s->stats().sign_ons.load(std::memory_order_relaxed);
    t.refused_not_signed_on += s->stats().refused_not_signed_on.load(std::memory_order_relaxed);
    t.echoes_sent += s->stats().echoes_sent.load(std::memory_order_relaxed);
    t.echoes_answered += s->stats().echoes_answered.load(std::memory_order_relaxed);
    t.echoes_missed += s->stats().echoes_missed.load(std::memory_order_relaxed);
    t.unmatched_responses += s->stats().unmatched_responses.load(std::memory_order_relaxed);
  }
  t.rule_reloads = impl_->reloads.load(std::memory_order_relaxed);
  t.rule_reload_failures = impl_->reload_failures.load(std::memory_order_relaxed);
  t.refused_max_connections = impl_->refused_max_connections.load(std::memory_order_relaxed);
  return t;
}

}  // namespace authswitch::switching
