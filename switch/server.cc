#include "switch/server.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <boost/asio.hpp>

#include "base/assert.h"
#include "iso8583/framing.h"
#include "limits/card_directory.h"
#include "limits/redis_pipeline.h"
#include "limits/sweeper.h"
#include "risk/rule_store.h"
#include "switch/http_endpoint.h"
#include "switch/journal.h"
#include "switch/metrics.h"
#include "switch/processor.h"

namespace authswitch::switching {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = limits::RedisPipeline::Clock;
using namespace std::chrono_literals;

constexpr auto kTick = 1ms;
constexpr std::size_t kWriteBufferBytes = 256 * 1024;
constexpr std::size_t kReadChunkBytes = 16 * 1024;

std::int64_t wall_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One JSON line on stderr (the structured logger is a later piece of issue 5). Never a PAN:
// callers pass addresses, network names and codec error texts only.
void log_line(std::string_view level, std::string_view event, std::string_view network,
              std::string_view detail) {
  static std::mutex mutex;
  const std::lock_guard lock(mutex);
  std::cerr << R"({"level":")" << level << R"(","event":")" << event << R"(","network":")"
            << network << R"(","detail":")" << detail << "\"}\n";
}

}  // namespace

// A connection: its socket, its receive buffer cut into frames, and a double write buffer.
// Lives on one shard; kept alive by its pending operations and by the shard's table.
class Server::Session : public std::enable_shared_from_this<Server::Session> {
 public:
  Session(Server::Shard& shard, std::size_t network, tcp::socket socket, std::uint32_t slot,
          std::uint32_t generation);

  void start();
  // A response from the processor (unframed message).
  void respond(std::span<const std::byte> message) noexcept;
  // Stop reading; close once everything accepted is answered and written.
  void drain() noexcept;
  [[nodiscard]] bool idle() const noexcept {
    return outstanding_ == 0 && !writing_ && fill_len_ == 0;
  }
  [[nodiscard]] std::size_t network() const noexcept { return network_; }
  [[nodiscard]] std::uint64_t id_base() const noexcept {
    return (std::uint64_t{slot_} << 32U) | generation_;
  }
  void close(std::string_view why, bool bad_input) noexcept;

 private:
  void read();
  void on_read(const boost::system::error_code& ec, std::size_t n);
  void process() noexcept;
  void start_write();

  Server::Shard& shard_;
  std::size_t network_;
  tcp::socket socket_;
  iso8583::FrameDecoder decoder_;
  std::vector<std::byte> read_buf_;
  std::size_t read_len_ = 0;
  std::array<std::vector<std::byte>, 2> write_bufs_;
  std::size_t fill_ = 0;  // the buffer responses are appended to
  std::size_t fill_len_ = 0;
  bool writing_ = false;
  bool reading_ = false;
  bool paused_ = false;  // the processor was busy or the cap reached: resume after a response
  bool draining_ = false;
  bool closed_ = false;
  std::size_t outstanding_ = 0;    // accepted requests not answered yet
  std::vector<std::byte> header_;  // the fixed frame header of the last request, echoed
  std::size_t in_flight_max_;      // the network's per-connection cap
  std::uint32_t slot_;
  std::uint32_t generation_;
};

class Server::Shard {
 public:
  Shard(Server::Impl& server, std::size_t index);
  ~Shard();

  void start_thread();
  void join();
  asio::io_context& io() noexcept { return io_; }
  // On the shard's thread.
  void adopt(std::size_t network, tcp::socket socket);
  void begin_drain() noexcept;
  [[nodiscard]] bool drained() const noexcept { return drained_.load(std::memory_order_acquire); }
  // Redis connected with its scripts loaded and the card cache synced (set by the tick).
  [[nodiscard]] bool ready() const noexcept { return ready_.load(std::memory_order_acquire); }

