// paced_floor: Redis's own latency at a fixed offered rate, the floor beside the end-to-end
// benchmark's fixed-rate runs (issue 5, bench/e2e/run). It sends the holds library's auth, built
// by the switch's own code (limits::HoldsCall; the shipped rule set's library and velocity
// arguments, bench/limits/shipped_velocity.h), to a redis-server, open loop: call i is written
// when it is due (start + i / rate), whatever is still unanswered, and its latency counts from
// that due time, as netsim counts the switch's. A stall of Redis or of its disk (an fsync with
// appendfsync always) therefore counts in full, with the queue it leaves behind. Nothing but
// this client and Redis is involved: it is Redis's own latency at that rate, the reference for
// the switch's (itself a noisy measurement on a shared VM: one run is not a bound).
//
// It seeds --accounts accounts, one active card each (the keys the switch would use:
// limits::AccountKeys), loads the library, runs --warmup seconds unmeasured, then --seconds
// measured, and prints one JSON object:
//   {"rate":R,"seconds":S,"connections":C,"sent":N,"answered":N,"approved":N,"errors":N,
//    "p50_us":..,"p99_us":..,"p999_us":..,"max_us":..}
// (errors: error replies and replies that are not the script's array). It exits 1, after the
// JSON, unless every measured call was answered and approved: only then is it the switch's work.
// Usage: paced_floor --port P --rate R [--seconds S] [--warmup S] [--connections C]
//                    [--accounts K] [--rules FILE | --no-velocity]
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <deque>
#include <exception>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>

#include "bench/limits/shipped_velocity.h"
#include "limits/holds_script.h"
#include "simulators/stats/histogram.h"
#include "tests/support/sample_auth.h"

