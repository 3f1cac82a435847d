#include "limits/card_directory.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <span>
#include <stdexcept>

#include "base/assert.h"
#include "limits/hex_internal.h"

namespace authswitch::limits {
namespace {

// HGETALL of a profile: 15 fields and values; more is malformed (parse_profile_fields would
// reject the unknown fields anyway).
constexpr std::size_t kProfileFieldsMax = 2 * kChannelCount * kLimitCount;
constexpr std::string_view kEmptyStreamId = "0-0";

// The 16 bytes of a token's 32 hex characters, as two integers. False when malformed.
bool parse_token(std::string_view text, std::array<std::uint64_t, 2>& key) noexcept {
  if (text.size() != PanToken::kChars) {
    return false;
  }
  for (std::size_t half = 0; half < 2; ++half) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < 16; ++i) {
      const int h = internal::hex_value(text[half * 16 + i]);
      if (h < 0) {
        return false;
      }
      v = (v << 4U) | static_cast<std::uint64_t>(h);
    }
    key[half] = v;
  }
  return true;
}

std::size_t round_up_pow2(std::size_t v) noexcept {
  std::size_t p = 1;
  while (p < v) {
    p <<= 1U;
  }
  return p;
}

bool is_string(const Reply& r) noexcept { return r.type == Reply::Type::kString; }

// The limits in an HGETALL reply, or nullopt when it is not a well-formed profile.
std::optional<LimitProfile> parse_profile_reply(const Reply& reply) noexcept {
  std::array<std::string_view, kProfileFieldsMax> fields{};
  if (reply.type != Reply::Type::kArray || reply.elements.size() > fields.size()) {
    return std::nullopt;
  }
  for (std::size_t i = 0; i < reply.elements.size(); ++i) {
    if (!is_string(reply.elements[i])) {
      return std::nullopt;
    }
    fields[i] = reply.elements[i].str;
  }
  const auto parsed = parse_profile_fields(std::span(fields.data(), reply.elements.size()));
  if (!parsed) {
    return std::nullopt;
  }
  return *parsed;
}

}  // namespace

std::string_view to_string(CardStatus s) noexcept {
  switch (s) {
    case CardStatus::kFound:
      return "found";
    case CardStatus::kNotFound:
      return "not-found";
    case CardStatus::kProfileGone:
      return "profile-gone";
    case CardStatus::kBadRecord:
      return "bad-record";
    case CardStatus::kProfileTableFull:
      return "profile-table-full";
    case CardStatus::kError:
      return "error";
  }
  return "unknown";
}

// One cached card. The index (index_) holds entry numbers; entries never move.
struct CardDirectory::Entry {
  Key key{};
  CardInfo info;
  bool referenced = false;  // found since the CLOCK hand last passed
};
static_assert(sizeof(CardInfo) == 72, "the memory note in card_directory.h counts 96-byte entries");

// The directory's own calls: the feed position, the profile set and the feed poll. One call of
// each at a time; a reply from an earlier sync generation is ignored.
class CardDirectory::Control final : public Completion {
 public:
  enum class Kind : std::uint8_t { kPosition, kMembers, kPoll };

  Control(CardDirectory& dir, Kind kind) noexcept : dir_(dir), kind_(kind) {}

  // False when the pipeline refused it (nothing pending then).
  bool submit(std::span<const std::string_view> args) noexcept {
    AS_ASSERT(!in_flight_);
    if (dir_.pipeline_.submit(args, *this, dir_.now_ + dir_.options_.request_timeout)) {
      return false;
    }
    gen_ = dir_.gen_;
    in_flight_ = true;
    dir_.submitted_ = true;
    return true;
  }

  void on_reply(const Reply& reply) noexcept override {
    in_flight_ = false;
    if (gen_ != dir_.gen_) {
      return;
    }
    switch (kind_) {
      case Kind::kPosition:
        dir_.on_position(reply);
        break;
      case Kind::kMembers:
        dir_.on_members(reply);
        break;
      case Kind::kPoll:
        dir_.on_poll(reply);
        break;
    }
  }

  void on_error(ClientErrc errc, std::string_view /*message*/) noexcept override {
    in_flight_ = false;
    if (gen_ != dir_.gen_) {
      return;
    }
    if (kind_ == Kind::kPoll) {
      dir_.on_poll_error(errc);
    } else {
      dir_.fail_sync(errc);
    }
  }

  [[nodiscard]] bool in_flight() const noexcept { return in_flight_; }

 private:
  CardDirectory& dir_;
  Kind kind_;
  bool in_flight_ = false;
  std::uint64_t gen_ = 0;
};

