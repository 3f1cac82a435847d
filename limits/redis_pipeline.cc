#include "limits/redis_pipeline.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include <fcntl.h>
#include <hiredis/read.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

// hiredis 0.14 ships sds.h without extern "C"; the reader's input buffer is an sds string.
extern "C" {
#include <hiredis/sds.h>
}

#include "limits/hex_internal.h"

namespace authswitch::limits {

std::string_view to_string(ClientErrc e) noexcept {
  switch (e) {
    case ClientErrc::kQueueFull:
      return "queue full";
    case ClientErrc::kTimeout:
      return "timeout";
    case ClientErrc::kDisconnected:
      return "disconnected";
    case ClientErrc::kProtocol:
      return "protocol error";
    case ClientErrc::kServerError:
      return "server error";
    case ClientErrc::kTooLarge:
      return "command too large";
  }
  return "?";
}

namespace {
constexpr int kCallerOp = -1;  // Slot::script of an operation a caller submitted
constexpr int kNoAnswer = -2;  // of an internal command whose reply nobody waits for

// The function libraries the pipelines of this process have registered, by name, with how many
// pipelines hold each: a library is deleted from Redis only when the last one releases it (the
// shards of a switch share one Redis through a pipeline each). Locked at registration and
// release only, never per operation.
struct LibraryUsers {
  std::mutex mutex;
  std::unordered_map<std::string, std::size_t> count;
};

LibraryUsers& library_users() {
  static LibraryUsers users;
  return users;
}

void use_library(const std::string& library) {
  LibraryUsers& u = library_users();
  const std::lock_guard lock(u.mutex);
  ++u.count[library];
}

// True when no pipeline of the process holds `library` any more.
bool unuse_library(const std::string& library) noexcept {
  LibraryUsers& u = library_users();
  const std::lock_guard lock(u.mutex);
  const auto it = u.count.find(library);
  if (it == u.count.end() || --it->second == 0) {
    if (it != u.count.end()) {
      u.count.erase(it);
    }
    return true;
  }
  return false;
}

bool library_in_use(const std::string& library) noexcept {
  LibraryUsers& u = library_users();
  const std::lock_guard lock(u.mutex);
  return u.count.contains(library);
}

}  // namespace

struct RedisPipeline::Slot {
  Completion* completion = nullptr;
  Clock::time_point deadline{};
  int script = kCallerOp;  // >= 0: an internal SCRIPT LOAD (FUNCTION LOAD) of scripts_[script]
  std::uint32_t script_use = 0;  // ... made for that entry's use number `script_use`
  bool abandoned = false;
};

// A registered script or library; copies of the caller's texts. refs == 0: free, unless
// `deleting` (a released library whose FUNCTION DELETE has not been queued yet).
struct RedisPipeline::Script {
  std::string text;
  std::array<char, kShaHexLen> sha{};  // a script's
  std::string library;                 // a function library's name (what FUNCTION LOAD answers)
  std::string function;                // and the function callers name
  std::size_t refs = 0;
  bool deleting = false;
  std::uint32_t use = 0;  // +1 each time the entry is taken: a load reply of an earlier use is not
                          // this one's

  // What loads it, and what Redis answers when that went right.
  [[nodiscard]] std::array<std::string_view, 4> load_args() const noexcept {
    if (library.empty()) {
      return {"SCRIPT", "LOAD", text, {}};
    }
    return {"FUNCTION", "LOAD", "REPLACE", text};
  }
  [[nodiscard]] std::string_view expected() const noexcept {
    return library.empty() ? std::string_view(sha.data(), sha.size()) : library;
  }
};

// Replies are built by hiredis's reader through these functions into fixed arrays: nodes for
// Reply values (an array's children are contiguous) and bytes for strings (copied, because the
// reader compacts its buffer). Reset after each top-level reply has been delivered.
struct RedisPipeline::Arena {
  std::unique_ptr<Reply[]> nodes;
  std::size_t node_cap = 0;
  std::size_t node_used = 0;
  std::unique_ptr<char[]> bytes;
  std::size_t byte_cap = 0;
  std::size_t byte_used = 0;

  void reset() noexcept {
    node_used = 0;
    byte_used = 0;
  }

