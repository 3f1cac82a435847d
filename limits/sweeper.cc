#include "limits/sweeper.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "base/assert.h"
#include "limits/layout.h"

namespace authswitch::limits {
namespace {

std::string_view format(std::array<char, 24>& buf, std::int64_t v) noexcept {
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  return {buf.data(), static_cast<std::size_t>(r.ptr - buf.data())};
}

std::string_view copy_into(std::span<char> buf, std::string_view s) noexcept {
  const std::size_t n = std::min(s.size(), buf.size());
  std::memcpy(buf.data(), s.data(), n);
  return {buf.data(), n};
}

}  // namespace

bool DueNote::set(std::string_view account, std::int64_t expiry_ms) noexcept {
  if (!valid_name(account, kAccountIdMax)) {
    return false;
  }
  args_ = {"ZADD", kDueKey, "LT", format(expiry_, expiry_ms), copy_into(account_, account)};
  return true;
}

// The pass's index read: ZRANGEBYSCORE as:due -inf <now> WITHSCORES LIMIT 0 <batch>.
class Sweeper::IndexRead final : public Completion {
 public:
  explicit IndexRead(Sweeper& owner) noexcept : owner_(owner) {}
  void on_reply(const Reply& reply) noexcept override { owner_.on_index(reply); }
  void on_error(ClientErrc /*errc*/, std::string_view /*message*/) noexcept override {
    owner_.on_error();
    owner_.on_slot_done();
  }

 private:
  Sweeper& owner_;
};

// One due account of a batch: its sweep call, then the compare-and-set of its index entry.
class Sweeper::Slot final : public Completion {
 public:
  void init(Sweeper& owner) noexcept { owner_ = &owner; }

  // Queues the sweep call; false when the pipeline refused it.
  bool start(std::string_view account, std::string_view score) noexcept {
    phase_ = Phase::kSweep;
    next_due_ms_ = 0;
    account_ = copy_into(account_buf_, account);
    score_ = copy_into(score_buf_, score);
    const CallContext ctx{.function = owner_->holds_function_,
                          .account_id = account_,
                          .card_token = "none",
                          .txn_key = "sweep",
                          .now_ms = owner_->now_ms_,
                          .replay_window_ms = 0,
                          .fingerprint = ""};
    if (!call_.set_sweep(ctx, owner_->options_.holds_per_call)) {
      return false;  // an index entry that is no account id: skipped, left for an operator
    }
    return submit(call_.args());
  }

  void on_reply(const Reply& reply) noexcept override {
    if (phase_ == Phase::kSweep) {
      on_swept(reply);
      return;
    }
    if (reply.type != Reply::Type::kInteger) {
      owner_->on_error();
    } else if (reply.integer == 0) {
      ++owner_->stats_.entries_kept;
    } else if (next_due_ms_ == 0) {
      ++owner_->stats_.entries_removed;
    }
    owner_->on_slot_done();
  }

  void on_error(ClientErrc /*errc*/, std::string_view /*message*/) noexcept override {
    owner_->on_error();
    owner_->on_slot_done();
  }

  [[nodiscard]] bool still_due() const noexcept {
    return next_due_ms_ > 0 && next_due_ms_ <= owner_->now_ms_;
  }

 private:
  enum class Phase : std::uint8_t { kSweep, kIndex };

  // The sweep op's reply { rc, approved, balance, available, reason, value, threshold }:
  // value = holds expired, threshold = the next pending expiry (0: none).
  void on_swept(const Reply& reply) noexcept {
    Decision d;
    if (!parse_decision(reply, d) || d.reason_text() != "swept") {
      owner_->on_error();
      owner_->on_slot_done();
      return;
    }
    ++owner_->stats_.accounts;
    owner_->stats_.holds_expired += static_cast<std::uint64_t>(d.value);
    next_due_ms_ = d.threshold;
    phase_ = Phase::kIndex;
    due_args_ = {"EVALSHA",
                 owner_->due_sha_,
                 "1",
                 kDueKey,
                 account_,
                 score_,
                 format(next_due_text_, next_due_ms_)};
    if (!submit(due_args_)) {
      owner_->on_slot_done();
    }
  }