// One slot of the profile table and its HGETALL.
class CardDirectory::Profile final : public Completion {
 public:
  void on_reply(const Reply& reply) noexcept override {
    in_flight = false;
    dir->on_profile_reply(*this, reply);
  }
  void on_error(ClientErrc errc, std::string_view /*message*/) noexcept override {
    in_flight = false;
    dir->on_profile_error(*this, errc);
  }

  [[nodiscard]] std::string_view name() const noexcept { return {name_buf.data(), name_len}; }

  CardDirectory* dir = nullptr;
  std::uint16_t index = 0;
  ProfileState state = ProfileState::kLoading;
  bool in_flight = false;
  bool needs_reload = false;  // reload when not in flight and retry_at has come
  std::uint32_t waiters = 0;  // pending loads waiting for the first load
  Clock::time_point retry_at = Clock::time_point::min();
  std::array<char, kProfileNameMax> name_buf{};
  std::size_t name_len = 0;
  LimitProfile limits;
  KeyBuffer key_buf{};
};

// One load(): its HMGET, then possibly a wait for the card's profile.
class CardDirectory::Pending final : public Completion {
 public:
  enum class State : std::uint8_t { kFree, kSubmitted, kWaiting };

  void on_reply(const Reply& reply) noexcept override { dir->on_card_reply(*this, reply); }
  void on_error(ClientErrc errc, std::string_view /*message*/) noexcept override {
    dir->on_card_error(*this, errc);
  }

  CardDirectory* dir = nullptr;
  std::uint32_t index = 0;
  State state = State::kFree;
  bool cacheable = false;  // sent after this connection's feed position was read
  bool has_card = false;   // info holds a parsed directory entry
  std::uint64_t gen = 0;
  Key key{};
  PanToken token;
  CardLoadCallback* done = nullptr;
  Clock::time_point deadline{};
  CardInfo info;
  KeyBuffer key_buf{};
};

CardDirectory::CardDirectory(RedisPipeline& pipeline, Options options)
    : pipeline_(pipeline), options_(options) {
  using namespace std::chrono_literals;
  if (options_.capacity == 0 || options_.capacity > (std::size_t{1} << 30)) {
    throw std::invalid_argument("CardDirectory: capacity must be 1 .. 2^30");
  }
  if (options_.max_profiles == 0 || options_.max_profiles > 0xFFFF) {
    throw std::invalid_argument("CardDirectory: max_profiles must be 1 .. 65535");
  }
  if (options_.max_pending_loads == 0 || options_.max_pending_loads > (std::size_t{1} << 24)) {
    throw std::invalid_argument("CardDirectory: max_pending_loads must be 1 .. 2^24");
  }
  if (options_.poll_interval <= Clock::duration::zero() || options_.poll_interval >= 1s) {
    throw std::invalid_argument("CardDirectory: poll_interval must be > 0 and < 1 s");
  }
  if (options_.request_timeout <= Clock::duration::zero()) {
    throw std::invalid_argument("CardDirectory: request_timeout must be > 0");
  }
  if (options_.feed_batch_max == 0 || options_.feed_batch_max > kChangesMaxLen) {
    throw std::invalid_argument("CardDirectory: feed_batch_max must be 1 .. kChangesMaxLen");
  }
  // A feed batch or the profile set that did not fit the pipeline's reply arena would be a
  // protocol error, a reconnect and a resync, again and again.
  const std::size_t nodes = pipeline.options().reply_nodes;
  if (nodes < 7 * options_.feed_batch_max + 4 || nodes < options_.max_profiles + 1) {
    throw std::invalid_argument(
        "CardDirectory: the pipeline's reply_nodes must be >= 7 x feed_batch_max + 4 and >= "
        "max_profiles + 1");
  }

  card_capacity_ = round_up_pow2(options_.capacity);
  const std::size_t index_size = 2 * card_capacity_;
  index_mask_ = index_size - 1;
  index_shift_ = 64U - static_cast<unsigned>(std::countr_zero(index_size));
  entries_ = std::make_unique<Entry[]>(card_capacity_);
  index_ = std::make_unique<std::uint32_t[]>(index_size);
  free_ = std::make_unique<std::uint32_t[]>(card_capacity_);

  profiles_ = std::make_unique<Profile[]>(options_.max_profiles);
  for (std::size_t i = 0; i < options_.max_profiles; ++i) {
    profiles_[i].dir = this;
    profiles_[i].index = static_cast<std::uint16_t>(i);
  }

  pending_ = std::make_unique<Pending[]>(options_.max_pending_loads);
  pending_free_ = std::make_unique<std::uint32_t[]>(options_.max_pending_loads);
  for (std::size_t i = 0; i < options_.max_pending_loads; ++i) {
    pending_[i].dir = this;
    pending_[i].index = static_cast<std::uint32_t>(i);
    pending_free_[i] = static_cast<std::uint32_t>(options_.max_pending_loads - 1 - i);
  }
  pending_free_count_ = options_.max_pending_loads;

  position_op_ = std::make_unique<Control>(*this, Control::Kind::kPosition);
  members_op_ = std::make_unique<Control>(*this, Control::Kind::kMembers);
  poll_op_ = std::make_unique<Control>(*this, Control::Kind::kPoll);

  const auto r = std::to_chars(batch_text_.data(), batch_text_.data() + batch_text_.size(),
                               options_.feed_batch_max);
  batch_ = {batch_text_.data(), static_cast<std::size_t>(r.ptr - batch_text_.data())};
  (void)set_last_id(kEmptyStreamId);
}