  Reply* take_nodes(std::size_t n) noexcept {
    if (node_cap - node_used < n) {
      return nullptr;
    }
    Reply* r = &nodes[node_used];
    node_used += n;
    return r;
  }

  // The node a task's value goes to: a child slot of its parent array, or a new root node.
  static Reply* node_for(const redisReadTask* task) noexcept {
    auto* arena = static_cast<Arena*>(task->privdata);
    if (task->parent != nullptr) {
      const auto* parent = static_cast<const Reply*>(task->parent->obj);
      const auto idx = static_cast<std::size_t>(task->idx);
      return const_cast<Reply*>(&parent->elements[idx]);  // NOLINT: the arena owns it mutable
    }
    return arena->take_nodes(1);
  }

  static void* create_string(const redisReadTask* task, char* str, size_t len) noexcept {
    auto* arena = static_cast<Arena*>(task->privdata);
    if (arena->byte_cap - arena->byte_used < len) {
      return nullptr;
    }
    Reply* node = node_for(task);
    if (node == nullptr) {
      return nullptr;
    }
    char* dst = &arena->bytes[arena->byte_used];
    if (len > 0) {
      std::memcpy(dst, str, len);
    }
    arena->byte_used += len;
    *node = Reply{};
    node->type = task->type == REDIS_REPLY_ERROR    ? Reply::Type::kError
                 : task->type == REDIS_REPLY_STATUS ? Reply::Type::kStatus
                                                    : Reply::Type::kString;
    node->str = std::string_view(dst, len);
    return node;
  }

  static void* create_array(const redisReadTask* task, int elements) noexcept {
    auto* arena = static_cast<Arena*>(task->privdata);
    Reply* node = node_for(task);
    if (node == nullptr || elements < 0) {
      return nullptr;
    }
    const auto n = static_cast<std::size_t>(elements);
    Reply* children = arena->take_nodes(n);
    if (children == nullptr) {
      return nullptr;
    }
    std::fill_n(children, n, Reply{});
    *node = Reply{};
    node->type = Reply::Type::kArray;
    node->elements = std::span<const Reply>(children, n);
    return node;
  }

  static void* create_integer(const redisReadTask* task, long long value) noexcept {
    Reply* node = node_for(task);
    if (node == nullptr) {
      return nullptr;
    }
    *node = Reply{};
    node->type = Reply::Type::kInteger;
    node->integer = value;
    return node;
  }

  static void* create_nil(const redisReadTask* task) noexcept {
    Reply* node = node_for(task);
    if (node == nullptr) {
      return nullptr;
    }
    *node = Reply{};
    return node;
  }

  static void free_object(void* /*obj*/) noexcept {}  // the arena is reset instead
};

// Owns hiredis's reader; resets it in place (no allocation) after a disconnect.
class RedisPipeline::ReaderHolder {
 public:
  ReaderHolder(Arena* arena, std::size_t presize) : presize_(presize) {
    static redisReplyObjectFunctions functions = {&Arena::create_string, &Arena::create_array,
                                                  &Arena::create_integer, &Arena::create_nil,
                                                  &Arena::free_object};
    reader_ = redisReaderCreateWithFunctions(&functions);
    if (reader_ == nullptr) {
      throw std::bad_alloc();
    }
    reader_->maxbuf = 0;  // never free the buffer when idle (it would be re-allocated)
    reader_->buf = sdsMakeRoomFor(reader_->buf, presize);
    if (reader_->buf == nullptr) {
      redisReaderFree(reader_);
      throw std::bad_alloc();
    }
    reader_->privdata = arena;
  }
  ~ReaderHolder() { redisReaderFree(reader_); }
  ReaderHolder(const ReaderHolder&) = delete;
  ReaderHolder& operator=(const ReaderHolder&) = delete;

  [[nodiscard]] redisReader* get() const noexcept { return reader_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return sdsalloc(reader_->buf); }

  // After a parse error hiredis has freed its buffer (error path only: this allocates).
  void reset() noexcept {
    if (reader_->buf == nullptr) {
      reader_->buf = sdsempty();
      if (reader_->buf != nullptr) {
        reader_->buf = sdsMakeRoomFor(reader_->buf, presize_);
      }
      if (reader_->buf == nullptr) {
        std::abort();  // out of memory while reconnecting
      }
    }
    sdsclear(reader_->buf);
    reader_->pos = 0;
    reader_->len = 0;
    reader_->err = 0;
    reader_->errstr[0] = '\0';
    reader_->ridx = -1;
    reader_->reply = nullptr;
  }

