#include "switch/reconciler.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <stdexcept>

#include "base/assert.h"
#include "risk/time_zone.h"
#include "switch/format_internal.h"
#include "switch/journal_internal.h"

namespace authswitch::switching {
namespace {

[[nodiscard]] std::string_view op_name(ReconItem::Op op) noexcept {
  switch (op) {
    case ReconItem::Op::kForceAuth:
      return "force_auth";
    case ReconItem::Op::kForceDebit:
      return "force_debit";
    case ReconItem::Op::kCapture:
      return "capture";
    case ReconItem::Op::kReverse:
      return "reverse";
  }
  return "?";
}

[[nodiscard]] bool is_forced(ReconItem::Op op) noexcept {
  return op == ReconItem::Op::kForceAuth || op == ReconItem::Op::kForceDebit;
}

[[nodiscard]] std::int64_t wall_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string_view to_string(ReconKind k) noexcept {
  switch (k) {
    case ReconKind::kStandInApproval:
      return "stand_in_approval";
    case ReconKind::kUnconfirmedAdvice:
      return "unconfirmed_advice";
    case ReconKind::kCompensation:
      return "compensation";
  }
  return "?";
}

std::string_view to_string(ReconState s) noexcept {
  switch (s) {
    case ReconState::kQueued:
      return "queued";
    case ReconState::kApplied:
      return "applied";
    case ReconState::kReplayedOriginal:
      return "replayed_original";
    case ReconState::kUnresolved:
      return "unresolved";
  }
  return "?";
}

void append_json_line(std::string& out, const ReconRecord& r,
                      std::span<const std::string> networks) {
  using journal_json::put_number;
  using journal_json::put_string;
  journal_json::put_line_start(out, r.time_ms, networks, r.network);
  out += R"(,"kind":)";
  put_string(out, to_string(r.kind));
  out += R"(,"state":)";
  put_string(out, to_string(r.state));
  out += R"(,"op":)";
  put_string(out, op_name(r.op));
  out += R"(,"txn":)";
  put_string(out, r.txn_key.view());
  out += R"(,"hold":)";
  put_string(out, r.hold_id.view());
  out += R"(,"account":)";
  put_string(out, r.account.view());
  out += R"(,"card_token":)";
  put_string(out, r.token.view());
  out += R"(,"pan":)";
  put_string(out, r.masked_pan.view());
  out += R"(,"amount":)";
  put_number(out, r.amount_minor);
  out += R"(,"currency":)";
  put_string(out, std::string_view(r.currency.data(), r.currency.size()));
  out += R"(,"request_time":")";
  journal_json::put_time(out, r.request_ms);
  out += R"(","attempts":)";
  put_number(out, r.attempts);
  out += R"(,"detail":)";
  put_string(out, r.detail.view());
  out += "}\n";
}

template class BasicJournal<ReconRecord>;

// ---------------------------------------------------------------------------------------------
// Call slots: one item being replayed, as the pipeline's and the directory's callback.

class Reconciler::Call final : public limits::Completion, public limits::CardLoadCallback {
 public:
  void bind(Reconciler& r, std::uint32_t i) noexcept {
    owner_ = &r;
    index = i;
  }
  void on_reply(const limits::Reply& reply) noexcept override { owner_->on_reply(*this, reply); }
  void on_error(limits::ClientErrc errc, std::string_view message) noexcept override {
    owner_->on_error(*this, errc, message);
  }
  void on_card_loaded(const limits::CardLoadResult& result) noexcept override {
    owner_->on_card(*this, result);
  }

  ReconItem item;
  std::uint32_t index = 0;
  bool busy = false;  // holds an item being replayed

 private:
  Reconciler* owner_ = nullptr;
};