CardDirectory::~CardDirectory() {
  // Loads waiting for a profile are not in the pipeline: fail them as the pipeline would.
  for (std::size_t i = 0; i < options_.max_pending_loads; ++i) {
    if (pending_[i].state == Pending::State::kWaiting) {
      finish_load(pending_[i], CardStatus::kError, ClientErrc::kDisconnected);
    }
  }
  // The pipeline holds pointers to the rest: it must have called them back (see the header).
  AS_ASSERT(!position_op_->in_flight());
  AS_ASSERT(!members_op_->in_flight());
  AS_ASSERT(!poll_op_->in_flight());
  for (std::size_t i = 0; i < profile_count_; ++i) {
    AS_ASSERT(!profiles_[i].in_flight);
  }
  AS_ASSERT(pending_free_count_ == options_.max_pending_loads);
}

bool CardDirectory::ready() const noexcept { return phase_ == Phase::kReady; }

// ---------------------------------------------------------------------------------------------
// Sync and feed.

void CardDirectory::on_tick(Clock::time_point now) noexcept {
  now_ = now;
  (void)check_connection();
  if (phase_ == Phase::kIdle && now >= retry_at_ &&
      pipeline_.state() == RedisPipeline::State::kConnected && !position_op_->in_flight() &&
      !members_op_->in_flight()) {
    start_sync();
  }
  if (phase_ == Phase::kReady && !poll_op_->in_flight() && now >= next_poll_at_) {
    (void)submit_poll();
  }
  (void)pump_profiles();
  expire_waiting(now);
  if (submitted_) {
    submitted_ = false;
    pipeline_.flush();
  }
}

// True when the connection the directory synced on is gone: a resync is due (started by
// on_tick). Cards cached before are not served any more (find() checks the same counter).
bool CardDirectory::check_connection() noexcept {
  if (phase_ == Phase::kIdle || pipeline_.stats().connects == connects_seen_) {
    return false;
  }
  phase_ = Phase::kIdle;
  retry_at_ = Clock::time_point::min();
  return true;
}

void CardDirectory::start_sync() noexcept {
  ++gen_;
  connects_seen_ = pipeline_.stats().connects;
  drop_all();               // changes may have been missed while away
  forget_waiting(nullptr);  // loads sent before the position is read are not cached
  const std::string_view args[] = {"XREVRANGE", kChangesKey, "+", "-", "COUNT", "1"};
  if (!position_op_->submit(args)) {
    fail_sync(ClientErrc::kQueueFull);  // refused: try again later
    return;
  }
  phase_ = Phase::kPosition;
}

// A sync step failed: start again after poll_interval, or as soon as the pipeline is connected
// again when the connection broke.
void CardDirectory::fail_sync(ClientErrc errc) noexcept {
  phase_ = Phase::kIdle;
  retry_at_ =
      errc == ClientErrc::kDisconnected ? Clock::time_point::min() : now_ + options_.poll_interval;
}

void CardDirectory::on_position(const Reply& reply) noexcept {
  if (reply.type != Reply::Type::kArray) {
    fail_sync(ClientErrc::kProtocol);
    return;
  }
  if (reply.elements.empty()) {
    (void)set_last_id(kEmptyStreamId);
  } else {
    const Reply& entry = reply.elements[0];
    if (entry.type != Reply::Type::kArray || entry.elements.empty() ||
        !is_string(entry.elements[0]) || !set_last_id(entry.elements[0].str)) {
      fail_sync(ClientErrc::kProtocol);
      return;
    }
  }
  const std::string_view args[] = {"SMEMBERS", kProfilesKey};
  if (!members_op_->submit(args)) {
    fail_sync(ClientErrc::kQueueFull);
    return;
  }
  phase_ = Phase::kMembers;
}

