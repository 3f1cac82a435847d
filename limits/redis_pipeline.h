#pragma once
// A non-blocking, batching Redis client for one shard thread (issue 3, "A client built for
// batching"; DESIGN.md sections 1 and 8).
//
// The client owns one non-blocking TCP socket to Redis and nothing else: it never blocks, never
// starts a thread and never waits. Whoever drives it (the switch's Asio loop through a
// posix::stream_descriptor, or a test through poll(2)) waits for fd() to become readable, or
// writable when wants_write(), and calls on_readable / on_writable, and calls on_tick regularly
// (deadlines, reconnect backoff). The clock is passed in, so tests may inject time.
//
// Usage per batch: submit() each command (formatted as RESP into a fixed output buffer sized at
// construction), then flush() once: everything queued leaves in as few write(2) calls as the
// kernel allows (normally one). Replies complete operations strictly in submission order
// through the caller's Completion, called on the driving thread from on_readable, on_tick,
// on_writable / flush (a failed write fails what is in flight) and the destructor, never from
// submit; a Reply view is valid only during the callback. Callbacks may submit again.
//
// Errors are values (ClientErrc), never exceptions, per operation:
//   kQueueFull     submit: the output buffer or the in-flight ring is full (backpressure; the
//                  caller sheds load or answers by stand-in). Nothing was queued.
//   kDisconnected  submit while disconnected (fail fast; while a connect is in progress,
//                  operations are queued behind the SCRIPT LOADs), or an in-flight operation whose
//                  connection broke (EOF, socket error). The client reconnects by itself on
//                  later ticks with exponential backoff between min and max.
//   kTimeout       the operation's deadline passed (told by the first on_tick at or after it,
//                  so tick at least as often as the precision wanted). Its reply may still come:
//                  the slot stays, marked abandoned, and swallows that late reply (counted in
//                  stats().late_replies) so later operations still get their own replies. A
//                  late reply of a hold script may have placed a hold nobody answered for: the
//                  caller must reconcile (e.g. reverse by transaction key) on every kTimeout.
//   kServerError   Redis answered with an error reply; its text (e.g. "NOSCRIPT No matching
//                  script...") is passed to on_error and valid during the call. NOSCRIPT: the
//                  client loads every registered script first thing after every (re)connect,
//                  so a Redis restart alone never shows it; a SCRIPT FLUSH or a failover to a
//                  server without the script does. On NOSCRIPT the client queues SCRIPT LOAD of
//                  every registered script before calling on_error, so callers simply retry
//                  once (a retry submitted from on_error or later runs after the reload).
//                  Function libraries (load_library) likewise, on "ERR Function not found".
//   kProtocol      a reply could not be parsed, or did not fit the reply arena: the connection
//                  is closed (all in-flight fail with kDisconnected except the one that
//                  failed) and re-established.
//   kTooLarge      submit: one command is larger than the whole output buffer.
//
// Memory: every buffer (output buffer, in-flight ring, read buffer, reply arena, hiredis's
// reader buffer) is sized at construction. In steady state submit/flush/on_readable/on_tick do
// not allocate. Exception: hiredis 0.14's reader keeps its input in an sds string, which grows
// (realloc) only when a single reply plus unconsumed input exceeds its presized capacity
// (Options::reader_buffer_bytes); stats().reader_buffer_growths counts those. After a protocol
// error the reader's buffer is re-created (hiredis frees it on errors): that path allocates.
//
// Thread-safety: none. One client per shard thread, never shared; Completion callbacks run on
// that thread. Completions must outlive their operation (until on_reply/on_error is called, or
// the client is destroyed: the destructor fails pending operations with kDisconnected).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace authswitch::limits {

enum class ClientErrc : std::uint8_t {
  kQueueFull,
  kTimeout,
  kDisconnected,
  kProtocol,
  kServerError,
  kTooLarge,
};

[[nodiscard]] std::string_view to_string(ClientErrc e) noexcept;

// One reply, or one element of an array reply. A view into the client's reply arena, valid only
// during the completion callback.
struct Reply {
  enum class Type : std::uint8_t { kString, kArray, kInteger, kNil, kStatus, kError };
  Type type = Type::kNil;
  std::int64_t integer = 0;         // kInteger
  std::string_view str;             // kString, kStatus, kError
  std::span<const Reply> elements;  // kArray
};