Reconciler::Reconciler(limits::RedisPipeline& pipeline, limits::CardDirectory& directory,
                       ReconJournal::Producer* journal, Options options)
    : pipeline_(pipeline), directory_(directory), journal_(journal), options_(options) {
  if (options_.capacity == 0 || options_.capacity > (std::size_t{1} << 24)) {
    throw std::invalid_argument("reconciler: capacity must be 1 .. 16777216");
  }
  if (options_.in_flight_max == 0 || options_.in_flight_max > 4096 || options_.per_tick_max == 0) {
    throw std::invalid_argument("reconciler: in_flight_max must be 1 .. 4096, per_tick_max > 0");
  }
  if (options_.attempts_max == 0 || options_.attempts_max > 255) {
    throw std::invalid_argument("reconciler: attempts_max must be 1 .. 255");
  }
  if (options_.backoff_min <= Clock::duration::zero() ||
      options_.backoff_max < options_.backoff_min ||
      options_.call_timeout <= Clock::duration::zero()) {
    throw std::invalid_argument("reconciler: 0 < backoff_min <= backoff_max, call_timeout > 0");
  }
  if (options_.hold_ttl_ms <= 0 || options_.replay_window_ms <= 0) {
    throw std::invalid_argument("reconciler: hold_ttl_ms and replay_window_ms must be > 0");
  }
  capacity_ = std::bit_ceil(options_.capacity);
  queue_ = std::make_unique<ReconItem[]>(capacity_);
  calls_ = std::make_unique<Call[]>(options_.in_flight_max);
  free_calls_ = std::make_unique<std::uint32_t[]>(options_.in_flight_max);
  for (std::size_t i = 0; i < options_.in_flight_max; ++i) {
    calls_[i].bind(*this, static_cast<std::uint32_t>(i));
    free_calls_[i] = static_cast<std::uint32_t>(i);
  }
  free_count_ = options_.in_flight_max;
  call_ = std::make_unique<limits::HoldsCall>();
  backoff_ = options_.backoff_min;
  function_ = limits::register_holds(pipeline_);
}

// The pipeline is gone (see the lifetime note): what is left is owed and journaled as such.
Reconciler::~Reconciler() {
  // A call still in flight here means the pipeline outlives the reconciler, against the
  // lifetime rule; its item is journaled all the same.
  for (std::size_t i = 0; i < options_.in_flight_max; ++i) {
    if (calls_[i].busy) {
      journal(calls_[i].item, ReconState::kUnresolved, "shutdown");
      ++stats_.unresolved;
    }
  }
  while (count_ > 0) {
    journal(queue_[head_], ReconState::kUnresolved, "shutdown");
    ++stats_.unresolved;
    head_ = (head_ + 1) & (capacity_ - 1);
    --count_;
  }
}

bool Reconciler::push(const ReconItem& item) noexcept {
  if (count_ == capacity_) {
    return false;
  }
  queue_[(head_ + count_) & (capacity_ - 1)] = item;
  ++count_;
  return true;
}

bool Reconciler::enqueue(const ReconItem& item) noexcept {
  if (!push(item)) {
    ++stats_.queue_full;
    ++stats_.unresolved;
    journal(item, ReconState::kUnresolved, "queue_full");
    return false;
  }
  ++stats_.queued;
  journal(item, ReconState::kQueued, "");
  return true;
}

void Reconciler::record(const ReconItem& item, ReconState state, std::string_view detail) noexcept {
  switch (state) {
    case ReconState::kApplied:
      ++stats_.applied;
      break;
    case ReconState::kReplayedOriginal:
      ++stats_.replayed_original;
      break;
    case ReconState::kUnresolved:
      ++stats_.unresolved;
      break;
    case ReconState::kQueued:
      break;
  }
  journal(item, state, detail);
}

void Reconciler::journal(const ReconItem& item, ReconState state,
                         std::string_view detail) noexcept {
  if (journal_ == nullptr) {
    return;
  }
  ReconRecord r;
  r.time_ms = wall_ms();
  r.request_ms = item.now_ms;
  r.network = item.network;
  r.kind = item.kind;
  r.state = state;
  r.op = item.op;
  r.attempts = item.attempts;
  r.amount_minor = item.amount_minor;
  r.currency = item.currency;
  r.txn_key = item.replay_key;
  r.hold_id = item.hold_id;
  r.account = item.account;
  r.token = item.token;
  r.masked_pan = item.masked_pan;
  r.detail.assign_cut(detail);
  if (!journal_->append(r)) {
    ++stats_.journal_dropped;
  }
}