void CardDirectory::on_members(const Reply& reply) noexcept {
  if (reply.type != Reply::Type::kArray) {
    fail_sync(ClientErrc::kProtocol);
    return;
  }
  for (const Reply& name : reply.elements) {
    if (!is_string(name) || !valid_name(name.str, kProfileNameMax)) {
      ++stats_.profile_errors;
    } else if (!find_or_add_profile(name.str)) {
      ++stats_.profile_overflows;
    }
  }
  // Every known profile, listed or not: one deleted while away comes back empty (gone).
  for (std::size_t i = 0; i < profile_count_; ++i) {
    profiles_[i].needs_reload = true;
    profiles_[i].retry_at = Clock::time_point::min();
  }
  profiles_dirty_ = true;
  phase_ = Phase::kProfiles;
  (void)pump_profiles();
  check_profiles_settled();
}

bool CardDirectory::submit_poll() noexcept {
  AS_ASSERT(phase_ == Phase::kReady);
  next_poll_at_ = now_ + options_.poll_interval;  // the period counts from the submit
  const std::string_view args[] = {"XREAD",   "COUNT",     batch_,
                                   "STREAMS", kChangesKey, feed_position()};
  if (!poll_op_->submit(args)) {
    ++stats_.poll_errors;
    return false;
  }
  return true;
}

void CardDirectory::on_poll(const Reply& reply) noexcept {
  ++stats_.polls;
  if (reply.type == Reply::Type::kNil) {
    return;  // nothing new
  }
  // [[stream, [[id, [field, value, ...]], ...]]]
  if (reply.type != Reply::Type::kArray || reply.elements.empty() ||
      reply.elements[0].type != Reply::Type::kArray || reply.elements[0].elements.size() != 2 ||
      reply.elements[0].elements[1].type != Reply::Type::kArray) {
    ++stats_.poll_errors;
    return;
  }
  const std::span<const Reply> entries = reply.elements[0].elements[1].elements;
  for (const Reply& entry : entries) {
    apply_entry(entry);
  }
  (void)pump_profiles();
  if (entries.size() >= options_.feed_batch_max && phase_ == Phase::kReady &&
      !poll_op_->in_flight()) {
    (void)submit_poll();  // a full batch: more may be waiting
  }
}

void CardDirectory::on_poll_error(ClientErrc /*errc*/) noexcept {
  // Retried at the next interval; a broken connection is noticed by check_connection.
  ++stats_.poll_errors;
}

void CardDirectory::apply_entry(const Reply& entry) noexcept {
  if (entry.type != Reply::Type::kArray || entry.elements.size() != 2 ||
      !is_string(entry.elements[0]) || entry.elements[1].type != Reply::Type::kArray) {
    ++stats_.feed_ignored;
    return;
  }
  if (!set_last_id(entry.elements[0].str)) {
    ++stats_.feed_ignored;
    return;
  }
  std::string_view kind;
  std::string_view id;
  const std::span<const Reply> fields = entry.elements[1].elements;
  for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
    if (!is_string(fields[i]) || !is_string(fields[i + 1])) {
      continue;
    }
    if (fields[i].str == "kind") {
      kind = fields[i + 1].str;
    } else if (fields[i].str == "id") {
      id = fields[i + 1].str;
    }
  }
  Key key{};
  if (kind == kChangeCard && parse_token(id, key)) {
    drop(key);
    forget_waiting(&key);
  } else if (kind == kChangeCards) {
    drop_all();
    forget_waiting(nullptr);
  } else if (kind == kChangeProfile && valid_name(id, kProfileNameMax)) {
    // A profile nobody uses yet is loaded when a card first names it.
    if (const auto index = find_profile(id)) {
      Profile& p = profiles_[*index];
      p.needs_reload = true;
      p.retry_at = Clock::time_point::min();
      profiles_dirty_ = true;
    }
  } else {
    ++stats_.feed_ignored;
    return;
  }
  ++stats_.feed_entries;
}

bool CardDirectory::set_last_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > last_id_.size()) {
    return false;
  }
  std::memcpy(last_id_.data(), id.data(), id.size());
  last_id_len_ = id.size();
  return true;
}

// ---------------------------------------------------------------------------------------------
// Profiles.