  Processor& processor(std::size_t network) noexcept { return *processors_[network]; }
  const NetworkConfig& network(std::size_t network) const noexcept;
  void flush() noexcept {
    pipeline_->flush();
    drive_redis();
  }
  void release(std::uint32_t slot) noexcept;
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
  };
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

  void route(std::uint64_t request_id, std::span<const std::byte> message) noexcept;
  void drive_redis() noexcept;
  void on_tick() noexcept;

  Server::Impl& server_;
  std::size_t index_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  asio::steady_timer timer_;
  asio::posix::stream_descriptor redis_socket_;
  int redis_fd_ = -1;
  std::uint64_t redis_connects_ = 0;
  bool redis_read_wait_ = false;
  bool redis_write_wait_ = false;
  std::unique_ptr<limits::RedisPipeline> pipeline_;
  std::unique_ptr<limits::CardDirectory> directory_;
  std::optional<risk::RuleStore::Reader> reader_;
  std::unique_ptr<limits::SoftwareCardCrypto> crypto_;
  std::unique_ptr<limits::Sweeper> sweeper_;
  std::optional<Journal::Producer> audit_;
  Sink sink_;
  std::vector<std::unique_ptr<Processor>> processors_;
  std::vector<std::shared_ptr<Session>> sessions_;  // by slot; null when free
  std::vector<std::uint32_t> generations_;
  std::vector<std::uint32_t> free_slots_;
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
  std::unique_ptr<Journal> journal;  // before the shards: they hold its producers
  std::unique_ptr<Metrics> metrics;  // before the shards: they update their ShardMetrics
  std::unique_ptr<HttpEndpoint> http;
  asio::io_context io;  // acceptors and signals, on run()'s thread
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;  // by network index (null: not listen)
  std::vector<std::unique_ptr<Shard>> shards;
  std::size_t next_shard = 0;
  std::atomic<bool> stop_requested{false};
  std::optional<asio::steady_timer> stop_poll;

  void accept(std::size_t network);
  void do_stop();
  void wait_drained();
  void do_reload() noexcept;
  void wait_hangup(asio::signal_set& hangups);

  std::atomic<std::uint64_t> reloads{0};
  std::atomic<std::uint64_t> reload_failures{0};
};

// ---------------------------------------------------------------------------------------------
// Session

Server::Session::Session(Server::Shard& shard, std::size_t network, tcp::socket socket,
                         std::uint32_t slot, std::uint32_t generation)
    : shard_(shard),
      network_(network),
      socket_(std::move(socket)),
      decoder_(shard.network(network).framing, shard.network(network).dialect),
      read_buf_(iso8583::max_buffered_bytes(shard.network(network).framing) + kReadChunkBytes),
      header_(shard.network(network).framing.header_bytes),
      in_flight_max_(std::max<std::size_t>(shard.network(network).in_flight_max, 1)),
      slot_(slot),
      generation_(generation) {
  for (auto& b : write_bufs_) {
    b.resize(kWriteBufferBytes);
  }
  boost::system::error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
}

void Server::Session::start() { read(); }

void Server::Session::read() {
  if (reading_ || closed_ || draining_ || paused_) {
    return;
  }
  if (read_len_ == read_buf_.size()) {
    close("receive buffer full", true);  // cannot happen with a valid framing: bounded frames
    return;
  }
  reading_ = true;
  socket_.async_read_some(asio::buffer(read_buf_.data() + read_len_, read_buf_.size() - read_len_),
                          [self = shared_from_this()](const boost::system::error_code& ec,
                                                      std::size_t n) { self->on_read(ec, n); });
}