// What the caller implements to learn an operation's outcome. Exactly one of the two is called
// once per accepted operation.
class Completion {
 public:
  virtual void on_reply(const Reply& reply) noexcept = 0;
  // `message` is the server's error text for kServerError, empty otherwise.
  virtual void on_error(ClientErrc errc, std::string_view message) noexcept = 0;

 protected:
  Completion() = default;
  Completion(const Completion&) = default;
  Completion& operator=(const Completion&) = default;
  virtual ~Completion() = default;
};

class RedisPipeline {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    std::string host = "127.0.0.1";  // numeric address or a name resolved once at construction
    std::uint16_t port = 6379;
    std::size_t output_buffer_bytes = 256 * 1024;
    std::size_t max_in_flight = 4096;  // rounded up to a power of two
    std::size_t read_chunk_bytes = 64 * 1024;
    std::size_t reader_buffer_bytes = 256 * 1024;  // presized hiredis reader input
    std::size_t reply_nodes = 1024;                // Reply elements of one reply, at most
    std::size_t reply_bytes = 64 * 1024;           // string bytes of one reply, at most
    Clock::duration connect_timeout = std::chrono::milliseconds(1000);
    Clock::duration backoff_min = std::chrono::milliseconds(10);
    Clock::duration backoff_max = std::chrono::milliseconds(1000);
    // When the oldest in-flight operation is this far past its deadline, Redis is considered
    // hung: the connection is closed and re-established.
    Clock::duration stall_timeout = std::chrono::seconds(5);
  };

  enum class State : std::uint8_t { kDisconnected, kConnecting, kConnected };

  struct Stats {
    std::uint64_t submitted = 0;
    std::uint64_t replies = 0;
    std::uint64_t late_replies = 0;  // replies of abandoned (timed-out) operations
    std::uint64_t writes = 0;        // write(2) calls that wrote something
    std::uint64_t flushes = 0;       // flush() calls that had data to write
    std::uint64_t reads = 0;
    std::uint64_t connects = 0;  // connections established
    std::uint64_t disconnects = 0;
    std::uint64_t script_loads = 0;  // SCRIPT (FUNCTION) LOAD replies that matched the sha (name)
    std::uint64_t script_mismatches = 0;
    std::uint64_t reader_buffer_growths = 0;  // hiredis sds buffer reallocations (malloc)
  };

  static constexpr std::size_t kMaxScripts = 16;
  static constexpr std::size_t kShaHexLen = 40;

  // Allocates every buffer; resolves the host. Does not connect: the first on_tick does.
  // Throws std::invalid_argument / std::runtime_error on bad options or an unknown host.
  explicit RedisPipeline(Options options);
  ~RedisPipeline();
  RedisPipeline(const RedisPipeline&) = delete;
  RedisPipeline& operator=(const RedisPipeline&) = delete;
  RedisPipeline(RedisPipeline&&) = delete;
  RedisPipeline& operator=(RedisPipeline&&) = delete;

  // The socket to wait on, or -1 while disconnected (then only on_tick matters). A reconnect
  // opens a new socket, so drivers re-register (e.g. re-assign the stream_descriptor) whenever
  // fd() changes. on_tick scans every in-flight slot for deadlines: call it every few ms.
  [[nodiscard]] int fd() const noexcept { return fd_; }
  // True while connecting or while queued bytes wait for the socket.
  [[nodiscard]] bool wants_write() const noexcept;
  [[nodiscard]] State state() const noexcept { return state_; }
  // Connected and every registered script answered its SCRIPT LOAD on this connection.
  [[nodiscard]] bool ready() const noexcept;
  [[nodiscard]] std::size_t in_flight() const noexcept {
    return static_cast<std::size_t>(tail_ - head_);
  }
  [[nodiscard]] const Stats& stats() const noexcept { return stats_; }
  [[nodiscard]] const Options& options() const noexcept { return options_; }

  void on_writable(Clock::time_point now) noexcept;
  void on_readable(Clock::time_point now) noexcept;
  void on_tick(Clock::time_point now) noexcept;

  // Queues one command (args[0] is the command name), formatted as RESP. Returns nullopt when
  // accepted: the completion is then called exactly once later. Otherwise returns the error
  // (kQueueFull, kDisconnected, kTooLarge): nothing was queued and nothing will be called.
  [[nodiscard]] std::optional<ClientErrc> submit(std::span<const std::string_view> args,
                                                 Completion& completion,
                                                 Clock::time_point deadline) noexcept;
  // The same, for a command whose arguments are `head` followed by `tail` (e.g. a HoldsCall
  // and the fraud rules' velocity arguments); both are copied into the output buffer before
  // this returns.
  [[nodiscard]] std::optional<ClientErrc> submit(std::span<const std::string_view> head,
                                                 std::span<const std::string_view> tail,
                                                 Completion& completion,
                                                 Clock::time_point deadline) noexcept;

  // Writes what is queued (one write(2) normally); what the socket does not take stays queued
  // and wants_write() says so.
  void flush() noexcept;

  // Registers a Lua script (the client keeps a copy of the text), returns its SHA1 (hex,
  // computed locally; owned by the client). SCRIPT LOAD is queued now if connected, and again
  // first thing after every (re)connect; Redis's answer is checked against the local sha.
  // Registering the same text again returns the same sha and adds nothing, so kMaxScripts
  // counts distinct scripts. Call at startup (throws std::length_error past kMaxScripts).
  std::string_view load_script(std::string_view text);
  // Registers a Redis function library the same way: FUNCTION LOAD REPLACE `text` on every
  // connect, before anything a caller submits; `library` is its name (what Redis answers when
  // the load went right) and `function` the function callers FCALL, returned (owned by the
  // client, valid until the library is released). An "ERR Function not found" reply (a FUNCTION
  // FLUSH, a failover to a server without it) queues the loads again, as NOSCRIPT does. The same
  // text registered again counts one more reference. Allocates: startup, or when a rule set
  // with other velocity definitions is adopted. Throws std::length_error past kMaxScripts
  // libraries and scripts registered at once, std::invalid_argument without a name.
  std::string_view load_library(std::string_view text, std::string_view library,
                                std::string_view function);
  // Drops one reference to the library whose function is `function`; at the last one it is no
  // longer loaded on connect, and once no pipeline of this process holds it (the other shards'),
  // FUNCTION DELETE is queued (now, or by a later tick or connect if the connection is down or
  // the queue full), so Redis does not keep every version reloads leave behind. Another switch
  // still calling it gets "ERR Function not found", loads it again and retries once. Unknown
  // names are ignored.
  void release_library(std::string_view function) noexcept;

 private:
  struct Slot;
  struct Script;
  struct Arena;
  class ReaderHolder;

  void start_connect(Clock::time_point now) noexcept;
  void on_connected() noexcept;
  void disconnect(Clock::time_point now) noexcept;
  void queue_script_loads(Clock::time_point now) noexcept;
  void queue_script_load(std::size_t index, Clock::time_point now) noexcept;
  void queue_deletes(Clock::time_point now) noexcept;
  std::size_t register_script(std::string_view text, std::string_view library,
                              std::string_view function);
  [[nodiscard]] std::optional<ClientErrc> enqueue(std::span<const std::string_view> head,
                                                  std::span<const std::string_view> tail,
                                                  Completion* c, Clock::time_point deadline,
                                                  int script) noexcept;
  bool parse_replies(Clock::time_point now) noexcept;

  Options options_;
  std::unique_ptr<unsigned char[]> address_;  // sockaddr storage
  unsigned address_len_ = 0;
  int family_ = 0;
  Clock::time_point last_now_{};

  int fd_ = -1;
  State state_ = State::kDisconnected;
  Clock::time_point next_attempt_ = Clock::time_point::min();
  Clock::time_point connect_deadline_{};
  Clock::duration backoff_{};

  std::unique_ptr<char[]> out_;
  std::size_t out_cap_ = 0;
  std::size_t out_head_ = 0;  // first byte not yet written
  std::size_t out_tail_ = 0;  // end of queued bytes

  std::unique_ptr<Slot[]> slots_;
  std::uint64_t slot_mask_ = 0;
  std::uint64_t head_ = 0;  // oldest in-flight operation
  std::uint64_t tail_ = 0;  // next free slot

  std::unique_ptr<char[]> read_buf_;
  std::unique_ptr<Arena> arena_;
  std::unique_ptr<ReaderHolder> reader_;

  std::unique_ptr<Script[]> scripts_;
  std::size_t script_count_ = 0;
  std::size_t scripts_pending_ = 0;  // SCRIPT LOADs in flight on this connection
  std::size_t deletes_pending_ = 0;  // released libraries whose FUNCTION DELETE is not queued

  Stats stats_;
};

// True for Redis's answer to a call of a script or function it does not have (NOSCRIPT, "ERR
// Function not found"): on it the pipeline loads its scripts and libraries again ahead of
// anything submitted later, so one retry of the call finds them.
[[nodiscard]] bool is_unknown_script_error(std::string_view error) noexcept;

}  // namespace authswitch::limits