std::optional<std::uint16_t> CardDirectory::find_profile(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < profile_count_; ++i) {
    if (profiles_[i].name() == name) {
      return static_cast<std::uint16_t>(i);
    }
  }
  return std::nullopt;
}

std::optional<std::uint16_t> CardDirectory::find_or_add_profile(std::string_view name) noexcept {
  AS_ASSERT(name.size() <= kProfileNameMax);
  if (const auto index = find_profile(name)) {
    return index;
  }
  if (profile_count_ == options_.max_profiles) {
    return std::nullopt;
  }
  Profile& p = profiles_[profile_count_];
  std::memcpy(p.name_buf.data(), name.data(), name.size());
  p.name_len = name.size();
  p.state = ProfileState::kLoading;
  p.needs_reload = true;
  p.retry_at = Clock::time_point::min();
  profiles_dirty_ = true;
  return static_cast<std::uint16_t>(profile_count_++);
}

const LimitProfile* CardDirectory::profile(std::uint16_t index) const noexcept {
  AS_ASSERT(index < profile_count_);
  const Profile& p = profiles_[index];
  return p.state == ProfileState::kLoaded ? &p.limits : nullptr;
}

CardDirectory::ProfileState CardDirectory::profile_state(std::uint16_t index) const noexcept {
  AS_ASSERT(index < profile_count_);
  return profiles_[index].state;
}

std::string_view CardDirectory::profile_name(std::uint16_t index) const noexcept {
  AS_ASSERT(index < profile_count_);
  return profiles_[index].name();
}

// Sends HGETALL for every profile due for a (re)load, with the deadline now + request_timeout,
// or `deadline_min` when later (a card load's own deadline: load() does not see the clock).
// True when something was sent.
bool CardDirectory::pump_profiles(Clock::time_point deadline_min) noexcept {
  if (!profiles_dirty_) {
    return false;
  }
  bool sent = false;
  bool still_dirty = false;
  for (std::size_t i = 0; i < profile_count_; ++i) {
    Profile& p = profiles_[i];
    if (!p.needs_reload) {
      continue;
    }
    if (p.in_flight || now_ < p.retry_at) {
      still_dirty = true;
      continue;
    }
    const std::string_view args[] = {"HGETALL", profile_key(p.name(), p.key_buf)};
    if (pipeline_.submit(args, p, std::max(now_ + options_.request_timeout, deadline_min))) {
      still_dirty = true;  // refused (queue full, disconnected): the next tick tries again
      continue;
    }
    p.in_flight = true;
    p.needs_reload = false;
    submitted_ = true;
    sent = true;
  }
  profiles_dirty_ = still_dirty;
  return sent;
}

void CardDirectory::on_profile_reply(Profile& p, const Reply& reply) noexcept {
  ++stats_.profile_loads;
  if (reply.type == Reply::Type::kArray && reply.elements.empty()) {
    p.state = ProfileState::kGone;  // deleted, or never created
  } else if (const std::optional<LimitProfile> limits = parse_profile_reply(reply)) {
    p.limits = *limits;
    p.state = ProfileState::kLoaded;
  } else {
    ++stats_.profile_errors;
    if (p.state != ProfileState::kLoaded) {
      p.state = ProfileState::kBad;  // a loaded profile keeps its last good limits
    }
  }
  profile_settled(p, std::nullopt);
}

void CardDirectory::on_profile_error(Profile& p, ClientErrc errc) noexcept {
  ++stats_.profile_errors;
  if (errc == ClientErrc::kServerError) {
    // Not a hash (WRONGTYPE): a data error that retrying does not mend; a feed entry does.
    if (p.state != ProfileState::kLoaded) {
      p.state = ProfileState::kBad;
    }
    profile_settled(p, std::nullopt);
    return;
  }
  // Timeout, broken connection: try again (a resync reloads every profile anyway).
  p.needs_reload = true;
  p.retry_at = now_ + options_.poll_interval;
  profiles_dirty_ = true;
  profile_settled(p, errc);
}

// A load of `p` ended: completes the card loads waiting for it, and the sync if it waited.
void CardDirectory::profile_settled(Profile& p, std::optional<ClientErrc> failure) noexcept {
  if (p.waiters > 0 && (failure || p.state != ProfileState::kLoading)) {
    CardStatus status = CardStatus::kError;
    if (!failure) {
      status = p.state == ProfileState::kLoaded ? CardStatus::kFound
               : p.state == ProfileState::kGone ? CardStatus::kProfileGone
                                                : CardStatus::kBadRecord;
    }
    const ClientErrc error = failure.value_or(ClientErrc::kTimeout);
    for (std::size_t i = 0; i < options_.max_pending_loads && p.waiters > 0; ++i) {
      Pending& slot = pending_[i];
      if (slot.state == Pending::State::kWaiting && slot.info.profile == p.index) {
        finish_load(slot, status, error);
      }
    }
  }
  check_profiles_settled();
}