void Server::Session::on_read(const boost::system::error_code& ec, std::size_t n) {
  reading_ = false;
  if (ec) {
    if (!draining_) {
      close(ec == asio::error::eof ? "peer closed" : ec.message(), false);
    } else if (idle()) {
      close("drained", false);
    }
    return;
  }
  read_len_ += n;
  process();
  shard_.flush();  // one pipelined write to Redis for everything this read produced
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
      close(std::string("bad frame: ") + std::string(iso8583::errc_name(f.error.code)), true);
      return;
    }
    if (f.status == iso8583::FrameStatus::kComplete) {
      if (outstanding_ >= in_flight_max_) {
        paused_ = true;  // the network's in-flight cap: read on after a response
        break;
      }
      std::copy(f.header.begin(), f.header.end(), header_.begin());
      const auto now = Clock::now();
      ++outstanding_;  // before handle(): the response may come from inside it
      const HandleStatus s =
          shard_.processor(network_).handle(id_base(), f.message, now, wall_ms());
      if (s == HandleStatus::kBusy) {
        --outstanding_;
        paused_ = true;  // keep the frame; resume after a response frees a slot
        break;
      }
      if (s == HandleStatus::kUnreadable) {
        --outstanding_;
        close("unreadable message", true);
        return;
      }
      if (s == HandleStatus::kNotARequest) {
        --outstanding_;
      } else {
        shard_.count_request();
      }
    }
    offset += f.consumed;
  }
  if (offset > 0) {
    std::memmove(read_buf_.data(), read_buf_.data() + offset, read_len_ - offset);
    read_len_ -= offset;
  }
}

void Server::Session::respond(std::span<const std::byte> message) noexcept {
  AS_ASSERT(outstanding_ > 0);
  --outstanding_;
  shard_.count_response();
  if (closed_) {
    return;
  }
  const iso8583::Framing& framing = shard_.network(network_).framing;
  std::vector<std::byte>& buf = write_bufs_[fill_];
  const std::size_t body = header_.size() + message.size();
  const std::size_t prefix = iso8583::length_header_bytes(framing.length);
  if (buf.size() - fill_len_ < prefix + body) {
    close("write buffer full (slow reader)", false);
    return;
  }
  const auto written = iso8583::write_frame_header(
      framing, body, std::span(buf.data() + fill_len_, buf.size() - fill_len_));
  if (!written) {
    close("response larger than the framing allows", false);
    return;
  }
  std::size_t at = fill_len_ + *written;
  std::copy(header_.begin(), header_.end(), buf.begin() + static_cast<std::ptrdiff_t>(at));
  at += header_.size();
  std::memcpy(buf.data() + at, message.data(), message.size());
  fill_len_ = at + message.size();
  if (!writing_) {
    start_write();
  }
  if (paused_) {
    paused_ = false;
    process();
    read();
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
  asio::async_write(socket_, asio::buffer(write_bufs_[send].data(), len),
                    [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                      self->writing_ = false;
                      if (ec) {
                        self->close(ec.message(), false);
                        return;
                      }
                      self->start_write();
                      if (self->draining_ && self->idle()) {
                        self->close("drained", false);
                      }
                    });
}

void Server::Session::drain() noexcept {
  draining_ = true;
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_receive, ignored);  // a pending read ends now
  if (idle()) {
    close("drained", false);
  }
}

void Server::Session::close(std::string_view why, bool bad_input) noexcept {
  if (closed_) {
    return;
  }
  closed_ = true;
  if (bad_input) {
    shard_.count_bad_input();
    log_line("warn", "connection_closed", shard_.network(network_).name, why);
  }
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  shard_.release(slot_);
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
  pipeline_ = std::make_unique<limits::RedisPipeline>(o);
  directory_ =
      std::make_unique<limits::CardDirectory>(*pipeline_, limits::CardDirectory::Options{});
  reader_.emplace(server.rules.reader());
  crypto_ = std::make_unique<limits::SoftwareCardCrypto>(server.token_key);
  if (server.journal != nullptr) {
    audit_.emplace(server.journal->producer());
  }
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
}

Server::Shard::~Shard() {
  // The pipeline holds the processors' completions: it goes first (see processor.h).
  sweeper_.reset();
  pipeline_.reset();
}

const NetworkConfig& Server::Shard::network(std::size_t network) const noexcept {
  return server_.config.networks[network];
}