namespace {

namespace limits = authswitch::limits;
using Clock = std::chrono::steady_clock;

struct Options {
  int port = 0;
  double rate = 0;
  double seconds = 10;
  double warmup = 1;
  int connections = 1;
  int accounts = 100000;
  std::string rules = std::string(AS_SOURCE_DIR) + "/config/rules.toml";
  bool no_velocity = false;
};

struct ContextFree {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextFree>;

struct ReplyFree {
  void operator()(void* r) const noexcept { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

Context connect(int port) {
  Context c(redisConnect("127.0.0.1", port));
  if (!c || c->err != 0) {
    throw std::runtime_error("cannot connect to 127.0.0.1:" + std::to_string(port) + ": " +
                             (c ? c->errstr : "out of memory"));
  }
  return c;
}

// Appends one command made of `args` to c's output buffer.
void append(redisContext& c, const std::vector<std::string_view>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const std::string_view a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  if (redisAppendCommandArgv(&c, static_cast<int>(args.size()), argv.data(), lens.data()) !=
      REDIS_OK) {
    throw std::runtime_error(std::string("cannot queue a command: ") + c.errstr);
  }
}

// The next reply on blocking context c; throws on an error reply.
Reply expect_reply(redisContext& c, const char* what) {
  void* raw = nullptr;
  if (redisGetReply(&c, &raw) != REDIS_OK) {
    throw std::runtime_error(std::string(what) + ": " + c.errstr);
  }
  Reply r(static_cast<redisReply*>(raw));
  if (r->type == REDIS_REPLY_ERROR) {
    throw std::runtime_error(std::string(what) + ": " + std::string(r->str, r->len));
  }
  return r;
}

std::string account_id(int i) { return "pf" + std::to_string(i); }
std::string card_token(int i) { return "pftok" + std::to_string(i); }

// Loads the library and seeds the accounts and cards, pipelined in runs of 1,000.
void prepare(redisContext& c, const limits::FunctionLibrary& library, int accounts) {
  append(c, {"FUNCTION", "LOAD", "REPLACE", library.text});
  expect_reply(c, "FUNCTION LOAD");
  limits::AccountKeys keys;
  for (int first = 0; first < accounts; first += 1000) {
    const int last = std::min(accounts, first + 1000);
    for (int i = first; i < last; ++i) {
      const std::string id = account_id(i);
      const std::string token = card_token(i);
      if (!keys.set(id, token, "seed")) {
        throw std::runtime_error("invalid account id " + id);
      }
      append(c, {"HSET", keys.key(limits::AccountKeys::kAccount), "cur", "840", "bal",
                 "900000000000000", "held", "0", "st", "active", "od", "0"});
      append(c, {"HSET", keys.key(limits::AccountKeys::kCard), "st", "active", "exp", "2812"});
    }
    for (int i = first; i < last; ++i) {
      expect_reply(c, "seeding an account");
      expect_reply(c, "seeding a card");
    }
  }
}

struct Connection {
  Context ctx;
  std::deque<std::int64_t> due_ns;  // the due time of each unanswered call, in sending order
};

struct Counts {
  std::uint64_t sent = 0;
  std::uint64_t answered = 0;
  std::uint64_t approved = 0;
  std::uint64_t errors = 0;
};

// Sets c non-blocking (hiredis then reads and writes what the socket takes).
void non_blocking(redisContext& c) {
  const int flags = ::fcntl(c.fd, F_GETFL);
  if (flags < 0 || ::fcntl(c.fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    throw std::runtime_error("cannot make the Redis connection non-blocking");
  }
  c.flags &= ~REDIS_BLOCK;
}

bool approved(const redisReply& r) {
  if (r.type != REDIS_REPLY_ARRAY || r.elements < 1 || r.element[0]->type != REDIS_REPLY_STRING) {
    return false;
  }
  const std::string_view rc(r.element[0]->str, r.element[0]->len);
  return rc == "00" || rc == "10";
}

class Driver {
 public:
  Driver(const Options& o, const limits::FunctionLibrary& library,
         std::span<const std::string_view> velocity)
      : o_(o), function_(library.function), velocity_(velocity.begin(), velocity.end()) {
    for (int i = 0; i < o.connections; ++i) {
      conns_.push_back(Connection{connect(o.port), {}});
      non_blocking(*conns_.back().ctx);
    }
  }

  // Runs `calls` calls at the rate from now; records latencies only when `h` is given.
  Counts run(std::uint64_t calls, authswitch::netsim::LatencyHistogram* h) {
    Counts n;
    const std::int64_t start = now_ns();
    // Call i is due at start + i / rate (rounded to the ns, not accumulated).
    const auto due = [&](std::uint64_t i) {
      return start + std::llround(static_cast<double>(i) * 1e9 / o_.rate);
    };
    const std::int64_t give_up = due(calls) + std::int64_t{30'000'000'000};
    std::vector<pollfd> fds(conns_.size());
    while (n.answered + n.errors < calls) {
      std::int64_t now = now_ns();
      if (now > give_up) {
        break;
      }
      while (n.sent < calls && due(n.sent) <= now) {
        send(conns_[n.sent % conns_.size()], due(n.sent));
        ++n.sent;
      }
      for (std::size_t i = 0; i < conns_.size(); ++i) {
        int done = 1;
        if (conns_[i].ctx->obuf != nullptr && sdslen(conns_[i].ctx->obuf) > 0 &&
            redisBufferWrite(conns_[i].ctx.get(), &done) != REDIS_OK) {
          throw std::runtime_error(std::string("write to Redis: ") + conns_[i].ctx->errstr);
        }
        fds[i] = {conns_[i].ctx->fd, static_cast<short>(POLLIN | (done != 0 ? 0 : POLLOUT)), 0};
      }
      now = now_ns();
      std::int64_t wait_ns = 100'000'000;
      if (n.sent < calls) {
        wait_ns = std::max<std::int64_t>(0, due(n.sent) - now);
      }
      const timespec ts{static_cast<time_t>(wait_ns / 1'000'000'000),
                        static_cast<long>(wait_ns % 1'000'000'000)};
      if (::ppoll(fds.data(), fds.size(), &ts, nullptr) < 0 && errno != EINTR) {
        throw std::runtime_error("ppoll failed");
      }
      for (std::size_t i = 0; i < conns_.size(); ++i) {
        if ((fds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
          receive(conns_[i], h, n);
        }
      }
    }
    return n;
  }

 private:
  static std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
  }

  // Writes one auth, on a pseudo-random account, due at `due`; the issuer's clock moves with
  // the due times, so the velocity counters' windows move as a switch's would.
  void send(Connection& c, std::int64_t due) {
    next_account_ = next_account_ * 6364136223846793005ULL + 1442695040888963407ULL;
    const auto account =
        static_cast<int>((next_account_ >> 33) % static_cast<std::uint64_t>(o_.accounts));
    id_ = account_id(account);
    token_ = card_token(account);
    txn_ = "pf" + std::to_string(++txn_count_);
    request_.txn_key = txn_;
    const std::int64_t now_ms = 1'700'000'000'000 + (due - epoch_ns_) / 1'000'000;
    if (!call_.set_auth(function_, "auth", id_, token_, request_, now_ms, 86'400'000, "pf")) {
      throw std::runtime_error("cannot build the holds call");
    }
    args_.assign(call_.args().begin(), call_.args().end());
    args_.insert(args_.end(), velocity_.begin(), velocity_.end());
    append(*c.ctx, args_);
    c.due_ns.push_back(due);
  }

  void receive(Connection& c, authswitch::netsim::LatencyHistogram* h, Counts& n) {
    if (redisBufferRead(c.ctx.get()) != REDIS_OK) {
      throw std::runtime_error(std::string("read from Redis: ") + c.ctx->errstr);
    }
    for (;;) {
      void* raw = nullptr;
      if (redisGetReplyFromReader(c.ctx.get(), &raw) != REDIS_OK) {
        throw std::runtime_error(std::string("Redis reply: ") + c.ctx->errstr);
      }
      if (raw == nullptr) {
        return;
      }
      const Reply r(static_cast<redisReply*>(raw));
      if (c.due_ns.empty()) {
        throw std::runtime_error("a reply to no call");
      }
      const std::int64_t latency = now_ns() - c.due_ns.front();
      c.due_ns.pop_front();
      if (r->type != REDIS_REPLY_ARRAY) {
        ++n.errors;
        continue;
      }
      ++n.answered;
      n.approved += approved(*r) ? 1U : 0U;
      if (h != nullptr) {
        h->record(static_cast<std::uint64_t>(std::max<std::int64_t>(0, latency)));
      }
    }
  }

  const Options& o_;
  std::string function_;
  std::vector<std::string_view> velocity_;
  std::vector<Connection> conns_;
  // A 1.00 USD grocery purchase (the floor's and the shipped velocity's), limits never reached.
  limits::AuthRequest request_ = authswitch::support::sample_auth(
      "", 100, {1'000'000, 900'000'000'000'000, 1'000'000'000, 900'000'000'000'000, 1'000'000'000});
  limits::HoldsCall call_;
  std::vector<std::string_view> args_;
  std::string id_, token_, txn_;
  std::uint64_t txn_count_ = 0;
  std::uint64_t next_account_ = 0x9E3779B97F4A7C15ULL;
  std::int64_t epoch_ns_ = now_ns();
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"paced_floor: Redis's latency for the holds call at a fixed offered rate"};
  app.add_option("--port", o.port, "redis-server port on 127.0.0.1")->required();
  app.add_option("--rate", o.rate, "calls per second")->required()->check(CLI::Range(1.0, 1e7));
  app.add_option("--seconds", o.seconds, "measured seconds")->check(CLI::Range(0.1, 3600.0));
  app.add_option("--warmup", o.warmup, "unmeasured seconds first")->check(CLI::Range(0.0, 600.0));
  app.add_option("--connections", o.connections, "connections (the switch opens one per shard)")
      ->check(CLI::Range(1, 64));
  app.add_option("--accounts", o.accounts, "accounts seeded, one card each")
      ->check(CLI::Range(1, 10'000'000));
  app.add_option("--rules", o.rules, "rule set whose velocity the calls run")
      ->check(CLI::ExistingFile);
  app.add_flag("--no-velocity", o.no_velocity, "the library and calls without velocity");
  CLI11_PARSE(app, argc, argv);
  try {
    const limits::FunctionLibrary& library =
        o.no_velocity ? limits::holds_library()
                      : authswitch::bench::shipped_velocity(o.rules).library;
    std::span<const std::string_view> velocity;
    if (!o.no_velocity) {
      velocity = authswitch::bench::shipped_velocity(o.rules).args.args();
    }
    {
      const Context setup = connect(o.port);
      prepare(*setup, library, o.accounts);
    }
    Driver driver(o, library, velocity);
    const auto calls = [&](double s) { return static_cast<std::uint64_t>(o.rate * s); };
    if (o.warmup > 0) {
      const Counts w = driver.run(calls(o.warmup), nullptr);
      if (w.answered + w.errors < w.sent || w.sent < calls(o.warmup)) {
        throw std::runtime_error("calls unanswered during the warm-up");
      }
    }
    authswitch::netsim::LatencyHistogram h;
    const Counts n = driver.run(calls(o.seconds), &h);
    const auto us = [&](std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
    std::printf("{\"rate\":%.0f,\"seconds\":%.1f,\"connections\":%d,\"sent\":%" PRIu64
                ",\"answered\":%" PRIu64 ",\"approved\":%" PRIu64 ",\"errors\":%" PRIu64
                ",\"p50_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f,\"max_us\":%.0f}\n",
                o.rate, o.seconds, o.connections, n.sent, n.answered, n.approved, n.errors,
                us(h.percentile(0.50)), us(h.percentile(0.99)), us(h.percentile(0.999)),
                us(h.max()));
    // Only a run where every call was answered and approved is a floor: an error or a decline
    // (a cheaper path through the script) would make it look faster than the switch's calls.
    if (n.answered != calls(o.seconds) || n.errors != 0 || n.approved != n.answered) {
      std::fprintf(stderr,
                   "paced_floor: not a floor: %" PRIu64 " of %" PRIu64 " calls answered, %" PRIu64
                   " approved, %" PRIu64 " errors\n",
                   n.answered, calls(o.seconds), n.approved, n.errors);
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "paced_floor: %s\n", e.what());
    return 1;
  }
}