void CardDirectory::check_profiles_settled() noexcept {
  if (phase_ != Phase::kProfiles) {
    return;
  }
  for (std::size_t i = 0; i < profile_count_; ++i) {
    if (profiles_[i].needs_reload || profiles_[i].in_flight) {
      return;
    }
  }
  phase_ = Phase::kReady;
  ++stats_.resyncs;
  next_poll_at_ = now_;  // changes made while loading are waiting in the feed
}

// ---------------------------------------------------------------------------------------------
// Card loads.

const CardInfo* CardDirectory::find(const PanToken& token) noexcept {
  Key key{};
  const bool parsed = parse_token(token.view(), key);
  AS_DASSERT(parsed);  // a PanToken is always 32 hex characters
  if (!parsed || pipeline_.stats().connects != connects_seen_) {
    ++stats_.misses;
    return nullptr;
  }
  const std::int64_t e = lookup(key);
  if (e < 0) {
    ++stats_.misses;
    return nullptr;
  }
  Entry& entry = entries_[static_cast<std::size_t>(e)];
  entry.referenced = true;
  ++stats_.hits;
  return &entry.info;
}

CardLoadResult CardDirectory::resolve(const CardInfo& card) const noexcept {
  AS_ASSERT(card.profile < profile_count_);
  const Profile& p = profiles_[card.profile];
  CardLoadResult r;
  r.card = &card;
  switch (p.state) {
    case ProfileState::kLoaded:
      r.status = CardStatus::kFound;
      r.limits = &p.limits;
      break;
    case ProfileState::kBad:
      r.status = CardStatus::kBadRecord;
      break;
    case ProfileState::kGone:
    case ProfileState::kLoading:  // not for a cached card: cached only once its profile settled
      r.status = CardStatus::kProfileGone;
      break;
  }
  return r;
}

std::optional<ClientErrc> CardDirectory::load(const PanToken& token, CardLoadCallback& done,
                                              Clock::time_point deadline) noexcept {
  Key key{};
  const bool parsed = parse_token(token.view(), key);
  AS_ASSERT(parsed);  // a PanToken is always 32 hex characters
  (void)check_connection();
  if (pending_free_count_ == 0) {
    return ClientErrc::kQueueFull;
  }
  const std::uint32_t index = pending_free_[pending_free_count_ - 1];
  Pending& slot = pending_[index];
  AS_ASSERT(slot.state == Pending::State::kFree);
  const std::string_view args[] = {"HMGET",
                                   card_directory_key(token.view(), slot.key_buf),
                                   kCardAccountField,
                                   kCardProfileField,
                                   kCardOverridesField,
                                   kCardStatusField,
                                   kCardExpiryField};
  if (const auto refused = pipeline_.submit(args, slot, deadline)) {
    return refused;
  }
  --pending_free_count_;
  slot.state = Pending::State::kSubmitted;
  slot.cacheable = phase_ != Phase::kIdle &&
                   pipeline_.state() == RedisPipeline::State::kConnected &&
                   pipeline_.stats().connects == connects_seen_;
  slot.has_card = false;
  slot.gen = gen_;
  slot.key = key;
  slot.token = token;
  slot.done = &done;
  slot.deadline = deadline;
  ++stats_.loads;
  return std::nullopt;
}