// ---------------------------------------------------------------------------------------------
// Ticks and calls.

void Reconciler::on_tick(Clock::time_point now) noexcept {
  now_ = std::max(now_, now);
  if (count_ > 0 && now_ >= resume_at_ && pipeline_.ready()) {
    for (std::size_t n = 0; n < options_.per_tick_max && count_ > 0 && free_count_ > 0; ++n) {
      Call& c = calls_[free_calls_[--free_count_]];
      AS_ASSERT(!c.busy);
      c.busy = true;
      ++in_flight_;
      c.item = queue_[head_];
      head_ = (head_ + 1) & (capacity_ - 1);
      --count_;
      start(c);
      if (now_ < resume_at_) {
        break;  // a call failed at once: back off
      }
    }
  }
  if (submitted_) {
    submitted_ = false;
    pipeline_.flush();
  }
}

// Finds the account when the processor did not know it, then submits.
void Reconciler::start(Call& c) noexcept {
  if (!c.item.account.empty()) {
    submit(c);
    return;
  }
  if (const limits::CardInfo* card = directory_.find(c.item.token); card != nullptr) {
    (void)c.item.account.assign(card->account_id());
    submit(c);
    return;
  }
  if (const auto e = directory_.load(c.item.token, c, now_ + options_.call_timeout)) {
    failed(c, limits::to_string(*e));
    return;
  }
  submitted_ = true;
}

void Reconciler::on_card(Call& c, const limits::CardLoadResult& r) noexcept {
  if (r.card != nullptr && !r.card->account_id().empty()) {
    (void)c.item.account.assign(r.card->account_id());
    submit(c);
    return;
  }
  switch (r.status) {
    case limits::CardStatus::kError:
      failed(c, limits::to_string(r.error));
      return;
    case limits::CardStatus::kNotFound:
      finish(c, ReconState::kUnresolved, "card_not_found");
      return;
    default:
      finish(c, ReconState::kUnresolved, limits::to_string(r.status));
      return;
  }
}

