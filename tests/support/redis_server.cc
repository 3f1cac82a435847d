#include "tests/support/redis_server.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <ios>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace authswitch::support {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kReadyPollInterval{5};
constexpr std::chrono::milliseconds kStopPollInterval{2};
constexpr std::chrono::milliseconds kPingTimeout{250};
constexpr std::size_t kLogTailBytesMax = std::size_t{16} * 1024;
constexpr std::size_t kLogLinesInErrors = 20;
// What redis-server logs when it loses the race for its port to another process.
constexpr std::string_view kPortTakenMarker = "Address already in use";
constexpr std::string_view kLogFileName = "redis-server.log";

std::string errno_text(int err) { return std::generic_category().message(err); }

[[noreturn]] void throw_errno(const std::string& what, int err) {
  throw std::runtime_error(what + ": " + errno_text(err));
}

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) noexcept : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&&) = delete;
  Fd& operator=(Fd&&) = delete;

  [[nodiscard]] int get() const noexcept { return fd_; }
  void reset() noexcept {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_;
};

timeval to_timeval(std::chrono::milliseconds ms) noexcept {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

sockaddr_in loopback_address(std::uint16_t port) noexcept {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// A port the kernel just handed out as free on 127.0.0.1. It is free only until someone else
// binds it: launch() notices when redis-server loses that race and start() tries another.
std::uint16_t pick_free_port() {
  const Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.get() < 0) {
    throw_errno("socket", errno);
  }
  sockaddr_in addr = loopback_address(0);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw_errno("bind 127.0.0.1:0", errno);
  }
  socklen_t size = sizeof addr;
  if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&addr), &size) != 0) {
    throw_errno("getsockname", errno);
  }
  return ntohs(addr.sin_port);
}

std::string make_data_dir(const std::string& temp_root) {
  std::string root = temp_root;
  if (root.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");  // NOLINT(concurrency-mt-unsafe): tests
    root = (tmpdir != nullptr && *tmpdir != '\0') ? tmpdir : "/tmp";
  }
  std::string path = root + "/authswitch-redis-XXXXXX";
  if (::mkdtemp(path.data()) == nullptr) {
    throw_errno("mkdtemp " + path, errno);
  }
  return path;
}

std::string exit_text(int status) {
  if (WIFEXITED(status)) {
    return "exit status " + std::to_string(WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status));
  }
  return "wait status " + std::to_string(status);
}

// Reads the log from byte `offset` on, at most the last kLogTailBytesMax bytes of it.
std::string read_log(const std::string& path, std::size_t offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return {};
  }
  in.seekg(0, std::ios::end);
  const auto end = static_cast<std::size_t>(std::max<std::streamoff>(in.tellg(), 0));
  const std::size_t begin = std::max(offset, end > kLogTailBytesMax ? end - kLogTailBytesMax : 0);
  if (begin >= end) {
    return {};
  }
  in.seekg(static_cast<std::streamoff>(begin));
  std::string text(end - begin, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  return text;
}

std::string last_lines(std::string_view text, std::size_t lines_max) {
  while (!text.empty() && text.back() == '\n') {
    text.remove_suffix(1);
  }
  std::size_t begin = text.size();
  for (std::size_t lines = 0; begin > 0 && lines < lines_max;) {
    --begin;
    if (text[begin] == '\n' && ++lines == lines_max) {
      ++begin;
      break;
    }
  }
  return text.empty() ? std::string("(empty)") : std::string(text.substr(begin));
}

std::size_t file_size_or_zero(const std::string& path) noexcept {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<std::size_t>(size);
}

// sigaction rather than signal(): async-signal-safe and defined with threads.
void set_sigpipe(void (*handler)(int)) noexcept {
  struct sigaction action {};
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGPIPE, &action, nullptr);
}

// Makes `fd` the descriptor `target` in the child, without close-on-exec.
bool redirect(int fd, int target) noexcept {
  if (fd == target) {
    return ::fcntl(target, F_SETFD, 0) == 0;
  }
  return ::dup2(fd, target) == target;
}

// Runs in the forked child, so only async-signal-safe calls (fork(2) in a process that may
// have other threads). Reports a failure to exec through `exec_fd`, which the successful exec
// closes.
[[noreturn]] void exec_child(char* const* argv, int devnull_fd, int log_fd, int exec_fd,
                             pid_t parent) noexcept {
  // Dies with the thread that started it, whatever way the test process ends.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) {
    ::_exit(127);
  }
  sigset_t none;
  sigemptyset(&none);
  ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
  set_sigpipe(SIG_DFL);  // the test process ignores it; Redis sets its own
  if (redirect(devnull_fd, STDIN_FILENO) && redirect(log_fd, STDOUT_FILENO) &&
      redirect(log_fd, STDERR_FILENO)) {
    ::execv(argv[0], argv);
  }
  const int err = errno;
  [[maybe_unused]] const ssize_t written = ::write(exec_fd, &err, sizeof err);
  ::_exit(127);
}

}  // namespace