void CardDirectory::on_card_reply(Pending& slot, const Reply& reply) noexcept {
  AS_ASSERT(slot.state == Pending::State::kSubmitted);
  if (reply.type != Reply::Type::kArray || reply.elements.size() != 5) {
    finish_load(slot, CardStatus::kBadRecord, ClientErrc::kProtocol);
    return;
  }
  const Reply& acct = reply.elements[0];
  const Reply& prof = reply.elements[1];
  const Reply& ovr = reply.elements[2];
  const Reply& st = reply.elements[3];
  const Reply& exp = reply.elements[4];
  if (acct.type == Reply::Type::kNil) {
    finish_load(slot, CardStatus::kNotFound, ClientErrc::kTimeout);
    return;
  }
  const std::string_view profile_name =
      prof.type == Reply::Type::kNil ? kDefaultProfile : (is_string(prof) ? prof.str : "");
  if (!is_string(acct) || !valid_name(acct.str, kAccountIdMax) ||
      !valid_name(profile_name, kProfileNameMax)) {
    finish_load(slot, CardStatus::kBadRecord, ClientErrc::kProtocol);
    return;
  }
  const auto index = find_or_add_profile(profile_name);
  if (!index) {
    ++stats_.profile_overflows;
    finish_load(slot, CardStatus::kProfileTableFull, ClientErrc::kQueueFull);
    return;
  }
  // Fraud-rule overrides: a malformed field is ignored (no override applies: the stricter
  // side) and counted.
  slot.info.override_count = 0;
  if (is_string(ovr)) {
    if (const auto n = parse_card_overrides(ovr.str, slot.info.overrides)) {
      slot.info.override_count = static_cast<std::uint8_t>(*n);
    } else {
      ++stats_.bad_overrides;
    }
  }
  slot.info.state = is_string(st) ? parse_card_state(st.str) : CardState::kUnknown;
  slot.info.expiry_yymm = 0;
  if (is_string(exp) && exp.str.size() == 4) {
    std::uint16_t yymm = 0;
    const auto r = std::from_chars(exp.str.data(), exp.str.data() + 4, yymm);
    slot.info.expiry_yymm = r.ec == std::errc() && r.ptr == exp.str.data() + 4 ? yymm : 0;
  }
  std::memcpy(slot.info.account.data(), acct.str.data(), acct.str.size());
  slot.info.account_len = static_cast<std::uint8_t>(acct.str.size());
  slot.info.profile = *index;
  slot.has_card = true;
  Profile& p = profiles_[*index];
  if (p.state == ProfileState::kLoading) {
    // A profile created after the last sync: fetch it before answering.
    slot.state = Pending::State::kWaiting;
    ++p.waiters;
    ++waiting_;
    if (!p.in_flight) {
      p.needs_reload = true;
      p.retry_at = Clock::time_point::min();
      profiles_dirty_ = true;
      (void)pump_profiles(slot.deadline);
    }
    return;
  }
  const CardLoadResult r = resolve(slot.info);
  finish_load(slot, r.status, ClientErrc::kTimeout);
}

void CardDirectory::on_card_error(Pending& slot, ClientErrc errc) noexcept {
  AS_ASSERT(slot.state == Pending::State::kSubmitted);
  finish_load(slot, CardStatus::kError, errc);
}

// Caches the card when it may be, frees the slot, then calls back (the callback may load again).
void CardDirectory::finish_load(Pending& slot, CardStatus status, ClientErrc error) noexcept {
  CardInfo info = slot.info;
  CardLoadResult r;
  r.status = status;
  r.token = slot.token;
  r.error = error;
  if (slot.state == Pending::State::kWaiting) {
    Profile& p = profiles_[slot.info.profile];
    AS_ASSERT(p.waiters > 0);
    AS_ASSERT(waiting_ > 0);
    --p.waiters;
    --waiting_;
  }
  const bool card_known =
      slot.has_card && (status == CardStatus::kFound || status == CardStatus::kProfileGone ||
                        status == CardStatus::kBadRecord);
  if (card_known) {
    r.card = &info;
    if (slot.cacheable && slot.gen == gen_ && phase_ != Phase::kIdle &&
        pipeline_.stats().connects == connects_seen_) {
      r.card = &insert(slot.key, info)->info;
    }
    if (status == CardStatus::kFound) {
      r.limits = &profiles_[info.profile].limits;
    }
  }
  if (status == CardStatus::kNotFound) {
    ++stats_.not_found;
  } else if (status == CardStatus::kError) {
    ++stats_.load_errors;
  }
  CardLoadCallback* done = slot.done;
  slot.state = Pending::State::kFree;
  slot.done = nullptr;
  slot.has_card = false;
  pending_free_[pending_free_count_++] = slot.index;
  done->on_card_loaded(r);
}

void CardDirectory::expire_waiting(Clock::time_point now) noexcept {
  for (std::size_t i = 0; i < options_.max_pending_loads && waiting_ > 0; ++i) {
    Pending& slot = pending_[i];
    if (slot.state == Pending::State::kWaiting && slot.deadline <= now) {
      finish_load(slot, CardStatus::kError, ClientErrc::kTimeout);
    }
  }
}