  bool submit(std::span<const std::string_view> args) noexcept {
    const auto rejected =
        owner_->pipeline_.submit(args, *this, owner_->now_ + owner_->options_.timeout);
    if (rejected) {
      owner_->on_error();
      return false;
    }
    return true;
  }

  Sweeper* owner_ = nullptr;
  Phase phase_ = Phase::kSweep;
  HoldsCall call_;
  std::array<char, kAccountIdMax> account_buf_{};
  std::array<char, 32> score_buf_{};
  std::string_view account_;
  std::string_view score_;
  std::int64_t next_due_ms_ = 0;
  std::array<char, 24> next_due_text_{};
  std::array<std::string_view, 7> due_args_{};
};

Sweeper::Sweeper(RedisPipeline& pipeline, Options options)
    : pipeline_(pipeline),
      options_(options),
      holds_function_(register_holds(pipeline)),
      due_sha_(pipeline.load_script(embedded_script("due"))),
      index_read_(std::make_unique<IndexRead>(*this)),
      slots_(std::make_unique<Slot[]>(std::max<std::size_t>(options.accounts_per_batch, 1))) {
  AS_ASSERT(options_.accounts_per_batch > 0);
  AS_ASSERT(options_.holds_per_call > 0);
  for (std::size_t i = 0; i < options_.accounts_per_batch; ++i) {
    slots_[i].init(*this);
  }
  batch_ = format(batch_text_, static_cast<std::int64_t>(options_.accounts_per_batch));
}

Sweeper::~Sweeper() = default;

void Sweeper::on_tick(Clock::time_point now, std::int64_t now_ms) noexcept {
  if (outstanding_ > 0 || now < next_pass_ || !pipeline_.ready()) {
    return;
  }
  now_ = now;
  now_ms_ = now_ms;
  pass_errors_ = 0;
  std::array<char, 24> max_text{};
  const std::array<std::string_view, 8> args{
      "ZRANGEBYSCORE", kDueKey, "-inf", format(max_text, now_ms),
      "WITHSCORES",    "LIMIT", "0",    batch_};
  if (pipeline_.submit(args, *index_read_, now + options_.timeout)) {
    on_error();
    next_pass_ = now + options_.interval;
    return;
  }
  outstanding_ = 1;
  ++stats_.passes;
  pipeline_.flush();
}

void Sweeper::on_index(const Reply& reply) noexcept {
  if (reply.type != Reply::Type::kArray || reply.elements.size() % 2 != 0) {
    on_error();
    on_slot_done();
    return;
  }
  batch_size_ = reply.elements.size() / 2;
  AS_ASSERT(batch_size_ <= options_.accounts_per_batch);
  for (std::size_t i = 0; i < batch_size_; ++i) {
    const Reply& account = reply.elements[2 * i];
    const Reply& score = reply.elements[2 * i + 1];
    if (slots_[i].start(account.str, score.str)) {
      ++outstanding_;
    } else {
      on_error();  // not an account id, or the pipeline is full: retried next pass
    }
  }
  on_slot_done();  // the index read itself
  // Called from on_readable: what was queued here leaves with the next flush. Flush now so
  // a pass does not wait for the switch's next batch.
  pipeline_.flush();
}

void Sweeper::on_error() noexcept {
  ++stats_.errors;
  ++pass_errors_;
}

void Sweeper::on_slot_done() noexcept {
  AS_ASSERT(outstanding_ > 0);
  --outstanding_;
  if (outstanding_ > 0) {
    return;
  }
  // Another pass at once when this one may have left due accounts behind (a full batch, or an
  // account with more due holds than one call takes); never straight after an error, so a bad
  // index entry or a failing Redis cannot spin the loop.
  bool again = pass_errors_ == 0 && batch_size_ == options_.accounts_per_batch;
  for (std::size_t i = 0; i < batch_size_ && !again && pass_errors_ == 0; ++i) {
    again = slots_[i].still_due();
  }
  next_pass_ = again ? now_ : now_ + options_.interval;
  batch_size_ = 0;
}

}  // namespace authswitch::limits