void Server::Shard::start_thread() {
  timer_.expires_after(kTick);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) {
      on_tick();
    }
  });
  thread_ = std::thread([this] { io_.run(); });
}

void Server::Shard::join() {
  if (thread_.joinable()) {
    thread_.join();
  }
}

void Server::Shard::adopt(std::size_t network, tcp::socket socket) {
  if (stopping_) {
    return;  // closed by the socket's destructor
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
  auto s = std::make_shared<Session>(*this, network, std::move(socket), slot, generations_[slot]);
  sessions_[slot] = s;
  s->start();
}

void Server::Shard::release(std::uint32_t slot) noexcept {
  if (slot < sessions_.size() && sessions_[slot] != nullptr) {
    server_.metrics->shard(index_).connections(sessions_[slot]->network(), -1);
    sessions_[slot].reset();
    ++generations_[slot];  // responses still owed to the closed session are dropped
    free_slots_.push_back(slot);
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

void Server::Shard::drive_redis() noexcept {
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
                               flush();  // completions may have submitted
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

void Server::Shard::on_tick() noexcept {
  const auto now = Clock::now();
  pipeline_->on_tick(now);
  directory_->on_tick(now);
  (void)reader_->current();  // an idle shard still moves to the newest rule set
  for (auto& p : processors_) {
    p->on_tick(now);
  }
  if (sweeper_ != nullptr) {
    sweeper_->on_tick(now, wall_ms());
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

void Server::Shard::begin_drain() noexcept {
  stopping_ = true;
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
  bool busy = false;
  for (const auto& p : processors_) {
    busy = busy || p->in_flight() > 0;
  }
  for (const auto& s : sessions_) {
    busy = busy || (s != nullptr && !s->idle());
  }
  if (busy && Clock::now() < drain_deadline_) {
    return;
  }
  const std::vector<std::shared_ptr<Session>> live = sessions_;
  for (const auto& s : live) {
    if (s != nullptr) {
      s->close(busy ? "drain deadline passed" : "drained", false);
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
    : config(cfg), rules(std::move(rule_set)), token_key(key) {
  if (!config.audit.path.empty()) {
    Journal::Options j;
    j.path = config.audit.path;
    j.rotate_bytes = config.audit.rotate_bytes == 0 ? UINT64_MAX : config.audit.rotate_bytes;
    for (const NetworkConfig& n : config.networks) {
      j.networks.push_back(n.name);
    }
    journal = std::make_unique<Journal>(std::move(j));
  }
  for (std::size_t i = 0; i < config.networks.size(); ++i) {
    const NetworkConfig& n = config.networks[i];
    if (n.role != NetworkRole::kListen) {
      acceptors.emplace_back();
      log_line("warn", "network_skipped", n.name, "dial networks are not supported yet");
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
  metrics = std::make_unique<Metrics>(n, std::move(names));
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
            log_line("warn", "accept_failed", config.networks[network].name, ec.message());
            accept(network);
          }
          return;
        }
        asio::post(shard.io(), [&shard, network, sock = std::move(s)]() mutable {
          shard.adopt(network, std::move(sock));
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
    const std::string version(next->version());
    rules.publish(std::move(next));
    reloads.fetch_add(1, std::memory_order_relaxed);
    log_line("info", "rules_reloaded", "", version);
  } catch (const std::exception& e) {
    reload_failures.fetch_add(1, std::memory_order_relaxed);
    // The error names file, line and rule; it holds no card data. Quotes would break the
    // JSON line, so they are replaced.
    std::string why = e.what();
    std::replace(why.begin(), why.end(), '"', '\'');
    std::replace(why.begin(), why.end(), '\n', ' ');
    log_line("error", "rules_reload_failed", "", why);
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
  }
  t.rule_reloads = impl_->reloads.load(std::memory_order_relaxed);
  t.rule_reload_failures = impl_->reload_failures.load(std::memory_order_relaxed);
  return t;
}

}  // namespace authswitch::switching