std::string default_redis_server_binary() { return AS_REDIS_SERVER_BINARY; }

RedisServer::RedisServer(RedisServerOptions options) : options_(std::move(options)) {
  // See the header: a write to a killed server must fail with EPIPE, not kill the test.
  set_sigpipe(SIG_IGN);
  data_dir_ = make_data_dir(options_.temp_root);
  log_path_ = data_dir_ + "/" + std::string(kLogFileName);
  try {
    start(/*fresh_port=*/true);
  } catch (...) {
    kill9();
    remove_data_dir();
    throw;
  }
}

RedisServer::~RedisServer() {
  stop();
  remove_data_dir();
}

bool RedisServer::running() noexcept {
  if (pid_ <= 0) {
    return false;
  }
  int status = 0;
  return !reap_if_exited(&status);
}

void RedisServer::stop() noexcept {
  if (pid_ <= 0) {
    return;
  }
  ::kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + options_.stop_timeout;
  int status = 0;
  while (Clock::now() < deadline) {
    if (reap_if_exited(&status)) {
      return;
    }
    std::this_thread::sleep_for(kStopPollInterval);
  }
  kill9();
}

void RedisServer::kill9() noexcept {
  if (pid_ <= 0) {
    return;
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

void RedisServer::restart() {
  stop();
  start(/*fresh_port=*/false);
}

std::string RedisServer::log_tail(std::size_t lines_max) const {
  return last_lines(read_log(log_path_, 0), lines_max);
}

RedisContextPtr RedisServer::connect(std::chrono::milliseconds timeout) const {
  const timeval tv = to_timeval(timeout);
  RedisContextPtr ctx(redisConnectWithTimeout(kHost, port_, tv));
  if (!ctx) {
    throw std::runtime_error("redis: cannot allocate a connection");
  }
  if (ctx->err != 0) {
    throw std::runtime_error(std::string("redis: cannot connect to ") + kHost + ":" +
                             std::to_string(port_) + ": " + ctx->errstr);
  }
  if (redisSetTimeout(ctx.get(), tv) != REDIS_OK) {
    throw std::runtime_error("redis: cannot set the connection's timeout");
  }
  return ctx;
}

void RedisServer::start(bool fresh_port) {
  const int attempts = fresh_port ? std::max(1, options_.port_attempts) : 1;
  for (int attempt = 1;; ++attempt) {
    if (fresh_port) {
      port_ = pick_free_port();
    }
    if (launch() == Launch::kReady) {
      return;
    }
    if (attempt >= attempts) {
      throw std::runtime_error(
          describe() + ": another process holds the port" +
          (attempts > 1 ? " (tried " + std::to_string(attempts) + " ports)" : std::string()) +
          "; last lines of its log:\n" + log_tail(kLogLinesInErrors));
    }
  }
}

RedisServer::Launch RedisServer::launch() {
  const std::size_t log_offset = file_size_or_zero(log_path_);
  spawn();
  return wait_until_ready(log_offset);
}

void RedisServer::spawn() {
  const std::string port_text = std::to_string(port_);
  const bool aof = options_.aof != AofMode::kOff;
  // No configuration file: only these settings and Redis's defaults apply.
  std::vector<std::string> args = {options_.binary};
  const auto set = [&args](std::string_view name, std::string_view value) {
    args.emplace_back(name);
    args.emplace_back(value);
  };
  set("--port", port_text);
  set("--bind", kHost);  // loopback only, never another interface
  set("--protected-mode", "yes");
  set("--dir", data_dir_);
  set("--daemonize", "no");  // stays our child, so we can signal and reap it
  set("--logfile", "");      // stdout, which goes to the log file
  set("--save", "");         // no RDB snapshots: only the AOF (when on) persists anything
  set("--appendonly", aof ? "yes" : "no");
  set("--appendfsync", options_.aof == AofMode::kAlways ? "always" : "everysec");
  set("--enable-debug-command", "local");  // DEBUG SLEEP lets tests simulate a slow Redis
  set("--always-show-logo", "no");
  set("--set-proc-title", "no");
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);

  const Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));  // NOLINT: POSIX varargs
  const Fd log_fd(::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,  // NOLINT
                         0600));
  if (devnull.get() < 0 || log_fd.get() < 0) {
    throw_errno("open " + log_path_ + " or /dev/null", errno);
  }
  std::array<int, 2> pipe_fds{-1, -1};
  if (::pipe2(pipe_fds.data(), O_CLOEXEC) != 0) {
    throw_errno("pipe2", errno);
  }
  const Fd exec_read(pipe_fds[0]);
  Fd exec_write(pipe_fds[1]);

  const pid_t parent = ::getpid();
  const pid_t child = ::fork();
  if (child < 0) {
    throw_errno("fork", errno);
  }
  if (child == 0) {
    exec_child(argv.data(), devnull.get(), log_fd.get(), exec_write.get(), parent);
  }
  exec_write.reset();
  int child_errno = 0;
  ssize_t n = 0;
  do {
    n = ::read(exec_read.get(), &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    throw std::runtime_error("cannot execute redis-server '" + options_.binary +
                             "': " + errno_text(child_errno));
  }
  pid_ = child;
}