void Reconciler::submit(Call& c) noexcept {
  const ReconItem& it = c.item;
  limits::CallContext ctx;
  ctx.function = function_;
  ctx.account_id = it.account.view();
  ctx.card_token = it.token.view();
  ctx.txn_key = it.replay_key.view();
  ctx.now_ms = it.now_ms;
  ctx.replay_window_ms = options_.replay_window_ms;
  ctx.fingerprint = it.fingerprint.view();
  bool ok = false;
  switch (it.op) {
    case ReconItem::Op::kForceAuth:
    case ReconItem::Op::kForceDebit: {
      // The request's own day and month (UTC), so the usage counters are those it belongs to.
      const std::int64_t days = (it.now_ms >= 0 ? it.now_ms : it.now_ms - 86'399'999) / 86'400'000;
      const risk::CivilDate date = risk::civil_from_days(days);
      const auto year = static_cast<std::uint64_t>(date.year);
      limits::AuthRequest r;
      r.txn_key = it.hold_id.view();
      r.amount_minor = it.amount_minor;
      r.currency = std::string_view(it.currency.data(), it.currency.size());
      r.channel = limits::channel_name(it.channel);
      r.mcc = it.mcc.view();
      r.day = format_fixed(year * 10'000 + date.month * 100U + date.day, 8, day_);
      r.month = format_fixed(year * 100 + date.month, 6, month_);
      r.current_yymm = format_fixed((year % 100) * 100 + date.month, 4, yymm_);
      r.hold_ttl_ms = options_.hold_ttl_ms;
      ok = it.replay_key.view() == it.hold_id.view() &&
           call_->set_forced_auth(function_, it.op == ReconItem::Op::kForceAuth ? "auth" : "debit",
                                  it.account.view(), it.token.view(), r, it.now_ms,
                                  options_.replay_window_ms, it.fingerprint.view());
      break;
    }
    case ReconItem::Op::kCapture:
      ok = call_->set_capture(ctx, it.hold_id.view(), it.amount_minor);
      break;
    case ReconItem::Op::kReverse:
      ok = call_->set_reverse(ctx, it.hold_id.view(), it.amount_minor);
      break;
  }
  if (!ok) {
    finish(c, ReconState::kUnresolved, "bad_keys");
    return;
  }
  if (const auto e = pipeline_.submit(call_->args(), c, now_ + options_.call_timeout)) {
    failed(c, limits::to_string(*e));
    return;
  }
  submitted_ = true;
}

void Reconciler::on_reply(Call& c, const limits::Reply& r) noexcept {
  limits::Decision d;
  if (!limits::parse_decision(r, d)) {
    failed(c, "bad_reply");
    return;
  }
  backoff_ = options_.backoff_min;  // Redis answers
  outcome(c, d);
}

void Reconciler::on_error(Call& c, limits::ClientErrc e, std::string_view message) noexcept {
  // NOSCRIPT: the pipeline has queued the reload; the retry runs after it.
  failed(c, e == limits::ClientErrc::kServerError ? message : limits::to_string(e));
}

// What Redis answered. A forced call: "stand_in" is our own placement or top-up of a partial
// original (now or by an earlier attempt whose answer was lost); any other approval is the
// original's, or "hold_<state>" when the original's partial hold was settled before the top-up
// (nothing more owed); "hold_exists" means a record under the id came first (the original, or a
// reversal's void record): nothing owed.
void Reconciler::outcome(Call& c, const limits::Decision& d) noexcept {
  const std::string_view reason = d.reason_text();
  if (is_forced(c.item.op)) {
    if (d.code() == "00") {
      finish(c, reason == "stand_in" ? ReconState::kApplied : ReconState::kReplayedOriginal,
             reason == "stand_in" ? "" : (reason.empty() ? "original" : reason));
    } else if (d.code() == "94" && reason == "hold_exists") {
      finish(c, ReconState::kReplayedOriginal, "hold_exists");
    } else if (d.code() == "10") {
      // The original approved part of what the stand-in approved in full, and its hold was
      // raised or partly reversed since (else the script tops it up): a person decides.
      finish(c, ReconState::kUnresolved, "original_partial");
    } else {
      finish(c, ReconState::kUnresolved, reason.empty() ? d.code() : reason);
    }
    return;
  }
  if (d.code() == "00") {
    finish(c, ReconState::kApplied, reason);
  } else {
    finish(c, ReconState::kUnresolved, reason.empty() ? d.code() : reason);
  }
}

void Reconciler::failed(Call& c, std::string_view detail) noexcept {
  ++stats_.failures;
  ++c.item.attempts;
  resume_at_ = now_ + backoff_;
  backoff_ = std::min(backoff_ * 2, options_.backoff_max);
  if (c.item.attempts >= options_.attempts_max) {
    ++stats_.exhausted;
    finish(c, ReconState::kUnresolved, detail);
    return;
  }
  if (!push(c.item)) {
    ++stats_.queue_full;
    finish(c, ReconState::kUnresolved, "queue_full");
    return;
  }
  release(c);
}

void Reconciler::finish(Call& c, ReconState state, std::string_view detail) noexcept {
  AS_ASSERT(state != ReconState::kQueued);
  record(c.item, state, detail);
  release(c);
}

void Reconciler::release(Call& c) noexcept {
  AS_ASSERT(c.busy);
  AS_ASSERT(in_flight_ > 0);
  c.busy = false;
  --in_flight_;
  free_calls_[free_count_++] = c.index;
}

}  // namespace authswitch::switching