 private:
  redisReader* reader_ = nullptr;
  std::size_t presize_ = 0;
};

namespace {

std::size_t digits(std::size_t v) noexcept {
  std::size_t d = 1;
  while (v >= 10) {
    v /= 10;
    ++d;
  }
  return d;
}

std::size_t round_up_pow2(std::size_t v) noexcept {
  std::size_t p = 1;
  while (p < v) {
    p <<= 1U;
  }
  return p;
}

char* put_header(char* p, char kind, std::size_t n) noexcept {
  *p++ = kind;
  p = std::to_chars(p, p + 20, n).ptr;
  *p++ = '\r';
  *p++ = '\n';
  return p;
}

}  // namespace

RedisPipeline::RedisPipeline(Options options) : options_(std::move(options)) {
  if (options_.output_buffer_bytes < 64 || options_.max_in_flight == 0 ||
      options_.read_chunk_bytes == 0 || options_.reply_nodes == 0 ||
      options_.backoff_min <= Clock::duration::zero() ||
      options_.backoff_max < options_.backoff_min) {
    throw std::invalid_argument("RedisPipeline: bad options");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(options_.port);
  const int rc = getaddrinfo(options_.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    throw std::runtime_error("RedisPipeline: cannot resolve " + options_.host + ": " +
                             gai_strerror(rc));
  }
  address_ = std::make_unique<unsigned char[]>(sizeof(sockaddr_storage));
  address_len_ = static_cast<unsigned>(found->ai_addrlen);
  std::memcpy(address_.get(), found->ai_addr, found->ai_addrlen);
  family_ = found->ai_family;
  freeaddrinfo(found);

  out_cap_ = options_.output_buffer_bytes;
  out_ = std::make_unique<char[]>(out_cap_);
  const std::size_t slots = round_up_pow2(options_.max_in_flight);
  slots_ = std::make_unique<Slot[]>(slots);
  slot_mask_ = slots - 1;
  read_buf_ = std::make_unique<char[]>(options_.read_chunk_bytes);
  arena_ = std::make_unique<Arena>();
  arena_->node_cap = options_.reply_nodes;
  arena_->nodes = std::make_unique<Reply[]>(arena_->node_cap);
  arena_->byte_cap = options_.reply_bytes;
  arena_->bytes = std::make_unique<char[]>(std::max<std::size_t>(arena_->byte_cap, 1));
  reader_ = std::make_unique<ReaderHolder>(arena_.get(), options_.reader_buffer_bytes);
  scripts_ = std::make_unique<Script[]>(kMaxScripts);
  backoff_ = options_.backoff_min;
}

RedisPipeline::~RedisPipeline() {
  // What this pipeline holds no longer counts for the process (nothing is deleted from Redis:
  // a switch stopping leaves its libraries to the next one with the same rules).
  for (std::size_t i = 0; i < script_count_; ++i) {
    if (scripts_[i].refs > 0 && !scripts_[i].library.empty()) {
      (void)unuse_library(scripts_[i].library);
    }
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  state_ = State::kDisconnected;
  while (head_ != tail_) {
    Slot& s = slots_[head_ & slot_mask_];
    ++head_;
    if (s.script == kCallerOp && !s.abandoned && s.completion != nullptr) {
      s.completion->on_error(ClientErrc::kDisconnected, {});
    }
  }
}

bool RedisPipeline::wants_write() const noexcept {
  return state_ == State::kConnecting || (state_ == State::kConnected && out_head_ != out_tail_);
}

bool RedisPipeline::ready() const noexcept {
  return state_ == State::kConnected && scripts_pending_ == 0;
}

void RedisPipeline::start_connect(Clock::time_point now) noexcept {
  fd_ = ::socket(family_, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    disconnect(now);
    return;
  }
  const int one = 1;
  (void)::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  state_ = State::kConnecting;
  connect_deadline_ = now + options_.connect_timeout;
  // Scripts first, before anything a caller submits on this connection.
  queue_script_loads(now);
  const int rc = ::connect(fd_, reinterpret_cast<const sockaddr*>(address_.get()), address_len_);
  if (rc == 0) {
    on_connected();
  } else if (errno != EINPROGRESS && errno != EINTR) {
    disconnect(now);
  }
}

void RedisPipeline::on_connected() noexcept {
  state_ = State::kConnected;
  backoff_ = options_.backoff_min;
  ++stats_.connects;
}

void RedisPipeline::disconnect(Clock::time_point now) noexcept {
  const bool was_open = fd_ >= 0;
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (was_open && state_ == State::kConnected) {
    ++stats_.disconnects;
  }
  state_ = State::kDisconnected;
  next_attempt_ = now + backoff_;
  backoff_ = std::min(backoff_ * 2, options_.backoff_max);
  out_head_ = 0;
  out_tail_ = 0;
  scripts_pending_ = 0;
  reader_->reset();
  arena_->reset();
  // Completions may submit again: state_ already says disconnected, so that fails fast.
  while (head_ != tail_) {
    Slot& s = slots_[head_ & slot_mask_];
    ++head_;
    if (s.script == kCallerOp && !s.abandoned) {
      s.completion->on_error(ClientErrc::kDisconnected, {});
    }
  }
}

void RedisPipeline::queue_script_loads(Clock::time_point now) noexcept {
  scripts_pending_ = 0;
  for (std::size_t i = 0; i < script_count_; ++i) {
    if (scripts_[i].refs > 0) {
      queue_script_load(i, now);
    }
  }
  queue_deletes(now);
}

void RedisPipeline::queue_script_load(std::size_t i, Clock::time_point now) noexcept {
  const auto args = scripts_[i].load_args();
  const std::size_t n = args[3].empty() ? 3 : 4;
  if (!enqueue(std::span(args.data(), n), {}, nullptr, now + options_.connect_timeout,
               static_cast<int>(i))) {
    ++scripts_pending_;
  }
}

std::optional<ClientErrc> RedisPipeline::submit(std::span<const std::string_view> args,
                                                Completion& completion,
                                                Clock::time_point deadline) noexcept {
  return submit(args, {}, completion, deadline);
}

std::optional<ClientErrc> RedisPipeline::submit(std::span<const std::string_view> head,
                                                std::span<const std::string_view> tail,
                                                Completion& completion,
                                                Clock::time_point deadline) noexcept {
  if (state_ == State::kDisconnected) {
    return ClientErrc::kDisconnected;
  }
  auto r = enqueue(head, tail, &completion, deadline, -1);
  if (!r) {
    ++stats_.submitted;
  }
  return r;
}

std::optional<ClientErrc> RedisPipeline::enqueue(std::span<const std::string_view> head,
                                                 std::span<const std::string_view> tail,
                                                 Completion* c, Clock::time_point deadline,
                                                 int script) noexcept {
  if (tail_ - head_ > slot_mask_) {
    return ClientErrc::kQueueFull;
  }
  const std::size_t count = head.size() + tail.size();
  std::size_t size = 3 + digits(count);
  for (const auto part : {head, tail}) {
    for (const std::string_view a : part) {
      size += 5 + digits(a.size()) + a.size();
    }
  }
  if (size > out_cap_) {
    return ClientErrc::kTooLarge;
  }
  if (out_cap_ - out_tail_ < size && out_head_ > 0) {
    std::memmove(out_.get(), out_.get() + out_head_, out_tail_ - out_head_);
    out_tail_ -= out_head_;
    out_head_ = 0;
  }
  if (out_cap_ - out_tail_ < size) {
    return ClientErrc::kQueueFull;
  }
  char* p = out_.get() + out_tail_;
  p = put_header(p, '*', count);
  for (const auto part : {head, tail}) {
    for (const std::string_view a : part) {
      p = put_header(p, '$', a.size());
      if (!a.empty()) {
        std::memcpy(p, a.data(), a.size());
      }
      p += a.size();
      *p++ = '\r';
      *p++ = '\n';
    }
  }
  out_tail_ = static_cast<std::size_t>(p - out_.get());
  Slot& s = slots_[tail_ & slot_mask_];
  s.completion = c;
  s.deadline = deadline;
  s.script = script;
  s.script_use = script >= 0 ? scripts_[static_cast<std::size_t>(script)].use : 0;
  s.abandoned = false;
  ++tail_;
  return std::nullopt;
}

void RedisPipeline::flush() noexcept {
  if (state_ != State::kConnected || out_head_ == out_tail_) {
    return;
  }
  ++stats_.flushes;
  while (out_head_ != out_tail_) {
    const ssize_t n =
        ::send(fd_, out_.get() + out_head_, out_tail_ - out_head_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      ++stats_.writes;
      out_head_ += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    } else {
      disconnect(last_now_);
      return;
    }
  }
  out_head_ = 0;
  out_tail_ = 0;
}

void RedisPipeline::on_writable(Clock::time_point now) noexcept {
  last_now_ = now;
  if (state_ == State::kConnecting) {
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      disconnect(now);
      return;
    }
    on_connected();
  }
  flush();
}

void RedisPipeline::on_readable(Clock::time_point now) noexcept {
  last_now_ = now;
  if (state_ == State::kConnecting) {
    on_writable(now);  // an error (or a completed connect) shows as readable too
    return;
  }
  if (state_ != State::kConnected) {
    return;
  }
  redisReader* r = reader_->get();
  for (;;) {
    const ssize_t n = ::read(fd_, read_buf_.get(), options_.read_chunk_bytes);
    if (n > 0) {
      ++stats_.reads;
      const char* before = r->buf;
      const std::size_t cap_before = reader_->capacity();
      if (redisReaderFeed(r, read_buf_.get(), static_cast<std::size_t>(n)) != REDIS_OK) {
        disconnect(now);
        return;
      }
      if (r->buf != before || reader_->capacity() != cap_before) {
        ++stats_.reader_buffer_growths;
      }
      if (!parse_replies(now)) {
        return;  // disconnected
      }
      if (static_cast<std::size_t>(n) < options_.read_chunk_bytes) {
        return;  // drained (level-triggered callers come back if more arrived)
      }
    } else if (n == 0) {
      disconnect(now);  // EOF
      return;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;
    } else {
      disconnect(now);
      return;
    }
  }
}

bool RedisPipeline::parse_replies(Clock::time_point now) noexcept {
  redisReader* r = reader_->get();
  for (;;) {
    void* obj = nullptr;
    if (redisReaderGetReply(r, &obj) != REDIS_OK) {
      // Unparsable input, or a reply larger than the arena: the stream cannot be resynced.
      if (head_ != tail_) {
        Slot& s = slots_[head_ & slot_mask_];
        ++head_;
        if (s.script == kCallerOp && !s.abandoned) {
          s.completion->on_error(ClientErrc::kProtocol, {});
        }
      }
      disconnect(now);
      return false;
    }
    if (obj == nullptr) {
      return true;
    }
    if (head_ == tail_) {
      disconnect(now);  // a reply nobody asked for
      return false;
    }
    Slot& s = slots_[head_ & slot_mask_];
    ++head_;
    const Reply& reply = *static_cast<const Reply*>(obj);
    if (s.script >= 0) {
      const Script& loaded = scripts_[static_cast<std::size_t>(s.script)];
      if (loaded.use != s.script_use) {
        // The entry was released (and perhaps taken again) while this load was in flight.
      } else if (reply.type == Reply::Type::kString && reply.str == loaded.expected()) {
        ++stats_.script_loads;
      } else {
        ++stats_.script_mismatches;
      }
      if (scripts_pending_ > 0) {
        --scripts_pending_;
      }
    } else if (s.script == kNoAnswer) {
      // FUNCTION DELETE of a released library: "ERR Library not found" is as good as "OK".
    } else if (s.abandoned) {
      ++stats_.late_replies;
    } else {
      ++stats_.replies;
      if (reply.type == Reply::Type::kError) {
        if (is_unknown_script_error(reply.str) && scripts_pending_ == 0) {
          // Ahead of the caller's retry (SCRIPT FLUSH, FUNCTION FLUSH, a failover).
          queue_script_loads(now);
        }
        s.completion->on_error(ClientErrc::kServerError, reply.str);
      } else {
        s.completion->on_reply(reply);
      }
    }
    arena_->reset();
    if (state_ != State::kConnected) {
      return false;
    }
  }
}

void RedisPipeline::on_tick(Clock::time_point now) noexcept {
  last_now_ = now;
  if (state_ == State::kDisconnected) {
    if (now >= next_attempt_) {
      start_connect(now);
    }
    return;
  }
  if (state_ == State::kConnecting && now >= connect_deadline_) {
    disconnect(now);
    return;
  }
  for (std::uint64_t i = head_; i != tail_; ++i) {
    Slot& s = slots_[i & slot_mask_];
    if (s.script == kCallerOp && !s.abandoned && s.deadline <= now) {
      s.abandoned = true;
      s.completion->on_error(ClientErrc::kTimeout, {});
    }
  }
  if (head_ != tail_ && slots_[head_ & slot_mask_].deadline + options_.stall_timeout <= now) {
    disconnect(now);  // Redis hung: start afresh
    return;
  }
  if (deletes_pending_ > 0) {
    queue_deletes(now);
  }
}

// FUNCTION DELETE of every released library still waiting for it (its release found the
// connection down or the queue full), unless a pipeline of the process registered it again.
void RedisPipeline::queue_deletes(Clock::time_point now) noexcept {
  for (std::size_t i = 0; i < script_count_ && deletes_pending_ > 0; ++i) {
    Script& s = scripts_[i];
    if (!s.deleting) {
      continue;
    }
    if (!library_in_use(s.library)) {
      const std::array<std::string_view, 3> args{"FUNCTION", "DELETE", s.library};
      if (enqueue(args, {}, nullptr, now + options_.connect_timeout, kNoAnswer)) {
        return;  // the queue is full: the next tick tries again
      }
    }
    s.deleting = false;
    s.library.clear();
    --deletes_pending_;
  }
}

std::string_view RedisPipeline::load_script(std::string_view text) {
  const Script& s = scripts_[register_script(text, {}, {})];
  return {s.sha.data(), s.sha.size()};
}

bool is_unknown_script_error(std::string_view error) noexcept {
  return error.starts_with("NOSCRIPT") || error.starts_with("ERR Function not found");
}

std::string_view RedisPipeline::load_library(std::string_view text, std::string_view library,
                                             std::string_view function) {
  if (library.empty() || function.empty()) {
    throw std::invalid_argument(
        "RedisPipeline::load_library: a library needs a name and a function");
  }
  return scripts_[register_script(text, library, function)].function;
}

// The same text registered again (every processor, the sweeper and the reconciler of a shard
// register the holds library): one entry, one load per connect, one more reference. Returns its
// index.
std::size_t RedisPipeline::register_script(std::string_view text, std::string_view library,
                                           std::string_view function) {
  std::size_t free = script_count_;
  for (std::size_t i = 0; i < script_count_; ++i) {
    Script& s = scripts_[i];
    if (s.refs > 0 && s.text == text) {
      ++s.refs;
      return i;
    }
    if (s.deleting && !library.empty() && s.library == library) {
      // Released, its delete not sent yet, and wanted again (a reload back to a rule set).
      s.deleting = false;
      --deletes_pending_;
      s.library.clear();
      free = std::min(free, i);
    } else if (s.refs == 0 && !s.deleting) {
      free = std::min(free, i);
    }
  }
  if (free == kMaxScripts) {
    throw std::length_error("RedisPipeline: more than kMaxScripts scripts and libraries");
  }
  Script& s = scripts_[free];
  s.text = text;
  s.sha = internal::sha1_hex(text);
  s.library = library;
  s.function = function;
  if (!s.library.empty()) {
    use_library(s.library);
  }
  s.refs = 1;
  ++s.use;
  script_count_ = std::max(script_count_, free + 1);
  if (state_ != State::kDisconnected) {
    queue_script_load(free, last_now_);
  }
  return free;
}

void RedisPipeline::release_library(std::string_view function) noexcept {
  for (std::size_t i = 0; i < script_count_; ++i) {
    Script& s = scripts_[i];
    if (s.refs == 0 || s.library.empty() || s.function != function) {
      continue;
    }
    if (--s.refs > 0) {
      return;
    }
    ++s.use;
    s.text.clear();
    s.function.clear();
    if (unuse_library(s.library)) {
      s.deleting = true;  // the library's name stays until its FUNCTION DELETE is queued
      ++deletes_pending_;
      if (state_ == State::kConnected) {
        queue_deletes(last_now_);
      }
    } else {
      s.library.clear();  // another pipeline of the process still calls it
    }
    return;
  }
}

}  // namespace authswitch::limits