// Loads waiting for a profile whose directory entry a feed entry just invalidated (`key`, or
// every card when null) are answered but not cached: their HMGET ran before the change.
void CardDirectory::forget_waiting(const Key* key) noexcept {
  if (waiting_ == 0) {
    return;
  }
  for (std::size_t i = 0; i < options_.max_pending_loads; ++i) {
    Pending& slot = pending_[i];
    if (slot.state == Pending::State::kWaiting && (key == nullptr || slot.key == *key)) {
      slot.cacheable = false;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The card table: entries_ hold the cards; index_ maps a token's hash to an entry by linear
// probing (at most half full, as it has twice as many slots as there are entries).

std::size_t CardDirectory::slot_of(const Key& key) const noexcept {
  // Tokens are HMAC output, but tests and tools use patterned ones: mix both halves.
  const std::uint64_t h = (key[0] ^ std::rotl(key[1], 29)) * 0x9E3779B97F4A7C15ULL;
  return static_cast<std::size_t>(h >> index_shift_);
}

std::int64_t CardDirectory::lookup(const Key& key) const noexcept {
  for (std::size_t slot = slot_of(key);; slot = (slot + 1) & index_mask_) {
    const std::uint32_t v = index_[slot];
    if (v == 0) {
      return -1;
    }
    if (entries_[v - 1].key == key) {
      return static_cast<std::int64_t>(v - 1);
    }
  }
}

CardDirectory::Entry* CardDirectory::insert(const Key& key, const CardInfo& info) noexcept {
  const std::int64_t existing = lookup(key);
  if (existing >= 0) {
    Entry& e = entries_[static_cast<std::size_t>(existing)];
    e.info = info;
    return &e;
  }
  if (free_count_ == 0 && next_unused_ == card_capacity_) {
    evict();  // full: frees one entry
  }
  const auto e =
      static_cast<std::uint32_t>(free_count_ > 0 ? free_[--free_count_] : next_unused_++);
  AS_ASSERT(e < card_capacity_);
  Entry& entry = entries_[e];
  entry.key = key;
  entry.info = info;
  entry.referenced = false;  // earns its second chance by being found
  std::size_t slot = slot_of(key);
  while (index_[slot] != 0) {
    slot = (slot + 1) & index_mask_;
  }
  index_[slot] = e + 1;
  ++card_count_;
  return &entry;
}

// Removes the index slot `slot` and its entry; shifts later members of the probe run back so
// no tombstones are needed.
void CardDirectory::erase_at(std::size_t slot) noexcept {
  const std::uint32_t v = index_[slot];
  AS_ASSERT(v != 0);
  entries_[v - 1].referenced = false;
  free_[free_count_++] = v - 1;
  --card_count_;
  std::size_t hole = slot;
  std::size_t j = slot;
  for (;;) {
    j = (j + 1) & index_mask_;
    const std::uint32_t w = index_[j];
    if (w == 0) {
      break;
    }
    const std::size_t home = slot_of(entries_[w - 1].key);
    // The member at j stays when its home lies cyclically in (hole, j].
    const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (!stays) {
      index_[hole] = w;
      hole = j;
    }
  }
  index_[hole] = 0;
}

void CardDirectory::drop(const Key& key) noexcept {
  for (std::size_t slot = slot_of(key);; slot = (slot + 1) & index_mask_) {
    const std::uint32_t v = index_[slot];
    if (v == 0) {
      return;
    }
    if (entries_[v - 1].key == key) {
      erase_at(slot);
      ++stats_.dropped;
      return;
    }
  }
}

void CardDirectory::drop_all() noexcept {
  ++stats_.drop_alls;
  if (card_count_ == 0) {
    return;
  }
  // The index only (8 MiB at 1 << 20 cards): entries are reused from the start again.
  std::fill_n(index_.get(), index_mask_ + 1, std::uint32_t{0});
  free_count_ = 0;
  next_unused_ = 0;
  card_count_ = 0;
  hand_ = 0;
}

// CLOCK: the first card under the hand not found since the hand last passed it. Only called
// when every entry holds a card.
void CardDirectory::evict() noexcept {
  AS_ASSERT(card_count_ == card_capacity_);
  for (std::size_t steps = 0; steps <= 2 * card_capacity_; ++steps) {
    Entry& entry = entries_[hand_];
    const std::size_t victim = hand_;
    hand_ = (hand_ + 1) & (card_capacity_ - 1);
    if (entry.referenced) {
      entry.referenced = false;
      continue;
    }
    std::size_t slot = slot_of(entry.key);
    while (index_[slot] != victim + 1) {
      AS_DASSERT(index_[slot] != 0);
      slot = (slot + 1) & index_mask_;
    }
    erase_at(slot);
    ++stats_.evictions;
    return;
  }
  AS_ASSERT(false);  // two sweeps clear every reference bit
}

}  // namespace authswitch::limits