RedisServer::Launch RedisServer::wait_until_ready(std::size_t log_offset) {
  const auto deadline = Clock::now() + options_.startup_timeout;
  for (;;) {
    int status = 0;
    if (reap_if_exited(&status)) {
      const std::string output = read_log(log_path_, log_offset);
      if (output.find(kPortTakenMarker) != std::string::npos) {
        return Launch::kPortTaken;
      }
      throw std::runtime_error(describe() + " exited during startup (" + exit_text(status) +
                               "); last lines of its output:\n" +
                               last_lines(output, kLogLinesInErrors));
    }
    if (answers_as_ours()) {
      return Launch::kReady;
    }
    if (Clock::now() >= deadline) {
      kill9();
      throw std::runtime_error(describe() + " did not answer PING within " +
                               std::to_string(options_.startup_timeout.count()) +
                               " ms; last lines of its output:\n" +
                               last_lines(read_log(log_path_, log_offset), kLogLinesInErrors));
    }
    std::this_thread::sleep_for(kReadyPollInterval);
  }
}

// PING answers PONG, and INFO names our process: another process's Redis that won the race
// for the port must not pass for ours.
bool RedisServer::answers_as_ours() const {
  const timeval tv = to_timeval(kPingTimeout);
  const RedisContextPtr ctx(redisConnectWithTimeout(kHost, port_, tv));
  if (!ctx || ctx->err != 0 || redisSetTimeout(ctx.get(), tv) != REDIS_OK) {
    return false;
  }
  const RedisReplyPtr pong(static_cast<redisReply*>(redisCommand(ctx.get(), "PING")));
  if (!pong || pong->type != REDIS_REPLY_STATUS ||
      std::string_view(pong->str, pong->len) != "PONG") {
    return false;  // not up yet, or still loading its AOF (-LOADING)
  }
  const RedisReplyPtr info(static_cast<redisReply*>(redisCommand(ctx.get(), "INFO server")));
  if (!info || info->type != REDIS_REPLY_STRING) {
    return false;
  }
  const std::string ours = "\nprocess_id:" + std::to_string(pid_) + "\r\n";
  return std::string_view(info->str, info->len).find(ours) != std::string_view::npos;
}

bool RedisServer::reap_if_exited(int* status) noexcept {
  const pid_t r = ::waitpid(pid_, status, WNOHANG);
  if (r == pid_ || (r < 0 && errno == ECHILD)) {
    pid_ = -1;
    return true;
  }
  return false;
}

std::string RedisServer::describe() const {
  return "redis-server '" + options_.binary + "' on " + kHost + ":" + std::to_string(port_) +
         " (data folder " + data_dir_ + ")";
}

void RedisServer::remove_data_dir() noexcept {
  if (data_dir_.empty()) {
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(data_dir_, ec);
}

RedisReplyPtr redis_command(redisContext& ctx, std::span<const std::string_view> args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const std::string_view a : args) {
    argv.push_back(a.data() != nullptr ? a.data() : "");
    lengths.push_back(a.size());
  }
  void* reply = redisCommandArgv(&ctx, static_cast<int>(argv.size()), argv.data(), lengths.data());
  if (reply == nullptr) {
    throw std::runtime_error(std::string("redis: ") +
                             (ctx.errstr[0] != '\0' ? ctx.errstr : "no reply"));
  }
  return RedisReplyPtr(static_cast<redisReply*>(reply));
}

RedisReplyPtr redis_command(redisContext& ctx, std::initializer_list<std::string_view> args) {
  return redis_command(ctx, std::span<const std::string_view>(args.begin(), args.size()));
}

RedisReplyPtr redis_command(redisContext& ctx, const std::vector<std::string>& args) {
  const std::vector<std::string_view> views(args.begin(), args.end());
  return redis_command(ctx, std::span<const std::string_view>(views));
}

RedisServer& shared_redis_server() {
  // Constructed on first use (thread-safe), destroyed at exit like any static.
  static RedisServer server;
  return server;
}

}  // namespace authswitch::support
